//! Arbitrary bytes decoded as each etcd request type, then validated: never a panic, always Ok or one of
//! etcd's validation errors.

use proptest::prelude::*;
use prost::Message;
use raftcd_proto::etcdserverpb::{
    compare, request_op::Request, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchRequest,
};

use crate::error::Error;
use crate::services::validate;

const MAX_OPS: usize = 8;

/// The errors validation may answer with; anything else (or a panic) is a bug.
fn expected(e: &Error) -> bool {
    matches!(e, Error::EmptyKey | Error::ValueProvided | Error::LeaseProvided | Error::TooManyOps | Error::DuplicateKey)
        || matches!(e, Error::InvalidArgument(m) if m == "etcdserver: invalid sort option")
}

fn check(r: crate::error::Result<()>) -> Result<(), TestCaseError> {
    if let Err(e) = &r {
        prop_assert!(expected(e), "unexpected validation error {e:?}");
        prop_assert_eq!(tonic::Status::from(e.clone()).code(), tonic::Code::InvalidArgument);
    }
    Ok(())
}

fn decode_and_validate(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(r) = RangeRequest::decode(bytes) {
        check(validate::range(&r))?;
    }
    if let Ok(r) = PutRequest::decode(bytes) {
        check(validate::put(&r))?;
    }
    if let Ok(r) = DeleteRangeRequest::decode(bytes) {
        check(validate::delete_range(&r))?;
    }
    if let Ok(r) = TxnRequest::decode(bytes) {
        check(validate::txn(&r, MAX_OPS))?;
        let _ = (validate::txn_has_puts(&r), validate::txn_is_read_only(&r));
    }
    let _ = WatchRequest::decode(bytes);
    Ok(())
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', b'c', 0xff]), 0..3)
}

fn leaf_op() -> impl Strategy<Value = RequestOp> {
    let put = (key(), any::<bool>(), any::<bool>(), 0i64..2, prop::collection::vec(any::<u8>(), 0..2)).prop_map(
        |(key, ignore_value, ignore_lease, lease, value)| {
            Request::RequestPut(PutRequest { key, value, lease, ignore_value, ignore_lease, ..Default::default() })
        },
    );
    let del = (key(), key()).prop_map(|(key, range_end)| {
        Request::RequestDeleteRange(DeleteRangeRequest { key, range_end, ..Default::default() })
    });
    let range = (key(), key(), -1i32..4, -1i32..6).prop_map(|(key, range_end, sort_order, sort_target)| {
        Request::RequestRange(RangeRequest { key, range_end, sort_order, sort_target, ..Default::default() })
    });
    prop_oneof![put, del, range, Just(None).prop_map(|_: Option<()>| Request::RequestRange(Default::default()))]
        .prop_map(|r| RequestOp { request: Some(r) })
}

/// Txns nested a few levels deep, with ops that collide often.
fn txn() -> impl Strategy<Value = TxnRequest> {
    let cmp = key().prop_map(|key| Compare {
        key,
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    });
    let flat = (
        prop::collection::vec(cmp, 0..3),
        prop::collection::vec(leaf_op(), 0..10),
        prop::collection::vec(leaf_op(), 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure });
    flat.prop_recursive(4, 32, 4, move |inner| {
        (
            prop::collection::vec(leaf_op(), 0..4),
            prop::collection::vec(inner, 1..3),
            prop::collection::vec(leaf_op(), 0..3),
        )
            .prop_map(|(mut success, nested, failure)| {
                success.extend(nested.into_iter().map(|t| RequestOp { request: Some(Request::RequestTxn(t)) }));
                TxnRequest { compare: vec![], success, failure }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_and_validate_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_and_validate(&bytes)?;
    }

    #[test]
    fn mutated_valid_txns_decode_and_validate_without_panic(
        t in txn(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), cut in any::<prop::sample::Index>()
    ) {
        let mut bytes = t.encode_to_vec();
        for (i, b) in flips {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
        }
        let end = if bytes.is_empty() { 0 } else { cut.index(bytes.len() + 1) };
        decode_and_validate(&bytes[..end])?;
    }

    #[test]
    fn generated_txns_validate_to_ok_or_etcd_errors(t in txn()) {
        check(validate::txn(&t, MAX_OPS))?;
    }
}

/// A txn nested deeper than prost's recursion limit is refused by the decoder, not a stack overflow, and the
/// deepest txn that decodes validates without trouble.
#[test]
fn deeply_nested_txn_is_refused_by_the_decoder() {
    let nest = |depth: usize| {
        let mut t = TxnRequest::default();
        for _ in 0..depth {
            t = TxnRequest { success: vec![RequestOp { request: Some(Request::RequestTxn(t)) }], ..Default::default() };
        }
        t.encode_to_vec()
    };
    assert!(TxnRequest::decode(&nest(1000)[..]).is_err(), "1000 levels must not decode");
    let deepest = (1..1000).take_while(|d| TxnRequest::decode(&nest(*d)[..]).is_ok()).last().expect("depth 1 decodes");
    assert!(deepest >= 20, "prost should decode a txn nested {deepest} deep");
    let t = TxnRequest::decode(&nest(deepest)[..]).unwrap();
    assert_eq!(validate::txn(&t, MAX_OPS), Ok(()));
}
