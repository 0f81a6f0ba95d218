//! etcd authentication and role-based access control.
//!
//! - [`state`]: users, roles, enabled flag and auth revision, replicated through raft and stored with the
//!   applied index (so snapshots and restores carry them).
//! - [`perm`]: whether key permissions cover a key range; [`check`]: etcd's permission rules per request.
//! - [`token`]: simple tokens, replicated through raft so a token works on every member.
//! - [`password`]: bcrypt, computed by the member that receives the request, before proposing: the log
//!   carries hashes, never passwords.
//!
//! A request's identity ([`RequestAuth`]) is resolved on the member that receives it: the `token` gRPC
//! metadata, else (with `--client-cert-auth`) the client certificate's common name. Reads are checked there
//! after the linearizable barrier; writes travel with the identity and the auth revision it was resolved
//! at, and are checked where they are applied.

pub mod check;
pub mod common_name;
pub mod jwt;
pub mod password;
pub mod perm;
pub mod state;
pub mod token;

#[cfg(test)]
mod tests;

use std::sync::RwLock;
use std::time::Duration;

use raftcd_proto::authpb::{Permission, User};
use raftcd_proto::raftcdpb::{raft_request::Op, RequestAuth};

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};
pub use perm::Access;
pub use state::{AuthState, ROOT};
pub use token::Tokens;

/// The auth store of one member: replicated state plus this member's copy of the token table.
pub struct AuthStore {
    state: RwLock<AuthState>,
    tokens: Tokens,
    /// Set with `--auth-token jwt,...`: tokens are signed JWTs instead of simple tokens.
    jwt: Option<jwt::JwtTokens>,
    bcrypt_cost: u32,
}

/// True for the ops that change the auth store and need the root role.
pub fn is_management(op: &Op) -> bool {
    matches!(
        op,
        Op::AuthEnable(_)
            | Op::AuthDisable(_)
            | Op::AuthUserAdd(_)
            | Op::AuthUserDelete(_)
            | Op::AuthUserChangePassword(_)
            | Op::AuthUserGrantRole(_)
            | Op::AuthUserRevokeRole(_)
            | Op::AuthRoleAdd(_)
            | Op::AuthRoleDelete(_)
            | Op::AuthRoleGrantPermission(_)
            | Op::AuthRoleRevokePermission(_)
    )
}

/// True for every op this module applies.
pub fn is_auth_op(op: &Op) -> bool {
    is_management(op) || matches!(op, Op::AuthToken(_))
}

impl AuthStore {
    /// Loads the persisted state. Tokens live `token_ttl` past their last use.
    pub fn load(store: &Store, token_ttl: Duration, bcrypt_cost: u32) -> Result<AuthStore> {
        Ok(AuthStore {
            state: RwLock::new(AuthState::load(store)?),
            tokens: Tokens::new(token_ttl, token::MAX_TOKENS),
            jwt: None,
            bcrypt_cost,
        })
    }

    /// Replaces the state with the store's after a snapshot install; tokens are kept only for users that
    /// still exist.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = AuthState::load(store)?;
        if !fresh.enabled {
            self.tokens.clear();
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AuthState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the state (for listings).
    pub fn snapshot(&self) -> AuthState {
        self.read().clone()
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.read().enabled
    }

    /// The auth revision.
    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    /// Uses JWT tokens (from `--auth-token jwt,...`) instead of simple ones.
    pub fn with_jwt(mut self, jwt: Option<jwt::JwtTokens>) -> AuthStore {
        self.jwt = jwt;
        self
    }

    /// With JWT tokens: a signed token for `user` (whose password was checked). None with simple tokens.
    pub fn issue_jwt(&self, user: &str) -> Option<Result<String>> {
        let j = self.jwt.as_ref()?;
        Some(j.issue(user, self.revision()).ok_or_else(|| {
            Error::Unimplemented("etcdserver: this member has no JWT priv-key and only verifies tokens".into())
        }))
    }

    /// The bcrypt cost for new password hashes.
    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost
    }

