//! Peer message decoding: arbitrary bytes are refused or decode to a message a peer may send; never a panic.

use proptest::prelude::*;
use protobuf::{Message as _, ProtobufEnum as _};
use raft::eraftpb::{Message, MessageType};

use crate::peer::service::decode;

fn local(t: MessageType) -> bool {
    use MessageType::*;
    matches!(t, MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum)
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (0i32..20, any::<u64>(), 0u64..4, 0u64..100, 0u64..100, prop::collection::vec(any::<u8>(), 0..32)).prop_map(
        |(t, from, to, term, index, ctx)| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::from_i32(t).unwrap_or(MessageType::MsgAppend));
            m.from = from;
            m.to = to;
            m.term = term;
            m.index = index;
            m.context = ctx.into();
            m.write_to_bytes().unwrap_or_default()
        },
    )
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(m) => {
            prop_assert!(m.from != 0, "a message without sender was accepted");
            prop_assert!(!local(m.get_msg_type()), "a local message type was accepted: {:?}", m.get_msg_type());
        }
        Err(s) => prop_assert_eq!(s.code(), tonic::Code::InvalidArgument),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_or_decode_to_a_peer_message(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_messages_are_refused_or_decode_to_a_peer_message(
        bytes in message(), flip in any::<(prop::sample::Index, u8)>(), cut in any::<prop::sample::Index>()
    ) {
        let mut bytes = bytes;
        if !bytes.is_empty() {
            let i = flip.0.index(bytes.len());
            bytes[i] ^= flip.1;
        }
        let end = cut.index(bytes.len() + 1);
        check(&bytes[..end])?;
    }
}

/// Regression: empty bytes decode to a default message (MsgHup from 0), which must not reach raft.
#[test]
fn empty_message_is_refused() {
    assert!(decode(&[]).is_err());
    let mut hup = Message::default();
    hup.set_msg_type(MessageType::MsgHup);
    hup.from = 2;
    assert!(decode(&hup.write_to_bytes().unwrap()).is_err(), "MsgHup is local to a node");
    let mut app = Message::default();
    app.set_msg_type(MessageType::MsgAppend);
    app.from = 2;
    assert!(decode(&app.write_to_bytes().unwrap()).is_ok());
}
