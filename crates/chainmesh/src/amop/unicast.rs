//! The publisher side of a unicast: pick a random node holding the topic (this one
//! included), hand it the frame, and fail over to the next holder when one answers 104,
//! does not answer within `forward_timeout`, or becomes unreachable. 100 when no node holds
//! the topic, 104 when every holder failed.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::deliver;
use super::failover::Tried;
use super::sessions::{InFlight, SdkSession};
use super::shared::Shared;
use super::view::Counters;
use crate::identity::NodeId;
use crate::wire::{channel_result, AmopForward, AmopForwardKind, ChannelPack, ChannelType};

/// Delivers the 0x30 `raw` (decoded: `pack`, on `topic`) that session `from` published, and
/// answers `from` with the outcome. `_slot` is its place among `from`'s requests in flight.
pub(crate) async fn publish(
    shared: Arc<Shared>,
    from: Arc<SdkSession>,
    pack: ChannelPack,
    raw: Bytes,
    topic: String,
    _slot: InFlight,
) {
    if let Some(answer) = route(&shared, &pack, &raw, &topic).await {
        shared.send_frame(&from, answer);
    }
}

/// The answer to the publisher.
async fn route(
    shared: &Arc<Shared>,
    pack: &ChannelPack,
    raw: &Bytes,
    topic: &str,
) -> Option<Bytes> {
    let mut tried = Tried::default();
    loop {
        let holders = shared.holders(topic);
        let Some(node) = tried.pick(&holders, rand::random::<u32>()) else {
            break;
        };
        let answer = if node == shared.id {
            let pushed = match deliver::slot(shared) {
                Ok(slot) => deliver::push(shared, slot, pack, raw, topic).await,
                Err(over) => over,
            };
            pushed.into_answer(shared, pack)
        } else {
            forward(shared, node, raw).await
        };
        match answer {
            Some(frame) if result_of(&frame) != channel_result::ALL_FAILED => {
                Counters::add(&shared.stats.unicast_acked);
                return Some(frame);
            }
            _ => debug!(node = %node.short(), topic, "holder failed the unicast; failing over"),
        }
    }
    let (result, data, counter) = if tried.is_empty() {
        let counter = &shared.stats.unicast_no_subscriber;
        (channel_result::NO_SUBSCRIBER, Bytes::new(), counter)
    } else {
        let counter = &shared.stats.unicast_failed;
        (channel_result::ALL_FAILED, pack.data.clone(), counter)
    };
    Counters::add(counter);
    shared.encode(&pack.answer(ChannelType::AMOP_RESPONSE, result, data))
}

/// Hands `raw` to node `dst` and waits for its answer frame: `None` if it could not be
/// sent, or no answer came within `forward_timeout`, or `dst` became unreachable meanwhile.
async fn forward(shared: &Shared, dst: NodeId, raw: &Bytes) -> Option<Bytes> {
    let request = shared.next_request();
    let answer = shared.forwards.wait(request, dst)?;
    let forward = AmopForward {
        kind: AmopForwardKind::UnicastRequest,
        request,
        frame: raw.clone(),
    };
    let exchange = async {
        if let Err(e) = shared.send_to(dst, &forward).await {
            debug!(node = %dst.short(), error = %e, "cannot forward a unicast");
            return None;
        }
        answer.await.ok().flatten()
    };
    let got = tokio::time::timeout(shared.cfg.forward_timeout, exchange).await;
    shared.forwards.cancel(&request);
    let frame = got.ok().flatten()?;
    // The holder's word goes to the publisher byte for byte, so it must be an answer to
    // this very frame: anything else (another type, another seq) is a failed holder, not
    // something to hand an SDK that matches answers by seq and type.
    if answers(&frame, pack_seq(raw)) {
        Some(frame)
    } else {
        Counters::add(&shared.stats.forwarded_invalid);
        debug!(node = %dst.short(), "a holder answered a unicast with another frame; failing over");
        None
    }
}

/// The seq field of an encoded channel frame (empty if it is too short to have one).
fn pack_seq(frame: &[u8]) -> &[u8] {
    frame.get(6..38).unwrap_or_default()
}

/// Whether the encoded `frame` is a 0x31 with seq `seq`.
fn answers(frame: &[u8], seq: &[u8]) -> bool {
    let kind = frame.get(4..6).map(|k| u16::from_be_bytes([k[0], k[1]]));
    kind == Some(ChannelType::AMOP_RESPONSE.0) && !seq.is_empty() && pack_seq(frame) == seq
}

/// The result field of an encoded channel frame (0 if it is too short to have one).
fn result_of(frame: &[u8]) -> i32 {
    frame
        .get(38..42)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, i32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ZERO_SEQ;

    #[test]
    fn the_result_is_read_from_the_frame_header() {
        let p = ChannelPack::new(ChannelType::AMOP_RESPONSE, ZERO_SEQ, Bytes::new());
        let frame = p
            .answer(ChannelType::AMOP_RESPONSE, 104, Bytes::new())
            .to_bytes(1024)
            .unwrap();
        assert_eq!(result_of(&frame), 104);
        assert_eq!(result_of(&frame[..20]), 0);
    }

    #[test]
    fn only_a_0x31_with_the_request_seq_answers_it() {
        let seq = *b"d13f1ca0e8a611f1970302fc00000001";
        let request = ChannelPack::new(ChannelType::AMOP_REQUEST, seq, Bytes::new());
        let raw = request.to_bytes(1024).unwrap();
        let ack = request
            .answer(ChannelType::AMOP_RESPONSE, 0, Bytes::new())
            .to_bytes(1024)
            .unwrap();
        assert!(answers(&ack, pack_seq(&raw)));
        // A frame of another type, or for another seq, answers nothing.
        assert!(!answers(&raw, pack_seq(&raw)));
        let other = ChannelPack::new(ChannelType::AMOP_RESPONSE, ZERO_SEQ, Bytes::new())
            .to_bytes(1024)
            .unwrap();
        assert!(!answers(&other, pack_seq(&raw)));
        assert!(!answers(&ack[..10], pack_seq(&raw)));
    }
}
