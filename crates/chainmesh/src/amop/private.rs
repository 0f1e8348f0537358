//! Private topics (FISCO BCOS 2.x's verified topics), as a pure state machine: which other
//! node's private topic is verified, and which verify requests to hand a local publisher.
//!
//! A node holding subscribers of `#!$TopicNeedVerify_<t>` lists that topic in its status,
//! with one `#!$VerifyChannel_#!$TopicNeedVerify_<t>_<32 hex>` topic per subscriber. Each
//! such (node, topic) starts VERIFYING here; a local session subscribed to
//! `#!$PushChannel_#!$TopicNeedVerify_<t>` (a publisher holding the subscribers' public keys)
//! is asked to verify it with 0x37, and answers with a 0x38 verdict. Only VERIFY_SUCCESS
//! nodes receive the topic's messages. A node restart (new status epoch) or a change of the
//! paired verify channel starts over. Local subscribers are never verified.
//!
//! No I/O and no clocks: the caller passes `now`, the push-channel sessions and fresh seqs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::view::{PrivateTopicView, VerifyStatus};
use crate::identity::NodeId;
use crate::wire::ChannelSeq;

/// The prefix of a private topic.
pub(crate) const NEED_VERIFY: &str = "#!$TopicNeedVerify_";
/// The prefix of a subscriber's challenge route: `#!$VerifyChannel_<private topic>_<uuid>`.
const VERIFY_CHANNEL: &str = "#!$VerifyChannel_";
/// The prefix of the topic a publisher holding the keys subscribes to.
const PUSH_CHANNEL: &str = "#!$PushChannel_";
/// Hex characters of the uuid that ends a verify channel (a UUID without its dashes).
const UUID_HEX_LEN: usize = 32;

/// Whether only verified nodes may receive `topic`.
pub(crate) fn is_private(topic: &str) -> bool {
    topic.starts_with(NEED_VERIFY)
}

/// The topic a publisher verifying private `topic` subscribes to.
pub(crate) fn push_channel(topic: &str) -> String {
    format!("{PUSH_CHANNEL}{topic}")
}

/// Whether `candidate` is a verify channel of private `topic`: the prefix, the topic, `_`
/// and exactly 32 hex characters (so that topic `a` does not claim `a_b`'s channels).
fn is_verify_channel_of(topic: &str, candidate: &str) -> bool {
    candidate
        .strip_prefix(VERIFY_CHANNEL)
        .and_then(|rest| rest.strip_prefix(topic))
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|uuid| {
            uuid.len() == UUID_HEX_LEN && uuid.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// A verify request handed to a local session and not answered yet.
#[derive(Debug, Clone)]
struct Ask {
    session: u64,
    seq: ChannelSeq,
    since: Instant,
    /// Whether the session acknowledged the 0x37.
    acked: bool,
}

/// One other node's private topic.
#[derive(Debug, Clone)]
struct Entry {
    /// The status epoch it was listed in; a new epoch is a restarted node.
    epoch: u64,
    /// The verify channel the challenge goes to: one the node lists, kept while listed.
    cert_topic: Option<String>,
    status: VerifyStatus,
    ask: Option<Ask>,
    /// The session asked last, so that a retry tries the next one.
    last_asked: Option<u64>,
}

impl Entry {
    fn new(epoch: u64, cert_topic: Option<String>) -> Entry {
        Entry {
            epoch,
            cert_topic,
            status: VerifyStatus::Verifying,
            ask: None,
            last_asked: None,
        }
    }

    fn restart(&mut self, epoch: u64, cert_topic: Option<String>) {
        *self = Entry {
            last_asked: self.last_asked,
            ..Entry::new(epoch, cert_topic)
        };
    }
}

/// A 0x37 to send: ask `session` to verify `node`'s `topic` through `topic_for_cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyRequest {
    pub(crate) session: u64,
    pub(crate) seq: ChannelSeq,
    pub(crate) node: NodeId,
    pub(crate) topic: String,
    pub(crate) topic_for_cert: String,
}

/// Why a 0x38 verdict was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotPending {
    /// No verification of that node's topic is waiting for a verdict.
    #[error("no verification of that node's topic is pending")]
    Unknown,
}

/// The verification state of every other node's private topics.
#[derive(Debug)]
pub(crate) struct PrivateTopics {
    entries: BTreeMap<(NodeId, String), Entry>,
    /// How long a session has to acknowledge a 0x37.
    ack_timeout: Duration,
    /// How long an acknowledged verification may take (a challenge round trip).
    verdict_timeout: Duration,
}

impl PrivateTopics {
    pub(crate) fn new(ack_timeout: Duration, verdict_timeout: Duration) -> PrivateTopics {
        PrivateTopics {
            entries: BTreeMap::new(),
            ack_timeout,
            verdict_timeout,
        }
    }

