//! The payloads of StatusSeq (0x09), StatusRequest (0x03) and StatusResponse (0x04), and the
//! [`NodeStatus`] encoding inside a StatusResponse. Pure: no I/O, no clocks.
//!
//! All integers are big-endian. Decoding is strict (every byte accounted for, every name
//! UTF-8 and non-empty, reserved values refused) and never panics or allocates more than the
//! input can justify, whatever the bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::{NodeStatus, StatusVersion, MAX_LIST_LEN, MAX_NAME_LEN};

/// Size of a StatusSeq payload.
pub const SEQ_ANNOUNCE_LEN: usize = 25;
/// Size of a StatusRequest payload.
pub const STATUS_QUERY_LEN: usize = 4;
/// Size of a StatusResponse payload before the encoded [`NodeStatus`].
pub const STATUS_ANSWER_HEAD_LEN: usize = 16;
/// Size of a [`NodeStatus`] with empty lists and no application status.
pub const NODE_STATUS_MIN_LEN: usize = 2 + 2 + 2 + 2 + 2 + 4;

/// StatusSeq flag: the sender wants a StatusSeq back (it has not seen us confirm its version).
const FLAG_REPLY_WANTED: u8 = 0x01;

/// Why a status payload does not decode. Offsets count from the first byte of the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A fixed-size payload has the wrong size.
    #[error("{payload} payload is {length} bytes, expected {expected}")]
    Size {
        /// Which payload.
        payload: &'static str,
        /// Its length as received.
        length: usize,
        /// The only valid length.
        expected: usize,
    },
    /// A field runs past the end of the payload.
    #[error(
        "{field} at payload offset {offset} needs {needed} bytes, but only {available} are left"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left from `offset` on.
        available: usize,
    },
    /// Bytes are left after the last field.
    #[error("{extra} trailing bytes after the status at payload offset {offset}")]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
    /// A name is not UTF-8.
    #[error(
        "{field} at payload offset {offset} is not UTF-8 (invalid byte at offset {bad_offset})"
    )]
    NotUtf8 {
        /// The field.
        field: &'static str,
        /// Where its bytes start.
        offset: usize,
        /// Where the first invalid byte is.
        bad_offset: usize,
    },
    /// A name is empty.
    #[error("empty {field} at payload offset {offset}")]
    EmptyName {
        /// The field.
        field: &'static str,
        /// Where its length prefix is.
        offset: usize,
    },
    /// `min_version > max_version`.
    #[error("status version range is empty: min_version {min} > max_version {max}")]
    VersionRange {
        /// min_version as received.
        min: u16,
        /// max_version as received.
        max: u16,
    },
    /// A node's own epoch is 0, which is reserved for "no status".
    #[error("epoch 0 is reserved")]
    ZeroEpoch,
    /// A node's own seq is 0, which is reserved.
    #[error("status seq 0 is reserved")]
    ZeroSeq,
    /// A StatusSeq view is half empty: epoch and seq must both be 0 or both be non-zero.
    #[error("view epoch {epoch:#018x} with seq {seq}: both must be 0 or both non-zero")]
    BadView {
        /// view_epoch as received.
        epoch: u64,
        /// view_seq as received.
        seq: u32,
    },
}

/// The StatusSeq payload: a node's version, plus the version it holds of the receiver.
///
/// The view doubles as an acknowledgement: a node that sees its own current version in a
/// peer's view knows the peer is up to date and stops announcing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqAnnounce {
    /// The sender's current status version.
    pub version: StatusVersion,
    /// The sender has not seen the receiver confirm `version` and wants a StatusSeq back.
    pub reply_wanted: bool,
    /// The version of the receiver's status the sender holds, `None` if it holds none.
    pub view: Option<StatusVersion>,
}

impl SeqAnnounce {
    /// The 25-byte payload.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(SEQ_ANNOUNCE_LEN);
        b.put_u64(self.version.epoch);
        b.put_u32(self.version.seq);
        b.put_u8(if self.reply_wanted {
            FLAG_REPLY_WANTED
        } else {
            0
        });
        let view = self.view.unwrap_or(StatusVersion::new(0, 0));
        b.put_u64(view.epoch);
        b.put_u32(view.seq);
        b.freeze()
    }

    /// Parses a StatusSeq payload. Flag bits other than `reply_wanted` are ignored, so a later
    /// version can give them meaning.
    pub fn decode(payload: &[u8]) -> Result<SeqAnnounce, CodecError> {
        if payload.len() != SEQ_ANNOUNCE_LEN {
            return Err(CodecError::Size {
                payload: "StatusSeq",
                length: payload.len(),
                expected: SEQ_ANNOUNCE_LEN,
            });
        }
        let mut r = Reader::new(payload);
        let version = r.version()?;
        let flags = r.u8("flags")?;
        let epoch = r.u64("view_epoch")?;
        let seq = r.u32("view_seq")?;
        let view = match (epoch, seq) {
            (0, 0) => None,
            (0, _) | (_, 0) => return Err(CodecError::BadView { epoch, seq }),
            _ => Some(StatusVersion { epoch, seq }),
        };
        Ok(SeqAnnounce {
            version,
            reply_wanted: flags & FLAG_REPLY_WANTED != 0,
            view,
        })
    }
}

