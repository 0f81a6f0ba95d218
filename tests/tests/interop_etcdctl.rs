//! Interop: Debian's `etcdctl` 3.4 (a client we did not write) against a real raftcd process. Commands run with
//! `ETCDCTL_API=3 --endpoints 127.0.0.1:PORT`; `-w json` outputs are parsed and checked field by field.
//!
//! etcdctl's JSON is Go's encoding of the protobuf structs: snake_case fields in KV responses, keys and values
//! base64-encoded, zero values omitted (so a missing `more`/`lease` means false/0), and camelCase in Status.
//!
//! If etcdctl is missing the tests fail, unless `RAFTCD_ALLOW_SKIP=1` (then they print why and pass).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use raftcd_tests::client::{etcdctl_path, skip_allowed};
use raftcd_tests::{step, RaftcdProcess};
use serde_json::Value;

/// A raftcd and the etcdctl that talks to it.
struct Ctl {
    bin: PathBuf,
    p: RaftcdProcess,
    _dir: tempfile::TempDir,
}

/// What one etcdctl run produced.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ctl {
    /// Starts raftcd and waits until etcdctl can read from it; `None` when etcdctl is missing and skipping is
    /// allowed.
    fn start(test: &str) -> Option<Ctl> {
        let Some(bin) = etcdctl_path().filter(|p| p.exists()) else {
            assert!(skip_allowed(), "etcdctl not found (install etcd-client, or set RAFTCD_ALLOW_SKIP=1 to skip)");
            eprintln!("skipped {test}: etcdctl not found and RAFTCD_ALLOW_SKIP=1");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let p = RaftcdProcess::start_single(dir.path(), &[]);
        let ctl = Ctl { bin, p, _dir: dir };
        let start = Instant::now();
        loop {
            let o = ctl.run(&["get", "raftcd-tests/ready-probe"], None);
            if o.ok {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "raftcd not ready for etcdctl: {}", o.stderr);
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ctl)
    }

    /// Runs `etcdctl ARGS` (with `stdin` piped in when given).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.p.endpoint(), "--dial-timeout", "3s", "--command-timeout", "10s"])
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run etcdctl");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write etcdctl stdin");
        }
        let o = child.wait_with_output().expect("etcdctl output");
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed and returns its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert!(o.ok, "etcdctl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }

    /// Runs a command with `-w json` that must succeed and parses its output.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {all:?} printed invalid JSON ({e}): {out}"))
    }

    /// Runs `etcdctl txn -w json` with `script` on stdin.
    #[track_caller]
    fn txn(&self, script: &str) -> Value {
        let o = self.run(&["txn", "-w", "json"], Some(script));
        assert!(o.ok, "etcdctl txn failed:\nscript:\n{script}\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("txn printed invalid JSON ({e}): {}", o.stdout))
    }
}

/// An integer field (absent = 0, as Go omits zero values). Accepts u64 beyond i64 (ids).
#[track_caller]
fn int(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[part],
        };
    }
    match cur {
        Value::Null => 0,
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("{path} = {n} is not a non-negative integer")),
        other => panic!("{path} is not a number: {other} in {v}"),
    }
}

/// A base64 bytes field, decoded to a string (absent = "").
#[track_caller]
fn b64(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).expect("base64")).expect("utf8")
        }
        other => panic!("not a base64 string: {other}"),
    }
}

/// (key, value, create_revision, mod_revision, version, lease) of a JSON kv.
fn kv(v: &Value) -> (String, String, u64, u64, u64, u64) {
    (
        b64(&v["key"]),
        b64(&v["value"]),
        int(v, "create_revision"),
        int(v, "mod_revision"),
        int(v, "version"),
        int(v, "lease"),
    )
}

fn kvs(v: &Value) -> Vec<(String, String, u64, u64, u64, u64)> {
    v["kvs"].as_array().map(|a| a.iter().map(kv).collect()).unwrap_or_default()
}

fn keys(v: &Value) -> Vec<String> {
    kvs(v).into_iter().map(|k| k.0).collect()
}

/// Checks a JSON response header: non-zero ids and term, the given revision; returns (cluster_id, member_id).
#[track_caller]
fn check_header(v: &Value, revision: u64) -> (u64, u64) {
    let (cid, mid) = (int(v, "header.cluster_id"), int(v, "header.member_id"));
    assert!(cid != 0 && mid != 0, "header ids must be non-zero: {v}");
    assert!(int(v, "header.raft_term") > 0, "raft_term: {v}");
    assert_eq!(int(v, "header.revision"), revision, "header revision in {v}");
    (cid, mid)
}

