//! `-w protobuf`: the response's wire encoding, as etcdctl 3.4 marshals it.
//!
//! etcd 3.4's message types drop fields they do not know, so 3.5+ fields are cleared before encoding. For
//! clientv3's lease wrappers, Go promotes the embedded header's `Marshal`: only the header is written.

use prost::Message;
use raftcd_proto::etcdserverpb::*;

use super::Printer;
use crate::exit::{CliError, CliResult, Out, EXIT_BAD_FEATURE};

/// The protobuf printer.
#[derive(Debug, Default)]
pub struct ProtobufPrinter;

fn emit<M: Message>(o: &mut Out, m: &M) -> CliResult {
    o.raw(&m.encode_to_vec());
    Ok(())
}

fn header_only(o: &mut Out, h: &Option<ResponseHeader>) -> CliResult {
    emit(o, &h.unwrap_or_default())
}

impl Printer for ProtobufPrinter {
    fn name(&self) -> &'static str {
        "protobuf"
    }
    fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> CliResult {
        emit(o, r)
    }
    fn get(&self, o: &mut Out, r: &RangeResponse) -> CliResult {
        emit(o, r)
    }
    fn put(&self, o: &mut Out, r: &PutResponse) -> CliResult {
        emit(o, r)
    }
    fn txn(&self, o: &mut Out, r: &TxnResponse) -> CliResult {
        emit(o, r)
    }
    fn watch(&self, o: &mut Out, r: &WatchResponse) -> CliResult {
        let w = WatchResponse {
            header: Some(r.header.unwrap_or_default()),
            events: r.events.clone(),
            compact_revision: r.compact_revision,
            canceled: r.canceled,
            created: r.created,
            ..Default::default()
        };
        emit(o, &w)
    }
    fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> CliResult {
        header_only(o, &r.header)
    }
    fn revoke(&self, _o: &mut Out, _id: i64, _r: &LeaseRevokeResponse) -> CliResult {
        Err(CliError::new(EXIT_BAD_FEATURE, "marshal unsupported for type etcdserverpb.LeaseRevokeResponse"))
    }
    fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> CliResult {
        header_only(o, &r.header)
    }
    fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, _keys: bool) -> CliResult {
        header_only(o, &r.header)
    }
    fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> CliResult {
        header_only(o, &r.header)
    }
    fn member_add(&self, o: &mut Out, r: &MemberAddResponse) -> CliResult {
        emit(o, r)
    }
    fn member_remove(&self, o: &mut Out, _id: u64, r: &MemberRemoveResponse) -> CliResult {
        emit(o, r)
    }
    fn member_update(&self, o: &mut Out, _id: u64, r: &MemberUpdateResponse) -> CliResult {
        emit(o, r)
    }
    fn member_promote(&self, o: &mut Out, _id: u64, r: &MemberPromoteResponse) -> CliResult {
        emit(o, r)
    }
    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        emit(o, r)
    }
    fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> CliResult {
        emit(o, r)
    }
    fn role_add(&self, o: &mut Out, _role: &str, r: &AuthRoleAddResponse) -> CliResult {
        emit(o, r)
    }
    fn role_get(&self, o: &mut Out, _role: &str, r: &AuthRoleGetResponse) -> CliResult {
        emit(o, r)
    }
    fn role_delete(&self, o: &mut Out, _role: &str, r: &AuthRoleDeleteResponse) -> CliResult {
        emit(o, r)
    }
    fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> CliResult {
        emit(o, r)
    }
    fn role_grant_permission(&self, o: &mut Out, _role: &str, r: &AuthRoleGrantPermissionResponse) -> CliResult {
        emit(o, r)
    }
    fn role_revoke_permission(
        &self,
        o: &mut Out,
        _role: &str,
        _key: &[u8],
        _end: &[u8],
        r: &AuthRoleRevokePermissionResponse,
    ) -> CliResult {
        emit(o, r)
    }
    fn user_add(&self, o: &mut Out, _user: &str, r: &AuthUserAddResponse) -> CliResult {
        emit(o, r)
    }
    fn user_get(&self, o: &mut Out, _user: &str, r: &AuthUserGetResponse) -> CliResult {
        emit(o, r)
    }
    fn user_list(&self, o: &mut Out, r: &AuthUserListResponse) -> CliResult {
        emit(o, r)
    }
    fn user_change_password(&self, o: &mut Out, r: &AuthUserChangePasswordResponse) -> CliResult {
        emit(o, r)
    }
    fn user_grant_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserGrantRoleResponse) -> CliResult {
        emit(o, r)
    }
    fn user_revoke_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserRevokeRoleResponse) -> CliResult {
        emit(o, r)
    }
    fn user_delete(&self, o: &mut Out, _user: &str, r: &AuthUserDeleteResponse) -> CliResult {
        emit(o, r)
    }
    fn move_leader(&self, o: &mut Out, _l: u64, _t: u64, r: &MoveLeaderResponse) -> CliResult {
        emit(o, r)
    }
}
