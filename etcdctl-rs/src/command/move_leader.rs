//! `move-leader <transferee-member-id>`: finds the leader among `--endpoints` and asks it to hand over.

use clap::Args;
use raftcd_proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::Ctx;

/// `move-leader` arguments.
#[derive(Debug, Clone, Args)]
pub struct MoveLeaderArgs {
    /// `<transferee-member-id>` in hex.
    pub args: Vec<String>,
}

/// The target member id.
pub fn build(a: &MoveLeaderArgs) -> CliResult<MoveLeaderRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("move-leader command needs 1 argument"));
    }
    let target_id = crate::gofmt::parse_uint_err(&a.args[0], 16).map_err(CliError::bad_args)?;
    Ok(MoveLeaderRequest { target_id })
}

/// Runs `move-leader`.
pub async fn run(ctx: &mut Ctx, a: MoveLeaderArgs) -> CliResult {
    let req = build(&a)?;
    ctx.client().await?;
    let printer = ctx.printer()?;
    let eps = ctx.global.endpoints.clone();
    let mut leader = None;
    for ep in &eps {
        let c = ctx.client_for(std::slice::from_ref(ep)).await?;
        let s = c.status(StatusRequest {}).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
        if s.header.as_ref().map(|h| h.member_id) == Some(s.leader) {
            leader = Some((c, s.leader));
            break;
        }
    }
    let Some((c, leader_id)) = leader else {
        return Err(CliError::new(EXIT_BAD_ARGS, format!("no leader endpoint given at [{}]", eps.join(" "))));
    };
    let target = req.target_id;
    let r = c.move_leader(req).await.map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    printer.move_leader(&mut ctx.out, leader_id, target, &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target() {
        assert_eq!(build(&MoveLeaderArgs { args: vec!["ff".into()] }).unwrap().target_id, 255);
        assert_eq!(
            build(&MoveLeaderArgs { args: vec!["zz".into()] }).unwrap_err(),
            CliError::bad_args("strconv.ParseUint: parsing \"zz\": invalid syntax")
        );
    }
}
