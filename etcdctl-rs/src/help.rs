//! etcdctl's help screens (its `usageFunc` template rendered through Go's `text/tabwriter`), built from the
//! clap command tree.

use clap::Command;

use crate::gofmt::quote;

/// etcdctl version this binary mimics.
pub const VERSION: &str = "3.4.23";
/// API version printed by `version` and in help.
pub const API_VERSION: &str = "3.4";

/// cobra `Use` strings (the usage line's tail), by command path.
fn use_of(path: &str) -> &'static str {
    match path {
        "" => "etcdctl",
        "get" => "get [options] <key> [range_end]",
        "put" => "put [options] <key> <value> (<value> can also be given from stdin)",
        "del" => "del [options] <key> [range_end]",
        "txn" => "txn [options]",
        "compaction" => "compaction [options] <revision>",
        "alarm" => "alarm <subcommand>",
        "alarm disarm" => "disarm",
        "alarm list" => "list",
        "defrag" => "defrag",
        "endpoint" => "endpoint <subcommand>",
        "endpoint health" => "health",
        "endpoint status" => "status",
        "endpoint hashkv" => "hashkv",
        "move-leader" => "move-leader <transferee-member-id>",
        "watch" => "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
        "version" => "version",
        "lease" => "lease <subcommand>",
        "lease grant" => "grant <ttl>",
        "lease revoke" => "revoke <leaseID>",
        "lease timetolive" => "timetolive <leaseID> [options]",
        "lease list" => "list",
        "lease keep-alive" => "keep-alive [options] <leaseID>",
        "member" => "member <subcommand>",
        "member add" => "add <memberName> [options]",
        "member remove" => "remove <memberID>",
        "member update" => "update <memberID> [options]",
        "member list" => "list",
        "member promote" => "promote <memberID>",
        "snapshot" => "snapshot <subcommand>",
        "snapshot save" => "save <filename>",
        "snapshot restore" => "restore <filename> [options]",
        "snapshot status" => "status <filename>",
        "auth" => "auth <enable or disable>",
        "auth enable" => "enable",
        "auth disable" => "disable",
        "user" => "user <subcommand>",
        "user add" => "add <user name or user:password> [options]",
        "user delete" => "delete <user name>",
        "user get" => "get <user name> [options]",
        "user list" => "list",
        "user passwd" => "passwd <user name> [options]",
        "user grant-role" => "grant-role <user name> <role name>",
        "user revoke-role" => "revoke-role <user name> <role name>",
        "role" => "role <subcommand>",
        "role add" => "add <role name>",
        "role delete" => "delete <role name>",
        "role get" => "get <role name>",
        "role list" => "list",
        "role grant-permission" => "grant-permission [options] <role name> <permission type> <key> [endkey]",
        "role revoke-permission" => "revoke-permission <role name> <key> [endkey]",
        "check" => "check <subcommand>",
        "check perf" => "perf [options]",
        "completion" => "completion",
        "help" => "help [command]",
        _ => "",
    }
}

/// One flag's line in OPTIONS, before tab expansion.
fn flag_line(short: Option<char>, long: &str, ty: &str, default: &str, usage: &str) -> String {
    let mut s = match short {
        Some(c) => format!("  -{c}, --{long}"),
        None => format!("      --{long}"),
    };
    match ty {
        "bool" => s.push_str(&format!("[={default}]")),
        "string" => s.push_str(&format!("={}", quote(default.as_bytes()))),
        "stringSlice" => s.push_str(&format!("=[{default}]")),
        _ => s.push_str(&format!("={default}")),
    }
    s.push('\t');
    s.push_str(usage);
    s.push('\n');
    s
}

fn flags_text(args: &[&clap::Arg], help_for: Option<&str>) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    for a in args {
        let Some(long) = a.get_long() else { continue };
        if long == "help" || a.is_hide_set() {
            continue;
        }
        let ty = a.get_value_names().and_then(|v| v.first()).map(|s| s.to_string()).unwrap_or_default();
        let default: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let usage = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        lines.push((long.to_string(), flag_line(a.get_short(), long, &ty, &default.join(","), &usage)));
    }
    if let Some(name) = help_for {
        lines.push(("help".into(), flag_line(Some('h'), "help", "bool", "false", &format!("help for {name}"))));
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l).collect()
}

fn runnable(c: &Command) -> bool {
    c.get_subcommands().next().is_none()
}

fn descendants<'a>(c: &'a Command, prefix: &str, out: &mut Vec<(String, &'a Command)>) {
    let mut subs: Vec<&Command> = c.get_subcommands().collect();
    subs.sort_by_key(|s| s.get_name().to_string());
    for s in subs {
        let name = if prefix.is_empty() { s.get_name().to_string() } else { format!("{prefix} {}", s.get_name()) };
        out.push((name.clone(), s));
        descendants(s, &name, out);
    }
}

