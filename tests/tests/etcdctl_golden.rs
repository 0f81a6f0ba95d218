//! Golden tests: `etcdctl-rs` against Debian's `etcdctl` 3.4.
//!
//! A script of commands runs through both tools; their stdout, stderr (log lines masked) and exit codes must
//! match byte for byte, or the step must name why not (`allow`).
//!
//! Two servers, A and B, start identically: same name and advertised peer URL (so the same member and cluster
//! ids) and no history. Every step runs `etcdctl` on A and `etcdctl-rs` on B, so both tools always see the same
//! server state, writes included. Read-only steps additionally run `etcdctl-rs` on A: the same server, the same
//! moment; steps whose output depends on backend internals (db size, KV hash over lease ids) run only so.
//! Masked before comparing: the client endpoint (ports differ), lease ids (time-based), durations
//! (`took`), log lines with timestamps, Go panic traces.
//!
//! The server under test: `GOLDEN_SERVER=etcd` (default, `/usr/bin/etcd`) or `raftcd` (`target/debug/raftcd`,
//! same flags). The `etcdctl-rs` binary: `ETCDCTL_RS_BIN`, default `target/debug/etcdctl-rs` (built if missing).

#[path = "../golden/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

fn txn_input() -> String {
    "mod(\"t1\") = \"0\"\nvalue(\"a\") != \"zz\"\n\nput t1 \"hello world\"\nget t1\ndel a\n\nget a\n\n".to_string()
}

