//! The I/O around [`private`](super::private): status changes feed it, its verify requests
//! go out as 0x37 to local publishers, and their 0x37 acknowledgements and 0x38 verdicts
//! come back through dispatch.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info};

use super::private::{push_channel, VerifyRequest};
use super::sessions::SdkSession;
use super::shared::Shared;
use super::view::{Counters, VerifyStatus};
use crate::identity::NodeId;
use crate::status::{StatusEvent, StatusEventKind};
use crate::wire::{ChannelPack, ChannelType};

/// The data of a 0x37 the node sends, with FISCO's field names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyRequestData<'a> {
    node_id: String,
    topic: &'a str,
    topic_for_cert: &'a str,
}

/// The data of a 0x38 a publisher sends, with FISCO's field names.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicStatusData {
    /// 0 for verified, anything else for refused; the Java SDK sends a number, a string of
    /// one is taken too.
    check_result: serde_json::Value,
    node_id: String,
    topic: String,
}

/// Keeps the private topics' state in step with other nodes' statuses and asks local
/// publishers to verify, until AMOP stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut events = shared.status.subscribe();
    resync(&shared);
    loop {
        ask_due(&shared);
        let deadline = shared.private.lock().next_deadline();
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = shared.private_wake.notified() => {}
            _ = timeout => {}
            event = events.recv() => match event {
                Ok(event) => apply(&shared, event),
                Err(RecvError::Lagged(_)) => resync(&shared),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// One node's status changed or went away.
fn apply(shared: &Shared, event: StatusEvent) {
    let held = match event.kind {
        StatusEventKind::Updated => shared.status.get(&event.node),
        StatusEventKind::Removed => None,
    };
    let mut private = shared.private.lock();
    match held {
        Some(p) => private.node_status(p.node, p.version.epoch, &p.status.amop_topics),
        None => private.node_gone(&event.node),
    }
}

/// Re-reads every held status (at start, and after missed events).
fn resync(shared: &Shared) {
    let all = shared.status.all();
    let mut private = shared.private.lock();
    let present: Vec<NodeId> = all.iter().map(|p| p.node).collect();
    private.retain_nodes(&present);
    for p in &all {
        private.node_status(p.node, p.version.epoch, &p.status.amop_topics);
    }
}

/// Sends the verify requests that are due. A full queue loses the 0x37; the ask then times
/// out and goes to the next publisher.
fn ask_due(shared: &Shared) {
    let asks = shared.private.lock().due(
        Instant::now(),
        |topic| shared.sessions.subscribers(topic),
        || shared.seqs.next(),
    );
    for ask in asks {
        Counters::add(&shared.stats.verifications_started);
        let Some(session) = shared.sessions.get(ask.session) else {
            continue;
        };
        if let Some(frame) = request_frame(shared, &ask) {
            debug!(conn = ask.session, node = %ask.node.short(), topic = ask.topic, "asking to verify");
            shared.send_frame(&session, frame);
        }
    }
}

fn request_frame(shared: &Shared, ask: &VerifyRequest) -> Option<bytes::Bytes> {
    let data = VerifyRequestData {
        node_id: ask.node.to_string(),
        topic: &ask.topic,
        topic_for_cert: &ask.topic_for_cert,
    };
    let json = serde_json::to_vec(&data).ok()?;
    shared.encode(&ChannelPack::new(ChannelType::VERIFY, ask.seq, json.into()))
}

/// A 0x37 (acknowledgement) or 0x38 (verdict) from `session`. Anything not taken is
/// counted and logged, never answered: a client may not verify what it was not asked.
pub(crate) fn on_frame(shared: &Shared, session: &SdkSession, pack: &ChannelPack) {
    let id = session.handle.id;
    let taken = if pack.kind == ChannelType::VERIFY {
        let matched = shared.private.lock().acked(id, &pack.seq, Instant::now());
        matched
            .then_some(())
            .ok_or_else(|| "0x37 matches no verify request to this session".to_string())
    } else {
        verdict(shared, id, &pack.data)
    };
    if let Err(reason) = taken {
        Counters::add(&shared.stats.verify_frames_ignored);
        debug!(
            conn = id,
            kind = pack.kind.0,
            reason,
            "private-topic frame ignored"
        );
    }
}

/// Takes a 0x38 from session `id`.
fn verdict(shared: &Shared, id: u64, data: &[u8]) -> Result<(), String> {
    let v: TopicStatusData =
        serde_json::from_slice(data).map_err(|e| format!("0x38 is not a topic status: {e}"))?;
    let ok = match &v.check_result {
        serde_json::Value::Number(n) => n.as_i64() == Some(0),
        serde_json::Value::String(s) => s.trim() == "0",
        _ => return Err("0x38 checkResult is neither a number nor a string".into()),
    };
    let node: NodeId = v.node_id.parse().map_err(|e| format!("0x38 nodeId: {e}"))?;
    if !shared
        .sessions
        .subscribers(&push_channel(&v.topic))
        .contains(&id)
    {
        return Err("0x38 from a session not subscribed to the topic's push channel".into());
    }
    let status = shared
        .private
        .lock()
        .verdict(&node, &v.topic, ok)
        .map_err(|e| e.to_string())?;
    let counter = match status {
        VerifyStatus::VerifySuccess => &shared.stats.verifications_succeeded,
        _ => &shared.stats.verifications_failed,
    };
    Counters::add(counter);
    info!(conn = id, node = %node.short(), topic = v.topic, ?status, "private topic verdict");
    Ok(())
}
