//! etcdserverpb.Maintenance: Status, Alarm, Hash/HashKV, Defragment, MoveLeader; Snapshot and Downgrade are
//! answered Unimplemented until their issues land.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use raftcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_server::Maintenance, AlarmRequest, AlarmResponse, AlarmType,
    DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse,
    HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::apply::ApplyResult;
use crate::error::Error;
use crate::raft::Input;
use crate::services::{require_leader, unexpected, Ctx, ETCD_VERSION};
use crate::snapshot::state::export_cut;

/// The Maintenance service.
pub struct MaintenanceService {
    ctx: Arc<Ctx>,
}

impl MaintenanceService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

/// Bytes per snapshot message.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

async fn stream_file(
    path: &std::path::Path,
    total: u64,
    header: raftcd_proto::etcdserverpb::ResponseHeader,
    out: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut sent = 0u64;
    let mut header = Some(header);
    loop {
        let mut buf = vec![0u8; SNAPSHOT_CHUNK];
        let mut filled = 0;
        while filled < SNAPSHOT_CHUNK {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        buf.truncate(filled);
        sent += filled as u64;
        let msg = SnapshotResponse {
            header: header.take(),
            remaining_bytes: total.saturating_sub(sent),
            blob: buf,
            version: ETCD_VERSION.to_string(),
        };
        if out.send(Ok(msg)).await.is_err() {
            return Ok(()); // the client went away
        }
    }
}

impl MaintenanceService {
    /// Snapshot, defragment and hashes are root-only while auth is on. etcd reports its auth package's
    /// errors here unmapped: code Unknown, "auth: ..." messages.
    fn admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.ctx
            .identify(req)
            .and_then(|who| self.ctx.auth.check_admin(&who))
            .map_err(|e| Status::unknown(e.to_string().replacen("etcdserver: ", "auth: ", 1)))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let r = req.into_inner();
        if r.action == AlarmAction::Get as i32 {
            let alarms = self
                .ctx
                .alarms
                .list()
                .into_iter()
                .filter(|a| r.alarm == AlarmType::None as i32 || a.alarm == r.alarm)
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(self.ctx.header(self.ctx.store.current_revision())),
                alarms,
            }));
        }
        match self.ctx.propose(Op::Alarm(r)).await? {
            ApplyResult::Alarm(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let st = self.ctx.raft.status();
        let db_size = self.ctx.db.get().size_on_disk() as i64;
        let mut errors = Vec::new();
        if self.ctx.alarms.no_space() {
            errors.push("memberID:".to_string() + &self.ctx.member_id.to_string() + " alarm:NOSPACE ");
        }
        if self.ctx.alarms.corrupt() {
            errors.push("memberID:".to_string() + &self.ctx.member_id.to_string() + " alarm:CORRUPT ");
        }
        Ok(Response::new(StatusResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: st.leader(),
            raft_index: st.commit(),
            raft_term: st.term(),
            raft_applied_index: st.applied(),
            errors,
            db_size_in_use: self.ctx.store.size_on_disk() as i64,
            is_learner: st.is_learner(),
            storage_version: String::new(),
            db_size_quota: self.ctx.quota_backend_bytes,
            downgrade_info: None,
        }))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&req)?;
        // sled never shrinks its files: the raft thread rewrites the database into a fresh one (reads go on
        // meanwhile) and answers once the member runs on it, so a Status after this reports the new size.
        let (tx, rx) = oneshot::channel();
        self.ctx.raft.send(Input::Defrag(tx)).await?;
        let report = rx.await.map_err(|_| Error::Stopped)??;
        tracing::info!(before = report.before, after = report.after, "defragment request served");
        Ok(Response::new(DefragmentResponse { header: Some(self.ctx.header(self.ctx.store.current_revision())) }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&req)?;
        let store = self.ctx.store.clone();
        let (hash, _, rev) = tokio::task::spawn_blocking(move || store.hash_kv(0))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashResponse { header: Some(self.ctx.header(rev)), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&req)?;
        let rev = req.into_inner().revision;
        let store = self.ctx.store.clone();
        let (hash, compact_revision, hash_revision) = tokio::task::spawn_blocking(move || store.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashKvResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// A point-in-time copy: the cut is taken between two applied entries, the export reads history at
    /// the cut's revision while writes go on, and the file is streamed in chunks then removed.
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.admin(&req)?;
        let (tx, rx) = oneshot::channel();
        self.ctx.raft.send(Input::Cut(tx)).await?;
        let cut = rx.await.map_err(|_| Error::Stopped)??;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = self.ctx.snap_dir.join(format!("backup-{}-{nanos}.snap", cut.index));
        let (store, p) = (self.ctx.store.clone(), path.clone());
        let revision = cut.revision;
        let total = tokio::task::spawn_blocking(move || export_cut(&store, &cut, &p))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let header = self.ctx.header(revision);
        let (out_tx, out_rx) = mpsc::channel::<Result<SnapshotResponse, Status>>(4);
        tokio::spawn(async move {
            let result = stream_file(&path, total, header, &out_tx).await;
            if let Err(e) = result {
                let _ = out_tx.send(Err(Status::internal(format!("raftcd: snapshot: {e}")))).await;
            }
            let _ = tokio::fs::remove_file(&path).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        let st = self.ctx.raft.status().clone();
        if !st.is_leader() {
            return Err(Error::NotLeader.into());
        }
        if self.ctx.members.get(target).is_none_or(|m| m.is_learner) {
            return Err(Error::BadLeaderTransferee.into());
        }
        if target != st.id {
            self.ctx.raft.send(Input::TransferLeader(target)).await?;
            let deadline = tokio::time::Instant::now() + self.ctx.raft.timeout();
            while st.leader() != target {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout.into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        Ok(Response::new(MoveLeaderResponse { header: Some(self.ctx.header(self.ctx.store.current_revision())) }))
    }

    async fn downgrade(&self, _req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(Error::Unimplemented("raftcd: downgrade is not supported".into()).into())
    }
}
