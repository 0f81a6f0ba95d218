//! Wires a member together: opens storage, bootstraps or restores identity and membership, starts the raft
//! thread and the background tasks, serves the gRPC API, and shuts everything down in order on a signal.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState};
use raft::RawNode;
use raftcd_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer, LeaseRevokeRequest,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use raftcd_proto::raftcdpb::{peer_server::PeerServer, MemberAttributes, MemberContext};
use tokio::sync::{mpsc, watch};

use crate::apply::{Alarms, Applier, ApplierParts, Compactor};
use crate::config::{split_urls, url_to_addr, Config};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::live_db::{Generation, LiveDb, TreeRef};
use crate::member::{cluster_id, member_id, parse_initial_cluster, Membership};
use crate::mvcc::Store;
use crate::peer::{PeerService, PeerTransport};
use crate::raft::node::ticker;
use crate::raft::proposal::Waiters;
use crate::raft::storage::RaftStorage;
use crate::raft::{Input, Node, RaftHandle, RaftStatus};
use crate::services::{
    auth::AuthService, cluster::ClusterService, kv::KvService, lease::LeaseService, maintenance::MaintenanceService,
    watch::WatchService, Ctx,
};
use crate::watch::WatchHub;

/// Inputs queued for the raft thread at most (proposals wait for room: backpressure, not memory growth).
const RAFT_INBOX: usize = 8192;
/// --quota-backend-bytes 0 means etcd's default: 2 GiB.
const DEFAULT_QUOTA: i64 = 2 * 1024 * 1024 * 1024;
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

/// The state machine holds a received snapshot whose point never reached the raft log: a crash (or stop)
/// between installing the snapshot's data and resetting the log (raft/node.rs, step 4). The log restarts at
/// that snapshot, as the install would have done; the snapshot file says the term, and the member list
/// installed with the data is the configuration at that index. Without this, raft would find its commit
/// index beyond an empty log and refuse to start.
fn restore_snapshot_point(
    store: &Store,
    storage: &mut RaftStorage,
    snap_dir: &std::path::Path,
    cluster_id: u64,
    applied: u64,
) -> Result<()> {
    let suffix = format!("-{applied}.snap");
    let file = std::fs::read_dir(snap_dir)
        .map_err(|e| Error::Storage(format!("{}: {e}", snap_dir.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("recv-") && n.ends_with(&suffix))
        })
        .ok_or_else(|| {
            Error::Storage(format!("applied index {applied} is beyond the raft log and no snapshot has it"))
        })?;
    let (index, term) = crate::snapshot::state::verify(&file)?;
    if index != applied {
        return Err(Error::Storage(format!("{} holds index {index}, not {applied}", file.display())));
    }
    let mut meta = raft::eraftpb::SnapshotMetadata { index, term, ..Default::default() };
    let cs = meta.mut_conf_state();
    for m in Membership::load(store, cluster_id)?.list() {
        if m.is_learner {
            cs.learners.push(m.id);
        } else {
            cs.voters.push(m.id);
        }
    }
    tracing::warn!(index, term, voters = ?cs.voters, learners = ?cs.learners, "raft log restarted at an installed snapshot");
    storage.apply_snapshot_meta(&meta)?;
    storage.flush()
}

/// First start of a member of a new cluster: derive every member's id from the flags (the same on every
/// member) and write the initial configuration into the raft log as committed conf-change entries 1..n of
/// term 1, exactly as every other initial member does. Applying them builds the member list and raft's
/// configuration, and a member added later replays the same entries.
fn bootstrap_new(cfg: &Config, storage: &mut RaftStorage) -> Result<Identity> {
    let my_peer_urls = cfg.advertise_peer_urls();
    let initial = match &cfg.initial_cluster {
        Some(s) => parse_initial_cluster(s)?,
        None => vec![(cfg.name.clone(), my_peer_urls.clone())],
    };
    let token = &cfg.initial_cluster_token;
    let members: Vec<MemberContext> = initial
        .iter()
        .map(|(name, urls)| MemberContext {
            id: member_id(urls, token, None),
            name: name.clone(),
            peer_urls: urls.clone(),
            ..Default::default()
        })
        .collect();
    let me = members
        .iter()
        .find(|m| m.name == cfg.name)
        .ok_or_else(|| Error::InvalidArgument(format!("--initial-cluster has no member named {:?}", cfg.name)))?;
    let mut mine = me.peer_urls.clone();
    let mut advertised = my_peer_urls.clone();
    mine.sort();
    advertised.sort();
    if mine != advertised {
        return Err(Error::InvalidArgument(format!(
            "--initial-cluster has {:?} for {:?} but --initial-advertise-peer-urls is {:?}",
            me.peer_urls, cfg.name, my_peer_urls
        )));
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let ident = Identity { member_id: me.id, cluster_id: cluster_id(&ids) };

    let mut entries = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddNode);
        single.node_id = m.id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        cc.set_context(prost::Message::encode_to_vec(m).into());
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.term = 1;
        e.index = i as u64 + 1;
        e.set_data(protobuf::Message::write_to_bytes(&cc).map_err(|e| Error::Storage(e.to_string()))?.into());
        entries.push(e);
    }
    storage.append(&entries)?;
    let hs = HardState { term: 1, commit: entries.len() as u64, ..Default::default() };
    storage.set_hard_state(&hs)?;
    tracing::info!(member_id = %format!("{:x}", ident.member_id), cluster_id = %format!("{:x}", ident.cluster_id), members = ids.len(), "bootstrapping a new cluster");
    Ok(ident)
}

