//! The peer port under hostile traffic, with real processes: raft traffic claiming another cluster id is
//! refused and logged, undecodable or local-only raft messages are refused, and with peer mutual TLS a client
//! without a certificate from the peer CA cannot reach the peer API at all. The member keeps serving.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use raftcd_proto::raftcdpb::{peer_client::PeerClient, MembersRequest, RaftBatch, SnapshotChunk};
use raftcd_tests::client::connect;
use raftcd_tests::{free_port, step, workspace_bin, RaftcdProcess};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

async fn peer_client(url: &str, tls: Option<ClientTlsConfig>) -> Result<PeerClient<Channel>, tonic::transport::Error> {
    let mut ep = Endpoint::from_shared(url.to_string()).unwrap().connect_timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        ep = ep.tls_config(tls)?;
    }
    Ok(PeerClient::new(ep.connect().await?))
}

async fn send(c: &mut PeerClient<Channel>, batch: RaftBatch) -> Result<(), tonic::Status> {
    c.send(tokio_stream::iter([batch])).await.map(|_| ())
}

/// Scenario: a single member on a plain peer port. Raft batches with another cluster id (Send and Snapshot)
/// are refused with PermissionDenied and a log line; batches with the right id but garbage, empty (a MsgHup)
/// messages are refused with InvalidArgument; the member still serves clients.
#[test]
fn foreign_and_malformed_peer_traffic_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = RaftcdProcess::start_single(dir.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        connect(&m.endpoint()).await.put("before", "1", None).await.unwrap();
        let mut c = peer_client(&m.member.peer_url(), None).await.unwrap();
        let cid = c.members(MembersRequest {}).await.unwrap().into_inner().cluster_id;
        assert_ne!(cid, 0);

        step!("another cluster id");
        let foreign = RaftBatch { cluster_id: cid ^ 1, from: 77, messages: vec![vec![]], from_url: "http://x".into() };
        let e = send(&mut c, foreign).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("cluster id mismatch"), "{e:?}");
        let chunk = SnapshotChunk { cluster_id: cid ^ 1, raft_message: vec![], data: vec![1, 2, 3], last: true };
        let e = c.snapshot(tokio_stream::iter([chunk])).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(m.log().contains("rejected peer traffic from another cluster"), "no log line:\n{}", m.log());

        step!("the right cluster id, undecodable or local-only messages");
        for msg in [vec![0xff, 0xff, 0xff], vec![]] {
            let batch =
                RaftBatch { cluster_id: cid, from: 77, messages: vec![msg.clone()], from_url: "http://x".into() };
            let e = send(&mut c, batch).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{msg:?}: {e:?}");
            assert!(e.message().contains("bad raft message"), "{e:?}");
        }
        let chunk = SnapshotChunk { cluster_id: cid, raft_message: vec![], data: vec![], last: true };
        let e = c.snapshot(tokio_stream::iter([chunk])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

        step!("the member still serves");
        let mut kv = connect(&m.endpoint()).await;
        kv.put("after", "2", None).await.unwrap();
        assert_eq!(kv.get("before", None).await.unwrap().kvs().len(), 1);
    });
}

/// A MsgSnapshot from member 77 for index 1000, in raft-rs's codec, as a snapshot stream starts with.
fn snapshot_message() -> Vec<u8> {
    use protobuf::Message as _;
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
    m.from = 77;
    m.term = 5;
    m.mut_snapshot().mut_metadata().index = 1000;
    m.mut_snapshot().mut_metadata().term = 5;
    m.write_to_bytes().unwrap()
}

