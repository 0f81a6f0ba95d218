//! `-w fields`: one `"Name" : value` line per field, as etcdctl 3.4 prints them.

use raftcd_proto::etcdserverpb::response_op::Response;
use raftcd_proto::etcdserverpb::*;
use raftcd_proto::mvccpb::KeyValue;

use super::simple::{alarm_name, event_type_name};
use super::{EpHashKv, EpHealth, EpStatus, Printer};
use crate::exit::{CliError, CliResult, Out};
use crate::gofmt::quote;

/// The fields printer.
#[derive(Debug, Default)]
pub struct FieldsPrinter;

fn kv(o: &mut Out, pfx: &str, kv: &KeyValue) {
    o.line(&format!("\"{pfx}Key\" : {}", quote(&kv.key)));
    o.line(&format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
    o.line(&format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
    o.line(&format!("\"{pfx}Version\" : {}", kv.version));
    o.line(&format!("\"{pfx}Value\" : {}", quote(&kv.value)));
    o.line(&format!("\"{pfx}Lease\" : {}", kv.lease));
}

/// etcdctl dereferences the header unconditionally: a response without one crashes it (exit 2).
fn hdr(o: &mut Out, h: &Option<ResponseHeader>) -> CliResult {
    let Some(h) = h else {
        return Err(CliError::nil_pointer_panic());
    };
    hdr_value(o, h);
    Ok(())
}

fn hdr_value(o: &mut Out, h: &ResponseHeader) {
    o.line(&format!("\"ClusterID\" : {}", h.cluster_id));
    o.line(&format!("\"MemberID\" : {}", h.member_id));
    o.line(&format!("\"Revision\" : {}", h.revision));
    o.line(&format!("\"RaftTerm\" : {}", h.raft_term));
}

/// Go's `fmt.Println` of a `[]string`.
fn go_string_slice(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

impl Printer for FieldsPrinter {
    fn name(&self) -> &'static str {
        "fields"
    }

    fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> CliResult {
        hdr(o, &r.header)?;
        o.line(&format!("\"Deleted\" : {}", r.deleted));
        for k in &r.prev_kvs {
            kv(o, "Prev", k);
        }
        Ok(())
    }

    fn get(&self, o: &mut Out, r: &RangeResponse) -> CliResult {
        hdr(o, &r.header)?;
        for k in &r.kvs {
            kv(o, "", k);
        }
        o.line(&format!("\"More\" : {}", r.more));
        o.line(&format!("\"Count\" : {}", r.count));
        Ok(())
    }

    fn put(&self, o: &mut Out, r: &PutResponse) -> CliResult {
        hdr(o, &r.header)?;
        if let Some(p) = &r.prev_kv {
            kv(o, "Prev", p);
        }
        Ok(())
    }

    fn txn(&self, o: &mut Out, r: &TxnResponse) -> CliResult {
        hdr(o, &r.header)?;
        o.line(&format!("\"Succeeded\" : {}", r.succeeded));
        for op in &r.responses {
            match &op.response {
                Some(Response::ResponseDeleteRange(d)) => self.del(o, d)?,
                Some(Response::ResponsePut(p)) => self.put(o, p)?,
                Some(Response::ResponseRange(g)) => self.get(o, g)?,
                other => o.line(&format!("\"Unknown\" : {}", quote(format!("{other:?}").as_bytes()))),
            }
        }
        Ok(())
    }

    fn watch(&self, o: &mut Out, r: &WatchResponse) -> CliResult {
        hdr_value(o, &r.header.unwrap_or_default());
        for e in &r.events {
            o.line(&format!("\"Type\" : {}", event_type_name(e.r#type)));
            if let Some(p) = &e.prev_kv {
                kv(o, "Prev", p);
            }
            kv(o, "", e.kv.as_ref().unwrap_or(&KeyValue::default()));
        }
        Ok(())
    }

    fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> CliResult {
        hdr(o, &r.header)?;
        o.line(&format!("\"ID\" : {}", r.id));
        o.line(&format!("\"TTL\" : {}", r.ttl));
        Ok(())
    }

    fn revoke(&self, o: &mut Out, _id: i64, r: &LeaseRevokeResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> CliResult {
        hdr(o, &r.header)?;
        o.line(&format!("\"ID\" : {}", r.id));
        o.line(&format!("\"TTL\" : {}", r.ttl));
        Ok(())
    }

    fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, _keys: bool) -> CliResult {
        hdr(o, &r.header)?;
        o.line(&format!("\"ID\" : {}", r.id));
        o.line(&format!("\"TTL\" : {}", r.ttl));
        o.line(&format!("\"GrantedTTL\" : {}", r.granted_ttl));
        for k in &r.keys {
            o.line(&format!("\"Key\" : {}", quote(k)));
        }
        Ok(())
    }

    fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> CliResult {
        hdr(o, &r.header)?;
        for l in &r.leases {
            o.line(&format!("\"ID\" : {}", l.id));
        }
        Ok(())
    }

    fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> CliResult {
        hdr(o, &r.header)?;
        for m in &r.members {
            o.line(&format!("\"ID\" : {}", m.id));
            o.line(&format!("\"Name\" : {}", quote(m.name.as_bytes())));
            for u in &m.peer_ur_ls {
                o.line(&format!("\"PeerURL\" : {}", quote(u.as_bytes())));
            }
            for u in &m.client_ur_ls {
                o.line(&format!("\"ClientURL\" : {}", quote(u.as_bytes())));
            }
            o.line(&format!("\"IsLearner\" : {}", m.is_learner));
            o.line("");
        }
        Ok(())
    }

    fn endpoint_health(&self, o: &mut Out, list: &[EpHealth]) -> CliResult {
        for h in list {
            o.line(&format!("\"Endpoint\" : {}", quote(h.ep.as_bytes())));
            o.line(&format!("\"Health\" : {}", h.health));
            o.line(&format!("\"Took\" : {}", h.took));
            o.line(&format!("\"Error\" : {}", h.error));
            o.line("");
        }
        Ok(())
    }

    fn endpoint_status(&self, o: &mut Out, list: &[EpStatus]) -> CliResult {
        for s in list {
            hdr(o, &s.resp.header)?;
            o.line(&format!("\"Version\" : {}", quote(s.resp.version.as_bytes())));
            o.line(&format!("\"DBSize\" : {}", s.resp.db_size));
            o.line(&format!("\"Leader\" : {}", s.resp.leader));
            o.line(&format!("\"IsLearner\" : {}", s.resp.is_learner));
            o.line(&format!("\"RaftIndex\" : {}", s.resp.raft_index));
            o.line(&format!("\"RaftTerm\" : {}", s.resp.raft_term));
            o.line(&format!("\"RaftAppliedIndex\" : {}", s.resp.raft_applied_index));
            o.line(&format!("\"Errors\" : {}", go_string_slice(&s.resp.errors)));
            o.line(&format!("\"Endpoint\" : {}", quote(s.ep.as_bytes())));
            o.line("");
        }
        Ok(())
    }

    fn endpoint_hashkv(&self, o: &mut Out, list: &[EpHashKv]) -> CliResult {
        for h in list {
            hdr(o, &h.resp.header)?;
            o.line(&format!("\"Endpoint\" : {}", quote(h.ep.as_bytes())));
            o.line(&format!("\"Hash\" : {}", h.resp.hash));
            o.line("");
        }
        Ok(())
    }

    fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> CliResult {
        hdr(o, &r.header)?;
        for a in &r.alarms {
            o.line(&format!("\"MemberID\" : {}", a.member_id));
            o.line(&format!("\"AlarmType\" : {}", alarm_name(a.alarm)));
            o.line("");
        }
        Ok(())
    }

    fn role_add(&self, o: &mut Out, _role: &str, r: &AuthRoleAddResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn role_get(&self, o: &mut Out, _role: &str, r: &AuthRoleGetResponse) -> CliResult {
        use raftcd_proto::authpb::permission::Type;
        hdr(o, &r.header)?;
        for p in &r.perm {
            let t = Type::try_from(p.perm_type).map(|t| t.as_str_name().to_string()).unwrap_or(p.perm_type.to_string());
            o.line(&format!("\"PermType\" :  {t}"));
            o.line(&format!("\"Key\" : {}", quote(&p.key)));
            o.line(&format!("\"RangeEnd\" : {}", quote(&p.range_end)));
        }
        Ok(())
    }

    fn role_delete(&self, o: &mut Out, _role: &str, r: &AuthRoleDeleteResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> CliResult {
        hdr(o, &r.header)?;
        let mut s = String::from("\"Roles\" :");
        for role in &r.roles {
            s.push(' ');
            s.push_str(&quote(role.as_bytes()));
        }
        o.line(&s);
        Ok(())
    }

    fn role_grant_permission(&self, o: &mut Out, _role: &str, r: &AuthRoleGrantPermissionResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn role_revoke_permission(
        &self,
        o: &mut Out,
        _role: &str,
        _key: &[u8],
        _end: &[u8],
        r: &AuthRoleRevokePermissionResponse,
    ) -> CliResult {
        hdr(o, &r.header)
    }

    fn user_add(&self, o: &mut Out, _user: &str, r: &AuthUserAddResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn user_change_password(&self, o: &mut Out, r: &AuthUserChangePasswordResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn user_grant_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserGrantRoleResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn user_revoke_role(&self, o: &mut Out, _u: &str, _r: &str, r: &AuthUserRevokeRoleResponse) -> CliResult {
        hdr(o, &r.header)
    }

    fn user_delete(&self, o: &mut Out, _user: &str, r: &AuthUserDeleteResponse) -> CliResult {
        hdr(o, &r.header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::capture;

    #[test]
    fn get_fields() {
        let (mut o, out, _) = capture::out();
        let r = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 4, raft_term: 2 }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"b\"r".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        FieldsPrinter.get(&mut o, &r).unwrap();
        o.flush();
        assert_eq!(
            out.text(),
            "\"ClusterID\" : 1\n\"MemberID\" : 2\n\"Revision\" : 4\n\"RaftTerm\" : 2\n\"Key\" : \"foo\"\n\
             \"CreateRevision\" : 2\n\"ModRevision\" : 3\n\"Version\" : 2\n\"Value\" : \"b\\\"r\"\n\"Lease\" : 0\n\
             \"More\" : false\n\"Count\" : 1\n"
        );
    }

    #[test]
    fn headerless_alarm_crashes_like_etcdctl() {
        let (mut o, _, _) = capture::out();
        assert_eq!(FieldsPrinter.alarm(&mut o, &AlarmResponse::default()).unwrap_err().code(), 2);
        assert_eq!(FieldsPrinter.member_add(&mut o, &MemberAddResponse::default()).unwrap_err().code(), 4);
    }
}