    /// `node`'s status at `epoch` lists AMOP `topics`: its private topics appear, stay,
    /// start over (new epoch, other verify channel) or vanish accordingly.
    pub(crate) fn node_status(&mut self, node: NodeId, epoch: u64, topics: &[String]) {
        let mut listed: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for t in topics.iter().filter(|t| is_private(t)) {
            let channels = topics
                .iter()
                .filter(|c| is_verify_channel_of(t, c))
                .collect();
            listed.insert(t, channels);
        }
        self.entries
            .retain(|(n, t), _| *n != node || listed.contains_key(t.as_str()));
        for (topic, channels) in listed {
            // A paired channel still listed stays paired: another subscriber joining on
            // that node must not interrupt the verified one.
            let smallest = || channels.iter().min().map(|c| c.to_string());
            match self.entries.get_mut(&(node, topic.to_string())) {
                Some(e)
                    if e.epoch == epoch
                        && e.cert_topic.as_ref().is_some_and(|c| channels.contains(&c)) => {}
                Some(e) => e.restart(epoch, smallest()),
                None => {
                    self.entries
                        .insert((node, topic.to_string()), Entry::new(epoch, smallest()));
                }
            }
        }
    }

    /// `node` left or became unreachable.
    pub(crate) fn node_gone(&mut self, node: &NodeId) {
        self.entries.retain(|(n, _), _| n != node);
    }

    /// Keeps only the nodes in `present` (after missed status events).
    pub(crate) fn retain_nodes(&mut self, present: &[NodeId]) {
        self.entries.retain(|(n, _), _| present.contains(n));
    }

