//! The replicated auth state: users, roles, the enabled flag and the auth revision, with etcd's rules for
//! each change (`auth/store.go`). Changes are applied in log order on every member, in the same store
//! transaction as the entry's applied index.
//!
//! # Layout (in the store's `x` space, so snapshots carry it)
//! ```text
//! su | name  -> authpb.User (password = bcrypt hash)
//! sr | name  -> authpb.Role
//! se         -> [1] while authentication is enabled
//! sv         -> auth revision, u64 big-endian (1 on a fresh store; +1 per user/role change)
//! ```

use std::collections::BTreeMap;

use prost::Message as _;
use raftcd_proto::authpb::{Permission, Role, User, UserAddOptions};
use raftcd_proto::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

/// The name of the user and of the role that may do anything.
pub const ROOT: &str = "root";

const USER_PREFIX: &[u8] = b"su";
const ROLE_PREFIX: &[u8] = b"sr";
const ENABLED_KEY: &[u8] = b"se";
const REVISION_KEY: &[u8] = b"sv";

/// Users, roles, enabled flag and revision.
#[derive(Debug, Clone, Default)]
pub struct AuthState {
    /// Whether requests are checked.
    pub enabled: bool,
    /// Bumped by every user or role change.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
}

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    [prefix, name.as_bytes()].concat()
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("auth: corrupt {what} record"))
}

