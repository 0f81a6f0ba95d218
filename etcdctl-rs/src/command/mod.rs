//! One module per etcdctl command. Each has a pure argument-to-request builder (unit-tested without a
//! network) and a `run` that executes it and hands the answer to the printer.

pub mod alarm;
pub mod auth;
pub mod check;
pub mod compaction;
pub mod completion;
pub mod defrag;
pub mod del;
pub mod endpoint;
pub mod get;
pub mod lease;
pub mod member;
pub mod move_leader;
pub mod put;
pub mod role;
pub mod snapshot;
pub mod txn;
pub mod user;
pub mod version;
pub mod watch;

use std::io::{BufRead, Write};

use crate::cli::Cmd;
use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_INVALID_INPUT};
use crate::global::Ctx;

/// Runs a parsed command.
pub async fn run(ctx: &mut Ctx, cmd: Cmd) -> CliResult {
    match cmd {
        Cmd::Get(a) => get::run(ctx, a).await,
        Cmd::Put(a) => put::run(ctx, a).await,
        Cmd::Del(a) => del::run(ctx, a).await,
        Cmd::Txn(a) => txn::run(ctx, a).await,
        Cmd::Compaction(a) => compaction::run(ctx, a).await,
        Cmd::Alarm(a) => alarm::run(ctx, a).await,
        Cmd::Defrag(a) => defrag::run(ctx, a).await,
        Cmd::Endpoint(a) => endpoint::run(ctx, a).await,
        Cmd::MoveLeader(a) => move_leader::run(ctx, a).await,
        Cmd::Watch(a) => watch::run(ctx, a).await,
        Cmd::Version(_) => version::run(ctx),
        Cmd::Lease(a) => lease::run(ctx, a).await,
        Cmd::Member(a) => member::run(ctx, a).await,
        Cmd::Snapshot(a) => snapshot::run(ctx, a).await,
        Cmd::Auth(a) => auth::run(ctx, a).await,
        Cmd::User(a) => user::run(ctx, a).await,
        Cmd::Role(a) => role::run(ctx, a).await,
        Cmd::Check(a) => check::run(ctx, a).await,
        Cmd::Completion(a) => completion::run(ctx, a),
        Cmd::Help(_) => Ok(()),
    }
}

/// Prints `prompt` and reads one line from stdin as etcdctl's password prompt (speakeasy) does: `stty -echo`
/// on stdin before reading and `stty echo` after, so a terminal does not show the password (when stdin is
/// not a terminal, stty's complaint reaches stderr, exactly as with etcdctl), then a newline on stdout.
pub fn read_password(prompt: &str) -> CliResult<String> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    stty("echo");
    println!();
    read.map_err(|e| CliError::new(EXIT_BAD_ARGS, format!("failed to ask password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `/bin/stty ARG` (named `stty`, as Go's ForkExec names it) on the inherited stdin/stdout/stderr; a
/// missing stty changes nothing.
fn stty(arg: &str) {
    use std::os::unix::process::CommandExt as _;
    let _ = std::process::Command::new("/bin/stty").arg0("stty").arg(arg).status();
}

/// etcdctl's `argify`: splits a txn/watch line into words; `"..."` is unquoted Go-style and `'...'` is cut
/// the way etcdctl 3.4 cuts it (by the number of words, a known etcdctl quirk).
pub fn argify(s: &str) -> CliResult<Vec<String>> {
    let b = s.as_bytes();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    let is_space = |c: u8| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' || c == 0x0b || c == 0x0c;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let mut j = i + 1;
            let mut closed = None;
            while j < b.len() {
                match b[j] {
                    b'\\' if j + 1 < b.len() => j += 2,
                    b'"' => {
                        closed = Some(j);
                        break;
                    }
                    _ => j += 1,
                }
            }
            if let Some(end) = closed {
                words.push(s[i..=end].to_string());
                i = end + 1;
                continue;
            }
        } else if c == b'\'' {
            if let Some(off) = s[i + 1..].find('\'') {
                let end = i + 1 + off;
                words.push(s[i..=end].to_string());
                i = end + 1;
                continue;
            }
        } else if !is_space(c) {
            let mut j = i;
            while j < b.len() && !is_space(b[j]) {
                j += 1;
            }
            words.push(s[i..j].to_string());
            i = j;
            continue;
        }
        i += 1;
    }
    let n = words.len();
    let mut out = Vec::with_capacity(n);
    for w in words {
        if w.starts_with('\'') {
            // etcdctl: args[i][1 : len(args)-1]
            let hi = n.saturating_sub(1);
            if n == 0 || hi < 1 || hi > w.len() || !w.is_char_boundary(hi) {
                return Err(CliError::Raw {
                    code: 2,
                    text: format!("panic: runtime error: slice bounds out of range [{}:{}]\n", 1, n as i64 - 1),
                });
            }
            out.push(w[1..hi].to_string());
        } else if w.starts_with('"') {
            let v = crate::gofmt::unquote(&w).ok_or_else(|| CliError::new(EXIT_INVALID_INPUT, "invalid syntax"))?;
            out.push(String::from_utf8_lossy(&v).into_owned());
        } else {
            out.push(w);
        }
    }
    Ok(out)
}

/// Reads all of stdin (`argOrStdin`); `None` when empty or unreadable.
pub fn stdin_all() -> Option<String> {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).ok()?;
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_splits_like_etcdctl() {
        assert_eq!(argify("put a b").unwrap(), vec!["put", "a", "b"]);
        assert_eq!(argify("put \"a b\" \"c\\nd\"").unwrap(), vec!["put", "a b", "c\nd"]);
        assert_eq!(argify("  get   --prefix  k  ").unwrap(), vec!["get", "--prefix", "k"]);
        // etcdctl cuts single-quoted words at len(args)-1.
        assert_eq!(argify("put 'k' v").unwrap(), vec!["put", "k", "v"]);
        assert_eq!(argify("put 'key' v").unwrap(), vec!["put", "k", "v"]);
    }
}
