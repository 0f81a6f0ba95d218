//! The request-response scenarios: put, range, txn-put, txn-mixed, lease-keepalive and load.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{
    Consistency, Global, KeyArgs, LeaseArgs, Limit, LoadArgs, PutArgs, RangeArgs, TxnMixedArgs, TxnPutArgs,
};
use crate::conn::{pool, Conn};
use crate::keys::{prefix_range_end, value, KeyGen, KeyOrder};
use crate::report::Report;
use crate::runner::{closed_loop, OpFuture, Plan};

fn keygen(k: &KeyArgs) -> Result<KeyGen> {
    KeyGen::new(&k.key_prefix, k.key_size, k.key_space_size)
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(PutRequest { key, value, ..Default::default() })) }
}

/// `put`: one Put per request.
pub async fn put(g: &Global, a: &PutArgs) -> Result<Report> {
    let conns = pool(g).await?;
    let keys = keygen(&a.keys)?;
    let val = value(a.keys.val_size);
    let clients = (0..g.clients)
        .map(|c| {
            let kv = conns[c as usize % conns.len()].kv();
            let mut order = KeyOrder::new(a.keys.sequential_keys, c);
            let (keys, val) = (keys.clone(), val.clone());
            move |op: u64| -> OpFuture {
                let req = PutRequest {
                    key: keys.key(order.next(op, keys.space())),
                    value: val.clone(),
                    ..Default::default()
                };
                let mut kv = kv.clone();
                Box::pin(async move { kv.put(req).await.map(|_| None) })
            }
        })
        .collect();
    let mut r = closed_loop("put", Plan::from_global(g), g.conns, clients).await?;
    r.set("key_size", a.keys.key_size);
    r.set("val_size", a.keys.val_size);
    r.set("key_space_size", a.keys.key_space_size);
    Ok(r)
}

/// `range`: one Range per request, on one key or on a prefix of `--prefix-keys` keys.
pub async fn range(g: &Global, a: &RangeArgs) -> Result<Report> {
    let conns = pool(g).await?;
    let val = value(a.val_size);
    let (key, range_end) = if a.prefix_keys == 0 {
        let mut kv = conns[0].kv();
        kv.put(PutRequest { key: a.key.as_bytes().to_vec(), value: val, ..Default::default() })
            .await
            .context("writing the key to read")?;
        (a.key.as_bytes().to_vec(), Vec::new())
    } else {
        let width = crate::keys::decimal_digits(a.prefix_keys - 1);
        let gen = KeyGen::new(&a.key, a.key.len() + width, a.prefix_keys)?;
        write_keys(&conns, &gen, a.prefix_keys, &val, 16).await.context("writing the keys to read")?;
        (a.key.as_bytes().to_vec(), prefix_range_end(a.key.as_bytes()))
    };
    let req = RangeRequest {
        key,
        range_end,
        serializable: a.consistency == Consistency::Serializable,
        keys_only: a.keys_only,
        ..Default::default()
    };
    let expect = a.prefix_keys.max(1) as i64;
    let got = conns[0].kv().range(req.clone()).await.context("first range")?.into_inner().count;
    if got < expect {
        bail!("range returned {got} keys, expected at least {expect}");
    }
    let clients = (0..g.clients)
        .map(|c| {
            let kv = conns[c as usize % conns.len()].kv();
            let req = req.clone();
            move |_op: u64| -> OpFuture {
                let mut kv = kv.clone();
                let req = req.clone();
                Box::pin(async move { kv.range(req).await.map(|_| None) })
            }
        })
        .collect();
    let mut r = closed_loop("range", Plan::from_global(g), g.conns, clients).await?;
    r.set("consistency", if a.consistency == Consistency::Serializable { "s" } else { "l" });
    r.set("keys_per_range", expect);
    Ok(r)
}

/// Writes keys `0..n` of `gen` with `parallel` requests in flight (untimed setup).
async fn write_keys(conns: &[Conn], gen: &KeyGen, n: u64, val: &[u8], parallel: u64) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..parallel {
        let mut kv = conns[p as usize % conns.len()].kv();
        let (gen, val, next) = (gen.clone(), val.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), tonic::Status>(());
                }
                kv.put(PutRequest { key: gen.key(i), value: val.clone(), ..Default::default() }).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `txn-put`: a transaction of `--txn-ops` puts on consecutive keys per request.
