//! Deploying across hosts: `init --hosts` bundles (a folder per host with nodes, inventory,
//! scripts and systemd units), a bundle run across network namespaces with their own
//! addresses, a node added later from the existing CA (`add-node`, `peers add`), and one
//! removed (`remove-node`) and blacklisted so that it cannot come back. The namespace test
//! needs root and iproute2/nftables (`chainmesh_testkit::netns`); elsewhere it prints
//! `skipped: ...`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chainmesh::config::Config;
use chainmesh::identity::Identity;
use chainmesh_testkit::netns::NetNs;
use common::{assert_ok, chainmesh, chainmesh_ok, Launch, NodeProcess, Signal};
use serde_json::Value;

/// Longest wait for a condition the test expects: the nodes' redial backoff reaches 10 s.
const WAIT: Duration = Duration::from_secs(90);

const BIN: &str = env!("CARGO_BIN_EXE_chainmesh");

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn inventory(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("nodes.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["nodes"].as_array().unwrap().clone()
}

fn node_dir(root: &Path, inv: &[Value], name: &str) -> PathBuf {
    let n = inv.iter().find(|n| n["name"] == name).unwrap();
    root.join(n["dir"].as_str().unwrap())
}

#[test]
fn init_hosts_writes_a_folder_per_host_with_inventory_scripts_and_units() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = chainmesh_ok([
        "init",
        "--hosts",
        "127.0.0.1:2,127.0.0.2:2",
        "--dir",
        p(&dir),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    let inv = inventory(&dir);
    assert_eq!(inv.len(), 4);
    for (k, n) in inv.iter().enumerate() {
        let name = format!("node{k}");
        let host = if k < 2 { "127.0.0.1" } else { "127.0.0.2" };
        assert_eq!(n["name"], name.as_str());
        assert_eq!(n["host"], host);
        assert_eq!(n["dir"], format!("{host}/{name}").as_str());
        let folder = dir.join(host);
        assert!(folder.join("start.sh").is_file() && folder.join("stop.sh").is_file());
        let unit =
            std::fs::read_to_string(folder.join(format!("chainmesh-{name}.service"))).unwrap();
        assert!(
            unit.contains(&format!("--config /opt/chainmesh/{name}/config.toml")),
            "{unit}"
        );
        assert_eq!(inventory(&folder), inv, "each host has the whole inventory");
        let cfg = Config::load(&dir.join(n["dir"].as_str().unwrap()).join("config.toml")).unwrap();
        assert_eq!(cfg.p2p.listen, n["p2p"].as_str().unwrap());
        assert_eq!(cfg.node.name, name);
        // Every other node, across hosts, is a peer.
        assert_eq!(cfg.p2p.peers.len(), 3);
        let id = Identity::load(
            &cfg.identity.ca_cert,
            &cfg.identity.node_cert,
            &cfg.identity.node_key,
        )
        .unwrap();
        assert_eq!(id.node_id.to_string(), n["node_id"].as_str().unwrap());
    }
    // Ports restart from the base on each host.
    assert_eq!(inv[2]["p2p"], "127.0.0.2:30300");
    // 127.0.0.2 is loopback too: the admin API listens there, on its own host only.
    assert_eq!(inv[3]["admin"], "127.0.0.2:31301");

    // The file form says the same.
    let file = tmp.path().join("hosts.txt");
    std::fs::write(&file, "# two orgs\n127.0.0.1 2\n127.0.0.2:2\n").unwrap();
    let other = tmp.path().join("other");
    chainmesh_ok(["init", "--hosts-file", p(&file), "--dir", p(&other)]);
    let addrs = |inv: &[Value]| inv.iter().map(|n| n["p2p"].clone()).collect::<Vec<_>>();
    assert_eq!(addrs(&inventory(&other)), addrs(&inv));
}

#[test]
fn add_node_issues_from_the_existing_ca_and_points_at_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    chainmesh_ok(["init", "--hosts", "10.0.0.1:2,10.0.0.2:1", "--dir", p(&dir)]);
    let ca = std::fs::read(dir.join("ca/ca.crt")).unwrap();
    // On a host in use it takes the next free ports; on a new one, a new folder.
    let out = chainmesh_ok(["add-node", "--dir", p(&dir), "--host", "10.0.0.1"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("node3  10.0.0.1:30302"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peers add 10.0.0.1:30302"));
    chainmesh_ok([
        "add-node",
        "--dir",
        p(&dir),
        "--host",
        "10.0.0.3",
        "--name",
        "org-c",
    ]);
    assert_eq!(std::fs::read(dir.join("ca/ca.crt")).unwrap(), ca);
    let inv = inventory(&dir);
    assert_eq!(inv.len(), 5);
    assert_eq!(inv[4]["dir"], "10.0.0.3/org-c");
    assert_eq!(inv[4]["p2p"], "10.0.0.3:30300");
    let cfg = Config::load(&dir.join("10.0.0.3/org-c/config.toml")).unwrap();
    assert_eq!(cfg.p2p.peers.len(), 4);
    let id = Identity::load(
        &dir.join("ca/ca.crt"),
        &cfg.identity.node_cert,
        &cfg.identity.node_key,
    )
    .unwrap();
    assert_eq!(id.node_id.to_string(), inv[4]["node_id"].as_str().unwrap());
    let start = std::fs::read_to_string(dir.join("10.0.0.1/start.sh")).unwrap();
    assert!(start.contains("node0 node1 node3"), "{start}");
    assert!(dir.join("10.0.0.3/chainmesh-org-c.service").is_file());
    // A name is never issued twice.
    let out = chainmesh([
        "add-node",
        "--dir",
        p(&dir),
        "--host",
        "10.0.0.3",
        "--name",
        "org-c",
    ]);
    assert!(!out.status.success());
    // And init --force over the bundle keeps its CA.
    chainmesh_ok(["init", "--hosts", "10.0.0.1:1", "--dir", p(&dir), "--force"]);
    assert_eq!(std::fs::read(dir.join("ca/ca.crt")).unwrap(), ca);
}

#[test]
fn remove_node_rewrites_the_inventories_without_it_and_prints_what_members_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    chainmesh_ok(["init", "--hosts", "10.0.0.1:2,10.0.0.2:1", "--dir", p(&dir)]);
    chainmesh_ok(["add-node", "--dir", p(&dir), "--host", "10.0.0.3"]);
    let before = inventory(&dir);
    let gone = before[1].clone();
    let out = chainmesh_ok(["remove-node", "--dir", p(&dir), "node1"]);
    let kept: Vec<Value> = before
        .iter()
        .filter(|n| n["name"] != "node1")
        .cloned()
        .collect();
    assert_eq!(
        inventory(&dir),
        kept,
        "the others stay as they were, in order"
    );
    for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        assert_eq!(inventory(&dir.join(host)), kept, "{host}'s copy");
    }
    let start = std::fs::read_to_string(dir.join("10.0.0.1/start.sh")).unwrap();
    assert!(start.contains("for node in node0; do"), "{start}");
    // Every member is told how to cut it off, by address and full ID.
    let said = String::from_utf8_lossy(&out.stdout);
    let id = gone["node_id"].as_str().unwrap();
    for m in &kept {
        let d = m["dir"].as_str().unwrap();
        let peers = format!(
            "chainmesh peers remove {} --admin {} --token-file {d}/admin.token",
            gone["p2p"].as_str().unwrap(),
            m["admin"].as_str().unwrap()
        );
        assert!(said.contains(&peers), "{said}");
        let blacklist = format!("chainmesh blacklist add {id} --config {d}/config.toml");
        assert!(said.contains(&blacklist), "{said}");
    }
    // A host whose last node goes keeps no copy that names it.
    chainmesh_ok(["remove-node", "--dir", p(&dir), "node3"]);
    assert_eq!(inventory(&dir.join("10.0.0.3")), inventory(&dir));
    assert_eq!(inventory(&dir).len(), 2);

    // Not listed: refused, naming the file, and nothing changes.
    let out = chainmesh(["remove-node", "--dir", p(&dir), "node1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodes.json") && err.contains("node1"), "{err}");
    assert_eq!(inventory(&dir).len(), 2);
    std::fs::write(dir.join("nodes.json"), "{not json").unwrap();
    let out = chainmesh(["remove-node", "--dir", p(&dir), "node0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes.json"));
}

/// A node started by the test in a namespace, or by its host's `start.sh`.
struct Host<'a> {
    ns: &'a NetNs,
    index: usize,
    folder: PathBuf,
}

impl Host<'_> {
    /// Runs `chainmesh ARGS` on this host (in its namespace).
    fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.ns(self.index), BIN])
            .args(args)
            .output()
            .unwrap()
    }

    fn script(&self, name: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.ns(self.index), "sh"])
            .arg(self.folder.join(name))
            .env("CHAINMESH_BIN", BIN)
            .output()
            .unwrap()
    }
}

