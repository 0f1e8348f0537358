//! `chainmesh init`, `chainmesh sdk-certs` and `chainmesh node-id`.

pub mod bundle;
pub mod plan;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use chainmesh::identity::{
    node_id_of_file, Curve, NetworkCa, SDK_CA_FILE, SDK_CERT_FILE, SDK_KEY_FILE,
};
use chainmesh_admin::{token_path, AdminToken};

use crate::inventory::{Inventory, InventoryNode};
use bundle::Install;
use plan::{HostSpec, PlannedNode, Ports};

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("layout").required(true).args(["nodes", "hosts", "hosts_file"])))]
pub struct InitArgs {
    /// Number of nodes to generate, all on --host.
    #[arg(long, short = 'n')]
    pub nodes: Option<usize>,
    /// Nodes on several hosts: `IP1:N1,IP2:N2,...`. Each host gets a folder named after its
    /// IP with its nodes, a start and a stop script and a systemd unit per node.
    #[arg(long, value_name = "IP:N,...", conflicts_with = "host")]
    pub hosts: Option<String>,
    /// As --hosts, from a file: one host a line, `IP N` or `IP:N`; `#` starts a comment.
    #[arg(long, value_name = "FILE", conflicts_with = "host")]
    pub hosts_file: Option<PathBuf>,
    /// Directory to write the network into; must not exist or be empty unless --force.
    #[arg(long, short = 'd')]
    pub dir: PathBuf,
    /// Elliptic curve of every key (default secp256k1). secp256k1 limits links to TLS 1.2.
    /// With --force over an existing CA, the CA's curve; another one is refused.
    #[arg(long)]
    pub curve: Option<Curve>,
    /// IP address every node listens on and is dialled at (with --nodes). The admin API
    /// stays on loopback whatever this says.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// P2P port of each host's first node; the K-th node of a host uses base+K for P2P and
    /// base+1000+K for its admin API.
    #[arg(long, default_value_t = 30300)]
    pub base_port: u16,
    /// SDK channel port of each host's first node; the K-th node of a host uses base+K
    /// (FISCO's channel_listen_port).
    #[arg(long, default_value_t = 20200)]
    pub channel_port: u16,
    /// Also write an SDK certificate for FISCO's SDKs and `chainmesh amop` to DIR/sdk:
    /// ca.crt, sdk.crt (SDK certificate + agency + CA) and sdk.key.
    #[arg(long)]
    pub sdk: bool,
    /// Write into DIR even if it is not empty, overwriting files of the same names. An
    /// existing chain CA and agency (DIR/ca, DIR/agency) are kept, never replaced: the nodes
    /// get new certificates from them, so certificates issued before stay valid.
    #[arg(long)]
    pub force: bool,
    /// Where each host folder is installed on its host, for the systemd units.
    #[arg(long, value_name = "DIR", default_value = "/opt/chainmesh")]
    pub install_dir: String,
    /// The `chainmesh` binary on the hosts, for the systemd units.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/chainmesh")]
    pub bin: String,
}

/// Arguments of `sdk-certs`.
#[derive(Debug, clap::Args)]
pub struct SdkCertsArgs {
    /// The directory `init` wrote: the chain CA is read from ca/ca.crt and ca/ca.key, the
    /// agency from agency/agency.crt and agency/agency.key.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// Directory to write ca.crt, sdk.crt and sdk.key into (created if missing; files of
    /// those names are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `node-id`.
#[derive(Debug, clap::Args)]
pub struct NodeIdArgs {
    /// A PEM or DER certificate, private key or public key file.
    pub file: PathBuf,
}

/// Runs `chainmesh init`: generates (or, with --force, keeps) the CA and the agency, issues
/// every node's certificate, writes configs, the inventory and each host's scripts, then
/// prints one line per node: name, P2P address and node ID.
pub fn run_init(args: InitArgs) -> anyhow::Result<()> {
    let (hosts, per_host_dirs) = hosts_of(&args)?;
    let ports = Ports {
        base: args.base_port,
        channel: args.channel_port,
    };
    let plan = plan::plan(&hosts, ports, per_host_dirs, &args.dir)?;
    check_target_dir(&args.dir, args.force)?;

    // Everything that can be checked is checked before the first file is written, so a bad
    // argument never leaves a half-made directory behind.
    let (ca, kept) = chain_ca(&args.dir, args.curve)?;
    let creds = plan
        .iter()
        .map(|p| ca.issue_node(&p.name))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot issue node certificates")?;

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("{}: cannot create directory", args.dir.display()))?;
    if !kept {
        ca.write_ca(&args.dir)?;
    }
    let mut inventory = Inventory::default();
    for (p, c) in plan.iter().zip(&creds) {
        let node_dir = args.dir.join(&p.dir);
        c.write_conf(&node_dir.join("conf"))?;
        write_config(&node_dir, p)?;
        inventory.nodes.push(inventory_node(p, c.node_id));
    }
    let install = Install {
        dir: args.install_dir.clone(),
        bin: args.bin.clone(),
    };
    bundle::write_all(&args.dir, &inventory, &install)?;
    if args.sdk {
        let sdk_dir = args.dir.join("sdk");
        ca.write_sdk(&sdk_dir)?;
        eprintln!("wrote SDK certificates to {}", sdk_dir.display());
    }

