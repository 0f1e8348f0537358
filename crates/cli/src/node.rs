//! `chainmesh node`: run a node from its config file until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use chainmesh::config::Config;
use chainmesh::node::Node;

/// Arguments of `node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node's config file.
    #[arg(long, short)]
    config: PathBuf,
}

/// Runs the node; SIGHUP reloads the config file (a bad file is refused and the running
/// config kept).
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    super::init_logging();
    let config = Config::load(&args.config)?;
    let config_admin = config.admin.listen.clone();
    super::runtime()?.block_on(async move {
        let node = Node::start(config, Some(args.config.clone()))
            .await
            .with_context(|| format!("starting node from {}", args.config.display()))?;
        let h = node.handle();
        let admin_stop = CancellationToken::new();
        let admin = if config_admin.is_empty() {
            None
        } else {
            match chainmesh_admin::serve(&config_admin, h.clone(), admin_stop.clone()).await {
                Ok(addr) => Some(addr),
                Err(e) => {
                    node.shutdown().await;
                    anyhow::bail!(
                        "{}: admin.listen: cannot listen on {config_admin}: {e}",
                        args.config.display()
                    );
                }
            }
        };
        info!(admin = ?admin, "admin API");
        println!(
            "chainmesh node {} p2p={} admin={}",
            h.node_id(),
            h.listen_addr(),
            admin.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
        );
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
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
        admin_stop.cancel();
        node.shutdown().await;
        Ok(())
    })
}
