//! A test network of Linux network namespaces: one namespace per node, each with its own IPv4
//! address on a bridge in the root namespace, and nftables rules and `tbf` rate limits that cut,
//! heal and slow the links between them. The partition tests run `chainmesh node` processes in
//! these namespaces (`ip netns exec NS chainmesh node ...`, [`NetNs::wrap`]).
//!
//! ```text
//!   root namespace: bridge cmb<run>, address .1 (the test process talks to every node)
//!      |            |            |
//!    veth         veth         veth          (host ends cmv<run>_<k>)
//!      |            |            |
//!   ns cm<run>n0  ns cm<run>n1  ...          (eth0 .2, .3, ...; table inet chainmesh_test)
//! ```
//!
//! Names carry the test process's PID and a per-process counter, so parallel test binaries and
//! parallel tests in one binary never share a namespace, a link or a subnet; a new network
//! first removes what a dead process of an earlier run left behind. Everything is removed on
//! drop, also when the test panics.
//!
//! **Cuts are stateless drops at the receiver's input hook.** [`cut`](NetNs::cut) drops every
//! packet between two nodes, both ways. [`cut_one_way(from, to)`](NetNs::cut_one_way) drops
//! every packet from `from` arriving at `to`: `to` still reaches `from`, but no TCP connection
//! works either way (the handshake of one `to` opens needs `from`'s SYN-ACK), and an
//! established session goes silent in one direction only, which only `to` can notice. That is
//! the case worth testing: a half-broken link the nodes must detect and route around.
//! [`block_dial(from, to)`](NetNs::block_dial) is the milder asymmetry, a firewall or NAT:
//! `from` cannot open a connection to `to` (its SYNs are dropped) while `to` can still open one
//! to `from`, and packets of established connections pass.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `tc`; [`NetNs::new`] says which is missing
//! with [`NetNsError::Unavailable`], and [`NetNs::or_skip`] turns that into a "skipped: ..."
//! line for tests that then pass.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// Largest network: the addresses of a /24 after the bridge's, and one hex digit per link name.
const MAX_NODES: usize = 16;
/// Whether a change puts an address into a set or takes it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Delete,
}

/// The nftables table made in every namespace.
const TABLE: &str = "chainmesh_test";
/// Second octets tried for the 10.x.y.0/24 subnet of a network.
const OCTET2: std::ops::Range<u32> = 160..224;

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// Why a namespace network could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetNsError {
    /// This machine or user cannot make namespaces (not root, a tool missing, no
    /// permission): tests skip.
    #[error("network namespaces unavailable: {0}")]
    Unavailable(String),
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr (or why it did not run).
        stderr: String,
    },
    /// A node index or a network size out of range.
    #[error("{0}")]
    Invalid(String),
    /// No free 10.x.y.0/24 subnet was found.
    #[error("no free 10.x.y.0/24 subnet for the test bridge")]
    NoSubnet,
}

/// A network of namespaces; see the [module documentation](self).
#[derive(Debug)]
pub struct NetNs {
    run: String,
    bridge: String,
    subnet: [u8; 3],
    nodes: usize,
    /// The nodes whose link is rate limited now.
    slowed: Mutex<BTreeSet<usize>>,
}

impl NetNs {
    /// Builds a network of `n` namespaces, each reachable from the test process at
    /// [`addr(i)`](Self::addr), with no cuts.
    pub fn new(n: usize) -> Result<NetNs, NetNsError> {
        if n == 0 || n > MAX_NODES {
            return Err(NetNsError::Invalid(format!(
                "a namespace network has 1 to {MAX_NODES} nodes, not {n}"
            )));
        }
        let pid = std::process::id();
        let seq = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let run = format!("{pid}x{seq}");
        check_available(&run)?;
        sweep_dead_runs();
        let bridge = format!("cmb{run}");
        if bridge.len() > 15 || format!("cmv{run}_f").len() > 15 {
            return Err(NetNsError::Invalid(format!(
                "link names for run {run} exceed 15 bytes"
            )));
        }
        // The network exists (and is removed on drop) from the first link made.
        let mut net = NetNs {
            run,
            bridge,
            subnet: [10, 0, 0],
            nodes: 0,
            slowed: Mutex::new(BTreeSet::new()),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        net.subnet = claim_subnet(&net.bridge, pid, seq)?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            net.add_node(i)?;
            net.nodes = i + 1;
        }
        Ok(net)
    }

    /// [`new`](Self::new), or `None` after printing `skipped: <why>` when this machine cannot
    /// make namespaces; any other failure panics (the caller is a test).
    ///
    /// # Panics
    /// When namespaces are available but the network cannot be built.
    pub fn or_skip(n: usize) -> Option<NetNs> {
        match NetNs::new(n) {
            Ok(net) => Some(net),
            Err(NetNsError::Unavailable(why)) => {
                eprintln!("skipped: {why}");
                None
            }
            Err(e) => panic!("building a namespace network: {e}"),
        }
    }

