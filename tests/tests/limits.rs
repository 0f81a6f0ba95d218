//! Limits on what one client may send, with real processes over real sockets. Every exceeded limit is
//! answered with etcd's error on that request, stream or connection only; the member keeps serving.
//!
//! Where etcd 3.4 has the same limit (--max-request-bytes and gRPC's receive limit above it, --max-txn-ops,
//! --max-concurrent-streams) the same requests go to a real etcd and the outcomes must be identical.
//! --max-watchers-per-stream is raftcd's own (etcd has no such limit).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};
use raftcd_tests::client::{connect, grpc_status, skip_allowed};
use raftcd_tests::{step, EtcdProcess, RaftcdProcess};

/// Flags given to both servers: small limits, so oversized requests stay small.
const LIMIT_FLAGS: &[&str] = &["--max-request-bytes", "1024", "--max-txn-ops", "4"];
/// gRPC's receive limit with LIMIT_FLAGS: --max-request-bytes + etcd's 512 KiB of overhead.
const GRPC_LIMIT: usize = 1024 + 512 * 1024;
const TOO_LARGE: &str = "InvalidArgument: etcdserver: request is too large";

/// An outcome as one comparable line: "ok", "created", or "<gRPC code>: <message>".
fn outcome<T>(r: Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => match grpc_status(&e) {
            Some((code, msg)) => format!("{code}: {msg}"),
            None => format!("client error: {e}"),
        },
    }
}

/// Opens a watch stream on `key` and reports what its first response (or error) says.
async fn watch_outcome(c: &mut Client, key: Vec<u8>) -> String {
    let first = async {
        let mut s = c.watch(key, None).await?;
        s.message().await
    };
    match tokio::time::timeout(Duration::from_secs(10), first).await {
        Err(_) => "timed out".into(),
        Ok(Ok(Some(r))) if r.created() && !r.canceled() => "created".into(),
        Ok(Ok(other)) => format!("unexpected response {other:?}"),
        Ok(Err(e)) => outcome::<()>(Err(e)),
    }
}

/// A LeaseKeepAliveRequest padded with an unknown field, so that it can exceed the receive limit.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedKeepAlive {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(bytes = "vec", tag = "99")]
    pad: Vec<u8>,
}

/// Sends one keep-alive of lease 0x1234 (unknown) padded by `pad` bytes; reports the stream's first answer.
async fn keepalive_outcome(endpoint: &str, pad: usize) -> String {
    use raftcd_proto::etcdserverpb::LeaseKeepAliveResponse;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<PaddedKeepAlive, LeaseKeepAliveResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(PaddedKeepAlive { id: 0x1234, pad: vec![0; pad] }).await.unwrap();
    let req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let first = async {
        match grpc.streaming(req, path, codec).await {
            Err(s) => status(s),
            Ok(resp) => match resp.into_inner().message().await {
                Ok(Some(r)) => format!("ttl {}", r.ttl),
                Ok(None) => "stream ended with OK".into(),
                Err(s) => status(s),
            },
        }
    };
    let out = tokio::time::timeout(Duration::from_secs(10), first).await.unwrap_or_else(|_| "timed out".into());
    drop(tx);
    out
}

