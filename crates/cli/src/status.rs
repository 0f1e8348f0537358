//! `chainmesh status`: print a running node's status table (its own status and every status
//! it holds of other nodes).

use std::io::Write;

use anyhow::Context;

use super::client::AdminClient;
use chainmesh::status::view::{format_table, StatusView};

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The node's admin API address (`host:port`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:31300")]
    admin: String,
}

/// Runs `status`: one line per node (short ID, seq, age of the copy, groups, topics,
/// application status), this node first and marked `*`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let view: StatusView = AdminClient::new(&args.admin).get("/v1/status")?;
    // `write!` instead of `print!`, which panics when stdout is a closed pipe.
    let mut out = std::io::stdout().lock();
    write!(out, "{}", format_table(&view)).context("cannot write to stdout")?;
    Ok(())
}
