//! Auth service: enable/disable/status, authenticate, users and roles.

use raftcd_proto::etcdserverpb::auth_client::AuthClient;
use raftcd_proto::etcdserverpb::*;
use tonic::transport::Channel;

use crate::conn::Retry;
use crate::{unary_rpc, Client};

pub(crate) fn client(ch: Channel) -> AuthClient<Channel> {
    AuthClient::new(ch).max_decoding_message_size(usize::MAX)
}

impl Client {
    unary_rpc!(
        /// Turns authentication on (the `root` user with the `root` role must exist).
        auth_enable => client, auth_enable, AuthEnableRequest, AuthEnableResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Turns authentication off.
        auth_disable => client, auth_disable, AuthDisableRequest, AuthDisableResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Whether authentication is on, and the auth revision.
        auth_status => client, auth_status, AuthStatusRequest, AuthStatusResponse, Retry::Always
    );
    unary_rpc!(
        /// Exchanges a name and password for a token (the client does this itself when `user` is set).
        authenticate => client, authenticate, AuthenticateRequest, AuthenticateResponse, Retry::Always
    );
    unary_rpc!(
        /// Adds a user.
        user_add => client, user_add, AuthUserAddRequest, AuthUserAddResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// A user's roles.
        user_get => client, user_get, AuthUserGetRequest, AuthUserGetResponse, Retry::Always
    );
    unary_rpc!(
        /// Every user name.
        user_list => client, user_list, AuthUserListRequest, AuthUserListResponse, Retry::Always
    );
    unary_rpc!(
        /// Deletes a user.
        user_delete => client, user_delete, AuthUserDeleteRequest, AuthUserDeleteResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Changes a user's password.
        user_change_password => client, user_change_password, AuthUserChangePasswordRequest,
        AuthUserChangePasswordResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Grants a role to a user.
        user_grant_role => client, user_grant_role, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
        Retry::IfNotSent
    );
    unary_rpc!(
        /// Revokes a role from a user.
        user_revoke_role => client, user_revoke_role, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse,
        Retry::IfNotSent
    );
    unary_rpc!(
        /// Adds a role.
        role_add => client, role_add, AuthRoleAddRequest, AuthRoleAddResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// A role's permissions.
        role_get => client, role_get, AuthRoleGetRequest, AuthRoleGetResponse, Retry::Always
    );
    unary_rpc!(
        /// Every role name.
        role_list => client, role_list, AuthRoleListRequest, AuthRoleListResponse, Retry::Always
    );
    unary_rpc!(
        /// Deletes a role.
        role_delete => client, role_delete, AuthRoleDeleteRequest, AuthRoleDeleteResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Grants a key or range permission to a role.
        role_grant_permission => client, role_grant_permission, AuthRoleGrantPermissionRequest,
        AuthRoleGrantPermissionResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Revokes a key or range permission from a role.
        role_revoke_permission => client, role_revoke_permission, AuthRoleRevokePermissionRequest,
        AuthRoleRevokePermissionResponse, Retry::IfNotSent
    );
}
