//! Simple tokens (`--auth-token simple`): random strings that stand for a user on every member until they
//! are unused for `--auth-token-ttl`. Authenticate replicates each new token through raft, so every member
//! holds the same table; like etcd's, the table lives in memory only (a restarted member forgets tokens and
//! clients authenticate again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::distr::{Alphabetic, SampleString};

/// Most tokens held at once; beyond it the ones closest to expiry are dropped first.
pub const MAX_TOKENS: usize = 100_000;
/// Expired tokens are swept out once per this many new tokens (and whenever the table is full).
const SWEEP_EVERY: u64 = 1024;

/// The token table of one member.
pub struct Tokens {
    ttl: Duration,
    max: usize,
    table: Mutex<HashMap<String, (String, Instant)>>,
    inserts: std::sync::atomic::AtomicU64,
}

impl Tokens {
    /// An empty table whose tokens live `ttl` past their last use, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Tokens {
        Tokens { ttl, max: max.max(1), table: Mutex::new(HashMap::new()), inserts: Default::default() }
    }

    /// A fresh token: 16 random letters, then `.` and a per-request number, as etcd's look.
    pub fn generate(nonce: u64) -> String {
        format!("{}.{nonce}", Alphabetic.sample_string(&mut rand::rng(), 16))
    }

    /// Adds `token` for `user` (an applied Authenticate).
    pub fn insert(&self, token: String, user: String) {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.inserts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if t.len() >= self.max || n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            t.retain(|_, (_, exp)| *exp > now);
        }
        while t.len() >= self.max {
            let Some(oldest) = t.iter().min_by_key(|(_, (_, exp))| *exp).map(|(k, _)| k.clone()) else { break };
            t.remove(&oldest);
        }
        t.insert(token, (user, now + self.ttl));
    }

    /// The user of a live token, extending its life; expired tokens are dropped.
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(token) {
            Some((user, exp)) if *exp > now => {
                *exp = now + self.ttl;
                Some(user.clone())
            }
            Some(_) => {
                t.remove(token);
                None
            }
            None => None,
        }
    }

    /// Forgets every token of `user` (deleted, or password changed).
    pub fn forget_user(&self, user: &str) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (u, _)| u != user);
    }

    /// Forgets every token (authentication disabled).
    pub fn clear(&self) {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Number of tokens held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_stay_bounded() {
        let t = Tokens::new(Duration::from_millis(50), 3);
        for i in 0..5 {
            t.insert(format!("t{i}"), "u".into());
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.user("t4").as_deref(), Some("u"));
        assert_eq!(t.user("t0"), None);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.user("t4"), None);
        t.insert("a".into(), "x".into());
        t.forget_user("x");
        assert_eq!(t.user("a"), None);
        assert!(Tokens::generate(7).ends_with(".7"));
    }
}
