//! `chainmesh inspect`: decode one P2P packet given as hex and print it as JSON.

use std::io::Write;

use anyhow::Context;

use chainmesh::config::DEFAULT_MAX_PACKET;
use chainmesh::identity::NodeId;
use chainmesh::wire::{inspect_view, Packet, WireError};

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The packet as hex; whitespace and a `0x` prefix are allowed, and it may be split over
    /// several arguments.
    #[arg(value_name = "HEX", required = true, num_args = 1..)]
    hex: Vec<String>,
    /// Largest packet accepted, in bytes, as the `p2p.max_packet_size` config key.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PACKET)]
    max_packet_size: u32,
    /// The node ID of the peer the packet came from. A packet in direct form (flag
    /// `DIRECT`) leaves its source out because the link names it: this names it instead.
    #[arg(long, value_name = "NODE_ID")]
    from: Option<NodeId>,
}

/// Decodes the packet and prints it; a malformed packet is an error carrying the decoder's
/// message.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = parse_hex(&args.hex)?;
    let packet = match &args.from {
        Some(peer) => Packet::decode_exact_from(&bytes, args.max_packet_size, peer)?,
        None => Packet::decode_exact(&bytes, args.max_packet_size).map_err(|e| match e {
            WireError::DirectOffLink => anyhow::anyhow!("{e}; name the peer with --from NODE_ID"),
            other => other.into(),
        })?,
    };
    let json = serde_json::to_string_pretty(&inspect_view(&packet))
        .context("cannot render the packet as JSON")?;
    // `writeln!` instead of `println!`, which panics when stdout is a closed pipe.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}").context("cannot write to stdout")?;
    Ok(())
}

/// Joins the arguments into bytes, dropping whitespace and a `0x` before any word.
fn parse_hex(words: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut digits = String::new();
    for word in words.iter().flat_map(|w| w.split_whitespace()) {
        let word = word
            .strip_prefix("0x")
            .or_else(|| word.strip_prefix("0X"))
            .unwrap_or(word);
        digits.push_str(word);
    }
    if digits.is_empty() {
        anyhow::bail!("HEX is empty: give the packet's bytes as hexadecimal");
    }
    hex::decode(&digits).map_err(|e| anyhow::anyhow!("HEX is not a byte string: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn hex_tolerates_whitespace_and_prefix() {
        let want = vec![0, 0, 0, 0x0e];
        assert_eq!(parse_hex(&words(&["0x0000000e"])).unwrap(), want);
        assert_eq!(parse_hex(&words(&[" 0000\n000E \t"])).unwrap(), want);
        assert_eq!(parse_hex(&words(&["0X0000", "000e"])).unwrap(), want);
    }

    #[test]
    fn bad_hex_is_an_error() {
        let e = parse_hex(&words(&["abc"])).unwrap_err().to_string();
        assert!(e.contains("HEX") && e.contains("Odd number"), "{e}");
        assert!(parse_hex(&words(&["zz"])).is_err());
        assert!(parse_hex(&words(&["  "])).is_err());
    }

    #[test]
    fn malformed_packet_reports_the_decoder_error() {
        let args = InspectArgs {
            hex: words(&["0000000d0000000100000007"]),
            max_packet_size: DEFAULT_MAX_PACKET,
            from: None,
        };
        let e = run(args).unwrap_err().to_string();
        assert!(e.contains("Length field is 13"), "{e}");
    }
}