/// The StatusRequest payload: which query this is, echoed by the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusQuery {
    /// Chosen by the requester; an answer is accepted only for the requester's latest query
    /// to that node.
    pub query_id: u32,
}

impl StatusQuery {
    /// The 4-byte payload.
    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(&self.query_id.to_be_bytes())
    }

    /// Parses a StatusRequest payload.
    pub fn decode(payload: &[u8]) -> Result<StatusQuery, CodecError> {
        let b: [u8; STATUS_QUERY_LEN] = payload.try_into().map_err(|_| CodecError::Size {
            payload: "StatusRequest",
            length: payload.len(),
            expected: STATUS_QUERY_LEN,
        })?;
        Ok(StatusQuery {
            query_id: u32::from_be_bytes(b),
        })
    }
}

/// The StatusResponse payload: the answer to one query, with the responder's whole status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    /// The query this answers.
    pub query_id: u32,
    /// The version of `status`.
    pub version: StatusVersion,
    /// The responder's status.
    pub status: NodeStatus,
}

impl StatusAnswer {
    /// The payload, from a status that is already encoded (the service caches its own).
    pub fn encode_with(query_id: u32, version: StatusVersion, encoded_status: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(STATUS_ANSWER_HEAD_LEN + encoded_status.len());
        b.put_u32(query_id);
        b.put_u64(version.epoch);
        b.put_u32(version.seq);
        b.put_slice(encoded_status);
        b.freeze()
    }

    /// The payload.
    pub fn encode(&self) -> Bytes {
        Self::encode_with(self.query_id, self.version, &self.status.encode())
    }

    /// Parses a StatusResponse payload. The application status is a slice of `payload`, not
    /// a copy.
    pub fn decode(payload: &Bytes) -> Result<StatusAnswer, CodecError> {
        let mut r = Reader::new(payload);
        let query_id = r.u32("query_id")?;
        let version = r.version()?;
        let status = decode_status(&mut r, payload)?;
        r.finish()?;
        Ok(StatusAnswer {
            query_id,
            version,
            status,
        })
    }
}

impl NodeStatus {
    /// Bytes the encoded status takes.
    pub fn encoded_len(&self) -> usize {
        let list = |l: &[String]| 2 + l.iter().map(|s| 2 + s.len()).sum::<usize>();
        2 + 2
            + list(&self.groups)
            + list(&self.topics)
            + list(&self.amop_topics)
            + 4
            + self.app.len()
    }

    /// Appends the encoded status to `dst`.
    ///
    /// Never fails: a status that passes [`NodeStatus::validate`] encodes exactly; anything
    /// longer than its prefix can say is cut to fit so the bytes stay well-formed.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u16(self.min_version);
        dst.put_u16(self.max_version);
        for list in [&self.groups, &self.topics, &self.amop_topics] {
            let list = list.get(..MAX_LIST_LEN).unwrap_or(list);
            dst.put_u16(list.len() as u16);
            for name in list {
                let b = name.as_bytes();
                let b = b.get(..MAX_NAME_LEN).unwrap_or(b);
                dst.put_u16(b.len() as u16);
                dst.put_slice(b);
            }
        }
        let app = self.app.get(..u32::MAX as usize).unwrap_or(&self.app);
        dst.put_u32(app.len() as u32);
        dst.put_slice(app);
    }

    /// The encoded status as its own buffer.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut b);
        b.freeze()
    }

    /// Decodes exactly one encoded status: `bytes` must hold it and nothing else.
    pub fn decode(bytes: &Bytes) -> Result<NodeStatus, CodecError> {
        let mut r = Reader::new(bytes);
        let status = decode_status(&mut r, bytes)?;
        r.finish()?;
        Ok(status)
    }
}

