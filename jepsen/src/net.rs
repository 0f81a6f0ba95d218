//! The test network: one network namespace per member, each with a veth pair into a bridge in the root
//! namespace, so members have their own addresses and partitions are plain iptables DROP rules inside the
//! members' namespaces (nothing is changed in the root namespace's firewall).
//!
//! ```text
//!  root namespace: rjbr<S> 10.77.<S>.1/24 ── clients connect from here
//!     ├── rj<S>v0 ══ eth0 10.77.<S>.11  (namespace rj<S>n0: member n1)
//!     ├── rj<S>v1 ══ eth0 10.77.<S>.12  (namespace rj<S>n1: member n2)
//!     └── ...
//! ```
//!
//! `S` is a *slot* (0..16) held with a file lock, so concurrent harnesses on one machine never share names or
//! addresses; whatever a crashed holder of the slot left behind is removed when the slot is taken. Before any
//! traffic, [`Net::verify_routes`] checks with `ip route get` that every member address routes through the
//! slot's bridge: test traffic never leaves the machine. Everything is removed by [`Net::teardown`] (also on
//! drop and, through [`crate::cluster::cleanup_registered`], on Ctrl-C).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// Number of slots (bridges rjbr0..rjbr15).
const SLOTS: u32 = 16;

/// Runs a command, returning its stdout; an error names the command and carries its stderr.
pub fn run_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when running as root.
pub fn is_root() -> bool {
    run_cmd(&["id", "-u"]).map(|s| s.trim() == "0").unwrap_or(false)
}

/// The names of one slot's devices and namespaces.
#[derive(Debug, Clone)]
pub struct SlotNames {
    pub slot: u32,
    pub members: usize,
}

impl SlotNames {
    /// The bridge, e.g. "rjbr0".
    pub fn bridge(&self) -> String {
        format!("rjbr{}", self.slot)
    }
    /// Member i's namespace, e.g. "rj0n1".
    pub fn ns(&self, i: usize) -> String {
        format!("rj{}n{i}", self.slot)
    }
    /// Member i's host-side veth.
    pub fn veth(&self, i: usize) -> String {
        format!("rj{}v{i}", self.slot)
    }
    /// Member i's peer-side veth before it moves into the namespace.
    fn veth_peer(&self, i: usize) -> String {
        format!("rj{}p{i}", self.slot)
    }
    /// The bridge's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.slot as u8, 1)
    }
    /// Member i's address.
    pub fn member_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.slot as u8, 11 + i as u8)
    }

    /// Removes everything of this slot (errors ignored: most of it usually does not exist). Also used for
    /// what a crashed run left behind.
    pub fn remove_all(&self) {
        // Up to 8 members (more than any run uses), in case a previous holder ran a bigger cluster.
        for i in 0..self.members.max(8) {
            let _ = run_cmd(&["ip", "netns", "del", &self.ns(i)]);
            let _ = run_cmd(&["ip", "link", "del", &self.veth(i)]);
        }
        let _ = run_cmd(&["ip", "link", "del", &self.bridge()]);
    }
}

/// The namespaces, veths and bridge of one run. Removed on drop.
pub struct Net {
    pub names: SlotNames,
    _lock: File,
    up: bool,
    /// iptables works inside the namespaces (partitions possible).
    pub iptables: bool,
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("raftcd-jepsen")
}

impl Net {
    /// Takes a free slot and builds the network for `members` members. Fails when not root or when `ip netns`
    /// does not work (the caller then falls back to loopback members).
    pub fn setup(members: usize) -> Result<Net> {
        if !is_root() {
            bail!("not root: network namespaces need root");
        }
        run_cmd(&["ip", "netns", "list"]).context("ip netns is not available")?;
        std::fs::create_dir_all(lock_dir())?;
        for slot in 0..SLOTS {
            let path = lock_dir().join(format!("slot{slot}.lock"));
            let f = File::options().create(true).truncate(false).write(true).open(&path)?;
            if f.try_lock().is_err() {
                continue;
            }
            let names = SlotNames { slot, members };
            if let Some(why) = slot_conflict(&names) {
                eprintln!("raftcd-jepsen: skipping network slot {slot}: {why}");
                continue;
            }
            // We hold the slot: whatever is left of it is from a crashed run.
            names.remove_all();
            let mut net = Net { names, _lock: f, up: true, iptables: false };
            crate::cluster::register_net(&net.names);
            if let Err(e) = net.build() {
                net.teardown();
                return Err(e);
            }
            net.iptables = (0..members).all(|i| net.ns_cmd(i, &["iptables", "-L", "INPUT", "-n"]).is_ok());
            return Ok(net);
        }
        bail!("no free network slot (all {SLOTS} are locked or conflict with existing addresses)")
    }

