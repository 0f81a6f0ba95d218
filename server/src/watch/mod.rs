//! Watches: the hub that routes applied events to watchers, and catches up watchers that start in the past
//! or fell behind by reading the store's revision log.

pub mod hub;
pub mod range;

pub use hub::{WatchHub, WatcherSpec};