pub async fn txn_put(g: &Global, a: &TxnPutArgs) -> Result<Report> {
    if a.txn_ops > a.keys.key_space_size {
        bail!("--txn-ops must not exceed --key-space-size (the keys of one transaction must differ)");
    }
    let conns = pool(g).await?;
    let keys = keygen(&a.keys)?;
    let val = value(a.keys.val_size);
    let txn_ops = a.txn_ops;
    let clients = (0..g.clients)
        .map(|c| {
            let kv = conns[c as usize % conns.len()].kv();
            let mut order = KeyOrder::new(a.keys.sequential_keys, c);
            let (keys, val) = (keys.clone(), val.clone());
            move |op: u64| -> OpFuture {
                let base = order.next(op * txn_ops, keys.space());
                let success = (0..txn_ops).map(|j| put_op(keys.key(base + j), val.clone())).collect();
                let req = TxnRequest { compare: Vec::new(), success, failure: Vec::new() };
                let mut kv = kv.clone();
                Box::pin(async move { kv.txn(req).await.map(|_| None) })
            }
        })
        .collect();
    let mut r = closed_loop("txn-put", Plan::from_global(g), g.conns, clients).await?;
    r.set("txn_ops", txn_ops);
    r.set("val_size", a.keys.val_size);
    r.set("key_space_size", a.keys.key_space_size);
    Ok(r)
}

/// Whether request number `draw` (uniform in [0,1)) of a txn-mixed run reads, given reads per write.
pub fn is_read(draw: f64, rw_ratio: f64) -> bool {
    draw < rw_ratio / (rw_ratio + 1.0)
}

/// `txn-mixed`: transactions that read one key (Range) or write one key (Put), `--rw-ratio` reads per write.
pub async fn txn_mixed(g: &Global, a: &TxnMixedArgs) -> Result<Report> {
    let conns = pool(g).await?;
    let keys = keygen(&a.keys)?;
    let val = value(a.keys.val_size);
    let serializable = a.consistency == Consistency::Serializable;
    let rw = a.rw_ratio;
    let clients = (0..g.clients)
        .map(|c| {
            let kv = conns[c as usize % conns.len()].kv();
            let mut order = KeyOrder::new(a.keys.sequential_keys, c);
            let mut rng = StdRng::seed_from_u64(0xa11c_e000 + c);
            let (keys, val) = (keys.clone(), val.clone());
            move |op: u64| -> OpFuture {
                let key = keys.key(order.next(op, keys.space()));
                let read = is_read(rng.random::<f64>(), rw);
                let (op_req, class) = if read {
                    let range = RangeRequest { key, serializable, ..Default::default() };
                    (RequestOp { request: Some(Request::RequestRange(range)) }, "read")
                } else {
                    (put_op(key, val.clone()), "write")
                };
                let req = TxnRequest { compare: Vec::new(), success: vec![op_req], failure: Vec::new() };
                let mut kv = kv.clone();
                Box::pin(async move { kv.txn(req).await.map(|_| Some(class)) })
            }
        })
        .collect();
    let mut r = closed_loop("txn-mixed", Plan::from_global(g), g.conns, clients).await?;
    r.set("rw_ratio", rw);
    r.set("consistency", if serializable { "s" } else { "l" });
    Ok(r)
}

type KeepAlive = (mpsc::Sender<LeaseKeepAliveRequest>, tonic::Streaming<LeaseKeepAliveResponse>);