/// Files in the member's snapshot directory whose name ends with `suffix`.
fn snap_files(data_dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join("member").join("snap"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// Scenario: a peer with the right cluster id streams a snapshot. One larger than the member's limit (twice
/// the 1 MiB backend quota plus 64 MiB) is refused with ResourceExhausted and its partial file removed;
/// while one stream is being received a second one is refused with Unavailable; an abandoned stream leaves
/// no file behind. The member keeps serving.
#[test]
fn peer_snapshot_streams_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let m = RaftcdProcess::start_single(dir.path(), &["--quota-backend-bytes", "1048576"]);
    let data_dir = m.member.data_dir.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = peer_client(&m.member.peer_url(), None).await.unwrap();
        let cid = c.members(MembersRequest {}).await.unwrap().into_inner().cluster_id;
        let chunk = |first: bool, last: bool| SnapshotChunk {
            cluster_id: cid,
            raft_message: if first { snapshot_message() } else { vec![] },
            data: vec![0xab; 4 << 20],
            last,
        };

        step!("a 68 MiB snapshot against a 66 MiB limit");
        let chunks: Vec<SnapshotChunk> = (0..17).map(|i| chunk(i == 0, i == 16)).collect();
        let e = c.snapshot(tokio_stream::iter(chunks)).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("snapshot larger than"), "{e:?}");
        assert_eq!(snap_files(&data_dir, ".part"), Vec::<String>::new(), "partial snapshot left on disk");
        assert!(m.log().contains("refused an oversized snapshot"), "no log line:\n{}", m.log());

        step!("a second stream while one is being received");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(chunk(true, false)).await.unwrap();
        let mut c1 = c.clone();
        let slow = tokio::spawn(async move { c1.snapshot(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while snap_files(&data_dir, ".part").is_empty() {
            assert!(Instant::now() < deadline, "the first stream never started writing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let e = c.snapshot(tokio_stream::iter([chunk(true, true)])).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("another snapshot is being received"), "{e:?}");

        step!("the first stream is abandoned: its file goes");
        slow.abort();
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !snap_files(&data_dir, ".part").is_empty() {
            assert!(Instant::now() < deadline, "an abandoned stream left {:?}", snap_files(&data_dir, ".part"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        step!("the member still serves");
        let mut kv = connect(&m.endpoint()).await;
        kv.put("after", "2", None).await.unwrap();
    });
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gen_certs(dir: &Path, names: &[&str]) {
    let st = Command::new(workspace_bin("raftcd-util")).arg("gen-certs").arg(dir).args(names).status().unwrap();
    assert!(st.success());
}

fn tls(certs: &Path, ca: &str, identity: Option<&str>) -> ClientTlsConfig {
    let read = |f: String| std::fs::read(certs.join(f)).unwrap();
    let mut t = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(format!("{ca}.pem"))));
    if let Some(name) = identity {
        t = t.identity(Identity::from_pem(read(format!("{name}.pem")), read(format!("{name}-key.pem"))));
    }
    t
}

/// Scenario: a member with https and --peer-client-cert-auth on its peer port. Plain HTTP/2, TLS without a
/// client certificate, and a certificate from another CA cannot call the peer API; a certificate from the
/// peer CA can (so the refusals are the TLS layer's, not a broken endpoint).
#[test]
fn peer_api_requires_peer_tls_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, other) = (dir.path().join("certs"), dir.path().join("other"));
    gen_certs(&certs, &["peer"]);
    gen_certs(&other, &["peer"]);
    let (cp, pp) = (free_port(), free_port());
    let (curl, purl) = (format!("http://127.0.0.1:{cp}"), format!("https://127.0.0.1:{pp}"));
    let log = std::fs::File::create(dir.path().join("m.log")).unwrap();
    let _m = Kill(
        Command::new(workspace_bin("raftcd"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("default={purl}")])
            .arg("--peer-cert-file")
            .arg(certs.join("peer.pem"))
            .arg("--peer-key-file")
            .arg(certs.join("peer-key.pem"))
            .arg("--peer-trusted-ca-file")
            .arg(certs.join("ca.pem"))
            .arg("--peer-client-cert-auth")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        connect(&format!("127.0.0.1:{cp}")).await;
        let members = |t: Option<ClientTlsConfig>, url: String| async move {
            match peer_client(&url, t).await {
                Ok(mut c) => {
                    c.members(MembersRequest {}).await.map(|r| r.into_inner().cluster_id).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        step!("the peer CA's certificate is admitted");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match members(Some(tls(&certs, "ca", Some("peer"))), purl.clone()).await {
                Ok(cid) => break assert_ne!(cid, 0),
                Err(e) => assert!(Instant::now() < deadline, "the trusted peer was never admitted: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        step!("everyone else is refused");
        let plain = members(None, format!("http://127.0.0.1:{pp}")).await;
        assert!(plain.is_err(), "plain HTTP/2 reached the peer API: {plain:?}");
        let no_cert = members(Some(tls(&certs, "ca", None)), purl.clone()).await;
        assert!(no_cert.is_err(), "TLS without a client certificate reached the peer API: {no_cert:?}");
        let foreign_ca = members(
            Some(tls(&certs, "ca", None).identity(Identity::from_pem(
                std::fs::read(other.join("peer.pem")).unwrap(),
                std::fs::read(other.join("peer-key.pem")).unwrap(),
            ))),
            purl.clone(),
        )
        .await;
        assert!(foreign_ca.is_err(), "a certificate from another CA reached the peer API: {foreign_ca:?}");
    });
}
