//! `nodes.json`: the inventory of a network `init` wrote (`add-node` grows it, `remove-node`
//! shrinks it), read by the commands that take a node by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use chainmesh::identity::NodeId;

/// The inventory's file name, at the bundle root and in every host folder.
pub const INVENTORY_FILE: &str = "nodes.json";
/// The environment variable that names the inventory when `--inventory` is not given.
pub const INVENTORY_ENV: &str = "CHAINMESH_INVENTORY";

/// One node of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryNode {
    /// The node's name (its certificate's common name, `node.name` in its config).
    pub name: String,
    /// The host (IP address) it runs on.
    pub host: String,
    /// Its P2P address, as the other nodes dial it.
    pub p2p: String,
    /// Its admin API address, on its own host.
    pub admin: String,
    /// Its SDK channel port address.
    pub channel: String,
    /// Its node ID.
    pub node_id: NodeId,
    /// Its directory, relative to the bundle root (`127.0.0.2/node2`, or `node2`).
    pub dir: String,
}

/// Every node of the network, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The nodes.
    pub nodes: Vec<InventoryNode>,
}

impl Inventory {
    /// Reads an inventory file.
    pub fn read(file: &Path) -> anyhow::Result<Inventory> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("{}: cannot read", file.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a chainmesh inventory", file.display()))
    }

    /// Writes the inventory, pretty-printed, replacing the file at once: it goes to a
    /// temporary file beside it first, renamed over it, so a reader never sees half of it.
    pub fn write(&self, file: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot encode the inventory")?;
        text.push('\n');
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::write(&tmp, text)
            .with_context(|| format!("{}: cannot write", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, file)
                    .with_context(|| format!("{}: cannot replace", file.display()))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The nodes on `host`, in order.
    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a InventoryNode> + 'a {
        self.nodes.iter().filter(move |n| n.host == host)
    }
}

/// Where a command finds the inventory.
#[derive(Debug, Clone, clap::Args)]
pub struct InventoryArgs {
    /// The network's `nodes.json`, to name nodes by name. Without it: $CHAINMESH_INVENTORY,
    /// else `nodes.json` in the current directory or its parent (a node's directory).
    #[arg(long, value_name = "FILE", global = true)]
    inventory: Option<PathBuf>,
}

impl InventoryArgs {
    /// The inventory given or found, `None` when there is none to find; a file named
    /// explicitly must load.
    pub fn load(&self) -> anyhow::Result<Option<Inventory>> {
        let named = self
            .inventory
            .clone()
            .or_else(|| std::env::var_os(INVENTORY_ENV).map(PathBuf::from));
        if let Some(file) = named {
            return Inventory::read(&file).map(Some);
        }
        for dir in [Path::new("."), Path::new("..")] {
            let file = dir.join(INVENTORY_FILE);
            if file.is_file() {
                return Inventory::read(&file).map(Some);
            }
        }
        Ok(None)
    }
}
