//! The copies of one broadcast or multicast, one per neighbour, encoded once and shared:
//! what the sender (`fanout`) and every relay after it (`inbound`) queue. Pure: no I/O, no
//! locks.
//!
//! Neighbours that are targets and relay for nobody (the plan's leaves) all get the same
//! bytes: in direct form when this node is the packet's source and the link's version has
//! that form, else in full form with an empty destination list. A neighbour that relays
//! gets a copy of its own listing the targets it serves. Every copy is encoded at our
//! newest version; a link that agreed an older one gets a patched copy.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::identity::NodeId;
use crate::routing::FanoutPlan;
use crate::wire::{for_link, DataFrame, Ext, WireError, DIRECT_FORM_VERSION};

/// One neighbour's copy.
pub(super) struct LinkCopy<'p> {
    /// The neighbour it goes to.
    pub(super) hop: NodeId,
    /// The targets it serves: the neighbour alone for a leaf, else the list it carries.
    pub(super) targets: &'p [NodeId],
    /// A relay's own encoding; a leaf shares the common one.
    relay: Option<Bytes>,
}

/// The encodings of one broadcast or multicast.
pub(super) struct Copies<'a> {
    /// The packet as every copy carries it, destination list aside, with its payload as it
    /// goes on the wire (compressed or not) and at the version it is encoded at.
    base: DataFrame<'a>,
    /// The payload uncompressed: size limits count it, as the receiver checks it.
    plain: &'a [u8],
    /// Whether leaves may get the direct form, which names the link's peer as the source:
    /// only when this node is the source.
    direct_leaves: bool,
    direct: OnceLock<Bytes>,
    full: OnceLock<Bytes>,
}

impl<'a> Copies<'a> {
    /// The copies of `base` (whose `dsts` are ignored), `plain` being its payload
    /// uncompressed. `from_here`: this node is the source.
    pub(super) fn new(base: DataFrame<'a>, plain: &'a [u8], from_here: bool) -> Self {
        Copies {
            base: DataFrame { dsts: &[], ..base },
            plain,
            direct_leaves: from_here,
            direct: OnceLock::new(),
            full: OnceLock::new(),
        }
    }

    /// `f` as size limits see it: with the uncompressed payload.
    fn check(&self, f: DataFrame<'_>, limit: u32) -> Result<(), WireError> {
        DataFrame {
            payload: self.plain,
            ..f
        }
        .validate(limit)
    }

