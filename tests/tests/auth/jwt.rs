//! JWT tokens: signed, accepted by every member, expiring.

use super::*;

/// A Range through a raw gRPC connection to `ep` carrying `token` as etcd clients send it.
async fn range_with_token(ep: &str, token: &str, key: &str) -> Result<(), tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}")).unwrap().connect().await.unwrap();
    let mut kv = raftcd_proto::etcdserverpb::kv_client::KvClient::new(ch);
    let mut req = tonic::Request::new(raftcd_proto::etcdserverpb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    req.metadata_mut().insert("token", token.parse().unwrap());
    kv.range(req).await.map(|_| ())
}

/// Scenario: a 3-member cluster with `--auth-token jwt,...,sign-method=ES256,ttl=3s`. Authenticate returns a
/// signed JWT naming the user; the token works on every member without any replication; a token with
/// forged claims is refused; after the ttl the token is refused everywhere.
#[test]
fn jwt_tokens_are_signed_work_everywhere_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let kp = rcgen::KeyPair::generate().unwrap();
    let (pubk, privk) = (dir.path().join("jwt.pub"), dir.path().join("jwt.key"));
    std::fs::write(&pubk, kp.public_key_pem()).unwrap();
    std::fs::write(&privk, kp.serialize_pem()).unwrap();
    let spec = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=3s", pubk.display(), privk.display());
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--bcrypt-cost", "4", "--auth-token", &spec]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        step!("alice authenticates on m1; the token is a JWT with her name");
        let anon = etcd_client::Client::connect([format!("http://{}", eps[0])], None).await.unwrap();
        let token = anon.auth_client().authenticate("alice".into(), "apw".into()).await.unwrap().token().to_string();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWT: {token}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&base64::Engine::decode(&b64, parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::Engine::decode(&b64, parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["username"], "alice");
        assert!(claims["exp"].is_u64() && claims["revision"].is_u64(), "{claims}");
        step!("the token works on every member; a forged one does not");
        for ep in &eps {
            range_with_token(ep, &token, "/app/x").await.unwrap_or_else(|e| panic!("{ep}: {e}"));
            let denied = range_with_token(ep, &token, "/other").await.unwrap_err();
            assert_eq!(
                (denied.code(), denied.message()),
                (tonic::Code::PermissionDenied, "etcdserver: permission denied")
            );
        }
        let forged_claims = base64::Engine::encode(
            &b64,
            serde_json::json!({"username":"root","revision":1,"exp":99999999999u64}).to_string(),
        );
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        let e = range_with_token(&eps[1], &forged, "/app/x").await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
        let wrong = anon.auth_client().authenticate("alice".into(), "nope".into()).await;
        assert_eq!(outcome(&wrong), "InvalidArgument: etcdserver: authentication failed, invalid user ID or password");
        step!("after the 3 s ttl the token is refused everywhere");
        tokio::time::sleep(Duration::from_secs(4)).await;
        for ep in &eps {
            let e = range_with_token(ep, &token, "/app/x").await.unwrap_err();
            assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
        }
    });
}
