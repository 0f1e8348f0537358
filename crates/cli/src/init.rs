//! `chainmesh init`, `chainmesh sdk-certs` and `chainmesh node-id`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use chainmesh::config::{Config, IdentityConfig};
use chainmesh::identity::{
    node_id_of_file, Curve, NetworkCa, SDK_CA_FILE, SDK_CERT_FILE, SDK_KEY_FILE,
};
use chainmesh_admin::{token_path, AdminToken};

/// How far above the P2P port each node's admin API listens.
const ADMIN_PORT_OFFSET: u32 = 1000;

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Number of nodes to generate.
    #[arg(long, short = 'n')]
    pub nodes: usize,
    /// Directory to write the network into; must not exist or be empty unless --force.
    #[arg(long, short = 'd')]
    pub dir: PathBuf,
    /// Elliptic curve of every key. secp256k1 limits links to TLS 1.2.
    #[arg(long, default_value_t = Curve::Secp256k1)]
    pub curve: Curve,
    /// IP address every node listens on and is dialled at. The admin API stays on loopback
    /// whatever this says.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// P2P port of node0; node K uses base+K for P2P and base+1000+K for its admin API.
    #[arg(long, default_value_t = 30300)]
    pub base_port: u16,
    /// SDK channel port of node0; node K's channel port is base+K (FISCO's
    /// channel_listen_port).
    #[arg(long, default_value_t = 20200)]
    pub channel_port: u16,
    /// Also write an SDK certificate for FISCO's SDKs and `chainmesh amop` to DIR/sdk:
    /// ca.crt, sdk.crt (SDK certificate + agency + CA) and sdk.key.
    #[arg(long)]
    pub sdk: bool,
    /// Write into DIR even if it is not empty, overwriting files of the same names.
    #[arg(long)]
    pub force: bool,
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

/// One node's planned addresses and config.
struct PlannedNode {
    name: String,
    listen: SocketAddr,
    config: Config,
}

/// Runs `chainmesh init`: generates the CA, the agency and N nodes with their configs, then
/// prints one line per node: name, P2P address and node ID.
pub fn run_init(args: InitArgs) -> anyhow::Result<()> {
    let plan = plan(&args)?;
    check_target_dir(&args.dir, args.force)?;

    // Everything that can be checked is checked before the first file is written, so a bad
    // argument never leaves a half-made directory behind.
    let ca = NetworkCa::generate(args.curve).context("cannot generate the chain CA")?;
    let creds = plan
        .iter()
        .map(|p| ca.issue_node(&p.name))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot issue node certificates")?;

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("{}: cannot create directory", args.dir.display()))?;
    ca.write_ca(&args.dir)?;
    for (p, c) in plan.iter().zip(&creds) {
        let node_dir = args.dir.join(&p.name);
        c.write_conf(&node_dir.join("conf"))?;
        let file = node_dir.join("config.toml");
        std::fs::write(&file, p.config.to_toml())
            .with_context(|| format!("{}: cannot write", file.display()))?;
        AdminToken::create(&token_path(&file))?;
    }
    if args.sdk {
        let sdk_dir = args.dir.join("sdk");
        ca.write_sdk(&sdk_dir)?;
        eprintln!("wrote SDK certificates to {}", sdk_dir.display());
    }

    eprintln!(
        "wrote {} node(s) on {} to {}",
        plan.len(),
        args.curve,
        args.dir.display()
    );
    warn_stale_nodes(&args.dir, plan.len());
    for (p, c) in plan.iter().zip(&creds) {
        println!("{}  {}  {}", p.name, p.listen, c.node_id);
    }
    Ok(())
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

