//! `member add|remove|update|list|promote`.

use clap::{Args, Subcommand};
use raftcd_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
};

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;
use crate::gofmt::quote;

/// `member` subcommands.
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    #[command(about = "Adds a member into the cluster")]
    Add(AddArgs),
    #[command(about = "Removes a member from the cluster")]
    Remove(IdArgs),
    #[command(about = "Updates a member in the cluster")]
    Update(UpdateArgs),
    #[command(
        about = "Lists all members in the cluster",
        long_about = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.\nThe items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.\n"
    )]
    List(IdArgs),
    #[command(
        about = "Promotes a non-voting member in the cluster",
        long_about = "Promotes a non-voting learner member to a voting one in the cluster.\n"
    )]
    Promote(IdArgs),
}

/// `member add` flags.
#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    #[arg(
        long = "peer-urls",
        value_name = "string",
        default_value = "",
        help = "comma separated peer URLs for the new member."
    )]
    pub peer_urls: String,
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "indicates if the new member is raft learner")]
    pub learner: bool,
    /// `<memberName>`.
    pub args: Vec<String>,
}

/// `member update` flags.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[arg(
        long = "peer-urls",
        value_name = "string",
        default_value = "",
        help = "comma separated peer URLs for the updated member."
    )]
    pub peer_urls: String,
    /// `<memberID>`.
    pub args: Vec<String>,
}

/// `<memberID>` only.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    /// Arguments.
    pub args: Vec<String>,
}

/// A hex member id argument.
pub fn member_id(args: &[String]) -> CliResult<u64> {
    if args.len() != 1 {
        return Err(CliError::bad_args("member ID is not provided"));
    }
    crate::gofmt::parse_uint_err(&args[0], 16)
        .map_err(|e| CliError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// `member add`: the new member's name and the request.
pub fn build_add(a: &AddArgs) -> CliResult<(String, MemberAddRequest)> {
    if a.args.is_empty() {
        return Err(CliError::bad_args("member name not provided"));
    }
    if a.args.len() > 1 {
        let mut ev = String::from("too many arguments");
        for s in &a.args {
            if s.to_lowercase().starts_with("http") {
                ev.push_str(&format!(", did you mean --peer-urls={s}"));
            }
        }
        return Err(CliError::bad_args(ev));
    }
    if a.peer_urls.is_empty() {
        return Err(CliError::bad_args("member peer urls not provided"));
    }
    let urls = a.peer_urls.split(',').map(|s| s.to_string()).collect();
    Ok((a.args[0].clone(), MemberAddRequest { peer_ur_ls: urls, is_learner: a.learner }))
}

/// `member update`.
pub fn build_update(a: &UpdateArgs) -> CliResult<MemberUpdateRequest> {
    let id = member_id(&a.args)?;
    if a.peer_urls.is_empty() {
        return Err(CliError::bad_args("member peer urls not provided"));
    }
    Ok(MemberUpdateRequest { id, peer_ur_ls: a.peer_urls.split(',').map(|s| s.to_string()).collect() })
}

/// Runs a `member` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: MemberCmd) -> CliResult {
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    match cmd {
        MemberCmd::Add(a) => {
            let (name, req) = build_add(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.member_add(req).await.map_err(err)?;
            p.member_add(&mut ctx.out, &r)?;
            if p.name() == "simple" {
                let new_id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
                let mut conf = Vec::new();
                for m in &r.members {
                    for u in &m.peer_ur_ls {
                        let n = if m.id == new_id { name.as_str() } else { m.name.as_str() };
                        conf.push(format!("{n}={u}"));
                    }
                }
                ctx.out.line("");
                ctx.out.line(&format!("ETCD_NAME={}", quote(name.as_bytes())));
                ctx.out.line(&format!("ETCD_INITIAL_CLUSTER={}", quote(conf.join(",").as_bytes())));
                ctx.out.line(&format!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", quote(a.peer_urls.as_bytes())));
                ctx.out.line("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        MemberCmd::Remove(a) => {
            let id = member_id(&a.args)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.member_remove(MemberRemoveRequest { id }).await.map_err(err)?;
            p.member_remove(&mut ctx.out, id, &r)
        }
        MemberCmd::Update(a) => {
            let req = build_update(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let id = req.id;
            let r = c.member_update(req).await.map_err(err)?;
            p.member_update(&mut ctx.out, id, &r)
        }
        MemberCmd::List(_) => {
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.member_list(MemberListRequest { linearizable: false }).await.map_err(err)?;
            p.member_list(&mut ctx.out, &r)
        }
        MemberCmd::Promote(a) => {
            let id = member_id(&a.args)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.member_promote(MemberPromoteRequest { id }).await.map_err(err)?;
            p.member_promote(&mut ctx.out, id, &r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add() {
        let a = AddArgs { peer_urls: "http://a:1,http://b:2".into(), learner: true, args: vec!["n".into()] };
        let (name, r) = build_add(&a).unwrap();
        assert_eq!(name, "n");
        assert_eq!(
            r,
            MemberAddRequest { peer_ur_ls: vec!["http://a:1".into(), "http://b:2".into()], is_learner: true }
        );
        let a = AddArgs { peer_urls: String::new(), learner: false, args: vec!["n".into(), "http://x".into()] };
        assert_eq!(
            build_add(&a).unwrap_err(),
            CliError::bad_args("too many arguments, did you mean --peer-urls=http://x")
        );
    }

    #[test]
    fn ids() {
        assert_eq!(member_id(&["ab".into()]).unwrap(), 0xab);
        assert_eq!(member_id(&[]).unwrap_err(), CliError::bad_args("member ID is not provided"));
        let u = UpdateArgs { peer_urls: "http://p".into(), args: vec!["1".into()] };
        assert_eq!(build_update(&u).unwrap(), MemberUpdateRequest { id: 1, peer_ur_ls: vec!["http://p".into()] });
    }
}