    fn add_node(&self, i: usize) -> Result<(), NetNsError> {
        let ns = self.ns(i);
        let host = self.host_link(i);
        let addr = format!("{}/24", self.addr(i));
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &host, "master", &self.bridge, "up"])?;
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // `cut` holds addresses whose every packet is dropped, `nodial` those whose new TCP
        // connections are (a SYN without ACK); replies to this node's own connections pass.
        let rules = format!(
            "table inet {TABLE} {{\n\
             \tset cut {{ type ipv4_addr; }}\n\
             \tset nodial {{ type ipv4_addr; }}\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority 0; policy accept;\n\
             \t\tip saddr @cut drop\n\
             \t\tip saddr @nodial tcp flags & (syn | ack) == syn drop\n\
             \t}}\n\
             }}\n"
        );
        run_stdin(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], &rules)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Whether the network has no nodes (never, once built).
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// Node `i`'s namespace name.
    pub fn ns(&self, i: usize) -> String {
        format!("cm{}n{i:x}", self.run)
    }

    /// Node `i`'s address, inside its namespace and on the bridge.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        // At most MAX_NODES, so the last octet stays below 20.
        Ipv4Addr::new(a, b, c, 2 + i as u8)
    }

    /// The root namespace's address on the bridge, from which the test process reaches the
    /// nodes.
    pub fn host_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The command prefix that runs a program in node `i`'s namespace:
    /// `ip netns exec <ns>`.
    pub fn wrap(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(i)]
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), NetNsError> {
        self.split(&[a], &[b])
    }

    /// Drops every packet from `from` arriving at `to`: `to`'s packets still reach `from`.
    pub fn cut_one_way(&self, from: usize, to: usize) -> Result<(), NetNsError> {
        self.change(&[(Op::Add, "cut", from, to)])
    }

    /// Drops the connection attempts (SYNs) of `from` to `to`; `to` can still connect to
    /// `from`, and established connections are untouched.
    pub fn block_dial(&self, from: usize, to: usize) -> Result<(), NetNsError> {
        self.change(&[(Op::Add, "nodial", from, to)])
    }

    /// Removes every cut and dial block between `a` and `b`, both ways.
    pub fn heal(&self, a: usize, b: usize) -> Result<(), NetNsError> {
        self.remove(&["cut", "nodial"], a, b)
    }

    /// Removes the cuts between `a` and `b`, both ways, and keeps their dial blocks: with
    /// [`block_dial`](Self::block_dial) first, the link comes back one-way dialable with no
    /// moment in which both sides could dial.
    pub fn uncut(&self, a: usize, b: usize) -> Result<(), NetNsError> {
        self.remove(&["cut"], a, b)
    }

    fn remove(&self, sets: &[&str], a: usize, b: usize) -> Result<(), NetNsError> {
        let mut changes = Vec::new();
        for &set in sets {
            changes.push((Op::Delete, set, a, b));
            changes.push((Op::Delete, set, b, a));
        }
        self.change(&changes)
    }

    /// Removes every cut and dial block and every rate limit; the namespaces' rules change
    /// at the same time.
    pub fn heal_all(&self) -> Result<(), NetNsError> {
        let flush = format!("flush set inet {TABLE} cut\nflush set inet {TABLE} nodial\n");
        let scripts: BTreeMap<usize, String> =
            (0..self.nodes).map(|i| (i, flush.clone())).collect();
        self.run_scripts(&scripts)?;
        let slowed: Vec<usize> = self.slowed.lock().iter().copied().collect();
        slowed.into_iter().try_for_each(|i| self.unslow(i))
    }

    /// Cuts every link between a node of `side_a` and a node of `side_b`: one nftables
    /// transaction per namespace, all namespaces at the same time.
    pub fn split(&self, side_a: &[usize], side_b: &[usize]) -> Result<(), NetNsError> {
        let mut changes = Vec::new();
        for &a in side_a {
            for &b in side_b {
                changes.push((Op::Add, "cut", a, b));
                changes.push((Op::Add, "cut", b, a));
            }
        }
        self.change(&changes)
    }

    /// Limits node `i`'s link to `rate` (a `tc` rate such as `"256kbit"`) both ways, with a
    /// token bucket (`tbf`) on each end of its veth pair: everything `i` sends or receives,
    /// from any node, shares that rate.
    pub fn slow(&self, i: usize, rate: &str) -> Result<(), NetNsError> {
        self.check(i)?;
        let ns = self.ns(i);
        let host = self.host_link(i);
        // A burst of a few packets and room for ~half a second of queue: slow, not lossy.
        let tbf = [
            "root", "tbf", "rate", rate, "burst", "16kb", "latency", "500ms",
        ];
        let mut inside = vec!["-n", &ns, "qdisc", "replace", "dev", "eth0"];
        inside.extend(tbf);
        tc(&inside)?;
        let mut outside = vec!["qdisc", "replace", "dev", &host];
        outside.extend(tbf);
        tc(&outside)?;
        self.slowed.lock().insert(i);
        Ok(())
    }

    /// Removes node `i`'s rate limit.
    pub fn unslow(&self, i: usize) -> Result<(), NetNsError> {
        self.check(i)?;
        if self.slowed.lock().remove(&i) {
            let ns = self.ns(i);
            tc(&["-n", &ns, "qdisc", "del", "dev", "eth0", "root"])?;
            tc(&["qdisc", "del", "dev", &self.host_link(i), "root"])?;
        }
        Ok(())
    }

    /// Applies `(op, set, from, to)` changes: `from`'s address into or out of `set` of
    /// `to`'s namespace.
    fn change(&self, changes: &[(Op, &str, usize, usize)]) -> Result<(), NetNsError> {
        let mut scripts: BTreeMap<usize, String> = BTreeMap::new();
        for &(op, set, from, to) in changes {
            self.check(from)?;
            self.check(to)?;
            if from == to {
                return Err(NetNsError::Invalid(format!(
                    "node {from} cannot cut itself"
                )));
            }
            let element = format!("inet {TABLE} {set} {{ {} }}", self.addr(from));
            let script = scripts.entry(to).or_default();
            // Adding an element a set holds is a no-op, deleting one it lacks an error that
            // aborts the transaction: adding first makes a delete idempotent.
            script.push_str(&format!("add element {element}\n"));
            if op == Op::Delete {
                script.push_str(&format!("delete element {element}\n"));
            }
        }
        self.run_scripts(&scripts)
    }

    /// Runs an nftables script in each given namespace, all at once.
    fn run_scripts(&self, scripts: &BTreeMap<usize, String>) -> Result<(), NetNsError> {
        std::thread::scope(|scope| {
            let runs: Vec<_> = scripts
                .iter()
                .map(|(&i, script)| {
                    let ns = self.ns(i);
                    scope.spawn(move || {
                        run_stdin(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], script)
                    })
                })
                .collect();
            runs.into_iter().try_for_each(|run| {
                run.join()
                    .unwrap_or_else(|_| Err(NetNsError::Invalid("an nft runner panicked".into())))
            })
        })
    }

    fn check(&self, i: usize) -> Result<(), NetNsError> {
        if i < self.nodes {
            Ok(())
        } else {
            Err(NetNsError::Invalid(format!(
                "node {i} is not in this network of {}",
                self.nodes
            )))
        }
    }

    fn host_link(&self, i: usize) -> String {
        format!("cmv{}_{i:x}", self.run)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting a veth's host end deletes its namespace end; deleting a namespace removes
        // its rules. Processes still inside keep a namespace alive but unreachable: the
        // harness stops its nodes before the network is dropped.
        remove_run(&self.run);
    }
}

