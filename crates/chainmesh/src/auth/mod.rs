//! Source authentication of relayed packets (protocol version 3): the pairwise keys that any
//! two nodes derive without a round trip, and the tags that prove to each destination that a
//! packet comes from the source it names.
//!
//! A packet in direct form needs none of this: it came over the TLS link of its source. Any
//! other packet with options may have been relayed, so its source carries, for every
//! destination D it lists, a tag that only D (and the source) can compute:
//!
//! - the packet's [`Digest`] is SHA-256 of everything a relay must not change (type, Seq,
//!   flags without the TTL, group, source, module, payload), computed once per packet;
//! - the key of source S and destination D is HMAC-SHA256 over both node IDs, keyed with
//!   their static ECDH secret ([`crate::identity::keys::shared_secret`]);
//! - the tag is the first [`TAG_LEN`] bytes of HMAC-SHA256 of the digest under that key.
//!
//! `docs/protocol.md` (section Source authentication) is the specification and argues the
//! design.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BufMut;
use hmac::{KeyInit, Mac};
use openssl::nid::Nid;
use parking_lot::Mutex;
use sha2::Sha256;

use crate::identity::keys::{curve_of, public_key_of, shared_secret, KeyError, SHARED_SECRET_LEN};
use crate::identity::{Identity, NodeId, NODE_ID_LEN};
pub use crate::wire::TAG_LEN;
use crate::wire::{Ext, Packet, PacketType};

/// One destination's tag.
pub type Tag = [u8; TAG_LEN];

/// What the digest starts with, so that it cannot be mistaken for a hash made for anything
/// else.
const DIGEST_DOMAIN: &[u8] = b"chainmesh v3 packet";

/// What a pairwise key is derived from besides the secret and the two node IDs.
const KEY_DOMAIN: &[u8] = b"chainmesh v3 relay key";

/// Ext bits a relay may change: the TTL. Version is left out of the digest for the same
/// reason: a relay rewrites it per link.
const MUTABLE_EXT: u16 = Ext::TTL_MASK;

type HmacSha256 = hmac::Hmac<Sha256>;

/// SHA-256 of the parts of a packet that its tags cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

/// The fields of a packet that its tags cover, as borrowed by [`Digest::of`].
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    /// PacketType.
    pub packet_type: PacketType,
    /// Seq.
    pub seq: u32,
    /// Ext; its TTL is left out.
    pub ext: Ext,
    /// GroupID.
    pub group: &'a [u8],
    /// The source node ID.
    pub src: &'a NodeId,
    /// ModuleID.
    pub module: u16,
}

impl Digest {
    /// The digest of `c` with the payload given in `parts` (concatenated, as it goes on the
    /// wire: compressed when COMPRESSED is set).
    pub fn of(c: &Covered<'_>, parts: &[&[u8]]) -> Digest {
        // OpenSSL's SHA-256 for the one pass over the payload: it uses the CPU's SHA
        // instructions where there are some. The fixed fields go in as two buffers, not one
        // call each: every call has a cost of its own, and this runs twice per relayed
        // packet (at its source and at its destination).
        // A GroupID is at most 65535 bytes on the wire; the length keeps group and source
        // apart in the hashed bytes.
        let group_len = u16::try_from(c.group.len()).unwrap_or(u16::MAX);
        let mut head = [0u8; DIGEST_DOMAIN.len() + 10];
        let mut w = &mut head[..];
        w.put_slice(DIGEST_DOMAIN);
        w.put_u16(c.packet_type.0);
        w.put_u32(c.seq);
        w.put_u16(c.ext.0 & !MUTABLE_EXT);
        w.put_u16(group_len);
        let mut tail = [0u8; NODE_ID_LEN + 2];
        let mut w = &mut tail[..];
        w.put_slice(c.src.as_bytes());
        w.put_u16(c.module);
        let mut h = openssl::sha::Sha256::new();
        h.update(&head);
        h.update(c.group);
        h.update(&tail);
        for p in parts {
            h.update(p);
        }
        Digest(h.finish())
    }

    /// The digest of a decoded packet with options; `None` for a type without them.
    pub fn of_packet(p: &Packet) -> Option<Digest> {
        let o = p.options.as_ref()?;
        let c = Covered {
            packet_type: p.packet_type,
            seq: p.seq,
            ext: p.ext,
            group: o.group.as_bytes(),
            src: &o.src,
            module: o.module,
        };
        Some(Digest::of(&c, &[&p.payload]))
    }
}

