//! `-w json`: Go's `encoding/json` of the response etcdctl 3.4 holds, field for field.
//!
//! For the plain RPC responses that is the gogo-generated struct: proto field names, every field
//! `omitempty`, bytes in base64, enums as numbers. Lease responses are clientv3's wrapper structs (the header
//! flattened into the object; own fields never omitted), watch responses clientv3's `WatchResponse`. Only the
//! fields etcd 3.4 knows are written, so a newer server's extra fields do not show.

use base64::Engine as _;
use raftcd_proto::authpb::Permission;
use raftcd_proto::etcdserverpb::response_op::Response;
use raftcd_proto::etcdserverpb::*;
use raftcd_proto::mvccpb::{Event, KeyValue};

use super::{EpHashKv, EpHealth, EpStatus, Printer};
use crate::exit::{CliResult, Out};
use crate::gofmt::json_string;

/// The json printer.
#[derive(Debug, Default)]
pub struct JsonPrinter;

/// A JSON object under construction, members in insertion order.
pub(crate) struct Obj(String);

fn b64(b: &[u8]) -> String {
    json_string(&base64::engine::general_purpose::STANDARD.encode(b))
}

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_string(k));
        self.0.push(':');
    }
    /// Always written.
    pub(crate) fn raw(mut self, k: &str, v: impl AsRef<str>) -> Obj {
        self.key(k);
        self.0.push_str(v.as_ref());
        self
    }
    /// Written unless `None` (omitempty pointer).
    pub(crate) fn opt(self, k: &str, v: Option<String>) -> Obj {
        match v {
            Some(v) => self.raw(k, v),
            None => self,
        }
    }
    pub(crate) fn num<N: std::fmt::Display + Default + PartialEq>(self, k: &str, v: N) -> Obj {
        if v == N::default() {
            self
        } else {
            self.raw(k, v.to_string())
        }
    }
    pub(crate) fn flag(self, k: &str, v: bool) -> Obj {
        if v {
            self.raw(k, "true")
        } else {
            self
        }
    }
    pub(crate) fn str(self, k: &str, v: &str) -> Obj {
        if v.is_empty() {
            self
        } else {
            self.raw(k, json_string(v))
        }
    }
    pub(crate) fn bytes(self, k: &str, v: &[u8]) -> Obj {
        if v.is_empty() {
            self
        } else {
            self.raw(k, b64(v))
        }
    }
    /// Written unless empty (omitempty slice).
    pub(crate) fn list(self, k: &str, items: Vec<String>) -> Obj {
        if items.is_empty() {
            self
        } else {
            self.raw(k, format!("[{}]", items.join(",")))
        }
    }
    pub(crate) fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn strings(v: &[String]) -> Vec<String> {
    v.iter().map(|s| json_string(s)).collect()
}

/// The header's members, for embedding or for its own object.
fn hdr_fields(o: Obj, h: &ResponseHeader) -> Obj {
    o.num("cluster_id", h.cluster_id)
        .num("member_id", h.member_id)
        .num("revision", h.revision)
        .num("raft_term", h.raft_term)
}

pub(crate) fn hdr(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(|h| hdr_fields(Obj::new(), h).end())
}

pub(crate) fn kv(k: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &k.key)
        .num("create_revision", k.create_revision)
        .num("mod_revision", k.mod_revision)
        .num("version", k.version)
        .bytes("value", &k.value)
        .num("lease", k.lease)
        .end()
}

fn event(e: &Event) -> String {
    Obj::new().num("type", e.r#type).opt("kv", e.kv.as_ref().map(kv)).opt("prev_kv", e.prev_kv.as_ref().map(kv)).end()
}

pub(crate) fn range(r: &RangeResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .list("kvs", r.kvs.iter().map(kv).collect())
        .flag("more", r.more)
        .num("count", r.count)
        .end()
}

pub(crate) fn put(r: &PutResponse) -> String {
    Obj::new().opt("header", hdr(&r.header)).opt("prev_kv", r.prev_kv.as_ref().map(kv)).end()
}

pub(crate) fn del(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .opt("header", hdr(&r.header))
        .num("deleted", r.deleted)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect())
        .end()
}