/// The oversized-request script; returns one outcome per request, labelled.
async fn oversized_script(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut c = connect(endpoint).await;
    let big = vec![b'v'; 2000];
    let huge = vec![b'k'; GRPC_LIMIT + 1000];
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("t{i}"), "v", None)).collect::<Vec<_>>();
    let mut out = Vec::new();
    out.push(("put over --max-request-bytes", outcome(c.put("k", big.clone(), None).await)));
    out.push((
        "txn put over --max-request-bytes",
        outcome(c.txn(Txn::new().and_then([TxnOp::put("k", big.clone(), None)])).await),
    ));
    out.push(("txn with 5 ops over --max-txn-ops 4", outcome(c.txn(Txn::new().and_then(puts(5))).await)));
    out.push(("txn with 4 ops", outcome(c.txn(Txn::new().and_then(puts(4))).await)));
    let cmp = Compare::version(big.clone(), CompareOp::Equal, 0);
    out.push(("txn compare on a big key", outcome(c.txn(Txn::new().when([cmp])).await)));
    out.push(("range of a big key", outcome(c.get(big.clone(), None).await)));
    out.push(("delete of a big key", outcome(c.delete(big.clone(), None).await)));
    out.push(("watch of a big key", watch_outcome(&mut c, big.clone()).await));
    out.push(("put over the gRPC limit", outcome(c.put("k", huge.clone(), None).await)));
    out.push(("range over the gRPC limit", outcome(c.get(huge.clone(), None).await)));
    out.push(("delete over the gRPC limit", outcome(c.delete(huge.clone(), None).await)));
    out.push(("watch over the gRPC limit", watch_outcome(&mut c, huge.clone()).await));
    out.push(("keepalive of an unknown lease", keepalive_outcome(endpoint, 0).await));
    out.push(("keepalive over the gRPC limit", keepalive_outcome(endpoint, GRPC_LIMIT + 1000).await));
    out.push(("small put on the same connection afterwards", outcome(c.put("k", "v", None).await)));
    out
}

fn require_etcd() -> bool {
    if !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed (set RAFTCD_TESTS_ALLOW_SKIP=1 to skip)");
        return false;
    }
    true
}

/// Scenario: with --max-request-bytes 1024 and --max-txn-ops 4, puts, txns, ranges, deletes and watches
/// just over the request limit, and over gRPC's receive limit (request limit + 512 KiB), get exactly etcd's
/// answers; the connection keeps working afterwards.
#[test]
fn oversized_requests_get_etcds_errors() {
    let dir = tempfile::tempdir().unwrap();
    let raftcd = RaftcdProcess::start_single(dir.path(), LIMIT_FLAGS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    step!("raftcd");
    let ours = rt.block_on(oversized_script(&raftcd.endpoint()));
    for (label, o) in &ours {
        eprintln!("raftcd  {label}: {o}");
    }
    let get = |l: &str| ours.iter().find(|(label, _)| *label == l).map(|(_, o)| o.clone()).unwrap();
    assert_eq!(get("put over --max-request-bytes"), TOO_LARGE);
    assert_eq!(get("txn put over --max-request-bytes"), TOO_LARGE);
    assert_eq!(get("delete of a big key"), TOO_LARGE);
    assert_eq!(get("txn compare on a big key"), "ok", "read-only txns are not proposed, as in etcd");
    assert_eq!(
        get("txn with 5 ops over --max-txn-ops 4"),
        "InvalidArgument: etcdserver: too many operations in txn request"
    );
    assert_eq!(get("txn with 4 ops"), "ok");
    for l in [
        "put over the gRPC limit",
        "range over the gRPC limit",
        "delete over the gRPC limit",
        "watch over the gRPC limit",
        "keepalive over the gRPC limit",
    ] {
        let o = get(l);
        assert!(
            o.starts_with("ResourceExhausted: grpc: received message larger than max (")
                && o.ends_with(&format!(" vs. {GRPC_LIMIT})")),
            "{l}: {o}"
        );
    }
    assert_eq!(get("keepalive of an unknown lease"), "ttl 0");
    assert_eq!(get("small put on the same connection afterwards"), "ok");
    if !require_etcd() {
        return;
    }
    step!("etcd");
    let etcd = EtcdProcess::start_with_args(LIMIT_FLAGS);
    let theirs = rt.block_on(oversized_script(&etcd.endpoint()));
    for (label, o) in &theirs {
        eprintln!("etcd    {label}: {o}");
    }
    assert_eq!(ours, theirs, "raftcd and etcd answer differently");
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS a server announces on a fresh HTTP/2 connection (None: not announced).
fn announced_max_streams(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // our empty SETTINGS
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).expect("no SETTINGS frame from the server");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        let (kind, ack) = (head[3], head[4] & 1 == 1);
        if kind != 4 || ack {
            continue;
        }
        return payload
            .chunks_exact(6)
            .find(|p| p[..2] == [0, 3])
            .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    }
}

