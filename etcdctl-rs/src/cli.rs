//! Command-line definition (clap derive). Flags, defaults and help texts are etcdctl 3.4's; each flag's
//! `value_name` records its Go type (`bool`, `string`, `int`, `duration`, `stringSlice`) for the help renderer
//! and for Go-style parsing (`--prefix=false`, `-wjson`, durations like `1m30s`).

use clap::{Args, Parser, Subcommand};

use crate::command;

/// Parses Go's `strconv.ParseBool` spellings.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {}: invalid syntax", crate::gofmt::quote(s.as_bytes()))),
    }
}

/// Parses an int64 flag with Go's error text.
pub fn go_i64(s: &str) -> Result<i64, String> {
    crate::gofmt::parse_int_err(s, 10)
}

/// Parses a duration flag.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::gofmt::parse_duration(s)
}

/// etcdctl's top level.
#[derive(Debug, Parser)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd3.",
    disable_help_flag = true,
    disable_help_subcommand = true,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

/// Flags every command inherits (`ETCDCTL_<FLAG>` in the environment sets them too).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    #[arg(
        long,
        global = true,
        value_name = "stringSlice",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        help = "gRPC endpoints"
    )]
    pub endpoints: Vec<String>,
    #[arg(long, global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "enable client-side debug logging")]
    pub debug: bool,
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_name = "string",
        default_value = "simple",
        help = "set the output format (fields, json, protobuf, simple, table)"
    )]
    pub write_out: String,
    #[arg(long, global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "print byte strings as hex encoded strings")]
    pub hex: bool,
    #[arg(long = "dial-timeout", global = true, value_name = "duration", default_value = "2s", value_parser = go_duration, help = "dial timeout for client connections")]
    pub dial_timeout: std::time::Duration,
    #[arg(long = "command-timeout", global = true, value_name = "duration", default_value = "5s", value_parser = go_duration, help = "timeout for short running command (excluding dial timeout)")]
    pub command_timeout: std::time::Duration,
    #[arg(long = "keepalive-time", global = true, value_name = "duration", default_value = "2s", value_parser = go_duration, help = "keepalive time for client connections")]
    pub keepalive_time: std::time::Duration,
    #[arg(long = "keepalive-timeout", global = true, value_name = "duration", default_value = "6s", value_parser = go_duration, help = "keepalive timeout for client connections")]
    pub keepalive_timeout: std::time::Duration,
    #[arg(long = "insecure-transport", global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, help = "disable transport security for client connections")]
    pub insecure_transport: bool,
    #[arg(long = "insecure-discovery", global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, help = "accept insecure SRV records describing cluster endpoints")]
    pub insecure_discovery: bool,
    #[arg(long = "insecure-skip-tls-verify", global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)")]
    pub insecure_skip_tls_verify: bool,
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "",
        help = "identify secure client using this TLS certificate file"
    )]
    pub cert: String,
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "",
        help = "identify secure client using this TLS key file"
    )]
    pub key: String,
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "",
        help = "verify certificates of TLS-enabled secure servers using this CA bundle"
    )]
    pub cacert: String,
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "",
        help = "username[:password] for authentication (prompt if password is not supplied)"
    )]
    pub user: String,
    #[arg(
        long,
        global = true,
        value_name = "string",
        default_value = "",
        help = "password for authentication (if this option is used, --user option shouldn't include password)"
    )]
    pub password: String,
    #[arg(
        short = 'd',
        long = "discovery-srv",
        global = true,
        value_name = "string",
        default_value = "",
        help = "domain name to query for SRV records describing cluster endpoints"
    )]
    pub discovery_srv: String,
    #[arg(
        long = "discovery-srv-name",
        global = true,
        value_name = "string",
        default_value = "",
        help = "service name to query when using DNS discovery"
    )]
    pub discovery_srv_name: String,
    #[arg(short = 'h', long = "help", global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "help")]
    pub help: bool,
}

/// etcdctl's commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    #[command(about = "Gets the key or a range of keys")]
    Get(command::get::GetArgs),
    #[command(about = "Puts the given key into the store", long_about = command::put::LONG)]
    Put(command::put::PutArgs),
    #[command(about = "Removes the specified key or range of keys [key, range_end)")]
    Del(command::del::DelArgs),
    #[command(about = "Txn processes all the requests in one transaction")]
    Txn(command::txn::TxnArgs),
    #[command(about = "Compacts the event history in etcd")]
    Compaction(command::compaction::CompactionArgs),
    #[command(about = "Alarm related commands", subcommand)]
    Alarm(command::alarm::AlarmCmd),
    #[command(about = "Defragments the storage of the etcd members with given endpoints")]
    Defrag(command::defrag::DefragArgs),
    #[command(about = "Endpoint related commands")]
    Endpoint(command::endpoint::EndpointArgs),
    #[command(name = "move-leader", about = "Transfers leadership to another etcd cluster member.")]
    MoveLeader(command::move_leader::MoveLeaderArgs),
    #[command(about = "Watches events stream on keys or prefixes")]
    Watch(command::watch::WatchArgs),
    #[command(about = "Prints the version of etcdctl")]
    Version(command::version::VersionArgs),
    #[command(about = "Lease related commands", subcommand)]
    Lease(command::lease::LeaseCmd),
    #[command(about = "Membership related commands", subcommand)]
    Member(command::member::MemberCmd),
    #[command(about = "Manages etcd node snapshots", subcommand)]
    Snapshot(command::snapshot::SnapshotCmd),
    #[command(about = "Enable or disable authentication", subcommand)]
    Auth(command::auth::AuthCmd),
    #[command(about = "User related commands", subcommand)]
    User(command::user::UserCmd),
    #[command(about = "Role related commands", subcommand)]
    Role(command::role::RoleCmd),
    #[command(about = "commands for checking properties of the etcd cluster", subcommand)]
    Check(command::check::CheckCmd),
    #[command(about = "Generate the autocompletion script for the specified shell", subcommand)]
    Completion(command::completion::CompletionCmd),
    #[command(about = "Help about any command")]
    Help(HelpArgs),
}

/// `help [command]`.
#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command to describe.
    pub args: Vec<String>,
}

/// Every flag of `cmd` and its subcommands, to make prefix matching of subcommand names work everywhere.
pub fn command() -> clap::Command {
    fn infer(c: clap::Command) -> clap::Command {
        let c = c.infer_subcommands(true);
        let names: Vec<String> = c.get_subcommands().map(|s| s.get_name().to_string()).collect();
        names.into_iter().fold(c, |c, n| c.mut_subcommand(n, infer))
    }
    infer(<Cli as clap::CommandFactory>::command())
}
