//! `-w simple`: etcdctl's default human format.

use raftcd_proto::etcdserverpb::response_op::Response;
use raftcd_proto::etcdserverpb::*;
use raftcd_proto::mvccpb::{event::EventType, KeyValue};

use super::{member_list_table, prefix_range_end, EpHashKv, EpHealth, EpStatus, Printer};
use crate::exit::{CliResult, Out};
use crate::gofmt::hex_escaped;

/// The simple printer; `value_only` is `get --print-value-only`.
#[derive(Debug, Default)]
pub struct SimplePrinter {
    hex: bool,
    value_only: bool,
}

impl SimplePrinter {
    /// A simple printer; `hex` is `--hex`.
    pub fn new(hex: bool) -> SimplePrinter {
        SimplePrinter { hex, value_only: false }
    }

    fn kv(&self, o: &mut Out, kv: &KeyValue) {
        if self.hex {
            if !self.value_only {
                o.line(&hex_escaped(&kv.key));
            }
            o.line(&hex_escaped(&kv.value));
        } else {
            if !self.value_only {
                o.raw(&kv.key);
                o.raw(b"\n");
            }
            o.raw(&kv.value);
            o.raw(b"\n");
        }
    }

    fn range_line(o: &mut Out, perm: &raftcd_proto::authpb::Permission) {
        let key = String::from_utf8_lossy(&perm.key);
        let mut s = if perm.range_end != b"\0" {
            format!("\t[{}, {})", key, String::from_utf8_lossy(&perm.range_end))
        } else {
            format!("\t[{key}, <open ended>")
        };
        if prefix_range_end(&perm.key) == perm.range_end {
            s.push_str(&format!(" (prefix {key})"));
        }
        o.line(&s);
    }
}

/// The cluster id, as every simple member message prints it (`%16x`).
fn cluster_id(h: &Option<ResponseHeader>) -> u64 {
    h.as_ref().map(|h| h.cluster_id).unwrap_or(0)
}

