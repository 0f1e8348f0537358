//! Multicast: the unchanged 0x35 frame to every local subscriber and to every node holding
//! the topic, which writes it to each of its local subscribers. Nothing waits: a full queue
//! is a counted drop.

use bytes::Bytes;
use tracing::debug;

use super::sessions::SdkSession;
use super::shared::Shared;
use super::view::Counters;
use crate::wire::{channel_result, AmopForward, AmopForwardKind, ChannelPack, ChannelType};

/// Handles the 0x35 `raw` (decoded: `pack`, on `topic`) that session `from` published. The
/// publisher is answered first, with 0x31 result 0 and its own data, whoever subscribes.
pub(crate) fn publish(
    shared: &Shared,
    from: &SdkSession,
    pack: &ChannelPack,
    raw: &Bytes,
    topic: &str,
) {
    Counters::add(&shared.stats.multicasts);
    shared.answer(
        from,
        pack,
        ChannelType::AMOP_RESPONSE,
        channel_result::OK,
        pack.data.clone(),
    );
    deliver_local(shared, topic, raw);
    let forward = AmopForward {
        kind: AmopForwardKind::Multicast,
        request: 0,
        frame: raw.clone(),
    };
    for node in shared.remote_holders(topic) {
        if let Err(e) = shared.try_send_to(node, &forward) {
            Counters::add(&shared.stats.multicast_dropped);
            debug!(node = %node.short(), error = %e, "multicast not forwarded");
        }
    }
}

/// Writes the 0x35 `raw` to every local subscriber of `topic`.
pub(crate) fn deliver_local(shared: &Shared, topic: &str, raw: &Bytes) {
    for id in shared.sessions.subscribers(topic) {
        let Some(session) = shared.sessions.get(id) else {
            continue;
        };
        let counter = if shared.send_frame(&session, raw.clone()) {
            &shared.stats.multicast_deliveries
        } else {
            &shared.stats.multicast_dropped
        };
        Counters::add(counter);
    }
}
