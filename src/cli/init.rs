//! `chainmesh init` and `chainmesh node-id`.

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

/// Arguments of `node-id`.
#[derive(Debug, clap::Args)]
pub struct NodeIdArgs {}

pub fn run_init(_: InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("init: being written")
}

pub fn run_node_id(_: NodeIdArgs) -> anyhow::Result<()> {
    anyhow::bail!("node-id: being written")
}
