//! `report`: medians of a comparison run's JSON lines, as a Markdown table with subject/baseline ratios
//! and a hand-written SVG bar chart of those ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli::ReportArgs;

/// Whether a larger number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The metrics shown for a scenario: (JSON field, display name, direction).
pub fn metrics_for(scenario: &str) -> &'static [(&'static str, &'static str, Better)] {
    match scenario {
        "put" | "range" | "txn-put" | "txn-mixed" | "lease-keepalive" => &[
            ("ops_per_sec", "ops/s", Better::Higher),
            ("p50_ms", "p50 ms", Better::Lower),
            ("p99_ms", "p99 ms", Better::Lower),
            ("errors", "errors", Better::Lower),
        ],
        "load" => &[
            ("keys_per_sec", "keys/s", Better::Higher),
            ("p99_ms", "p99 ms", Better::Lower),
            ("errors", "errors", Better::Lower),
        ],
        "watch" | "watch-fanout" => &[
            ("p50_ms", "delivery p50 ms", Better::Lower),
            ("p99_ms", "delivery p99 ms", Better::Lower),
            ("missed", "missed events", Better::Lower),
        ],
        "footprint" => &[
            ("rss_mib_mean", "RSS MiB / member", Better::Lower),
            ("disk_mib_mean", "disk MiB / member", Better::Lower),
        ],
        "ready" => &[("secs", "seconds", Better::Lower)],
        "fsync" => &[("p50_ms", "p50 ms", Better::Lower), ("p99_ms", "p99 ms", Better::Lower)],
        _ => &[("ops_per_sec", "ops/s", Better::Higher)],
    }
}

/// One parsed result line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub label: String,
    pub system: String,
    pub scenario: String,
    pub round: String,
    pub fields: Value,
}

/// Parses the JSON lines of a run (lines that are not JSON objects with system and label tags are skipped).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter_map(|v| {
            let tag = |k: &str| v.get("tags").and_then(|t| t.get(k)).and_then(Value::as_str).map(str::to_string);
            Some(Sample {
                label: tag("label")?,
                system: tag("system")?,
                round: tag("round").unwrap_or_default(),
                scenario: v.get("scenario")?.as_str()?.to_string(),
                fields: v,
            })
        })
        .collect()
}

/// Median (mean of the middle two for an even count); None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// How many times better the subject is than the baseline (> 1 = subject better), given the ratio
/// subject/baseline and the metric's direction.
pub fn advantage(ratio: f64, better: Better) -> f64 {
    match better {
        Better::Higher => ratio,
        Better::Lower => 1.0 / ratio,
    }
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub scenario: String,
    pub metric: &'static str,
    pub name: &'static str,
    pub better: Better,
    pub subject: Vec<f64>,
    pub baseline: Vec<f64>,
}

impl Row {
    pub fn subject_median(&self) -> Option<f64> {
        median(&self.subject)
    }
    pub fn baseline_median(&self) -> Option<f64> {
        median(&self.baseline)
    }
    /// subject median / baseline median, when both exist and the baseline is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.subject_median(), self.baseline_median()) {
            (Some(s), Some(b)) if b != 0.0 => Some(s / b),
            _ => None,
        }
    }
}

/// Rows in the order labels first appear, metrics in their listed order.
pub fn rows(samples: &[Sample], subject: &str, baseline: &str) -> Vec<Row> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for s in samples {
        if (s.system == subject || s.system == baseline) && !labels.iter().any(|(l, _)| *l == s.label) {
            labels.push((s.label.clone(), s.scenario.clone()));
        }
    }
    let mut out = Vec::new();
    for (label, scenario) in labels {
        for &(metric, name, better) in metrics_for(&scenario) {
            let values = |system: &str| -> Vec<f64> {
                samples
                    .iter()
                    .filter(|s| s.label == label && s.system == system)
                    .filter_map(|s| s.fields.get(metric).and_then(Value::as_f64))
                    .collect()
            };
            let row = Row {
                label: label.clone(),
                scenario: scenario.clone(),
                metric,
                name,
                better,
                subject: values(subject),
                baseline: values(baseline),
            };
            if !row.subject.is_empty() || !row.baseline.is_empty() {
                out.push(row);
            }
        }
    }
    out
}

