//! `chainmesh node`: run a node from its config file until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use chainmesh::amop::Amop;
use chainmesh::config::Config;
use chainmesh::identity::node_id_of_file;
use chainmesh::node::Node;
use chainmesh_admin::{token_path, Access, AdminToken};

use crate::load::{LoadGen, LoadSpec};
use crate::logging::LogArgs;
use crate::rpc;

/// Arguments of `node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node's config file.
    #[arg(long, short)]
    config: PathBuf,
    /// Also send load and answer other nodes' load: comma-separated key=value, rates per
    /// second for the whole node, e.g. `requests=50,unicasts=20,broadcasts=5,size=256`
    /// (also request_timeout_ms, in_flight, group, module; missing keys are 0 or their
    /// default). Needs --load-report.
    #[arg(long, value_name = "SPEC", requires = "load_report")]
    load: Option<LoadSpec>,
    /// The file the load generator appends its counters to, one JSON object per line, and a
    /// last line with "final": true on SIGTERM or SIGINT.
    #[arg(long, value_name = "FILE", requires = "load")]
    load_report: Option<PathBuf>,
    /// How often the load generator appends a report line, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    load_interval_ms: u64,
}

/// Runs the node; SIGHUP reloads the config file (a bad file is refused and the running
/// config kept).
pub fn run(args: NodeArgs, log: &LogArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    crate::logging::init(log, &config.log, &local_name(&config));
    let settings = config.admin.clone();
    // Made before the node starts, so an unwritable directory stops start-up at once.
    let token = if settings.listen.is_empty() {
        None
    } else {
        Some(admin_token(&args.config)?)
    };
    super::runtime()?.block_on(async move {
        let node = Node::start(config.clone(), Some(args.config.clone()))
            .await
            .with_context(|| format!("starting node from {}", args.config.display()))?;
        let h = node.handle();
        // AMOP stops with the node.
        let amop = match Amop::start(&h, &config).await {
            Ok(amop) => amop,
            Err(e) => {
                node.shutdown().await;
                return Err(e).with_context(|| format!("{}: AMOP", args.config.display()));
            }
        };
        amop.set_rpc_handler(Arc::new(rpc::BlockNumber::new(h.clone())));
        let channel = amop.local_addr();
        // The admin API shows AMOP only where there is a channel port to show.
        let amop = channel.map(|_| amop);
        let admin_stop = CancellationToken::new();
        let serve = |key: &'static str, addr: String, access: Option<Access>| {
            let (h, amop, settings, stop) =
                (h.clone(), amop.clone(), &settings, admin_stop.clone());
            let file = args.config.display().to_string();
            async move {
                match access.filter(|_| !addr.is_empty()) {
                    None => Ok(None),
                    Some(access) => chainmesh_admin::serve(&addr, h, amop, access, settings, stop)
                        .await
                        .map(Some)
                        .with_context(|| format!("{file}: {key}: cannot listen on {addr}")),
                }
            }
        };
        let listening = async {
            let admin = serve(
                "admin.listen",
                settings.listen.clone(),
                token.map(Access::ReadWrite),
            )
            .await?;
            let read = serve(
                "admin.read_listen",
                settings.read_listen.clone(),
                Some(Access::ReadOnly),
            )
            .await?;
            anyhow::Ok((admin, read))
        }
        .await;
        let (admin, read) = match listening {
            Ok(bound) => bound,
            Err(e) => {
                admin_stop.cancel();
                node.shutdown().await;
                return Err(e);
            }
        };
        info!(admin = ?admin, read_only = ?read, "admin API");
        let load = match (args.load.clone(), &args.load_report) {
            (Some(spec), Some(file)) => {
                let every = Duration::from_millis(args.load_interval_ms);
                match LoadGen::start(&h, spec, file, every) {
                    Ok(load) => Some(load),
                    Err(e) => {
                        admin_stop.cancel();
                        node.shutdown().await;
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        // Installed before the ready line, so a signal sent as soon as it appears is handled
        // rather than killing the process.
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        println!(
            "chainmesh node {} p2p={} admin={}{}{}",
            h.node_id(),
            h.listen_addr(),
            admin.map_or("off".into(), |a| a.to_string()),
            read.map(|r| format!(" read={r}")).unwrap_or_default(),
            channel.map(|c| format!(" channel={c}")).unwrap_or_default()
        );
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match Config::load(&args.config) {
                    Ok(new) => {
                        h.apply_config(&new);
                        info!(file = %args.config.display(), "config reloaded");
                    }
                    Err(e) => error!(error = %e, "config reload refused; keeping the running config"),
                },
            }
        }
        info!("shutting down");
        if let Some(load) = load {
            load.finish().await;
        }
        admin_stop.cancel();
        node.shutdown().await;
        Ok(())
    })
}

/// The name on this node's log lines: `node.name`, else the short node ID of its certificate
/// (empty when that cannot be read; starting the node then reports why).
fn local_name(config: &Config) -> String {
    if !config.node.name.is_empty() {
        return config.node.name.clone();
    }
    node_id_of_file(&config.identity.node_cert)
        .map(|id| id.short())
        .unwrap_or_default()
}

/// The admin token kept beside `config_file`, made there on first start.
fn admin_token(config_file: &std::path::Path) -> anyhow::Result<AdminToken> {
    let file = token_path(config_file);
    let (token, created) = AdminToken::load_or_create(&file).context("admin token")?;
    if created {
        info!(file = %file.display(), "created the admin token");
    } else if AdminToken::readable_by_others(&file) {
        warn!(file = %file.display(), "the admin token file can be read by other users; chmod 600 it");
    }
    Ok(token)
}
