//! What a session still held for its peer when it ended, and how to read it back as packets.
//!
//! The outbox keeps no record per frame (a send is one copy into a shared buffer, and must
//! stay so), so what is left when a session ends is bytes: the chunks never handed to the
//! stream, and the chunk the writer had handed over, with how many of its bytes the stream
//! took. They are cut back into packets only here, once, when a session ends with something
//! left; the send path pays nothing for it.

use bytes::Bytes;

use crate::wire::{Decoder, Packet};

/// Whether a frame a session left behind may have reached the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// Never handed to the stream: the peer cannot have it from this link.
    Unsent,
    /// Handed to the stream, whose write had not completed: some or all of its bytes may be
    /// on the wire (or in a TLS record under way), so the peer may have it.
    MaybeSent,
}

/// What a session held for its peer and had not finished writing when it ended, as bytes.
///
/// Every chunk starts at a frame boundary. Frames wholly within the bytes the stream took
/// are written and not part of the leftover.
#[derive(Debug, Default)]
pub struct Leftover {
    /// The chunks being written, whole, each with how many of its bytes the stream took.
    writing: Vec<(Bytes, usize)>,
    /// Chunks never handed to the stream, in queue order.
    queued: Vec<Bytes>,
}

/// The packets of a [`Leftover`], in queue order, each with its [`Fate`].
#[derive(Debug, Default)]
pub struct LeftPackets {
    /// The packets not wholly written.
    pub packets: Vec<(Packet, Fate)>,
    /// Bytes that did not decode as packets: none from an outbox filled by this node's own
    /// encoders.
    pub undecoded: usize,
}

impl Leftover {
    /// A leftover of `writing` (chunks handed to the stream, with the bytes it took of each)
    /// and `queued` (chunks never handed over), both in queue order.
    pub fn new(mut writing: Vec<(Bytes, usize)>, mut queued: Vec<Bytes>) -> Self {
        writing.retain(|(chunk, written)| *written < chunk.len());
        queued.retain(|chunk| !chunk.is_empty());
        Leftover { writing, queued }
    }

    /// Whether nothing was left.
    pub fn is_empty(&self) -> bool {
        self.writing.is_empty() && self.queued.is_empty()
    }

    /// Cuts the leftover into packets with `decoder` (which says who a packet in direct
    /// form is from: for what this node queued, this node). A frame in a chunk being written
    /// that the stream took only part of, or none of, is [`Fate::MaybeSent`]; one in a queued
    /// chunk is [`Fate::Unsent`].
    pub fn packets(self, decoder: &mut Decoder) -> LeftPackets {
        let mut out = LeftPackets::default();
        for (chunk, written) in self.writing {
            cut(chunk, written, Fate::MaybeSent, decoder, &mut out);
        }
        for chunk in self.queued {
            cut(chunk, 0, Fate::Unsent, decoder, &mut out);
        }
        out
    }
}

/// Cuts `chunk` into packets, keeping those that end past its first `written` bytes.
fn cut(mut chunk: Bytes, written: usize, fate: Fate, decoder: &mut Decoder, out: &mut LeftPackets) {
    let mut at = 0usize;
    while !chunk.is_empty() {
        let before = chunk.len();
        match decoder.decode_shared(&mut chunk) {
            Ok(Some((packet, frame))) => {
                at = at.saturating_add(frame.len());
                if at > written {
                    out.packets.push((packet, fate));
                }
            }
            // A malformed packet was consumed: skip it and read on.
            Err(_) if chunk.len() < before => {
                let used = before - chunk.len();
                at = at.saturating_add(used);
                out.undecoded = out.undecoded.saturating_add(used);
            }
            // A partial packet, or a Length that cannot be read past: nothing more to cut.
            Ok(None) | Err(_) => {
                out.undecoded = out.undecoded.saturating_add(chunk.len());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::wire::{Ext, PacketType};

    const US: NodeId = NodeId::from_bytes([1; 64]);

    fn packet(seq: u32, len: usize) -> Packet {
        Packet {
            version: 2,
            packet_type: PacketType(0x7f),
            seq,
            ext: Ext(0),
            options: None,
            payload: Bytes::from(vec![0xab; len]),
        }
    }

    /// The packets of `seqs` (payload `len` bytes each) back to back, and each one's length.
    fn chunk(seqs: &[u32], len: usize) -> (Bytes, usize) {
        let mut out = Vec::new();
        for &s in seqs {
            out.extend_from_slice(&packet(s, len).to_bytes());
        }
        let one = packet(0, len).to_bytes().len();
        (Bytes::from(out), one)
    }

    fn seqs_and_fates(left: Leftover) -> (Vec<(u32, Fate)>, usize) {
        let cut = left.packets(&mut Decoder::on_link(u32::MAX, US));
        let seqs = cut.packets.iter().map(|(p, f)| (p.seq, *f)).collect();
        (seqs, cut.undecoded)
    }

    #[test]
    fn queued_chunks_are_unsent_and_the_chunk_being_written_is_maybe_sent_from_its_cut() {
        let (writing, one) = chunk(&[1, 2, 3, 4], 10);
        let (queued_a, _) = chunk(&[5, 6], 10);
        let (queued_b, _) = chunk(&[7], 100_000);
        // Packet 1 and half of packet 2 were taken by the stream.
        let left = Leftover::new(vec![(writing, one + one / 2)], vec![queued_a, queued_b]);
        let (got, undecoded) = seqs_and_fates(left);
        use Fate::*;
        assert_eq!(
            got,
            [
                (2, MaybeSent),
                (3, MaybeSent),
                (4, MaybeSent),
                (5, Unsent),
                (6, Unsent),
                (7, Unsent)
            ]
        );
        assert_eq!(undecoded, 0);
    }

    #[test]
    fn a_packet_written_to_its_last_byte_is_not_left_over() {
        let (writing, one) = chunk(&[1, 2], 10);
        let (got, _) = seqs_and_fates(Leftover::new(vec![(writing.clone(), one)], vec![]));
        assert_eq!(got, [(2, Fate::MaybeSent)]);
        // Nothing of it taken: every packet of the chunk was handed over all the same.
        let (got, _) = seqs_and_fates(Leftover::new(vec![(writing.clone(), 0)], vec![]));
        assert_eq!(got, [(1, Fate::MaybeSent), (2, Fate::MaybeSent)]);
        let all = Leftover::new(vec![(writing.clone(), writing.len())], vec![Bytes::new()]);
        assert!(all.is_empty(), "a wholly written chunk leaves nothing");
        assert!(seqs_and_fates(all).0.is_empty());
    }

    #[test]
    fn bytes_that_are_not_packets_are_counted_not_trusted() {
        let (good, _) = chunk(&[1], 10);
        // A whole packet of an unknown layout (Length 14, a header only), then a lone Length.
        let mut bad = packet(2, 0).to_bytes().to_vec();
        bad.extend_from_slice(&[0, 0, 0, 3]);
        let (got, undecoded) = seqs_and_fates(Leftover::new(vec![], vec![Bytes::from(bad), good]));
        // The header-only packet still decodes; the lone Length (too short) does not.
        assert_eq!(got, [(2, Fate::Unsent), (1, Fate::Unsent)]);
        assert_eq!(undecoded, 4);
        // A chunk cut short (a partial last packet) keeps what decoded before it.
        let (whole, _) = chunk(&[3, 4], 10);
        let short = whole.slice(..whole.len() - 1);
        let (got, undecoded) = seqs_and_fates(Leftover::new(vec![], vec![short]));
        assert_eq!(got, [(3, Fate::Unsent)]);
        assert!(undecoded > 0);
    }
}
