//! The `chainmesh` node program and tools; see `chainmesh --help`. One module per command
//! family.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc gives a message's 1 MiB buffer back to the kernel when it is freed and maps
// it afresh for the next one, a page fault per 4 KiB; jemalloc keeps it (docs/performance.md,
// "Priority lanes"). The library leaves the choice to whoever embeds it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod add_node;
mod amop;
mod blacklist;
mod client;
mod demo;
mod init;
mod inspect;
mod inventory;
mod listen;
mod load;
mod logging;
mod names;
mod node;
mod peers;
mod ping;
mod remove_node;
mod resolve;
mod rpc;
mod send;
mod status;

/// chainmesh: peer-to-peer network node for permissioned blockchains.
#[derive(Debug, Parser)]
#[command(name = "chainmesh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a chain CA, an agency CA, and certificates and configs for N nodes on one host
    /// or on several (--hosts), with nodes.json, start/stop scripts and systemd units (with
    /// --sdk, an SDK certificate too).
    Init(init::InitArgs),
    /// Grow a network: issue a new node's certificate from its existing chain CA and write
    /// its config pointing at the current members.
    AddNode(add_node::AddNodeArgs),
    /// Shrink a network: take a node out of nodes.json and its host's scripts, and print
    /// what every remaining member runs to cut it off (peers remove, blacklist add, reload).
    RemoveNode(remove_node::RemoveNodeArgs),
    /// Add nodes to, or remove them from, the blacklist in a node's config file.
    Blacklist(blacklist::BlacklistArgs),
    /// Issue an SDK certificate (ca.crt, sdk.crt, sdk.key) from the chain CA and agency that
    /// `init` wrote.
    SdkCerts(init::SdkCertsArgs),
    /// Print the node ID of a certificate or private key file.
    NodeId(init::NodeIdArgs),
    /// Decode one P2P packet given as hex and print it as JSON.
    Inspect(inspect::InspectArgs),
    /// Run a node from its config file until SIGINT or SIGTERM; SIGHUP reloads the config.
    Node(node::NodeArgs),
    /// Run a local multi-node network on generated certificates, exercise every capability,
    /// and print what happened.
    Demo(demo::DemoArgs),
    /// List, add or remove a running node's peers through its admin API.
    Peers(peers::PeersArgs),
    /// Send a unicast (--to), multicast (--topic) or broadcast (--group) from a running node.
    Send(send::SendArgs),
    /// Send echo requests from a running node to another and print round trips and hops.
    Ping(ping::PingArgs),
    /// Print every node's status as a running node knows it: seq, age, groups, topics, app.
    Status(status::StatusArgs),
    /// Print the messages a running node receives for a module (and topic) as they arrive.
    Listen(listen::ListenArgs),
    /// List, add or remove the topics a running node subscribes to.
    Topics(names::NamesArgs),
    /// List, add or remove the groups a running node is a member of.
    Groups(names::NamesArgs),
    /// Subscribe, publish or multicast through a node's SDK channel port (AMOP), with an
    /// SDK certificate.
    Amop(amop::AmopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run_init(a),
        Command::AddNode(a) => add_node::run(a),
        Command::RemoveNode(a) => remove_node::run(a),
        Command::Blacklist(a) => blacklist::run(a),
        Command::SdkCerts(a) => init::run_sdk_certs(a),
        Command::NodeId(a) => init::run_node_id(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Node(a) => node::run(a, &cli.log),
        Command::Demo(a) => demo::run(a),
        Command::Peers(a) => peers::run(a),
        Command::Send(a) => send::run(a),
        Command::Ping(a) => ping::run(a),
        Command::Status(a) => status::run(a),
        Command::Listen(a) => listen::run(a),
        Command::Topics(a) => names::run(chainmesh_admin::NameKind::Topic, a),
        Command::Groups(a) => names::run(chainmesh_admin::NameKind::Group, a),
        Command::Amop(a) => amop::run(a, &cli.log),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime every long-running command uses.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}
