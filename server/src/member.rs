//! Cluster membership: member and cluster ids, the member list, and this member's identity.
//!
//! Ids are derived deterministically, as etcd does, so every member bootstrapping from the same
//! `--initial-cluster` and `--initial-cluster-token` computes the same ids without talking to the others:
//! member id = first 8 bytes of sha256(sorted peer URLs + token); cluster id = first 8 bytes of
//! sha256(sorted member ids). Members added later get an id that also mixes in the time.

use std::collections::BTreeMap;
use std::sync::RwLock;

use prost::Message as _;
use raftcd_proto::etcdserverpb::Member as PbMember;
use raftcd_proto::raftcdpb::MemberContext;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};

/// Meta-key prefix of member records (under the store's `x` space).
const MEMBER_PREFIX: &[u8] = b"m";
/// Meta-key prefix of removed member ids.
const REMOVED_PREFIX: &[u8] = b"r";

fn digest_u64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
}

/// The id of a member with these peer URLs in the cluster named by `token` (`salt` for later additions).
pub fn member_id(peer_urls: &[String], token: &str, salt: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join("");
    let salt = salt.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default();
    digest_u64(&[joined.as_bytes(), token.as_bytes(), &salt]).max(1)
}

/// The cluster id for a set of member ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    digest_u64(&[&bytes]).max(1)
}

/// Parses `--initial-cluster` ("name=url,name=url2,other=url3") into (name, peer URLs) in order of first
/// appearance; a name may appear several times for several URLs.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("--initial-cluster: {part:?} is not name=url")))?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument("--initial-cluster is empty".into()));
    }
    Ok(out)
}

/// The replicated member list of the cluster.
pub struct Membership {
    cluster_id: u64,
    members: RwLock<BTreeMap<u64, PbMember>>,
}

fn member_key(id: u64) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn removed_key(id: u64) -> Vec<u8> {
    let mut k = REMOVED_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Encodes a member as stored (the MemberContext proto).
pub fn encode_member(m: &PbMember) -> Vec<u8> {
    MemberContext {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_ur_ls.clone(),
        client_urls: m.client_ur_ls.clone(),
        is_learner: m.is_learner,
        request_id: 0,
    }
    .encode_to_vec()
}

/// Decodes a stored member.
pub fn decode_member(b: &[u8]) -> Result<PbMember> {
    let c = MemberContext::decode(b).map_err(|e| Error::Storage(format!("member: {e}")))?;
    Ok(PbMember {
        id: c.id,
        name: c.name,
        peer_ur_ls: c.peer_urls,
        client_ur_ls: c.client_urls,
        is_learner: c.is_learner,
    })
}

impl Membership {
    /// Loads the member list from the store.
    pub fn load(store: &Store, cluster_id: u64) -> Result<Membership> {
        let mut members = BTreeMap::new();
        for (_, v) in store.scan_meta(MEMBER_PREFIX)? {
            let m = decode_member(&v)?;
            members.insert(m.id, m);
        }
        Ok(Membership { cluster_id, members: RwLock::new(members) })
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// All members, by id.
    pub fn list(&self) -> Vec<PbMember> {
        self.members.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// One member.
    pub fn get(&self, id: u64) -> Option<PbMember> {
        self.members.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Adds or replaces a member (apply thread), persisted in the entry's batch.
    pub fn apply_upsert(&self, txn: &mut WriteTxn<'_>, m: PbMember) {
        txn.set_meta(&member_key(m.id), Some(encode_member(&m)));
        self.members.write().unwrap_or_else(|p| p.into_inner()).insert(m.id, m);
    }

    /// Removes a member (apply thread) and remembers its id as removed.
    pub fn apply_remove(&self, txn: &mut WriteTxn<'_>, id: u64) {
        txn.set_meta(&member_key(id), None);
        txn.set_meta(&removed_key(id), Some(vec![1]));
        self.members.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Reloads from the store after a snapshot install.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Membership::load(store, self.cluster_id)?;
        *self.members.write().unwrap_or_else(|p| p.into_inner()) =
            fresh.members.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "tok", None);
        let b = member_id(&["http://127.0.0.1:2380".into()], "tok", None);
        let c = member_id(&["http://127.0.0.1:2380".into()], "other", None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(cluster_id(&[1, 2, 3]), cluster_id(&[3, 2, 1]));
        assert_ne!(cluster_id(&[1, 2]), cluster_id(&[1, 3]));
    }

    #[test]
    fn initial_cluster_parses() {
        let c = parse_initial_cluster("a=http://x:1,b=http://y:2,a=http://z:3").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].1, vec!["http://x:1", "http://z:3"]);
        assert!(parse_initial_cluster("nonsense").is_err());
        assert!(parse_initial_cluster("").is_err());
    }
}