    /// Who a request is: the user of its `token`, else its certificate's common name, else nobody (empty
    /// name). An unknown or expired token fails with "invalid auth token". With auth off, nobody.
    pub fn identify(&self, token: Option<&str>, cn: Option<String>) -> Result<RequestAuth> {
        let st = self.read();
        let mut a = RequestAuth { username: String::new(), auth_revision: st.revision };
        if !st.enabled {
            return Ok(a);
        }
        if let Some(t) = token {
            a.username = match &self.jwt {
                // A JWT names its user; a user deleted since it was issued no longer counts.
                Some(j) => j
                    .verify(t)
                    .map(|(user, _)| user)
                    .filter(|user| st.users.contains_key(user))
                    .ok_or(Error::InvalidAuthToken)?,
                None => self.tokens.user(t).ok_or(Error::InvalidAuthToken)?,
            };
        } else if let Some(cn) = cn {
            a.username = cn;
        }
        Ok(a)
    }

    /// Read access to `[key, range_end)`, checked on the serving member.
    pub fn check_read(&self, a: &RequestAuth, key: &[u8], range_end: &[u8]) -> Result<()> {
        check::key_access(&self.read(), a, false, Access::Read, key, range_end)
    }

    /// Root-only operations.
    pub fn check_admin(&self, a: &RequestAuth) -> Result<()> {
        check::admin(&self.read(), a)
    }

    /// UserGet: root, or the user itself.
    pub fn check_user_get(&self, a: &RequestAuth, name: &str) -> Result<()> {
        let st = self.read();
        match check::admin(&st, a) {
            Err(_) if a.username == name && st.users.contains_key(name) => Ok(()),
            r => r,
        }
    }

    /// RoleGet: root, or a holder of the role.
    pub fn check_role_get(&self, a: &RequestAuth, role: &str) -> Result<()> {
        let st = self.read();
        match check::admin(&st, a) {
            Err(_) if st.users.get(&a.username).is_some_and(|u| u.roles.iter().any(|r| r == role)) => Ok(()),
            r => r,
        }
    }

    /// The apply-time check of a replicated request (see [`check::permit`]).
    pub fn permit(&self, auth: Option<&RequestAuth>, op: &Op, store: &Store) -> Result<()> {
        check::permit(&self.read(), auth, op, store)
    }

    /// A user record.
    pub fn user(&self, name: &str) -> Result<User> {
        self.read().users.get(name).cloned().ok_or(Error::UserNotFound)
    }

    /// A role's permissions.
    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>> {
        self.read().roles.get(name).map(|r| r.key_permission.clone()).ok_or(Error::RoleNotFound)
    }

    /// Checks a name and password (bcrypt on the blocking pool). Users without password never pass.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = {
            let st = self.read();
            if !st.enabled {
                return Err(Error::AuthNotEnabled);
            }
            match st.users.get(name) {
                Some(u) if !u.options.is_some_and(|o| o.no_password) => u.password.clone(),
                _ => return Err(Error::AuthFailed),
            }
        };
        if password::verify(password.to_string(), hash).await {
            Ok(())
        } else {
            Err(Error::AuthFailed)
        }
    }

    /// Applies one auth op (see [`is_auth_op`]) in the entry's store transaction.
    pub fn apply(&self, txn: &mut WriteTxn<'_>, op: &Op) -> Result<()> {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        match op {
            Op::AuthEnable(_) => st.enable(txn),
            Op::AuthDisable(_) => {
                st.disable(txn);
                self.tokens.clear();
                Ok(())
            }
            Op::AuthUserAdd(r) => st.user_add(txn, r),
            Op::AuthUserDelete(r) => {
                st.user_delete(txn, &r.name)?;
                self.tokens.forget_user(&r.name);
                Ok(())
            }
            Op::AuthUserChangePassword(r) => {
                st.change_password(txn, r)?;
                self.tokens.forget_user(&r.name);
                Ok(())
            }
            Op::AuthUserGrantRole(r) => st.grant_role(txn, r),
            Op::AuthUserRevokeRole(r) => st.revoke_role(txn, r),
            Op::AuthRoleAdd(r) => st.role_add(txn, &r.name),
            Op::AuthRoleDelete(r) => st.role_delete(txn, &r.role),
            Op::AuthRoleGrantPermission(r) => st.grant_permission(txn, r),
            Op::AuthRoleRevokePermission(r) => st.revoke_permission(txn, r),
            Op::AuthToken(t) => {
                if !st.enabled {
                    return Err(Error::AuthNotEnabled);
                }
                if !st.users.contains_key(&t.username) {
                    return Err(Error::AuthFailed);
                }
                self.tokens.insert(t.token.clone(), t.username.clone());
                Ok(())
            }
            _ => Err(Error::Storage("auth: not an auth op".into())),
        }
    }
}
