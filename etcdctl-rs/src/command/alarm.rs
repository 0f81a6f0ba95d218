//! `alarm list|disarm`.

use clap::Subcommand;
use raftcd_proto::etcdserverpb::alarm_request::AlarmAction;
use raftcd_proto::etcdserverpb::{AlarmRequest, AlarmResponse};

use crate::command::lease::PosArgs;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `alarm` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlarmCmd {
    #[command(about = "Disarms all alarms")]
    Disarm(PosArgs),
    #[command(about = "Lists all alarms")]
    List(PosArgs),
}

/// The request that lists every alarm.
pub fn list_request() -> AlarmRequest {
    AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 }
}

/// Runs an `alarm` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: AlarmCmd) -> CliResult {
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    match cmd {
        AlarmCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("alarm list command accepts no arguments"));
            }
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.alarm(list_request()).await.map_err(err)?;
            p.alarm(&mut ctx.out, &r)
        }
        AlarmCmd::Disarm(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("alarm disarm command accepts no arguments"));
            }
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            // clientv3 disarms "all" as: list, then deactivate each; the result carries no header.
            let listed = c.alarm(list_request()).await.map_err(err)?;
            let mut ret = AlarmResponse::default();
            for am in listed.alarms {
                let r = c
                    .alarm(AlarmRequest {
                        action: AlarmAction::Deactivate as i32,
                        member_id: am.member_id,
                        alarm: am.alarm,
                    })
                    .await
                    .map_err(err)?;
                ret.alarms.extend(r.alarms);
            }
            p.alarm(&mut ctx.out, &ret)
        }
    }
}
