//! `role add|delete|get|list|grant-permission|revoke-permission`.

use clap::{Args, Subcommand};
use raftcd_proto::authpb::{permission::Type, Permission};
use raftcd_proto::etcdserverpb::*;

use crate::cli::go_bool;
use crate::command::lease::PosArgs;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `role` subcommands.
#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    #[command(about = "Adds a new role")]
    Add(PosArgs),
    #[command(about = "Deletes a role")]
    Delete(PosArgs),
    #[command(about = "Gets detailed information of a role")]
    Get(PosArgs),
    #[command(about = "Lists all roles")]
    List(PosArgs),
    #[command(name = "grant-permission", about = "Grants a key to a role")]
    GrantPermission(PermArgs),
    #[command(name = "revoke-permission", about = "Revokes a key from a role")]
    RevokePermission(PermArgs),
}

/// Permission range flags.
#[derive(Debug, Clone, Args)]
pub struct PermArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "grant a prefix permission")]
    pub prefix: bool,
    #[arg(long = "from-key", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "grant a permission of keys that are greater than or equal to the given key using byte compare")]
    pub from_key: bool,
    /// Positional arguments.
    pub args: Vec<String>,
}

/// `permRange`: key and range end from `<key> [endkey]` and the flags.
pub fn perm_range(args: &[String], prefix: bool, from_key: bool) -> CliResult<(Vec<u8>, Vec<u8>)> {
    let key = &args[0];
    if key.is_empty() {
        if prefix && from_key {
            return Err(CliError::bad_args("--from-key and --prefix flags are mutually exclusive"));
        }
        let end = if prefix || from_key { vec![0] } else { vec![] };
        return Ok((vec![0], end));
    }
    if args.len() == 1 {
        if prefix {
            if from_key {
                return Err(CliError::bad_args("--from-key and --prefix flags are mutually exclusive"));
            }
            return Ok((key.as_bytes().to_vec(), raftcd_client::range_end_for_prefix(key.as_bytes())));
        }
        if from_key {
            return Ok((key.as_bytes().to_vec(), vec![0]));
        }
        return Ok((key.as_bytes().to_vec(), vec![]));
    }
    if prefix {
        return Err(CliError::bad_args("unexpected endkey argument with --prefix flag"));
    }
    if from_key {
        return Err(CliError::bad_args("unexpected endkey argument with --from-key flag"));
    }
    Ok((key.as_bytes().to_vec(), args[1].as_bytes().to_vec()))
}

/// `role grant-permission <role> <type> <key> [endkey]`.
pub fn build_grant(a: &PermArgs) -> CliResult<AuthRoleGrantPermissionRequest> {
    if a.args.len() < 3 {
        return Err(CliError::bad_args(
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ));
    }
    let perm_type = Type::from_str_name(&a.args[1].to_uppercase())
        .ok_or_else(|| CliError::bad_args(format!("invalid permission type: {}", a.args[1])))?;
    let (key, range_end) = perm_range(&a.args[2..], a.prefix, a.from_key)?;
    Ok(AuthRoleGrantPermissionRequest {
        name: a.args[0].clone(),
        perm: Some(Permission { perm_type: perm_type as i32, key, range_end }),
    })
}

/// `role revoke-permission <role> <key> [endkey]`.
pub fn build_revoke(a: &PermArgs) -> CliResult<AuthRoleRevokePermissionRequest> {
    if a.args.len() < 2 {
        return Err(CliError::bad_args(
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ));
    }
    let (key, range_end) = perm_range(&a.args[1..], a.prefix, a.from_key)?;
    Ok(AuthRoleRevokePermissionRequest { role: a.args[0].clone(), key, range_end })
}

fn one(a: &PosArgs, msg: &str) -> CliResult<String> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args(msg));
    }
    Ok(a.args[0].clone())
}

/// Runs a `role` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: RoleCmd) -> CliResult {
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    match cmd {
        RoleCmd::Add(a) => {
            let role = one(&a, "role add command requires role name as its argument")?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.role_add(AuthRoleAddRequest { name: role.clone() }).await.map_err(err)?;
            p.role_add(&mut ctx.out, &role, &r)
        }
        RoleCmd::Delete(a) => {
            let role = one(&a, "role delete command requires role name as its argument")?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.role_delete(AuthRoleDeleteRequest { role: role.clone() }).await.map_err(err)?;
            p.role_delete(&mut ctx.out, &role, &r)
        }
        RoleCmd::Get(a) => {
            let role = one(&a, "role get command requires role name as its argument")?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.role_get(AuthRoleGetRequest { role: role.clone() }).await.map_err(err)?;
            p.role_get(&mut ctx.out, &role, &r)
        }
        RoleCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("role list command requires no arguments"));
            }
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.role_list(AuthRoleListRequest {}).await.map_err(err)?;
            p.role_list(&mut ctx.out, &r)
        }
        RoleCmd::GrantPermission(a) => {
            let req = build_grant(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let role = req.name.clone();
            let r = c.role_grant_permission(req).await.map_err(err)?;
            p.role_grant_permission(&mut ctx.out, &role, &r)
        }
        RoleCmd::RevokePermission(a) => {
            let req = build_revoke(&a)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let (role, end) = (req.role.clone(), req.range_end.clone());
            let r = c.role_revoke_permission(req).await.map_err(err)?;
            // etcdctl prints the key as typed (args[1]), not the rewritten one.
            p.role_revoke_permission(&mut ctx.out, &role, a.args[1].as_bytes(), &end, &r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(args: &[&str], prefix: bool, from_key: bool) -> PermArgs {
        PermArgs { prefix, from_key, args: args.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn grant() {
        let r = build_grant(&perm(&["r", "readwrite", "k"], true, false)).unwrap();
        assert_eq!(r.perm.unwrap(), Permission { perm_type: 2, key: b"k".to_vec(), range_end: b"l".to_vec() });
        let r = build_grant(&perm(&["r", "read", "a", "z"], false, false)).unwrap();
        assert_eq!(r.perm.unwrap().range_end, b"z");
        assert_eq!(
            build_grant(&perm(&["r", "bogus", "a"], false, false)).unwrap_err(),
            CliError::bad_args("invalid permission type: bogus")
        );
        let r = build_grant(&perm(&["r", "write", ""], false, true)).unwrap();
        let p = r.perm.unwrap();
        assert_eq!((p.key, p.range_end), (vec![0], vec![0]));
    }

    #[test]
    fn revoke() {
        let r = build_revoke(&perm(&["r", "k"], false, true)).unwrap();
        assert_eq!((r.key, r.range_end), (b"k".to_vec(), vec![0]));
        assert_eq!(build_revoke(&perm(&["r", "a", "b"], true, false)).unwrap_err().code(), 128);
    }
}