/// The key two nodes share, keyed and ready: computing a tag costs two SHA-256 blocks.
#[derive(Clone)]
pub struct PairKey(HmacSha256);

impl PairKey {
    /// The key of nodes `a` and `b` (in either order) from their static ECDH `secret`.
    pub fn derive(secret: &[u8; SHARED_SECRET_LEN], a: &NodeId, b: &NodeId) -> PairKey {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut kdf = keyed(secret);
        kdf.update(KEY_DOMAIN);
        kdf.update(lo.as_bytes());
        kdf.update(hi.as_bytes());
        PairKey(keyed(&kdf.finalize().into_bytes()))
    }

    /// The tag of `digest` under this key.
    pub fn tag(&self, digest: &Digest) -> Tag {
        let mut mac = self.0.clone();
        mac.update(&digest.0);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(full.get(..TAG_LEN).unwrap_or(&[0; TAG_LEN]));
        tag
    }

    /// Whether `tag` is the tag of `digest` under this key, compared in constant time.
    pub fn verify(&self, digest: &Digest, tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(&digest.0);
        mac.verify_truncated_left(tag).is_ok() && tag.len() == TAG_LEN
    }
}

/// HMAC-SHA256 keyed with `key`; HMAC takes a key of any length, so this cannot fail.
fn keyed(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        // Unreachable for HMAC; an empty key keeps this free of panics regardless.
        Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
    }
}

/// This node's pairwise keys with every other node, derived when first needed and kept in
/// a bounded cache (the oldest entry goes first), so a stream of packets naming ever new
/// sources costs one key agreement each and never grows the node.
pub struct Keyring {
    identity: Identity,
    curve: Nid,
    cache: Mutex<Cache>,
}

struct Cache {
    keys: HashMap<NodeId, Arc<PairKey>, foldhash::fast::RandomState>,
    order: VecDeque<NodeId>,
    capacity: usize,
}

impl Keyring {
    /// The keyring of `identity`, keeping at most `capacity` keys (at least 1).
    pub fn new(identity: &Identity, capacity: usize) -> Result<Keyring, KeyError> {
        Ok(Keyring {
            curve: curve_of(identity)?,
            identity: identity.clone(),
            cache: Mutex::new(Cache {
                keys: HashMap::default(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            }),
        })
    }

    /// This node's ID.
    pub fn local(&self) -> &NodeId {
        &self.identity.node_id
    }

    /// The key this node shares with `peer`. Fails if `peer` is not a public key on the
    /// network's curve.
    pub fn key_for(&self, peer: &NodeId) -> Result<Arc<PairKey>, KeyError> {
        if let Some(k) = self.cache.lock().keys.get(peer) {
            return Ok(k.clone());
        }
        // Agreed outside the lock: it is the slow part, and two threads racing for the same
        // key only do it twice.
        let public = public_key_of(peer, self.curve)?;
        let secret = shared_secret(&self.identity, &public)?;
        let key = Arc::new(PairKey::derive(&secret, &self.identity.node_id, peer));
        let mut cache = self.cache.lock();
        if cache.keys.insert(*peer, key.clone()).is_none() {
            cache.order.push_back(*peer);
        }
        while cache.order.len() > cache.capacity {
            if let Some(old) = cache.order.pop_front() {
                cache.keys.remove(&old);
            }
        }
        Ok(key)
    }

    /// The tag for destination `dst` of a packet from this node with `digest`.
    pub fn tag(&self, dst: &NodeId, digest: &Digest) -> Result<Tag, KeyError> {
        Ok(self.key_for(dst)?.tag(digest))
    }

    /// Whether `tag` proves that `src` made the packet with `digest` for this node. A source
    /// that is no key on the curve proves nothing.
    pub fn verify(&self, src: &NodeId, digest: &Digest, tag: &[u8]) -> bool {
        self.key_for(src).is_ok_and(|k| k.verify(digest, tag))
    }

    /// Keys held now.
    pub fn cached(&self) -> usize {
        self.cache.lock().keys.len()
    }
}

#[cfg(test)]
mod tests;
