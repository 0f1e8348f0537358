//! `chainmesh amop`: subscribe, publish and multicast through a node's channel port, as an
//! SDK application would, with the SDK certificate `init --sdk` or `sdk-certs` wrote.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use chainmesh::amop::{AmopKind, Client, ClientOptions, PublishOutcome};
use chainmesh::identity::{load_sdk_identity, Identity};
use chainmesh::wire::channel_result;

use crate::logging::LogArgs;

/// Arguments of `amop`.
#[derive(Debug, clap::Args)]
pub struct AmopArgs {
    #[command(subcommand)]
    command: AmopCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AmopCommand {
    /// Print every message of a topic as it arrives, one line each (`unicast TOPIC PAYLOAD`
    /// or `multicast TOPIC PAYLOAD`), acknowledging unicasts; runs until killed.
    Subscribe(SubscribeArgs),
    /// Send DATA to one subscriber of the topic and print the result code and its ack.
    /// Exits non-zero unless a subscriber acked with result 0.
    Publish(PublishArgs),
    /// Send DATA to every subscriber of the topic and print the node's result code.
    Multicast(MulticastArgs),
}

/// Where to connect and with which certificate.
#[derive(Debug, clap::Args)]
struct Target {
    /// The node's channel port (`host:port`, its `[channel] listen`).
    #[arg(long, value_name = "ADDR")]
    node: String,
    /// Directory holding ca.crt, sdk.crt and sdk.key (`init --sdk` writes DIR/sdk).
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SubscribeArgs {
    #[command(flatten)]
    target: Target,
    /// A topic to subscribe to; repeat for several.
    #[arg(long, required = true)]
    topic: Vec<String>,
    /// A unicast is acknowledged with this prefix followed by its payload.
    #[arg(long, default_value = "ack:")]
    ack_prefix: String,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    target: Target,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// How long to wait for the outcome: a number with ms, s or m (`10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Take DATA as hex instead of text.
    #[arg(long)]
    hex: bool,
    /// What to send.
    data: String,
}

#[derive(Debug, clap::Args)]
struct MulticastArgs {
    #[command(flatten)]
    target: Target,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Take DATA as hex instead of text.
    #[arg(long)]
    hex: bool,
    /// What to send.
    data: String,
}

/// Runs `amop`.
pub fn run(args: AmopArgs, log: &LogArgs) -> anyhow::Result<()> {
    crate::logging::init_default(log);
    let rt = super::runtime()?;
    match args.command {
        AmopCommand::Subscribe(a) => rt.block_on(subscribe(a)),
        AmopCommand::Publish(a) => rt.block_on(publish(a)),
        AmopCommand::Multicast(a) => rt.block_on(multicast(a)),
    }
}

async fn connect(target: &Target) -> anyhow::Result<Client> {
    // Formatted with Display alone: these errors already name their cause, which a source
    // chain would repeat.
    let identity: Identity = load_sdk_identity(&target.certs)
        .map_err(|e| anyhow!("--certs {}: {e}", target.certs.display()))?;
    Client::connect(&target.node, &identity, ClientOptions::default())
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let client = connect(&args.target).await?;
    let mut sub = client.subscribe(args.topic.iter().cloned())?;
    eprintln!(
        "subscribed to {} at {}",
        args.topic.join(", "),
        args.target.node
    );
    let mut out = std::io::stdout().lock();
    while let Some(msg) = sub.recv().await {
        let kind = match msg.kind {
            AmopKind::Unicast => "unicast",
            AmopKind::Multicast => "multicast",
        };
        // Printed before the ack goes out, so the line is there once the publisher has it.
        writeln!(out, "{kind} {} {}", msg.topic, printable(&msg.payload))
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        if msg.kind == AmopKind::Unicast {
            let mut ack = args.ack_prefix.as_bytes().to_vec();
            ack.extend_from_slice(&msg.payload);
            if let Err(e) = msg.ack(&ack) {
                eprintln!("cannot ack a unicast on {}: {e}", msg.topic);
            }
        }
    }
    bail!("the session with {} ended", args.target.node)
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let data = payload(&args.data, args.hex)?;
    let client = connect(&args.target).await?;
    let outcome = client.publish(&args.topic, &data, args.timeout).await?;
    match outcome {
        PublishOutcome::Acked {
            result, payload, ..
        } => {
            println!("result {result} ack: {}", printable(&payload));
            if result != channel_result::OK {
                bail!("the subscriber answered with result {result}");
            }
            Ok(())
        }
        PublishOutcome::NoSubscriber => {
            println!("result {} (no subscriber)", channel_result::NO_SUBSCRIBER);
            bail!("no subscriber of topic {}", args.topic)
        }
        PublishOutcome::Failed(code) => {
            println!("result {code} ({})", failure(code));
            bail!("the message was not delivered: result {code}")
        }
        PublishOutcome::TimedOut => {
            bail!("no answer within {:?}", args.timeout)
        }
    }
}

async fn multicast(args: MulticastArgs) -> anyhow::Result<()> {
    let data = payload(&args.data, args.hex)?;
    let client = connect(&args.target).await?;
    let result = client.multicast(&args.topic, &data).await?;
    println!("result {result}");
    if result != channel_result::OK {
        bail!(
            "the node refused the multicast: result {result} ({})",
            failure(result)
        );
    }
    Ok(())
}

/// What a failure code means, in words.
fn failure(code: i32) -> &'static str {
    match code {
        channel_result::ALL_FAILED => "every subscriber failed or timed out",
        channel_result::OVER_LIMIT => "over a limit",
        channel_result::TIMEOUT => "timed out",
        channel_result::CLIENT_UNAVAILABLE => "subscriber unavailable",
        _ => "failed",
    }
}

fn payload(data: &str, hex: bool) -> anyhow::Result<Vec<u8>> {
    if hex {
        hex::decode(data.trim()).map_err(|e| anyhow!("DATA is not hex: {e}"))
    } else {
        Ok(data.as_bytes().to_vec())
    }
}

/// A payload on one line: UTF-8 as it is, with control characters (newlines included)
/// escaped so one message stays one line.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, 1000)
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s or 500ms"))?;
    let ms = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("`{text}` must be above zero and reasonable"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration(&format!("{}m", u64::MAX)).is_err());
    }

    #[test]
    fn payloads_print_on_one_line() {
        assert_eq!(printable(b"hello-bar"), "hello-bar");
        assert_eq!(printable(b"a\nb"), "a\\nb");
        assert_eq!(printable(b"\xff"), "\u{fffd}");
    }
}
