//! The node ID: the 64-byte uncompressed EC public key point without its leading `0x04`.

use std::fmt;
use std::str::FromStr;

/// Length in bytes of a node ID on the wire.
pub const NODE_ID_LEN: usize = 64;

/// A node's identity on the network: the X and Y coordinates of its EC public key.
///
/// Shown as 128 lowercase hex characters, which is what
/// `openssl x509 -pubkey | openssl pkey -pubin -outform DER | tail -c 64` prints for the
/// node's certificate. On the wire it is the raw 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; NODE_ID_LEN]);

/// Fewest hex digits [`NodeId::resolve_prefix`] takes: shorter prefixes match by accident
/// too often.
pub const MIN_PREFIX_DIGITS: usize = 4;

/// Why [`NodeId::resolve_prefix`] named no node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not hex digits (after an optional `0x`).
    #[error("`{0}` is neither a node ID nor a prefix of one (hex digits, optionally after 0x)")]
    NotHex(String),
    /// Fewer than [`MIN_PREFIX_DIGITS`] hex digits.
    #[error("`{0}` is too short: give at least {MIN_PREFIX_DIGITS} hex digits of a node ID")]
    TooShort(String),
    /// No known node ID starts with it.
    #[error("`{0}` is not the start of any known node ID")]
    Unknown(String),
    /// Several known node IDs start with it.
    #[error("`{prefix}` is the start of several node IDs: {}", short_ids(.candidates))]
    Ambiguous {
        /// What was given.
        prefix: String,
        /// The node IDs it matches, sorted.
        candidates: Vec<NodeId>,
    },
}

/// `ids` (sorted) each cut to as many hex digits as tell them apart, at least the 8 of
/// [`NodeId::short`].
fn short_ids(ids: &[NodeId]) -> String {
    let hex: Vec<String> = ids.iter().map(NodeId::to_string).collect();
    let len = hex
        .windows(2)
        .map(|w| {
            let same = w[0].bytes().zip(w[1].bytes()).take_while(|(x, y)| x == y);
            same.count().saturating_add(1)
        })
        .fold(8, usize::max)
        .min(NODE_ID_LEN * 2);
    let cut: Vec<&str> = hex.iter().map(|h| h.get(..len).unwrap_or(h)).collect();
    cut.join(", ")
}

/// Why a string or byte slice is not a node ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The input had the wrong length.
    #[error("a node ID is 64 bytes (128 hex characters), got {0} bytes")]
    Length(usize),
    /// The input was not hexadecimal.
    #[error("a node ID must be hexadecimal: {0}")]
    Hex(String),
}

impl NodeId {
    /// Wraps 64 raw bytes.
    pub const fn from_bytes(bytes: [u8; NODE_ID_LEN]) -> Self {
        NodeId(bytes)
    }

    /// Takes a node ID from a slice, which must be exactly 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, NodeIdError> {
        let arr: [u8; NODE_ID_LEN] = bytes
            .try_into()
            .map_err(|_| NodeIdError::Length(bytes.len()))?;
        Ok(NodeId(arr))
    }

    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    /// The node `spec` names: a full node ID (known or not), or a prefix of at least
    /// [`MIN_PREFIX_DIGITS`] hex digits (optionally after `0x`, any case) that exactly one
    /// of `candidates` starts with. Candidates may repeat.
    pub fn resolve_prefix(
        spec: &str,
        candidates: impl IntoIterator<Item = NodeId>,
    ) -> Result<NodeId, PrefixError> {
        let spec = spec.trim();
        if let Ok(id) = spec.parse::<NodeId>() {
            return Ok(id);
        }
        let digits = spec
            .strip_prefix("0x")
            .or_else(|| spec.strip_prefix("0X"))
            .unwrap_or(spec);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PrefixError::NotHex(spec.to_owned()));
        }
        if digits.len() < MIN_PREFIX_DIGITS {
            return Err(PrefixError::TooShort(spec.to_owned()));
        }
        let digits = digits.to_ascii_lowercase();
        let matches: std::collections::BTreeSet<NodeId> = candidates
            .into_iter()
            .filter(|id| id.to_string().starts_with(&digits))
            .collect();
        let mut it = matches.iter();
        match (it.next(), it.next()) {
            (Some(id), None) => Ok(*id),
            (None, _) => Err(PrefixError::Unknown(spec.to_owned())),
            (Some(_), Some(_)) => Err(PrefixError::Ambiguous {
                prefix: spec.to_owned(),
                candidates: matches.into_iter().collect(),
            }),
        }
    }

    /// The first 8 hex characters: enough to tell peers apart in logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// A [`BuildHasher`](std::hash::BuildHasher) for maps keyed by the node IDs of authenticated
/// peers: it hashes the first 8 bytes of the ID and ignores the rest.
///
/// A node ID is an EC public key point, so those bytes are already uniformly distributed and
/// SipHash over all 64 (the default hasher) buys nothing but ~100 instructions per lookup.
/// Use it only where every key comes from a verified certificate (a peer cannot choose its
/// key's bytes without the CA issuing it a certificate); IDs learned from packets could be
/// chosen to collide, and belong in maps with the default hasher.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeIdHashBuilder;

