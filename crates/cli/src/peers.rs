//! `chainmesh peers list|add|remove`: look at and change a running node's peers.

use serde::Deserialize;

use super::client::{AdminClient, TokenArgs};
use super::inventory::InventoryArgs;
use super::resolve;

/// Arguments of `peers`.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    #[command(subcommand)]
    action: Action,
    /// The node's admin API address (`host:port`).
    #[arg(long, global = true, default_value = "127.0.0.1:31300")]
    admin: String,
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List connected peers and configured peers that are not connected.
    List,
    /// Add a peer and dial it; it is written to the node's config file.
    Add {
        /// The peer's P2P address (`ip:port`), or its name or node ID (prefix) in nodes.json.
        address: String,
    },
    /// Remove a peer and close its connection.
    Remove {
        /// The peer's P2P address as configured, or its name or node ID (prefix) in
        /// nodes.json.
        address: String,
    },
}

#[derive(Debug, Deserialize)]
struct PeersView {
    peers: Vec<Peer>,
}

#[derive(Debug, Deserialize)]
struct Peer {
    node_id: Option<String>,
    address: String,
    state: String,
    direction: Option<String>,
    connected_since_ms: Option<u64>,
    bytes_in: u64,
    bytes_out: u64,
    next_attempt_ms: Option<u64>,
    last_error: Option<String>,
}

/// Runs `peers`.
pub fn run(args: PeersArgs) -> anyhow::Result<()> {
    let token = match args.action {
        Action::List => None,
        Action::Add { .. } | Action::Remove { .. } => args.token.token()?,
    };
    let client = AdminClient::with_token(&args.admin, token);
    match args.action {
        Action::List => {
            let view: PeersView = client.get("/v1/peers")?;
            print!("{}", table(&view.peers, now_ms()));
        }
        Action::Add { address } => {
            let address = resolve::p2p_address(&address, args.inventory.load()?.as_ref())?;
            let r: serde_json::Value =
                client.post("/v1/peers", &serde_json::json!({ "address": address }))?;
            if r.get("added").and_then(|v| v.as_bool()) == Some(true) {
                println!("added {address}");
            } else {
                println!("{address} was already a peer");
            }
        }
        Action::Remove { address } => {
            let address = resolve::p2p_address(&address, args.inventory.load()?.as_ref())?;
            let path = format!("/v1/peers/{}", crate::client::path_segment(&address));
            let _: serde_json::Value = client.delete(&path)?;
            println!("removed {address}");
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn table(peers: &[Peer], now: u64) -> String {
    let mut out = format!(
        "{:<10} {:<22} {:<12} {:<9} {:>9} {:>12} {:>12}  {}\n",
        "NODE", "ADDRESS", "STATE", "DIR", "UP", "BYTES IN", "BYTES OUT", "LAST EVENT"
    );
    for p in peers {
        let node = p
            .node_id
            .as_deref()
            .map(|id| &id[..id.len().min(8)])
            .unwrap_or("-");
        let up = p
            .connected_since_ms
            .map(|t| human_ms(now.saturating_sub(t)))
            .unwrap_or_else(|| "-".into());
        let state = match p.next_attempt_ms {
            Some(t) if p.state == "backing-off" => {
                format!("retry {}", human_ms(t.saturating_sub(now)))
            }
            _ => p.state.clone(),
        };
        out.push_str(&format!(
            "{:<10} {:<22} {:<12} {:<9} {:>9} {:>12} {:>12}  {}\n",
            node,
            p.address,
            state,
            p.direction.as_deref().unwrap_or("-"),
            up,
            p.bytes_in,
            p.bytes_out,
            p.last_error.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_connected_and_backing_off_peers() {
        let peers = vec![
            Peer {
                node_id: Some("ab".repeat(64)),
                address: "127.0.0.1:30301".into(),
                state: "connected".into(),
                direction: Some("outbound".into()),
                connected_since_ms: Some(1_000),
                bytes_in: 10,
                bytes_out: 20,
                next_attempt_ms: None,
                last_error: None,
            },
            Peer {
                node_id: None,
                address: "127.0.0.1:30302".into(),
                state: "backing-off".into(),
                direction: None,
                connected_since_ms: None,
                bytes_in: 0,
                bytes_out: 0,
                next_attempt_ms: Some(63_500),
                last_error: Some("tcp connect: refused".into()),
            },
        ];
        let t = table(&peers, 62_000);
        assert!(t.contains("abababab"), "{t}");
        assert!(t.contains("1m1s"), "{t}");
        assert!(t.contains("retry 1.5s"), "{t}");
        assert!(t.contains("tcp connect: refused"), "{t}");
    }
}
