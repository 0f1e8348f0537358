//! `chainmesh ping`: echo requests from a running node to another, through the network,
//! like `ping(8)`.

use std::time::Duration;

use anyhow::bail;

use super::client::{AdminClient, TokenArgs};
use super::inventory::InventoryArgs;
use super::resolve;
use chainmesh::identity::NodeId;
use chainmesh_admin::{PingRequest, PingResult};

/// Arguments of `ping`.
#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// The pinging node's admin API address (`host:port`).
    #[arg(long, default_value = "127.0.0.1:31300")]
    admin: String,
    #[command(flatten)]
    token: TokenArgs,
    /// The node to ping: its ID, a unique prefix of it, or its name in nodes.json.
    #[arg(long)]
    to: String,
    #[command(flatten)]
    inventory: InventoryArgs,
    /// How many requests to send.
    #[arg(long, short = 'c', default_value_t = 4)]
    count: u32,
    /// Milliseconds between requests.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Milliseconds to wait for each response.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Payload bytes per request.
    #[arg(long, short = 's', default_value_t = 0)]
    size: usize,
}

/// Runs `ping`: one line per request with its round-trip time and hop count, then a
/// summary. Fails when no response came back at all.
pub fn run(args: PingArgs) -> anyhow::Result<()> {
    let client = AdminClient::with_token(&args.admin, args.token.token()?);
    let target: NodeId = resolve::node_id_via(&args.to, args.inventory.load()?.as_ref(), &client)?;
    let to = target.short();
    println!(
        "PING {to} from {} ({} payload bytes)",
        args.admin, args.size
    );
    let mut rtts = Vec::new();
    for i in 0..args.count {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
        let req = PingRequest {
            to: target.to_string(),
            timeout_ms: Some(args.timeout_ms),
            size: args.size,
        };
        match client.post::<_, PingResult>("/v1/ping", &req) {
            Ok(r) => {
                let ms = r.rtt_us as f64 / 1000.0;
                println!(
                    "reply from {to}: seq={} hops={} time={ms:.3} ms",
                    i + 1,
                    r.hops
                );
                rtts.push(ms);
            }
            Err(e) => println!("no reply from {to}: seq={}: {e:#}", i + 1),
        }
    }
    let lost = args.count as usize - rtts.len();
    let loss = if args.count == 0 {
        0.0
    } else {
        100.0 * lost as f64 / f64::from(args.count)
    };
    println!(
        "--- {to} ping statistics ---\n{} sent, {} received, {loss:.0}% loss",
        args.count,
        rtts.len()
    );
    if rtts.is_empty() {
        bail!("no response from {to}");
    }
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
    println!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
    Ok(())
}