    eprintln!(
        "wrote {} node(s) on {} host(s), {}, to {}{}",
        plan.len(),
        hosts.len(),
        ca.curve(),
        args.dir.display(),
        if kept {
            " (kept the existing chain CA and agency)"
        } else {
            ""
        }
    );
    if !per_host_dirs {
        warn_stale_nodes(&args.dir, plan.len());
    }
    for (p, c) in plan.iter().zip(&creds) {
        println!("{}  {}  {}", p.name, p.listen, c.node_id);
    }
    Ok(())
}

/// The hosts the arguments name, and whether each gets a folder of its own.
fn hosts_of(args: &InitArgs) -> anyhow::Result<(Vec<HostSpec>, bool)> {
    if let Some(text) = &args.hosts {
        return Ok((plan::parse_hosts(text)?, true));
    }
    if let Some(file) = &args.hosts_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("{}: cannot read", file.display()))?;
        let hosts = plan::parse_hosts_file(&text).with_context(|| format!("{}", file.display()))?;
        return Ok((hosts, true));
    }
    let nodes = args.nodes.unwrap_or(0);
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let ip = args.host.parse().with_context(|| {
        format!(
            "--host `{}` must be an IP address (nodes listen on it as ip:port)",
            args.host
        )
    })?;
    Ok((vec![HostSpec { ip, nodes }], false))
}

/// The chain CA of `dir` when it has one (kept: `true`), else a new one on `curve`.
fn chain_ca(dir: &Path, curve: Option<Curve>) -> anyhow::Result<(NetworkCa, bool)> {
    if dir.join("ca").join("ca.crt").exists() || dir.join("ca").join("ca.key").exists() {
        let ca = NetworkCa::load(dir).with_context(|| {
            format!(
                "{} holds a chain CA that cannot be loaded; refusing to replace it (move it \
                 away to start a new network)",
                dir.display()
            )
        })?;
        if let Some(c) = curve.filter(|c| *c != ca.curve()) {
            bail!(
                "{}: the existing chain CA is on {}, not {c}; it is kept, never replaced (move \
                 it away to start a new network on {c})",
                dir.display(),
                ca.curve()
            );
        }
        return Ok((ca, true));
    }
    let curve = curve.unwrap_or(Curve::Secp256k1);
    let ca = NetworkCa::generate(curve).context("cannot generate the chain CA")?;
    Ok((ca, false))
}

/// Writes a node's config and admin token.
pub fn write_config(node_dir: &Path, p: &PlannedNode) -> anyhow::Result<()> {
    let file = node_dir.join("config.toml");
    std::fs::write(&file, p.config.to_toml())
        .with_context(|| format!("{}: cannot write", file.display()))?;
    AdminToken::create(&token_path(&file))?;
    Ok(())
}

/// The inventory entry of a planned node.
pub fn inventory_node(p: &PlannedNode, node_id: chainmesh::identity::NodeId) -> InventoryNode {
    InventoryNode {
        name: p.name.clone(),
        host: p.host.to_string(),
        p2p: p.config.p2p.listen.clone(),
        admin: p.config.admin.listen.clone(),
        channel: p.config.channel.listen.clone(),
        node_id,
        dir: p.dir.to_string_lossy().into_owned(),
    }
}

/// Runs `chainmesh sdk-certs`: issues an SDK certificate from an existing chain CA and
/// agency and writes the SDK directory.
pub fn run_sdk_certs(args: SdkCertsArgs) -> anyhow::Result<()> {
    let ca = NetworkCa::load(&args.ca_dir)?;
    ca.write_sdk(&args.out)?;
    eprintln!(
        "wrote {}, {} and {} to {}",
        SDK_CA_FILE,
        SDK_CERT_FILE,
        SDK_KEY_FILE,
        args.out.display()
    );
    Ok(())
}

/// Runs `chainmesh node-id FILE`: prints the node ID of a certificate or key.
pub fn run_node_id(args: NodeIdArgs) -> anyhow::Result<()> {
    let id = node_id_of_file(&args.file)?;
    println!("{id}");
    Ok(())
}

/// Refuses a target that exists and is not an empty directory, unless `force`.
fn check_target_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot inspect", dir.display())),
        Ok(m) if !m.is_dir() => bail!("{}: exists and is not a directory", dir.display()),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir)
                .with_context(|| format!("{}: cannot list", dir.display()))?;
            if entries.next().is_some() && !force {
                bail!(
                    "{}: directory is not empty; refusing to overwrite (pass --force to write \
                     into it anyway, keeping its chain CA)",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// With --force, node directories from an earlier, larger init stay behind; point them out
/// rather than delete anything.
fn warn_stale_nodes(dir: &Path, n: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut stale: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| {
            name.strip_prefix("node")
                .and_then(|k| k.parse::<usize>().ok())
                .is_some_and(|k| k >= n)
        })
        .collect();
    stale.sort();
    for name in stale {
        eprintln!(
            "note: {} is left from an earlier init and is not in nodes.json",
            dir.join(name).display()
        );
    }
}
