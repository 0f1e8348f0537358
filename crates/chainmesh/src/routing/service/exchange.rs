//! The list exchange of the routing task: taking the lists a neighbour hands over
//! (checked, stored, passed on, or parked until anchored), asking a neighbour for all its
//! lists, and sending lists.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::warn;

use super::{Task, ANNOUNCE_INTERVAL, ASKED_HOLD, RESPONSE_BYTES};
use crate::identity::NodeId;
use crate::routing::signing::verify_list;
use crate::routing::table::{Rejection, Verdict};
use crate::session::CloseReason;
use crate::wire::{encode_lists, NeighbourList, PacketType, RouterSummary, HEADER_LEN};

impl Task {
    /// Checks, stores and passes on the lists neighbour `from` sent. Signatures are checked
    /// outside the table's lock, and only for lists that would be stored. A list whose
    /// anchor has not arrived yet is parked, and the parked lists are offered again as long
    /// as each round stores something: a list stored now may anchor them.
    pub(super) fn take_lists(&mut self, from: &NodeId, lists: Vec<NeighbourList>) {
        let now = Instant::now().into_std();
        let mut offered: Vec<(NodeId, NeighbourList, std::time::Instant)> =
            lists.into_iter().map(|l| (*from, l, now)).collect();
        let mut stored: Vec<(NodeId, NeighbourList)> = Vec::new();
        let mut refused: Vec<Rejection> = Vec::new();
        let mut closed: Vec<NodeId> = Vec::new();
        loop {
            let before = stored.len();
            for (sender, list, since) in offered {
                if closed.contains(&sender) {
                    continue;
                }
                let verdict = match self.router.table.read().screen(&list) {
                    Ok(()) if verify_list(self.router.curve, &list) => None,
                    Ok(()) => Some(Verdict::Rejected(Rejection::BadSignature)),
                    Err(v) => Some(v),
                };
                match verdict {
                    None => {
                        self.router.table.write().insert(list.clone());
                        stored.push((sender, list));
                    }
                    Some(Verdict::Rejected(Rejection::Unanchored)) => {
                        if !self.parked.park(sender, list, since) {
                            self.router.counters.count(&Rejection::Unanchored);
                        }
                    }
                    Some(Verdict::Rejected(r)) => {
                        self.router.counters.count(&r);
                        if r.is_misbehaviour(&sender, &list.origin) {
                            self.misbehaved(&sender, &list.origin, &r);
                            closed.push(sender);
                        } else {
                            refused.push(r);
                        }
                    }
                    Some(Verdict::OwnOutdated(seen)) => {
                        // A previous run's list of this node: sign past it.
                        self.publish_own(Some(seen));
                    }
                    Some(Verdict::Stale | Verdict::Stored) => {}
                }
            }
            if stored.len() == before || self.parked.is_empty() {
                break;
            }
            offered = self.parked.take();
        }
        if let Some(r) = refused.first() {
            warn!(peer = %from.short(), refused = refused.len(), reason = %r,
                "neighbour lists refused");
        }
        if stored.is_empty() {
            return;
        }
        // The routes follow once the lists that came together are all in.
        self.stale_routes = true;
        let to: Vec<NodeId> = self.router.table.read().neighbours().copied().collect();
        for n in &to {
            let onward: Vec<NeighbourList> = stored
                .iter()
                .filter(|(sender, l)| sender != n && l.origin != *n)
                .map(|(_, l)| l.clone())
                .collect();
            self.send_lists(n, &onward);
        }
    }

    /// Closes the link to neighbour `from`, which sent a list of `origin` that no honest
    /// node sends.
    pub(super) fn misbehaved(&self, from: &NodeId, origin: &NodeId, r: &Rejection) {
        self.router
            .counters
            .links_closed
            .fetch_add(1, Ordering::Relaxed);
        warn!(peer = %from.short(), origin = %origin.short(), reason = %r,
            "neighbour sent a neighbour list no honest node sends; closing the connection");
        if let Some(s) = self.peers.session(from) {
            s.close(CloseReason::Protocol(r.to_string()));
        }
    }

    /// Asks neighbour `to`, which announced `theirs`, for all its lists unless a request is
    /// already outstanding on its current connection, or it was asked on that same summary
    /// within [`ASKED_HOLD`] (its answer brought everything it offers). A request sent on a
    /// connection since replaced may never be answered, and one unanswered for
    /// [`ANNOUNCE_INTERVAL`] counts as lost: either way the next differing summary asks again.
    pub(super) fn request(&mut self, to: &NodeId, theirs: RouterSummary) {
        if let Some(&(conn, at)) = self.asking.get(to) {
            let same_link = self.peers.session(to).map(|s| s.id) == Some(conn);
            if same_link && at.elapsed() < ANNOUNCE_INTERVAL {
                return;
            }
        }
        if let Some(&(summary, at)) = self.asked.get(to) {
            if summary == theirs && at.elapsed() < ASKED_HOLD {
                return;
            }
        }
        if let Some(conn) = self.send(to, PacketType::ROUTER_REQUEST, Bytes::new()) {
            self.asking.insert(*to, (conn, Instant::now()));
            self.asked.insert(*to, (theirs, Instant::now()));
        }
    }

    /// Sends neighbour `to` every list this node offers (its own first): what a new link
    /// and a RouterRequest both get.
    pub(super) fn send_all_lists(&self, to: &NodeId) {
        let offered: Vec<NeighbourList> = self
            .router
            .table
            .read()
            .offered()
            .into_iter()
            .cloned()
            .collect();
        self.send_lists(to, &offered);
    }

    /// Sends `lists` to neighbour `to` as RouterResponses of about [`RESPONSE_BYTES`] each,
    /// never larger than the neighbour accepts.
    pub(super) fn send_lists(&self, to: &NodeId, lists: &[NeighbourList]) {
        let Some(session) = self.peers.session(to) else {
            return;
        };
        let room = usize::try_from(session.peer_max_packet)
            .unwrap_or(usize::MAX)
            .saturating_sub(HEADER_LEN + 2)
            .min(RESPONSE_BYTES);
        let mut start = 0;
        while start < lists.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while let Some(l) = lists.get(end) {
                let next = bytes.saturating_add(l.encoded_len());
                if end > start && next > room {
                    break;
                }
                bytes = next;
                end += 1;
            }
            let chunk = lists.get(start..end).unwrap_or_default();
            self.send(to, PacketType::ROUTER_RESPONSE, encode_lists(chunk));
            start = end;
        }
    }
}
