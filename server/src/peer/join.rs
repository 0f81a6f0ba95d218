//! Joining an existing cluster (`--initial-cluster-state existing`): ask the other members listed in
//! `--initial-cluster` for the cluster id and the member list, and find this member by its peer URLs
//! (it was added with MemberAdd before it started).

use std::time::Duration;

use raftcd_proto::raftcdpb::{peer_client::PeerClient, MembersRequest};

use crate::error::{Error, Result};
use crate::member::decode_member;

/// (cluster id, this member's id) as the running cluster knows them.
pub async fn discover(
    peer_urls: &[String],
    my_peer_urls: &[String],
    tls: Option<&crate::tls::DialTls>,
) -> Result<(u64, u64)> {
    let mut last_err = String::from("no other member to ask");
    for attempt in 0..30 {
        for url in peer_urls.iter().filter(|u| !my_peer_urls.contains(u)) {
            let ep = crate::tls::endpoint(url, tls)?.timeout(Duration::from_secs(3));
            let resp = match ep.connect().await {
                Ok(ch) => PeerClient::new(ch).members(MembersRequest {}).await,
                Err(e) => {
                    last_err = format!("{url}: {e}");
                    continue;
                }
            };
            match resp {
                Ok(r) => {
                    let r = r.into_inner();
                    for b in &r.members {
                        let m = decode_member(b)?;
                        if m.peer_ur_ls.iter().any(|u| my_peer_urls.contains(u)) {
                            return Ok((r.cluster_id, m.id));
                        }
                    }
                    return Err(Error::InvalidArgument(format!(
                        "this member ({my_peer_urls:?}) is not in the cluster's member list; add it with MemberAdd first"
                    )));
                }
                Err(s) => last_err = format!("{url}: {}", s.message()),
            }
        }
        if attempt < 29 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(Error::InvalidArgument(format!("could not reach the existing cluster: {last_err}")))
}