/// `lease-keepalive`: each client grants a lease, opens a keep-alive stream, and each request is one
/// keep-alive and its answer on that stream.
pub async fn lease_keepalive(g: &Global, a: &LeaseArgs) -> Result<Report> {
    let conns = pool(g).await?;
    let mut leases = Vec::new();
    let mut clients = Vec::new();
    for c in 0..g.clients {
        let conn = &conns[c as usize % conns.len()];
        let mut lease = conn.lease();
        let id =
            lease.lease_grant(LeaseGrantRequest { ttl: a.ttl, id: 0 }).await.context("lease grant")?.into_inner().id;
        leases.push((conn.clone(), id));
        let (tx, rx) = mpsc::channel(4);
        // The server answers (and sends its headers) only once a request arrives, so send one first.
        tx.send(LeaseKeepAliveRequest { id }).await.ok();
        let mut stream =
            lease.lease_keep_alive(ReceiverStream::new(rx)).await.context("keep-alive stream")?.into_inner();
        stream.message().await.context("first keep-alive")?;
        let state: Arc<Mutex<KeepAlive>> = Arc::new(Mutex::new((tx, stream)));
        clients.push(move |_op: u64| -> OpFuture {
            let state = state.clone();
            Box::pin(async move {
                let mut s = state.lock().await;
                s.0.send(LeaseKeepAliveRequest { id }).await.map_err(|_| tonic::Status::cancelled("stream closed"))?;
                match s.1.message().await? {
                    Some(resp) if resp.ttl > 0 => Ok(None),
                    Some(_) => Err(tonic::Status::not_found("lease expired")),
                    None => Err(tonic::Status::cancelled("keep-alive stream ended")),
                }
            })
        });
    }
    let mut r = closed_loop("lease-keepalive", Plan::from_global(g), g.conns, clients).await?;
    for (conn, id) in leases {
        let _ = conn.lease().lease_revoke(LeaseRevokeRequest { id }).await;
    }
    r.set("ttl", a.ttl);
    Ok(r)
}

/// Number of requests needed to write `keys` keys `batch` at a time.
pub fn batches(keys: u64, batch: u64) -> u64 {
    keys.div_ceil(batch)
}

/// The key indexes written by request number `op` of a load.
pub fn batch_range(op: u64, batch: u64, keys: u64) -> std::ops::Range<u64> {
    (op * batch).min(keys)..((op + 1) * batch).min(keys)
}

/// `load`: writes keys `0..--keys` once each, `--batch` per request, with all clients.
pub async fn load(g: &Global, a: &LoadArgs) -> Result<Report> {
    let conns = pool(g).await?;
    let keys = KeyGen::new(&a.key_prefix, a.key_size, a.keys)?;
    let val = value(a.val_size);
    let (n, batch) = (a.keys, a.batch);
    let clients = (0..g.clients)
        .map(|c| {
            let kv = conns[c as usize % conns.len()].kv();
            let (keys, val) = (keys.clone(), val.clone());
            move |op: u64| -> OpFuture {
                let mut kv = kv.clone();
                let idx = batch_range(op, batch, n);
                if batch == 1 {
                    let req = PutRequest { key: keys.key(idx.start), value: val.clone(), ..Default::default() };
                    Box::pin(async move { kv.put(req).await.map(|_| None) })
                } else {
                    let success = idx.map(|i| put_op(keys.key(i), val.clone())).collect();
                    let req = TxnRequest { compare: Vec::new(), success, failure: Vec::new() };
                    Box::pin(async move { kv.txn(req).await.map(|_| None) })
                }
            }
        })
        .collect();
    let plan = Plan { limit: Limit::Total(batches(n, batch)), rate: g.rate };
    let mut r = closed_loop("load", plan, g.conns, clients).await?;
    let written = if r.errors == 0 { n } else { (r.ops * batch).min(n) };
    r.set("keys", written);
    r.set("batch", batch);
    r.set("val_size", a.val_size);
    r.set("keys_per_sec", crate::report::round3(written as f64 / r.secs().max(1e-9)));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_share() {
        assert!(is_read(0.49, 1.0));
        assert!(!is_read(0.5, 1.0));
        assert!(!is_read(0.0, 0.0), "ratio 0 = writes only");
        assert!(is_read(0.74, 3.0) && !is_read(0.75, 3.0));
    }

    #[test]
    fn load_batches_cover_every_key_once() {
        assert_eq!(batches(10, 1), 10);
        assert_eq!(batches(10, 3), 4);
        let all: Vec<u64> = (0..batches(10, 3)).flat_map(|op| batch_range(op, 3, 10)).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(batch_range(3, 3, 10), 9..10);
    }
}
