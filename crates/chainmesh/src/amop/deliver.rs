//! The subscriber side of a unicast: this node holds the topic, and pushes the frame,
//! unchanged, to one random local subscriber after another until one acks it in time.
//! Where the subscriber is chosen and where it fails over.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::failover::Tried;
use super::shared::{DeliverySlot, Shared};
use super::view::Counters;
use crate::wire::{channel_result, ChannelPack, ChannelSeq, ChannelType};

/// How a push to the local subscribers ended.
pub(crate) enum Pushed {
    /// A subscriber's 0x31, as it sent it.
    Acked(Bytes),
    /// Every subscriber failed, or there was none.
    AllFailed,
    /// `max_in_flight_total` unicasts were being pushed already.
    OverLimit,
}

impl Pushed {
    /// The frame that answers the publisher of `pack`: the ack, or 0x31 with 104 and the
    /// original data, or with 103 and no data.
    pub(crate) fn into_answer(self, shared: &Shared, pack: &ChannelPack) -> Option<Bytes> {
        let (result, data) = match self {
            Pushed::Acked(frame) => return Some(frame),
            Pushed::AllFailed => (channel_result::ALL_FAILED, pack.data.clone()),
            Pushed::OverLimit => (channel_result::OVER_LIMIT, Bytes::new()),
        };
        shared.encode(&pack.answer(ChannelType::AMOP_RESPONSE, result, data))
    }
}

/// A place among the unicasts being pushed to local subscribers, taken before anything is
/// spawned for one; over `max_in_flight_total`, the outcome to answer with (counted).
pub(crate) fn slot(shared: &Arc<Shared>) -> Result<DeliverySlot, Pushed> {
    shared.start_delivery().ok_or_else(|| {
        Counters::add(&shared.stats.over_limit);
        Pushed::OverLimit
    })
}

/// Pushes the 0x30 `raw` (decoded: `pack`, on `topic`) to the local subscribers, one at a
/// time, each given `ack_timeout` to answer, within the place `_slot`.
pub(crate) async fn push(
    shared: &Shared,
    _slot: DeliverySlot,
    pack: &ChannelPack,
    raw: &Bytes,
    topic: &str,
) -> Pushed {
    let mut tried = Tried::default();
    loop {
        let subscribers = shared.sessions.subscribers(topic);
        let Some(session) = tried.pick(&subscribers, rand::random::<u32>()) else {
            return Pushed::AllFailed;
        };
        if let Some(ack) = push_to(shared, session, pack.seq, raw).await {
            return Pushed::Acked(ack);
        }
        Counters::add(&shared.stats.subscriber_failures);
        debug!(
            conn = session,
            topic, "subscriber did not ack in time; failing over"
        );
    }
}

/// Pushes `raw` to session `id` and waits for its 0x31 with `seq`: `None` if it is gone,
/// its queue is full, it leaves meanwhile, or the ack does not come in time.
async fn push_to(shared: &Shared, id: u64, seq: ChannelSeq, raw: &Bytes) -> Option<Bytes> {
    let session = shared.sessions.get(id)?;
    let key = (id, seq);
    let answer = shared.acks.wait(key, id)?;
    if !shared.send_frame(&session, raw.clone()) {
        shared.acks.cancel(&key);
        return None;
    }
    let got = tokio::time::timeout(shared.cfg.ack_timeout, answer).await;
    shared.acks.cancel(&key);
    got.ok()?.ok()?
}
