//! `get [options] <key> [range_end]`.

use clap::Args;
use raftcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftcd_proto::etcdserverpb::RangeRequest;

use crate::cli::{go_bool, go_i64};
use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};
use crate::global::Ctx;

/// `get` flags.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    #[arg(long, value_name = "string", default_value = "l", help = "Linearizable(l) or Serializable(s)")]
    pub consistency: String,
    #[arg(
        long,
        value_name = "string",
        default_value = "",
        help = "Order of results; ASCEND or DESCEND (ASCEND by default)"
    )]
    pub order: String,
    #[arg(
        long = "sort-by",
        value_name = "string",
        default_value = "",
        help = "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"
    )]
    pub sort_by: String,
    #[arg(long, value_name = "int", default_value = "0", value_parser = go_i64, allow_negative_numbers = true, help = "Maximum number of results")]
    pub limit: i64,
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Get keys with matching prefix")]
    pub prefix: bool,
    #[arg(long = "from-key", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Get keys that are greater than or equal to the given key using byte compare")]
    pub from_key: bool,
    #[arg(long, value_name = "int", default_value = "0", value_parser = go_i64, allow_negative_numbers = true, help = "Specify the kv revision")]
    pub rev: i64,
    #[arg(long = "keys-only", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Get only the keys")]
    pub keys_only: bool,
    #[arg(long = "count-only", hide = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Get only the count")]
    pub count_only: bool,
    #[arg(long = "print-value-only", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Only write values when using the \"simple\" output format")]
    pub print_value_only: bool,
    /// `<key> [range_end]`.
    pub args: Vec<String>,
}

/// Applies `--prefix` / `--from-key` to a key and range end the way clientv3's options do.
pub fn key_range(key: &str, range_end: Option<&str>, prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    let mut k = key.as_bytes().to_vec();
    let mut end = range_end.map(|e| e.as_bytes().to_vec()).unwrap_or_default();
    if prefix {
        if k.is_empty() {
            k = vec![0];
            end = vec![0];
        } else {
            end = raftcd_client::range_end_for_prefix(&k);
        }
    }
    if from_key {
        if k.is_empty() {
            k = vec![0];
        }
        end = vec![0];
    }
    (k, end)
}

/// The Range request for `get` (etcdctl's `getGetOp`).
pub fn build(a: &GetArgs) -> CliResult<RangeRequest> {
    if a.args.is_empty() {
        return Err(CliError::bad_args("get command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CliError::bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one"));
    }
    let serializable = match a.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(CliError::new(
                EXIT_BAD_FEATURE,
                format!("unknown consistency flag {}", crate::gofmt::quote(other.as_bytes())),
            ))
        }
    };
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CliError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let mut sort_order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CliError::new(EXIT_BAD_FEATURE, format!("bad sort order {}", a.order))),
    };
    let sort_target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(CliError::new(EXIT_BAD_FEATURE, format!("bad sort target {}", a.sort_by))),
    };
    // clientv3.WithSort: key order ascending is the server's natural order.
    if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
        sort_order = SortOrder::None;
    }
    let (key, range_end) = key_range(&a.args[0], a.args.get(1).map(|s| s.as_str()), a.prefix, a.from_key);
    Ok(RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: if a.rev > 0 { a.rev } else { 0 },
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    })
}

/// Runs `get`.
pub async fn run(ctx: &mut Ctx, a: GetArgs) -> CliResult {
    let req = build(&a)?;
    let mut printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client.range(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    if a.print_value_only && !printer.set_value_only() {
        return Err(CliError::new(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`"));
    }
    printer.get(&mut ctx.out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: GetArgs,
    }

    fn args(v: &[&str]) -> GetArgs {
        T::try_parse_from(std::iter::once("get").chain(v.iter().copied())).unwrap().a
    }

    #[test]
    fn single_key() {
        let r = build(&args(&["foo"])).unwrap();
        assert_eq!(r, RangeRequest { key: b"foo".to_vec(), ..Default::default() });
    }

    #[test]
    fn prefix_and_options() {
        let r =
            build(&args(&["--prefix", "a", "--limit", "2", "--rev=3", "--keys-only", "--consistency", "s"])).unwrap();
        assert_eq!(r.key, b"a");
        assert_eq!(r.range_end, b"b");
        assert_eq!((r.limit, r.revision, r.keys_only, r.serializable), (2, 3, true, true));
        let r = build(&args(&["--prefix", ""])).unwrap();
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
        let r = build(&args(&["--from-key", "m"])).unwrap();
        assert_eq!((r.key, r.range_end), (b"m".to_vec(), vec![0]));
        let r = build(&args(&["a", "c"])).unwrap();
        assert_eq!(r.range_end, b"c");
    }

    #[test]
    fn sorting() {
        let r = build(&args(&["k", "--sort-by", "modify", "--order", "descend"])).unwrap();
        assert_eq!((r.sort_target, r.sort_order), (SortTarget::Mod as i32, SortOrder::Descend as i32));
        let r = build(&args(&["k", "--order", "ASCEND"])).unwrap();
        assert_eq!(r.sort_order, SortOrder::None as i32);
        assert_eq!(build(&args(&["k", "--order", "x"])).unwrap_err(), CliError::new(4, "bad sort order x"));
    }

    #[test]
    fn errors() {
        assert_eq!(build(&args(&[])).unwrap_err().code(), 128);
        assert_eq!(build(&args(&["--prefix", "--from-key", "a"])).unwrap_err().code(), 128);
        assert_eq!(build(&args(&["--prefix", "a", "b"])).unwrap_err().code(), 128);
        assert_eq!(
            build(&args(&["--consistency", "x", "a"])).unwrap_err(),
            CliError::new(4, "unknown consistency flag \"x\"")
        );
    }
}
