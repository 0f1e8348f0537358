//! `chainmesh inspect`.

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {}

pub fn run(_: InspectArgs) -> anyhow::Result<()> {
    anyhow::bail!("inspect: being written")
}