    fn build(&self) -> Result<()> {
        let n = &self.names;
        let br = n.bridge();
        run_cmd(&["ip", "link", "add", &br, "type", "bridge"])?;
        run_cmd(&["ip", "addr", "add", &format!("{}/24", n.gateway()), "dev", &br])?;
        run_cmd(&["ip", "link", "set", &br, "up"])?;
        for i in 0..n.members {
            let (ns, v, p) = (n.ns(i), n.veth(i), n.veth_peer(i));
            run_cmd(&["ip", "netns", "add", &ns])?;
            run_cmd(&["ip", "link", "add", &v, "type", "veth", "peer", "name", &p])?;
            run_cmd(&["ip", "link", "set", &p, "netns", &ns])?;
            run_cmd(&["ip", "-n", &ns, "link", "set", &p, "name", "eth0"])?;
            run_cmd(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", n.member_ip(i)), "dev", "eth0"])?;
            run_cmd(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run_cmd(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run_cmd(&["ip", "link", "set", &v, "master", &br])?;
            run_cmd(&["ip", "link", "set", &v, "up"])?;
        }
        Ok(())
    }

    /// Checks that every member address routes through this run's bridge (from the root namespace) and that
    /// each namespace routes the other members through its own eth0. Nothing may be sent before this passes.
    pub fn verify_routes(&self) -> Result<()> {
        let br = self.names.bridge();
        for i in 0..self.names.members {
            let ip = self.names.member_ip(i).to_string();
            let out = run_cmd(&["ip", "route", "get", &ip])?;
            if !out.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["dev", br.as_str()]) {
                bail!("member address {ip} does not route via the test bridge {br}: `ip route get {ip}` = {out:?}");
            }
            for j in 0..self.names.members {
                let peer = self.names.member_ip(j).to_string();
                let out = self.ns_cmd(i, &["ip", "route", "get", &peer])?;
                if !out.contains("dev eth0") && !out.contains("dev lo") {
                    bail!("in {}, {peer} does not route via eth0: {out:?}", self.names.ns(i));
                }
            }
        }
        Ok(())
    }

    /// Runs a command inside member i's namespace.
    pub fn ns_cmd(&self, i: usize, args: &[&str]) -> Result<String> {
        let ns = self.names.ns(i);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run_cmd(&full)
    }

    /// Installs a partition: `grudge[i]` lists the members whose packets member i drops. Replaces any
    /// previous partition.
    pub fn partition(&self, grudge: &[Vec<usize>]) -> Result<()> {
        if !self.iptables {
            bail!("iptables does not work inside the namespaces");
        }
        self.heal()?;
        for (i, drops) in grudge.iter().enumerate() {
            for j in drops {
                let src = self.names.member_ip(*j).to_string();
                self.ns_cmd(i, &["iptables", "-A", "INPUT", "-s", &src, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<()> {
        if !self.iptables {
            return Ok(());
        }
        let mut err = None;
        for i in 0..self.names.members {
            if let Err(e) = self.ns_cmd(i, &["iptables", "-F", "INPUT"]) {
                err = Some(e);
            }
        }
        err.map_or(Ok(()), Err)
    }

    /// Removes namespaces, veths and the bridge (idempotent).
    pub fn teardown(&mut self) {
        if !self.up {
            return;
        }
        self.up = false;
        self.names.remove_all();
        crate::cluster::unregister_net(self.names.slot);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Why a slot cannot be used: its devices exist with live processes in its namespaces, or its subnet is
/// already routed elsewhere on this machine.
fn slot_conflict(n: &SlotNames) -> Option<String> {
    for i in 0..n.members.max(8) {
        if let Ok(pids) = run_cmd(&["ip", "netns", "pids", &n.ns(i)]) {
            if !pids.trim().is_empty() {
                return Some(format!("namespace {} still has processes ({})", n.ns(i), pids.trim().replace('\n', " ")));
            }
        }
    }
    let probe = n.member_ip(0).to_string();
    match run_cmd(&["ip", "route", "get", &probe]) {
        Ok(out) if out.contains(&format!("dev {}", n.bridge())) => None,
        Ok(out) => {
            let routes = run_cmd(&["ip", "-o", "route", "show"]).unwrap_or_default();
            let subnet = format!("10.77.{}.", n.slot);
            if routes.lines().any(|l| l.contains(&subnet) && !l.contains(&n.bridge())) {
                Some(format!("subnet {subnet}0/24 is already in use: {}", out.trim()))
            } else {
                None
            }
        }
        Err(e) => Some(anyhow!("ip route get failed: {e}").to_string()),
    }
}
