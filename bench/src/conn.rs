//! gRPC connections to the cluster: `--conns` channels over the endpoints (or all to the leader).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use raftcd_proto::etcdserverpb::kv_client::KvClient;
use raftcd_proto::etcdserverpb::lease_client::LeaseClient;
use raftcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftcd_proto::etcdserverpb::watch_client::WatchClient;
use raftcd_proto::etcdserverpb::{StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

use crate::cli::Global;

/// Responses of a prefix range can be large.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// One HTTP/2 connection to one endpoint.
#[derive(Clone, Debug)]
pub struct Conn {
    pub endpoint: String,
    pub channel: Channel,
}

impl Conn {
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    pub fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel.clone())
    }
}

/// Opens one connection to `url`.
pub async fn connect(url: &str, dial_timeout: Duration) -> Result<Conn> {
    let channel = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("bad endpoint {url}"))?
        .connect_timeout(dial_timeout)
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(Conn { endpoint: url.to_string(), channel })
}

/// The connections a scenario uses: `--conns` of them, round robin over the endpoints, or all to the
/// leader with `--target-leader`.
pub async fn pool(g: &Global) -> Result<Vec<Conn>> {
    let targets =
        if g.target_leader { vec![find_leader(&g.endpoints.0, g.dial_timeout).await?] } else { g.endpoints.0.clone() };
    let mut conns = Vec::with_capacity(g.conns as usize);
    for i in 0..g.conns as usize {
        conns.push(connect(&targets[i % targets.len()], g.dial_timeout).await?);
    }
    Ok(conns)
}

/// Maintenance.Status of one endpoint.
pub async fn status(url: &str, dial_timeout: Duration) -> Result<StatusResponse> {
    let conn = connect(url, dial_timeout).await?;
    let resp = tokio::time::timeout(dial_timeout, conn.maintenance().status(StatusRequest {}))
        .await
        .map_err(|_| anyhow!("status of {url} timed out"))?
        .with_context(|| format!("status of {url}"))?;
    Ok(resp.into_inner())
}

/// The endpoint whose member is the leader, according to the members' own Status answers.
pub async fn find_leader(endpoints: &[String], dial_timeout: Duration) -> Result<String> {
    let mut answers = Vec::new();
    let mut last_err = None;
    for ep in endpoints {
        match status(ep, dial_timeout).await {
            Ok(s) => answers.push((ep.clone(), s)),
            Err(e) => last_err = Some(e),
        }
    }
    if answers.is_empty() {
        return Err(last_err.unwrap_or_else(|| anyhow!("no endpoints")));
    }
    let ids: Vec<(String, u64, u64)> =
        answers.iter().map(|(ep, s)| (ep.clone(), s.header.as_ref().map_or(0, |h| h.member_id), s.leader)).collect();
    match leader_endpoint(&ids) {
        Some(ep) => Ok(ep),
        None => bail!("no leader among the given endpoints (member, leader): {:?}", ids),
    }
}

/// Given (endpoint, member id, leader id) answers, the endpoint of the member that is the leader.
pub fn leader_endpoint(answers: &[(String, u64, u64)]) -> Option<String> {
    answers.iter().find(|(_, member, leader)| *leader != 0 && member == leader).map(|(ep, _, _)| ep.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_is_the_member_that_names_itself() {
        let a = vec![("a".to_string(), 1, 2), ("b".to_string(), 2, 2), ("c".to_string(), 3, 2)];
        assert_eq!(leader_endpoint(&a).as_deref(), Some("b"));
        let none = vec![("a".to_string(), 1, 2), ("c".to_string(), 3, 2)];
        assert_eq!(leader_endpoint(&none), None, "leader not among the endpoints");
        let no_leader = vec![("a".to_string(), 0, 0)];
        assert_eq!(leader_endpoint(&no_leader), None);
    }
}