impl std::hash::BuildHasher for NodeIdHashBuilder {
    type Hasher = NodeIdHasher;

    fn build_hasher(&self) -> NodeIdHasher {
        NodeIdHasher(0)
    }
}

/// The hasher of [`NodeIdHashBuilder`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeIdHasher(u64);

impl NodeIdHasher {
    fn mix(&mut self, x: u64) {
        // FxHash's step: enough to spread the length prefix and the ID bytes apart.
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for NodeIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.mix(u64::from_le_bytes(word));
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// A map keyed by authenticated peers' node IDs (see [`NodeIdHashBuilder`]).
pub type PeerMap<V> = std::collections::HashMap<NodeId, V, NodeIdHashBuilder>;

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; NODE_ID_LEN * 2];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    /// Parses 128 hex characters, optionally prefixed with `0x`; upper case is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if s.len() != NODE_ID_LEN * 2 {
            return Err(NodeIdError::Length(s.len() / 2));
        }
        let mut out = [0u8; NODE_ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|e| NodeIdError::Hex(e.to_string()))?;
        Ok(NodeId(out))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_map_keeps_ids_that_share_a_prefix_apart() {
        let mut m: PeerMap<u32> = PeerMap::default();
        let a = NodeId::from_bytes([7; NODE_ID_LEN]);
        let mut b_bytes = [7; NODE_ID_LEN];
        b_bytes[63] = 8; // same first 8 bytes, so the same hash: equality must still tell
        let b = NodeId::from_bytes(b_bytes);
        m.insert(a, 1);
        m.insert(b, 2);
        assert_eq!((m.get(&a), m.get(&b), m.len()), (Some(&1), Some(&2), 2));
    }

    #[test]
    fn hex_round_trip_is_lowercase() {
        let mut b = [0u8; 64];
        b[0] = 0xAB;
        b[63] = 0x01;
        let id = NodeId::from_bytes(b);
        let s = id.to_string();
        assert_eq!(s.len(), 128);
        assert!(s.starts_with("ab00"));
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(
            format!("0x{}", s.to_uppercase()).parse::<NodeId>().unwrap(),
            id
        );
        assert_eq!(id.short(), "ab000000");
    }

    /// `fill` everywhere but byte `at`.
    fn with_byte(fill: u8, at: usize, byte: u8) -> NodeId {
        let mut b = [fill; NODE_ID_LEN];
        b[at] = byte;
        NodeId::from_bytes(b)
    }

    #[test]
    fn a_unique_prefix_or_a_full_id_names_one_node() {
        let (a, b) = (with_byte(0xab, 63, 1), with_byte(0xcd, 63, 1));
        let known = [a, b, a];
        assert_eq!(NodeId::resolve_prefix("abab", known), Ok(a));
        assert_eq!(NodeId::resolve_prefix(" 0xCDcd ", known), Ok(b));
        assert_eq!(NodeId::resolve_prefix("abababa", known), Ok(a));
        // A full ID needs no candidate.
        let other = with_byte(0x11, 63, 2);
        assert_eq!(NodeId::resolve_prefix(&other.to_string(), []), Ok(other));
    }

    #[test]
    fn an_ambiguous_short_foreign_or_unknown_prefix_is_refused_and_says_why() {
        let (a, b) = (with_byte(0xab, 5, 1), with_byte(0xab, 5, 2));
        let e = NodeId::resolve_prefix("abab", [b, a]).unwrap_err();
        assert_eq!(
            e,
            PrefixError::Ambiguous {
                prefix: "abab".into(),
                candidates: vec![a, b],
            }
        );
        // Each candidate is shown as far as tells it from the others.
        assert!(e.to_string().ends_with("ababababab01, ababababab02"), "{e}");
        assert_eq!(
            NodeId::resolve_prefix("0xab", [a]),
            Err(PrefixError::TooShort("0xab".into()))
        );
        assert_eq!(
            NodeId::resolve_prefix("node1", [a]),
            Err(PrefixError::NotHex("node1".into()))
        );
        assert_eq!(
            NodeId::resolve_prefix("0x", [a]),
            Err(PrefixError::NotHex("0x".into()))
        );
        assert_eq!(
            NodeId::resolve_prefix("cdcd", [a, b]),
            Err(PrefixError::Unknown("cdcd".into()))
        );
        // Longer than a node ID: no candidate can start with it.
        let long = format!("{a}00");
        assert_eq!(
            NodeId::resolve_prefix(&long, [a]),
            Err(PrefixError::Unknown(long.clone()))
        );
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!("abcd".parse::<NodeId>(), Err(NodeIdError::Length(2)));
        assert!(matches!(
            "zz".repeat(64).parse::<NodeId>(),
            Err(NodeIdError::Hex(_))
        ));
        assert_eq!(NodeId::from_slice(&[0; 63]), Err(NodeIdError::Length(63)));
    }
}
