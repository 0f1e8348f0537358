//! Where every node of a new network goes: hosts, folders, ports, peers and configs, all
//! checked before a file is written.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use chainmesh::config::{Config, IdentityConfig};

/// How far above the P2P port each node's admin API listens.
pub const ADMIN_PORT_OFFSET: u32 = 1000;

/// One host of the network and how many nodes it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The address the host's nodes listen on and are dialled at.
    pub ip: IpAddr,
    /// How many nodes.
    pub nodes: usize,
}

/// Parses `IP1:N1,IP2:N2,...` (IPv6 in brackets: `[fd00::1]:2`).
pub fn parse_hosts(text: &str) -> anyhow::Result<Vec<HostSpec>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (ip, n) = item
                .rsplit_once(':')
                .with_context(|| format!("`{item}` must be IP:COUNT, e.g. 10.0.0.1:2"))?;
            host_spec(ip, n, item)
        })
        .collect()
}

/// Parses a hosts file: one host a line, `IP COUNT` or `IP:COUNT`; `#` starts a comment.
pub fn parse_hosts_file(text: &str) -> anyhow::Result<Vec<HostSpec>> {
    let mut hosts = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parsed = match line.split_once(char::is_whitespace) {
            Some((ip, n)) => host_spec(ip, n, line),
            None => parse_hosts(line).map(|mut v| v.remove(0)),
        };
        hosts.push(parsed.with_context(|| format!("line {}", k + 1))?);
    }
    Ok(hosts)
}

fn host_spec(ip: &str, n: &str, item: &str) -> anyhow::Result<HostSpec> {
    let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip
        .parse()
        .with_context(|| format!("`{item}`: `{ip}` is not an IP address"))?;
    let nodes: usize = n
        .trim()
        .parse()
        .with_context(|| format!("`{item}`: `{}` is not a node count", n.trim()))?;
    Ok(HostSpec { ip, nodes })
}

/// The ports of the first node of every host; the K-th node of a host adds K.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// P2P port of a host's first node; its admin API is 1000 above.
    pub base: u16,
    /// SDK channel port of a host's first node.
    pub channel: u16,
}

/// One node to be made.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    /// Its name, unique in the network.
    pub name: String,
    /// Its host.
    pub host: IpAddr,
    /// Its directory, relative to the bundle root.
    pub dir: PathBuf,
    /// Its P2P address.
    pub listen: SocketAddr,
    /// Its config, as it will be written.
    pub config: Config,
}

/// Plans `hosts` under a bundle: with `per_host_dirs` each host's nodes go in a folder named
/// after its IP, otherwise straight under the root. Names run node0, node1, ... across
/// hosts; every node lists every other node as a peer.
pub fn plan(
    hosts: &[HostSpec],
    ports: Ports,
    per_host_dirs: bool,
    root: &Path,
) -> anyhow::Result<Vec<PlannedNode>> {
    if hosts.is_empty() {
        bail!("no hosts given");
    }
    for (k, h) in hosts.iter().enumerate() {
        if h.nodes == 0 {
            bail!("host {} needs at least 1 node", h.ip);
        }
        if hosts[..k].iter().any(|o| o.ip == h.ip) {
            bail!("host {} is listed twice: give it one count", h.ip);
        }
    }
    let most = hosts.iter().map(|h| h.nodes).max().unwrap_or(1);
    check_ports(ports, most)?;

    let mut slots = Vec::new();
    for h in hosts {
        for j in 0..h.nodes {
            slots.push((h.ip, j));
        }
    }
    let listens: Vec<SocketAddr> = slots
        .iter()
        .map(|&(ip, j)| port(ports.base, 0, j).map(|p| SocketAddr::new(ip, p)))
        .collect::<anyhow::Result<_>>()?;
    let mut plan = Vec::with_capacity(slots.len());
    for (k, (&(ip, j), listen)) in slots.iter().zip(&listens).enumerate() {
        let name = format!("node{k}");
        let peers = listens
            .iter()
            .enumerate()
            .filter(|(o, _)| *o != k)
            .map(|(_, a)| a.to_string())
            .collect();
        let config = node_config(&name, ip, j, ports, peers)?;
        let dir = if per_host_dirs {
            PathBuf::from(host_dir_name(ip)).join(&name)
        } else {
            PathBuf::from(&name)
        };
        // What will be written must load back: check the text, not only the struct.
        Config::parse(&config.to_toml(), &root.join(&dir).join("config.toml"))
            .with_context(|| format!("generated config for {name} is invalid"))?;
        plan.push(PlannedNode {
            name,
            host: ip,
            dir,
            listen: *listen,
            config,
        });
    }
    Ok(plan)
}

