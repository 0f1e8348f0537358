//! `chainmesh send`: send a unicast, multicast or broadcast from a running node through its
//! admin API.

use anyhow::bail;

use super::client::{AdminClient, TokenArgs};
use super::inventory::InventoryArgs;
use super::resolve;
use chainmesh::identity::NodeId;
use chainmesh_admin::{SendRequest, SendResult};

/// Arguments of `send`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "topic", "group"])))]
pub struct SendArgs {
    /// The sending node's admin API address (`host:port`).
    #[arg(long, default_value = "127.0.0.1:31300")]
    admin: String,
    #[command(flatten)]
    token: TokenArgs,
    /// Unicast to this node: its ID, a unique prefix of it, or its name in nodes.json.
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    inventory: InventoryArgs,
    /// Multicast to the subscribers of this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Broadcast to the members of this group.
    #[arg(long)]
    group: Option<String>,
    /// The module the data is for.
    #[arg(long)]
    module: u16,
    /// Take DATA as hex instead of text.
    #[arg(long)]
    hex: bool,
    /// The data.
    #[arg(value_name = "DATA", default_value = "")]
    data: String,
}

/// Runs `send`: prints where the message was queued; fails if it reached no target.
pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let client = AdminClient::with_token(&args.admin, args.token.token()?);
    let (data, data_hex) = if args.hex {
        (None, Some(args.data))
    } else {
        (Some(args.data), None)
    };
    let to = match &args.to {
        Some(spec) => Some(resolve::node_id_via(
            spec,
            args.inventory.load()?.as_ref(),
            &client,
        )?),
        None => None,
    };
    let req = SendRequest {
        to: to.map(|id| id.to_string()),
        topic: args.topic,
        group: args.group,
        module: args.module,
        data,
        data_hex,
    };
    let r: SendResult = client.post("/v1/messages", &req)?;
    let short = |ids: &[NodeId]| ids.iter().map(NodeId::short).collect::<Vec<_>>().join(", ");
    println!(
        "{}: queued for {} node(s){}",
        r.kind,
        r.queued.len(),
        if r.queued.is_empty() {
            String::new()
        } else {
            format!(" ({})", short(&r.queued))
        }
    );
    if !r.unreachable.is_empty() {
        println!("unreachable: {}", short(&r.unreachable));
    }
    if !r.dropped.is_empty() {
        println!("dropped (queue full or link closed): {}", short(&r.dropped));
    }
    if r.queued.is_empty() && r.kind == "unicast" {
        bail!("the message was not queued");
    }
    Ok(())
}
