//! `chainmesh listen`: print the messages a running node receives for a module, as they
//! arrive, from its admin API's `/v1/listen` stream.

use std::io::{BufRead, Write};

use anyhow::Context;

use super::client::AdminClient;
use chainmesh_admin::{ListenQuery, ListenedMessage, NameKind};

/// Arguments of `listen`.
#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// The receiving node's admin API address (`host:port`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:31300")]
    admin: String,
    /// The module whose messages to print.
    #[arg(long)]
    module: u16,
    /// Only multicasts to this topic (the node must subscribe to it: `chainmesh topics add`
    /// or `node.topics`).
    #[arg(long)]
    topic: Option<String>,
    /// Print each message as the JSON object the node sends.
    #[arg(long)]
    json: bool,
    /// Exit after this many messages (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// One message as a line: how it came, from whom, and its data (as text when it is UTF-8).
fn format_message(m: &ListenedMessage) -> String {
    let topic = m
        .topic
        .as_ref()
        .map(|t| format!(" topic={t}"))
        .unwrap_or_default();
    let data = match &m.data {
        Some(text) => text.escape_debug().to_string(),
        None => format!("hex:{}", m.data_hex),
    };
    format!(
        "{} from {}{topic} group={} module={} seq={} hops={}{}: {data}",
        m.kind,
        m.src.short(),
        m.group,
        m.module,
        m.seq,
        m.hops,
        if m.request { " request" } else { "" },
    )
}

/// Runs `listen`: a line per message on stdout; notes (listening, lost messages) on stderr.
pub fn run(args: ListenArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin);
    if let Some(topic) = &args.topic {
        let subscribed = crate::names::list(&client, NameKind::Topic)?;
        if !subscribed.names.contains(topic) {
            eprintln!(
                "note: the node does not subscribe to `{topic}`, so multicasts to it are not \
                 delivered there: `chainmesh topics add {topic}` subscribes it"
            );
        }
    }
    let query = ListenQuery {
        module: args.module,
        topic: args.topic.clone(),
    };
    let lines = client.stream(&format!("/v1/listen?{}", query.to_query()))?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    for line in lines.lines() {
        let line = line.context("reading the stream")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("unexpected line: {line}"))?;
        if let Some(head) = value.get("listening") {
            eprintln!("listening: {head}");
            continue;
        }
        if let Some(gap) = value.get("gap") {
            eprintln!("lost {gap} message(s): this reader was too slow for node.tap_buffer");
            continue;
        }
        if args.json {
            writeln!(out, "{line}")
        } else {
            let m: ListenedMessage = serde_json::from_value(value)
                .with_context(|| format!("unexpected line: {line}"))?;
            writeln!(out, "{}", format_message(&m))
        }
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
        seen = seen.saturating_add(1);
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
    }
    anyhow::bail!("the node closed the stream (it stopped)")
}
