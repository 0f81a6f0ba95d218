//! Leases: TTL-bound ids that keys attach to. Grants and revokes go through raft; expiry is detected by the
//! leader alone, which proposes the revoke, so every member deletes the same keys at the same revision.

pub mod lessor;

pub use lessor::{Lease, Lessor, MAX_LEASE_TTL};
