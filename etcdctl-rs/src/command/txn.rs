//! `txn [options]`: reads compares, success ops and failure ops from stdin, each block ended by an empty
//! line, in etcdctl's syntax:
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "overwrote-key1"
//! get key2
//!
//! del key3
//! ```

use std::io::BufRead;

use clap::{Args, Parser, Subcommand};
use raftcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::{Compare, RequestOp, TxnRequest};

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::Ctx;
use crate::gofmt::quote;

/// `txn` flags.
#[derive(Debug, Clone, Args)]
pub struct TxnArgs {
    #[arg(short = 'i', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Input transaction in interactive mode")]
    pub interactive: bool,
    /// No arguments are accepted.
    pub args: Vec<String>,
}

/// A request line of a txn: one of get/put/del with their usual flags.
#[derive(Debug, Parser)]
#[command(no_binary_name = true, disable_help_flag = true, disable_help_subcommand = true)]
struct OpLine {
    #[command(subcommand)]
    op: OpCmd,
}

#[derive(Debug, Subcommand)]
enum OpCmd {
    Get(super::get::GetArgs),
    Put(super::put::PutArgs),
    Del(super::del::DelArgs),
}

fn invalid(msg: String) -> CliError {
    CliError::new(EXIT_INVALID_INPUT, msg)
}

fn go_panic(msg: &str) -> CliError {
    CliError::Raw { code: 2, text: format!("panic: {msg}\n") }
}

/// Scans a Go `%q` operand at the start of `s`; returns the value and the rest.
fn scan_quoted(s: &str) -> Option<(Vec<u8>, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('`') {
        let end = rest.find('`')?;
        return Some((rest.as_bytes()[..end].to_vec(), &rest[end + 1..]));
    }
    if !s.starts_with('"') {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                let lit = &s[..=i];
                return crate::gofmt::unquote(lit).map(|v| (v, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

/// Parses one compare line (etcdctl's `parseCompare`).
pub fn parse_compare(line: &str) -> CliResult<Compare> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(invalid(format!("malformed comparison: {line}")));
    };
    // fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)
    let mut key = Vec::new();
    let mut op = String::new();
    let mut val = Vec::new();
    let mut n = 0;
    if let Some((k, r)) = scan_quoted(rest) {
        key = k;
        n = 1;
        if let Some(r) = r.strip_prefix(')') {
            let r = r.trim_start();
            let end = r.find(char::is_whitespace).unwrap_or(r.len());
            if end > 0 {
                op = r[..end].to_string();
                n = 2;
                if let Some((v, _)) = scan_quoted(&r[end..]) {
                    val = v;
                    n = 3;
                }
            }
        }
    }
    if n != 3 {
        return Err(invalid(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            quote(&key),
            quote(&val)
        )));
    }
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => return Err(go_panic("Unknown result op")),
    };
    let int = || -> CliResult<i64> {
        std::str::from_utf8(&val)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| invalid(format!("invalid txn compare request: {line}")))
    };
    let (t, u) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int()?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int()?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int()?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(val.clone())),
        // etcdctl 3.4 hands the lease value to clientv3 as a string, which panics.
        "lease" => return Err(go_panic("bad value")),
        _ => return Err(invalid(format!("malformed comparison: {line} (unknown target {target})"))),
    };
    Ok(Compare { result: result as i32, target: t as i32, key, target_union: Some(u), range_end: vec![] })
}

/// Parses one request line (etcdctl's `parseRequestUnion`).
pub fn parse_request(line: &str) -> CliResult<RequestOp> {
    let args = super::argify(line)?;
    if args.len() < 2 {
        return Err(invalid(format!("invalid txn compare request: {line}")));
    }
    let parsed = OpLine::try_parse_from(&args).map_err(|_| invalid(format!("invalid txn request: {line}")))?;
    let request = match parsed.op {
        OpCmd::Get(g) => Request::RequestRange(super::get::build(&g)?),
        OpCmd::Put(p) => {
            // A missing value would be read from stdin, which here is the txn itself: etcdctl fails.
            Request::RequestPut(super::put::build(&p, || None)?)
        }
        OpCmd::Del(d) => Request::RequestDeleteRange(super::del::build(&d)?),
    };
    Ok(RequestOp { request: Some(request) })
}

