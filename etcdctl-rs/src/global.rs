//! Global flags after `ETCDCTL_*` environment variables are applied, and the client built from them.
//!
//! etcdctl's rules (`pkg/flags.SetPflagsFromEnv` over the inherited flags): an environment variable sets a flag
//! the command line did not set; one that shadows a flag given on the command line is fatal; `ETCDCTL_*`
//! variables matching no flag draw a warning. Invalid values from the environment are ignored.

use std::time::SystemTime;

use clap::parser::ValueSource;
use clap::ArgMatches;
use raftcd_client::{Client, ConnectOptions, KeepAlive, TlsOptions};

use crate::cli::{go_bool, go_duration, GlobalArgs};
use crate::exit::{CliError, CliResult, Out, EXIT_BAD_CONNECTION, EXIT_BAD_FEATURE};
use crate::printer::{new_printer, Printer};

/// Names of the flags every command inherits (long names), in pflag's sorted order.
pub const GLOBAL_FLAGS: &[&str] = &[
    "cacert",
    "cert",
    "command-timeout",
    "debug",
    "dial-timeout",
    "discovery-srv",
    "discovery-srv-name",
    "endpoints",
    "hex",
    "insecure-discovery",
    "insecure-skip-tls-verify",
    "insecure-transport",
    "keepalive-time",
    "keepalive-timeout",
    "key",
    "password",
    "user",
    "write-out",
];

/// `ETCDCTL_DIAL_TIMEOUT` for `dial-timeout`.
pub fn flag_to_env(name: &str) -> String {
    format!("ETCDCTL_{}", name.to_uppercase().replace('-', "_"))
}

/// capnslog's line prefix: `2006-01-02 15:04:05.000000 L | `.
pub fn capnslog_prefix(level: char) -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:06} {level} | ",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        now.subsec_micros()
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn set_from_env(g: &mut GlobalArgs, name: &str, v: &str) {
    let dur = |v: &str| go_duration(v).ok();
    let b = |v: &str| go_bool(v).ok();
    match name {
        "cacert" => g.cacert = v.into(),
        "cert" => g.cert = v.into(),
        "key" => g.key = v.into(),
        "user" => g.user = v.into(),
        "password" => g.password = v.into(),
        "discovery-srv" => g.discovery_srv = v.into(),
        "discovery-srv-name" => g.discovery_srv_name = v.into(),
        "write-out" => g.write_out = v.into(),
        "endpoints" => g.endpoints = v.split(',').map(|s| s.to_string()).collect(),
        "command-timeout" => g.command_timeout = dur(v).unwrap_or(g.command_timeout),
        "dial-timeout" => g.dial_timeout = dur(v).unwrap_or(g.dial_timeout),
        "keepalive-time" => g.keepalive_time = dur(v).unwrap_or(g.keepalive_time),
        "keepalive-timeout" => g.keepalive_timeout = dur(v).unwrap_or(g.keepalive_timeout),
        "debug" => g.debug = b(v).unwrap_or(g.debug),
        "hex" => g.hex = b(v).unwrap_or(g.hex),
        "insecure-discovery" => g.insecure_discovery = b(v).unwrap_or(g.insecure_discovery),
        "insecure-skip-tls-verify" => g.insecure_skip_tls_verify = b(v).unwrap_or(g.insecure_skip_tls_verify),
        "insecure-transport" => g.insecure_transport = b(v).unwrap_or(g.insecure_transport),
        _ => {}
    }
}

/// Applies `ETCDCTL_*` to the global flags. `extra` are further recognised variables (inherited
/// command-group flags, watch's key variables). A conflict is fatal, as in etcdctl.
pub fn apply_env(
    g: &mut GlobalArgs,
    m: &ArgMatches,
    extra: &[&str],
    env: &[(String, String)],
    out: &mut Out,
) -> CliResult<Vec<(String, String)>> {
    let mut used = Vec::new();
    for name in GLOBAL_FLAGS {
        let key = flag_to_env(name);
        let id = name.replace('-', "_");
        let on_cli = matches!(m.value_source(&id), Some(ValueSource::CommandLine));
        let val = env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        if on_cli {
            if val.is_some() {
                return Err(CliError::Raw {
                    code: 1,
                    text: format!(
                        "{}pkg/flags: conflicting environment variable {} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)\n",
                        capnslog_prefix('C'),
                        crate::gofmt::quote(key.as_bytes())
                    ),
                });
            }
            continue;
        }
        if let Some(v) = val.filter(|v| !v.is_empty()) {
            set_from_env(g, name, &v);
            used.push((name.to_string(), v));
        }
    }
    for (k, v) in env {
        if !k.starts_with("ETCDCTL_") {
            continue;
        }
        let known = GLOBAL_FLAGS.iter().chain(extra.iter()).any(|f| flag_to_env(f) == *k);
        if !known {
            out.eline(&format!("{}pkg/flags: unrecognized environment variable {k}={v}", capnslog_prefix('W')));
        }
    }
    Ok(used)
}

/// Resolved global settings plus the lazily created client.
pub struct Ctx {
    /// The effective global flags.
    pub global: GlobalArgs,
    /// Output sinks.
    pub out: Out,
    /// Whether `--command-timeout` was given (flag or environment): `snapshot save` is unbounded otherwise.
    pub command_timeout_set: bool,
    client: Option<Client>,
}

