//! KV service: range, put, delete_range, txn, compact.

use raftcd_proto::etcdserverpb::kv_client::KvClient;
use raftcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::transport::Channel;

use crate::conn::Retry;
use crate::{unary_rpc, Client, Result};

/// `range_end` meaning "every key >= key".
pub const FROM_KEY: &[u8] = b"\0";

/// The `range_end` that selects every key starting with `prefix`: the prefix with its last byte below 0xff
/// incremented (trailing 0xff bytes dropped); `"\0"` (all keys) when there is no such byte.
pub fn range_end_for_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("non-empty") += 1;
            return end;
        }
        end.pop();
    }
    FROM_KEY.to_vec()
}

pub(crate) fn client(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

/// A txn is safe to resend only when none of its branches writes.
fn txn_is_read_only(t: &TxnRequest) -> bool {
    use raftcd_proto::etcdserverpb::request_op::Request;
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(inner)) => txn_is_read_only(inner),
        _ => false,
    })
}

impl Client {
    unary_rpc!(
        /// Reads a key or range. Retried on another endpoint after a transport failure.
        range => client, range, RangeRequest, RangeResponse, Retry::Always
    );
    unary_rpc!(
        /// Writes one key.
        put => client, put, PutRequest, PutResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Deletes a key or range.
        delete_range => client, delete_range, DeleteRangeRequest, DeleteRangeResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Compacts history below `revision`.
        compact => client, compact, CompactionRequest, CompactionResponse, Retry::IfNotSent
    );

    /// Runs a transaction; read-only ones are retried like ranges.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        let retry = if txn_is_read_only(&req) { Retry::Always } else { Retry::IfNotSent };
        self.call(retry, req, |ch, r| async move { client(ch).txn(r).await }).await
    }

    /// Reads one key.
    pub async fn get_kv(&self, key: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        self.range(RangeRequest { key: key.into(), ..Default::default() }).await
    }

    /// Reads every key under `prefix`.
    pub async fn get_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<RangeResponse> {
        let key = prefix.into();
        let range_end = range_end_for_prefix(&key);
        self.range(RangeRequest { key, range_end, ..Default::default() }).await
    }

    /// Writes one key.
    pub async fn put_kv(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<PutResponse> {
        self.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() }).await
    }

    /// Deletes one key.
    pub async fn delete_kv(&self, key: impl Into<Vec<u8>>) -> Result<DeleteRangeResponse> {
        self.delete_range(DeleteRangeRequest { key: key.into(), ..Default::default() }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::etcdserverpb::{request_op::Request, RequestOp};

    #[test]
    fn prefix_range_end() {
        assert_eq!(range_end_for_prefix(b"abc"), b"abd");
        assert_eq!(range_end_for_prefix(b"a\xff"), b"b");
        assert_eq!(range_end_for_prefix(b"\xff\xff"), b"\0");
        assert_eq!(range_end_for_prefix(b""), b"\0");
    }

    #[test]
    fn read_only_txn_detection() {
        let get = RequestOp { request: Some(Request::RequestRange(Default::default())) };
        let put = RequestOp { request: Some(Request::RequestPut(Default::default())) };
        assert!(txn_is_read_only(&TxnRequest { success: vec![get.clone()], ..Default::default() }));
        assert!(!txn_is_read_only(&TxnRequest { success: vec![get], failure: vec![put], ..Default::default() }));
    }
}
