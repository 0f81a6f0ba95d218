//! `etcdctl-rs`: a drop-in for `etcdctl` 3.4 (API v3) built on `raftcd-client`.
//!
//! Layout: `cli` (flags), `global` (environment and client setup), `command/*` (one file per command: a pure
//! builder plus `run`), `printer/*` (one file per `--write-out` format), `help` (etcdctl's help screens),
//! `gofmt` (the Go formatting the output is made of).

mod cli;
mod command;
mod exit;
mod global;
mod gofmt;
mod help;
mod printer;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};

use crate::cli::{Cli, Cmd};
use crate::exit::{CliError, Out, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::{apply_env, flag_to_env, Ctx, GLOBAL_FLAGS};

fn main() {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut out = Out::stdio();
    let code = real_main(&args, &mut out);
    out.flush();
    std::process::exit(code);
}

/// The subcommand path the matches went down (`["lease", "grant"]`).
fn matched_path(m: &ArgMatches) -> Vec<String> {
    let mut path = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        path.push(name.to_string());
        cur = sub;
    }
    path
}

/// Best guess of the subcommand path from raw arguments (for errors clap reports without one).
fn guess_path(root: &clap::Command, args: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut cur = root;
    for a in args.iter().skip(1) {
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            continue;
        }
        let found = cur.find_subcommand(a).or_else(|| {
            let mut it = cur.get_subcommands().filter(|s| s.get_name().starts_with(a.as_str()));
            match (it.next(), it.next()) {
                (Some(s), None) => Some(s),
                _ => None,
            }
        });
        match found {
            Some(s) => {
                path.push(s.get_name().to_string());
                cur = s;
            }
            None if cur.get_subcommands().next().is_some() => {}
            None => break,
        }
    }
    path
}

fn print_help(root: &clap::Command, path: &[String], out: &mut Out) {
    if let Some(h) = help::render(root, path) {
        out.raw(h.as_bytes());
    }
}

fn ctx_str(e: &clap::Error, kind: ContextKind) -> String {
    match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(" "),
        _ => String::new(),
    }
}

/// Reports a parse error the way cobra does: usage on stdout, `Error: ...` twice on stderr, exit 1.
fn clap_error(e: clap::Error, args: &[String], root: &clap::Command, out: &mut Out) -> i32 {
    let path = guess_path(root, args);
    let flag_error = |msg: String, out: &mut Out| {
        print_help(root, &path, out);
        out.flush();
        out.eline(&format!("Error: {msg}\n"));
        out.eline(&format!("Error: {msg}"));
        EXIT_ERROR
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            print_help(root, &path, out);
            0
        }
        ErrorKind::UnknownArgument => {
            let arg = ctx_str(&e, ContextKind::InvalidArg);
            let msg = if let Some(long) = arg.strip_prefix("--") {
                format!("unknown flag: --{}", long.split('=').next().unwrap_or(long))
            } else {
                let c = arg.trim_start_matches('-').chars().next().unwrap_or('?');
                format!("unknown shorthand flag: '{c}' in {arg}")
            };
            flag_error(msg, out)
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = ctx_str(&e, ContextKind::InvalidArg);
            let flag = arg.split([' ', '=']).next().unwrap_or_default().to_string();
            let value = ctx_str(&e, ContextKind::InvalidValue);
            let msg = if value.is_empty() && e.kind() == ErrorKind::InvalidValue {
                format!("flag needs an argument: {flag}")
            } else {
                let why = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
                format!(
                    "invalid argument {} for {} flag: {why}",
                    gofmt::quote(value.as_bytes()),
                    gofmt::quote(flag.as_bytes())
                )
            };
            flag_error(msg, out)
        }
        ErrorKind::InvalidSubcommand => {
            if !path.is_empty() {
                print_help(root, &path, out);
                return 0;
            }
            let name = ctx_str(&e, ContextKind::InvalidSubcommand);
            let msg = format!("unknown command {} for \"etcdctl\"", gofmt::quote(name.as_bytes()));
            out.eline(&format!("Error: {msg}\nRun 'etcdctl --help' for usage."));
            out.eline(&format!("Error: {msg}"));
            EXIT_ERROR
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            flag_error(first, out)
        }
    }
}

/// Prints a command's failure and returns the exit code.
fn report(e: CliError, out: &mut Out) -> i32 {
    out.flush();
    match &e {
        CliError::Exit { msg, .. } => out.eline(&format!("Error: {msg}")),
        CliError::Raw { text, .. } => {
            let _ = std::io::Write::write_all(&mut out.err, text.as_bytes());
        }
        CliError::Code(_) => {}
    }
    e.code()
}

