//! Latency histograms and the result of one scenario: a human table and one machine-readable JSON line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// Latencies in microseconds, 1 µs to 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency::default()
    }

    /// Records one latency (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros().min(u64::MAX as u128) as u64);
    }

    /// Records one latency in microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub fn add(&mut self, other: &Latency) {
        // Both have the same bounds, so this cannot fail.
        self.0.add(&other.0).expect("histograms with equal bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Summary statistics in milliseconds (all zero when empty).
    pub fn stats(&self) -> LatencyStats {
        if self.0.is_empty() {
            return LatencyStats::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyStats {
            count: self.0.len(),
            min_ms: ms(self.0.min()),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of one histogram in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    #[serde(skip)]
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Result of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    /// Successful operations (what the throughput counts).
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub clients: u64,
    pub conns: u64,
    /// Latency of every successful operation.
    pub latency: Latency,
    /// Further latency breakdowns, e.g. "read" and "write" for txn-mixed.
    pub classes: Vec<(String, Latency)>,
    /// Scenario-specific numbers and facts (e.g. "missed" for watch-fanout).
    pub extra: BTreeMap<String, Value>,
    /// A few distinct error messages with how often each occurred.
    pub error_samples: Vec<(String, u64)>,
    /// Labels from --tag.
    pub tags: BTreeMap<String, String>,
}

/// The JSON result line; field order is the order printed.
#[derive(Serialize)]
struct JsonLine<'a> {
    scenario: &'a str,
    ops: u64,
    errors: u64,
    secs: f64,
    ops_per_sec: f64,
    #[serde(flatten)]
    latency: LatencyStats,
    clients: u64,
    conns: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    classes: BTreeMap<&'a str, LatencyStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    error_samples: Vec<String>,
    #[serde(flatten)]
    extra: &'a BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
}

impl Report {
    pub fn new(scenario: &str, clients: u64, conns: u64) -> Report {
        Report {
            scenario: scenario.to_string(),
            ops: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            clients,
            conns,
            latency: Latency::new(),
            classes: Vec::new(),
            extra: BTreeMap::new(),
            error_samples: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    pub fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    /// Successful operations per second (0 for an empty or instantaneous run).
    pub fn ops_per_sec(&self) -> f64 {
        let s = self.secs();
        if s > 0.0 {
            self.ops as f64 / s
        } else {
            0.0
        }
    }

    /// Records a scenario-specific value.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_string(), value.into());
    }

    /// The one-line JSON summary (last line of the output, for scripts).
    pub fn json_line(&self) -> String {
        let line = JsonLine {
            scenario: &self.scenario,
            ops: self.ops,
            errors: self.errors,
            secs: round3(self.secs()),
            ops_per_sec: round3(self.ops_per_sec()),
            latency: rounded(self.latency.stats()),
            clients: self.clients,
            conns: self.conns,
            classes: self.classes.iter().map(|(n, l)| (n.as_str(), rounded(l.stats()))).collect(),
            error_samples: self.error_samples.iter().map(|(m, n)| format!("{n} x {}", truncate(m, 200))).collect(),
            extra: &self.extra,
            tags: &self.tags,
        };
        serde_json::to_string(&line).expect("serialisable")
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Summary: {} (clients {}, conns {})", self.scenario, self.clients, self.conns);
        let _ = writeln!(s, "  {:<14}{}", "ops", self.ops);
        let _ = writeln!(s, "  {:<14}{}", "errors", self.errors);
        let _ = writeln!(s, "  {:<14}{:.3}", "secs", self.secs());
        let _ = writeln!(s, "  {:<14}{:.1}", "ops/sec", self.ops_per_sec());
        for (k, v) in &self.extra {
            let _ = writeln!(s, "  {:<16}{}", k, v);
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<14}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut row = |name: &str, l: &Latency| {
            let st = l.stats();
            let _ = writeln!(
                s,
                "  {:<14}{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                st.count,
                fmt_ms(st.min_ms),
                fmt_ms(st.mean_ms),
                fmt_ms(st.p50_ms),
                fmt_ms(st.p90_ms),
                fmt_ms(st.p99_ms),
                fmt_ms(st.p999_ms),
                fmt_ms(st.max_ms)
            );
        };
        row("all", &self.latency);
        for (name, l) in &self.classes {
            row(name, l);
        }
        if !self.error_samples.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "  errors:");
            for (msg, n) in &self.error_samples {
                let _ = writeln!(s, "    {n:>8} x {msg}");
            }
        }
        s
    }
}

/// Keeps up to [`MAX_ERROR_SAMPLES`] distinct error messages with counts.
#[derive(Debug, Default, Clone)]
pub struct ErrorSamples(pub Vec<(String, u64)>);

pub const MAX_ERROR_SAMPLES: usize = 8;

impl ErrorSamples {
    pub fn note(&mut self, msg: String) {
        if let Some(e) = self.0.iter_mut().find(|(m, _)| *m == msg) {
            e.1 += 1;
        } else if self.0.len() < MAX_ERROR_SAMPLES {
            self.0.push((msg, 1));
        }
    }

    pub fn merge(&mut self, other: ErrorSamples) {
        for (m, n) in other.0 {
            if let Some(e) = self.0.iter_mut().find(|(x, _)| *x == m) {
                e.1 += n;
            } else if self.0.len() < MAX_ERROR_SAMPLES {
                self.0.push((m, n));
            }
        }
    }
}

/// Milliseconds with precision that suits the magnitude.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Rounds to 3 decimals (keeps the JSON short).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn rounded(s: LatencyStats) -> LatencyStats {
    LatencyStats {
        count: s.count,
        min_ms: round3(s.min_ms),
        mean_ms: round3(s.mean_ms),
        p50_ms: round3(s.p50_ms),
        p90_ms: round3(s.p90_ms),
        p99_ms: round3(s.p99_ms),
        p999_ms: round3(s.p999_ms),
        max_ms: round3(s.max_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> Latency {
        let mut l = Latency::new();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        l
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.002 + 1e-9
    }

    #[test]
    fn percentiles() {
        let st = filled().stats();
        assert_eq!(st.count, 1000);
        assert!(close(st.p50_ms, 500.0), "{st:?}");
        assert!(close(st.p90_ms, 900.0), "{st:?}");
        assert!(close(st.p99_ms, 990.0), "{st:?}");
        assert!(close(st.p999_ms, 999.0), "{st:?}");
        assert!(close(st.max_ms, 1000.0), "{st:?}");
        assert!(close(st.min_ms, 1.0), "{st:?}");
        assert!(close(st.mean_ms, 500.5), "{st:?}");
    }

    #[test]
    fn empty_and_tiny_values() {
        assert_eq!(Latency::new().stats(), LatencyStats::default());
        let mut l = Latency::new();
        l.record(Duration::from_nanos(10));
        assert_eq!(l.stats().min_ms, 0.001, "sub-microsecond latencies count as 1 µs");
        l.record(Duration::from_secs(10 * 3600));
        assert_eq!(l.count(), 2, "values above the range are clamped, not dropped");
    }

    #[test]
    fn merge() {
        let mut a = filled();
        a.add(&filled());
        assert_eq!(a.count(), 2000);
        assert!(close(a.stats().p50_ms, 500.0));
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let mut r = Report::new("put", 64, 8);
        r.ops = 1000;
        r.errors = 2;
        r.elapsed = Duration::from_millis(2000);
        r.latency = filled();
        r.set("missed", 0);
        r.tags.insert("system".into(), "raftcd".into());
        let line = r.json_line();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(r#"{"scenario":"put","ops":1000,"errors":2,"secs":2.0,"ops_per_sec":500.0,"#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        for k in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms", "min_ms", "max_ms", "clients", "conns"] {
            assert!(v[k].is_number(), "{k} missing in {line}");
        }
        assert_eq!(v["missed"], 0);
        assert_eq!(v["tags"]["system"], "raftcd");
        assert!(v.get("classes").is_none(), "no empty classes object");
        assert!(v.get("error_samples").is_none());
        r.error_samples.push(("Unavailable: x".into(), 2));
        let v: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["error_samples"][0], "2 x Unavailable: x");
    }

    #[test]
    fn json_line_classes() {
        let mut r = Report::new("txn-mixed", 1, 1);
        r.classes.push(("read".into(), filled()));
        let v: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert!((v["classes"]["read"]["p50_ms"].as_f64().unwrap() - 500.0).abs() < 1.0);
        assert_eq!(v["ops_per_sec"], 0.0, "no division by zero");
    }

    #[test]
    fn table_lists_rows() {
        let mut r = Report::new("txn-mixed", 4, 2);
        r.ops = 10;
        r.elapsed = Duration::from_secs(1);
        r.latency = filled();
        r.classes.push(("write".into(), filled()));
        r.error_samples.push(("boom".into(), 3));
        let t = r.table();
        assert!(t.contains("Summary: txn-mixed (clients 4, conns 2)"), "{t}");
        assert!(t.contains("ops/sec       10.0"), "{t}");
        assert!(t.contains("p99.9"));
        assert!(t.lines().any(|l| l.trim_start().starts_with("all ") && l.contains("500.")), "{t}");
        assert!(t.lines().any(|l| l.trim_start().starts_with("write ")));
        assert!(t.contains("3 x boom"));
    }

    #[test]
    fn error_samples_are_bounded() {
        let mut e = ErrorSamples::default();
        for i in 0..20 {
            e.note(format!("e{}", i % 10));
        }
        assert_eq!(e.0.len(), MAX_ERROR_SAMPLES);
        assert_eq!(e.0[0], ("e0".to_string(), 2));
        let mut f = ErrorSamples::default();
        f.note("e0".into());
        e.merge(f);
        assert_eq!(e.0[0].1, 3);
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a", "never splits a character");
    }

    #[test]
    fn ms_formatting() {
        assert_eq!(fmt_ms(0.1234), "0.123");
        assert_eq!(fmt_ms(12.345), "12.35");
        assert_eq!(fmt_ms(1234.56), "1234.6");
    }
}
