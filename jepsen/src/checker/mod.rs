//! Checkers: a generic linearizability search ([`linear`]), the register model over which the register,
//! append and kubernetes histories are checked per key ([`register`]), and the workload-specific invariants
//! ([`append`], [`watch`], [`lease`], [`kubernetes`]).

pub mod append;
pub mod kubernetes;
pub mod lease;
pub mod linear;
pub mod register;
pub mod watch;

/// The result of one checker.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    /// The checker's name, e.g. "linearizable".
    pub name: String,
    /// true = valid, false = anomalies found.
    pub valid: bool,
    /// The check could not decide (e.g. the search timed out).
    pub unknown: bool,
    /// A one-line summary.
    pub summary: String,
    /// Details: counter-examples, lists of violations.
    pub details: Vec<String>,
}

impl CheckResult {
    /// A passing result.
    pub fn pass(name: &str, summary: impl Into<String>) -> CheckResult {
        CheckResult { name: name.into(), valid: true, unknown: false, summary: summary.into(), details: vec![] }
    }

    /// A result that passes when `problems` is empty.
    pub fn from_problems(name: &str, ok_summary: impl Into<String>, problems: Vec<String>) -> CheckResult {
        if problems.is_empty() {
            CheckResult::pass(name, ok_summary)
        } else {
            CheckResult {
                name: name.into(),
                valid: false,
                unknown: false,
                summary: format!("{} problem(s)", problems.len()),
                details: problems,
            }
        }
    }
}
