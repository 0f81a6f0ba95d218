//! Debian etcdctl 3.4's member and endpoint commands against a cluster.

use super::*;

/// An integer field of etcdctl's JSON (absent = 0, as Go omits zero values).
#[track_caller]
fn int(v: &Value, field: &str) -> u64 {
    match &v[field] {
        Value::Null => 0,
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("{field} = {n} is not a u64")),
        other => panic!("{field} is not a number: {other} in {v}"),
    }
}

#[track_caller]
fn ctl_ok(eps: &[String], args: &[&str]) -> String {
    let o = blocking(|| etcdctl(eps, args));
    assert!(o.ok, "etcdctl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stdout
}

#[track_caller]
fn ctl_json(eps: &[String], args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    let out = ctl_ok(eps, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {all:?} printed invalid JSON ({e}): {out}"))
}

/// `endpoint status --cluster -w json` through the first endpoint; it must list exactly `client_urls`. When it
/// fails, that goes to `problems` and the statuses are taken from `endpoint status -w json` over `eps` (all
/// members' host:port) instead, so the checks on their content still run.
fn cluster_endpoint_status(eps: &[String], client_urls: &[String], problems: &mut Vec<String>) -> Value {
    let o = blocking(|| etcdctl(&eps[..1], &["endpoint", "status", "--cluster", "-w", "json"]));
    let (v, mut want) = if o.ok {
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", o.stdout));
        (v, client_urls.to_vec())
    } else {
        let first = o.stderr.lines().find(|l| l.starts_with("Failed") || l.starts_with("Error")).unwrap_or(&o.stderr);
        problems.push(format!("etcdctl endpoint status --cluster failed: {first}"));
        (ctl_json(eps, &["endpoint", "status"]), eps.to_vec())
    };
    let arr = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let mut endpoints: Vec<&str> = arr.iter().map(|e| e["Endpoint"].as_str().expect("Endpoint")).collect();
    endpoints.sort();
    want.sort();
    assert_eq!(endpoints, want, "{v}");
    v
}

/// `member list -w json` as id -> (name, peer URLs, client URLs, is learner).
fn ctl_members(eps: &[String]) -> BTreeMap<u64, (String, Vec<String>, Vec<String>, bool)> {
    let v = ctl_json(eps, &["member", "list"]);
    let urls = |m: &Value, f: &str| -> Vec<String> {
        m[f].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {v}"))
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or("").to_string();
            (
                int(m, "ID"),
                (name, urls(m, "peerURLs"), urls(m, "clientURLs"), m["isLearner"].as_bool().unwrap_or(false)),
            )
        })
        .collect()
}

/// Scenario: Debian etcdctl 3.4 against a 3-member cluster. `member list -w json` shows the three members with
/// their ids (as Status reports them), names and URLs. `endpoint status --cluster -w json` discovers all three
/// client URLs and shows one agreed leader, one term, and exactly one member that is the leader.
/// `member add m4 --learner` prints the ETCD_* environment for the new member; m4 starts from exactly that
/// ETCD_INITIAL_CLUSTER with `--initial-cluster-state existing`; `member promote` is retried until m4 is in
/// sync; `member remove` then removes it and its process exits; the list is back to three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_member_commands_and_cluster_endpoint_status() {
    let _serial = SERIAL.lock().await;
    if etcdctl_path().is_none_or(|p| !p.exists()) {
        assert!(skip_allowed(), "etcdctl not found (install etcd-client, or set RAFTCD_ALLOW_SKIP=1 to skip)");
        eprintln!("skipped: etcdctl not found and RAFTCD_ALLOW_SKIP=1");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members");
    let cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    ctl_ok(&eps, &["put", "ctl/a", "1"]);

    step!("member list -w json");
    let v = ctl_json(&eps, &["member", "list"]);
    let cluster_id = int(&v["header"], "cluster_id");
    assert!(cluster_id != 0, "{v}");
    let members = ctl_members(&eps);
    assert_eq!(members.len(), 3, "{members:?}");
    for (m, p) in cluster.members.iter().enumerate() {
        let got =
            members.get(&ids[m]).unwrap_or_else(|| panic!("{} ({:x}) not listed: {members:?}", p.member.name, ids[m]));
        assert_eq!(got, &(p.member.name.clone(), vec![p.member.peer_url()], vec![p.member.client_url()], false));
    }

    step!("endpoint status --cluster -w json");
    let mut problems = Vec::new();
    let urls: Vec<String> = cluster.members.iter().map(|p| p.member.client_url()).collect();
    let v = cluster_endpoint_status(&eps, &urls, &mut problems);
    let arr = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let mut leaders_self = 0;
    let mut terms = HashSet::new();
    for e in arr {
        let st = &e["Status"];
        assert_eq!(int(&st["header"], "cluster_id"), cluster_id, "{e}");
        let mid = int(&st["header"], "member_id");
        assert!(ids.contains(&mid), "{e}");
        assert_eq!(int(st, "leader"), leader, "{e}");
        assert!(int(st, "raftIndex") > 0 && int(st, "raftAppliedIndex") > 0, "{e}");
        terms.insert(int(st, "raftTerm"));
        leaders_self += usize::from(mid == leader);
        assert!(!st["isLearner"].as_bool().unwrap_or(false), "{e}");
    }
    assert_eq!(leaders_self, 1, "exactly one endpoint must be the leader: {v}");
    assert_eq!(terms.len(), 1, "members disagree on the term: {v}");

    step!("member add m4 --learner");
    let m4 = Member::new(dir.path(), "m4");
    let out = ctl_ok(&eps, &["member", "add", "m4", &format!("--peer-urls={}", m4.peer_url()), "--learner"]);
    let first = out.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert!(words.len() == 6 && words[0] == "Member" && words[2..5] == ["added", "to", "cluster"], "{out}");
    let m4_id = u64::from_str_radix(words[1], 16).unwrap_or_else(|_| panic!("member id in {first:?}"));
    assert_eq!(u64::from_str_radix(words[5], 16).ok(), Some(cluster_id), "{out}");
    let env: BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
    assert_eq!(env.get("ETCD_NAME"), Some(&"m4"), "{out}");
    assert_eq!(env.get("ETCD_INITIAL_CLUSTER_STATE"), Some(&"existing"), "{out}");
    assert_eq!(env.get("ETCD_INITIAL_ADVERTISE_PEER_URLS").copied(), Some(m4.peer_url().as_str()), "{out}");
    let initial = env.get("ETCD_INITIAL_CLUSTER").copied().unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER: {out}"));
    let mut parts: Vec<&str> = initial.split(',').collect();
    parts.sort();
    let mut want: Vec<String> = cluster.members.iter().map(|p| p.member.initial_cluster_entry()).collect();
    want.push(m4.initial_cluster_entry());
    want.sort();
    assert_eq!(parts, want, "ETCD_INITIAL_CLUSTER");
    let listed = ctl_members(&eps);
    assert_eq!(listed.get(&m4_id).map(|m| (m.1.clone(), m.3)), Some((vec![m4.peer_url()], true)), "{listed:?}");

    step!("start m4 from the printed ETCD_INITIAL_CLUSTER: Status says it is a learner");
    let mut m4 = blocking(|| RaftcdProcess::start_joining(m4, initial, FAST));
    if !learner_flag_becomes(&m4.endpoint(), true).await {
        problems.push("Status of the started learner m4 (caught up from log entries) says isLearner=false".into());
    }
    step!("restart the learner m4 (no snapshot involved): still a learner");
    blocking(|| m4.restart());
    if !learner_flag_becomes(&m4.endpoint(), true).await {
        problems.push("Status of the restarted learner m4 (caught up from log entries) says isLearner=false".into());
    }
    step!("member promote, retried until m4 is in sync");
    let hex = format!("{m4_id:x}");
    let start = Instant::now();
    let promoted: EtcdctlOut = loop {
        let o = blocking(|| etcdctl(&eps, &["member", "promote", &hex]));
        if o.ok {
            break o;
        }
        assert!(o.stderr.contains(LEARNER_NOT_READY), "member promote failed: {}{}", o.stdout, o.stderr);
        assert!(start.elapsed() < Duration::from_secs(30), "m4 never became promotable; log:\n{}", m4.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let words: Vec<&str> = promoted.stdout.split_whitespace().collect();
    assert_eq!(words.get(..3), Some(&["Member", hex.as_str(), "promoted"][..]), "{}", promoted.stdout);
    // m4 publishes its name and client URLs through raft on its own schedule (as etcd's members do), so
    // a promotion can be applied before them: wait for both.
    let want = Some(("m4".into(), vec![m4.member.peer_url()], vec![m4.member.client_url()], false));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = blocking(|| ctl_members(&eps));
        if listed.get(&m4_id).cloned() == want {
            break;
        }
        assert!(Instant::now() < deadline, "m4 never listed as a started voter: {listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_eps: Vec<String> = eps.iter().cloned().chain([m4.endpoint()]).collect();
    let urls: Vec<String> = urls.into_iter().chain([m4.member.client_url()]).collect();
    // The promotion is acknowledged once the leader applied it; m4 reports it once m4 has applied it too.
    assert!(learner_flag_becomes(&m4.endpoint(), false).await, "m4 still reports isLearner after promotion");
    let v = cluster_endpoint_status(&all_eps, &urls, &mut problems);
    let voters =
        v.as_array().map(|a| a.iter().filter(|e| !e["Status"]["isLearner"].as_bool().unwrap_or(false)).count());
    assert_eq!(voters, Some(4), "{v}");

    step!("member remove m4: its process exits");
    let out = ctl_ok(&eps, &["member", "remove", &hex]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.get(..3), Some(&["Member", hex.as_str(), "removed"][..]), "{out}");
    let exit = blocking(|| m4.wait_exit(Duration::from_secs(15)));
    assert!(exit.is_some(), "removed m4 still runs; log:\n{}", m4.log());
    let listed = ctl_members(&eps);
    assert_eq!(listed.keys().copied().collect::<HashSet<_>>(), ids.iter().copied().collect(), "{listed:?}");
    assert!(problems.is_empty(), "{problems:#?}");
}