/// The folder of a host in a bundle: its IP, with `:` of IPv6 replaced so every file system
/// and `scp` takes it.
pub fn host_dir_name(ip: IpAddr) -> String {
    ip.to_string().replace(':', "_")
}

/// The config of the `j`-th node of host `ip`.
pub fn node_config(
    name: &str,
    ip: IpAddr,
    j: usize,
    ports: Ports,
    peers: Vec<String>,
) -> anyhow::Result<Config> {
    // The admin API changes the node: it is reachable from the node's own host only, unless
    // an operator edits the config to say otherwise.
    let admin_ip = if ip.is_loopback() {
        ip
    } else {
        IpAddr::from([127, 0, 0, 1])
    };
    let mut config = Config::new(
        IdentityConfig {
            ca_cert: "conf/ca.crt".into(),
            node_cert: "conf/node.crt".into(),
            node_key: "conf/node.key".into(),
        },
        SocketAddr::new(ip, port(ports.base, 0, j)?).to_string(),
    );
    config.p2p.peers = peers;
    config.node.name = name.to_owned();
    config.admin.listen =
        SocketAddr::new(admin_ip, port(ports.base, ADMIN_PORT_OFFSET, j)?).to_string();
    config.channel.listen = SocketAddr::new(ip, port(ports.channel, 0, j)?).to_string();
    Ok(config)
}

/// `base + offset + j`, or an error above 65535.
fn port(base: u16, offset: u32, j: usize) -> anyhow::Result<u16> {
    let p = u64::from(base) + u64::from(offset) + j as u64;
    u16::try_from(p).with_context(|| format!("port {p} is above 65535"))
}