pub(crate) fn txn(r: &TxnResponse) -> String {
    let ops = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(x)) => format!("{{\"ResponseRange\":{}}}", range(x)),
                Some(Response::ResponsePut(x)) => format!("{{\"ResponsePut\":{}}}", put(x)),
                Some(Response::ResponseDeleteRange(x)) => format!("{{\"ResponseDeleteRange\":{}}}", del(x)),
                Some(Response::ResponseTxn(x)) => format!("{{\"ResponseTxn\":{}}}", txn(x)),
                None => "null".into(),
            };
            Obj::new().raw("Response", inner).end()
        })
        .collect();
    Obj::new().opt("header", hdr(&r.header)).flag("succeeded", r.succeeded).list("responses", ops).end()
}

fn member(m: &Member) -> String {
    Obj::new()
        .num("ID", m.id)
        .str("name", &m.name)
        .list("peerURLs", strings(&m.peer_ur_ls))
        .list("clientURLs", strings(&m.client_ur_ls))
        .flag("isLearner", m.is_learner)
        .end()
}

fn members(h: &Option<ResponseHeader>, ms: &[Member]) -> String {
    Obj::new().opt("header", hdr(h)).list("members", ms.iter().map(member).collect()).end()
}

fn header_only(h: &Option<ResponseHeader>) -> String {
    Obj::new().opt("header", hdr(h)).end()
}

fn status(s: &StatusResponse) -> String {
    Obj::new()
        .opt("header", hdr(&s.header))
        .str("version", &s.version)
        .num("dbSize", s.db_size)
        .num("leader", s.leader)
        .num("raftIndex", s.raft_index)
        .num("raftTerm", s.raft_term)
        .num("raftAppliedIndex", s.raft_applied_index)
        .list("errors", strings(&s.errors))
        .num("dbSizeInUse", s.db_size_in_use)
        .flag("isLearner", s.is_learner)
        .end()
}

fn hash_kv(h: &HashKvResponse) -> String {
    Obj::new().opt("header", hdr(&h.header)).num("hash", h.hash).num("compact_revision", h.compact_revision).end()
}

fn perm(p: &Permission) -> String {
    Obj::new().num("permType", p.perm_type).bytes("key", &p.key).bytes("range_end", &p.range_end).end()
}

/// clientv3 lease wrappers embed `*pb.ResponseHeader`: its members sit directly in the object.
fn flat_header(h: &Option<ResponseHeader>) -> Obj {
    match h {
        Some(h) => hdr_fields(Obj::new(), h),
        None => Obj::new(),
    }
}

fn print(o: &mut Out, s: String) -> CliResult {
    o.line(&s);
    Ok(())
}

