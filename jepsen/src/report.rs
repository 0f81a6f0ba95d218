//! The run directory: `history.jsonl` (every op), `watches.jsonl` (watch sessions), `timeline.jsonl` (fault
//! windows), `verdict.json` (each checker's result), `latency.svg` (latency over time, fault windows
//! shaded), `summary.md`, and the members' logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::checker::CheckResult;
use crate::history::{write_jsonl, Op, Outcome};
use crate::nemesis::FaultWindow;
use crate::workloads::{Output, Workload};

/// UTC `YYYYmmddTHHMMSS` for run directory names.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A fresh run directory `<root>/<timestamp>-<name>` (suffixed when taken).
pub fn run_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let base = format!("{}-{name}", timestamp());
    for i in 0..1000 {
        let d = if i == 0 { root.join(&base) } else { root.join(format!("{base}.{i}")) };
        if !d.exists() {
            std::fs::create_dir_all(&d)?;
            return Ok(d);
        }
    }
    anyhow::bail!("cannot create a run directory under {}", root.display())
}

/// Writes a slice of serializable items as JSON lines.
pub fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut s = String::new();
    for i in items {
        s.push_str(&serde_json::to_string(i)?);
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn fault_color(fault: &str) -> &'static str {
    match fault.split_whitespace().next().unwrap_or("") {
        "kill" => "#d62728",
        "pause" => "#ff7f0e",
        "partition" => "#1f77b4",
        "member" => "#9467bd",
        "compact" => "#7f7f7f",
        _ => "#bcbd22",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The latency plot: one dot per op (x = invocation time, y = latency, log scale; green ok, orange info,
/// red fail) over shaded fault windows.
pub fn latency_svg(ops: &[Op], timeline: &[FaultWindow], title: &str) -> String {
    let (w, h) = (1200.0f64, 520.0f64);
    let (ml, mr, mt, mb) = (70.0, 20.0, 50.0, 50.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let t_end =
        ops.iter().map(|o| o.complete).chain(timeline.iter().map(|f| f.end)).max().unwrap_or(1).max(1) as f64 / 1e9;
    let max_ms = ops.iter().map(|o| o.latency() as f64 / 1e6).fold(1.0f64, f64::max);
    let (lo, hi) = (-1.0f64, max_ms.log10().ceil().max(1.0));
    let x = |t: f64| ml + pw * (t / t_end).clamp(0.0, 1.0);
    let y = |ms: f64| mt + ph * (1.0 - ((ms.max(0.1).log10() - lo) / (hi - lo)).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{ml}" y="20" font-size="15">{}</text>"#, esc(title));
    for (i, f) in timeline.iter().enumerate() {
        let (x0, x1) = (x(f.start as f64 / 1e9), x(f.end as f64 / 1e9).max(x(f.start as f64 / 1e9) + 1.0));
        let c = fault_color(&f.fault);
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{mt}" width="{:.1}" height="{ph}" fill="{c}" fill-opacity="0.15"><title>{}</title></rect>"#,
            x1 - x0,
            esc(&format!("{} {} {}", f.fault, nodes(&f.members), f.detail))
        );
        let ty = mt - 4.0 - (i % 2) as f64 * 12.0;
        let _ = writeln!(s, r#"<text x="{x0:.1}" y="{ty}" fill="{c}" font-size="10">{}</text>"#, esc(&f.fault));
    }
    // Axes and grid.
    let _ = writeln!(s, r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let mut d = lo as i64;
    while d as f64 <= hi {
        let yy = y(10f64.powi(d as i32));
        let label = if d < 0 { format!("{}", 10f64.powi(d as i32)) } else { format!("{}", 10i64.pow(d as u32)) };
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            ml + pw,
            ml - 6.0,
            yy + 4.0
        );
        d += 1;
    }
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|st| t_end / st <= 12.0)
        .unwrap_or(1200.0);
    let mut t = 0.0;
    while t <= t_end {
        let xx = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t}</text>"##,
            mt + ph,
            mt + ph + 5.0,
            mt + ph + 18.0
        );
        t += step;
    }
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"#, ml + pw / 2.0, h - 10.0);
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    // Dots: every failure and info op, ok ops thinned to at most ~20000.
    let ok = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let every = ok / 20_000 + 1;
    let mut k = 0usize;
    for o in ops {
        let c = match o.outcome {
            Outcome::Ok => {
                k += 1;
                if !k.is_multiple_of(every) {
                    continue;
                }
                "#2ca02c"
            }
            Outcome::Info => "#ff9900",
            Outcome::Fail => "#d62728",
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{c}" fill-opacity="0.6"/>"#,
            x(o.invoke as f64 / 1e9),
            y(o.latency() as f64 / 1e6)
        );
    }
    let lx = ml + pw - 190.0;
    for (i, (label, c)) in [("ok", "#2ca02c"), ("info (unknown)", "#ff9900"), ("fail", "#d62728")].iter().enumerate() {
        let ly = mt + 14.0 + i as f64 * 14.0;
        let _ = writeln!(
            s,
            r#"<circle cx="{lx}" cy="{:.1}" r="4" fill="{c}"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            ly - 4.0,
            lx + 8.0,
            ly
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nodes(m: &[usize]) -> String {
    m.iter().map(|i| format!("n{}", i + 1)).collect::<Vec<_>>().join(",")
}

/// Everything the summary tells.
pub struct SummaryInput<'a> {
    pub title: String,
    pub command: String,
    pub settings: Vec<(String, String)>,
    pub ops: &'a [Op],
    pub timeline: &'a [FaultWindow],
    pub checks: &'a [CheckResult],
    pub notes: &'a [String],
}

/// The summary.md text.
pub fn summary(inp: &SummaryInput<'_>) -> String {
    let mut s = String::new();
    let valid = inp.checks.iter().all(|c| c.valid && !c.unknown);
    let _ = writeln!(s, "# {}\n", inp.title);
    let _ = writeln!(
        s,
        "**Verdict: {}**\n",
        if valid {
            "PASS — every check passed"
        } else if inp.checks.iter().any(|c| !c.valid) {
            "FAIL — anomalies found"
        } else {
            "UNKNOWN — a check could not decide"
        }
    );
    let _ = writeln!(s, "Reproduce: `{}`\n", inp.command);
    let _ = writeln!(s, "| setting | value |\n|---|---|");
    for (k, v) in &inp.settings {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if !inp.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in inp.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(s, "\n## Checks\n");
    for c in inp.checks {
        let mark = if c.unknown {
            "?"
        } else if c.valid {
            "ok"
        } else {
            "FAIL"
        };
        let _ = writeln!(s, "- **{}** [{mark}]: {}", c.name, c.summary);
        if !c.details.is_empty() {
            let _ = writeln!(s, "\n```text");
            for d in c.details.iter().take(60) {
                let _ = writeln!(s, "{d}");
            }
            if c.details.len() > 60 {
                let _ = writeln!(s, "... {} more", c.details.len() - 60);
            }
            let _ = writeln!(s, "```\n");
        }
    }
    let _ = writeln!(s, "\n## Operations\n\n| f | ok | info | fail | p50 ms | p99 ms |\n|---|---|---|---|---|---|");
    let mut by_f: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in inp.ops {
        by_f.entry(o.call.f()).or_default().push(o);
    }
    for (f, v) in &by_f {
        let count = |oc: Outcome| v.iter().filter(|o| o.outcome == oc).count();
        let mut lat: Vec<u64> = v.iter().filter(|o| o.outcome == Outcome::Ok).map(|o| o.latency()).collect();
        lat.sort_unstable();
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).map(|n| *n as f64 / 1e6);
        let _ = writeln!(
            s,
            "| {f} | {} | {} | {} | {} | {} |",
            count(Outcome::Ok),
            count(Outcome::Info),
            count(Outcome::Fail),
            pct(0.5).map(|v| format!("{v:.1}")).unwrap_or_default(),
            pct(0.99).map(|v| format!("{v:.1}")).unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\n## Faults\n");
    if inp.timeline.is_empty() {
        let _ = writeln!(s, "none");
    } else {
        let _ = writeln!(s, "| start s | end s | fault | members | detail |\n|---|---|---|---|---|");
        for f in inp.timeline {
            let _ = writeln!(
                s,
                "| {:.2} | {:.2} | {} | {} | {} |",
                f.start as f64 / 1e9,
                f.end as f64 / 1e9,
                f.fault,
                nodes(&f.members),
                f.detail.replace('|', "/")
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Files\n\n- `history.jsonl`: every operation\n- `watches.jsonl`: watch sessions\n- `reference.jsonl`: \
         the watch workload's committed history\n- `timeline.jsonl`: fault windows\n- `run.json`: the workload and \
         its final phase\n- `verdict.json`: checker results\n- `latency.svg`: latency over time, faults shaded\n- \
         `cluster/*.log`: member logs"
    );
    s
}

/// Reads JSON lines (an absent file is empty).
pub fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, line) in std::fs::read_to_string(path)?.lines().enumerate() {
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?);
        }
    }
    Ok(out)
}

/// Writes the run directory's files.
#[allow(clippy::too_many_arguments)]
pub fn write_all(
    dir: &Path,
    workload: Workload,
    ops: &[Op],
    output: &Output,
    timeline: &[FaultWindow],
    checks: &[CheckResult],
    summary_md: &str,
    title: &str,
) -> Result<()> {
    write_jsonl(&dir.join("history.jsonl"), ops)?;
    write_lines(&dir.join("watches.jsonl"), &output.sessions)?;
    write_lines(&dir.join("reference.jsonl"), &output.reference)?;
    write_lines(&dir.join("timeline.jsonl"), timeline)?;
    let small = Output { sessions: vec![], reference: vec![], ..output.clone() };
    let run = serde_json::json!({ "workload": workload, "output": small });
    std::fs::write(dir.join("run.json"), serde_json::to_string_pretty(&run)?)?;
    std::fs::write(dir.join("verdict.json"), serde_json::to_string_pretty(checks)?)?;
    std::fs::write(dir.join("latency.svg"), latency_svg(ops, timeline, title))?;
    std::fs::write(dir.join("summary.md"), summary_md)?;
    Ok(())
}
