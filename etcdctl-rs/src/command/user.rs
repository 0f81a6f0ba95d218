//! `user add|delete|get|list|passwd|grant-role|revoke-role`.

use clap::{Args, Subcommand};
use raftcd_proto::authpb::UserAddOptions;
use raftcd_proto::etcdserverpb::*;

use crate::cli::go_bool;
use crate::command::lease::PosArgs;
use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::global::Ctx;

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    #[command(about = "Adds a new user")]
    Add(AddArgs),
    #[command(about = "Deletes a user")]
    Delete(PosArgs),
    #[command(about = "Gets detailed information of a user")]
    Get(GetArgs),
    #[command(about = "Lists all users")]
    List(PosArgs),
    #[command(about = "Changes password of user")]
    Passwd(PasswdArgs),
    #[command(name = "grant-role", about = "Grants a role to a user")]
    GrantRole(PosArgs),
    #[command(name = "revoke-role", about = "Revokes a role from a user")]
    RevokeRole(PosArgs),
}

/// `user add` flags.
#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, help = "Read password from stdin instead of interactive terminal")]
    pub interactive: bool,
    #[arg(
        long = "new-user-password",
        value_name = "string",
        default_value = "",
        help = "Supply password from the command line flag"
    )]
    pub new_user_password: String,
    #[arg(long = "no-password", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Create a user without password (CN based auth only)")]
    pub no_password: bool,
    /// `<user name or user:password>`.
    pub args: Vec<String>,
}

/// `user get` flags.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Show permissions of roles granted to the user")]
    pub detail: bool,
    /// `<user name>`.
    pub args: Vec<String>,
}

/// `user passwd` flags.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, help = "If true, read password from stdin instead of interactive terminal")]
    pub interactive: bool,
    /// `<user name>`.
    pub args: Vec<String>,
}

/// Reads a password: one whitespace-free word from stdin (`--interactive=false`) or a prompted, confirmed one.
fn read_password(name: &str, interactive: bool) -> CliResult<String> {
    if !interactive {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
        return Ok(s.split_whitespace().next().unwrap_or_default().to_string());
    }
    let p1 = super::read_password(&format!("Password of {name}: "))?;
    if p1.is_empty() {
        return Err(CliError::new(EXIT_BAD_ARGS, "empty password"));
    }
    let p2 = super::read_password(&format!("Type password of {name} again for confirmation: "))?;
    if p1 != p2 {
        return Err(CliError::new(EXIT_BAD_ARGS, "given passwords are different"));
    }
    Ok(p1)
}

/// The UserAdd request; `password` is asked only when neither the flag nor `user:password` gives one.
pub fn build_add(a: &AddArgs, password: impl FnOnce(&str) -> CliResult<String>) -> CliResult<AuthUserAddRequest> {
    if a.args.len() != 1 {
        return Err(CliError::bad_args("user add command requires user name as its argument"));
    }
    let (name, pw) = if a.no_password {
        (a.args[0].clone(), String::new())
    } else if !a.new_user_password.is_empty() {
        (a.args[0].clone(), a.new_user_password.clone())
    } else if let Some((u, p)) = a.args[0].split_once(':') {
        if u.is_empty() {
            return Err(CliError::bad_args("empty user name is not allowed"));
        }
        (u.to_string(), p.to_string())
    } else {
        (a.args[0].clone(), password(&a.args[0])?)
    };
    Ok(AuthUserAddRequest {
        name,
        password: pw,
        options: Some(UserAddOptions { no_password: a.no_password }),
        hashed_password: String::new(),
    })
}

fn two(a: &PosArgs, msg: &str) -> CliResult<(String, String)> {
    if a.args.len() != 2 {
        return Err(CliError::bad_args(msg));
    }
    Ok((a.args[0].clone(), a.args[1].clone()))
}

/// Runs a `user` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: UserCmd) -> CliResult {
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    match cmd {
        UserCmd::Add(a) => {
            let interactive = a.interactive;
            let req = build_add(&a, |n| read_password(n, interactive))?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let name = req.name.clone();
            let r = c.user_add(req).await.map_err(err)?;
            p.user_add(&mut ctx.out, &name, &r)
        }
        UserCmd::Delete(a) => {
            if a.args.len() != 1 {
                return Err(CliError::bad_args("user delete command requires user name as its argument"));
            }
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.user_delete(AuthUserDeleteRequest { name: a.args[0].clone() }).await.map_err(err)?;
            p.user_delete(&mut ctx.out, &a.args[0], &r)
        }
        UserCmd::Get(a) => {
            if a.args.len() != 1 {
                return Err(CliError::bad_args("user get command requires user name as its argument"));
            }
            let name = a.args[0].clone();
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.user_get(AuthUserGetRequest { name: name.clone() }).await.map_err(err)?;
            if a.detail {
                ctx.out.line(&format!("User: {name}"));
                for role in &r.roles {
                    ctx.out.line("");
                    let rr = c.role_get(AuthRoleGetRequest { role: role.clone() }).await.map_err(err)?;
                    p.role_get(&mut ctx.out, role, &rr)?;
                }
                Ok(())
            } else {
                p.user_get(&mut ctx.out, &name, &r)
            }
        }
        UserCmd::List(a) => {
            if !a.args.is_empty() {
                return Err(CliError::bad_args("user list command requires no arguments"));
            }
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c.user_list(AuthUserListRequest {}).await.map_err(err)?;
            p.user_list(&mut ctx.out, &r)
        }
        UserCmd::Passwd(a) => {
            if a.args.len() != 1 {
                return Err(CliError::bad_args("user passwd command requires user name as its argument"));
            }
            let password = read_password(&a.args[0], a.interactive)?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let req =
                AuthUserChangePasswordRequest { name: a.args[0].clone(), password, hashed_password: String::new() };
            let r = c.user_change_password(req).await.map_err(err)?;
            p.user_change_password(&mut ctx.out, &r)
        }
        UserCmd::GrantRole(a) => {
            let (user, role) = two(&a, "user grant command requires user name and role name as its argument")?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c
                .user_grant_role(AuthUserGrantRoleRequest { user: user.clone(), role: role.clone() })
                .await
                .map_err(err)?;
            p.user_grant_role(&mut ctx.out, &user, &role, &r)
        }
        UserCmd::RevokeRole(a) => {
            let (user, role) = two(&a, "user revoke-role requires user name and role name as its argument")?;
            let c = ctx.client().await?;
            let p = ctx.printer()?;
            let r = c
                .user_revoke_role(AuthUserRevokeRoleRequest { name: user.clone(), role: role.clone() })
                .await
                .map_err(err)?;
            p.user_revoke_role(&mut ctx.out, &user, &role, &r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(args: &[&str], flag_pw: &str, no_pw: bool) -> AddArgs {
        AddArgs {
            interactive: true,
            new_user_password: flag_pw.into(),
            no_password: no_pw,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn passwords() {
        let r = build_add(&add(&["u:p"], "", false), |_| panic!("asked")).unwrap();
        assert_eq!((r.name.as_str(), r.password.as_str()), ("u", "p"));
        let r = build_add(&add(&["u"], "pw", false), |_| panic!("asked")).unwrap();
        assert_eq!(r.password, "pw");
        let r = build_add(&add(&["u"], "", false), |_| Ok("typed".into())).unwrap();
        assert_eq!(r.password, "typed");
        let r = build_add(&add(&["u"], "", true), |_| panic!("asked")).unwrap();
        assert!(r.options.unwrap().no_password);
        assert_eq!(build_add(&add(&[":p"], "", false), |_| panic!()).unwrap_err().code(), 128);
    }
}