fn script() -> Vec<Step> {
    let mut s = vec![
        ro("version"),
        step("put foo bar"),
        step("put foo bar2 --prev-kv"),
        step("put a 1"),
        step("put b 2 -w json"),
        step("put c 3 -w fields --prev-kv"),
        step("put c 4 -w fields --prev-kv"),
        ro("get foo"),
        ro("get foo -w json"),
        ro("get foo -w fields"),
        ro("get foo -w protobuf"),
        ro("get foo -w table"),
        ro("get foo -w yaml"),
        ro("get nokey -w json"),
        ro("get --prefix \"\""),
        ro("get a c"),
        ro("get --from-key b"),
        ro("get --prefix --keys-only --limit 2 a"),
        ro("get --prefix --print-value-only \"\""),
        ro("get foo --print-value-only -w json"),
        ro("get --prefix --sort-by=MODIFY --order=DESCEND \"\""),
        ro("get --prefix --sort-by=value \"\" -w json"),
        ro("get --prefix --order bogus a"),
        ro("get --rev 2 foo"),
        ro("get --rev 100 foo"),
        ro("get --hex foo"),
        ro("get"),
        ro("get --prefix --from-key a"),
        ro("get --consistency s foo"),
        ro("get --consistency x foo"),
        ro("get foo --bogus"),
        ro("get --limit abc foo"),
        Step { args: words("put stdin-key"), stdin: Some("value from stdin\n".into()), ..Default::default() },
        ro("get stdin-key -w json"),
        step("put -- dash -value"),
        ro("get dash"),
        step("put nokey --ignore-value"),
        step("put"),
        step("put k v --lease zz"),
        step("del a --prev-kv"),
        step("del a -w json"),
        step("del --prefix b --prev-kv -w fields"),
        step("del x y z"),
        Step { args: words("txn"), stdin: Some(txn_input()), ..Default::default() },
        Step { args: words("txn -w json"), stdin: Some(txn_input()), ..Default::default() },
        Step { args: words("txn -i -w fields"), stdin: Some(txn_input()), ..Default::default() },
        Step { args: words("txn"), stdin: Some("bogus(\"a\") = \"1\"\n\n\n\n".into()), ..Default::default() },
        Step { args: words("txn"), stdin: Some("mod(\"a\") = \"x\"\n\n\n\n".into()), ..Default::default() },
        Step { args: words("txn"), stdin: Some("\nfrob a\n\n\n".into()), ..Default::default() },
        Step { args: words("txn"), stdin: Some("\nput a".into()), ..Default::default() },
        Step { args: words("lease grant 100"), capture_lease: true, ..Default::default() },
        Step { args: words("lease grant 100 -w json"), capture_lease: true, ..Default::default() },
        step("put leased v --lease {LEASE}"),
        ro("lease timetolive {LEASE} --keys"),
        ro("lease timetolive {LEASE} -w json --keys"),
        ro("lease timetolive {LEASE} -w fields"),
        ro("lease list -w fields"),
        step("lease keep-alive --once {LEASE}"),
        step("lease keep-alive --once {LEASE} -w json"),
        Step {
            args: words("lease keep-alive {LEASE}"),
            kill_after: Some(Duration::from_millis(800)),
            ..Default::default()
        },
        step("lease revoke {LEASE}"),
        ro("lease timetolive {LEASE}"),
        step("lease keep-alive {LEASE}"),
        step("lease keep-alive --once {LEASE}"),
        step("lease revoke {LEASE}"),
        ro("lease grant abc"),
        ro("lease revoke xyz"),
        ro("member list"),
        ro("member list -w json"),
        ro("member list -w fields"),
        ro("member list -w table"),
        ro("member list -w protobuf"),
        ro("member remove"),
        ro("member add"),
        ro("member add n1 http://x"),
        same("endpoint status -w json"),
        same("endpoint status -w fields"),
        same("endpoint status -w table"),
        same("endpoint status"),
        same("endpoint hashkv"),
        same("endpoint hashkv -w json"),
        same("endpoint hashkv -w fields"),
        same("endpoint hashkv --cluster -w table"),
        ro("endpoint health"),
        ro("endpoint health -w json"),
        Step { collapse_table: true, ..ro("endpoint health -w table") },
        ro("alarm list"),
        ro("alarm list -w json"),
        step("alarm disarm"),
        ro("defrag"),
        ro("move-leader zz"),
        step("compaction 3"),
        ro("get --rev 2 foo"),
        ro("compaction abc"),
        Step { args: words("watch --rev 2 foo"), read_only: true, ..Default::default() },
        Step {
            args: words("watch --prefix --rev 4 c -w json"),
            kill_after: Some(Duration::from_millis(700)),
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("watch --prev-kv --rev 5 c -w fields"),
            kill_after: Some(Duration::from_millis(700)),
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("watch --rev 4 --prefix \"\""),
            kill_after: Some(Duration::from_millis(700)),
            read_only: true,
            ..Default::default()
        },
        Step {
            args: vec![
                "watch".into(),
                "--rev".into(),
                "4".into(),
                "c".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "echo exec $ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE".into(),
            ],
            kill_after: Some(Duration::from_millis(700)),
            read_only: true,
            ..Default::default()
        },
        Step { args: words("watch foo --"), read_only: true, ..Default::default() },
        Step {
            args: words("watch -i"),
            stdin: Some("watch --rev 4 c\nbogus\n".into()),
            kill_after: Some(Duration::from_millis(700)),
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("watch"),
            env: vec![("ETCDCTL_WATCH_RANGE_END".into(), "z".into())],
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("get foo -w json"),
            env: vec![("ETCDCTL_ENDPOINTS".into(), "{EP}".into())],
            no_endpoint_flag: true,
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("get foo"),
            env: vec![("ETCDCTL_WRITE_OUT".into(), "fields".into())],
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("get foo"),
            env: vec![("ETCDCTL_ENDPOINTS".into(), "{EP}".into())],
            read_only: true,
            ..Default::default()
        },
        Step {
            args: words("get foo"),
            env: vec![("ETCDCTL_BOGUS".into(), "1".into())],
            read_only: true,
            ..Default::default()
        },
        Step { no_endpoint_flag: true, ..ro("--endpoints 127.0.0.1:1 --command-timeout 1s get foo") },
        Step { no_endpoint_flag: true, ..ro("--endpoints 127.0.0.1:1 --command-timeout 1s put foo bar") },
        ro("--endpoints 127.0.0.1:1 get foo"),
        step("user add root --new-user-password rootpw"),
        step("user add alice:secret"),
        step("role add reader"),
        step("role grant-permission reader read foo"),
        step("role grant-permission reader readwrite --prefix pfx/"),
        step("role grant-permission reader write a z"),
        step("role grant-permission reader bogus a"),
        ro("role get reader"),
        ro("role get reader -w json"),
        ro("role get reader -w fields"),
        ro("role list"),
        ro("role list -w fields"),
        step("user grant-role alice reader"),
        ro("user get alice"),
        ro("user get alice --detail"),
        ro("user get alice -w json"),
        ro("user get alice -w fields"),
        ro("user list"),
        ro("user list -w json"),
        step("role revoke-permission reader foo"),
        step("role revoke-permission reader --prefix pfx/"),
        step("user revoke-role alice reader"),
        step("auth enable"),
        ro("get foo"),
        ro("--user root:rootpw get foo"),
        ro("--user alice --password wrong get foo"),
        ro("--user nobody:pw get foo"),
        // Prompted passwords with stdin not a terminal: the prompt, stty's complaints, a newline.
        Step { stdin: Some("rootpw\n".into()), ..ro("--user root get foo") },
        Step { stdin: Some("dpw\ndpw\n".into()), ..step("--user root:rootpw user add dave") },
        Step { stdin: Some("dpw\nother\n".into()), ..step("--user root:rootpw user passwd dave") },
        Step { stdin: Some("\n".into()), ..step("--user root:rootpw user add erin") },
        ro("--user alice:secret get foo"),
        ro("--user alice:secret user get alice"),
        ro("--user alice:secret user list"),
        Step {
            args: words("--user root:rootpw user passwd alice --interactive=false"),
            stdin: Some("newpw\n".into()),
            ..Default::default()
        },
        ro("--user alice:secret get foo"),
        ro("--user alice:newpw get foo"),
        step("--user alice:newpw auth disable"),
        step("--user root:rootpw user add carol --no-password"),
        ro("--user root:rootpw user get carol"),
        ro("--user root:rootpw role get root"),
        ro("--user root:rootpw user list"),
        step("--user root:rootpw user delete root"),
        step("--user root:rootpw role delete root"),
        step("--user root:rootpw auth disable"),
        step("user delete alice"),
        step("role delete reader"),
        step("user delete nobody"),
        step("snapshot save snap.db --command-timeout 10s"),
        ro("snapshot save"),
        ro("lease"),
        ro("memb list"),
        ro("bogus"),
        ro("get --help"),
        ro("lease --help"),
    ];
    // A snapshot file lands in the working directory: run that step in a temp dir (see golden_script).
    for st in &mut s {
        if st.args.first().map(|a| a.as_str()) == Some("snapshot") && st.args.len() > 2 {
            st.args[2] = "{SNAPDIR}/snap.db".into();
        }
    }
    s
}

