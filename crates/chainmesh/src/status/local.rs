//! This node's own status and its version. Pure: the source of new epochs is passed in.

use bytes::Bytes;

use super::{NodeStatus, StatusError, StatusVersion};

/// This node's status, its version, and its encoding (kept ready for StatusResponses).
#[derive(Debug, Clone)]
pub struct LocalStatus {
    version: StatusVersion,
    status: NodeStatus,
    encoded: Bytes,
    max_len: usize,
}

impl LocalStatus {
    /// The status of a node that just started: `epoch` (never 0; a 0 is replaced by 1) and
    /// seq 1. Lists are sorted and deduplicated; the status must pass
    /// [`NodeStatus::validate`] with `max_len`.
    pub fn new(epoch: u64, mut status: NodeStatus, max_len: usize) -> Result<Self, StatusError> {
        status.normalize();
        status.validate(max_len)?;
        Ok(LocalStatus {
            version: StatusVersion::new(epoch.max(1), 1),
            encoded: status.encode(),
            status,
            max_len,
        })
    }

    /// The current version.
    pub fn version(&self) -> StatusVersion {
        self.version
    }

    /// The current status.
    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// The current status, encoded.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// Applies `change` to a copy of the status and, if the result is valid and differs from
    /// the current status, makes it current with the next seq. Returns whether it changed; an
    /// invalid result leaves everything as it was.
    ///
    /// A change that would wrap seq past `u32::MAX` starts a new epoch from `fresh_epoch`
    /// (retried until it is neither 0 nor the current epoch) at seq 1 instead: peers handle
    /// that exactly like a restart, so the 32-bit seq never needs to compare across a wrap.
    pub fn update(
        &mut self,
        change: impl FnOnce(&mut NodeStatus),
        mut fresh_epoch: impl FnMut() -> u64,
    ) -> Result<bool, StatusError> {
        let mut next = self.status.clone();
        change(&mut next);
        next.normalize();
        next.validate(self.max_len)?;
        // An identical status is not a change: announcing it would cost every peer a query.
        if next == self.status {
            return Ok(false);
        }
        self.version = match self.version.seq.checked_add(1) {
            Some(seq) => StatusVersion::new(self.version.epoch, seq),
            None => {
                let mut epoch = fresh_epoch();
                while epoch == 0 || epoch == self.version.epoch {
                    epoch = fresh_epoch();
                }
                StatusVersion::new(epoch, 1)
            }
        };
        self.encoded = next.encode();
        self.status = next;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalStatus {
        LocalStatus::new(7, NodeStatus::with_groups(["g2", "g1", "g2"]), 1024).unwrap()
    }

    #[test]
    fn starts_at_seq_one_normalized() {
        let l = local();
        assert_eq!(l.version(), StatusVersion::new(7, 1));
        assert_eq!(l.status().groups, vec!["g1", "g2"]);
        assert_eq!(l.encoded(), &l.status().encode());
    }

    #[test]
    fn every_change_bumps_seq_and_no_change_does_not() {
        let mut l = local();
        assert!(l
            .update(|s| s.app = Bytes::from_static(b"h1"), || 1)
            .unwrap());
        assert_eq!(l.version().seq, 2);
        assert!(!l
            .update(|s| s.app = Bytes::from_static(b"h1"), || 1)
            .unwrap());
        // Reordering a list is no change either.
        assert!(!l
            .update(|s| s.groups = vec!["g2".into(), "g1".into()], || 1)
            .unwrap());
        assert!(l.update(|s| s.topics.push("t".into()), || 1).unwrap());
        assert_eq!(l.version(), StatusVersion::new(7, 3));
        assert_eq!(NodeStatus::decode(l.encoded()).unwrap(), l.status().clone());
    }

    #[test]
    fn invalid_changes_are_refused_and_leave_the_status_alone() {
        let mut l = local();
        let before = l.status().clone();
        assert_eq!(
            l.update(|s| s.topics.push(String::new()), || 1),
            Err(StatusError::EmptyName { field: "topic" })
        );
        assert!(matches!(
            l.update(|s| s.app = Bytes::from(vec![0; 2048]), || 1),
            Err(StatusError::TooLarge { max: 1024, .. })
        ));
        assert_eq!(
            l.update(|s| s.min_version = 9, || 1),
            Err(StatusError::VersionRange {
                min: 9,
                max: crate::wire::MAX_PROTOCOL_VERSION
            })
        );
        assert_eq!(l.status(), &before);
        assert_eq!(l.version().seq, 1);
    }

    #[test]
    fn seq_wrap_starts_a_new_epoch() {
        let mut l = local();
        l.version.seq = u32::MAX;
        let mut epochs = [0, 7, 99].into_iter();
        assert!(l
            .update(
                |s| s.app = Bytes::from_static(b"x"),
                || epochs.next().unwrap_or(5)
            )
            .unwrap());
        assert_eq!(l.version(), StatusVersion::new(99, 1));
    }
}