/// With the streams of one connection used up by open watches, another request on that connection waits;
/// a second connection is served at once. Returns (first connection blocked, second connection served,
/// first connection served again once a watch closed).
async fn streams_script(endpoint: &str) -> (bool, bool, bool) {
    let mut c = connect(endpoint).await;
    let mut w1 = c.watch("a", None).await.unwrap();
    let mut w2 = c.watch("b", None).await.unwrap();
    assert!(w1.message().await.unwrap().unwrap().created());
    assert!(w2.message().await.unwrap().unwrap().created());
    let blocked = tokio::time::timeout(Duration::from_millis(1500), c.get("x", None)).await.is_err();
    let mut other = connect(endpoint).await;
    let second = tokio::time::timeout(Duration::from_secs(5), other.put("x", "1", None)).await.is_ok_and(|r| r.is_ok());
    drop(w1);
    let again = tokio::time::timeout(Duration::from_secs(5), c.get("x", None)).await.is_ok_and(|r| r.is_ok());
    (blocked, second, again)
}

/// Scenario: --max-concurrent-streams is announced as HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS exactly as
/// etcd announces it (math.MaxUint32 by default, 2 with the flag); a client that has 2 streams open must wait for
/// a third on that connection while other connections and the member are unaffected.
#[test]
fn max_concurrent_streams_bounds_one_connection() {
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let default = RaftcdProcess::start_single(dir1.path(), &[]);
    let two = RaftcdProcess::start_single(dir2.path(), &["--max-concurrent-streams", "2"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        connect(&default.endpoint()).await;
        connect(&two.endpoint()).await;
    });
    assert_eq!(announced_max_streams(default.member.client_port), Some(u32::MAX), "etcd's default, math.MaxUint32");
    assert_eq!(announced_max_streams(two.member.client_port), Some(2));
    step!("a third stream on a full connection waits; another connection does not");
    assert_eq!(rt.block_on(streams_script(&two.endpoint())), (true, true, true));
    if !require_etcd() {
        return;
    }
    step!("etcd announces and behaves the same");
    let etcd_default = EtcdProcess::start_with_args(&[]);
    let etcd_two = EtcdProcess::start_with_args(&["--max-concurrent-streams", "2"]);
    rt.block_on(async {
        connect(&etcd_default.endpoint()).await;
        connect(&etcd_two.endpoint()).await;
    });
    assert_eq!(announced_max_streams(etcd_default.client_port), Some(u32::MAX));
    assert_eq!(announced_max_streams(etcd_two.client_port), Some(2));
    assert_eq!(rt.block_on(streams_script(&etcd_two.endpoint())), (true, true, true));
}

/// Scenario: with --max-watchers-per-stream 3, the 4th create on one stream is answered created+canceled
/// with watch_id -1 and a reason; the 3 watchers on it keep delivering, and another stream may still create.
#[test]
fn max_watchers_per_stream_refuses_only_the_extra_watch() {
    let dir = tempfile::tempdir().unwrap();
    let raftcd = RaftcdProcess::start_single(dir.path(), &["--max-watchers-per-stream", "3"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = connect(&raftcd.endpoint()).await;
        let mut s = c.watch("w0", None).await.unwrap();
        for k in ["w1", "w2", "w3"] {
            s.watch(k, None).await.unwrap();
        }
        let mut created = Vec::new();
        let refused = loop {
            let r = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
            if r.canceled() {
                break r;
            }
            assert!(r.created(), "{r:?}");
            created.push(r.watch_id());
        };
        assert_eq!(created, vec![0, 1, 2]);
        assert_eq!(refused.watch_id(), -1);
        assert!(refused.created());
        assert!(refused.cancel_reason().contains("too many watchers"), "{:?}", refused.cancel_reason());

        step!("the 3 watchers still deliver; w3 (refused) does not");
        c.put("w3", "x", None).await.unwrap();
        c.put("w2", "x", None).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
        assert_eq!((r.watch_id(), r.events()[0].kv().unwrap().key()), (2, &b"w2"[..]));

        step!("another stream on the same connection may create");
        let mut other = c.watch("w3", Some(WatchOptions::new())).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), other.message()).await.unwrap().unwrap().unwrap();
        assert!(r.created() && !r.canceled(), "{r:?}");
    });
}
