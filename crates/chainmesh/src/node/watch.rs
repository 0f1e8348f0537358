//! The reachability watch: one task that follows the router's reachability events, tells
//! every protocol, and fails the requests waiting on a node that is gone.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::NodeHandle;
use crate::identity::NodeId;
use crate::routing::Reachability;

/// What the watch does about one event from the router.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Pass it on.
    Apply(Reachability),
    /// Nothing: the node it says is gone is reachable again.
    Skip,
    /// Events were missed: fail whatever waits on a node that is gone now.
    Resync,
    /// The router is gone.
    Stop,
}

/// Classifies `event`; `reachable` says whether a node is reachable now.
fn step(event: Result<Reachability, RecvError>, reachable: impl Fn(&NodeId) -> bool) -> Step {
    match event {
        // A direct link may have come back meanwhile.
        Ok(Reachability::Unreachable { node, .. }) if reachable(&node) => Step::Skip,
        Ok(event) => Step::Apply(event),
        Err(RecvError::Lagged(_)) => Step::Resync,
        Err(RecvError::Closed) => Step::Stop,
    }
}

impl NodeHandle {
    /// Starts the watch; it runs until `stop` or until the node is gone.
    pub(super) fn spawn_reachability_watch(&self, stop: CancellationToken) {
        let mut events = self.reachability_events();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    event = events.recv() => event,
                };
                let Some(inner) = weak.upgrade() else { return };
                let node = NodeHandle { inner };
                match step(event, |n| node.link_for(n).is_some()) {
                    Step::Apply(event) => node.on_reachability(&event),
                    Step::Skip => {}
                    Step::Resync => {
                        let gone: Vec<NodeId> = node
                            .inner
                            .pending
                            .destinations()
                            .into_iter()
                            .filter(|d| node.link_for(d).is_none())
                            .collect();
                        for g in gone {
                            node.fail_pending_to(g, false);
                        }
                    }
                    Step::Stop => return,
                }
            }
        });
    }

    fn on_reachability(&self, event: &Reachability) {
        for p in self.inner.protocols.all() {
            p.on_reachability(&self.inner.ctx, event);
        }
        if let Reachability::Unreachable {
            node,
            was_neighbour,
        } = *event
        {
            self.fail_pending_to(node, was_neighbour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    #[test]
    fn an_unreachable_node_that_came_back_is_skipped() {
        let gone = Reachability::Unreachable {
            node: id(2),
            was_neighbour: true,
        };
        assert_eq!(step(Ok(gone.clone()), |_| true), Step::Skip);
        assert_eq!(step(Ok(gone.clone()), |_| false), Step::Apply(gone));
    }

    #[test]
    fn reachable_nodes_pass_and_missed_events_resync() {
        let back = Reachability::Reachable {
            node: id(3),
            distance: 2,
        };
        assert_eq!(step(Ok(back.clone()), |_| false), Step::Apply(back));
        assert_eq!(step(Err(RecvError::Lagged(4)), |_| true), Step::Resync);
        assert_eq!(step(Err(RecvError::Closed), |_| true), Step::Stop);
    }
}
