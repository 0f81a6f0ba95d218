//! Wires a member together: opens storage, bootstraps or restores identity and membership, starts the raft
//! thread and the background tasks, serves the gRPC API, and shuts everything down in order on a signal.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::ConfState;
use raft::RawNode;
use raftcd_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, LeaseRevokeRequest, Member,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use tokio::sync::{mpsc, watch};

use crate::apply::{Alarms, Applier, Compactor};
use crate::config::{split_urls, url_to_addr, Config};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::member::{cluster_id, member_id, parse_initial_cluster, Membership};
use crate::mvcc::Store;
use crate::raft::node::ticker;
use crate::raft::proposal::Waiters;
use crate::raft::storage::RaftStorage;
use crate::raft::transport::NoPeers;
use crate::raft::{Input, Node, RaftHandle, RaftStatus};
use crate::services::{
    auth::AuthService, cluster::ClusterService, kv::KvService, lease::LeaseService, maintenance::MaintenanceService,
    watch::WatchService, Ctx,
};
use crate::watch::WatchHub;

/// Inputs queued for the raft thread at most (proposals wait for room: backpressure, not memory growth).
const RAFT_INBOX: usize = 8192;
/// gRPC framing allowance over --max-request-bytes, as etcd's grpcOverheadBytes.
const GRPC_OVERHEAD: usize = 512 * 1024;

/// This member's identity, kept in the "local" tree (never replicated, never replaced by a snapshot).
struct Identity {
    member_id: u64,
    cluster_id: u64,
}

fn read_u64(tree: &sled::Tree, key: &str) -> Result<Option<u64>> {
    match tree.get(key)? {
        Some(v) if v.len() == 8 => Ok(Some(u64::from_be_bytes(v[..].try_into().unwrap_or_default()))),
        Some(_) => Err(Error::Storage(format!("local: corrupt {key}"))),
        None => Ok(None),
    }
}