fn real_main(args: &[String], out: &mut Out) -> i32 {
    let root = cli::command();
    let m = match root.clone().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return clap_error(e, args, &root, out),
    };
    let path = matched_path(&m);
    let cli = match Cli::from_arg_matches(&m) {
        Ok(c) => c,
        Err(e) => return clap_error(e, args, &root, out),
    };
    let Some(cmd) = cli.cmd else {
        print_help(&root, &path, out);
        return 0;
    };
    if cli.global.help {
        print_help(&root, &path, out);
        return 0;
    }
    if let Cmd::Help(h) = &cmd {
        if help::render(&root, &h.args).is_some() {
            print_help(&root, &h.args, out);
        } else {
            out.line(&format!("Unknown help topic {:?}", h.args));
            print_help(&root, &[], out);
        }
        return 0;
    }
    let connects = !matches!(
        cmd,
        Cmd::Version(_)
            | Cmd::Completion(_)
            | Cmd::Snapshot(command::snapshot::SnapshotCmd::Status(_))
            | Cmd::Snapshot(command::snapshot::SnapshotCmd::Restore(_))
    );
    let mut global = cli.global.clone();
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k != "ETCDCTL_API").collect();
    let mut command_timeout_set = matches!(m.value_source("command_timeout"), Some(ValueSource::CommandLine));
    if connects {
        let extra: &[&str] = match &cmd {
            Cmd::Endpoint(_) => &["cluster"],
            Cmd::Watch(_) => &["watch-key", "watch-range-end"],
            _ => &[],
        };
        match apply_env(&mut global, &m, extra, &env, out) {
            Ok(used) => command_timeout_set |= used.iter().any(|(n, _)| n == "command-timeout"),
            Err(e) => return report(e, out),
        }
        for (id, name) in [("cert", "cert"), ("key", "key"), ("cacert", "cacert")] {
            let given = matches!(m.value_source(id), Some(ValueSource::CommandLine));
            let empty = match id {
                "cert" => global.cert.is_empty(),
                "key" => global.key.is_empty(),
                _ => global.cacert.is_empty(),
            };
            if given && empty {
                return report(CliError::new(EXIT_BAD_ARGS, format!("empty string is passed to --{name} option")), out);
            }
        }
        if global.debug {
            for name in GLOBAL_FLAGS {
                let v = debug_value(&global, name);
                out.eline(&format!("{}={v}", flag_to_env(name)));
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::new(EXIT_ERROR, e.to_string()), out),
    };
    let taken = std::mem::replace(out, Out { out: Box::new(std::io::sink()), err: Box::new(std::io::sink()) });
    let mut ctx = Ctx::new(global, taken);
    ctx.command_timeout_set = command_timeout_set;
    let res = rt.block_on(command::run(&mut ctx, cmd));
    let mut o = ctx.out;
    let code = match res {
        Ok(()) => 0,
        Err(e) => report(e, &mut o),
    };
    *out = o;
    // Background tasks (watch, keep-alive) need not drain: the process exits right after.
    std::mem::forget(rt);
    code
}

/// `--debug` prints every inherited flag as `ETCDCTL_<NAME>=<value>`.
fn debug_value(g: &cli::GlobalArgs, name: &str) -> String {
    let d = gofmt::format_duration;
    match name {
        "cacert" => g.cacert.clone(),
        "cert" => g.cert.clone(),
        "command-timeout" => d(g.command_timeout),
        "debug" => g.debug.to_string(),
        "dial-timeout" => d(g.dial_timeout),
        "discovery-srv" => g.discovery_srv.clone(),
        "discovery-srv-name" => g.discovery_srv_name.clone(),
        "endpoints" => format!("[{}]", g.endpoints.join(",")),
        "hex" => g.hex.to_string(),
        "insecure-discovery" => g.insecure_discovery.to_string(),
        "insecure-skip-tls-verify" => g.insecure_skip_tls_verify.to_string(),
        "insecure-transport" => g.insecure_transport.to_string(),
        "keepalive-time" => d(g.keepalive_time),
        "keepalive-timeout" => d(g.keepalive_timeout),
        "key" => g.key.clone(),
        "password" => g.password.clone(),
        "user" => g.user.clone(),
        "write-out" => g.write_out.clone(),
        _ => String::new(),
    }
}
