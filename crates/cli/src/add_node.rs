//! `chainmesh add-node`: grows a network `init` made. Issues the new node's certificate from
//! the network's existing chain CA and agency (FISCO's `gen_node_cert.sh`), writes its config
//! pointing at every current member, adds it to `nodes.json` and its host's scripts; the
//! members then take it in with `chainmesh peers add`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};

use chainmesh::identity::NetworkCa;

use crate::init::bundle::{self, Install};
use crate::init::plan::{self, PlannedNode, Ports};
use crate::init::{inventory_node, write_config};
use crate::inventory::{Inventory, INVENTORY_FILE};

/// Arguments of `add-node`.
#[derive(Debug, clap::Args)]
pub struct AddNodeArgs {
    /// The directory `init` wrote: its chain CA (ca/), agency (agency/) and nodes.json.
    #[arg(long, short = 'd')]
    pub dir: PathBuf,
    /// IP address of the host the new node runs on (a new host or one already in use).
    #[arg(long)]
    pub host: String,
    /// The new node's name; default `nodeN`, N the first number not taken.
    #[arg(long)]
    pub name: Option<String>,
    /// As for `init`: P2P port of a host's first node; the new node takes the first slot
    /// whose P2P, admin and channel ports its host does not use yet.
    #[arg(long, default_value_t = 30300)]
    pub base_port: u16,
    /// As for `init`: SDK channel port of a host's first node.
    #[arg(long, default_value_t = 20200)]
    pub channel_port: u16,
    /// As for `init`: where the host folder is installed, for the systemd units.
    #[arg(long, value_name = "DIR", default_value = "/opt/chainmesh")]
    pub install_dir: String,
    /// As for `init`: the `chainmesh` binary on the hosts.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/chainmesh")]
    pub bin: String,
}

/// Runs `add-node`: prints the new node's line (name, P2P address, node ID), then what to
/// run on every member.
pub fn run(args: AddNodeArgs) -> anyhow::Result<()> {
    let inv_file = args.dir.join(INVENTORY_FILE);
    let mut inv = Inventory::read(&inv_file)?;
    let ca = NetworkCa::load(&args.dir)
        .with_context(|| format!("{}: no chain CA to issue from", args.dir.display()))?;
    let ip: IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host `{}` must be an IP address", args.host))?;
    let host = ip.to_string();
    let name = match args.name {
        Some(n) => n,
        None => (0..)
            .map(|k| format!("node{k}"))
            .find(|n| inv.nodes.iter().all(|m| &m.name != n))
            .context("no free node name")?,
    };
    if inv.nodes.iter().any(|m| m.name == name) {
        bail!("{name} is in {} already", inv_file.display());
    }
    let ports = Ports {
        base: args.base_port,
        channel: args.channel_port,
    };
    let slot = free_slot(&inv, &host, ports)?;
    let peers = inv.nodes.iter().map(|m| m.p2p.clone()).collect();
    let config = plan::node_config(&name, ip, slot, ports, peers)?;
    let folder = if inv.on_host(&host).next().is_some() {
        bundle::host_folder(&inv, &host)
    } else {
        PathBuf::from(plan::host_dir_name(ip))
    };
    let planned = PlannedNode {
        name: name.clone(),
        host: ip,
        dir: folder.join(&name),
        listen: config
            .p2p
            .listen
            .parse()
            .context("the new node's P2P address")?,
        config,
    };
    let node_dir = args.dir.join(&planned.dir);
    if node_dir.exists() {
        bail!(
            "{}: exists already; refusing to overwrite",
            node_dir.display()
        );
    }
    chainmesh::config::Config::parse(&planned.config.to_toml(), &node_dir.join("config.toml"))
        .with_context(|| format!("generated config for {name} is invalid"))?;
    let creds = ca
        .issue_node(&name)
        .context("cannot issue the certificate")?;
    creds.write_conf(&node_dir.join("conf"))?;
    write_config(&node_dir, &planned)?;
    let members = inv.nodes.clone();
    inv.nodes.push(inventory_node(&planned, creds.node_id));
    let install = Install {
        dir: args.install_dir,
        bin: args.bin,
    };
    bundle::write_all(&args.dir, &inv, &install)?;

    eprintln!(
        "wrote {} (certificate from the existing chain CA); copy it to {host} and start it",
        node_dir.display()
    );
    println!("{}  {}  {}", name, planned.listen, creds.node_id);
    if !members.is_empty() {
        eprintln!("then, on each member's host, have it take {name} in:");
        for m in &members {
            eprintln!(
                "  [{}] chainmesh peers add {} --admin {} --token-file {}/admin.token",
                m.host, planned.listen, m.admin, m.dir
            );
        }
    }
    Ok(())
}

/// The first slot K whose ports (base+K, base+1000+K, channel+K) no node of `host` uses.
fn free_slot(inv: &Inventory, host: &str, ports: Ports) -> anyhow::Result<usize> {
    let used: BTreeSet<u16> = inv
        .on_host(host)
        .flat_map(|n| [&n.p2p, &n.admin, &n.channel])
        .filter_map(|a| a.parse::<SocketAddr>().ok().map(|s| s.port()))
        .collect();
    let taken = |p: u64| u16::try_from(p).map_or(true, |p| used.contains(&p));
    let slot = (0..=usize::from(u16::MAX))
        .find(|&k| {
            let k = k as u64;
            !taken(u64::from(ports.base) + k)
                && !taken(u64::from(ports.base) + u64::from(plan::ADMIN_PORT_OFFSET) + k)
                && !taken(u64::from(ports.channel) + k)
        })
        .context("no free ports on the host")?;
    plan::check_ports(ports, slot + 1)?;
    Ok(slot)
}
