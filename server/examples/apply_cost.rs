//! The cost of the apply path alone: puts of 256-byte values to random keys out of 100k, `PER` raft entries
//! grouped per commit as the raft loop groups a Ready's entries, into a sled database configured as a member's.
//!
//! `cargo run --release -p raftcd --example apply_cost -- [COMMITS] [PER] [WARM]` prints time per put. Shared
//! machines are noisy; for a stable before/after, count instructions instead:
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/apply_cost 2000 12`
//! (the `Collected` line). The bench/results files quote both.
use raftcd::mvcc::Store;
use raftcd_proto::etcdserverpb::PutRequest;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(256 << 20).flush_every_ms(None).open().unwrap();
    let s = Store::open(db.open_tree("state").unwrap()).unwrap();
    let ok = |_: i64| true;
    let mut x: u64 = 12345;
    let batches: u64 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(20000);
    let per: u64 = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(12);
    // Optional: load the first WARM keys first (1000 per commit), for steady-state numbers.
    let warm: u64 = std::env::args().nth(3).map(|a| a.parse().unwrap()).unwrap_or(0);
    let mut idx = 0;
    for chunk in 0..warm.div_ceil(1000) {
        idx += 1;
        let mut t = s.begin(idx, &ok);
        for k in chunk * 1000..((chunk + 1) * 1000).min(warm) {
            let key = format!("{k:08}").into_bytes();
            t.put(&PutRequest { key, value: vec![1; 256], ..Default::default() }).unwrap();
        }
        t.commit().unwrap();
    }
    // With a warm-up, the puts update those keys (the steady state); without, they go to 100k keys.
    let space = if warm > 0 { warm } else { 100_000 };
    let cpu0 = cpu();
    let t0 = Instant::now();
    for _ in 0..batches {
        idx += 1;
        let mut t = s.begin(idx, &ok);
        for j in 0..per {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("{:08}", x % space).into_bytes();
            t.put(&PutRequest { key, value: vec![j as u8; 256], ..Default::default() }).unwrap();
            if j + 1 < per {
                idx += 1;
                t.next_entry(idx);
            }
        }
        t.commit().unwrap();
    }
    let n = batches * per;
    println!(
        "puts {n} wall {:.2} us/put  process cpu {:.2} us/put",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu() - cpu0) * 1e6 / n as f64
    );
}

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