impl Printer for JsonPrinter {
    fn name(&self) -> &'static str {
        "json"
    }
    fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> CliResult {
        print(o, del(r))
    }
    fn get(&self, o: &mut Out, r: &RangeResponse) -> CliResult {
        print(o, range(r))
    }
    fn put(&self, o: &mut Out, r: &PutResponse) -> CliResult {
        print(o, put(r))
    }
    fn txn(&self, o: &mut Out, r: &TxnResponse) -> CliResult {
        print(o, txn(r))
    }
    fn watch(&self, o: &mut Out, r: &WatchResponse) -> CliResult {
        let header = hdr_fields(Obj::new(), &r.header.unwrap_or_default()).end();
        let events = if r.events.is_empty() {
            "null".to_string()
        } else {
            format!("[{}]", r.events.iter().map(event).collect::<Vec<_>>().join(","))
        };
        let s = Obj::new()
            .raw("Header", header)
            .raw("Events", events)
            .raw("CompactRevision", r.compact_revision.to_string())
            .raw("Canceled", r.canceled.to_string())
            .raw("Created", r.created.to_string())
            .end();
        print(o, s)
    }
    fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> CliResult {
        let s = flat_header(&r.header)
            .raw("ID", r.id.to_string())
            .raw("TTL", r.ttl.to_string())
            .raw("Error", json_string(&r.error))
            .end();
        print(o, s)
    }
    fn revoke(&self, o: &mut Out, _id: i64, r: &LeaseRevokeResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> CliResult {
        print(o, flat_header(&r.header).raw("ID", r.id.to_string()).raw("TTL", r.ttl.to_string()).end())
    }
    fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, _keys: bool) -> CliResult {
        let keys = if r.keys.is_empty() {
            "null".to_string()
        } else {
            format!("[{}]", r.keys.iter().map(|k| b64(k)).collect::<Vec<_>>().join(","))
        };
        let s = flat_header(&r.header)
            .raw("id", r.id.to_string())
            .raw("ttl", r.ttl.to_string())
            .raw("granted-ttl", r.granted_ttl.to_string())
            .raw("keys", keys)
            .end();
        print(o, s)
    }
    fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> CliResult {
        let ls: Vec<String> = r.leases.iter().map(|l| format!("{{\"id\":{}}}", l.id)).collect();
        print(o, flat_header(&r.header).raw("leases", format!("[{}]", ls.join(","))).end())
    }
    fn member_add(&self, o: &mut Out, r: &MemberAddResponse) -> CliResult {
        let s = Obj::new()
            .opt("header", hdr(&r.header))
            .opt("member", r.member.as_ref().map(member))
            .list("members", r.members.iter().map(member).collect())
            .end();
        print(o, s)
    }
    fn member_remove(&self, o: &mut Out, _id: u64, r: &MemberRemoveResponse) -> CliResult {
        print(o, members(&r.header, &r.members))
    }
    fn member_update(&self, o: &mut Out, _id: u64, r: &MemberUpdateResponse) -> CliResult {
        print(o, members(&r.header, &r.members))
    }
    fn member_promote(&self, o: &mut Out, _id: u64, r: &MemberPromoteResponse) -> CliResult {
        print(o, members(&r.header, &r.members))
    }
    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        print(o, members(&r.header, &r.members))
    }
    fn endpoint_health(&self, o: &mut Out, list: &[EpHealth]) -> CliResult {
        let items: Vec<String> = list
            .iter()
            .map(|h| {
                Obj::new()
                    .raw("endpoint", json_string(&h.ep))
                    .raw("health", h.health.to_string())
                    .raw("took", json_string(&h.took))
                    .str("error", &h.error)
                    .end()
            })
            .collect();
        print(o, format!("[{}]", items.join(",")))
    }
    fn endpoint_status(&self, o: &mut Out, list: &[EpStatus]) -> CliResult {
        let items: Vec<String> = list
            .iter()
            .map(|s| Obj::new().raw("Endpoint", json_string(&s.ep)).raw("Status", status(&s.resp)).end())
            .collect();
        print(o, format!("[{}]", items.join(",")))
    }
    fn endpoint_hashkv(&self, o: &mut Out, list: &[EpHashKv]) -> CliResult {
        let items: Vec<String> = list
            .iter()
            .map(|h| Obj::new().raw("Endpoint", json_string(&h.ep)).raw("HashKV", hash_kv(&h.resp)).end())
            .collect();
        print(o, format!("[{}]", items.join(",")))
    }
    fn move_leader(&self, o: &mut Out, _l: u64, _t: u64, r: &MoveLeaderResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> CliResult {
        let alarms =
            r.alarms.iter().map(|a| Obj::new().num("memberID", a.member_id).num("alarm", a.alarm).end()).collect();
        print(o, Obj::new().opt("header", hdr(&r.header)).list("alarms", alarms).end())
    }
    fn role_add(&self, o: &mut Out, _role: &str, r: &AuthRoleAddResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn role_get(&self, o: &mut Out, _role: &str, r: &AuthRoleGetResponse) -> CliResult {
        print(o, Obj::new().opt("header", hdr(&r.header)).list("perm", r.perm.iter().map(perm).collect()).end())
    }
    fn role_delete(&self, o: &mut Out, _role: &str, r: &AuthRoleDeleteResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> CliResult {
        print(o, Obj::new().opt("header", hdr(&r.header)).list("roles", strings(&r.roles)).end())
    }
    fn role_grant_permission(&self, o: &mut Out, _role: &str, r: &AuthRoleGrantPermissionResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn role_revoke_permission(
        &self,
        o: &mut Out,
        _role: &str,
        _key: &[u8],
        _end: &[u8],
        r: &AuthRoleRevokePermissionResponse,
    ) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn user_add(&self, o: &mut Out, _user: &str, r: &AuthUserAddResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn user_get(&self, o: &mut Out, _user: &str, r: &AuthUserGetResponse) -> CliResult {
        print(o, Obj::new().opt("header", hdr(&r.header)).list("roles", strings(&r.roles)).end())
    }
    fn user_list(&self, o: &mut Out, r: &AuthUserListResponse) -> CliResult {
        print(o, Obj::new().opt("header", hdr(&r.header)).list("users", strings(&r.users)).end())
    }
    fn user_change_password(&self, o: &mut Out, r: &AuthUserChangePasswordResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn user_grant_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserGrantRoleResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn user_revoke_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserRevokeRoleResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
    fn user_delete(&self, o: &mut Out, _user: &str, r: &AuthUserDeleteResponse) -> CliResult {
        print(o, header_only(&r.header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 4, raft_term: 2 })
    }

    #[test]
    fn range_matches_etcdctl() {
        let r = RangeResponse {
            header: h(),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"bar2".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range(&r),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFyMg=="}],"count":1}"#
        );
        assert_eq!(
            range(&RangeResponse { header: h(), ..Default::default() }),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2}}"#
        );
    }

    #[test]
    fn txn_oneofs() {
        let r = TxnResponse {
            header: h(),
            succeeded: true,
            responses: vec![ResponseOp {
                response: Some(Response::ResponsePut(PutResponse {
                    header: Some(ResponseHeader { revision: 9, ..Default::default() }),
                    prev_kv: None,
                })),
            }],
        };
        assert_eq!(
            txn(&r),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":9}}}}]}"#
        );
    }

    #[test]
    fn lease_wrappers_flatten_the_header() {
        let (mut o, out, _) = crate::exit::capture::out();
        JsonPrinter.grant(&mut o, &LeaseGrantResponse { header: h(), id: 7, ttl: 100, error: String::new() }).unwrap();
        JsonPrinter
            .time_to_live(
                &mut o,
                &LeaseTimeToLiveResponse { header: h(), id: 7, ttl: -1, granted_ttl: 0, keys: vec![] },
                false,
            )
            .unwrap();
        JsonPrinter.leases(&mut o, &LeaseLeasesResponse { header: h(), leases: vec![LeaseStatus { id: 7 }] }).unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "{\"cluster_id\":1,\"member_id\":2,\"revision\":4,\"raft_term\":2,\"ID\":7,\"TTL\":100,\"Error\":\"\"}\n\
             {\"cluster_id\":1,\"member_id\":2,\"revision\":4,\"raft_term\":2,\"id\":7,\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}\n\
             {\"cluster_id\":1,\"member_id\":2,\"revision\":4,\"raft_term\":2,\"leases\":[{\"id\":7}]}\n"
        );
    }

    #[test]
    fn watch_and_members() {
        let (mut o, out, _) = crate::exit::capture::out();
        let w = WatchResponse {
            header: h(),
            events: vec![Event {
                r#type: 1,
                kv: Some(KeyValue { key: b"w1".to_vec(), mod_revision: 12, ..Default::default() }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        JsonPrinter.watch(&mut o, &w).unwrap();
        let ml = MemberListResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 0, raft_term: 2 }),
            members: vec![Member {
                id: 3,
                name: "t".into(),
                peer_ur_ls: vec!["http://a".into()],
                client_ur_ls: vec![],
                is_learner: false,
            }],
        };
        JsonPrinter.member_list(&mut o, &ml).unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "{\"Header\":{\"cluster_id\":1,\"member_id\":2,\"revision\":4,\"raft_term\":2},\"Events\":[{\"type\":1,\"kv\":{\"key\":\"dzE=\",\"mod_revision\":12}}],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}\n\
             {\"header\":{\"cluster_id\":1,\"member_id\":2,\"raft_term\":2},\"members\":[{\"ID\":3,\"name\":\"t\",\"peerURLs\":[\"http://a\"]}]}\n"
        );
    }

    #[test]
    fn endpoint_lists() {
        let (mut o, out, _) = crate::exit::capture::out();
        JsonPrinter
            .endpoint_health(
                &mut o,
                &[EpHealth { ep: "e".into(), health: true, took: "1ms".into(), error: String::new() }],
            )
            .unwrap();
        JsonPrinter
            .endpoint_hashkv(
                &mut o,
                &[EpHashKv {
                    ep: "e".into(),
                    resp: HashKvResponse { hash: 5, compact_revision: -1, hash_revision: 9, ..Default::default() },
                }],
            )
            .unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "[{\"endpoint\":\"e\",\"health\":true,\"took\":\"1ms\"}]\n[{\"Endpoint\":\"e\",\"HashKV\":{\"hash\":5,\"compact_revision\":-1}}]\n"
        );
    }
}
