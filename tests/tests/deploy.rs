//! The deployment files: every YAML parses, the flags the manifests pass exist in `raftcd --help`, the
//! RAFTCD_* variables map to flags, and the Kubernetes bootstrap (three members finding each other by
//! their ordinal names) works with exactly the StatefulSet's flags, on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use raftcd_tests::{step, workspace_bin};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
}

fn help_text() -> String {
    let out = Command::new(workspace_bin("raftcd")).arg("--help").output().expect("raftcd --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn statefulset_args() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("kubernetes/raftcd.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_yaml::Value::deserialize(doc).expect("valid YAML document");
        if v["kind"] == "StatefulSet" {
            let args = &v["spec"]["template"]["spec"]["containers"][0]["args"];
            return args.as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        }
    }
    panic!("no StatefulSet in deploy/kubernetes/raftcd.yaml");
}

use serde::Deserialize as _;

/// Every YAML file under deploy/ parses (all documents).
#[test]
fn every_yaml_parses() {
    let mut n = 0;
    for path in [deploy_dir().join("compose.yaml"), deploy_dir().join("kubernetes/raftcd.yaml")] {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 7, "expected the services, StatefulSet, PDB, PVC, CronJob and compose file; parsed {n}");
}

/// The StatefulSet's flags and the RAFTCD_* variables of compose and systemd are all real flags.
#[test]
fn manifest_flags_exist() {
    let help = help_text();
    for arg in statefulset_args() {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} not in raftcd --help"
        );
    }
    let env_files = [deploy_dir().join("compose.yaml"), deploy_dir().join("systemd/raftcd.env")];
    for path in env_files {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("RAFTCD_") {
                let flag = format!("--{}", name.to_lowercase().replace('_', "-"));
                assert!(help.contains(&flag), "{}: RAFTCD_{name} maps to {flag}, not a raftcd flag", path.display());
            }
        }
    }
}

/// Three members started with exactly the StatefulSet's flags (pod names and DNS names mapped to
/// loopback addresses 127.0.0.11-13) bootstrap one cluster and serve.
#[test]
fn statefulset_bootstrap_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ns = "default";
    let addr = |i: usize| format!("127.0.0.{}", 11 + i);
    let mut children = Vec::new();
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    step!("start raftcd-0..2 with the StatefulSet's args");
    for i in 0..3 {
        let pod = format!("raftcd-{i}");
        let args: Vec<String> = statefulset_args()
            .into_iter()
            .map(|a| {
                let mut a = a.replace("$(POD_NAME)", &pod).replace("$(POD_NAMESPACE)", ns);
                for j in 0..3 {
                    a = a.replace(&format!("raftcd-{j}.raftcd.{ns}.svc.cluster.local"), &addr(j));
                }
                a.replace("0.0.0.0", &addr(i)).replace("/var/lib/raftcd/data", &dir.path().join(&pod).to_string_lossy())
            })
            .collect();
        let log = std::fs::File::create(dir.path().join(format!("{pod}.log"))).unwrap();
        children.push(
            Command::new(workspace_bin("raftcd"))
                .args(&args)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let _guard = Kill(children);
    step!("a write through raftcd-0 is readable linearizably through raftcd-2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut c0 = etcd_client::Client::connect([format!("{}:2379", addr(0))], None).await?;
                c0.put("k8s-bootstrap", "ok", None).await?;
                let mut c2 = etcd_client::Client::connect([format!("{}:2379", addr(2))], None).await?;
                let r = c2.get("k8s-bootstrap", None).await?;
                let members = c2.member_list().await?;
                Ok::<_, etcd_client::Error>((r.kvs().len(), members.members().len()))
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok((1, 3))) => break,
                other => {
                    assert!(Instant::now() < deadline, "cluster did not come up: {other:?}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });
}