/// Checks that `n` nodes on one host fit below 65535 and that their channel ports meet
/// neither their P2P nor their admin ports.
pub fn check_ports(ports: Ports, n: usize) -> anyhow::Result<()> {
    if ports.base == 0 {
        bail!("--base-port must be at least 1 (peers cannot dial port 0)");
    }
    if ports.channel == 0 {
        bail!("--channel-port must be at least 1 (SDKs cannot dial port 0)");
    }
    let n = n as u64;
    let last_admin = u64::from(ports.base) + u64::from(ADMIN_PORT_OFFSET) + n - 1;
    if last_admin > u64::from(u16::MAX) {
        bail!(
            "--base-port {} with {n} node(s) on a host needs admin ports up to {last_admin}, \
             above 65535",
            ports.base
        );
    }
    let last_channel = u64::from(ports.channel) + n - 1;
    if last_channel > u64::from(u16::MAX) {
        bail!(
            "--channel-port {} with {n} node(s) on a host needs channel ports up to \
             {last_channel}, above 65535",
            ports.channel
        );
    }
    let channel = u64::from(ports.channel)..=last_channel;
    for (what, base) in [
        ("P2P", u64::from(ports.base)),
        (
            "admin",
            u64::from(ports.base) + u64::from(ADMIN_PORT_OFFSET),
        ),
    ] {
        let last = base + n - 1;
        if channel.start() <= &last && &base <= channel.end() {
            bail!(
                "channel ports {}..={last_channel} overlap the {what} ports {base}..={last}: \
                 choose another --channel-port or --base-port",
                ports.channel
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports {
        base: 30300,
        channel: 20200,
    };

    fn one_host(host: &str, nodes: usize) -> Vec<HostSpec> {
        vec![HostSpec {
            ip: host.parse().unwrap(),
            nodes,
        }]
    }

    fn plan_one(host: &str, nodes: usize, ports: Ports) -> anyhow::Result<Vec<PlannedNode>> {
        plan(
            &one_host(host, nodes),
            ports,
            false,
            Path::new("/nonexistent"),
        )
    }

    #[test]
    fn plan_lists_every_other_node_as_peer() {
        let p = plan_one("127.0.0.1", 3, PORTS).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].config.p2p.listen, "127.0.0.1:30301");
        assert_eq!(p[1].config.admin.listen, "127.0.0.1:31301");
        assert_eq!(p[1].config.channel.listen, "127.0.0.1:20201");
        assert_eq!(
            p[1].config.p2p.peers,
            ["127.0.0.1:30300".to_string(), "127.0.0.1:30302".to_string()]
        );
        assert_eq!(p[1].dir, PathBuf::from("node1"));
    }

    #[test]
    fn plan_checks_counts_ports_and_host() {
        assert!(plan_one("127.0.0.1", 0, PORTS).is_err());
        let ports = |base| Ports { base, ..PORTS };
        assert!(plan_one("127.0.0.1", 1, ports(0)).is_err());
        // 64535 + 1000 + 0 = 65535 fits; one more node does not.
        assert!(plan_one("127.0.0.1", 1, ports(64535)).is_ok());
        let e = plan_one("127.0.0.1", 2, ports(64535))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("65536"), "{e}");
        let p = plan_one("::1", 1, PORTS).unwrap();
        assert_eq!(p[0].config.p2p.listen, "[::1]:30300");
        assert_eq!(p[0].config.admin.listen, "[::1]:31300");
        let p = plan_one("0.0.0.0", 1, PORTS).unwrap();
        assert_eq!(p[0].config.p2p.listen, "0.0.0.0:30300");
        assert_eq!(p[0].config.admin.listen, "127.0.0.1:31300");
        assert_eq!(p[0].config.channel.listen, "0.0.0.0:20200");
    }

    #[test]
    fn plan_checks_channel_ports() {
        let ports = |channel| Ports {
            base: 30300,
            channel,
        };
        assert!(plan_one("127.0.0.1", 2, ports(0)).is_err());
        let e = plan_one("127.0.0.1", 2, ports(65535))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("65536"), "{e}");
        // node1's P2P port would be node0's channel port.
        let e = plan_one("127.0.0.1", 2, ports(30301))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("overlap the P2P ports"), "{e}");
        let e = plan_one("127.0.0.1", 2, ports(31300))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("overlap the admin ports"), "{e}");
        assert!(plan_one("127.0.0.1", 2, ports(30302)).is_ok());
    }

    #[test]
    fn hosts_get_their_own_folders_ports_from_the_base_and_peers_across_hosts() {
        let hosts = parse_hosts("10.0.0.1:2, 10.0.0.2:1,[fd00::3]:1").unwrap();
        assert_eq!(hosts.len(), 3);
        let p = plan(&hosts, PORTS, true, Path::new("/nonexistent")).unwrap();
        let names: Vec<&str> = p.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node0", "node1", "node2", "node3"]);
        assert_eq!(p[1].dir, PathBuf::from("10.0.0.1/node1"));
        assert_eq!(p[2].dir, PathBuf::from("10.0.0.2/node2"));
        assert_eq!(p[3].dir, PathBuf::from("fd00__3/node3"));
        assert_eq!(p[1].config.p2p.listen, "10.0.0.1:30301");
        // Each host numbers its ports from the base again: they cannot clash across hosts.
        assert_eq!(p[2].config.p2p.listen, "10.0.0.2:30300");
        assert_eq!(p[2].config.admin.listen, "127.0.0.1:31300");
        assert_eq!(
            p[2].config.p2p.peers,
            ["10.0.0.1:30300", "10.0.0.1:30301", "[fd00::3]:30300"]
        );
    }

    #[test]
    fn bad_host_lists_are_refused() {
        assert!(parse_hosts("10.0.0.1").is_err());
        assert!(parse_hosts("host.example:2").is_err());
        assert!(parse_hosts("10.0.0.1:x").is_err());
        let twice = parse_hosts("10.0.0.1:1,10.0.0.1:2").unwrap();
        let e = plan(&twice, PORTS, true, Path::new("/x")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let zero = parse_hosts("10.0.0.1:0").unwrap();
        assert!(plan(&zero, PORTS, true, Path::new("/x")).is_err());
    }

    #[test]
    fn a_hosts_file_takes_both_forms_and_comments() {
        let hosts =
            parse_hosts_file("# org A\n10.0.0.1 2\n\n10.0.0.2:1  # org B\n[fd00::1] 3\n").unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].nodes, 2);
        assert_eq!(hosts[1].ip.to_string(), "10.0.0.2");
        assert_eq!(hosts[2].nodes, 3);
        let e = parse_hosts_file("10.0.0.1 2\nbad line\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
