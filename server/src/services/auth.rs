//! etcdserverpb.Auth: authentication on/off, tokens, users and roles, as etcd's `v3_server.go` serves them.
//! Changes go through raft (passwords hashed here first, so the log only carries bcrypt hashes) and are
//! checked for the root role where they apply; reads are served after the linearizable barrier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use raftcd_proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGetRequest,
    AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListRequest,
    AuthUserListResponse, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest,
    AuthenticateResponse, ResponseHeader,
};
use raftcd_proto::raftcdpb::{raft_request::Op, AuthToken};
use tonic::{Request, Response, Status};

use crate::apply::ApplyResult;
use crate::auth::{password, Tokens};
use crate::services::{deny_learner, unexpected, Ctx};

/// The Auth service.
pub struct AuthService {
    ctx: Arc<Ctx>,
    /// Numbers the tokens this member hands out.
    nonce: AtomicU64,
}

impl AuthService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> AuthService {
        AuthService { ctx, nonce: AtomicU64::new(1) }
    }

    /// Proposes an auth change on behalf of the caller; the answer is a header.
    async fn change<T>(&self, req: &Request<T>, op: Op) -> Result<Option<ResponseHeader>, Status> {
        let who = self.ctx.identify(req)?;
        deny_learner(&self.ctx)?;
        match self.ctx.propose_as(op, Some(who)).await? {
            ApplyResult::Auth => Ok(Some(self.ctx.header(self.ctx.store.current_revision()))),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until this member has applied everything committed before the read began.
    async fn barrier(&self) -> Result<Option<ResponseHeader>, Status> {
        deny_learner(&self.ctx)?;
        self.ctx.raft.linearizable_barrier().await?;
        Ok(Some(self.ctx.header(self.ctx.store.current_revision())))
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(&self, _r: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        let header = self.barrier().await?;
        let st = self.ctx.auth.snapshot();
        Ok(Response::new(AuthStatusResponse { header, enabled: st.enabled, auth_revision: st.revision }))
    }

    async fn authenticate(&self, r: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let r = r.into_inner();
        deny_learner(&self.ctx)?;
        if self.ctx.auth.issue_jwt("").is_some() {
            // JWT: nothing to replicate; check the password against an up-to-date auth state, then sign.
            self.ctx.raft.linearizable_barrier().await?;
            self.ctx.auth.verify_password(&r.name, &r.password).await?;
            let token = self.ctx.auth.issue_jwt(&r.name).unwrap_or(Err(crate::error::Error::AuthFailed))?;
            return Ok(Response::new(AuthenticateResponse {
                header: Some(self.ctx.header(self.ctx.store.current_revision())),
                token,
            }));
        }
        self.ctx.auth.verify_password(&r.name, &r.password).await?;
        let token = Tokens::generate(self.nonce.fetch_add(1, Ordering::Relaxed));
        let op = Op::AuthToken(AuthToken { username: r.name, token: token.clone() });
        match self.ctx.propose(op).await? {
            ApplyResult::Auth => Ok(Response::new(AuthenticateResponse {
                header: Some(self.ctx.header(self.ctx.store.current_revision())),
                token,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn auth_enable(&self, r: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.change(&r, Op::AuthEnable(AuthEnableRequest {})).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(&self, r: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.change(&r, Op::AuthDisable(AuthDisableRequest {})).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn user_add(&self, r: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let mut add = r.get_ref().clone();
        let no_password = add.options.is_some_and(|o| o.no_password);
        let plain = std::mem::take(&mut add.password);
        if !no_password && add.hashed_password.is_empty() {
            add.hashed_password = password::hash(plain, self.ctx.auth.bcrypt_cost()).await?;
        }
        let header = self.change(&r, Op::AuthUserAdd(add)).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, r: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = self.ctx.identify(&r)?;
        let header = self.barrier().await?;
        let name = &r.get_ref().name;
        self.ctx.auth.check_user_get(&who, name)?;
        let user = self.ctx.auth.user(name)?;
        Ok(Response::new(AuthUserGetResponse { header, roles: user.roles }))
    }

    async fn user_list(&self, r: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        let who = self.ctx.identify(&r)?;
        let header = self.barrier().await?;
        self.ctx.auth.check_admin(&who)?;
        let users = self.ctx.auth.snapshot().users.into_keys().collect();
        Ok(Response::new(AuthUserListResponse { header, users }))
    }

    async fn user_delete(&self, r: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let header = self.change(&r, Op::AuthUserDelete(r.get_ref().clone())).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let mut change = r.get_ref().clone();
        let plain = std::mem::take(&mut change.password);
        if change.hashed_password.is_empty() {
            change.hashed_password = password::hash(plain, self.ctx.auth.bcrypt_cost()).await?;
        }
        let header = self.change(&r, Op::AuthUserChangePassword(change)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let header = self.change(&r, Op::AuthUserGrantRole(r.get_ref().clone())).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let header = self.change(&r, Op::AuthUserRevokeRole(r.get_ref().clone())).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, r: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let header = self.change(&r, Op::AuthRoleAdd(r.get_ref().clone())).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, r: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = self.ctx.identify(&r)?;
        let header = self.barrier().await?;
        let role = &r.get_ref().role;
        self.ctx.auth.check_role_get(&who, role)?;
        let perm = self.ctx.auth.role_permissions(role)?;
        Ok(Response::new(AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(&self, r: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        let who = self.ctx.identify(&r)?;
        let header = self.barrier().await?;
        self.ctx.auth.check_admin(&who)?;
        let roles = self.ctx.auth.snapshot().roles.into_keys().collect();
        Ok(Response::new(AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(&self, r: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let header = self.change(&r, Op::AuthRoleDelete(r.get_ref().clone())).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let header = self.change(&r, Op::AuthRoleGrantPermission(r.get_ref().clone())).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let header = self.change(&r, Op::AuthRoleRevokePermission(r.get_ref().clone())).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
