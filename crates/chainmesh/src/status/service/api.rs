//! The status service's API for the node: its own status (read and changed) and what it
//! knows of the others. A second `impl` block of the service, apart from the engine.

use super::*;

impl StatusService {
    /// This node's ID.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The engine's settings.
    pub fn config(&self) -> &StatusConfig {
        &self.config
    }

    // ---- this node's status ----

    /// This node's status and its version.
    pub fn local(&self) -> (StatusVersion, NodeStatus) {
        let st = self.state.lock();
        (st.local.version(), st.local.status().clone())
    }

    /// This node's current version.
    pub fn local_version(&self) -> StatusVersion {
        self.state.lock().local.version()
    }

    /// The groups this node belongs to, sorted.
    pub fn local_groups(&self) -> Vec<String> {
        self.local_view.read().groups.clone()
    }

    /// The node-level topics this node subscribes to, sorted.
    pub fn local_topics(&self) -> Vec<String> {
        self.local_view.read().topics.clone()
    }

    /// Whether this node belongs to `group`: whether a broadcast to it is delivered here.
    pub fn local_in_group(&self, group: &str) -> bool {
        sorted_contains(&self.local_view.read().groups, group)
    }

    /// Whether this node subscribes to node-level `topic`: whether a multicast to it is
    /// delivered here.
    pub fn local_has_topic(&self, topic: &str) -> bool {
        sorted_contains(&self.local_view.read().topics, topic)
    }

    /// Applies `change` to this node's status. If the result is valid and differs, seq rises
    /// and the new version is announced at once. Returns the version now current; an invalid
    /// result is refused and changes nothing.
    ///
    /// `change` runs under the engine's lock: it must not call back into the service.
    pub fn update(
        &self,
        change: impl FnOnce(&mut NodeStatus),
    ) -> Result<StatusVersion, StatusError> {
        let mut st = self.state.lock();
        let changed = st.local.update(change, random_epoch)?;
        let version = st.local.version();
        if changed {
            *self.local_view.write() = st.local.status().clone();
        }
        drop(st);
        if changed {
            debug!(node = %self.short, %version, "local status changed");
            self.changed.notify_one();
        }
        Ok(version)
    }

    /// Sets the opaque application status (a block height, say).
    pub fn set_app_status(&self, app: impl Into<Bytes>) -> Result<StatusVersion, StatusError> {
        let app = app.into();
        self.update(|s| s.app = app)
    }

    /// Replaces the groups this node belongs to.
    pub fn set_groups<I, S>(&self, groups: I) -> Result<StatusVersion, StatusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let groups = groups.into_iter().map(Into::into).collect();
        self.update(|s| s.groups = groups)
    }

    /// Replaces the node-level topics this node subscribes to.
    pub fn set_topics<I, S>(&self, topics: I) -> Result<StatusVersion, StatusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.update(|s| s.topics = topics)
    }

    /// Subscribes this node to node-level `topic`.
    pub fn add_topic(&self, topic: &str) -> Result<StatusVersion, StatusError> {
        self.update(|s| s.topics.push(topic.to_owned()))
    }

    /// Unsubscribes this node from node-level `topic`.
    pub fn remove_topic(&self, topic: &str) -> Result<StatusVersion, StatusError> {
        self.update(|s| s.topics.retain(|t| t != topic))
    }

    /// Replaces the topics this node's AMOP clients subscribe to.
    pub fn set_amop_topics<I, S>(&self, topics: I) -> Result<StatusVersion, StatusError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.update(|s| s.amop_topics = topics)
    }

    /// Adds an AMOP topic.
    pub fn add_amop_topic(&self, topic: &str) -> Result<StatusVersion, StatusError> {
        self.update(|s| s.amop_topics.push(topic.to_owned()))
    }

    /// Removes an AMOP topic.
    pub fn remove_amop_topic(&self, topic: &str) -> Result<StatusVersion, StatusError> {
        self.update(|s| s.amop_topics.retain(|t| t != topic))
    }

    /// Sets the protocol versions this node announces.
    pub fn set_versions(&self, min: u16, max: u16) -> Result<StatusVersion, StatusError> {
        self.update(|s| {
            s.min_version = min;
            s.max_version = max;
        })
    }

    // ---- other nodes' statuses ----

    /// `node`'s status, if held.
    pub fn get(&self, node: &NodeId) -> Option<PeerStatus> {
        self.state.lock().table.get(node).cloned()
    }

    /// Every held status of another node, by node ID.
    pub fn all(&self) -> Vec<PeerStatus> {
        self.state.lock().table.all().into_iter().cloned().collect()
    }

    /// Other nodes whose status lists `group` (this node is not included), by node ID.
    pub fn group_members(&self, group: &str) -> Vec<NodeId> {
        self.state.lock().table.group_members(group)
    }

    /// Other nodes subscribing to node-level `topic`, by node ID.
    pub fn topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.state.lock().table.topic_subscribers(topic)
    }

    /// Other nodes whose AMOP clients subscribe to `topic`, by node ID.
    pub fn amop_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.state.lock().table.amop_subscribers(topic)
    }

    /// Every node of `group`, this node included if it is a member, by node ID: the targets
    /// of a broadcast to the group.
    pub fn network_group_members(&self, group: &str) -> Vec<NodeId> {
        let st = self.state.lock();
        let mut v = st.table.group_members(group);
        if st.local.status().in_group(group) {
            v.push(self.local_id);
            v.sort_unstable();
        }
        v
    }

    /// Every node subscribing to node-level `topic`, this node included if it does, by node
    /// ID: the targets of a multicast to the topic.
    pub fn network_topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        let st = self.state.lock();
        let mut v = st.table.topic_subscribers(topic);
        if st.local.status().has_topic(topic) {
            v.push(self.local_id);
            v.sort_unstable();
        }
        v
    }

    /// Status events from now on: one per status received or removed. A subscriber that
    /// falls more than 1024 events behind gets `Lagged` and should re-read [`all`](Self::all).
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.events.subscribe()
    }
}