impl Printer for SimplePrinter {
    fn name(&self) -> &'static str {
        "simple"
    }

    fn set_value_only(&mut self) -> bool {
        self.value_only = true;
        true
    }

    fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> CliResult {
        o.line(&r.deleted.to_string());
        for kv in &r.prev_kvs {
            self.kv(o, kv);
        }
        Ok(())
    }

    fn get(&self, o: &mut Out, r: &RangeResponse) -> CliResult {
        for kv in &r.kvs {
            self.kv(o, kv);
        }
        Ok(())
    }

    fn put(&self, o: &mut Out, r: &PutResponse) -> CliResult {
        o.line("OK");
        if let Some(kv) = &r.prev_kv {
            self.kv(o, kv);
        }
        Ok(())
    }

    fn txn(&self, o: &mut Out, r: &TxnResponse) -> CliResult {
        o.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
        for op in &r.responses {
            o.line("");
            match &op.response {
                Some(Response::ResponseDeleteRange(d)) => self.del(o, d)?,
                Some(Response::ResponsePut(p)) => self.put(o, p)?,
                Some(Response::ResponseRange(g)) => self.get(o, g)?,
                other => o.line(&format!("unexpected response {other:?}")),
            }
        }
        Ok(())
    }

    fn watch(&self, o: &mut Out, r: &WatchResponse) -> CliResult {
        for e in &r.events {
            o.line(event_type_name(e.r#type));
            if let Some(p) = &e.prev_kv {
                self.kv(o, p);
            }
            self.kv(o, e.kv.as_ref().unwrap_or(&KeyValue::default()));
        }
        Ok(())
    }

    fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> CliResult {
        o.line(&format!("lease {:016x} granted with TTL({}s)", r.id, r.ttl));
        Ok(())
    }

    fn revoke(&self, o: &mut Out, id: i64, _r: &LeaseRevokeResponse) -> CliResult {
        o.line(&format!("lease {id:016x} revoked"));
        Ok(())
    }

    fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> CliResult {
        o.line(&format!("lease {:016x} keepalived with TTL({})", r.id, r.ttl));
        Ok(())
    }

    fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, keys: bool) -> CliResult {
        if r.granted_ttl == 0 && r.ttl == -1 {
            o.line(&format!("lease {:016x} already expired", r.id));
            return Ok(());
        }
        let mut txt = format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
        if keys {
            let ks: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
            txt.push_str(&format!(", attached keys([{}])", ks.join(" ")));
        }
        o.line(&txt);
        Ok(())
    }

    fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> CliResult {
        o.line(&format!("found {} leases", r.leases.len()));
        for l in &r.leases {
            o.line(&format!("{:016x}", l.id));
        }
        Ok(())
    }

    fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> CliResult {
        for a in &r.alarms {
            // gogo's CompactTextString of AlarmMember: zero fields omitted, trailing space.
            let mut s = String::new();
            if a.member_id != 0 {
                s.push_str(&format!("memberID:{} ", a.member_id));
            }
            if a.alarm != 0 {
                s.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
            }
            o.line(&s);
        }
        Ok(())
    }

    fn member_add(&self, o: &mut Out, r: &MemberAddResponse) -> CliResult {
        let id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
        o.line(&format!("Member {:16x} added to cluster {:16x}", id, cluster_id(&r.header)));
        Ok(())
    }

    fn member_remove(&self, o: &mut Out, id: u64, r: &MemberRemoveResponse) -> CliResult {
        o.line(&format!("Member {:16x} removed from cluster {:16x}", id, cluster_id(&r.header)));
        Ok(())
    }

    fn member_update(&self, o: &mut Out, id: u64, r: &MemberUpdateResponse) -> CliResult {
        o.line(&format!("Member {:16x} updated in cluster {:16x}", id, cluster_id(&r.header)));
        Ok(())
    }

    fn member_promote(&self, o: &mut Out, id: u64, r: &MemberPromoteResponse) -> CliResult {
        o.line(&format!("Member {:16x} promoted in cluster {:16x}", id, cluster_id(&r.header)));
        Ok(())
    }

    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        for row in member_list_table(r).1 {
            o.line(&row.join(", "));
        }
        Ok(())
    }

    fn endpoint_health(&self, o: &mut Out, list: &[EpHealth]) -> CliResult {
        for h in list {
            if h.error.is_empty() {
                o.eline(&format!("{} is healthy: successfully committed proposal: took = {}", h.ep, h.took));
            } else {
                o.eline(&format!("{} is unhealthy: failed to commit proposal: {}", h.ep, h.error));
            }
        }
        Ok(())
    }

    fn endpoint_status(&self, o: &mut Out, list: &[EpStatus]) -> CliResult {
        for row in super::endpoint_status_table(list).1 {
            o.line(&row.join(", "));
        }
        Ok(())
    }

    fn endpoint_hashkv(&self, o: &mut Out, list: &[EpHashKv]) -> CliResult {
        for row in super::endpoint_hashkv_table(list).1 {
            o.line(&row.join(", "));
        }
        Ok(())
    }

    fn move_leader(&self, o: &mut Out, leader: u64, target: u64, _r: &MoveLeaderResponse) -> CliResult {
        o.line(&format!("Leadership transferred from {leader:x} to {target:x}"));
        Ok(())
    }

    fn role_add(&self, o: &mut Out, role: &str, _r: &AuthRoleAddResponse) -> CliResult {
        o.line(&format!("Role {role} created"));
        Ok(())
    }

    fn role_get(&self, o: &mut Out, role: &str, r: &AuthRoleGetResponse) -> CliResult {
        use raftcd_proto::authpb::permission::Type;
        o.line(&format!("Role {role}"));
        for (title, wanted) in [("KV Read:", Type::Read), ("KV Write:", Type::Write)] {
            o.line(title);
            for p in &r.perm {
                let t = p.perm_type;
                if t == wanted as i32 || t == Type::Readwrite as i32 {
                    if p.range_end.is_empty() {
                        o.line(&format!("\t{}", String::from_utf8_lossy(&p.key)));
                    } else {
                        Self::range_line(o, p);
                    }
                }
            }
        }
        Ok(())
    }

    fn role_delete(&self, o: &mut Out, role: &str, _r: &AuthRoleDeleteResponse) -> CliResult {
        o.line(&format!("Role {role} deleted"));
        Ok(())
    }

    fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> CliResult {
        for role in &r.roles {
            o.line(role);
        }
        Ok(())
    }

    fn role_grant_permission(&self, o: &mut Out, role: &str, _r: &AuthRoleGrantPermissionResponse) -> CliResult {
        o.line(&format!("Role {role} updated"));
        Ok(())
    }

    fn role_revoke_permission(
        &self,
        o: &mut Out,
        role: &str,
        key: &[u8],
        end: &[u8],
        _r: &AuthRoleRevokePermissionResponse,
    ) -> CliResult {
        let key = String::from_utf8_lossy(key);
        if end.is_empty() {
            o.line(&format!("Permission of key {key} is revoked from role {role}"));
        } else if end != b"\0" {
            let end = String::from_utf8_lossy(end);
            o.line(&format!("Permission of range [{key}, {end}) is revoked from role {role}"));
        } else {
            o.line(&format!("Permission of range [{key}, <open ended> is revoked from role {role}"));
        }
        Ok(())
    }

    fn user_add(&self, o: &mut Out, user: &str, _r: &AuthUserAddResponse) -> CliResult {
        o.line(&format!("User {user} created"));
        Ok(())
    }

    fn user_get(&self, o: &mut Out, user: &str, r: &AuthUserGetResponse) -> CliResult {
        o.line(&format!("User: {user}"));
        let mut s = String::from("Roles:");
        for role in &r.roles {
            s.push(' ');
            s.push_str(role);
        }
        o.line(&s);
        Ok(())
    }

    fn user_list(&self, o: &mut Out, r: &AuthUserListResponse) -> CliResult {
        for u in &r.users {
            o.line(u);
        }
        Ok(())
    }

    fn user_change_password(&self, o: &mut Out, _r: &AuthUserChangePasswordResponse) -> CliResult {
        o.line("Password updated");
        Ok(())
    }

    fn user_grant_role(&self, o: &mut Out, user: &str, role: &str, _r: &AuthUserGrantRoleResponse) -> CliResult {
        o.line(&format!("Role {role} is granted to user {user}"));
        Ok(())
    }

    fn user_revoke_role(&self, o: &mut Out, user: &str, role: &str, _r: &AuthUserRevokeRoleResponse) -> CliResult {
        o.line(&format!("Role {role} is revoked from user {user}"));
        Ok(())
    }

    fn user_delete(&self, o: &mut Out, user: &str, _r: &AuthUserDeleteResponse) -> CliResult {
        o.line(&format!("User {user} deleted"));
        Ok(())
    }
}

