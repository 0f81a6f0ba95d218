//! Forwards raft-rs's slog records into `tracing`, so the server has one log stream.

use slog::{Drain, Level, OwnedKVList, Record};

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft_rs", "{msg}"),
            Level::Warning => tracing::warn!(target: "raft_rs", "{msg}"),
            Level::Info => tracing::info!(target: "raft_rs", "{msg}"),
            Level::Debug => tracing::debug!(target: "raft_rs", "{msg}"),
            Level::Trace => tracing::trace!(target: "raft_rs", "{msg}"),
        }
        Ok(())
    }
}

/// A slog logger for raft-rs that writes through tracing.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