impl AuthState {
    /// Reads the state from the store.
    pub fn load(store: &Store) -> Result<AuthState> {
        let mut st = AuthState {
            enabled: store.get_meta(ENABLED_KEY)?.is_some_and(|v| v == [1]),
            revision: match store.get_meta(REVISION_KEY)? {
                Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| corrupt("revision"))?),
                None => 1,
            },
            ..Default::default()
        };
        for (k, v) in store.scan_meta(USER_PREFIX)? {
            let u = User::decode(v.as_slice()).map_err(|_| corrupt("user"))?;
            st.users.insert(String::from_utf8_lossy(&k[USER_PREFIX.len()..]).into_owned(), u);
        }
        for (k, v) in store.scan_meta(ROLE_PREFIX)? {
            let r = Role::decode(v.as_slice()).map_err(|_| corrupt("role"))?;
            st.roles.insert(String::from_utf8_lossy(&k[ROLE_PREFIX.len()..]).into_owned(), r);
        }
        Ok(st)
    }

    /// True when `user` exists and holds the `root` role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    fn put_user(&mut self, txn: &mut WriteTxn<'_>, name: &str, u: User) {
        txn.set_meta(&key(USER_PREFIX, name), Some(u.encode_to_vec()));
        self.users.insert(name.to_string(), u);
    }

    fn put_role(&mut self, txn: &mut WriteTxn<'_>, name: &str, r: Role) {
        txn.set_meta(&key(ROLE_PREFIX, name), Some(r.encode_to_vec()));
        self.roles.insert(name.to_string(), r);
    }

    fn bump(&mut self, txn: &mut WriteTxn<'_>) {
        self.revision += 1;
        txn.set_meta(REVISION_KEY, Some(self.revision.to_be_bytes().to_vec()));
    }

    fn user(&self, name: &str) -> Result<User> {
        self.users.get(name).cloned().ok_or(Error::UserNotFound)
    }

    fn role(&self, name: &str) -> Result<Role> {
        self.roles.get(name).cloned().ok_or(Error::RoleNotFound)
    }

    /// AuthEnable: needs `root` with the `root` role. Enabling twice is a no-op.
    pub fn enable(&mut self, txn: &mut WriteTxn<'_>) -> Result<()> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !root.roles.iter().any(|r| r == ROOT) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        txn.set_meta(ENABLED_KEY, Some(vec![1]));
        Ok(())
    }

    /// AuthDisable. Disabling twice is a no-op.
    pub fn disable(&mut self, txn: &mut WriteTxn<'_>) {
        self.enabled = false;
        txn.set_meta(ENABLED_KEY, None);
    }

    /// UserAdd; the request carries the bcrypt hash (or no_password), never the password.
    pub fn user_add(&mut self, txn: &mut WriteTxn<'_>, r: &AuthUserAddRequest) -> Result<()> {
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(Error::UserExists);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password { Vec::new() } else { r.hashed_password.clone().into_bytes() };
        let u = User { name: r.name.clone().into_bytes(), password, roles: vec![], options: Some(options) };
        self.put_user(txn, &r.name, u);
        self.bump(txn);
        Ok(())
    }

    /// UserDelete; `root` cannot go while authentication is on.
    pub fn user_delete(&mut self, txn: &mut WriteTxn<'_>, name: &str) -> Result<()> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.user(name)?;
        self.users.remove(name);
        txn.set_meta(&key(USER_PREFIX, name), None);
        self.bump(txn);
        Ok(())
    }

    /// UserChangePassword (hash only).
    pub fn change_password(&mut self, txn: &mut WriteTxn<'_>, r: &AuthUserChangePasswordRequest) -> Result<()> {
        let mut u = self.user(&r.name)?;
        u.password = r.hashed_password.clone().into_bytes();
        self.put_user(txn, &r.name, u);
        self.bump(txn);
        Ok(())
    }

    /// UserGrantRole; the `root` role needs no role record. Granting a held role again is a no-op.
    pub fn grant_role(&mut self, txn: &mut WriteTxn<'_>, r: &AuthUserGrantRoleRequest) -> Result<()> {
        let mut u = self.user(&r.user)?;
        if r.role != ROOT {
            self.role(&r.role)?;
        }
        match u.roles.binary_search(&r.role) {
            Ok(_) => Ok(()),
            Err(at) => {
                u.roles.insert(at, r.role.clone());
                self.put_user(txn, &r.user, u);
                self.bump(txn);
                Ok(())
            }
        }
    }

    /// UserRevokeRole; `root` keeps the `root` role while authentication is on.
    pub fn revoke_role(&mut self, txn: &mut WriteTxn<'_>, r: &AuthUserRevokeRoleRequest) -> Result<()> {
        if self.enabled && r.name == ROOT && r.role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        let mut u = self.user(&r.name)?;
        let at = u.roles.iter().position(|x| x == &r.role).ok_or(Error::RoleNotGranted)?;
        u.roles.remove(at);
        self.put_user(txn, &r.name, u);
        self.bump(txn);
        Ok(())
    }

    /// RoleAdd.
    pub fn role_add(&mut self, txn: &mut WriteTxn<'_>, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleExists);
        }
        self.put_role(txn, name, Role { name: name.as_bytes().to_vec(), key_permission: vec![] });
        self.bump(txn);
        Ok(())
    }

    /// RoleDelete, which also takes the role away from every user; `root` stays while auth is on.
    pub fn role_delete(&mut self, txn: &mut WriteTxn<'_>, name: &str) -> Result<()> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.role(name)?;
        self.roles.remove(name);
        txn.set_meta(&key(ROLE_PREFIX, name), None);
        let holders: Vec<(String, User)> = self
            .users
            .iter()
            .filter(|(_, u)| u.roles.iter().any(|r| r == name))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        for (n, mut u) in holders {
            u.roles.retain(|r| r != name);
            self.put_user(txn, &n, u);
        }
        self.bump(txn);
        Ok(())
    }

    /// RoleGrantPermission: replaces the type of an identical key/range, else adds it in key order.
    pub fn grant_permission(&mut self, txn: &mut WriteTxn<'_>, r: &AuthRoleGrantPermissionRequest) -> Result<()> {
        let mut role = self.role(&r.name)?;
        let perm: Permission =
            r.perm.clone().ok_or_else(|| Error::InvalidArgument("etcdserver: permission is not given".into()))?;
        match role.key_permission.binary_search_by(|p| p.key.cmp(&perm.key).then(p.range_end.cmp(&perm.range_end))) {
            Ok(at) => role.key_permission[at].perm_type = perm.perm_type,
            Err(at) => role.key_permission.insert(at, perm),
        }
        self.put_role(txn, &r.name, role);
        self.bump(txn);
        Ok(())
    }

    /// RoleRevokePermission of exactly `key`/`range_end`.
    pub fn revoke_permission(&mut self, txn: &mut WriteTxn<'_>, r: &AuthRoleRevokePermissionRequest) -> Result<()> {
        let mut role = self.role(&r.role)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == r.key && p.range_end == r.range_end)
            .ok_or(Error::PermissionNotGranted)?;
        role.key_permission.remove(at);
        self.put_role(txn, &r.role, role);
        self.bump(txn);
        Ok(())
    }
}
