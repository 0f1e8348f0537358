//! `chainmesh blacklist add|remove|list`: edits a node's `p2p.blacklist` in its config file,
//! keeping the rest of the file as it is. The node applies it on SIGHUP (`systemctl reload`),
//! closing a session it now excludes and refusing the node's handshakes from then on.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use chainmesh::config::Config;
use chainmesh::identity::NodeId;

use crate::inventory::InventoryArgs;
use crate::resolve;

/// Arguments of `blacklist`.
#[derive(Debug, clap::Args)]
pub struct BlacklistArgs {
    #[command(subcommand)]
    action: Action,
    /// The node's config file.
    #[arg(long, short, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(flatten)]
    inventory: InventoryArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Add nodes (ID, unique ID prefix or name from nodes.json) to the blacklist.
    Add {
        /// The nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Take nodes off the blacklist.
    Remove {
        /// The nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Print the blacklist.
    List,
}

/// Runs `blacklist`.
pub fn run(args: BlacklistArgs) -> anyhow::Result<()> {
    let current = Config::load(&args.config)?.p2p.blacklist;
    let inventory = args.inventory.load()?;
    let ids = |nodes: &[String]| -> anyhow::Result<Vec<NodeId>> {
        nodes
            .iter()
            .map(|n| resolve::node_id(n, inventory.as_ref(), &current).map_err(Into::into))
            .collect()
    };
    let next: Vec<NodeId> = match &args.action {
        Action::List => {
            for id in &current {
                println!("{id}");
            }
            return Ok(());
        }
        Action::Add { nodes } => {
            let mut next = current.clone();
            for id in ids(nodes)? {
                if !next.contains(&id) {
                    next.push(id);
                }
            }
            next
        }
        Action::Remove { nodes } => {
            let gone = ids(nodes)?;
            current
                .iter()
                .filter(|id| !gone.contains(id))
                .copied()
                .collect()
        }
    };
    write_blacklist(&args.config, &next)?;
    println!(
        "{}: blacklist has {} node(s); reload the node to apply it (systemctl reload, or kill \
         -HUP its pid)",
        args.config.display(),
        next.len()
    );
    Ok(())
}

/// Rewrites `p2p.blacklist`, every other byte of the file kept; the result must load.
fn write_blacklist(file: &Path, ids: &[NodeId]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{}: not TOML", file.display()))?;
    let Some(p2p) = doc
        .get_mut("p2p")
        .and_then(toml_edit::Item::as_table_like_mut)
    else {
        bail!("{}: no [p2p] table", file.display());
    };
    let list: toml_edit::Array = ids.iter().map(|id| id.to_string()).collect();
    p2p.insert("blacklist", toml_edit::value(list));
    let out = doc.to_string();
    Config::parse(&out, file)?;
    let tmp = file.with_extension("toml.new");
    std::fs::write(&tmp, &out).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("{}: cannot replace", file.display()))
}