fn decode_status(r: &mut Reader<'_>, whole: &Bytes) -> Result<NodeStatus, CodecError> {
    let min_version = r.u16("min_version")?;
    let max_version = r.u16("max_version")?;
    if min_version > max_version {
        return Err(CodecError::VersionRange {
            min: min_version,
            max: max_version,
        });
    }
    let groups = r.names("group")?;
    let topics = r.names("topic")?;
    let amop_topics = r.names("AMOP topic")?;
    let app_len = r.u32("app length")? as usize;
    let at = r.pos;
    let app = r.take(app_len, "app")?;
    // `take` checked the range against the same buffer, so this is the zero-copy path; the
    // fallback copy only keeps the function panic-free should the two ever disagree.
    let app = match whole.get(at..at.saturating_add(app_len)) {
        Some(_) => whole.slice(at..at + app_len),
        None => Bytes::copy_from_slice(app),
    };
    Ok(NodeStatus {
        groups,
        topics,
        amop_topics,
        min_version,
        max_version,
        app,
    })
}

/// A bounds-checked cursor over one payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self.pos.saturating_add(n);
        match self.buf.get(self.pos..end) {
            Some(b) => {
                self.pos = end;
                Ok(b)
            }
            None => Err(CodecError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.buf.len().saturating_sub(self.pos),
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let at = self.pos;
        self.take(N, field)?
            .try_into()
            // `take` returned exactly N bytes.
            .map_err(|_| CodecError::Truncated {
                field,
                offset: at,
                needed: N,
                available: 0,
            })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A node's own version: epoch and seq, neither 0.
    fn version(&mut self) -> Result<StatusVersion, CodecError> {
        let epoch = self.u64("epoch")?;
        let seq = self.u32("seq")?;
        if epoch == 0 {
            return Err(CodecError::ZeroEpoch);
        }
        if seq == 0 {
            return Err(CodecError::ZeroSeq);
        }
        Ok(StatusVersion { epoch, seq })
    }

    /// A `u16` count, then that many `u16`-prefixed non-empty UTF-8 names.
    fn names(&mut self, field: &'static str) -> Result<Vec<String>, CodecError> {
        let count = usize::from(self.u16(field)?);
        // Each entry takes at least 2 bytes: never reserve more than the rest could hold.
        let room = self.buf.len().saturating_sub(self.pos) / 2;
        let mut out = Vec::with_capacity(count.min(room));
        for _ in 0..count {
            let len_at = self.pos;
            let len = usize::from(self.u16(field)?);
            if len == 0 {
                return Err(CodecError::EmptyName {
                    field,
                    offset: len_at,
                });
            }
            let at = self.pos;
            let bytes = self.take(len, field)?;
            match std::str::from_utf8(bytes) {
                Ok(s) => out.push(s.to_owned()),
                Err(e) => {
                    return Err(CodecError::NotUtf8 {
                        field,
                        offset: at,
                        bad_offset: at + e.valid_up_to(),
                    })
                }
            }
        }
        Ok(out)
    }

    fn finish(&self) -> Result<(), CodecError> {
        let extra = self.buf.len().saturating_sub(self.pos);
        if extra != 0 {
            return Err(CodecError::TrailingBytes {
                offset: self.pos,
                extra,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> NodeStatus {
        NodeStatus {
            groups: vec!["group0".into()],
            topics: vec!["blocks".into()],
            amop_topics: vec![],
            min_version: 1,
            max_version: 1,
            app: Bytes::from_static(b"height=42"),
        }
    }

    #[test]
    fn status_layout_is_as_documented() {
        let enc = sample().encode();
        assert_eq!(
            hex::encode(&enc),
            "00010001\
             0001 0006 67726f757030\
             0001 0006 626c6f636b73\
             0000\
             00000009 6865696768743d3432"
                .replace(' ', "")
        );
        assert_eq!(enc.len(), sample().encoded_len());
        assert_eq!(NodeStatus::default().encoded_len(), NODE_STATUS_MIN_LEN);
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(NodeStatus::decode(&s.encode()).unwrap(), s);
        let a = StatusAnswer {
            query_id: 7,
            version: StatusVersion::new(0x0123_4567_89ab_cdef, 3),
            status: s,
        };
        assert_eq!(StatusAnswer::decode(&a.encode()).unwrap(), a);
        let q = StatusQuery { query_id: 9 };
        assert_eq!(StatusQuery::decode(&q.encode()).unwrap(), q);
        for view in [None, Some(StatusVersion::new(5, 6))] {
            let s = SeqAnnounce {
                version: StatusVersion::new(1, 2),
                reply_wanted: true,
                view,
            };
            let enc = s.encode();
            assert_eq!(enc.len(), SEQ_ANNOUNCE_LEN);
            assert_eq!(SeqAnnounce::decode(&enc).unwrap(), s);
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        assert_eq!(
            StatusQuery::decode(&[0; 3]),
            Err(CodecError::Size {
                payload: "StatusRequest",
                length: 3,
                expected: 4
            })
        );
        assert!(matches!(
            SeqAnnounce::decode(&[0; 26]),
            Err(CodecError::Size { length: 26, .. })
        ));
        let mut seq = SeqAnnounce {
            version: StatusVersion::new(1, 1),
            reply_wanted: false,
            view: None,
        }
        .encode()
        .to_vec();
        seq[..8].fill(0);
        assert_eq!(SeqAnnounce::decode(&seq), Err(CodecError::ZeroEpoch));
        seq[7] = 1;
        seq[8..12].fill(0);
        assert_eq!(SeqAnnounce::decode(&seq), Err(CodecError::ZeroSeq));
        seq[11] = 1;
        seq[24] = 1; // view seq without a view epoch
        assert_eq!(
            SeqAnnounce::decode(&seq),
            Err(CodecError::BadView { epoch: 0, seq: 1 })
        );
        // Unknown flag bits are ignored.
        seq[24] = 0;
        seq[12] = 0xfe;
        assert!(!SeqAnnounce::decode(&seq).unwrap().reply_wanted);

        let enc = sample().encode();
        let mut trailing = enc.to_vec();
        trailing.push(0);
        assert_eq!(
            NodeStatus::decode(&Bytes::from(trailing)),
            Err(CodecError::TrailingBytes {
                offset: enc.len(),
                extra: 1
            })
        );
        assert!(matches!(
            NodeStatus::decode(&enc.slice(..enc.len() - 1)),
            Err(CodecError::Truncated { field: "app", .. })
        ));
        let mut bad = enc.to_vec();
        bad[8] = 0xff; // first byte of "group0"
        assert_eq!(
            NodeStatus::decode(&Bytes::from(bad)),
            Err(CodecError::NotUtf8 {
                field: "group",
                offset: 8,
                bad_offset: 8
            })
        );
        let mut range = enc.to_vec();
        range[1] = 2;
        assert_eq!(
            NodeStatus::decode(&Bytes::from(range)),
            Err(CodecError::VersionRange { min: 2, max: 1 })
        );
        // A count far beyond the input neither allocates for it nor panics.
        let huge = Bytes::from_static(&[0, 1, 0, 1, 0xff, 0xff, 0, 1, b'x']);
        assert!(matches!(
            NodeStatus::decode(&huge),
            Err(CodecError::Truncated { .. })
        ));
        let empty_name = Bytes::from_static(&[0, 1, 0, 1, 0, 1, 0, 0]);
        assert_eq!(
            NodeStatus::decode(&empty_name),
            Err(CodecError::EmptyName {
                field: "group",
                offset: 6
            })
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9\u{e9}\u{4e2d}]{1,12}"
    }

    prop_compose! {
        fn status()(
            groups in proptest::collection::vec(name(), 0..4),
            topics in proptest::collection::vec(name(), 0..4),
            amop_topics in proptest::collection::vec(name(), 0..4),
            a in any::<u16>(),
            b in any::<u16>(),
            app in proptest::collection::vec(any::<u8>(), 0..64),
        ) -> NodeStatus {
            NodeStatus {
                groups, topics, amop_topics,
                min_version: a.min(b), max_version: a.max(b),
                app: Bytes::from(app),
            }
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let b = Bytes::from(bytes);
            let _ = NodeStatus::decode(&b);
            let _ = StatusAnswer::decode(&b);
            let _ = SeqAnnounce::decode(&b);
            let _ = StatusQuery::decode(&b);
        }

        #[test]
        fn status_answers_round_trip(s in status(), id in any::<u32>(), epoch in 1u64.., seq in 1u32..) {
            let a = StatusAnswer { query_id: id, version: StatusVersion::new(epoch, seq), status: s };
            let enc = a.encode();
            prop_assert_eq!(enc.len(), STATUS_ANSWER_HEAD_LEN + a.status.encoded_len());
            prop_assert_eq!(StatusAnswer::decode(&enc).unwrap(), a);
        }

        #[test]
        fn every_truncation_of_a_valid_answer_is_an_error(s in status(), cut in any::<proptest::sample::Index>()) {
            let enc = StatusAnswer { query_id: 1, version: StatusVersion::new(1, 1), status: s }.encode();
            let at = cut.index(enc.len());
            prop_assert!(StatusAnswer::decode(&enc.slice(..at)).is_err());
        }
    }
}
