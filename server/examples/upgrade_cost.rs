//! What converting a data dir of store format 2 to format 3 costs: `N` keys (default 1,000,000) of 256-byte
//! values are written, the tree is given format 2's live copies and mark, then the store is opened again
//! (which writes the new mark, holding up start-up) and the live copies are removed (in the background,
//! in a member).
//!
//! `cargo run --release -p raftcd --example upgrade_cost -- [N]`
use prost::Message;
use raftcd::mvcc::{Store, META_FORMAT};
use raftcd_proto::etcdserverpb::{PutRequest, RangeRequest};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(256 << 20).open().unwrap();
    let tree = db.open_tree("state").unwrap();
    let s = Store::open(tree.clone()).unwrap();
    let ok = |_: i64| true;
    for (idx, chunk) in (0..n.div_ceil(1000)).enumerate() {
        let mut t = s.begin(idx as u64 + 1, &ok);
        for k in chunk * 1000..((chunk + 1) * 1000).min(n) {
            t.put(&PutRequest { key: format!("{k:08}").into_bytes(), value: vec![1; 256], ..Default::default() })
                .unwrap();
        }
        t.commit().unwrap();
    }
    // Format 2 held a live copy `k | key -> KeyValue` of every live key.
    let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
    for kvs in s.range(&all).unwrap().kvs.chunks(10_000) {
        let mut b = sled::Batch::default();
        for kv in kvs {
            b.insert([&b"k"[..], &kv.key].concat(), kv.encode_to_vec());
        }
        tree.apply_batch(b).unwrap();
    }
    tree.insert(META_FORMAT, &2u64.to_be_bytes()).unwrap();
    db.flush().unwrap();
    drop(s);
    let t0 = Instant::now();
    let s = Store::open(tree.clone()).unwrap();
    let opened = t0.elapsed();
    assert_eq!(s.key_count().unwrap(), n);
    let t1 = Instant::now();
    assert_eq!(s.remove_live_copies().unwrap(), n);
    let removed = t1.elapsed();
    assert_eq!(tree.scan_prefix(b"k").count(), 0);
    println!(
        "{n} keys of format 2: open {:.3} s, live copies removed in {:.2} s",
        opened.as_secs_f64(),
        removed.as_secs_f64()
    );
}