/// Removes every namespace and link of `run`, whatever exists of it.
fn remove_run(run: &str) {
    let links = Command::new("ip").args(["-o", "link", "show"]).output();
    if let Ok(out) = links {
        let host_prefix = format!("cmv{run}_");
        for name in link_names(&String::from_utf8_lossy(&out.stdout)) {
            if name.starts_with(&host_prefix) {
                let _ = ip(&["link", "del", &name]);
            }
        }
    }
    let ns_prefix = format!("cm{run}n");
    for ns in namespaces() {
        if ns.starts_with(&ns_prefix) {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
    let _ = ip(&["link", "del", &format!("cmb{run}")]);
}

/// Removes what test processes that no longer exist left behind (a test binary killed with
/// SIGKILL runs no destructor).
fn sweep_dead_runs() {
    let dead: BTreeSet<String> = namespaces()
        .into_iter()
        .filter_map(|ns| run_of(&ns))
        .filter(|run| {
            let pid = run.split('x').next().unwrap_or_default();
            !std::path::Path::new("/proc").join(pid).exists()
        })
        .collect();
    dead.iter().for_each(|run| remove_run(run));
}

/// The run part of a namespace name `cm<pid>x<seq>n<k>`, when it is one of ours.
fn run_of(ns: &str) -> Option<String> {
    let rest = ns.strip_prefix("cm")?;
    let (run, node) = rest.rsplit_once('n')?;
    let (pid, seq) = run.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(seq) && u8::from_str_radix(node, 16).is_ok()).then(|| run.to_owned())
}

fn namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Link names in `ip -o link show` output (`3: name@peer: <...`).
fn link_names(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// Gives `bridge` the first 10.x.y.1/24 (from a start drawn from the PID and counter) that no
/// route or address of the root namespace overlaps. Two networks of concurrent runs start
/// from different subnets; should they still meet, the second one's address add fails or its
/// check sees the first's route, and it moves on.
fn claim_subnet(bridge: &str, pid: u32, seq: u32) -> Result<[u8; 3], NetNsError> {
    let span = (OCTET2.end - OCTET2.start) * 256;
    let start = pid.wrapping_mul(64).wrapping_add(seq) % span;
    for k in 0..span.min(512) {
        let n = (start + k) % span;
        let subnet = [10, (OCTET2.start + n / 256) as u8, (n % 256) as u8];
        let prefix = format!("{}.{}.{}.", subnet[0], subnet[1], subnet[2]);
        let routes = routes_now();
        let taken = routes.lines().any(|r| {
            let dst = r.split_whitespace().next().unwrap_or_default();
            dst.starts_with(&prefix) || overlaps(dst, subnet)
        });
        if taken {
            continue;
        }
        if ip(&["addr", "add", &format!("{prefix}1/24"), "dev", bridge]).is_err() {
            continue;
        }
        // Another run may have claimed the same subnet between the check and the add.
        let dev = format!("dev {bridge} ");
        let shared = routes_now()
            .lines()
            .any(|r| r.starts_with(&prefix) && !r.contains(&dev));
        if !shared {
            return Ok(subnet);
        }
        let _ = ip(&["addr", "del", &format!("{prefix}1/24"), "dev", bridge]);
    }
    Err(NetNsError::NoSubnet)
}

/// The root namespace's IPv4 routes, every table.
fn routes_now() -> String {
    Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether a route destination (`default`, `a.b.c.d`, `a.b.c.d/len`) wider than a /24 covers
/// `subnet`. The default route does not count: it is what more specific routes override.
fn overlaps(dst: &str, subnet: [u8; 3]) -> bool {
    let (net, len) = match dst.split_once('/') {
        Some((net, len)) => (net, len.parse::<u32>().unwrap_or(32)),
        None => (dst, 32),
    };
    let Ok(net) = net.parse::<Ipv4Addr>() else {
        return false;
    };
    if len >= 24 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let ours = u32::from(Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 0));
    (u32::from(net) & mask) == (ours & mask)
}

/// Says what is missing for namespaces, or nothing.
fn check_available(run: &str) -> Result<(), NetNsError> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(NetNsError::Unavailable(format!(
            "needs root (effective uid {uid})"
        )));
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(NetNsError::Unavailable(format!(
                "`{tool}` not found (install {package})"
            )));
        }
    }
    // Root in a container may still lack CAP_SYS_ADMIN: try one, named for this network so
    // that networks built at the same time never race for the name.
    let probe = format!("cm{run}probe");
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            Ok(())
        }
        Err(e) => Err(NetNsError::Unavailable(format!(
            "`ip netns add` does not work here: {e}"
        ))),
    }
}