/// Validates the arguments and builds every node's name, address and config.
fn plan(args: &InitArgs) -> anyhow::Result<Vec<PlannedNode>> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.base_port == 0 {
        bail!("--base-port must be at least 1 (peers cannot dial port 0)");
    }
    let last_admin =
        u64::from(args.base_port) + u64::from(ADMIN_PORT_OFFSET) + args.nodes as u64 - 1;
    if last_admin > u64::from(u16::MAX) {
        bail!(
            "--base-port {} with --nodes {} needs admin ports up to {last_admin}, above 65535",
            args.base_port,
            args.nodes
        );
    }
    let ip: IpAddr = args.host.parse().with_context(|| {
        format!(
            "--host `{}` must be an IP address (nodes listen on it as ip:port)",
            args.host
        )
    })?;
    // The admin API changes the node: it is reachable from the node's own host only, unless
    // an operator edits the config to say otherwise.
    let admin_ip = if ip.is_loopback() {
        ip
    } else {
        IpAddr::from([127, 0, 0, 1])
    };
    if args.channel_port == 0 {
        bail!("--channel-port must be at least 1 (SDKs cannot dial port 0)");
    }
    let last_channel = u64::from(args.channel_port) + args.nodes as u64 - 1;
    if last_channel > u64::from(u16::MAX) {
        bail!(
            "--channel-port {} with --nodes {} needs channel ports up to {last_channel}, above \
             65535",
            args.channel_port,
            args.nodes
        );
    }
    let channel_ports = u64::from(args.channel_port)..=last_channel;
    for (what, base) in [
        ("P2P", u64::from(args.base_port)),
        (
            "admin",
            u64::from(args.base_port) + u64::from(ADMIN_PORT_OFFSET),
        ),
    ] {
        let last = base + args.nodes as u64 - 1;
        if channel_ports.start() <= &last && &base <= channel_ports.end() {
            bail!(
                "channel ports {}..={last_channel} overlap the {what} ports {base}..={last}: \
                 choose another --channel-port or --base-port",
                args.channel_port
            );
        }
    }
    let port = |offset: u32, k: usize| -> anyhow::Result<u16> {
        let p = u64::from(args.base_port) + u64::from(offset) + k as u64;
        u16::try_from(p).with_context(|| format!("port {p} is above 65535"))
    };

    let mut listens = Vec::with_capacity(args.nodes);
    for k in 0..args.nodes {
        listens.push(SocketAddr::new(ip, port(0, k)?));
    }
    let mut plan = Vec::with_capacity(args.nodes);
    for (k, listen) in listens.iter().enumerate() {
        let name = format!("node{k}");
        let mut config = Config::new(
            IdentityConfig {
                ca_cert: "conf/ca.crt".into(),
                node_cert: "conf/node.crt".into(),
                node_key: "conf/node.key".into(),
            },
            listen.to_string(),
        );
        config.p2p.peers = listens
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, a)| a.to_string())
            .collect();
        config.node.name = name.clone();
        config.admin.listen = SocketAddr::new(admin_ip, port(ADMIN_PORT_OFFSET, k)?).to_string();
        // In range: the last channel port was checked above.
        let channel = u16::try_from(u64::from(args.channel_port) + k as u64)
            .with_context(|| format!("channel port of {name} is above 65535"))?;
        config.channel.listen = SocketAddr::new(ip, channel).to_string();
        let file = args.dir.join(&name).join("config.toml");
        // What will be written must load back: check the text, not only the struct.
        Config::parse(&config.to_toml(), &file)
            .with_context(|| format!("generated config for {name} is invalid"))?;
        plan.push(PlannedNode {
            name,
            listen: *listen,
            config,
        });
    }
    Ok(plan)
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
                     into it anyway)",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// With --force, node directories from an earlier, larger init stay behind with certificates
/// from another CA; point them out rather than delete anything.
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
            "note: {} is left from an earlier init; its certificates are from another CA",
            dir.join(name).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: usize, base_port: u16) -> InitArgs {
        InitArgs {
            nodes,
            dir: PathBuf::from("/nonexistent/net"),
            curve: Curve::Secp256k1,
            host: "127.0.0.1".into(),
            base_port,
            channel_port: 20200,
            sdk: false,
            force: false,
        }
    }

    #[test]
    fn plan_lists_every_other_node_as_peer() {
        let p = plan(&args(3, 30300)).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].config.p2p.listen, "127.0.0.1:30301");
        assert_eq!(p[1].config.admin.listen, "127.0.0.1:31301");
        assert_eq!(p[1].config.channel.listen, "127.0.0.1:20201");
        assert_eq!(
            p[1].config.p2p.peers,
            ["127.0.0.1:30300".to_string(), "127.0.0.1:30302".to_string()]
        );
    }

    #[test]
    fn plan_checks_counts_ports_and_host() {
        assert!(plan(&args(0, 30300)).is_err());
        assert!(plan(&args(1, 0)).is_err());
        // 64535 + 1000 + 0 = 65535 fits; one more node does not.
        assert!(plan(&args(1, 64535)).is_ok());
        let e = plan(&args(2, 64535)).err().unwrap().to_string();
        assert!(e.contains("65536"), "{e}");
        let mut a = args(1, 30300);
        a.host = "localhost".into();
        assert!(plan(&a).is_err());
        a.host = "::1".into();
        let p = plan(&a).unwrap();
        assert_eq!(p[0].config.p2p.listen, "[::1]:30300");
        assert_eq!(p[0].config.admin.listen, "[::1]:31300");
        a.host = "0.0.0.0".into();
        let p = plan(&a).unwrap();
        assert_eq!(p[0].config.p2p.listen, "0.0.0.0:30300");
        assert_eq!(p[0].config.admin.listen, "127.0.0.1:31300");
        assert_eq!(p[0].config.channel.listen, "0.0.0.0:20200");
    }

    #[test]
    fn plan_checks_channel_ports() {
        let mut a = args(2, 30300);
        a.channel_port = 0;
        assert!(plan(&a).is_err());
        a.channel_port = 65535;
        let e = plan(&a).err().unwrap().to_string();
        assert!(e.contains("65536"), "{e}");
        // node1's P2P port would be node0's channel port.
        a.channel_port = 30301;
        let e = plan(&a).err().unwrap().to_string();
        assert!(e.contains("overlap the P2P ports"), "{e}");
        a.channel_port = 31300;
        let e = plan(&a).err().unwrap().to_string();
        assert!(e.contains("overlap the admin ports"), "{e}");
        a.channel_port = 30302;
        assert!(plan(&a).is_ok());
    }
}
