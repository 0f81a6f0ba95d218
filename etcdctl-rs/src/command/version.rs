//! `version`.

use clap::Args;

use crate::exit::CliResult;
use crate::global::Ctx;
use crate::help::{API_VERSION, VERSION};

/// `version` takes no flags.
#[derive(Debug, Clone, Args)]
pub struct VersionArgs {
    /// Ignored.
    pub args: Vec<String>,
}

/// Runs `version`.
pub fn run(ctx: &mut Ctx) -> CliResult {
    ctx.out.line(&format!("etcdctl version: {VERSION}"));
    ctx.out.line(&format!("API version: {API_VERSION}"));
    Ok(())
}
