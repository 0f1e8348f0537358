//! `chainmesh topics`: list, subscribe or unsubscribe a running node's topics through its
//! admin API. A change lasts until the node stops; `node.topics` in its config is what it
//! subscribes to at start.

use super::client::{AdminClient, TokenArgs};
use chainmesh_admin::{TopicRequest, TopicsView};

/// Arguments of `topics`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
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
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// Print the topics the node subscribes to, one a line.
    List,
    /// Subscribe the node to a topic: multicasts to it are delivered there from now on.
    Add {
        /// The topic.
        topic: String,
    },
    /// Unsubscribe the node from a topic.
    Remove {
        /// The topic.
        topic: String,
    },
}

/// Runs `topics`.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let client = AdminClient::with_token(&args.admin, args.token.token()?);
    let (view, note): (TopicsView, Option<(String, &str)>) = match args.command {
        TopicsCommand::List => (client.get("/v1/topics")?, None),
        TopicsCommand::Add { topic } => {
            let v = client.post(
                "/v1/topics",
                &TopicRequest {
                    topic: topic.clone(),
                },
            )?;
            (v, Some((topic, "already subscribed")))
        }
        TopicsCommand::Remove { topic } => {
            let path = format!("/v1/topics/{}", encode_segment(&topic));
            (client.delete(&path)?, Some((topic, "was not subscribed")))
        }
    };
    if let Some((topic, unchanged)) = note {
        if view.changed == Some(false) {
            eprintln!("`{topic}`: {unchanged}");
        }
    }
    for t in &view.topics {
        println!("{t}");
    }
    Ok(())
}

/// `topic` as one path segment: every byte but unreserved ones percent-encoded.
fn encode_segment(topic: &str) -> String {
    topic
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_topic_goes_into_the_path_as_one_segment() {
        assert_eq!(super::encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(super::encode_segment("blocks-1"), "blocks-1");
    }
}