/// The script against two fresh single-member real etcd servers: etcdctl-rs must print what etcdctl prints.
#[test]
fn golden_script_against_etcd() {
    golden_script(&std::path::PathBuf::from("/usr/bin/etcd"));
}

/// The same script against two fresh raftcd members: both tools must agree on raftcd too (and, since the
/// script is the same, raftcd answers the way etcd does wherever the outputs are compared).
#[test]
fn golden_script_against_raftcd() {
    golden_script(&harness::raftcd_bin());
}

fn golden_script(bin: &std::path::Path) {
    let a = Member::single_with(bin);
    let b = Member::single_with(bin);
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let steps = script();
    // Each tool writes its snapshot into its own directory; the printed path is masked.
    let mut snap_steps = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        if st.args.iter().any(|x| x.contains("{SNAPDIR}")) {
            snap_steps.push(i);
        }
    }
    let (failures, allowed) = run_script_with_snapdirs(&steps, &a, &b, dir_a.path(), dir_b.path());
    for al in &allowed {
        eprintln!("allowed difference: {al}");
    }
    for i in snap_steps {
        for d in [dir_a.path(), dir_b.path()] {
            let len = std::fs::metadata(d.join("snap.db")).map(|m| m.len()).unwrap_or(0);
            assert_eq!(len % 512, 32, "step {i}: snapshot size {len} in {}", d.display());
            assert!(!d.join("snap.db.part").exists());
        }
    }
    assert!(failures.is_empty(), "{} golden differences:\n\n{}", failures.len(), failures.join("\n\n"));
}