/// Reads the three blocks from `input`. `prompt` is called before each block (interactive mode).
pub fn build(input: &mut dyn BufRead, mut prompt: impl FnMut(&str)) -> CliResult<TxnRequest> {
    let next_block = |input: &mut dyn BufRead| -> CliResult<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = input.read_line(&mut l).map_err(|e| invalid(e.to_string()))?;
            if n == 0 || !l.ends_with('\n') {
                return Err(invalid("EOF".into()));
            }
            let l = l.trim();
            if l.is_empty() {
                return Ok(lines);
            }
            lines.push(l.to_string());
        }
    };
    prompt("compares:");
    let compare = next_block(input)?.iter().map(|l| parse_compare(l)).collect::<CliResult<Vec<_>>>()?;
    prompt("success requests (get, put, del):");
    let success = next_block(input)?.iter().map(|l| parse_request(l)).collect::<CliResult<Vec<_>>>()?;
    prompt("failure requests (get, put, del):");
    let failure = next_block(input)?.iter().map(|l| parse_request(l)).collect::<CliResult<Vec<_>>>()?;
    Ok(TxnRequest { compare, success, failure })
}

/// Runs `txn`.
pub async fn run(ctx: &mut Ctx, a: TxnArgs) -> CliResult {
    if !a.args.is_empty() {
        return Err(CliError::new(EXIT_BAD_ARGS, "txn command does not accept argument"));
    }
    let client = ctx.client().await?;
    let printer = ctx.printer()?;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let out = &mut ctx.out;
    let req = build(&mut lock, |p| {
        if a.interactive {
            out.line(p);
            out.flush();
        }
    })?;
    // etcdctl sends the txn without a deadline (context.Background()).
    let resp = client.txn(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    printer.txn(&mut ctx.out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        let c = parse_compare("mod(\"k\") > \"3\"").unwrap();
        assert_eq!(
            c,
            Compare {
                result: CompareResult::Greater as i32,
                target: CompareTarget::Mod as i32,
                key: b"k".to_vec(),
                target_union: Some(TargetUnion::ModRevision(3)),
                range_end: vec![]
            }
        );
        let c = parse_compare("value(\"a\") = \"x y\"").unwrap();
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"x y".to_vec())));
        assert_eq!(parse_compare("ver(\"a\") != \"1\"").unwrap().result, CompareResult::NotEqual as i32);
        assert_eq!(parse_compare("c(\"a\") < \"1\"").unwrap().target, CompareTarget::Create as i32);
    }

    #[test]
    fn bad_compares() {
        assert_eq!(parse_compare("nope").unwrap_err(), CliError::new(3, "malformed comparison: nope"));
        assert_eq!(
            parse_compare("mod(\"k\") >").unwrap_err(),
            CliError::new(3, "malformed comparison: mod(\"k\") >; got mod(\"k\") > \"\"")
        );
        assert_eq!(
            parse_compare("mod(\"k\") > \"x\"").unwrap_err(),
            CliError::new(3, "invalid txn compare request: mod(\"k\") > \"x\"")
        );
        assert_eq!(parse_compare("mod(\"k\") ~ \"1\"").unwrap_err().code(), 2);
        assert_eq!(
            parse_compare("foo(\"k\") = \"1\"").unwrap_err(),
            CliError::new(3, "malformed comparison: foo(\"k\") = \"1\" (unknown target foo)")
        );
    }

    #[test]
    fn requests() {
        let r = parse_request("put k \"v 1\" --prev-kv").unwrap();
        match r.request {
            Some(Request::RequestPut(p)) => {
                assert_eq!((p.key, p.value, p.prev_kv), (b"k".to_vec(), b"v 1".to_vec(), true))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_request("get --prefix a").unwrap().request, Some(Request::RequestRange(_))));
        assert!(matches!(parse_request("del a").unwrap().request, Some(Request::RequestDeleteRange(_))));
        assert_eq!(parse_request("get").unwrap_err(), CliError::new(3, "invalid txn compare request: get"));
        assert_eq!(parse_request("foo a").unwrap_err(), CliError::new(3, "invalid txn request: foo a"));
    }

    #[test]
    fn blocks() {
        let input = "value(\"a\") = \"1\"\n\nput a 2\nget a\n\nget a\n\n";
        let mut prompts = Vec::new();
        let t = build(&mut input.as_bytes(), |p| prompts.push(p.to_string())).unwrap();
        assert_eq!((t.compare.len(), t.success.len(), t.failure.len()), (1, 2, 1));
        assert_eq!(prompts.len(), 3);
        assert_eq!(build(&mut "x(\"a\")".as_bytes(), |_| {}).unwrap_err(), CliError::new(3, "EOF"));
    }
}