/// Scenario: etcdctl put / get (single, --prefix, --from-key, --rev, --limit, --keys-only, --sort-by)
/// / del (single, --prefix, --prev-kv) against raftcd, simple and JSON outputs checked field by field.
#[test]
fn etcdctl_put_get_del() {
    let Some(ctl) = Ctl::start("etcdctl_put_get_del") else {
        return;
    };

    step!("put foo bar -> OK");
    assert_eq!(ctl.ok(&["put", "foo", "bar"]), "OK\n");
    step!("put foo bar2 --prev-kv -w json");
    let v = ctl.json(&["put", "foo", "bar2", "--prev-kv"]);
    let (cid, mid) = check_header(&v, 3);
    assert_eq!(kv(&v["prev_kv"]), ("foo".into(), "bar".into(), 2, 2, 1, 0));
    for k in ["p/1", "p/2", "p/3", "q"] {
        ctl.ok(&["put", k, &format!("val-{k}")]);
    }
    // Revisions: foo @2 @3, p/1 @4, p/2 @5, p/3 @6, q @7.

    step!("get foo (simple and json)");
    assert_eq!(ctl.ok(&["get", "foo"]), "foo\nbar2\n");
    let v = ctl.json(&["get", "foo"]);
    assert_eq!(check_header(&v, 7), (cid, mid));
    assert_eq!(kvs(&v), vec![("foo".into(), "bar2".into(), 2, 3, 2, 0)]);
    assert_eq!((int(&v, "count"), v.get("more").and_then(Value::as_bool).unwrap_or(false)), (1, false));

    step!("get --prefix p/");
    let v = ctl.json(&["get", "--prefix", "p/"]);
    check_header(&v, 7);
    assert_eq!(
        kvs(&v),
        vec![
            ("p/1".into(), "val-p/1".into(), 4, 4, 1, 0),
            ("p/2".into(), "val-p/2".into(), 5, 5, 1, 0),
            ("p/3".into(), "val-p/3".into(), 6, 6, 1, 0),
        ]
    );
    assert_eq!(int(&v, "count"), 3);
    step!("get --prefix p/ --limit 2: more, count 3");
    let v = ctl.json(&["get", "--prefix", "p/", "--limit", "2"]);
    assert_eq!((keys(&v), v["more"].as_bool(), int(&v, "count")), (vec!["p/1".into(), "p/2".into()], Some(true), 3));
    step!("get --prefix p/ --sort-by=MODIFY --order=DESCEND");
    let v = ctl.json(&["get", "--prefix", "p/", "--sort-by=MODIFY", "--order=DESCEND"]);
    assert_eq!(keys(&v), ["p/3", "p/2", "p/1"]);
    step!("get --prefix p/ --keys-only");
    let v = ctl.json(&["get", "--prefix", "p/", "--keys-only"]);
    assert_eq!(keys(&v), ["p/1", "p/2", "p/3"]);
    assert!(kvs(&v).iter().all(|k| k.1.is_empty()), "keys-only returned values: {v}");
    // etcdctl 3.4 has no --count-only (3.5 added it); count_only is covered by kv.rs and differential.rs.

    step!("get --from-key p/2");
    let v = ctl.json(&["get", "--from-key", "p/2"]);
    assert_eq!((keys(&v), int(&v, "count")), (vec!["p/2".into(), "p/3".into(), "q".into()], 3));
    step!("get --from-key '' (everything)");
    let v = ctl.json(&["get", "--from-key", ""]);
    assert_eq!(keys(&v), ["foo", "p/1", "p/2", "p/3", "q"]);

    step!("get foo --rev 2: the first value; the header still says 7");
    let v = ctl.json(&["get", "foo", "--rev", "2"]);
    assert_eq!(kvs(&v), vec![("foo".into(), "bar".into(), 2, 2, 1, 0)]);
    assert_eq!(int(&v, "header.revision"), 7, "a historical read reports the current revision: {v}");
    step!("get --prefix p/ --rev 5: p/1, p/2");
    assert_eq!(keys(&ctl.json(&["get", "--prefix", "p/", "--rev", "5"])), ["p/1", "p/2"]);
    step!("get foo --rev 99: future revision error");
    let o = ctl.run(&["get", "foo", "--rev", "99"], None);
    assert!(!o.ok && o.stderr.contains("etcdserver: mvcc: required revision is a future revision"), "{}", o.stderr);

    step!("del missing -> 0; del foo -> 1");
    assert_eq!(ctl.ok(&["del", "missing"]), "0\n");
    assert_eq!(ctl.ok(&["del", "foo"]), "1\n");
    step!("del --prefix p/ --prev-kv -w json");
    let v = ctl.json(&["del", "--prefix", "p/", "--prev-kv"]);
    check_header(&v, 9);
    assert_eq!(int(&v, "deleted"), 3);
    let prev: Vec<_> = v["prev_kvs"].as_array().expect("prev_kvs").iter().map(kv).collect();
    assert_eq!(
        prev.iter().map(|k| (k.0.as_str(), k.1.as_str())).collect::<Vec<_>>(),
        [("p/1", "val-p/1"), ("p/2", "val-p/2"), ("p/3", "val-p/3")]
    );
    assert_eq!(keys(&ctl.json(&["get", "--from-key", ""])), ["q"]);
}