    /// One copy per neighbour of `plan`, leaves first. A relay copy that cannot be encoded
    /// within `max_packet` (its destination list makes it too large) is left out, and its
    /// targets are returned apart.
    pub(super) fn for_plan<'p>(
        &self,
        plan: &'p FanoutPlan,
        max_packet: u32,
    ) -> (Vec<LinkCopy<'p>>, Vec<NodeId>) {
        let mut out: Vec<LinkCopy<'p>> = plan
            .leaves
            .iter()
            .map(|leaf| LinkCopy {
                hop: *leaf,
                targets: std::slice::from_ref(leaf),
                relay: None,
            })
            .collect();
        let mut too_large = Vec::new();
        for (hop, list) in &plan.relays {
            let f = DataFrame {
                dsts: list,
                ..self.base
            };
            if self.check(f, max_packet).is_err() {
                too_large.extend_from_slice(list);
                continue;
            }
            out.push(LinkCopy {
                hop: *hop,
                targets: list,
                relay: Some(f.encode(0)),
            });
        }
        (out, too_large)
    }

    /// The bytes of `copy` for a link that agreed `version` and takes packets of up to
    /// `limit` bytes, or why that link cannot take it. Borrowed from the shared encoding
    /// when the link's version is the one it was encoded at: queueing it then copies from
    /// the reference, without touching the buffer's count.
    pub(super) fn frame<'s>(
        &'s self,
        copy: &'s LinkCopy<'_>,
        version: u16,
        limit: u32,
    ) -> Result<Cow<'s, Bytes>, WireError> {
        let direct = copy.relay.is_none() && self.direct_leaves && version >= DIRECT_FORM_VERSION;
        let form = match &copy.relay {
            Some(_) => DataFrame {
                dsts: copy.targets,
                ..self.base
            },
            None if direct => DataFrame {
                ext: self.base.ext | Ext::DIRECT,
                ..self.base
            },
            None => self.base,
        };
        self.check(form, limit)?;
        let shared = match &copy.relay {
            Some(frame) => frame,
            None if direct => self.direct.get_or_init(|| form.encode(0)),
            None => self.full.get_or_init(|| form.encode(0)),
        };
        Ok(if version == self.base.version {
            Cow::Borrowed(shared)
        } else {
            Cow::Owned(for_link(shared, version))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, PacketType, DEFAULT_TTL, MAX_PROTOCOL_VERSION};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    const MAX: u32 = 1 << 20;

    fn base<'a>(src: &'a NodeId, payload: &'a [u8]) -> DataFrame<'a> {
        DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: PacketType::BROADCAST,
            seq: 5,
            ext: Ext::default().with_ttl(DEFAULT_TTL),
            group: "group0",
            src,
            dsts: &[],
            module: 3,
            prefix: &[],
            payload,
        }
    }

    /// Leaves 2 and 3, relay 4 for 4, 5 and 6.
    fn plan() -> FanoutPlan {
        FanoutPlan {
            leaves: vec![id(2), id(3)],
            relays: vec![(id(4), vec![id(4), id(5), id(6)])],
            unreachable: vec![id(9)],
        }
    }

    /// `frame` as its receiver reads it, having got it from `sender` over their link.
    fn decode(frame: &[u8], sender: &NodeId) -> Packet {
        Packet::decode_exact_from(frame, MAX, sender).unwrap()
    }

    #[test]
    fn leaves_share_one_encoding_and_relays_list_their_targets() {
        let src = id(1);
        let copies = Copies::new(base(&src, b"block"), b"block", true);
        let plan = plan();
        let (list, too_large) = copies.for_plan(&plan, MAX);
        assert!(too_large.is_empty());
        let hops: Vec<NodeId> = list.iter().map(|c| c.hop).collect();
        assert_eq!(hops, [id(2), id(3), id(4)]);
        let v = MAX_PROTOCOL_VERSION;
        let (a, b) = (
            copies.frame(&list[0], v, MAX).unwrap(),
            copies.frame(&list[1], v, MAX).unwrap(),
        );
        assert!(matches!((&a, &b), (Cow::Borrowed(_), Cow::Borrowed(_))));
        assert_eq!(a.as_ptr(), b.as_ptr(), "leaves share one buffer");
        // From the source to a neighbour that is the target: direct form, no node IDs.
        let leaf = decode(&a, &src);
        assert!(leaf.ext.is_direct());
        assert_eq!(leaf.options.unwrap().src, src);
        let relay = decode(&copies.frame(&list[2], v, MAX).unwrap(), &src);
        assert!(!relay.ext.is_direct());
        let opts = relay.options.unwrap();
        assert_eq!(opts.dsts, [id(4), id(5), id(6)]);
        assert_eq!(
            (opts.src, relay.seq, relay.payload.as_ref()),
            (src, 5, &b"block"[..])
        );
    }

    #[test]
    fn each_link_gets_its_own_version_and_older_links_the_full_form() {
        let src = id(1);
        let copies = Copies::new(base(&src, b"x"), b"x", true);
        let plan = plan();
        let (list, _) = copies.for_plan(&plan, MAX);
        for version in [1, MAX_PROTOCOL_VERSION] {
            for copy in &list {
                let frame = copies.frame(copy, version, MAX).unwrap();
                let p = decode(&frame, &src);
                assert_eq!(p.version, version);
                let direct = copy.relay.is_none() && version >= DIRECT_FORM_VERSION;
                assert_eq!(
                    p.ext.is_direct(),
                    direct,
                    "v{version} to {}",
                    copy.hop.short()
                );
                assert_eq!(p.options.unwrap().src, src);
            }
        }
    }

    #[test]
    fn relayed_leaves_keep_the_source_in_full_form() {
        // A relay forwards node 7's packet: its neighbours must read 7 as the source, which
        // the direct form cannot say.
        let src = id(7);
        let copies = Copies::new(base(&src, b"x"), b"x", false);
        let plan = plan();
        let (list, _) = copies.for_plan(&plan, MAX);
        // The relay is node 1.
        let p = decode(
            &copies.frame(&list[0], MAX_PROTOCOL_VERSION, MAX).unwrap(),
            &id(1),
        );
        assert!(!p.ext.is_direct());
        let opts = p.options.unwrap();
        assert_eq!(opts.src, src);
        assert!(opts.dsts.is_empty(), "for the leaf alone");
    }

    #[test]
    fn size_limits_count_the_uncompressed_payload() {
        let src = id(1);
        let plain = vec![b'a'; 4000];
        let wire = b"compressed";
        let f = DataFrame {
            ext: base(&src, wire).ext | Ext::COMPRESSED,
            ..base(&src, wire)
        };
        let copies = Copies::new(f, &plain, true);
        let plan = plan();
        let (list, too_large) = copies.for_plan(&plan, MAX);
        assert!(too_large.is_empty());
        // The wire frame is small, but the link takes less than the uncompressed packet.
        let small_link = 2000;
        assert!(matches!(
            copies.frame(&list[0], MAX_PROTOCOL_VERSION, small_link),
            Err(WireError::LengthTooLarge { .. })
        ));
        let p = decode(
            &copies.frame(&list[0], MAX_PROTOCOL_VERSION, MAX).unwrap(),
            &src,
        );
        assert!(p.ext.is_compressed());
        assert_eq!(p.payload.as_ref(), wire);
        // A relay copy that its destination list would push over our own limit is left out.
        let leaf_len = DataFrame {
            ext: f.ext | Ext::DIRECT,
            payload: &plain,
            ..f
        }
        .plain_len();
        let (list, too_large) = copies.for_plan(&plan, leaf_len as u32 + 64);
        assert_eq!(list.len(), 2);
        assert_eq!(too_large, [id(4), id(5), id(6)]);
    }
}
