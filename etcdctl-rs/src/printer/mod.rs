//! Output formats. One [`Printer`] per `--write-out` value; a method a format does not support fails with
//! `Error: <format> not supported as output format` (exit 4), as in etcdctl 3.4.

mod fields;
mod json;
mod protobuf;
mod simple;
mod table;

use raftcd_proto::etcdserverpb::*;

use crate::exit::{CliError, CliResult, Out, EXIT_BAD_FEATURE};

pub use fields::FieldsPrinter;
pub use json::JsonPrinter;
pub use protobuf::ProtobufPrinter;
pub use simple::SimplePrinter;
pub use table::TablePrinter;

pub(crate) use simple::event_type_name as event_name;

/// One member's health, as `endpoint health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpHealth {
    /// The endpoint as given.
    pub ep: String,
    /// Whether the probe read succeeded.
    pub health: bool,
    /// Probe duration in Go's rendering (`2.1ms`).
    pub took: String,
    /// The probe's error, empty when healthy.
    pub error: String,
}

/// One member's status, as `endpoint status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct EpStatus {
    /// The endpoint as given.
    pub ep: String,
    /// Its answer.
    pub resp: StatusResponse,
}

/// One member's KV hash, as `endpoint hashkv` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct EpHashKv {
    /// The endpoint as given.
    pub ep: String,
    /// Its answer.
    pub resp: HashKvResponse,
}

/// Formats command results. Every method defaults to "not supported".
#[allow(unused_variables)]
pub trait Printer {
    /// The `--write-out` name.
    fn name(&self) -> &'static str;

    /// The error for a method this format lacks.
    fn unsupported(&self) -> CliError {
        CliError::new(EXIT_BAD_FEATURE, format!("{} not supported as output format", self.name()))
    }

    /// `--print-value-only` support (simple only).
    fn set_value_only(&mut self) -> bool {
        false
    }

    fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn get(&self, o: &mut Out, r: &RangeResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn put(&self, o: &mut Out, r: &PutResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn txn(&self, o: &mut Out, r: &TxnResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn watch(&self, o: &mut Out, r: &WatchResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn revoke(&self, o: &mut Out, id: i64, r: &LeaseRevokeResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, keys: bool) -> CliResult {
        Err(self.unsupported())
    }
    fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn member_add(&self, o: &mut Out, r: &MemberAddResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn member_remove(&self, o: &mut Out, id: u64, r: &MemberRemoveResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn member_update(&self, o: &mut Out, id: u64, r: &MemberUpdateResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn member_promote(&self, o: &mut Out, id: u64, r: &MemberPromoteResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn endpoint_health(&self, o: &mut Out, r: &[EpHealth]) -> CliResult {
        Err(self.unsupported())
    }
    fn endpoint_status(&self, o: &mut Out, r: &[EpStatus]) -> CliResult {
        Err(self.unsupported())
    }
    fn endpoint_hashkv(&self, o: &mut Out, r: &[EpHashKv]) -> CliResult {
        Err(self.unsupported())
    }
    fn move_leader(&self, o: &mut Out, leader: u64, target: u64, r: &MoveLeaderResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_add(&self, o: &mut Out, role: &str, r: &AuthRoleAddResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_get(&self, o: &mut Out, role: &str, r: &AuthRoleGetResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_delete(&self, o: &mut Out, role: &str, r: &AuthRoleDeleteResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_grant_permission(&self, o: &mut Out, role: &str, r: &AuthRoleGrantPermissionResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn role_revoke_permission(
        &self,
        o: &mut Out,
        role: &str,
        key: &[u8],
        end: &[u8],
        r: &AuthRoleRevokePermissionResponse,
    ) -> CliResult {
        Err(self.unsupported())
    }
    fn user_add(&self, o: &mut Out, user: &str, r: &AuthUserAddResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_get(&self, o: &mut Out, user: &str, r: &AuthUserGetResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_list(&self, o: &mut Out, r: &AuthUserListResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_change_password(&self, o: &mut Out, r: &AuthUserChangePasswordResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_grant_role(&self, o: &mut Out, user: &str, role: &str, r: &AuthUserGrantRoleResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_revoke_role(&self, o: &mut Out, user: &str, role: &str, r: &AuthUserRevokeRoleResponse) -> CliResult {
        Err(self.unsupported())
    }
    fn user_delete(&self, o: &mut Out, user: &str, r: &AuthUserDeleteResponse) -> CliResult {
        Err(self.unsupported())
    }
}

/// The printer for a `--write-out` value, `None` for an unknown one.
pub fn new_printer(format: &str, hex: bool) -> Option<Box<dyn Printer>> {
    match format {
        "simple" => Some(Box::new(SimplePrinter::new(hex))),
        "json" => Some(Box::new(JsonPrinter)),
        "fields" => Some(Box::new(FieldsPrinter)),
        "protobuf" => Some(Box::new(ProtobufPrinter)),
        "table" => Some(Box::new(TablePrinter)),
        _ => None,
    }
}

/// Rows shared by the simple and table member list.
pub(crate) fn member_list_table(r: &MemberListResponse) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let hdr = vec!["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"];
    let rows = r
        .members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() { "unstarted" } else { "started" }.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect();
    (hdr, rows)
}

pub(crate) fn endpoint_health_table(list: &[EpHealth]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let hdr = vec!["endpoint", "health", "took", "error"];
    let rows = list.iter().map(|h| vec![h.ep.clone(), h.health.to_string(), h.took.clone(), h.error.clone()]).collect();
    (hdr, rows)
}

pub(crate) fn endpoint_status_table(list: &[EpStatus]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let hdr = vec![
        "endpoint",
        "ID",
        "version",
        "db size",
        "is leader",
        "is learner",
        "raft term",
        "raft index",
        "raft applied index",
        "errors",
    ];
    let rows = list
        .iter()
        .map(|s| {
            let member_id = s.resp.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                s.ep.clone(),
                format!("{member_id:x}"),
                s.resp.version.clone(),
                crate::gofmt::humanize_bytes(s.resp.db_size as u64),
                (s.resp.leader == member_id).to_string(),
                s.resp.is_learner.to_string(),
                s.resp.raft_term.to_string(),
                s.resp.raft_index.to_string(),
                s.resp.raft_applied_index.to_string(),
                s.resp.errors.join(", "),
            ]
        })
        .collect();
    (hdr, rows)
}

pub(crate) fn endpoint_hashkv_table(list: &[EpHashKv]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let hdr = vec!["endpoint", "hash"];
    let rows = list.iter().map(|h| vec![h.ep.clone(), h.resp.hash.to_string()]).collect();
    (hdr, rows)
}

/// etcd's `GetPrefixRangeEnd` over strings.
pub(crate) fn prefix_range_end(key: &[u8]) -> Vec<u8> {
    raftcd_client::range_end_for_prefix(key)
}
