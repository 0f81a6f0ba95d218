//! `auth enable|disable`.

use clap::Subcommand;
use raftcd_proto::etcdserverpb::{AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthUserGrantRoleRequest};

use crate::command::lease::PosArgs;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    #[command(about = "Enables authentication")]
    Enable(PosArgs),
    #[command(about = "Disables authentication")]
    Disable(PosArgs),
}

const ROOT_ROLE_MISSING: &str = "etcdserver: root user does not have root role";

/// Runs an `auth` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: AuthCmd) -> CliResult {
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    match cmd {
        AuthCmd::Enable(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("auth enable command does not accept any arguments"));
            }
            let c = ctx.client().await?;
            loop {
                match c.auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(e) if e.message() == Some(ROOT_ROLE_MISSING) => {
                        c.role_add(AuthRoleAddRequest { name: "root".into() }).await.map_err(err)?;
                        c.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() })
                            .await
                            .map_err(err)?;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            ctx.out.line("Authentication Enabled");
            Ok(())
        }
        AuthCmd::Disable(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("auth disable command does not accept any arguments"));
            }
            let c = ctx.client().await?;
            c.auth_disable(AuthDisableRequest {}).await.map_err(err)?;
            ctx.out.line("Authentication Disabled");
            Ok(())
        }
    }
}