/// A number for a table: no more digits than meaningful.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), fmt_num)
}

fn verdict(r: &Row) -> &'static str {
    match r.ratio() {
        None => "",
        Some(x) => {
            let adv = advantage(x, r.better);
            if (0.95..=1.0 / 0.95).contains(&adv) {
                "≈"
            } else if adv > 1.0 {
                "raftcd better"
            } else {
                "etcd better"
            }
        }
    }
}

/// The Markdown report.
pub fn markdown(a: &ReportArgs, samples: &[Sample], svg_name: &str) -> String {
    let floor_label = a.floor_label.as_str();
    let (subj, base) = (a.subject.as_str(), a.baseline.as_str());
    let rows = rows(samples, subj, base);
    let rounds = samples.iter().map(|s| s.round.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let mut s = String::new();
    let _ = writeln!(s, "# {subj} vs {base}\n");
    for (k, v) in &a.meta {
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    let _ = writeln!(s, "- **rounds**: {rounds} (each cell is the median over rounds; the systems ran alternately)\n");
    let _ = writeln!(
        s,
        "Ratio = {subj} / {base}. For throughput higher is better, for latency, memory, disk and time lower is better; \
         the last column says which way the ratio points (≈ = within 5%). Latency percentiles cover the requests \
         that succeeded; failed ones are counted under errors (their latency is the `error` class in the raw lines).\n"
    );
    let _ = writeln!(s, "![{subj}/{base} chart]({svg_name})\n");
    let _ = writeln!(s, "| scenario | metric | {subj} | {base} | {subj}/{base} | |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for r in rows.iter().filter(|r| r.scenario != "fsync") {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.label,
            r.name,
            opt(r.subject_median()),
            opt(r.baseline_median()),
            r.ratio().map_or_else(|| "—".into(), |x| format!("{x:.2}")),
            verdict(r)
        );
    }
    // The fsync floor: what one durable write costs on this disk, and how many of those a put takes.
    let fsync: Vec<&Sample> = samples.iter().filter(|s| s.scenario == "fsync").collect();
    if !fsync.is_empty() {
        let _ = writeln!(s, "\n## Disk fsync floor\n");
        let mut by_label: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut p99: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for f in &fsync {
            by_label.entry(&f.label).or_default().extend(f.fields.get("p50_ms").and_then(Value::as_f64));
            p99.entry(&f.label).or_default().extend(f.fields.get("p99_ms").and_then(Value::as_f64));
        }
        let _ = writeln!(s, "| probe | p50 ms | p99 ms |\n|---|---:|---:|");
        for (label, v) in &by_label {
            let _ = writeln!(s, "| {label} | {} | {} |", opt(median(v)), opt(median(&p99[label])));
        }
        let floor = by_label.iter().find(|(l, _)| !l.contains("append")).and_then(|(_, v)| median(v));
        if let Some(floor) = floor.filter(|f| *f > 0.0) {
            let _ = writeln!(s);
            for r in rows.iter().filter(|r| r.label == floor_label && r.metric == "p50_ms") {
                for (sys, v) in [(subj, r.subject_median()), (base, r.baseline_median())] {
                    if let Some(v) = v {
                        let _ = writeln!(
                            s,
                            "- {sys}: single-client put p50 {} ms = {:.1}× the write+fdatasync p50 ({} ms)",
                            fmt_num(v),
                            v / floor,
                            fmt_num(floor)
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(s, "\n## Every round\n");
    let _ = writeln!(s, "| scenario | metric | {subj} | {base} |\n|---|---|---|---|");
    let join = |v: &[f64]| v.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(" / ");
    for r in &rows {
        let _ = writeln!(s, "| {} | {} | {} | {} |", r.label, r.name, join(&r.subject), join(&r.baseline));
    }
    s
}

/// Escapes text for SVG.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Largest advantage shown (bars are clamped beyond 16× either way).
const MAX_LOG2: f64 = 4.0;

/// A horizontal bar per row with a ratio: log2 of the subject's advantage, right (green) = subject better.
pub fn svg(rows: &[Row], subject: &str, baseline: &str) -> String {
    let rows: Vec<(&Row, f64, f64)> = rows
        .iter()
        .filter(|r| r.scenario != "fsync")
        .filter_map(|r| r.ratio().filter(|x| *x > 0.0 && x.is_finite()).map(|x| (r, x, advantage(x, r.better))))
        .collect();
    let (left, plot_w, row_h, top) = (300.0, 560.0, 22.0, 58.0);
    let width = left + plot_w + 40.0;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let mid = left + plot_w / 2.0;
    let x_of = |adv: f64| mid + adv.log2().clamp(-MAX_LOG2, MAX_LOG2) / MAX_LOG2 * (plot_w / 2.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{} relative to {} (medians; right = {} better)</text>"##,
        width / 2.0,
        xml_escape(subject),
        xml_escape(baseline),
        xml_escape(subject)
    );
    for k in -4i32..=4 {
        let adv = 2f64.powi(k);
        let x = x_of(adv);
        let label = if k >= 0 { format!("{}×", 1 << k) } else { format!("1/{}×", 1 << -k) };
        let stroke = if k == 0 { "#333" } else { "#ddd" };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{stroke}"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#666">{label}</text>"##,
            top - 8.0,
            top + row_h * rows.len() as f64,
            top - 14.0
        );
    }
    for (i, (r, ratio, adv)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let x = x_of(*adv);
        let (x0, w) = if x >= mid { (mid, x - mid) } else { (x, mid - x) };
        let color = if *adv >= 1.0 { "#2e7d32" } else { "#c62828" };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 8.0,
            y + row_h * 0.65,
            xml_escape(&format!("{} — {}", r.label, r.name))
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"##,
            y + 3.0,
            w.max(1.0),
            row_h - 6.0
        );
        let (tx, anchor) = if x >= mid { (x + 4.0, "start") } else { (x - 4.0, "end") };
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#333">{:.2}</text>"##,
            y + row_h * 0.65,
            ratio
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{:.1}" text-anchor="middle" fill="#666">bar = how many times better {} is (log scale); label = {}/{} ratio of the raw numbers</text>"##,
        width / 2.0,
        height - 12.0,
        xml_escape(subject),
        xml_escape(subject),
        xml_escape(baseline)
    );
    s.push_str("</svg>\n");
    s
}

/// `report`: reads the run's JSON lines and writes the Markdown and SVG files.
pub fn report(a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let samples = parse_samples(&text);
    if samples.is_empty() {
        bail!("no tagged result lines in {}", a.input.display());
    }
    let svg_name = a.svg.file_name().map_or_else(|| "chart.svg".into(), |n| n.to_string_lossy().to_string());
    std::fs::write(&a.md, markdown(a, &samples, &svg_name)).with_context(|| format!("writing {}", a.md.display()))?;
    std::fs::write(&a.svg, svg(&rows(&samples, &a.subject, &a.baseline), &a.subject, &a.baseline))
        .with_context(|| format!("writing {}", a.svg.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(system: &str, round: u32, label: &str, scenario: &str, fields: &str) -> String {
        format!(
            r#"{{"scenario":"{scenario}",{fields},"tags":{{"system":"{system}","round":"{round}","label":"{label}"}}}}"#
        )
    }

    fn sample_text() -> String {
        [
            line("raftcd", 1, "put-1c", "put", r#""ops_per_sec":100.0,"p50_ms":4.0,"p99_ms":9.0"#),
            line("etcd", 1, "put-1c", "put", r#""ops_per_sec":200.0,"p50_ms":2.0,"p99_ms":3.0"#),
            line("raftcd", 2, "put-1c", "put", r#""ops_per_sec":300.0,"p50_ms":6.0,"p99_ms":9.0"#),
            line("etcd", 2, "put-1c", "put", r#""ops_per_sec":200.0,"p50_ms":2.0,"p99_ms":3.0"#),
            line("raftcd", 1, "rss", "footprint", r#""rss_mib_mean":50.0"#),
            line("etcd", 1, "rss", "footprint", r#""rss_mib_mean":100.0"#),
            line("disk", 1, "fsync", "fsync", r#""p50_ms":1.0,"p99_ms":2.0"#),
            "not json".to_string(),
            r#"{"scenario":"put","ops":1}"#.to_string(),
        ]
        .join("\n")
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn parsing_skips_untagged_lines() {
        let s = parse_samples(&sample_text());
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].label, "put-1c");
        assert_eq!(s[0].round, "1");
    }

    #[test]
    fn rows_and_ratios() {
        let rows = rows(&parse_samples(&sample_text()), "raftcd", "etcd");
        let tput = rows.iter().find(|r| r.label == "put-1c" && r.metric == "ops_per_sec").unwrap();
        assert_eq!(tput.subject_median(), Some(200.0));
        assert_eq!(tput.ratio(), Some(1.0));
        let p50 = rows.iter().find(|r| r.label == "put-1c" && r.metric == "p50_ms").unwrap();
        assert_eq!(p50.ratio(), Some(2.5));
        assert!((advantage(2.5, Better::Lower) - 0.4).abs() < 1e-12);
        let rss = rows.iter().find(|r| r.label == "rss").unwrap();
        assert_eq!(rss.ratio(), Some(0.5));
        assert_eq!(verdict(rss), "raftcd better");
        assert_eq!(verdict(p50), "etcd better");
        assert_eq!(verdict(tput), "≈");
        assert!(rows.iter().all(|r| r.label != "fsync" || r.subject.is_empty()));
    }

    #[test]
    fn markdown_and_svg() {
        let a = ReportArgs {
            input: "x".into(),
            md: "x.md".into(),
            svg: "x.svg".into(),
            subject: "raftcd".into(),
            baseline: "etcd".into(),
            floor_label: "put-1c".into(),
            meta: vec![("date".into(), "today".into())],
        };
        let samples = parse_samples(&sample_text());
        let md = markdown(&a, &samples, "x.svg");
        assert!(md.contains("| put-1c | ops/s | 200.0 | 200.0 | 1.00 | ≈ |"), "{md}");
        assert!(md.contains("| rss | RSS MiB / member | 50.00 | 100.0 | 0.50 | raftcd better |"), "{md}");
        assert!(md.contains("- **date**: today"));
        assert!(md.contains("![raftcd/etcd chart](x.svg)"));
        assert!(md.contains("raftcd: single-client put p50 5.00 ms = 5.0× the write+fdatasync p50 (1.00 ms)"), "{md}");
        assert!(md.contains("| put-1c | ops/s | 100.0 / 300.0 | 200.0 / 200.0 |"), "{md}");
        let svg = svg(&rows(&samples, "raftcd", "etcd"), "raftcd", "etcd");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 4, "background plus one bar per row with a ratio");
        assert!(svg.contains("put-1c — p50 ms"));
        assert!(svg.contains("#c62828") && svg.contains("#2e7d32"));
    }

    #[test]
    fn escaping_and_numbers() {
        assert_eq!(xml_escape(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(fmt_num(12345.6), "12346");
        assert_eq!(fmt_num(123.45), "123.5");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.01234), "0.012");
        assert_eq!(fmt_num(0.0), "0");
    }
}