/// Short IDs of the peers the node at `admin` on `host` has a session with.
fn connected(host: &Host, admin: &str) -> Vec<String> {
    let out = host.run(&["peers", "list", "--admin", admin]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"connected")).then(|| f[0].to_owned())
        })
        .collect()
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops what `start.sh` started, also when the test fails.
struct Started<'a>(&'a Host<'a>);

impl Drop for Started<'_> {
    fn drop(&mut self) {
        let _ = self.0.script("stop.sh");
    }
}

#[test]
fn a_three_host_bundle_runs_across_namespaces_grows_and_refuses_a_removed_node() {
    let Some(ns) = NetNs::or_skip(4) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let ip = |i: usize| ns.addr(i).to_string();
    let hosts = format!("{}:2,{}:1,{}:1", ip(0), ip(1), ip(2));
    chainmesh_ok(["init", "--hosts", &hosts, "--dir", p(&dir)]);
    let inv = inventory(&dir);
    let host = |i: usize| Host {
        ns: &ns,
        index: i,
        folder: dir.join(ip(i)),
    };
    let hosts: Vec<Host> = (0..4).map(host).collect();
    // node -> (host index, admin address, short ID)
    let at = |inv: &[Value], name: &str| -> (usize, String, String) {
        let n = inv.iter().find(|n| n["name"] == name).unwrap();
        let h = (0..4).find(|&i| n["host"] == ip(i).as_str()).unwrap();
        let id = n["node_id"].as_str().unwrap();
        (
            h,
            n["admin"].as_str().unwrap().to_owned(),
            id[..8].to_owned(),
        )
    };

    // Hosts 0 and 1 run their nodes as the test's processes, host 2 through its start.sh.
    let mut procs: Vec<NodeProcess> = Vec::new();
    for name in ["node0", "node1", "node2"] {
        let (h, _, _) = at(&inv, name);
        let mut launch = Launch::new(BIN, &node_dir(&dir, &inv, name).join("config.toml"));
        launch.wrap = ns.wrap(h).into_iter().map(Into::into).collect();
        procs.push(NodeProcess::spawn(&launch).unwrap());
    }
    let started = hosts[2].script("start.sh");
    assert_ok(&started);
    let _stop = Started(&hosts[2]);

    let names = ["node0", "node1", "node2", "node3"];
    let mesh = |inv: &[Value], members: &[&str]| {
        members.iter().all(|m| {
            let (h, admin, _) = at(inv, m);
            let have = connected(&hosts[h], &admin);
            members
                .iter()
                .filter(|o| *o != m)
                .all(|o| have.contains(&at(inv, o).2))
        })
    };
    wait("the 3-host bundle forms a full mesh", || mesh(&inv, &names));

    // Across hosts, by name from the inventory: one hop.
    let inv_file = dir.join("nodes.json");
    let out = hosts[0].run(&[
        "ping",
        "--admin",
        &at(&inv, "node0").1,
        "--to",
        "node3",
        "-c",
        "1",
        "--inventory",
        p(&inv_file),
    ]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hops=1"));

    // A fourth host joins later, with a certificate from the same CA.
    chainmesh_ok(["add-node", "--dir", p(&dir), "--host", &ip(3)]);
    let inv = inventory(&dir);
    let mut launch = Launch::new(BIN, &node_dir(&dir, &inv, "node4").join("config.toml"));
    launch.wrap = ns.wrap(3).into_iter().map(Into::into).collect();
    let mut node4 = NodeProcess::spawn(&launch).unwrap();
    for m in names {
        let (h, admin, _) = at(&inv, m);
        let token = node_dir(&dir, &inv, m).join("admin.token");
        let out = hosts[h].run(&[
            "peers",
            "add",
            "node4",
            "--admin",
            &admin,
            "--token-file",
            p(&token),
            "--inventory",
            p(&inv_file),
        ]);
        assert_ok(&out);
    }
    let all = ["node0", "node1", "node2", "node3", "node4"];
    wait("node4 joins every member", || mesh(&inv, &all));

    // Removed: off every member's peers, on every member's blacklist, configs reloaded.
    for m in names {
        let (h, admin, _) = at(&inv, m);
        let nd = node_dir(&dir, &inv, m);
        assert_ok(&hosts[h].run(&[
            "peers",
            "remove",
            "node4",
            "--admin",
            &admin,
            "--token-file",
            p(&nd.join("admin.token")),
            "--inventory",
            p(&inv_file),
        ]));
        assert_ok(&hosts[h].run(&[
            "blacklist",
            "add",
            "node4",
            "--config",
            p(&nd.join("config.toml")),
            "--inventory",
            p(&inv_file),
        ]));
    }
    for proc in &procs {
        proc.signal(Signal::Hup).unwrap();
    }
    let pid = std::fs::read_to_string(node_dir(&dir, &inv, "node3").join("node.pid")).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status()
        .unwrap()
        .success());
    let (_, admin4, short4) = at(&inv, "node4");
    let cut_off = || {
        connected(&hosts[3], &admin4).is_empty()
            && names.iter().all(|m| {
                let (h, admin, _) = at(&inv, m);
                !connected(&hosts[h], &admin).contains(&short4)
            })
    };
    let start = Instant::now();
    while !cut_off() {
        if start.elapsed() > WAIT {
            let seen: Vec<String> = names
                .iter()
                .map(|m| {
                    let (h, admin, _) = at(&inv, m);
                    format!("{m}: {:?}", connected(&hosts[h], &admin))
                })
                .collect();
            panic!(
                "node4 is not cut off within {WAIT:?}: node4 sees {:?}; {seen:?}\nnode0's log:\n{}\nnode4's log:\n{}",
                connected(&hosts[3], &admin4),
                procs[0].log(),
                node4.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // node4 still dials its configured peers; they refuse it.
    wait("a member refuses node4 as blacklisted", || {
        procs[0].log().contains("blacklisted")
    });
    assert!(connected(&hosts[3], &admin4).is_empty());
    wait("the members stay a full mesh", || mesh(&inv, &names));
    node4.terminate(Duration::from_secs(10)).unwrap();
}