impl Ctx {
    /// A context over resolved flags.
    pub fn new(global: GlobalArgs, out: Out) -> Ctx {
        Ctx { global, out, command_timeout_set: false, client: None }
    }

    /// The `--write-out` printer (`Error: unsupported output format`, exit 4, for an unknown one).
    pub fn printer(&self) -> CliResult<Box<dyn Printer>> {
        new_printer(&self.global.write_out, self.global.hex)
            .ok_or_else(|| CliError::new(EXIT_BAD_FEATURE, "unsupported output format"))
    }

    /// Connection options from the flags, with `command_timeout` as the per-request bound.
    pub fn connect_options(&self) -> CliResult<ConnectOptions> {
        let g = &self.global;
        let tls = if !g.cert.is_empty() || !g.key.is_empty() || !g.cacert.is_empty() || !g.insecure_transport {
            Some(TlsOptions {
                ca: Some(g.cacert.clone()).filter(|s| !s.is_empty()),
                cert: Some(g.cert.clone()).filter(|s| !s.is_empty()),
                key: Some(g.key.clone()).filter(|s| !s.is_empty()),
                insecure_skip_verify: g.insecure_skip_tls_verify,
            })
        } else {
            None
        };
        let (user, password) = self.credentials()?;
        Ok(ConnectOptions {
            dial_timeout: g.dial_timeout,
            command_timeout: Some(g.command_timeout),
            keep_alive: Some(KeepAlive { time: g.keepalive_time, timeout: g.keepalive_timeout }),
            user,
            password,
            tls,
            require_leader: true,
        })
    }

    /// `--user name[:password]` / `--password`, prompting for a missing password.
    fn credentials(&self) -> CliResult<(Option<String>, Option<String>)> {
        let g = &self.global;
        if g.user.is_empty() {
            return Ok((None, None));
        }
        if !g.password.is_empty() {
            return Ok((Some(g.user.clone()), Some(g.password.clone())));
        }
        if let Some((u, p)) = g.user.split_once(':') {
            return Ok((Some(u.to_string()), Some(p.to_string())));
        }
        let p = crate::command::read_password("Password: ")?;
        Ok((Some(g.user.clone()), Some(p)))
    }

    /// The client over `--endpoints` (created on first use).
    pub async fn client(&mut self) -> CliResult<Client> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self.client_for(&self.global.endpoints.clone()).await?;
        // etcd's client authenticates while connecting: bad credentials fail there (exit 2).
        c.login().await.map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// A client over the given endpoints with the global options.
    pub async fn client_for(&self, endpoints: &[String]) -> CliResult<Client> {
        // etcdctl validates --write-out while building its client configuration.
        self.printer()?;
        let opts = self.connect_options()?;
        let eps: Vec<String> = endpoints.iter().map(|e| e.trim().to_string()).collect();
        Client::connect(&eps, opts).await.map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;
    use std::time::Duration;

    fn parse(args: &[&str]) -> (GlobalArgs, ArgMatches) {
        let m = crate::cli::command().try_get_matches_from(args).unwrap();
        let cli = crate::cli::Cli::from_arg_matches(&m).unwrap();
        (cli.global, m)
    }

    #[test]
    fn env_fills_unset_flags() {
        let (mut g, m) = parse(&["etcdctl", "get", "k"]);
        let env = vec![
            ("ETCDCTL_ENDPOINTS".to_string(), "a:1,b:2".to_string()),
            ("ETCDCTL_WRITE_OUT".to_string(), "json".to_string()),
            ("ETCDCTL_DIAL_TIMEOUT".to_string(), "bogus".to_string()),
        ];
        let (mut out, _, _) = crate::exit::capture::out();
        apply_env(&mut g, &m, &[], &env, &mut out).unwrap();
        assert_eq!(g.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(g.write_out, "json");
        assert_eq!(g.dial_timeout, Duration::from_secs(2));
    }

    #[test]
    fn env_shadowed_by_flag_is_fatal() {
        let (mut g, m) = parse(&["etcdctl", "--endpoints", "x:1", "get", "k"]);
        let env = vec![("ETCDCTL_ENDPOINTS".to_string(), "a:1".to_string())];
        let (mut out, _, _) = crate::exit::capture::out();
        let e = apply_env(&mut g, &m, &[], &env, &mut out).unwrap_err();
        assert_eq!(e.code(), 1);
    }

    #[test]
    fn unknown_env_warns() {
        let (mut g, m) = parse(&["etcdctl", "get", "k"]);
        let env = vec![("ETCDCTL_FOO".to_string(), "1".to_string())];
        let (mut out, _, err) = crate::exit::capture::out();
        apply_env(&mut g, &m, &[], &env, &mut out).unwrap();
        assert!(err.text().ends_with("W | pkg/flags: unrecognized environment variable ETCDCTL_FOO=1\n"));
    }

    #[test]
    fn go_style_flags_parse() {
        let (g, _) = parse(&["etcdctl", "-wjson", "--hex=true", "--command-timeout=1m30s", "get", "k"]);
        assert_eq!(g.write_out, "json");
        assert!(g.hex);
        assert_eq!(g.command_timeout, Duration::from_secs(90));
    }
}
