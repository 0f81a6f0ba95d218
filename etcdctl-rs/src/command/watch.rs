//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`, and `watch -i` (reads
//! `watch ...` / `progress` lines from stdin).

use std::collections::VecDeque;

use clap::Args;
use raftcd_proto::etcdserverpb::{WatchCreateRequest, WatchResponse};

use crate::cli::{go_bool, go_i64};
use crate::exit::{
    CliError, CliResult, Out, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT,
};
use crate::global::Ctx;
use crate::gofmt::quote;
use crate::printer::Printer;

/// `watch` flags.
#[derive(Debug, Clone, Args, Default)]
pub struct WatchArgs {
    #[arg(short = 'i', long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Interactive mode")]
    pub interactive: bool,
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Watch on a prefix if prefix is set")]
    pub prefix: bool,
    #[arg(long, value_name = "int", default_value = "0", value_parser = go_i64, allow_negative_numbers = true, help = "Revision to start watching")]
    pub rev: i64,
    #[arg(long = "prev-kv", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "get the previous key-value pair before the event happens")]
    pub prev_kv: bool,
    /// Key, range end, and after `--` the command to run per event.
    pub args: Vec<String>,
}

const ERR_BAD_ARGS_NUM: &str = "bad number of arguments";
const ERR_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const ERR_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

/// Splits watch arguments from the exec command (etcdctl's `parseWatchArgs`, non-interactive form).
/// `os_args` are the raw process arguments, `command_args` what the flag parser left.
pub fn parse_watch_args(
    os_args: &[String],
    command_args: &[String],
    env_key: &str,
    env_range: &str,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut raw: &[String] = os_args;
    if let Some(i) = raw.iter().position(|a| a == "watch") {
        raw = &raw[i + 1..];
    }
    let mut watch_args: Vec<String> = command_args.to_vec();
    let exec_idx = raw.iter().position(|a| a == "--");
    if let Some(i) = exec_idx {
        if i == raw.len() - 1 {
            return Err(ERR_SEPARATOR.into());
        }
    }
    if exec_idx.is_none() && raw.is_empty() && env_key.is_empty() {
        return Err(ERR_BAD_ARGS_NUM.into());
    }
    if let (Some(exec_idx), false) = (exec_idx, env_key.is_empty()) {
        let mut ridx = raw.len() as isize - 1;
        for w in watch_args.iter().rev() {
            if ridx >= 0 && *w == raw[ridx as usize] {
                ridx -= 1;
                continue;
            }
            if ridx == exec_idx as isize {
                return Err(ERR_CONFLICT_ENV.into());
            }
        }
    }
    if exec_idx.is_none() && !watch_args.is_empty() && !env_key.is_empty() {
        return Err(ERR_CONFLICT_ENV.into());
    }
    let mut exec_args = Vec::new();
    if let Some(i) = exec_idx {
        exec_args = raw[i + 1..].to_vec();
    }
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.to_string()];
        if !env_range.is_empty() {
            ranges.push(env_range.to_string());
        }
        ranges.extend(watch_args);
        watch_args = ranges;
    }
    if let Some(i) = exec_idx {
        let first_exec = &raw[i + 1];
        let end = watch_args.iter().rposition(|w| w == first_exec).unwrap_or(0);
        watch_args.truncate(end);
    }
    Ok((watch_args, exec_args))
}

/// The watch create request (etcdctl's `getWatchChan`).
pub fn build(watch_args: &[String], prefix: bool, rev: i64, prev_kv: bool) -> Result<WatchCreateRequest, String> {
    if watch_args.is_empty() {
        return Err(ERR_BAD_ARGS_NUM.into());
    }
    if watch_args.len() == 2 && prefix {
        return Err("`range_end` and `--prefix` are mutually exclusive".into());
    }
    let range_end = if watch_args.len() == 2 { Some(watch_args[1].as_str()) } else { None };
    let (key, range_end) = super::get::key_range(&watch_args[0], range_end, prefix, false);
    Ok(WatchCreateRequest { key, range_end, start_revision: rev, prev_kv, ..Default::default() })
}