/// First start: derive ids from the flags, record the initial members, and give raft its configuration.
fn bootstrap(cfg: &Config, local: &sled::Tree, store: &Store, storage: &mut RaftStorage) -> Result<Identity> {
    if cfg.initial_cluster_state != "new" {
        return Err(Error::InvalidArgument(format!(
            "--initial-cluster-state {:?}: joining an existing cluster is not supported by this build",
            cfg.initial_cluster_state
        )));
    }
    let my_peer_urls = cfg.advertise_peer_urls();
    let initial = match &cfg.initial_cluster {
        Some(s) => parse_initial_cluster(s)?,
        None => vec![(cfg.name.clone(), my_peer_urls.clone())],
    };
    let token = &cfg.initial_cluster_token;
    let members: Vec<Member> = initial
        .iter()
        .map(|(name, urls)| Member {
            id: member_id(urls, token, None),
            name: name.clone(),
            peer_ur_ls: urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let me = members.iter().find(|m| m.name == cfg.name).ok_or_else(|| {
        Error::InvalidArgument(format!("--initial-cluster has no member named {:?}", cfg.name))
    })?;
    let mut mine = me.peer_ur_ls.clone();
    let mut advertised = my_peer_urls.clone();
    mine.sort();
    advertised.sort();
    if mine != advertised {
        return Err(Error::InvalidArgument(format!(
            "--initial-cluster has {:?} for {:?} but --initial-advertise-peer-urls is {:?}",
            me.peer_ur_ls, cfg.name, my_peer_urls
        )));
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let ident = Identity { member_id: me.id, cluster_id: cluster_id(&ids) };

    let membership = Membership::load(store, ident.cluster_id)?;
    let no_lease = |_: i64| false;
    let mut txn = store.begin(0, &no_lease);
    for mut m in members {
        if m.id == ident.member_id {
            m.client_ur_ls = cfg.advertise_client_urls();
        }
        membership.apply_upsert(&mut txn, m);
    }
    txn.commit()?;
    let mut cs = ConfState::default();
    cs.voters = ids;
    storage.set_conf_state(&cs)?;
    local.insert("member_id", &ident.member_id.to_be_bytes())?;
    local.insert("cluster_id", &ident.cluster_id.to_be_bytes())?;
    local.flush()?;
    tracing::info!(member_id = %format!("{:x}", ident.member_id), cluster_id = %format!("{:x}", ident.cluster_id), "bootstrapped a new cluster");
    Ok(ident)
}

/// Runs a member until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<()> {
    let data_dir = std::path::PathBuf::from(cfg.data_dir());
    let db_path = data_dir.join("member").join("db");
    std::fs::create_dir_all(&db_path).map_err(|e| Error::Storage(format!("{}: {e}", db_path.display())))?;
    let db = sled::Config::new()
        .path(&db_path)
        .cache_capacity(256 * 1024 * 1024)
        .flush_every_ms(None)
        .open()?;
    let local = db.open_tree("local")?;
    let store = Store::open(db.open_tree("state")?)?;
    let mut storage = RaftStorage::open(&db)?;

    let ident = match (read_u64(&local, "member_id")?, read_u64(&local, "cluster_id")?) {
        (Some(member_id), Some(cluster_id)) => {
            tracing::info!(member_id = %format!("{member_id:x}"), "restarting from {}", data_dir.display());
            Identity { member_id, cluster_id }
        }
        _ => bootstrap(&cfg, &local, &store, &mut storage)?,
    };

    // Everything applied was committed; the saved commit index can lag the state after a crash.
    let applied = store.applied_index();
    if storage.hard_state().commit < applied {
        let mut hs = storage.hard_state().clone();
        hs.commit = applied;
        storage.set_hard_state(&hs)?;
    }
    let applied_term = raft::Storage::term(&storage, applied).unwrap_or(0);
    storage.set_applied(applied, applied_term);

    let status = Arc::new(RaftStatus::new(ident.member_id));
    let waiters = Arc::new(Waiters::default());
    let lessor = Arc::new(Lessor::load(&store, cfg.min_lease_ttl())?);
    let members = Arc::new(Membership::load(&store, ident.cluster_id)?);
    let alarms = Arc::new(Alarms::load(&store)?);
    let hub = WatchHub::new(store.clone(), cfg.experimental_watch_progress_notify_interval);
    let compactor = Compactor::start(store.clone());
    let (applied_tx, applied_rx) = watch::channel(applied);
    status.set_applied(applied);

    let raft_cfg = raft::Config {
        id: ident.member_id,
        election_tick: cfg.election_ticks(),
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let sole_voter = storage.conf_state().voters == [ident.member_id] && storage.conf_state().learners.is_empty();
    let mut raw = RawNode::new(&raft_cfg, storage, &crate::raft::logger::raft_logger())?;
    if sole_voter {
        // Nobody else can win: do not wait an election timeout to become leader.
        raw.campaign()?;
    }

    let applier = Applier::new(
        store.clone(),
        lessor.clone(),
        members.clone(),
        hub.clone(),
        waiters.clone(),
        alarms.clone(),
        compactor.clone(),
        ident.member_id,
    );
    let (tx, rx) = mpsc::channel::<Input>(RAFT_INBOX);
    let node = Node::new(raw, applier, Arc::new(NoPeers), status.clone(), waiters.clone(), applied_tx, cfg.snapshot_count);
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            if let Err(e) = node.run(rx) {
                // A member that cannot persist must not go on serving.
                tracing::error!(error = %e, "raft loop failed; stopping the member");
                std::process::exit(1);
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the raft thread: {e}")))?;

    let handle = RaftHandle::new(tx.clone(), waiters, status.clone(), applied_rx, cfg.request_timeout());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(ticker(tx.clone(), Duration::from_millis(cfg.heartbeat_interval)));
    tokio::spawn(hub.clone().run_sync(shutdown_rx.clone()));

    let ctx = Arc::new(Ctx {
        store: store.clone(),
        db: db.clone(),
        raft: handle.clone(),
        lessor: lessor.clone(),
        members,
        hub,
        alarms,
        compactor,
        cluster_id: ident.cluster_id,
        member_id: ident.member_id,
        max_txn_ops: cfg.max_txn_ops,
        max_request_bytes: cfg.max_request_bytes,
        quota_backend_bytes: cfg.quota_backend_bytes,
        progress_interval: cfg.experimental_watch_progress_notify_interval,
    });
    tokio::spawn(expire_leases(ctx.clone(), shutdown_rx.clone()));

    let max_msg = cfg.max_request_bytes + GRPC_OVERHEAD;
    let mut servers = Vec::new();
    for url in split_urls(&cfg.listen_client_urls) {
        let addr = url_to_addr(&url).map_err(Error::InvalidArgument)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidArgument(format!("listen on {url}: {e}")))?;
        tracing::info!(%url, "serving client requests");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(2 * 60 * 60)))
            .add_service(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(WatchServer::new(WatchService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(max_msg),
            )
            .add_service(AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(max_msg));
        let mut stop = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "client server failed");
            }
        }));
    }
    tracing::info!(name = %cfg.name, "ready to serve client requests");

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    let _ = tx.send(Input::Shutdown).await;
    let _ = tokio::task::spawn_blocking(move || raft_thread.join()).await;
    db.flush()?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Leader only: proposes the revoke of every expired lease (so all members delete the same keys at the
/// same revision).
async fn expire_leases(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for id in ctx.lessor.take_expired(64) {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                match ctx.propose(Op::LeaseRevoke(LeaseRevokeRequest { id })).await {
                    Ok(_) | Err(Error::LeaseNotFound) => tracing::debug!(lease = id, "expired lease revoked"),
                    Err(e) => tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry"),
                }
            });
        }
    }
}
