//! Property-based fuzzing of the edges that parse hostile input: request decoding and validation, the Txn
//! compare evaluator (against a model), snapshot files and restore, and peer raft messages.
//!
//! This is the "short fuzz run in CI": every property is bounded (`cases`) so the whole set runs in well
//! under a minute in a debug build. proptest rather than cargo-fuzz so that it runs on stable in the
//! ordinary `cargo test -p raftcd`. Set `PROPTEST_CASES` to run longer.

mod decode;
mod peer;
mod snapshot;
mod txn_compare;
