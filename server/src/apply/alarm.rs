//! Alarms (NOSPACE, CORRUPT): raised and cleared through raft so every member agrees; persisted in the store.

use std::collections::BTreeSet;
use std::sync::RwLock;

use raftcd_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType};

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

const ALARM_PREFIX: &[u8] = b"a";

/// The active alarms of the cluster: (member id, alarm type).
#[derive(Default)]
pub struct Alarms {
    active: RwLock<BTreeSet<(u64, i32)>>,
}

fn key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = ALARM_PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

/// The alarm's name as etcd prints it (NOSPACE, CORRUPT).
fn alarm_name(alarm: i32) -> &'static str {
    match AlarmType::try_from(alarm) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

impl Alarms {
    /// Loads the persisted alarms.
    pub fn load(store: &Store) -> Result<Alarms> {
        let mut set = BTreeSet::new();
        for (k, _) in store.scan_meta(ALARM_PREFIX)? {
            if k.len() != 13 {
                return Err(Error::Storage("alarm: corrupt record".into()));
            }
            let m = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
            let a = i32::from_be_bytes(k[9..13].try_into().unwrap_or_default());
            set.insert((m, a));
        }
        Ok(Alarms { active: RwLock::new(set) })
    }

    /// Replaces the alarms with the store's after a snapshot install.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Alarms::load(store)?.active.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Active alarms as the API lists them.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(m, a)| AlarmMember { member_id: *m, alarm: *a })
            .collect()
    }

    /// True while a NOSPACE alarm is raised: writes that grow the store are refused.
    pub fn no_space(&self) -> bool {
        self.active.read().unwrap_or_else(|p| p.into_inner()).iter().any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    /// True while a CORRUPT alarm is raised.
    pub fn corrupt(&self) -> bool {
        self.active.read().unwrap_or_else(|p| p.into_inner()).iter().any(|(_, a)| *a == AlarmType::Corrupt as i32)
    }

    /// Applies an alarm request; returns the alarms the response lists.
    pub fn apply(&self, txn: &mut WriteTxn<'_>, req: &AlarmRequest) -> Result<Vec<AlarmMember>> {
        let action = AlarmAction::try_from(req.action)
            .map_err(|_| Error::InvalidArgument("etcdserver: invalid alarm action".into()))?;
        let mut set = self.active.write().unwrap_or_else(|p| p.into_inner());
        match action {
            AlarmAction::Get => Ok(set.iter().map(|(m, a)| AlarmMember { member_id: *m, alarm: *a }).collect()),
            AlarmAction::Activate => {
                if req.alarm == AlarmType::None as i32 {
                    return Ok(vec![]);
                }
                if set.insert((req.member_id, req.alarm)) {
                    tracing::warn!(
                        member = format_args!("{:x}", req.member_id),
                        alarm = alarm_name(req.alarm),
                        "alarm raised"
                    );
                }
                txn.set_meta(&key(req.member_id, req.alarm), Some(vec![1]));
                Ok(vec![AlarmMember { member_id: req.member_id, alarm: req.alarm }])
            }
            AlarmAction::Deactivate => {
                let targets: Vec<(u64, i32)> = set
                    .iter()
                    .filter(|(m, a)| {
                        (req.member_id == 0 || *m == req.member_id)
                            && (req.alarm == AlarmType::None as i32 || *a == req.alarm)
                    })
                    .copied()
                    .collect();
                for t in &targets {
                    set.remove(t);
                    tracing::warn!(member = format_args!("{:x}", t.0), alarm = alarm_name(t.1), "alarm disarmed");
                    txn.set_meta(&key(t.0, t.1), None);
                }
                Ok(targets.into_iter().map(|(m, a)| AlarmMember { member_id: m, alarm: a }).collect())
            }
        }
    }
}
