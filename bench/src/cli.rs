//! Command line: global flags shared by every scenario (as etcd's `benchmark`), then one subcommand each.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for the etcd v3 gRPC API. Runs against raftcd and etcd alike.
#[derive(Parser, Debug, Clone)]
#[command(name = "raftcd-bench", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every scenario understands.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Comma-separated client endpoints ("host:port" or "http://host:port").
    #[arg(long, global = true, default_value = "127.0.0.1:2379", value_parser = parse_endpoints)]
    pub endpoints: Endpoints,
    /// Number of gRPC connections (HTTP/2 channels); clients are spread over them round robin.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub conns: u64,
    /// Number of concurrent clients (each keeps one request in flight).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Total number of requests (default 10000 when --duration is not given either).
    #[arg(long, global = true, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long instead of a fixed total ("5s", "500ms", "2m").
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Cap on the request rate over all clients in requests per second (0 = as fast as possible).
    #[arg(long, global = true, default_value_t = 0.0)]
    pub rate: f64,
    /// Find the leader with Maintenance.Status and send every request there.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Timeout for establishing a connection.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Extra "key=value" labels copied into the JSON result line (under "tags").
    #[arg(long = "tag", global = true, value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Print only the JSON result line, not the human table.
    #[arg(long, global = true)]
    pub json_only: bool,
}

impl Global {
    /// How many requests or for how long a closed-loop scenario runs.
    pub fn limit(&self) -> Limit {
        match (self.total, self.duration) {
            (_, Some(d)) => Limit::Duration(d),
            (Some(n), None) => Limit::Total(n),
            (None, None) => Limit::Total(DEFAULT_TOTAL),
        }
    }
}

/// Requests when neither --total nor --duration is given.
pub const DEFAULT_TOTAL: u64 = 10_000;

/// When a closed-loop run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Total(u64),
    Duration(Duration),
}

/// Normalised endpoint URLs ("http://host:port").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints(pub Vec<String>);

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Put requests (etcd `benchmark put`).
    Put(PutArgs),
    /// Range requests on one key or on a prefix of --prefix-keys keys (etcd `benchmark range`).
    Range(RangeArgs),
    /// Transactions whose success branch holds --txn-ops puts (etcd `benchmark txn-put`).
    TxnPut(TxnPutArgs),
    /// Transactions that either read or write one key, --rw-ratio reads per write (etcd `benchmark txn-mixed`).
    TxnMixed(TxnMixedArgs),
    /// Watch event latency: time from a put being sent to each watcher receiving its event (watchers use every
    /// endpoint; --target-leader sends only the puts to the leader).
    Watch(WatchArgs),
    /// Many watchers on one key (default 10000 over 100 streams): every watcher must see every event.
    WatchFanout(WatchArgs),
    /// Lease keep-alive round trips, one lease and one keep-alive stream per client.
    LeaseKeepalive(LeaseArgs),
    /// Bulk load --keys distinct keys (each written once), spread over all clients.
    Load(LoadArgs),
    /// Show each endpoint's Maintenance.Status; with --wait, retry until all answer and agree on a leader.
    Status(StatusArgs),
    /// Poll a linearizable get on the first endpoint until it succeeds; report the time since --since-unix-ns.
    Ready(ReadyArgs),
    /// Measure the disk's write+fdatasync latency (the floor under a durable put).
    Fsync(FsyncArgs),
    /// Resident memory of server processes and the size of their data directories.
    Footprint(FootprintArgs),
    /// Turn the JSON lines of a comparison run into a Markdown table of medians and an SVG chart.
    Report(ReportArgs),
}

/// Key layout shared by the writing scenarios.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Size of each key in bytes (prefix included).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys written.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space_size: u64,
    /// Write keys in order (0, 1, 2, ... wrapping at --key-space-size) instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Bytes every key starts with.
    #[arg(long, default_value = "")]
    pub key_prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Read consistency, as etcd's `--consistency l|s`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (a ReadIndex round through the leader).
    #[value(name = "l")]
    Linearizable,
    /// Serializable (served from the member's local state).
    #[value(name = "s")]
    Serializable,
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// Key to read (written once before the run).
    #[arg(long, default_value = "bench/range/key")]
    pub key: String,
    /// Instead of one key, write this many keys under --key as a prefix and range over all of them.
    #[arg(long, default_value_t = 0)]
    pub prefix_keys: u64,
    /// l = linearizable, s = serializable.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Size of the values written before the run.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Return keys only.
    #[arg(long)]
    pub keys_only: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Puts per transaction.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub txn_ops: u64,
}

