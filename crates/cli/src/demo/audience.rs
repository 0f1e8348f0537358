//! Who a demo broadcast or multicast must reach, and the check that the sender knows them
//! all before it sends. A fan-out goes to the nodes the sender's status table lists (and has
//! a route to) at the moment it is sent: a node whose status has not reached the sender yet
//! (a loaded machine is slow to sync it, or a link flapped and the status was forgotten) is
//! silently left out, so the demo waits for that condition, not for time to pass.

use std::time::Duration;

use anyhow::bail;

use chainmesh::identity::NodeId;
use chainmesh::node::{Fanout, NodeHandle};
use chainmesh_testkit::LocalNet;

/// How long the sender may take to learn its audience.
const LEARN: Duration = Duration::from_secs(10);

/// The nodes of a fan-out from node `from` of `net`, named `{prefix}{i}` in what is printed.
pub(super) struct Audience<'a> {
    /// The network.
    pub net: &'a LocalNet,
    /// How its nodes are named: "node", "line".
    pub prefix: &'a str,
    /// The sender.
    pub from: usize,
    /// The nodes that must get the message.
    pub want: Vec<usize>,
}

impl Audience<'_> {
    fn name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// The wanted nodes' IDs; a stopped one is an error, as nothing can reach it.
    fn ids(&self) -> Result<Vec<(usize, NodeId)>, String> {
        self.want
            .iter()
            .map(|&i| match self.net.try_handle(i) {
                Some(h) => Ok((i, h.node_id())),
                None => Err(format!("{} (not running)", self.name(i))),
            })
            .collect()
    }

    /// What the sender still lacks for each wanted node: its status listing it in the
    /// audience (`listed`), or a route to it. Empty once it has everything.
    fn missing(&self, listed: &dyn Fn(&NodeHandle) -> Vec<NodeId>) -> Vec<String> {
        let Some(sender) = self.net.try_handle(self.from) else {
            return vec![format!(
                "{} (the sender, not running)",
                self.name(self.from)
            )];
        };
        let ids = match self.ids() {
            Ok(ids) => ids,
            Err(stopped) => return vec![stopped],
        };
        let listed = listed(&sender);
        let routed: Vec<NodeId> = sender.reachable_nodes().into_iter().map(|r| r.0).collect();
        ids.into_iter()
            .filter_map(|(i, id)| {
                let lacks = if !listed.contains(&id) {
                    "no status listing it"
                } else if !routed.contains(&id) {
                    "no route"
                } else {
                    return None;
                };
                Some(format!("{} ({lacks})", self.name(i)))
            })
            .collect()
    }

    /// Waits until the sender lists every wanted node in `what` (e.g. "group0's members")
    /// and has a route to each; fails naming what it still lacks after [`LEARN`].
    pub async fn known(
        &self,
        what: &str,
        listed: impl Fn(&NodeHandle) -> Vec<NodeId>,
    ) -> anyhow::Result<()> {
        let ready = self
            .net
            .wait_for(LEARN, |_| self.missing(&listed).is_empty())
            .await;
        if !ready {
            bail!(
                "after {LEARN:?} {} still does not know all of {what}: missing {}",
                self.name(self.from),
                self.missing(&listed).join(", ")
            );
        }
        Ok(())
    }

    /// Fails unless `report` says the message was queued for every wanted node, naming the
    /// ones it was not and why.
    pub fn all_queued(&self, what: &str, report: &Fanout) -> anyhow::Result<()> {
        let lacking: Vec<String> = self
            .ids()
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .filter(|(_, id)| !report.queued.contains(id))
            .map(|(i, id)| {
                let why = if report.unreachable.contains(&id) {
                    "no route"
                } else if report.dropped.contains(&id) {
                    "its link closed or its queue was full"
                } else {
                    "not a target"
                };
                format!("{} ({why})", self.name(i))
            })
            .collect();
        if !lacking.is_empty() {
            bail!(
                "{what} from {} was not queued for {}",
                self.name(self.from),
                lacking.join(", ")
            );
        }
        Ok(())
    }
}
