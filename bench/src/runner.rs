//! The closed-loop driver: `--clients` tasks, each with one request in flight, until `--total` requests
//! have been issued or `--duration` has passed, optionally paced to `--rate` requests per second overall.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Result;

use crate::cli::{Global, Limit};
use crate::report::{ErrorSamples, Latency, Report};

/// What one request reports: on success, optionally a class name to break the latency down by
/// (e.g. "read" or "write").
pub type OpResult = Result<Option<&'static str>, tonic::Status>;
/// One request in flight.
pub type OpFuture = Pin<Box<dyn Future<Output = OpResult> + Send>>;

/// When a run stops and how fast it may go.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub limit: Limit,
    /// Requests per second over all clients; 0 = unlimited.
    pub rate: f64,
}

impl Plan {
    pub fn from_global(g: &Global) -> Plan {
        Plan { limit: g.limit(), rate: g.rate }
    }
}

/// The instant at which request number `op` may start under a global `rate` (requests/s).
pub fn pace_offset(op: u64, rate: f64) -> Duration {
    if rate > 0.0 {
        Duration::from_secs_f64(op as f64 / rate)
    } else {
        Duration::ZERO
    }
}

struct ClientResult {
    ops: u64,
    errors: u64,
    latency: Latency,
    classes: BTreeMap<&'static str, Latency>,
    samples: ErrorSamples,
}

/// Runs one task per element of `clients`; each calls its closure with the global request number until
/// the plan says stop. Request numbers are handed out from one counter, so with `--total N` exactly N
/// requests are issued in all.
pub async fn closed_loop<C>(scenario: &str, plan: Plan, conns: u64, clients: Vec<C>) -> Result<Report>
where
    C: FnMut(u64) -> OpFuture + Send + 'static,
{
    let n_clients = clients.len() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match plan.limit {
        Limit::Duration(d) => Some(start + d),
        Limit::Total(_) => None,
    };
    let total = match plan.limit {
        Limit::Total(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let mut tasks = Vec::with_capacity(clients.len());
    for mut op_fn in clients {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = ClientResult {
                ops: 0,
                errors: 0,
                latency: Latency::new(),
                classes: BTreeMap::new(),
                samples: ErrorSamples::default(),
            };
            loop {
                let op = next.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| op >= t) {
                    break;
                }
                if plan.rate > 0.0 {
                    let at = start + pace_offset(op, plan.rate);
                    if deadline.is_some_and(|d| at >= d) {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let t = Instant::now();
                match op_fn(op).await {
                    Ok(class) => {
                        let el = t.elapsed();
                        r.ops += 1;
                        r.latency.record(el);
                        if let Some(c) = class {
                            r.classes.entry(c).or_default().record(el);
                        }
                    }
                    Err(s) => {
                        r.errors += 1;
                        r.classes.entry("error").or_default().record(t.elapsed());
                        r.samples.note(format!("{:?}: {}", s.code(), s.message()));
                    }
                }
            }
            r
        }));
    }
    let mut report = Report::new(scenario, n_clients, conns);
    let mut classes: BTreeMap<&'static str, Latency> = BTreeMap::new();
    let mut samples = ErrorSamples::default();
    for t in tasks {
        let r = t.await?;
        report.ops += r.ops;
        report.errors += r.errors;
        report.latency.add(&r.latency);
        for (c, l) in r.classes {
            classes.entry(c).or_default().add(&l);
        }
        samples.merge(r.samples);
    }
    report.elapsed = start.elapsed();
    report.classes = classes.into_iter().map(|(c, l)| (c.to_string(), l)).collect();
    report.error_samples = samples.0;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting_clients(n: usize, fail_every: u64) -> Vec<impl FnMut(u64) -> OpFuture + Send + 'static> {
        (0..n)
            .map(move |_| {
                move |op: u64| -> OpFuture {
                    Box::pin(async move {
                        tokio::task::yield_now().await;
                        if fail_every > 0 && op % fail_every == 0 {
                            Err(tonic::Status::unavailable("nope"))
                        } else if op % 2 == 0 {
                            Ok(Some("even"))
                        } else {
                            Ok(None)
                        }
                    })
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn total_is_exact_over_all_clients() {
        let plan = Plan { limit: Limit::Total(1000), rate: 0.0 };
        let r = closed_loop("t", plan, 2, counting_clients(7, 0)).await.unwrap();
        assert_eq!(r.ops, 1000);
        assert_eq!(r.errors, 0);
        assert_eq!(r.clients, 7);
        assert_eq!(r.conns, 2);
        assert_eq!(r.latency.count(), 1000);
        assert_eq!(r.classes.len(), 1, "no error class without errors");
        assert_eq!(r.classes[0].0, "even");
        assert_eq!(r.classes[0].1.count(), 500);
    }

    #[tokio::test]
    async fn errors_are_counted_and_sampled() {
        let plan = Plan { limit: Limit::Total(100), rate: 0.0 };
        let r = closed_loop("t", plan, 1, counting_clients(3, 10)).await.unwrap();
        assert_eq!(r.ops + r.errors, 100);
        assert_eq!(r.errors, 10);
        assert_eq!(r.classes.iter().find(|(c, _)| c == "error").unwrap().1.count(), 10, "failures timed apart");
        assert_eq!(r.error_samples.len(), 1);
        assert_eq!(r.error_samples[0].1, 10);
        assert!(r.error_samples[0].0.contains("nope"));
    }

    #[tokio::test(start_paused = true)]
    async fn duration_and_rate_bound_the_run() {
        // With the clock paused, time only moves when every task sleeps: the rate decides the count.
        let plan = Plan { limit: Limit::Duration(Duration::from_secs(2)), rate: 50.0 };
        let r = closed_loop("t", plan, 1, counting_clients(4, 0)).await.unwrap();
        assert_eq!(r.ops, 100, "50/s for 2 s");
    }

    #[test]
    fn pacing() {
        assert_eq!(pace_offset(10, 0.0), Duration::ZERO);
        assert_eq!(pace_offset(10, 100.0), Duration::from_millis(100));
    }
}
