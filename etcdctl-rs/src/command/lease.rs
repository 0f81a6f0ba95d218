//! `lease grant|revoke|timetolive|list|keep-alive`.

use clap::{Args, Subcommand};
use raftcd_proto::etcdserverpb::{LeaseGrantRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest};

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_BAD_CONNECTION, EXIT_ERROR};
use crate::global::Ctx;

/// `lease` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    #[command(about = "Creates leases")]
    Grant(PosArgs),
    #[command(about = "Revokes leases")]
    Revoke(PosArgs),
    #[command(about = "Get lease information")]
    Timetolive(TtlArgs),
    #[command(about = "List all active leases")]
    List(PosArgs),
    #[command(name = "keep-alive", about = "Keeps leases alive (renew)")]
    KeepAlive(KeepAliveArgs),
}

/// Positional arguments only.
#[derive(Debug, Clone, Args)]
pub struct PosArgs {
    /// Arguments.
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
}

/// `lease timetolive` flags.
#[derive(Debug, Clone, Args)]
pub struct TtlArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Get keys attached to this lease")]
    pub keys: bool,
    /// `<leaseID>`.
    pub args: Vec<String>,
}

/// `lease keep-alive` flags.
#[derive(Debug, Clone, Args)]
pub struct KeepAliveArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Resets the keep-alive time to its original value and exits immediately")]
    pub once: bool,
    /// `<leaseID>`.
    pub args: Vec<String>,
}

/// A hex lease id argument (`leaseFromArgs`).
pub fn lease_id(arg: &str) -> CliResult<i64> {
    crate::gofmt::parse_int_err(arg, 16)
        .map_err(|e| CliError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// `lease grant <ttl>`.
pub fn build_grant(a: &PosArgs) -> CliResult<LeaseGrantRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("lease grant command needs TTL argument"));
    }
    let ttl = crate::gofmt::parse_int_err(&a.args[0], 10).map_err(|e| CliError::bad_args(format!("bad TTL ({e})")))?;
    Ok(LeaseGrantRequest { ttl, id: 0 })
}

/// `lease revoke <id>`.
pub fn build_revoke(a: &PosArgs) -> CliResult<LeaseRevokeRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("lease revoke command needs 1 argument"));
    }
    Ok(LeaseRevokeRequest { id: lease_id(&a.args[0])? })
}

/// `lease timetolive <id> [--keys]`.
pub fn build_ttl(a: &TtlArgs) -> CliResult<LeaseTimeToLiveRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("lease timetolive command needs lease ID as argument"));
    }
    Ok(LeaseTimeToLiveRequest { id: lease_id(&a.args[0])?, keys: a.keys })
}

/// `lease keep-alive <id>`: the lease id.
pub fn build_keep_alive(a: &KeepAliveArgs) -> CliResult<i64> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("lease keep-alive command needs lease ID as argument"));
    }
    lease_id(&a.args[0])
}

/// Runs a `lease` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: LeaseCmd) -> CliResult {
    match cmd {
        LeaseCmd::Grant(a) => {
            let req = build_grant(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c
                .lease_grant(req)
                .await
                .map_err(|e| CliError::new(EXIT_ERROR, format!("failed to grant lease ({e})")))?;
            p.grant(&mut ctx.out, &r)
        }
        LeaseCmd::Revoke(a) => {
            let req = build_revoke(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let id = req.id;
            let r = c
                .lease_revoke(req)
                .await
                .map_err(|e| CliError::new(EXIT_ERROR, format!("failed to revoke lease ({e})")))?;
            p.revoke(&mut ctx.out, id, &r)
        }
        LeaseCmd::Timetolive(a) => {
            let req = build_ttl(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let keys = req.keys;
            let r = c.lease_time_to_live(req).await.map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
            p.time_to_live(&mut ctx.out, &r, keys)
        }
        LeaseCmd::List(_) => {
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c
                .lease_leases(LeaseLeasesRequest {})
                .await
                .map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
            p.leases(&mut ctx.out, &r)
        }
        LeaseCmd::KeepAlive(a) => {
            let id = build_keep_alive(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            if a.once {
                let r =
                    c.lease_keep_alive_once(id).await.map_err(|e| CliError::new(EXIT_BAD_CONNECTION, e.to_string()))?;
                return p.keep_alive(&mut ctx.out, &r);
            }
            let mut h = c.lease_keep_alive(id);
            while let Some(r) = h.next().await {
                match r {
                    Ok(r) => {
                        p.keep_alive(&mut ctx.out, &r)?;
                        ctx.out.flush();
                    }
                    Err(e) => return Err(CliError::new(EXIT_BAD_CONNECTION, e.to_string())),
                }
            }
            if p.name() == "simple" {
                ctx.out.line(&format!("lease {id:016x} expired or revoked."));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(v: &[&str]) -> PosArgs {
        PosArgs { args: v.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn builders() {
        assert_eq!(build_grant(&pos(&["60"])).unwrap(), LeaseGrantRequest { ttl: 60, id: 0 });
        assert_eq!(
            build_grant(&pos(&["x"])).unwrap_err(),
            CliError::bad_args("bad TTL (strconv.ParseInt: parsing \"x\": invalid syntax)")
        );
        assert_eq!(build_revoke(&pos(&["1f"])).unwrap(), LeaseRevokeRequest { id: 31 });
        assert_eq!(
            build_ttl(&TtlArgs { keys: true, args: vec!["a".into()] }).unwrap(),
            LeaseTimeToLiveRequest { id: 10, keys: true }
        );
        assert_eq!(build_keep_alive(&KeepAliveArgs { once: true, args: vec![] }).unwrap_err().code(), 128);
        assert_eq!(
            lease_id("xyz").unwrap_err(),
            CliError::bad_args(
                "bad lease ID arg (strconv.ParseInt: parsing \"xyz\": invalid syntax), expecting ID in Hex"
            )
        );
    }
}
