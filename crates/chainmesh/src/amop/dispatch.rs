//! Where an SDK frame is handled: one arm per channel type.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::control;
use super::multicast;
use super::sessions::SdkSession;
use super::shared::Shared;
use super::subscribe::parse_subscription;
use super::unicast;
use super::verify;
use super::view::Counters;
use super::ChannelFraming;
use crate::session::{CloseReason, Handler, Pending, SessionHandle};
use crate::wire::{amop_topic, channel_result, ChannelPack, ChannelType};

/// The handler of every SDK session's frames.
pub(crate) struct Dispatch {
    shared: Arc<Shared>,
}

impl Dispatch {
    pub(crate) fn new(shared: Arc<Shared>) -> Dispatch {
        Dispatch { shared }
    }
}

impl Handler<ChannelFraming> for Dispatch {
    fn on_frame(
        &self,
        from: &SessionHandle<ChannelFraming>,
        (pack, raw): (ChannelPack, Bytes),
    ) -> Option<Pending> {
        Counters::add(&self.shared.stats.frames_in);
        let session = self.shared.sessions.get(from.id)?;
        match pack.kind {
            ChannelType::HEARTBEAT => self.heartbeat(&session, &pack),
            ChannelType::HANDSHAKE => self.handshake(&session, &pack),
            ChannelType::SUBSCRIBE => self.subscribe(&session, &pack),
            ChannelType::AMOP_REQUEST => self.unicast(session, pack, raw),
            ChannelType::AMOP_RESPONSE => self.ack(&session, &pack, raw),
            ChannelType::AMOP_MULTICAST => self.multicast(&session, &pack, &raw),
            ChannelType::RPC => self.rpc(session, pack),
            ChannelType::VERIFY | ChannelType::UPDATE_TOPIC_STATUS => {
                self.private_topic(&session, &pack)
            }
            other => debug!(conn = from.id, kind = other.0, "channel frame type ignored"),
        }
        None
    }
}

/// Closes `session` for a protocol violation; the server logs the reason as it ends.
fn violation(session: &SdkSession, reason: String) {
    session.handle.close(CloseReason::Protocol(reason));
}

impl Dispatch {
    /// 0x13 with data (an empty one is the session's): answered as the session's protocol
    /// version says, or not at all.
    fn heartbeat(&self, session: &SdkSession, pack: &ChannelPack) {
        if let Some(answer) = control::heartbeat_answer(session.protocol(), &pack.data) {
            let data = Bytes::from_static(answer);
            self.shared.answer(
                session,
                pack,
                ChannelType::HEARTBEAT,
                channel_result::OK,
                data,
            );
        }
    }

    /// 0x14: agree on a protocol version, or close when the ranges do not overlap.
    fn handshake(&self, session: &SdkSession, pack: &ChannelPack) {
        match control::handshake_answer(&pack.data) {
            Ok((version, answer)) => {
                session.set_protocol(version);
                let data = Bytes::from(answer);
                self.shared.answer(
                    session,
                    pack,
                    ChannelType::HANDSHAKE,
                    channel_result::OK,
                    data,
                );
            }
            Err(e) => violation(session, e.to_string()),
        }
    }

    /// 0x32: the session's whole topic set, replaced.
    fn subscribe(&self, session: &SdkSession, pack: &ChannelPack) {
        let max = self.shared.cfg.max_topics_per_session;
        let set = match parse_subscription(&pack.data, max) {
            Ok(set) => set,
            Err(e) => return violation(session, e.to_string()),
        };
        let shared = &self.shared;
        shared
            .sessions
            .subscribe(session.handle.id, set, |t| shared.publish_topics(t));
    }

    /// 0x30: a unicast, run in a task of its own within the session's requests in flight.
    fn unicast(&self, session: Arc<SdkSession>, pack: ChannelPack, raw: Bytes) {
        let topic = match amop_topic(&pack.data) {
            Ok(t) => t.to_string(),
            Err(e) => return violation(&session, format!("0x30: {e}")),
        };
        Counters::add(&self.shared.stats.unicasts);
        let Some(slot) = session.start_request(self.shared.cfg.max_in_flight_per_session) else {
            return self.over_limit(&session, &pack, ChannelType::AMOP_RESPONSE);
        };
        let shared = self.shared.clone();
        tokio::spawn(unicast::publish(shared, session, pack, raw, topic, slot));
    }

    /// 0x31: a subscriber's ack, handed to the push waiting for it.
    fn ack(&self, session: &SdkSession, pack: &ChannelPack, raw: Bytes) {
        let id = session.handle.id;
        if !self.shared.acks.resolve(&(id, pack.seq), &id, raw) {
            Counters::add(&self.shared.stats.unmatched_acks);
            debug!(conn = id, "0x31 matches no pending push; dropped");
        }
    }

    /// 0x35: a multicast.
    fn multicast(&self, session: &SdkSession, pack: &ChannelPack, raw: &Bytes) {
        match amop_topic(&pack.data) {
            Ok(topic) => multicast::publish(&self.shared, session, pack, raw, &topic),
            Err(e) => violation(session, format!("0x35: {e}")),
        }
    }

    /// 0x12: a JSON-RPC request, answered in a task of its own within the session's
    /// requests in flight.
    fn rpc(&self, session: Arc<SdkSession>, pack: ChannelPack) {
        let Some(slot) = session.start_request(self.shared.cfg.max_in_flight_per_session) else {
            return self.over_limit(&session, &pack, ChannelType::RPC);
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let text = shared.rpc.answer(&pack.data).await;
            Counters::add(&shared.stats.rpc_calls);
            shared.answer(&session, &pack, ChannelType::RPC, channel_result::OK, text);
            drop(slot);
        });
    }

    /// Private topics (FISCO 2.x's verified topics): 0x37 is a publisher's acknowledgement
    /// of a verify request, 0x38 its verdict on another node's topic.
    fn private_topic(&self, session: &SdkSession, pack: &ChannelPack) {
        verify::on_frame(&self.shared, session, pack);
    }

    /// Refuses a request over `max_in_flight_per_session` with 103 at once.
    fn over_limit(&self, session: &SdkSession, pack: &ChannelPack, kind: ChannelType) {
        Counters::add(&self.shared.stats.over_limit);
        let result = channel_result::OVER_LIMIT;
        self.shared
            .answer(session, pack, kind, result, Bytes::new());
    }
}
