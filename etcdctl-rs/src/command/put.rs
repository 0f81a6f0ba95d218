//! `put [options] <key> <value>` (value from stdin when missing).

use clap::Args;
use raftcd_proto::etcdserverpb::PutRequest;

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// etcdctl's long description of `put`.
pub const LONG: &str = "
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
";

/// `put` flags.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    #[arg(long, value_name = "string", default_value = "0", help = "lease ID (in hexadecimal) to attach to the key")]
    pub lease: String,
    #[arg(long = "prev-kv", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "return the previous key-value pair before modification")]
    pub prev_kv: bool,
    #[arg(long = "ignore-value", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "updates the key using its current value")]
    pub ignore_value: bool,
    #[arg(long = "ignore-lease", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "updates the key using its current lease")]
    pub ignore_lease: bool,
    /// `<key> [value]`.
    pub args: Vec<String>,
}

const NEEDS_ARGS: &str = "put command needs 1 argument and input from stdin or 2 arguments";

/// The Put request (etcdctl's `getPutOp`); `stdin` supplies the value when it is not an argument.
pub fn build(a: &PutArgs, stdin: impl FnOnce() -> Option<String>) -> CliResult<PutRequest> {
    if a.args.is_empty() {
        return Err(CliError::bad_args(NEEDS_ARGS));
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CliError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let value = if a.ignore_value {
        String::new()
    } else {
        match a.args.get(1) {
            Some(v) => v.clone(),
            None => stdin().ok_or_else(|| CliError::bad_args(NEEDS_ARGS))?,
        }
    };
    let lease = crate::gofmt::parse_int_err(&a.lease, 16)
        .map_err(|e| CliError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: a.args[0].as_bytes().to_vec(),
        value: value.into_bytes(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// Runs `put`.
pub async fn run(ctx: &mut Ctx, a: PutArgs) -> CliResult {
    let req = build(&a, crate::command::stdin_all)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client.put(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    printer.put(&mut ctx.out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: PutArgs,
    }

    fn args(v: &[&str]) -> PutArgs {
        T::try_parse_from(std::iter::once("put").chain(v.iter().copied())).unwrap().a
    }

    #[test]
    fn key_value_and_flags() {
        let r = build(&args(&["k", "v", "--lease", "1f", "--prev-kv"]), || None).unwrap();
        assert_eq!(
            r,
            PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 0x1f, prev_kv: true, ..Default::default() }
        );
    }

    #[test]
    fn value_from_stdin_and_ignore_value() {
        let r = build(&args(&["k"]), || Some("from stdin\n".into())).unwrap();
        assert_eq!(r.value, b"from stdin\n");
        let r = build(&args(&["k", "--ignore-value"]), || panic!("stdin read")).unwrap();
        assert!(r.ignore_value && r.value.is_empty());
        assert_eq!(build(&args(&["k"]), || None).unwrap_err(), CliError::bad_args(NEEDS_ARGS));
        assert_eq!(build(&args(&["k", "v", "--ignore-value"]), || None).unwrap_err().code(), 128);
    }

    #[test]
    fn bad_lease() {
        assert_eq!(
            build(&args(&["k", "v", "--lease", "zz"]), || None).unwrap_err(),
            CliError::bad_args("bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex")
        );
    }

    #[test]
    fn dash_dash_value() {
        let r = build(&args(&["k", "--", "-v"]), || None).unwrap();
        assert_eq!(r.value, b"-v");
    }
}