/// Opens or creates the member's identity: from the data dir when it exists (the --initial-cluster flags
/// are then ignored), else from bootstrap (new cluster) or discovery (joining an existing one).
async fn identity(
    cfg: &Config,
    local: &sled::Tree,
    storage: &mut RaftStorage,
    peer_tls: Option<&crate::tls::DialTls>,
) -> Result<Identity> {
    if let (Some(member_id), Some(cluster_id)) = (read_u64(local, "member_id")?, read_u64(local, "cluster_id")?) {
        tracing::info!(member_id = %format!("{member_id:x}"), "restarting from {}", cfg.data_dir());
        return Ok(Identity { member_id, cluster_id });
    }
    let ident = match cfg.initial_cluster_state.as_str() {
        "new" => bootstrap_new(cfg, storage)?,
        "existing" => {
            let all: Vec<String> = parse_initial_cluster(cfg.initial_cluster.as_deref().unwrap_or(""))?
                .into_iter()
                .flat_map(|(_, urls)| urls)
                .collect();
            let (cluster_id, member_id) =
                crate::peer::join::discover(&all, &cfg.advertise_peer_urls(), peer_tls).await?;
            tracing::info!(member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), "joining an existing cluster");
            Identity { member_id, cluster_id }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "--initial-cluster-state must be \"new\" or \"existing\", not {other:?}"
            )))
        }
    };
    storage.flush()?;
    local.insert("member_id", &ident.member_id.to_be_bytes())?;
    local.insert("cluster_id", &ident.cluster_id.to_be_bytes())?;
    storage.sync_state()?;
    Ok(ident)
}