    /// The verify requests to send now: for every VERIFYING topic with a verify channel that
    /// was not asked, or whose ask timed out, the next session `push_sessions` gives for
    /// its push channel. Each request is recorded as asked at `now`.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        push_sessions: impl Fn(&str) -> Vec<u64>,
        mut seq: impl FnMut() -> ChannelSeq,
    ) -> Vec<VerifyRequest> {
        let (ack_timeout, verdict_timeout) = (self.ack_timeout, self.verdict_timeout);
        let mut out = Vec::new();
        for ((node, topic), e) in &mut self.entries {
            if e.status != VerifyStatus::Verifying {
                continue;
            }
            let Some(cert) = &e.cert_topic else {
                continue;
            };
            let waiting = e.ask.as_ref().is_some_and(|a| {
                let limit = if a.acked {
                    verdict_timeout
                } else {
                    ack_timeout
                };
                now.saturating_duration_since(a.since) < limit
            });
            if waiting {
                continue;
            }
            let sessions = push_sessions(&push_channel(topic));
            let next = match e.last_asked {
                Some(last) => sessions.iter().find(|s| **s > last).or(sessions.first()),
                None => sessions.first(),
            };
            let Some(&session) = next else {
                e.ask = None;
                continue;
            };
            let seq = seq();
            e.ask = Some(Ask {
                session,
                seq,
                since: now,
                acked: false,
            });
            e.last_asked = Some(session);
            out.push(VerifyRequest {
                session,
                seq,
                node: *node,
                topic: topic.clone(),
                topic_for_cert: cert.clone(),
            });
        }
        out
    }

    /// The earliest time an outstanding ask times out, if any is outstanding.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.ask.as_ref())
            .map(|a| {
                let limit = if a.acked {
                    self.verdict_timeout
                } else {
                    self.ack_timeout
                };
                a.since + limit
            })
            .min()
    }

    /// `session` acknowledged the 0x37 of `seq`, at `now`: it now has the verdict timeout.
    /// Returns whether that matched an outstanding ask.
    pub(crate) fn acked(&mut self, session: u64, seq: &ChannelSeq, now: Instant) -> bool {
        let ask = self
            .entries
            .values_mut()
            .filter_map(|e| e.ask.as_mut())
            .find(|a| a.session == session && a.seq == *seq && !a.acked);
        match ask {
            Some(a) => {
                a.acked = true;
                a.since = now;
                true
            }
            None => false,
        }
    }

    /// A publisher's verdict on `node`'s `topic`. Taken only while that topic is VERIFYING
    /// and a verify request for it is outstanding; the caller checks that the verdict comes
    /// from a session subscribed to the topic's push channel.
    pub(crate) fn verdict(
        &mut self,
        node: &NodeId,
        topic: &str,
        ok: bool,
    ) -> Result<VerifyStatus, NotPending> {
        let e = self
            .entries
            .get_mut(&(*node, topic.to_string()))
            .filter(|e| e.status == VerifyStatus::Verifying && e.ask.is_some())
            .ok_or(NotPending::Unknown)?;
        e.status = if ok {
            VerifyStatus::VerifySuccess
        } else {
            VerifyStatus::VerifyFailed
        };
        e.ask = None;
        Ok(e.status)
    }

    /// Session `id` is gone: what it was asked is asked again at once, of another session.
    pub(crate) fn session_ended(&mut self, id: u64) {
        for e in self.entries.values_mut() {
            if e.ask.as_ref().is_some_and(|a| a.session == id) {
                e.ask = None;
            }
        }
    }

    /// Whether `node`'s private `topic` is VERIFY_SUCCESS.
    pub(crate) fn verified(&self, node: &NodeId, topic: &str) -> bool {
        self.entries
            .get(&(*node, topic.to_string()))
            .is_some_and(|e| e.status == VerifyStatus::VerifySuccess)
    }

    /// Every (node, topic) for the admin view, by node then topic.
    pub(crate) fn views(&self) -> Vec<PrivateTopicView> {
        self.entries
            .iter()
            .map(|((node, topic), e)| PrivateTopicView {
                node: node.to_string(),
                topic: topic.clone(),
                topic_for_cert: e.cert_topic.clone(),
                status: e.status,
                asked_session: e.ask.as_ref().map(|a| a.session),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "#!$TopicNeedVerify_t";
    const UUID: &str = "0123456789abcdef0123456789abcdef";
    const UUID2: &str = "fedcba9876543210fedcba9876543210";

    fn node(b: u8) -> NodeId {
        NodeId::from_bytes([b; crate::identity::NODE_ID_LEN])
    }

    fn cert(uuid: &str) -> String {
        format!("#!$VerifyChannel_{T}_{uuid}")
    }

    fn listing(uuid: &str) -> Vec<String> {
        vec![T.to_string(), cert(uuid), "other".to_string()]
    }

    fn machine() -> PrivateTopics {
        PrivateTopics::new(Duration::from_secs(5), Duration::from_secs(30))
    }

    fn seqs() -> impl FnMut() -> ChannelSeq {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; 32]
        }
    }

    fn pushers(sessions: &'static [u64]) -> impl Fn(&str) -> Vec<u64> {
        move |t: &str| {
            assert_eq!(t, format!("#!$PushChannel_{T}"));
            sessions.to_vec()
        }
    }

    fn status(p: &PrivateTopics, n: NodeId) -> Option<VerifyStatus> {
        let id = n.to_string();
        p.views()
            .into_iter()
            .find(|v| v.node == id && v.topic == T)
            .map(|v| v.status)
    }

    #[test]
    fn topic_names_are_recognised_as_fisco_builds_them() {
        assert!(is_private(T));
        assert!(!is_private("t"));
        assert_eq!(push_channel(T), "#!$PushChannel_#!$TopicNeedVerify_t");
        assert!(is_verify_channel_of(T, &cert(UUID)));
        assert!(!is_verify_channel_of(
            T,
            &format!("#!$VerifyChannel_{T}_short")
        ));
        let other = format!("#!$VerifyChannel_{T}_x_{UUID}");
        assert!(!is_verify_channel_of(T, &other), "belongs to topic t_x");
    }

    #[test]
    fn a_listed_private_topic_starts_verifying_and_is_asked_once() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        assert_eq!(status(&p, node(2)), Some(VerifyStatus::Verifying));
        assert!(!p.verified(&node(2), T));
        let asks = p.due(now, pushers(&[4]), seqs());
        assert_eq!(
            asks,
            vec![VerifyRequest {
                session: 4,
                seq: [1; 32],
                node: node(2),
                topic: T.to_string(),
                topic_for_cert: cert(UUID),
            }]
        );
        assert!(
            p.due(now, pushers(&[4]), seqs()).is_empty(),
            "asked already"
        );
    }

    #[test]
    fn nothing_is_asked_without_a_push_channel_session_or_a_verify_channel() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &[T.to_string()]);
        assert!(
            p.due(now, pushers(&[4]), seqs()).is_empty(),
            "no verify channel"
        );
        p.node_status(node(2), 7, &listing(UUID));
        assert!(p.due(now, pushers(&[]), seqs()).is_empty(), "no publisher");
        assert_eq!(
            p.due(now, pushers(&[4]), seqs()).len(),
            1,
            "a publisher came"
        );
    }

    #[test]
    fn a_verdict_marks_the_topic_and_only_success_lets_messages_through() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        p.node_status(node(3), 7, &listing(UUID));
        assert_eq!(p.due(now, pushers(&[4]), seqs()).len(), 2);
        assert_eq!(
            p.verdict(&node(2), T, true),
            Ok(VerifyStatus::VerifySuccess)
        );
        assert_eq!(
            p.verdict(&node(3), T, false),
            Ok(VerifyStatus::VerifyFailed)
        );
        assert!(p.verified(&node(2), T));
        assert!(!p.verified(&node(3), T));
        assert_eq!(
            p.verdict(&node(2), T, false),
            Err(NotPending::Unknown),
            "decided"
        );
        assert!(
            p.due(now, pushers(&[4]), seqs()).is_empty(),
            "nothing left to ask"
        );
    }

    #[test]
    fn a_verdict_nobody_was_asked_for_is_refused() {
        let mut p = machine();
        p.node_status(node(2), 7, &listing(UUID));
        assert_eq!(
            p.verdict(&node(2), T, true),
            Err(NotPending::Unknown),
            "not asked"
        );
        assert_eq!(
            p.verdict(&node(9), T, true),
            Err(NotPending::Unknown),
            "unknown node"
        );
        assert!(!p.verified(&node(2), T));
    }

    #[test]
    fn an_unacknowledged_ask_times_out_and_goes_to_the_next_session() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        assert_eq!(p.due(now, pushers(&[4, 6]), seqs())[0].session, 4);
        assert_eq!(p.next_deadline(), Some(now + Duration::from_secs(5)));
        let later = now + Duration::from_secs(4);
        assert!(p.due(later, pushers(&[4, 6]), seqs()).is_empty());
        let late = now + Duration::from_secs(5);
        assert_eq!(p.due(late, pushers(&[4, 6]), seqs())[0].session, 6);
        let later = late + Duration::from_secs(5);
        assert_eq!(
            p.due(later, pushers(&[4, 6]), seqs())[0].session,
            4,
            "wraps"
        );
    }

    #[test]
    fn an_acknowledged_ask_has_the_verdict_timeout() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        let ask = p.due(now, pushers(&[4]), seqs()).remove(0);
        assert!(!p.acked(5, &ask.seq, now), "another session");
        assert!(p.acked(4, &ask.seq, now));
        assert!(!p.acked(4, &ask.seq, now), "once");
        let t = now + Duration::from_secs(29);
        assert!(p.due(t, pushers(&[4]), seqs()).is_empty());
        let t = now + Duration::from_secs(30);
        assert_eq!(p.due(t, pushers(&[4]), seqs()).len(), 1);
    }

    #[test]
    fn a_departed_session_is_replaced_at_once() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        p.due(now, pushers(&[4, 6]), seqs());
        p.session_ended(4);
        assert_eq!(p.due(now, pushers(&[6]), seqs())[0].session, 6);
    }

    #[test]
    fn a_restart_or_a_new_verify_channel_verifies_again() {
        let mut p = machine();
        let now = Instant::now();
        p.node_status(node(2), 7, &listing(UUID));
        p.due(now, pushers(&[4]), seqs());
        p.verdict(&node(2), T, true).unwrap();
        p.node_status(node(2), 7, &listing(UUID));
        assert!(
            p.verified(&node(2), T),
            "the same status again changes nothing"
        );
        p.node_status(node(2), 8, &listing(UUID));
        assert_eq!(
            status(&p, node(2)),
            Some(VerifyStatus::Verifying),
            "new epoch"
        );
        p.due(now, pushers(&[4]), seqs());
        p.verdict(&node(2), T, true).unwrap();
        p.node_status(node(2), 8, &listing(UUID2));
        assert_eq!(
            status(&p, node(2)),
            Some(VerifyStatus::Verifying),
            "new channel"
        );
        let ask = p.due(now, pushers(&[4]), seqs()).remove(0);
        assert_eq!(ask.topic_for_cert, cert(UUID2));
    }

    #[test]
    fn another_subscriber_joining_keeps_the_verified_pairing() {
        let mut p = machine();
        p.node_status(node(2), 7, &listing(UUID2));
        p.due(Instant::now(), pushers(&[4]), seqs());
        p.verdict(&node(2), T, true).unwrap();
        let mut both = listing(UUID2);
        both.push(cert(UUID));
        p.node_status(node(2), 7, &both);
        assert!(p.verified(&node(2), T));
    }

    #[test]
    fn a_topic_no_longer_listed_or_a_node_gone_is_dropped() {
        let mut p = machine();
        p.node_status(node(2), 7, &listing(UUID));
        p.node_status(node(3), 7, &listing(UUID));
        p.node_status(node(2), 7, &["other".to_string()]);
        assert_eq!(status(&p, node(2)), None);
        p.node_gone(&node(3));
        assert!(p.views().is_empty());
        p.node_status(node(4), 7, &listing(UUID));
        p.node_status(node(5), 7, &listing(UUID));
        p.retain_nodes(&[node(5)]);
        assert_eq!(status(&p, node(4)), None);
        assert_eq!(status(&p, node(5)), Some(VerifyStatus::Verifying));
    }
}