/// The help screen of the command at `path` (empty = root), or `None` for an unknown path.
pub fn render(root: &Command, path: &[String]) -> Option<String> {
    let mut chain: Vec<&Command> = vec![root];
    for p in path {
        let next = chain.last().expect("non-empty").find_subcommand(p)?;
        chain.push(next);
    }
    let cmd = *chain.last().expect("non-empty");
    let names: Vec<&str> = chain[1..].iter().map(|c| c.get_name()).collect();
    let path_str = names.join(" ");
    let mut t = String::new();
    t.push_str("NAME:\n");
    if names.is_empty() {
        t.push_str(&format!("\t{} - {}\n", root.get_name(), about(cmd)));
    } else {
        t.push_str(&format!("\t{} - {}\n", path_str, about(cmd)));
    }
    t.push_str("\nUSAGE:\n");
    let parent_path: Vec<&str> =
        std::iter::once("etcdctl").chain(names[..names.len().saturating_sub(1)].iter().copied()).collect();
    let useline = if names.is_empty() {
        use_of("").to_string()
    } else {
        format!("{} {}", parent_path.join(" "), use_of(&path_str))
    };
    t.push_str(&format!("\t{useline} [flags]\n"));
    if names.is_empty() {
        t.push_str(&format!("\nVERSION:\n\t{VERSION}\n"));
    }
    let has_subs = cmd.get_subcommands().next().is_some();
    if has_subs {
        t.push_str(&format!("\nAPI VERSION:\n\t{API_VERSION}\n"));
        t.push_str("\n\nCOMMANDS:\n");
        let mut all = Vec::new();
        descendants(cmd, "", &mut all);
        for (name, c) in all {
            if runnable(c) {
                t.push_str(&format!("\t{name}\t{}\n", about(c)));
            }
        }
    }
    if let Some(long) = cmd.get_long_about() {
        let long = long.to_string();
        t.push_str("\nDESCRIPTION:\n");
        for line in long.trim_matches(|c| c == '\n' || c == '\t' || c == ' ').split('\n') {
            t.push_str(&format!("\t{line}\n"));
        }
    }
    // Local flags: the command's own (its persistent ones included); inherited: persistent flags of ancestors.
    let local: Vec<&clap::Arg> = cmd.get_arguments().filter(|a| !a.is_positional()).collect();
    let help_name = if names.is_empty() { root.get_name() } else { cmd.get_name() };
    t.push_str("\nOPTIONS:\n");
    t.push_str(&flags_text(&local, Some(help_name)));
    let inherited: Vec<&clap::Arg> = chain[..chain.len() - 1]
        .iter()
        .flat_map(|c| c.get_arguments().filter(|a| a.is_global_set() && !a.is_positional()))
        .collect();
    if !inherited.is_empty() {
        t.push_str("\nGLOBAL OPTIONS:\n");
        t.push_str(&flags_text(&inherited, None));
    }
    t.push('\n');
    Some(tabwriter(&t))
}

fn about(c: &Command) -> String {
    c.get_about().map(|a| a.to_string()).unwrap_or_default()
}

/// Go's `text/tabwriter` with etcdctl's settings (minwidth 0, tabwidth 8, padding 1, padchar '\t').
pub fn tabwriter(text: &str) -> String {
    const TABWIDTH: usize = 8;
    let lines: Vec<Vec<&str>> = text.split_terminator('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    let mut out = String::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out, TABWIDTH);
    if text.ends_with('\n') {
        // split_terminator dropped the final empty line; each line above already ends with '\n'.
    }
    out
}

fn cell_width(s: &str) -> usize {
    s.chars().count()
}

fn format_block(lines: &[Vec<&str>], line0: usize, line1: usize, widths: &mut Vec<usize>, out: &mut String, tw: usize) {
    let column = widths.len();
    let mut start = line0;
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, start, this, widths, out, tw);
        start = this;
        let mut width = 0usize;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + 1);
            this += 1;
        }
        widths.push(width);
        format_block(lines, start, this, widths, out, tw);
        widths.pop();
        start = this;
    }
    write_lines(lines, start, line1, widths, out, tw);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String, tw: usize) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < line.len() {
                let cellw = widths[j].div_ceil(tw) * tw;
                let n = cellw - cell_width(cell);
                for _ in 0..n.div_ceil(tw) {
                    out.push('\t');
                }
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_columns_with_tabs() {
        let t = tabwriter("\tgrant\tCreates leases\n\tkeep-alive\tKeeps\n");
        assert_eq!(t, "\tgrant\t\tCreates leases\n\tkeep-alive\tKeeps\n");
    }

    #[test]
    fn lease_help_reads_like_etcdctl() {
        let root = crate::cli::command();
        let h = render(&root, &["lease".to_string()]).unwrap();
        assert!(
            h.starts_with(
                "NAME:\n\tlease - Lease related commands\n\nUSAGE:\n\tetcdctl lease <subcommand> [flags]\n\n\
             API VERSION:\n\t3.4\n\n\nCOMMANDS:\n\tgrant\t\tCreates leases\n\tkeep-alive\tKeeps leases alive (renew)\n"
            ),
            "{h}"
        );
        assert!(h.contains("\nOPTIONS:\n  -h, --help[=false]\thelp for lease\n\nGLOBAL OPTIONS:\n      --cacert=\"\"\t\t\t\tverify"), "{h}");
    }
}