/// `mvccpb.Event_EventType.String()`.
pub(crate) fn event_type_name(t: i32) -> &'static str {
    match EventType::try_from(t) {
        Ok(EventType::Put) => "PUT",
        Ok(EventType::Delete) => "DELETE",
        Err(_) => "UNKNOWN",
    }
}

/// `etcdserverpb.AlarmType.String()`.
pub(crate) fn alarm_name(t: i32) -> String {
    match AlarmType::try_from(t) {
        Ok(AlarmType::None) => "NONE".into(),
        Ok(AlarmType::Nospace) => "NOSPACE".into(),
        Ok(AlarmType::Corrupt) => "CORRUPT".into(),
        Err(_) => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::capture;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: v.into(), ..Default::default() }
    }

    #[test]
    fn get_put_del() {
        let (mut o, out, _) = capture::out();
        let p = SimplePrinter::new(false);
        p.get(&mut o, &RangeResponse { kvs: vec![kv("a", "1"), kv("b", "2")], ..Default::default() }).unwrap();
        p.put(&mut o, &PutResponse { prev_kv: Some(kv("a", "0")), ..Default::default() }).unwrap();
        p.del(&mut o, &DeleteRangeResponse { deleted: 1, prev_kvs: vec![kv("a", "1")], ..Default::default() }).unwrap();
        o.flush();
        assert_eq!(out.text(), "a\n1\nb\n2\nOK\na\n0\n1\na\n1\n");
    }

    #[test]
    fn hex_and_value_only() {
        let (mut o, out, _) = capture::out();
        let mut p = SimplePrinter::new(true);
        p.set_value_only();
        p.get(&mut o, &RangeResponse { kvs: vec![kv("a", "1")], ..Default::default() }).unwrap();
        o.flush();
        assert_eq!(out.text(), "\\x31\n");
    }

    #[test]
    fn lease_lines() {
        let (mut o, out, _) = capture::out();
        let p = SimplePrinter::new(false);
        p.grant(&mut o, &LeaseGrantResponse { id: 0x2040a21da51f6811, ttl: 100, ..Default::default() }).unwrap();
        p.time_to_live(
            &mut o,
            &LeaseTimeToLiveResponse {
                id: 1,
                ttl: 9,
                granted_ttl: 10,
                keys: vec![b"k1".to_vec(), b"k2".to_vec()],
                ..Default::default()
            },
            true,
        )
        .unwrap();
        p.time_to_live(&mut o, &LeaseTimeToLiveResponse { id: 1, ttl: -1, ..Default::default() }, false).unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "lease 2040a21da51f6811 granted with TTL(100s)\n\
             lease 0000000000000001 granted with TTL(10s), remaining(9s), attached keys([k1 k2])\n\
             lease 0000000000000001 already expired\n"
        );
    }

    #[test]
    fn txn_and_members() {
        let (mut o, out, _) = capture::out();
        let p = SimplePrinter::new(false);
        let r = TxnResponse {
            succeeded: false,
            responses: vec![ResponseOp {
                response: Some(Response::ResponseRange(RangeResponse {
                    kvs: vec![kv("a", "2")],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        p.txn(&mut o, &r).unwrap();
        let ml = MemberListResponse {
            members: vec![Member {
                id: 0x2e1259d415f2a040,
                name: "t".into(),
                peer_ur_ls: vec!["http://p".into()],
                client_ur_ls: vec!["http://c".into()],
                is_learner: false,
            }],
            ..Default::default()
        };
        p.member_list(&mut o, &ml).unwrap();
        p.member_remove(
            &mut o,
            0xab,
            &MemberRemoveResponse {
                header: Some(ResponseHeader { cluster_id: 0x1f, ..Default::default() }),
                ..Default::default()
            },
        )
        .unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "FAILURE\n\na\n2\n2e1259d415f2a040, started, t, http://p, http://c, false\n\
             Member               ab removed from cluster               1f\n"
        );
    }

    #[test]
    fn role_get_ranges() {
        use raftcd_proto::authpb::Permission;
        let (mut o, out, _) = capture::out();
        let p = SimplePrinter::new(false);
        let r = AuthRoleGetResponse {
            perm: vec![
                Permission { perm_type: 0, key: b"k".to_vec(), range_end: vec![] },
                Permission { perm_type: 2, key: b"p".to_vec(), range_end: b"q".to_vec() },
                Permission { perm_type: 1, key: b"f".to_vec(), range_end: b"\0".to_vec() },
            ],
            ..Default::default()
        };
        p.role_get(&mut o, "r", &r).unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "Role r\nKV Read:\n\tk\n\t[p, q) (prefix p)\nKV Write:\n\t[p, q) (prefix p)\n\t[f, <open ended>\n"
        );
    }
}