#[derive(Args, Debug, Clone)]
pub struct TxnMixedArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Read transactions per write transaction.
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// Consistency of the reads.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Number of watchers, all on the same key (default: 100 for `watch`, 10000 for `watch-fanout`).
    #[arg(long)]
    pub watchers: Option<u64>,
    /// Number of watch streams the watchers are spread over (default: 10 for `watch`, 100 for `watch-fanout`).
    #[arg(long)]
    pub streams: Option<u64>,
    /// Number of puts (events) to send (default: 200 for `watch`, 20 for `watch-fanout`).
    #[arg(long)]
    pub puts: Option<u64>,
    /// Puts per second (sent one at a time from one client).
    #[arg(long)]
    pub put_rate: Option<f64>,
    /// Value size of the puts (at least 8: the value carries the put's sequence number).
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// After the last put, how long to wait for outstanding events before counting them as missed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct LeaseArgs {
    /// TTL of each client's lease in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Number of distinct keys to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Size of each key in bytes (prefix included).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Bytes every key starts with.
    #[arg(long, default_value = "/load/")]
    pub key_prefix: String,
    /// Keys per request: 1 = plain puts, more = one transaction of that many puts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=128))]
    pub batch: u64,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// Retry for up to this long until every endpoint answers and all agree on one leader.
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(Args, Debug, Clone)]
pub struct ReadyArgs {
    /// When the server process was started (nanoseconds since the Unix epoch, `date +%s%N`).
    #[arg(long)]
    pub since_unix_ns: Option<u128>,
    /// Give up after this long.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Key to get.
    #[arg(long, default_value = "bench/ready")]
    pub key: String,
}

#[derive(Args, Debug, Clone)]
pub struct FsyncArgs {
    /// Directory to write the probe file in (use the servers' data disk).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Number of write+fdatasync rounds.
    #[arg(long, default_value_t = 200)]
    pub count: u64,
    /// Bytes written per round.
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Append to a growing file (the size changes, so each sync also flushes metadata) instead of
    /// overwriting a preallocated one.
    #[arg(long)]
    pub append: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FootprintArgs {
    /// Process ids to sum resident memory over.
    #[arg(long = "pid", required = true)]
    pub pids: Vec<u32>,
    /// Directories whose total file size to report.
    #[arg(long = "dir")]
    pub dirs: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON lines written by the scenarios of a comparison run (each tagged system=, round=, label=).
    #[arg(long)]
    pub input: PathBuf,
    /// Markdown file to write.
    #[arg(long)]
    pub md: PathBuf,
    /// SVG chart to write (its file name is linked from the Markdown).
    #[arg(long)]
    pub svg: PathBuf,
    /// The system whose numbers are the numerator of the ratios.
    #[arg(long, default_value = "raftcd")]
    pub subject: String,
    /// The system whose numbers are the denominator of the ratios.
    #[arg(long, default_value = "etcd")]
    pub baseline: String,
    /// Label of the single-client put whose p50 is compared with the fsync floor.
    #[arg(long, default_value = "put-1c")]
    pub floor_label: String,
    /// Free-form "key=value" facts about the run shown at the top (machine, settings).
    #[arg(long = "meta", value_parser = parse_tag)]
    pub meta: Vec<(String, String)>,
}

/// Parses "5s", "250ms", "100us", "2m", "1h", "1.5s" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?} (use ns, us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a comma-separated endpoint list into "http://host:port" URLs.
pub fn parse_endpoints(s: &str) -> Result<Endpoints, String> {
    let eps: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| if e.contains("://") { e.to_string() } else { format!("http://{e}") })
        .collect();
    if eps.is_empty() {
        return Err("no endpoints given".into());
    }
    for e in &eps {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(format!("unsupported endpoint {e:?} (use host:port or http://host:port)"));
        }
    }
    Ok(Endpoints(eps))
}