fn run_script_with_snapdirs(
    steps: &[Step],
    a: &Member,
    b: &Member,
    da: &Path,
    db: &Path,
) -> (Vec<String>, Vec<String>) {
    // {SNAPDIR} differs per tool: etcdctl writes under `da`, etcdctl-rs under `db`; both print masked paths.
    let expand = |st: &Step, d: &Path| -> Step {
        let mut st = st.clone();
        for a in &mut st.args {
            *a = a.replace("{SNAPDIR}", &d.display().to_string());
        }
        st
    };
    let mut failures = Vec::new();
    let mut allowed = Vec::new();
    // Steps are run one by one so that the snapshot directory can differ between the tools.
    let rs = etcdctl_rs();
    let go = PathBuf::from("/usr/bin/etcdctl");
    let mut va = Vars { endpoint: a.endpoint.clone(), ..Default::default() };
    let mut vb = Vars { endpoint: b.endpoint.clone(), ..Default::default() };
    for (i, s) in steps.iter().enumerate() {
        eprintln!("--- step {i}: {}", s.args.join(" "));
        let (sa, sb) = (expand(s, da), expand(s, db));
        let want = run(&go, &va, &sa);
        let got = run(&rs, &vb, &sb);
        if s.capture_lease {
            va.leases.extend(capture_lease(&want));
            vb.leases.extend(capture_lease(&got));
        }
        let unify = |o: Outcome| Outcome {
            stdout: o
                .stdout
                .replace(&da.display().to_string(), "<SNAPDIR>")
                .replace(&db.display().to_string(), "<SNAPDIR>"),
            stderr: o
                .stderr
                .replace(&da.display().to_string(), "<SNAPDIR>")
                .replace(&db.display().to_string(), "<SNAPDIR>"),
            code: o.code,
        };
        let mut compare = Vec::new();
        if !s.same_server_only {
            compare.push(("B", unify(masked(&va, &want)), unify(masked(&vb, &got))));
        }
        if s.read_only || s.same_server_only {
            let same_server = run(&rs, &va, &sa);
            compare.push(("A", unify(masked(&va, &want)), unify(masked(&va, &same_server))));
        }
        for (server, mut w, mut g) in compare {
            if s.collapse_table {
                w.stdout = collapse(&w.stdout);
                g.stdout = collapse(&g.stdout);
            }
            if w != g {
                let report = format!(
                    "step {i} `{}` (etcdctl-rs on {server}):\n--- etcdctl (code {})\nstdout:\n{}stderr:\n{}--- etcdctl-rs (code {})\nstdout:\n{}stderr:\n{}",
                    s.args.join(" "),
                    w.code,
                    w.stdout,
                    w.stderr,
                    g.code,
                    g.stdout,
                    g.stderr
                );
                match s.allow {
                    Some(why) => allowed.push(format!("{why}\n{report}")),
                    None => failures.push(report),
                }
            }
        }
    }
    (failures, allowed)
}

/// A 3-member etcd cluster with the first endpoint killed: get and put through etcdctl-rs with all three
/// endpoints still succeed, and a watch started before the kill resumes on a surviving member.
#[test]
fn failover_three_members() {
    let names = ["m0", "m1", "m2"];
    let peers: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let cluster: Vec<String> = names.iter().zip(&peers).map(|(n, p)| format!("{n}=http://127.0.0.1:{p}")).collect();
    let cluster = cluster.join(",");
    let mut members: Vec<Option<Member>> = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| Some(Member::start(n, *p, &format!("http://127.0.0.1:{p}"), &cluster)))
        .collect();
    for m in members.iter().flatten() {
        m.wait_ready(Duration::from_secs(30));
    }
    let eps: Vec<String> = members.iter().flatten().map(|m| m.endpoint.clone()).collect();
    let all = eps.join(",");
    let rs = etcdctl_rs();
    let tool = |args: &[&str]| {
        let out =
            Command::new(&rs).args(["--endpoints", &all, "--command-timeout", "5s"]).args(args).output().expect("run");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    assert_eq!(tool(&["put", "before", "1"]).0, "OK\n");

    // A watch through the same endpoint list: it is served by the first member, the one about to die.
    let mut watch = Command::new(&rs)
        .args(["--endpoints", &all, "watch", "--prefix", "w/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tool(&["put", "w/1", "a"]).0, "OK\n");

    members[0] = None; // kill -9 the first endpoint
                       // Give the survivors time to elect a leader if the dead member led.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &eps[1], "--command-timeout", "1s", "get", "x"])
            .output()
            .expect("etcdctl");
        if st.status.success() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let (out, err, code) = tool(&["put", "after", "2"]);
    assert_eq!((out.as_str(), code), ("OK\n", Some(0)), "put after failover: {err}");
    let (out, err, code) = tool(&["get", "--prefix", "after"]);
    assert_eq!((out.as_str(), code), ("after\n2\n", Some(0)), "get after failover: {err}");
    assert!(started.elapsed() < Duration::from_secs(8), "failover took {:?}", started.elapsed());
    assert_eq!(tool(&["put", "w/2", "b"]).0, "OK\n");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let w = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&w.stdout);
    assert_eq!(
        text,
        "PUT\nw/1\na\nPUT\nw/2\nb\n",
        "watch did not resume: stderr {}",
        String::from_utf8_lossy(&w.stderr)
    );
}

#[test]
fn masking_helpers() {
    assert_eq!(mask_durations("took = 2.466798ms, 1.5s 12 v1.2 811.2µs"), "took = <DUR>, <DUR> 12 v1.2 <DUR>");
    assert_eq!(
        mask_logs("2026-11-27 15:35:40.003198 W | pkg/flags: x\n{\"level\":\"warn\"}\nError: y\n"),
        "<TS> W | pkg/flags: x\nError: y\n"
    );
}
