//! Request ids and the waiter registry: a proposal's result travels back to its caller by request id,
//! never by log position (positions are reused after leader changes and dropped proposals).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::apply::ApplyResult;
use crate::error::Result;

/// Generates ids unique across members and restarts: the member's low 16 bits, then a 48-bit counter
/// seeded from the clock in milliseconds (as etcd's idutil).
pub struct IdGenerator {
    prefix: u64,
    counter: AtomicU64,
}

impl IdGenerator {
    /// A generator for member `member_id`.
    pub fn new(member_id: u64) -> IdGenerator {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        IdGenerator { prefix: (member_id & 0xffff) << 48, counter: AtomicU64::new((millis & 0xff_ffff_ffff) << 8) }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let c = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.prefix | (c & 0xffff_ffff_ffff)
    }
}

/// Callers waiting for their proposal to be applied.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<Result<ApplyResult>>>>,
}

impl Waiters {
    /// Registers a waiter for `id`; register BEFORE proposing so a fast apply cannot be missed.
    pub fn register(&self, id: u64) -> oneshot::Receiver<Result<ApplyResult>> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Delivers the result of request `id` (applied on this member) if someone waits for it.
    pub fn trigger(&self, id: u64, result: Result<ApplyResult>) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    /// Forgets a waiter whose caller gave up.
    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Number of proposals in flight (the `proposals_pending` gauge).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<ApplyResult>>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_member() {
        let g = IdGenerator::new(0xabcd_1234);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x1234);
    }

    #[tokio::test]
    async fn trigger_reaches_only_its_waiter() {
        let w = Waiters::default();
        let rx1 = w.register(1);
        let mut rx2 = w.register(2);
        w.trigger(1, Ok(ApplyResult::None));
        assert!(rx1.await.unwrap().is_ok());
        assert!(rx2.try_recv().is_err());
        w.cancel(2);
        assert_eq!(w.pending(), 0);
    }
}
