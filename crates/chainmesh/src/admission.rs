//! Admission policy: which node IDs may connect, as plain data.

use std::collections::HashSet;

use crate::identity::NodeId;

/// Why a peer was refused admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node ID is on the blacklist.
    #[error("blacklisted")]
    Blacklisted,
    /// A whitelist is set and the node ID is not on it.
    #[error("not-whitelisted")]
    NotWhitelisted,
}

/// The certificate blacklist and optional whitelist, by node ID. The blacklist wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    blacklist: HashSet<NodeId>,
    whitelist: HashSet<NodeId>,
}

impl Admission {
    /// A policy from the two lists; an empty whitelist admits everyone not blacklisted.
    pub fn new(
        blacklist: impl IntoIterator<Item = NodeId>,
        whitelist: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Admission {
            blacklist: blacklist.into_iter().collect(),
            whitelist: whitelist.into_iter().collect(),
        }
    }

    /// Whether `id` may connect.
    pub fn check(&self, id: &NodeId) -> Result<(), Refusal> {
        if self.blacklist.contains(id) {
            Err(Refusal::Blacklisted)
        } else if !self.whitelist.is_empty() && !self.whitelist.contains(id) {
            Err(Refusal::NotWhitelisted)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    #[test]
    fn empty_policy_admits_all() {
        assert_eq!(Admission::default().check(&id(1)), Ok(()));
    }

    #[test]
    fn whitelist_excludes_the_rest() {
        let a = Admission::new([], [id(1)]);
        assert_eq!(a.check(&id(1)), Ok(()));
        assert_eq!(a.check(&id(2)), Err(Refusal::NotWhitelisted));
    }

    #[test]
    fn blacklist_wins_over_whitelist() {
        let a = Admission::new([id(1)], [id(1)]);
        assert_eq!(a.check(&id(1)), Err(Refusal::Blacklisted));
    }
}