/// Scenario: etcdctl txn (script on stdin: compares, blank line, success ops, blank line, failure ops) in JSON
/// and simple output, then compaction (logical and --physical) and reads at compacted revisions.
#[test]
fn etcdctl_txn_and_compaction() {
    let Some(ctl) = Ctl::start("etcdctl_txn_and_compaction") else {
        return;
    };

    step!("txn: mod(\"k\") = \"0\" -> put k v1 (create)");
    let v = ctl.txn("mod(\"k\") = \"0\"\n\nput k v1\n\nget k\n\n");
    check_header(&v, 2);
    assert_eq!(v["succeeded"].as_bool(), Some(true), "{v}");
    let r = &v["responses"].as_array().expect("responses")[0]["Response"]["ResponsePut"];
    assert_eq!(int(r, "header.revision"), 2, "{v}");

    step!("same txn again: compare fails, the failure branch's get returns k");
    let v = ctl.txn("mod(\"k\") = \"0\"\n\nput k v1\n\nget k\n\n");
    check_header(&v, 2);
    assert!(!v["succeeded"].as_bool().unwrap_or(false), "{v}");
    let r = &v["responses"][0]["Response"]["ResponseRange"];
    assert_eq!(kvs(r), vec![("k".into(), "v1".into(), 2, 2, 1, 0)]);
    assert_eq!(int(r, "count"), 1);

    step!("txn with value/version/create compares and several ops");
    let v = ctl.txn(
        "value(\"k\") = \"v1\"\nver(\"k\") = \"1\"\ncreate(\"k\") = \"2\"\n\nput k v2\nput j x\ndel nothing\nget k\n\nput k never\n\n",
    );
    check_header(&v, 3);
    assert_eq!(v["succeeded"].as_bool(), Some(true), "{v}");
    let rs = v["responses"].as_array().expect("responses");
    assert_eq!(rs.len(), 4, "{v}");
    assert_eq!(int(&rs[0]["Response"]["ResponsePut"], "header.revision"), 3);
    assert_eq!(int(&rs[2]["Response"]["ResponseDeleteRange"], "deleted"), 0);
    assert_eq!(kvs(&rs[3]["Response"]["ResponseRange"]), vec![("k".into(), "v2".into(), 2, 3, 2, 0)]);

    step!("txn simple output");
    let o = ctl.run(&["txn"], Some("value(\"k\") = \"nope\"\n\nput k x\n\nget k\n\n"));
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout, "FAILURE\n\nk\nv2\n");

    step!("compaction 2 (logical)");
    assert_eq!(ctl.ok(&["compaction", "2"]), "compacted revision 2\n");
    step!("get k --rev 1: compacted");
    let o = ctl.run(&["get", "k", "--rev", "1"], None);
    assert!(!o.ok && o.stderr.contains("etcdserver: mvcc: required revision has been compacted"), "{}", o.stderr);
    assert_eq!(kvs(&ctl.json(&["get", "k", "--rev", "2"])), vec![("k".into(), "v1".into(), 2, 2, 1, 0)]);
    step!("compaction 3 --physical");
    assert_eq!(ctl.ok(&["compaction", "3", "--physical"]), "compacted revision 3\n");
    let o = ctl.run(&["get", "k", "--rev", "2"], None);
    assert!(!o.ok && o.stderr.contains("required revision has been compacted"), "{}", o.stderr);
    step!("compaction 2 again: compacted; compaction 99: future");
    let o = ctl.run(&["compaction", "2"], None);
    assert!(!o.ok && o.stderr.contains("etcdserver: mvcc: required revision has been compacted"), "{}", o.stderr);
    let o = ctl.run(&["compaction", "99"], None);
    assert!(!o.ok && o.stderr.contains("etcdserver: mvcc: required revision is a future revision"), "{}", o.stderr);
    step!("data intact");
    let v = ctl.json(&["get", "--from-key", ""]);
    check_header(&v, 3);
    assert_eq!(kvs(&v), vec![("j".into(), "x".into(), 3, 3, 1, 0), ("k".into(), "v2".into(), 2, 3, 2, 0)]);
}

