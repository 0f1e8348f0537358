//! `chainmesh remove-node`: the counterpart of `add-node`. Takes a node out of the network's
//! `nodes.json` (the root's and every host folder's copy) and its host's scripts, and prints
//! what every remaining member still runs so that the node can never come back: `peers
//! remove` (stop dialling it), `blacklist add` (refuse its certificate) and a reload.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::init::bundle::{self, Install};
use crate::inventory::{Inventory, InventoryNode, INVENTORY_FILE};
use crate::resolve;

/// Arguments of `remove-node`.
#[derive(Debug, clap::Args)]
pub struct RemoveNodeArgs {
    /// The directory `init` wrote: its nodes.json and host folders.
    #[arg(long, short = 'd')]
    pub dir: PathBuf,
    /// The node to remove: its name in nodes.json, or its node ID (or a unique prefix).
    pub node: String,
    /// As for `init`: where the host folders are installed, for the systemd units.
    #[arg(long, value_name = "DIR", default_value = "/opt/chainmesh")]
    pub install_dir: String,
    /// As for `init`: the `chainmesh` binary on the hosts.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/chainmesh")]
    pub bin: String,
}

/// Runs `remove-node`: rewrites the inventories and scripts without the node, then prints,
/// for every remaining member, the commands that cut it off.
pub fn run(args: RemoveNodeArgs) -> anyhow::Result<()> {
    let inv_file = args.dir.join(INVENTORY_FILE);
    let mut inv = Inventory::read(&inv_file)?;
    let gone = take_out(&mut inv, &args.node)
        .with_context(|| format!("{}: cannot remove `{}`", inv_file.display(), args.node))?;
    let folder = args
        .dir
        .join(Path::new(&gone.dir).parent().unwrap_or(Path::new("")));
    let install = Install {
        dir: args.install_dir,
        bin: args.bin,
    };
    bundle::write_all(&args.dir, &inv, &install)?;
    // A host left without nodes is not rewritten by write_all; its copy must not keep
    // naming the node.
    let stale = folder.join(INVENTORY_FILE);
    if folder != args.dir && inv.on_host(&gone.host).next().is_none() && stale.is_file() {
        inv.write(&stale)?;
    }

    eprintln!(
        "removed {} ({}, {}) from {}; stop it on {} (systemctl stop chainmesh-{}, or kill \
         \"$(cat {}/node.pid)\") and delete {}",
        gone.name,
        gone.p2p,
        gone.node_id.short(),
        inv_file.display(),
        gone.host,
        unit_name(&gone),
        gone.dir,
        args.dir.join(&gone.dir).display()
    );
    if !inv.nodes.is_empty() {
        eprintln!("then, on each member's host, cut it off:");
    }
    print!("{}", member_commands(&inv, &gone));
    Ok(())
}

/// Removes the node `spec` names from `inv` and returns it.
fn take_out(inv: &mut Inventory, spec: &str) -> anyhow::Result<InventoryNode> {
    let id = resolve::node_id(spec, Some(inv), &[])?;
    let at = inv
        .nodes
        .iter()
        .position(|n| n.node_id == id)
        .with_context(|| format!("no node with ID {} is listed", id.short()))?;
    Ok(inv.nodes.remove(at))
}

/// The name the node's systemd unit and folder go by.
fn unit_name(n: &InventoryNode) -> &str {
    Path::new(&n.dir)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(&n.name)
}

/// What each remaining member runs to cut `gone` off, a line per command, each prefixed by
/// the member's host. The node is named by address and full ID: the inventory no longer
/// lists it, so its name would not resolve.
fn member_commands(inv: &Inventory, gone: &InventoryNode) -> String {
    let mut out = String::new();
    for m in &inv.nodes {
        let dir = &m.dir;
        let commands = [
            format!(
                "chainmesh peers remove {} --admin {} --token-file {dir}/admin.token",
                gone.p2p, m.admin
            ),
            format!(
                "chainmesh blacklist add {} --config {dir}/config.toml",
                gone.node_id
            ),
            format!(
                "systemctl reload chainmesh-{}   # or: kill -HUP \"$(cat {dir}/node.pid)\"",
                unit_name(m)
            ),
        ];
        for c in commands {
            out.push_str(&format!("  [{}] {c}\n", m.host));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainmesh::identity::NodeId;

    fn node(name: &str, fill: u8) -> InventoryNode {
        InventoryNode {
            name: name.into(),
            host: "10.0.0.1".into(),
            p2p: format!("10.0.0.1:3030{fill}"),
            admin: format!("127.0.0.1:3130{fill}"),
            channel: format!("10.0.0.1:2020{fill}"),
            node_id: NodeId::from_bytes([fill; 64]),
            dir: format!("10.0.0.1/{name}"),
        }
    }

    #[test]
    fn a_node_named_by_name_or_prefix_is_taken_out_and_the_rest_kept_in_order() {
        let all = Inventory {
            nodes: vec![node("node0", 1), node("node1", 2), node("node2", 3)],
        };
        let mut inv = all.clone();
        assert_eq!(take_out(&mut inv, "node1").unwrap(), all.nodes[1]);
        assert_eq!(inv.nodes, [all.nodes[0].clone(), all.nodes[2].clone()]);
        let mut inv = all.clone();
        assert_eq!(take_out(&mut inv, "0303").unwrap(), all.nodes[2]);
        let mut inv = all.clone();
        let e = take_out(&mut inv, "node9").unwrap_err().to_string();
        assert!(e.contains("node9"), "{e}");
        assert_eq!(inv, all);
    }

    #[test]
    fn each_member_gets_peers_remove_blacklist_add_and_a_reload() {
        let inv = Inventory {
            nodes: vec![node("node0", 1)],
        };
        let gone = node("node4", 5);
        let text = member_commands(&inv, &gone);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("[10.0.0.1] chainmesh peers remove 10.0.0.1:30305 --admin 127.0.0.1:31301 --token-file 10.0.0.1/node0/admin.token"), "{text}");
        assert!(
            lines[1].contains(&format!(
                "blacklist add {} --config 10.0.0.1/node0/config.toml",
                gone.node_id
            )),
            "{text}"
        );
        assert!(
            lines[2].contains("systemctl reload chainmesh-node0"),
            "{text}"
        );
    }
}
