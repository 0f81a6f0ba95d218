//! `compaction [options] <revision>`.

use clap::Args;
use raftcd_proto::etcdserverpb::CompactionRequest;

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `compaction` flags.
#[derive(Debug, Clone, Args)]
pub struct CompactionArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "'true' to wait for compaction to physically remove all old revisions")]
    pub physical: bool,
    /// `<revision>`.
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
}

/// The Compaction request.
pub fn build(a: &CompactionArgs) -> CliResult<CompactionRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("compaction command needs 1 argument"));
    }
    let revision = crate::gofmt::parse_int_err(&a.args[0], 10).map_err(|e| CliError::new(EXIT_ERROR, e))?;
    Ok(CompactionRequest { revision, physical: a.physical })
}

/// Runs `compaction`.
pub async fn run(ctx: &mut Ctx, a: CompactionArgs) -> CliResult {
    let req = build(&a)?;
    let client = ctx.client().await?;
    let rev = req.revision;
    client.compact(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    ctx.out.line(&format!("compacted revision {rev}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds() {
        let a = CompactionArgs { physical: true, args: vec!["7".into()] };
        assert_eq!(build(&a).unwrap(), CompactionRequest { revision: 7, physical: true });
        let a = CompactionArgs { physical: false, args: vec!["x".into()] };
        assert_eq!(build(&a).unwrap_err(), CliError::new(1, "strconv.ParseInt: parsing \"x\": invalid syntax"));
        assert_eq!(build(&CompactionArgs { physical: false, args: vec![] }).unwrap_err().code(), 128);
    }
}