/// Scenario: etcdctl endpoint status / endpoint health / member list against raftcd: the member is its own
/// leader, reports an etcd >= 3.5.13 version and sane raft indexes; member list shows its name and URLs.
#[test]
fn etcdctl_endpoint_status_and_member_list() {
    let Some(ctl) = Ctl::start("etcdctl_endpoint_status_and_member_list") else {
        return;
    };
    ctl.ok(&["put", "a", "1"]);

    step!("endpoint status -w json");
    let v = ctl.json(&["endpoint", "status"]);
    let arr = v.as_array().expect("endpoint status prints an array");
    assert_eq!(arr.len(), 1, "{v}");
    assert_eq!(arr[0]["Endpoint"].as_str(), Some(ctl.p.endpoint().as_str()));
    let st = &arr[0]["Status"];
    let (_cid, mid) = check_header(st, 2);
    let version = st["version"].as_str().expect("version");
    let parts: Vec<u64> = version.split(['.', '-']).take(3).map(|p| p.parse().expect("numeric version")).collect();
    assert!(parts.len() == 3 && (parts[0], parts[1], parts[2]) >= (3, 5, 13), "version {version} < 3.5.13");
    assert_eq!(int(st, "leader"), mid, "leader is this member: {st}");
    assert!(int(st, "raftIndex") > 0 && int(st, "raftAppliedIndex") > 0 && int(st, "raftTerm") > 0, "{st}");
    assert!(int(st, "raftAppliedIndex") <= int(st, "raftIndex"), "{st}");
    assert!(int(st, "dbSize") > 0, "{st}");
    assert!(st.get("errors").is_none_or(|e| e.as_array().is_none_or(|a| a.is_empty())), "{st}");
    assert!(!st["isLearner"].as_bool().unwrap_or(false));

    step!("endpoint status (table) mentions the endpoint and the version");
    let out = ctl.ok(&["endpoint", "status"]);
    assert!(out.contains(&ctl.p.endpoint()) && out.contains(version), "{out}");

    step!("endpoint health");
    let o = ctl.run(&["endpoint", "health"], None);
    assert!(o.ok, "{}", o.stderr);
    assert!(format!("{}{}", o.stdout, o.stderr).contains("is healthy"), "{}{}", o.stdout, o.stderr);

    step!("member list -w json");
    let v = ctl.json(&["member", "list"]);
    let (_, hmid) = (int(&v, "header.cluster_id"), int(&v, "header.member_id"));
    assert_eq!(hmid, mid);
    let members = v["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{v}");
    let m = &members[0];
    assert_eq!(int(m, "ID"), mid);
    assert_eq!(m["name"].as_str(), Some(ctl.p.member.name.as_str()));
    assert_eq!(m["peerURLs"], serde_json::json!([ctl.p.member.peer_url()]));
    assert_eq!(m["clientURLs"], serde_json::json!([ctl.p.member.client_url()]));
    assert!(!m["isLearner"].as_bool().unwrap_or(false));
    step!("member list (simple): id, started, name, peer and client URLs");
    let out = ctl.ok(&["member", "list"]);
    let want = format!(
        "{mid:x}, started, {}, {}, {}, false\n",
        ctl.p.member.name,
        ctl.p.member.peer_url(),
        ctl.p.member.client_url()
    );
    assert_eq!(out, want);
}
