//! Physical compaction in the background: removing superseded history is slow, so the apply thread only
//! records the compaction and hands the revision to this worker. Requests coalesce: the worker always
//! compacts to the newest revision asked for, so nothing queues up.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use tokio::sync::watch;

use crate::mvcc::Store;

#[derive(Default)]
struct Wanted {
    rev: Mutex<i64>,
    cv: Condvar,
}

/// Handle to the compaction worker.
#[derive(Clone)]
pub struct Compactor {
    wanted: Arc<Wanted>,
    done: watch::Receiver<i64>,
}

impl Compactor {
    /// Starts the worker thread; it resumes an interrupted compaction first.
    pub fn start(store: Store) -> Compactor {
        let wanted = Arc::new(Wanted::default());
        let (done_tx, done) = watch::channel(store.compact_revision());
        if let Some(rev) = store.pending_compaction() {
            *wanted.rev.lock().unwrap_or_else(|p| p.into_inner()) = rev;
        }
        let w = wanted.clone();
        let spawned = thread::Builder::new().name("compactor".into()).spawn(move || {
            // Leftovers of an upgraded store (nothing reads them); before any compaction.
            let started = std::time::Instant::now();
            match store.remove_live_copies() {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "removed the live copies of store format 2"
                ),
                Err(e) => tracing::error!(error = %e, "could not remove the live copies of store format 2"),
            }
            let mut finished = 0i64;
            loop {
                let rev = {
                    let mut g = w.rev.lock().unwrap_or_else(|p| p.into_inner());
                    while *g <= finished {
                        g = w.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    *g
                };
                let started = std::time::Instant::now();
                match store.compact_physical(rev) {
                    Ok(()) => {
                        tracing::info!(
                            revision = rev,
                            took_ms = started.elapsed().as_millis() as u64,
                            "compaction finished"
                        );
                        done_tx.send_replace(rev);
                    }
                    Err(e) => tracing::error!(revision = rev, error = %e, "compaction failed"),
                }
                finished = rev;
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the compactor thread");
        }
        Compactor { wanted, done }
    }

    /// Asks for physical compaction up to `rev` (never blocks the apply thread).
    pub fn schedule(&self, rev: i64) {
        let mut g = self.wanted.rev.lock().unwrap_or_else(|p| p.into_inner());
        if rev > *g {
            *g = rev;
            self.wanted.cv.notify_one();
        }
    }

    /// Waits until physical compaction reached `rev` (for `physical=true`).
    pub async fn wait_done(&self, rev: i64) {
        let mut rx = self.done.clone();
        let _ = rx.wait_for(|d| *d >= rev).await;
    }
}