/// Parses "key=value".
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Checks what clap cannot express across flags.
pub fn validate(cli: &Cli) -> Result<()> {
    if cli.global.rate < 0.0 || !cli.global.rate.is_finite() {
        bail!("--rate must be >= 0");
    }
    if let Some(0) = cli.global.total {
        bail!("--total must be > 0");
    }
    match &cli.command {
        Command::Watch(w) | Command::WatchFanout(w) => {
            if w.val_size < 8 {
                bail!("--val-size must be at least 8 for watch scenarios");
            }
            if w.watchers == Some(0) || w.streams == Some(0) || w.puts == Some(0) {
                bail!("--watchers, --streams and --puts must be > 0");
            }
        }
        Command::TxnMixed(t) if !(t.rw_ratio.is_finite() && t.rw_ratio >= 0.0) => bail!("--rw-ratio must be >= 0"),
        Command::LeaseKeepalive(l) if l.ttl <= 0 => bail!("--ttl must be > 0"),
        Command::Load(l) if l.keys == 0 => bail!("--keys must be > 0"),
        Command::Fsync(f) if f.count == 0 || f.size == 0 => bail!("--count and --size must be > 0"),
        _ => {}
    }
    Ok(())
}

/// Parses and validates the process arguments.
pub fn parse_from<I, T>(args: I) -> Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).context("invalid arguments")?;
    validate(&cli)?;
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli> {
        parse_from(std::iter::once("raftcd-bench").chain(args.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn endpoints_are_normalised() {
        let e = parse_endpoints("127.0.0.1:2379, http://10.0.0.1:2379,,").unwrap();
        assert_eq!(e.0, vec!["http://127.0.0.1:2379", "http://10.0.0.1:2379"]);
        assert!(parse_endpoints(" , ").is_err());
        assert!(parse_endpoints("unix://x").is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("a=b=c").unwrap(), ("a".to_string(), "b=c".to_string()));
        assert!(parse_tag("=x").is_err());
        assert!(parse_tag("x").is_err());
    }

    #[test]
    fn put_flags_like_etcd_benchmark() {
        let cli = parse(&[
            "--endpoints",
            "127.0.0.1:1,127.0.0.1:2",
            "--conns",
            "8",
            "--clients",
            "64",
            "--total",
            "1000",
            "--target-leader",
            "put",
            "--key-size",
            "16",
            "--val-size",
            "100",
            "--key-space-size",
            "5000",
            "--sequential-keys",
        ])
        .unwrap();
        assert_eq!(cli.global.conns, 8);
        assert_eq!(cli.global.clients, 64);
        assert!(cli.global.target_leader);
        assert_eq!(cli.global.limit(), Limit::Total(1000));
        assert_eq!(cli.global.endpoints.0.len(), 2);
        let Command::Put(p) = cli.command else { panic!("not put") };
        assert_eq!((p.keys.key_size, p.keys.val_size, p.keys.key_space_size), (16, 100, 5000));
        assert!(p.keys.sequential_keys);
    }

    #[test]
    fn global_flags_may_follow_the_subcommand() {
        let cli = parse(&["range", "--consistency", "s", "--clients", "4", "--duration", "2s"]).unwrap();
        assert_eq!(cli.global.clients, 4);
        assert_eq!(cli.global.limit(), Limit::Duration(Duration::from_secs(2)));
        let Command::Range(r) = cli.command else { panic!("not range") };
        assert_eq!(r.consistency, Consistency::Serializable);
        assert_eq!(r.prefix_keys, 0);
    }

    #[test]
    fn defaults_and_conflicts() {
        let cli = parse(&["put"]).unwrap();
        assert_eq!(cli.global.limit(), Limit::Total(DEFAULT_TOTAL));
        assert_eq!(cli.global.endpoints.0, vec!["http://127.0.0.1:2379"]);
        assert!(parse(&["put", "--total", "5", "--duration", "1s"]).is_err());
        assert!(parse(&["put", "--clients", "0"]).is_err());
        assert!(parse(&["put", "--total", "0"]).is_err());
        assert!(parse(&["watch", "--val-size", "4"]).is_err());
        assert!(parse(&["load", "--batch", "129"]).is_err());
        assert!(parse(&["txn-mixed", "--rw-ratio", "-1"]).is_err());
    }

    #[test]
    fn tags_collect() {
        // (clap lets a global flag given after the subcommand replace, not extend, one given before it.)
        let cli = parse(&["put", "--tag", "system=etcd", "--tag", "round=2"]).unwrap();
        assert_eq!(
            cli.global.tags,
            vec![("system".to_string(), "etcd".to_string()), ("round".to_string(), "2".to_string())]
        );
    }
}
