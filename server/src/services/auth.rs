//! etcdserverpb.Auth. Authentication is always disabled until the security issue lands: AuthStatus says so,
//! Authenticate fails as etcd's does with auth off, and the management RPCs answer Unimplemented.

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
    AuthenticateResponse,
};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::services::Ctx;

/// The Auth service.
pub struct AuthService {
    ctx: Arc<Ctx>,
}

impl AuthService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> AuthService {
        AuthService { ctx }
    }
}

fn not_yet() -> Status {
    Error::Unimplemented("raftcd: authentication is not available in this build".into()).into()
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(&self, _r: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(&self, _r: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        Err(Status::failed_precondition("etcdserver: authentication is not enabled"))
    }

    async fn auth_enable(&self, _r: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        Err(not_yet())
    }

    async fn auth_disable(&self, _r: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        Err(not_yet())
    }

    async fn user_add(&self, _r: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        Err(not_yet())
    }

    async fn user_get(&self, _r: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        Err(not_yet())
    }

    async fn user_list(&self, _r: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        Err(not_yet())
    }

    async fn user_delete(
        &self,
        _r: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        Err(not_yet())
    }

    async fn user_change_password(
        &self,
        _r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        Err(not_yet())
    }

    async fn user_grant_role(
        &self,
        _r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        Err(not_yet())
    }

    async fn user_revoke_role(
        &self,
        _r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        Err(not_yet())
    }

    async fn role_add(&self, _r: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        Err(not_yet())
    }

    async fn role_get(&self, _r: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        Err(not_yet())
    }

    async fn role_list(&self, _r: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        Err(not_yet())
    }

    async fn role_delete(
        &self,
        _r: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        Err(not_yet())
    }

    async fn role_grant_permission(
        &self,
        _r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        Err(not_yet())
    }

    async fn role_revoke_permission(
        &self,
        _r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        Err(not_yet())
    }
}
