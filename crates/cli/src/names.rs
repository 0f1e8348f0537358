//! `chainmesh topics` and `chainmesh groups`: list or change a running node's topic
//! subscriptions or group memberships through its admin API (`/v1/topics`, `/v1/groups`).
//! Both are lists of names in the node's status and work alike, so one command serves both,
//! told apart by a [`NameKind`]. A change lasts until the node stops; `node.topics` and
//! `p2p.groups` in its config are what it starts with.

use super::client::{AdminClient, TokenArgs};
use chainmesh_admin::{name_request, NameKind, NamesView};

/// Arguments of `topics` and `groups`.
#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// The node's admin API address (`host:port`).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:31300",
        global = true
    )]
    admin: String,
    #[command(flatten)]
    token: TokenArgs,
    #[command(subcommand)]
    command: NamesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum NamesCommand {
    /// Print the node's topics (or groups), one a line.
    List,
    /// Subscribe the node to the topic (or make it a member of the group): multicasts to the
    /// topic (broadcasts to the group) are delivered there from now on.
    Add {
        /// The topic or group.
        name: String,
    },
    /// Unsubscribe the node from the topic (or take it out of the group).
    Remove {
        /// The topic or group.
        name: String,
    },
}

/// The node's list of `kind`, as its admin API says.
pub fn list(client: &AdminClient, kind: NameKind) -> anyhow::Result<NamesView> {
    view_of(kind, &client.get(kind.path())?)
}

/// Runs `topics` or `groups`, as `kind` says: prints the list as it is after the command.
pub fn run(kind: NameKind, args: NamesArgs) -> anyhow::Result<()> {
    let client = AdminClient::with_token(&args.admin, args.token.token()?);
    let (if_added, if_removed) = kind.unchanged();
    let (view, note) = match args.command {
        NamesCommand::List => (list(&client, kind)?, None),
        NamesCommand::Add { name } => {
            let v: serde_json::Value = client.post(kind.path(), &name_request(kind, &name))?;
            (view_of(kind, &v)?, Some((name, if_added)))
        }
        NamesCommand::Remove { name } => {
            let path = format!("{}/{}", kind.path(), crate::client::path_segment(&name));
            let v: serde_json::Value = client.delete(&path)?;
            (view_of(kind, &v)?, Some((name, if_removed)))
        }
    };
    if let Some((name, unchanged)) = note {
        if view.changed == Some(false) {
            eprintln!("`{name}`: {unchanged}");
        }
    }
    for n in &view.names {
        println!("{n}");
    }
    Ok(())
}

fn view_of(kind: NameKind, v: &serde_json::Value) -> anyhow::Result<NamesView> {
    NamesView::from_json(kind, v).map_err(|e| anyhow::anyhow!("{}: {e}", kind.path()))
}