/// Interactive line: `watch [options] key [range_end] [-- cmd ...]`; returns request and exec args.
pub fn parse_interactive(
    line_args: &[String],
    env_key: &str,
    env_range: &str,
) -> Result<(WatchCreateRequest, Vec<String>), String> {
    if line_args.first().map(|s| s.as_str()) != Some("watch") {
        return Err("args[0] must be 'watch' for interactive calls".into());
    }
    let rest = &line_args[1..];
    let sep = rest.iter().position(|a| a == "--");
    if let Some(i) = sep {
        if i == rest.len() - 1 {
            return Err(ERR_SEPARATOR.into());
        }
    }
    let (flag_part, exec_args) = match sep {
        Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
        None => (rest, Vec::new()),
    };
    #[derive(clap::Parser)]
    #[command(no_binary_name = true, disable_help_flag = true)]
    struct Line {
        #[command(flatten)]
        a: WatchArgs,
    }
    let parsed = <Line as clap::Parser>::try_parse_from(flag_part).map_err(|e| e.kind().to_string())?.a;
    if sep.is_none() && env_key.is_empty() && parsed.args.is_empty() {
        return Err(ERR_BAD_ARGS_NUM.into());
    }
    if sep.is_none() && !parsed.args.is_empty() && !env_key.is_empty() {
        return Err(ERR_CONFLICT_ENV.into());
    }
    let mut watch_args = parsed.args.clone();
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.to_string()];
        if !env_range.is_empty() {
            ranges.push(env_range.to_string());
        }
        ranges.extend(watch_args);
        watch_args = ranges;
    }
    let req = build(&watch_args, parsed.prefix, parsed.rev, parsed.prev_kv)?;
    Ok((req, exec_args))
}

/// clientv3's `WatchResponse.Err()` text for a canceled response.
fn cancel_error(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        "etcdserver: mvcc: required revision has been compacted".into()
    } else if !r.cancel_reason.is_empty() {
        let m = &r.cancel_reason;
        if m.starts_with("etcdserver: ") {
            m.clone()
        } else {
            format!("rpc error: code = FailedPrecondition desc = {m}")
        }
    } else {
        "etcdserver: mvcc: required revision is a future revision".into()
    }
}

fn is_progress_notify(r: &WatchResponse) -> bool {
    r.events.is_empty()
        && !r.canceled
        && !r.created
        && r.compact_revision == 0
        && r.header.as_ref().map(|h| h.revision).unwrap_or(0) != 0
}

/// Prints one response and runs the exec command per event; `Ok(false)` once the watch is over.
fn handle(o: &mut Out, p: &dyn Printer, r: &WatchResponse, exec: &[String]) -> CliResult<bool> {
    if r.created && !r.canceled {
        // clientv3 does not hand the created notification to the application.
        return Ok(true);
    }
    if r.canceled {
        o.eline(&format!("watch was canceled ({})", cancel_error(r)));
    }
    if is_progress_notify(r) {
        o.line(&format!("progress notify: {}", r.header.as_ref().map(|h| h.revision).unwrap_or(0)));
    }
    p.watch(o, r)?;
    o.flush();
    if !exec.is_empty() {
        let rev = r.header.as_ref().map(|h| h.revision).unwrap_or(0);
        for ev in &r.events {
            let kv = ev.kv.clone().unwrap_or_default();
            let status = std::process::Command::new(&exec[0])
                .args(&exec[1..])
                .env("ETCD_WATCH_REVISION", rev.to_string())
                .env("ETCD_WATCH_EVENT_TYPE", quote(crate::printer::event_name(ev.r#type).as_bytes()))
                .env("ETCD_WATCH_KEY", quote(&kv.key))
                .env("ETCD_WATCH_VALUE", quote(&kv.value))
                .status();
            let failed = match status {
                Ok(s) if s.success() => None,
                Ok(s) => Some(match s.code() {
                    Some(c) => format!("exit status {c}"),
                    None => "signal: killed".to_string(),
                }),
                Err(e) => Some(format!("exec: {}: {}", quote(exec[0].as_bytes()), e)),
            };
            if let Some(why) = failed {
                let list: Vec<String> = exec.iter().map(|a| quote(a.as_bytes())).collect();
                return Err(CliError::Raw { code: 1, text: format!("command [{}] error ({why})\n", list.join(" ")) });
            }
        }
    }
    Ok(!r.canceled)
}

/// Runs `watch`.
pub async fn run(ctx: &mut Ctx, a: WatchArgs) -> CliResult {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CliError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            quote(env_range.as_bytes())
        )));
    }
    if a.interactive {
        return interactive(ctx, &env_key, &env_range).await;
    }
    let os_args: Vec<String> = std::env::args().collect();
    let (watch_args, exec) =
        parse_watch_args(&os_args, &a.args, &env_key, &env_range).map_err(|e| CliError::new(EXIT_BAD_ARGS, e))?;
    let client = ctx.client().await?;
    let printer = ctx.printer()?;
    let req = build(&watch_args, a.prefix, a.rev, a.prev_kv).map_err(|e| CliError::new(EXIT_BAD_ARGS, e))?;
    let mut w = client.watch(req).await.map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
    loop {
        match w.message().await {
            Ok(Some(r)) => {
                if !handle(&mut ctx.out, printer.as_ref(), &r, &exec)? {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                ctx.out.eline(&format!("watch was canceled ({e})"));
                break;
            }
        }
    }
    Err(CliError::new(EXIT_INTERRUPTED, "watch is canceled by the server"))
}