fn ip(args: &[&str]) -> Result<(), NetNsError> {
    let mut cmd = vec!["ip"];
    cmd.extend(args);
    run_stdin(&cmd, "")
}

fn tc(args: &[&str]) -> Result<(), NetNsError> {
    let mut cmd = vec!["tc"];
    cmd.extend(args);
    run_stdin(&cmd, "")
}

/// Runs `cmd` with `input` on its stdin; an error carries the command line and its stderr.
fn run_stdin(cmd: &[&str], input: &str) -> Result<(), NetNsError> {
    let failed = |stderr: String| NetNsError::Command {
        cmd: cmd.join(" "),
        stderr,
    };
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| failed("empty command".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_recognised_and_others_are_not() {
        assert_eq!(run_of("cm1234x0n0").as_deref(), Some("1234x0"));
        assert_eq!(run_of("cm1234x12nf").as_deref(), Some("1234x12"));
        assert_eq!(run_of("cm1234probe"), None);
        assert_eq!(run_of("cmother"), None);
        assert_eq!(run_of("blue"), None);
    }

    #[test]
    fn wider_routes_overlap_and_narrower_or_default_do_not() {
        assert!(overlaps("10.0.0.0/8", [10, 170, 3]));
        assert!(!overlaps("10.0.0.0/16", [10, 170, 3]));
        assert!(!overlaps("10.170.3.0/24", [10, 170, 3]));
        assert!(!overlaps("default", [10, 170, 3]));
        assert!(!overlaps("192.0.2.0/24", [10, 170, 3]));
    }

    #[test]
    fn link_names_drop_the_peer_suffix() {
        let out = "1: lo: <LOOPBACK> mtu 65536\n7: cmv1x0_0@if2: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(out), vec!["lo", "cmv1x0_0"]);
    }
}
