//! The lessor: the set of live leases, their TTLs and (on the leader only) their expiry deadlines.
//!
//! Followers keep no deadlines: a lease cannot expire on a member that does not lead. A member that becomes
//! leader gives every lease a fresh full TTL (as etcd does without checkpoints), so a failover never expires
//! leases en masse; a member that loses leadership forgets the deadlines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

/// etcd's MaxLeaseTTL: 9,000,000,000 seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// After proposing the revoke of an expired lease, wait this long before proposing it again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// Meta-key prefix of persisted leases (under the store's `x` space).
const LEASE_PREFIX: &[u8] = b"l";

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// Granted TTL in seconds (after raising to the minimum).
    pub ttl: i64,
    /// Leader only: when the lease expires.
    expiry: Option<Instant>,
    /// Leader only: when the last revoke for it was proposed.
    revoke_proposed: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    primary: bool,
}

/// All leases of this member.
pub struct Lessor {
    inner: Mutex<Inner>,
    min_ttl: i64,
}

fn meta_key(id: i64) -> Vec<u8> {
    let mut k = LEASE_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

impl Lessor {
    /// Loads the persisted leases of `store`.
    pub fn load(store: &Store, min_ttl: i64) -> Result<Lessor> {
        let mut inner = Inner::default();
        for (k, v) in store.scan_meta(LEASE_PREFIX)? {
            if k.len() != 9 || v.len() != 8 {
                return Err(Error::Storage("lease: corrupt record".into()));
            }
            let id = i64::from_be_bytes(k[1..].try_into().unwrap_or_default());
            let ttl = i64::from_be_bytes(v[..].try_into().unwrap_or_default());
            inner.leases.insert(id, Lease { id, ttl, expiry: None, revoke_proposed: None });
        }
        Ok(Lessor { inner: Mutex::new(inner), min_ttl: min_ttl.max(1) })
    }

    /// Replaces the leases with the store's after a snapshot install (deadlines restart if primary).
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Lessor::load(store, self.min_ttl)?;
        let fresh = fresh.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        let primary = {
            let mut inner = self.lock();
            inner.leases = fresh.leases;
            inner.primary
        };
        if primary {
            self.promote();
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TTL actually granted for a request: raised to the minimum, refused above the maximum.
    pub fn effective_ttl(&self, requested: i64) -> Result<i64> {
        if requested > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        Ok(requested.max(self.min_ttl))
    }

    /// True when lease `id` exists.
    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Applies a grant (apply thread): records the lease in the same batch as the entry.
    pub fn apply_grant(&self, txn: &mut WriteTxn<'_>, id: i64, ttl: i64) -> Result<Lease> {
        let mut inner = self.lock();
        if inner.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        txn.set_meta(&meta_key(id), Some(ttl.to_be_bytes().to_vec()));
        let expiry = inner.primary.then(|| Instant::now() + Duration::from_secs(ttl as u64));
        let lease = Lease { id, ttl, expiry, revoke_proposed: None };
        inner.leases.insert(id, lease.clone());
        Ok(lease)
    }

    /// Applies a revoke (apply thread): forgets the lease; the caller deletes its keys in the same txn.
    pub fn apply_revoke(&self, txn: &mut WriteTxn<'_>, id: i64) -> Result<()> {
        let mut inner = self.lock();
        if inner.leases.remove(&id).is_none() {
            return Err(Error::LeaseNotFound);
        }
        txn.set_meta(&meta_key(id), None);
        Ok(())
    }

    /// This member became leader: every lease gets a full TTL from now.
    pub fn promote(&self) {
        let mut inner = self.lock();
        inner.primary = true;
        let now = Instant::now();
        for l in inner.leases.values_mut() {
            l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
            l.revoke_proposed = None;
        }
    }

    /// This member stopped leading: no deadlines are kept.
    pub fn demote(&self) {
        let mut inner = self.lock();
        inner.primary = false;
        for l in inner.leases.values_mut() {
            l.expiry = None;
            l.revoke_proposed = None;
        }
    }

    /// True when this lessor keeps deadlines (this member leads).
    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// Keep-alive: restarts the lease's TTL and returns it. Leader only.
    pub fn renew(&self, id: i64) -> Result<i64> {
        let mut inner = self.lock();
        if !inner.primary {
            return Err(Error::NotLeader);
        }
        let now = Instant::now();
        let l = inner.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if l.expiry.is_some_and(|e| e <= now) {
            // Expired: its revoke is on its way.
            return Err(Error::LeaseNotFound);
        }
        l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
        Ok(l.ttl)
    }

    /// (granted TTL, remaining seconds) of a lease; remaining is the full TTL on a non-leader.
    pub fn time_to_live(&self, id: i64) -> Option<(i64, i64)> {
        let inner = self.lock();
        let l = inner.leases.get(&id)?;
        let remaining = match l.expiry {
            // Truncated, as etcd reports it.
            Some(e) => e.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => l.ttl,
        };
        Some((l.ttl, remaining))
    }

    /// Ids of all leases.
    pub fn ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.lock().leases.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Leader only: up to `max` expired leases whose revoke should be proposed now.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let mut inner = self.lock();
        if !inner.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for l in inner.leases.values_mut() {
            if out.len() >= max {
                break;
            }
            let expired = l.expiry.is_some_and(|e| e <= now);
            let retry_due = l.revoke_proposed.is_none_or(|t| now.duration_since(t) >= REVOKE_RETRY);
            if expired && retry_due {
                l.revoke_proposed = Some(now);
                out.push(l.id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let db = sled::Config::new().temporary(true).open().unwrap();
        Store::open(db.open_tree("state").unwrap()).unwrap()
    }

    #[test]
    fn grant_revoke_and_reload() {
        let s = store();
        let l = Lessor::load(&s, 2).unwrap();
        let ok = |_: i64| true;
        let mut txn = s.begin(1, &ok);
        assert_eq!(l.apply_grant(&mut txn, 7, 1).unwrap().ttl, 2, "raised to the minimum TTL");
        assert_eq!(l.apply_grant(&mut txn, 7, 5), Err(Error::LeaseExists));
        txn.commit().unwrap();
        let reloaded = Lessor::load(&s, 2).unwrap();
        assert_eq!(reloaded.ids(), vec![7]);
        let mut txn = s.begin(2, &ok);
        l.apply_revoke(&mut txn, 7).unwrap();
        assert_eq!(l.apply_revoke(&mut txn, 7), Err(Error::LeaseNotFound));
        txn.commit().unwrap();
        assert!(Lessor::load(&s, 2).unwrap().ids().is_empty());
    }

    #[test]
    fn only_the_primary_expires_and_renews() {
        let s = store();
        let l = Lessor::load(&s, 1).unwrap();
        let ok = |_: i64| true;
        let mut txn = s.begin(1, &ok);
        l.apply_grant(&mut txn, 1, 1).unwrap();
        txn.commit().unwrap();
        assert_eq!(l.renew(1), Err(Error::NotLeader));
        assert!(l.take_expired(10).is_empty());
        l.promote();
        assert_eq!(l.renew(1).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.take_expired(10), vec![1]);
        assert!(l.take_expired(10).is_empty(), "not proposed twice within the retry interval");
        assert_eq!(l.renew(1), Err(Error::LeaseNotFound));
        l.demote();
        l.promote();
        assert_eq!(l.time_to_live(1).unwrap().0, 1);
    }

    #[test]
    fn ttl_limits() {
        let s = store();
        let l = Lessor::load(&s, 5).unwrap();
        assert_eq!(l.effective_ttl(1).unwrap(), 5);
        assert_eq!(l.effective_ttl(MAX_LEASE_TTL + 1), Err(Error::LeaseTtlTooLarge));
    }
}