async fn interactive(ctx: &mut Ctx, env_key: &str, env_range: &str) -> CliResult {
    let client = ctx.client().await?;
    let printer = ctx.printer()?;
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        loop {
            let mut l = String::new();
            let r = std::io::BufRead::read_line(&mut stdin.lock(), &mut l);
            let end = !matches!(r, Ok(n) if n > 0 && l.ends_with('\n'));
            let msg = if end { Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF")) } else { Ok(l) };
            if line_tx.blocking_send(msg).is_err() || end {
                return;
            }
        }
    });
    let mut w = client.watch_stream();
    let mut pending_exec: VecDeque<Vec<String>> = VecDeque::new();
    let mut exec_by_id: std::collections::HashMap<i64, Vec<String>> = Default::default();
    loop {
        tokio::select! {
            line = line_rx.recv() => {
                let l = match line {
                    Some(Ok(l)) => l,
                    _ => return Err(CliError::new(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")),
                };
                let l = l.strip_suffix('\n').unwrap_or(&l).to_string();
                let args = super::argify(&l)?;
                match args.first().map(|s| s.as_str()) {
                    None => ctx.out.eline(&format!("Invalid command: {l} (watch and progress supported)")),
                    Some("watch") => {
                        if args.len() < 2 && env_key.is_empty() {
                            ctx.out.eline(&format!("Invalid command {l} (command type or key is not provided)"));
                            continue;
                        }
                        match parse_interactive(&args, env_key, env_range) {
                            Ok((req, exec)) => {
                                pending_exec.push_back(exec);
                                w.create(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
                            }
                            Err(e) if e == ERR_BAD_ARGS_NUM || e == ERR_CONFLICT_ENV || e == ERR_SEPARATOR => {
                                return Err(CliError::new(EXIT_BAD_ARGS, e));
                            }
                            Err(e) => ctx.out.eline(&format!("Invalid command {l} ({e})")),
                        }
                    }
                    Some("progress") => {
                        w.request_progress().await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
                    }
                    Some(_) => ctx.out.eline(&format!("Invalid command {l} (only support watch)")),
                }
            }
            msg = w.message() => match msg {
                Ok(Some(r)) => {
                    if r.created {
                        let exec = pending_exec.pop_front().unwrap_or_default();
                        exec_by_id.insert(r.watch_id, exec);
                    }
                    let exec = exec_by_id.get(&r.watch_id).cloned().unwrap_or_default();
                    handle(&mut ctx.out, printer.as_ref(), &r, &exec)?;
                }
                Ok(None) => return Err(CliError::new(EXIT_INTERRUPTED, "watch is canceled by the server")),
                Err(e) => ctx.out.eline(&format!("watch was canceled ({e})")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn plain_and_exec_args() {
        let (w, e) = parse_watch_args(&s(&["etcdctl", "watch", "foo"]), &s(&["foo"]), "", "").unwrap();
        assert_eq!((w, e), (s(&["foo"]), vec![]));
        let (w, e) = parse_watch_args(
            &s(&["etcdctl", "watch", "foo", "--rev", "1", "--", "echo", "hi"]),
            &s(&["foo", "echo", "hi"]),
            "",
            "",
        )
        .unwrap();
        assert_eq!((w, e), (s(&["foo"]), s(&["echo", "hi"])));
        assert_eq!(
            parse_watch_args(&s(&["e", "watch", "foo", "--"]), &s(&["foo"]), "", "").unwrap_err(),
            ERR_SEPARATOR
        );
        assert_eq!(parse_watch_args(&s(&["e", "watch"]), &s(&[]), "", "").unwrap_err(), ERR_BAD_ARGS_NUM);
    }

    #[test]
    fn env_key() {
        let (w, _) = parse_watch_args(&s(&["e", "watch"]), &s(&[]), "k", "z").unwrap();
        assert_eq!(w, s(&["k", "z"]));
        assert_eq!(parse_watch_args(&s(&["e", "watch", "foo"]), &s(&["foo"]), "k", "").unwrap_err(), ERR_CONFLICT_ENV);
    }

    #[test]
    fn requests() {
        let r = build(&s(&["a"]), true, 5, true).unwrap();
        assert_eq!((r.key, r.range_end, r.start_revision, r.prev_kv), (b"a".to_vec(), b"b".to_vec(), 5, true));
        assert!(build(&s(&["a", "b"]), true, 0, false).is_err());
        let (r, exec) = parse_interactive(&s(&["watch", "--prefix", "x", "--", "echo"]), "", "").unwrap();
        assert_eq!((r.key, exec), (b"x".to_vec(), s(&["echo"])));
        assert!(parse_interactive(&s(&["watch"]), "", "").is_err());
    }

    #[test]
    fn cancel_texts() {
        let r = WatchResponse { canceled: true, compact_revision: 3, ..Default::default() };
        assert_eq!(cancel_error(&r), "etcdserver: mvcc: required revision has been compacted");
    }
}