/// Runs a member until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<()> {
    cfg.check_auth().map_err(Error::InvalidArgument)?;
    let client_tls = cfg.client_tls().map_err(Error::InvalidArgument)?;
    let peer_tls = cfg.peer_tls().map_err(Error::InvalidArgument)?;
    let peer_client_tls = peer_tls.as_ref().map(crate::tls::peer_client_config).transpose()?;
    let member_client_tls = client_tls.as_ref().map(crate::tls::client_config).transpose()?;
    let data_dir = std::path::PathBuf::from(cfg.data_dir());
    if crate::failpoints::COMPILED_IN {
        let armed = std::env::var("RAFTCD_FAILPOINTS").unwrap_or_default();
        tracing::warn!(armed = %armed, "this build has failpoints compiled in (testing only)");
    }
    let (db_path, db) = crate::db_dir::open_active(&data_dir, crate::db_dir::open_member_db)?;
    let gen = Generation::new(db, db_path);
    let local = TreeRef::open(&gen, "local")?;
    let store = Store::open(TreeRef::open(&gen, "state")?)?;
    let mut storage = RaftStorage::open_in(&gen, &data_dir.join("member").join("wal"))?;
    let db = LiveDb::new(gen);

    let ident = identity(&cfg, &local, &mut storage, peer_client_tls.as_ref()).await?;
    let snap_dir = data_dir.join("member").join("snap");
    std::fs::create_dir_all(&snap_dir).map_err(|e| Error::Storage(format!("{}: {e}", snap_dir.display())))?;
    if let Some(path) = crate::snapshot::state::interrupted_install(&local)? {
        tracing::warn!(path = %path.display(), "finishing a snapshot install interrupted by a crash");
        crate::snapshot::state::install(&store, &local, &path)?;
    }

    // Everything applied was committed; the saved commit index can lag the state after a crash.
    let applied = store.applied_index();
    if applied > raft::Storage::last_index(&storage).unwrap_or(0) {
        restore_snapshot_point(&store, &mut storage, &snap_dir, ident.cluster_id, applied)?;
    }
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
    let auth = Arc::new(
        crate::auth::AuthStore::load(&store, Duration::from_secs(cfg.auth_token_ttl), cfg.bcrypt_cost)?
            .with_jwt(cfg.jwt().map_err(Error::InvalidArgument)?),
    );
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
    let raw = RawNode::new(&raft_cfg, storage, &crate::raft::logger::raft_logger())?;
    let metrics = Arc::new(crate::metrics::Metrics::default());

    let (tx, rx) = mpsc::channel::<Input>(RAFT_INBOX);
    let my_peer_url = cfg.advertise_peer_urls().first().cloned().unwrap_or_default();
    let transport = PeerTransport::new(
        ident.member_id,
        ident.cluster_id,
        members.clone(),
        tx.clone(),
        store.clone(),
        snap_dir.clone(),
        my_peer_url,
        peer_client_tls.clone(),
    );
    let (removed_tx, mut removed_rx) = watch::channel(false);
    let applier = Applier::new(
        ApplierParts {
            store: store.clone(),
            lessor: lessor.clone(),
            members: members.clone(),
            hub: hub.clone(),
            waiters: waiters.clone(),
            alarms: alarms.clone(),
            auth: auth.clone(),
            compactor: compactor.clone(),
            local,
            snap_dir: snap_dir.clone(),
            removed: removed_tx,
        },
        ident.member_id,
    );
    let node = Node::new(
        raw,
        applier,
        transport.clone(),
        status.clone(),
        waiters.clone(),
        applied_tx,
        cfg.snapshot_count,
        metrics.clone(),
    )
    .with_defrag(crate::defrag_online::OnlineDefrag::new(data_dir.clone(), db.clone()));
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
        auth,
        compactor,
        transport: transport.clone(),
        leader: Default::default(),
        snap_dir: snap_dir.clone(),
        metrics: metrics.clone(),
        client_tls: member_client_tls.clone(),
        cluster_id: ident.cluster_id,
        member_id: ident.member_id,
        max_txn_ops: cfg.max_txn_ops,
        max_request_bytes: cfg.max_request_bytes,
        quota_backend_bytes: if cfg.quota_backend_bytes <= 0 { DEFAULT_QUOTA } else { cfg.quota_backend_bytes },
        progress_interval: cfg.experimental_watch_progress_notify_interval,
    });
    tokio::spawn(expire_leases(ctx.clone(), shutdown_rx.clone()));
    if let Some(policy) = crate::auto_compaction::policy(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)? {
        tracing::info!(?policy, "auto-compaction enabled");
        tokio::spawn(crate::auto_compaction::run(ctx.clone(), policy, shutdown_rx.clone()));
    }
    if !cfg.experimental_corrupt_check_time.is_zero() {
        tokio::spawn(crate::corruption::run_periodic(
            ctx.clone(),
            cfg.experimental_corrupt_check_time,
            shutdown_rx.clone(),
        ));
    }
    tokio::spawn(publish_attributes(ctx.clone(), cfg.name.clone(), cfg.advertise_client_urls()));

    let mut servers = Vec::new();
    let peer_acceptor = peer_tls.clone().map(crate::tls::ReloadingAcceptor::new).transpose()?.map(Arc::new);
    for url in split_urls(&cfg.listen_peer_urls) {
        let addr = url_to_addr(&url).map_err(Error::InvalidArgument)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidArgument(format!("listen on {url}: {e}")))?;
        tracing::info!(%url, "serving peer traffic");
        let tls = if url.starts_with("https://") { peer_acceptor.clone() } else { None };
        let (conn_tx, conn_rx) = mpsc::channel::<std::io::Result<crate::listen::Conn>>(64);
        servers.push(tokio::spawn(crate::listen::accept_loop(listener, tls, conn_tx, None, shutdown_rx.clone())));
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let svc = PeerService::new(
            ident.cluster_id,
            tx.clone(),
            ctx.members.clone(),
            transport.clone(),
            snap_dir.clone(),
            crate::peer::service::max_snapshot_bytes(ctx.quota_backend_bytes as u64),
        );
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(PeerServer::new(svc).max_decoding_message_size(64 << 20));
        let mut stop = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "peer server failed");
            }
        }));
    }

    let max_msg = cfg.max_request_bytes + GRPC_OVERHEAD;
    let client_acceptor = client_tls.clone().map(crate::tls::ReloadingAcceptor::new).transpose()?.map(Arc::new);
    for url in split_urls(&cfg.listen_client_urls) {
        let addr = url_to_addr(&url).map_err(Error::InvalidArgument)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidArgument(format!("listen on {url}: {e}")))?;
        tracing::info!(%url, "serving client requests");
        // gRPC and plain HTTP (/metrics, /health, ...) share the port, routed by ALPN or the first bytes.
        let tls = if url.starts_with("https://") { client_acceptor.clone() } else { None };
        let (conn_tx, conn_rx) = mpsc::channel::<std::io::Result<crate::listen::Conn>>(64);
        servers.push(tokio::spawn(crate::listen::accept_loop(
            listener,
            tls,
            conn_tx,
            Some(ctx.clone()),
            shutdown_rx.clone(),
        )));
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(2 * 60 * 60)))
            .max_concurrent_streams(cfg.max_concurrent_streams)
            // Outermost first: the metrics see the codes after the limits layer rewrote them to etcd's.
            .layer(crate::grpc_metrics::GrpcMetricsLayer(ctx.metrics.clone()))
            .layer(crate::grpc_limits::EtcdLimitsLayer)
            .add_service(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(
                WatchServer::new(WatchService::new(ctx.clone()).with_max_watchers(cfg.max_watchers_per_stream))
                    .max_decoding_message_size(max_msg),
            )
            .add_service(LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(max_msg),
            )
            .add_service(AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(max_msg))
            .add_service(raftcd_proto::health::health_server::HealthServer::new(
                crate::services::health::HealthService::new(ctx.clone()),
            ));
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
    for url in cfg.listen_metrics_urls.as_deref().map(split_urls).unwrap_or_default() {
        let addr = url_to_addr(&url).map_err(Error::InvalidArgument)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidArgument(format!("listen on {url}: {e}")))?;
        tracing::info!(%url, "serving /metrics and /health");
        let ctx = ctx.clone();
        let mut stop = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(crate::http::serve(stream, ctx.clone()));
                        }
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    if cfg.experimental_initial_corrupt_check {
        crate::corruption::initial_check(&ctx).await?;
    }
    tracing::info!(name = %cfg.name, "ready to serve client requests");

    tokio::select! {
        _ = wait_for_signal() => tracing::info!("shutting down"),
        _ = removed_rx.wait_for(|r| *r) => tracing::warn!("this member was removed from the cluster; shutting down"),
    }
    hand_over_leadership(&ctx).await;
    let _ = shutdown_tx.send(true);
    // Give in-flight requests a moment; long-lived streams (watches, peers) do not hold up the exit.
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    let _ = tx.send(Input::Shutdown).await;
    let _ = tokio::task::spawn_blocking(move || raft_thread.join()).await;
    db.get().sync()?;
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

