//! The `chainmesh` binary's subcommands: one module per command family.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod init;
mod inspect;

/// chainmesh: peer-to-peer network node for permissioned blockchains.
#[derive(Debug, Parser)]
#[command(name = "chainmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a chain CA, an agency CA, and certificates and configs for N nodes.
    Init(init::InitArgs),
    /// Print the node ID of a certificate or private key file.
    NodeId(init::NodeIdArgs),
    /// Decode one P2P packet given as hex and print it as JSON.
    Inspect(inspect::InspectArgs),
}

/// Runs the command line; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run_init(a),
        Command::NodeId(a) => init::run_node_id(a),
        Command::Inspect(a) => inspect::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
