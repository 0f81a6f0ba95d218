//! `del [options] <key> [range_end]`.

use clap::Args;
use raftcd_proto::etcdserverpb::DeleteRangeRequest;

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `del` flags.
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "delete keys with matching prefix")]
    pub prefix: bool,
    #[arg(long = "prev-kv", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "return deleted key-value pairs")]
    pub prev_kv: bool,
    #[arg(long = "from-key", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "delete keys that are greater than or equal to the given key using byte compare")]
    pub from_key: bool,
    /// `<key> [range_end]`.
    pub args: Vec<String>,
}

/// The DeleteRange request (etcdctl's `getDelOp`).
pub fn build(a: &DelArgs) -> CliResult<DeleteRangeRequest> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CliError::bad_args("del command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CliError::bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one"));
    }
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CliError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let (key, range_end) = super::get::key_range(&a.args[0], a.args.get(1).map(|s| s.as_str()), a.prefix, a.from_key);
    Ok(DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv })
}

/// Runs `del`.
pub async fn run(ctx: &mut Ctx, a: DelArgs) -> CliResult {
    let req = build(&a)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client.delete_range(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    printer.del(&mut ctx.out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DelArgs,
    }

    fn args(v: &[&str]) -> DelArgs {
        T::try_parse_from(std::iter::once("del").chain(v.iter().copied())).unwrap().a
    }

    #[test]
    fn builds() {
        assert_eq!(build(&args(&["k"])).unwrap(), DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() });
        let r = build(&args(&["--prefix", "--prev-kv", "a"])).unwrap();
        assert_eq!((r.key, r.range_end, r.prev_kv), (b"a".to_vec(), b"b".to_vec(), true));
        let r = build(&args(&["a", "z"])).unwrap();
        assert_eq!(r.range_end, b"z");
        let r = build(&args(&["--from-key", ""])).unwrap();
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
    }

    #[test]
    fn errors() {
        assert_eq!(build(&args(&[])).unwrap_err().code(), 128);
        assert_eq!(build(&args(&["a", "b", "c"])).unwrap_err().code(), 128);
        assert_eq!(build(&args(&["--prefix", "a", "b"])).unwrap_err().code(), 128);
    }
}