/// Publishes this member's name and client URLs through raft once it has started (as etcd does), so every
/// member lists them. Retries until it is applied.
async fn publish_attributes(ctx: Arc<Ctx>, name: String, client_urls: Vec<String>) {
    loop {
        let current = ctx.members.get(ctx.member_id);
        if current.as_ref().is_some_and(|m| m.name == name && m.client_ur_ls == client_urls) {
            return;
        }
        let op = Op::MemberAttributes(MemberAttributes {
            id: ctx.member_id,
            name: name.clone(),
            client_urls: client_urls.clone(),
        });
        match ctx.propose(op).await {
            Ok(_) => tracing::info!("published member attributes"),
            Err(e) => {
                tracing::debug!(error = %e, "publishing member attributes; will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// As etcd on a graceful stop: a leader first hands leadership to the most caught-up voter, so a rolling
/// restart costs no election timeout.
async fn hand_over_leadership(ctx: &Ctx) {
    let st = ctx.raft.status();
    if !st.is_leader() {
        return;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if ctx.raft.send(Input::Progress(tx)).await.is_err() {
        return;
    }
    let Ok((_, progress)) = rx.await else { return };
    let voters: Vec<u64> = ctx.members.list().iter().filter(|m| !m.is_learner && m.id != st.id).map(|m| m.id).collect();
    let Some((target, _)) = progress.iter().filter(|(id, _)| voters.contains(id)).max_by_key(|(_, matched)| *matched)
    else {
        return;
    };
    tracing::info!(to = %format!("{target:x}"), "handing over leadership before stopping");
    if ctx.raft.send(Input::TransferLeader(*target)).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while st.is_leader() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
