//! The copies of one broadcast or multicast, one per neighbour, encoded once and shared:
//! what the sender (`fanout`) and every relay after it (`inbound`) queue. Pure: no I/O, no
//! locks.
//!
//! Neighbours that are targets and relay for nobody (the plan's leaves) all get the same
//! bytes in direct form when this node is the packet's source: the link proves where they
//! come from. Every other copy is in full form, lists the targets it serves (a relay's leaf
//! alone in its list) and carries each one's tag ([`Ext::AUTH`]): the sender's own, or the
//! ones a relay received. Every copy is encoded at our newest version; a link that agreed
//! an older one gets a patched copy.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::auth::Tag;
use crate::identity::NodeId;
use crate::routing::FanoutPlan;
use crate::wire::{for_link, DataFrame, Ext, WireError};

/// One neighbour's copy.
pub(super) struct LinkCopy<'p> {
    /// The neighbour it goes to.
    pub(super) hop: NodeId,
    /// The targets it serves: the neighbour alone for a leaf, else the list it carries.
    pub(super) targets: Cow<'p, [NodeId]>,
    /// A listed copy's own encoding and its size uncompressed; a direct leaf shares the
    /// common one.
    listed: Option<(Bytes, usize)>,
}

/// The copies [`Copies::for_plan`] makes, and the targets left out.
pub(super) struct Planned<'p> {
    /// One copy per neighbour that gets one, direct leaves first.
    pub(super) copies: Vec<LinkCopy<'p>>,
    /// Targets whose copy would exceed the size limit (its destination list makes it too
    /// large).
    pub(super) too_large: Vec<NodeId>,
    /// Targets with no tag to give them.
    pub(super) untagged: Vec<NodeId>,
}

/// The encodings of one broadcast or multicast.
pub(super) struct Copies<'a> {
    /// The packet as every copy carries it, destination list, tags and addressing form
    /// aside, with its payload as it goes on the wire (compressed or not) and at the
    /// version it is encoded at.
    base: DataFrame<'a>,
    /// The payload uncompressed: size limits count it, as the receiver checks it.
    plain: &'a [u8],
    /// Whether leaves get the direct form, which names the link's peer as the source:
    /// only when this node is the source.
    direct_leaves: bool,
    direct: OnceLock<Bytes>,
}

impl<'a> Copies<'a> {
    /// The copies of `base` (whose `dsts` and `tags` are ignored), `plain` being its payload
    /// uncompressed. `from_here`: this node is the source.
    pub(super) fn new(base: DataFrame<'a>, plain: &'a [u8], from_here: bool) -> Self {
        let form = Ext::DIRECT.0 | Ext::AUTH.0;
        Copies {
            base: DataFrame {
                dsts: &[],
                tags: &[],
                ext: Ext(base.ext.0 & !form),
                ..base
            },
            plain,
            direct_leaves: from_here,
            direct: OnceLock::new(),
        }
    }

    /// The frame every direct leaf gets.
    fn direct_form(&self) -> DataFrame<'a> {
        DataFrame {
            ext: self.base.ext | Ext::DIRECT,
            ..self.base
        }
    }

    /// The frame in full form that lists `dsts`, with the tags `tags` holds for them.
    fn listed_form<'f>(&self, dsts: &'f [NodeId], tags: &'f [u8]) -> DataFrame<'f>
    where
        'a: 'f,
    {
        DataFrame {
            ext: self.base.ext | Ext::AUTH,
            dsts,
            tags,
            ..self.base
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

    /// The frame fields every tag covers, as the sender and the receivers compute them:
    /// the listed form's.
    pub(super) fn tagged_form(&self) -> DataFrame<'a> {
        self.listed_form(&[], &[])
    }

    /// One copy per neighbour of `plan`, direct leaves first. `tag_of` gives a target's
    /// tag; a target without one is left out, and so is a listed copy that cannot be
    /// encoded within `max_packet`.
    pub(super) fn for_plan<'p>(
        &self,
        plan: &'p FanoutPlan,
        max_packet: u32,
        mut tag_of: impl FnMut(&NodeId) -> Option<Tag>,
    ) -> Planned<'p> {
        let mut out = Planned {
            copies: Vec::with_capacity(plan.leaves.len() + plan.relays.len()),
            too_large: Vec::new(),
            untagged: Vec::new(),
        };
        let lists = plan.relays.iter().map(|(hop, list)| (hop, list.as_slice()));
        let leaves = plan.leaves.iter().map(|l| (l, std::slice::from_ref(l)));
        if self.direct_leaves {
            out.copies.extend(plan.leaves.iter().map(|leaf| LinkCopy {
                hop: *leaf,
                targets: Cow::Borrowed(std::slice::from_ref(leaf)),
                listed: None,
            }));
        }
        let relayed_leaves = leaves.filter(|_| !self.direct_leaves);
        let mut tags = Vec::new();
        for (hop, list) in relayed_leaves.chain(lists) {
            tags.clear();
            // Rarely cut (a node ID that is no key, a relay handed no tag for a target): a
            // target without a tag must not cost the others theirs.
            let mut kept = Cow::Borrowed(list);
            for (i, t) in list.iter().enumerate() {
                match tag_of(t) {
                    Some(tag) => {
                        tags.extend_from_slice(&tag);
                        if let Cow::Owned(k) = &mut kept {
                            k.push(*t);
                        }
                    }
                    None => {
                        out.untagged.push(*t);
                        if let Cow::Borrowed(all) = kept {
                            kept = Cow::Owned(all.get(..i).unwrap_or_default().to_vec());
                        }
                    }
                }
            }
            if kept.is_empty() {
                continue;
            }
            let f = self.listed_form(&kept, &tags);
            if self.check(f, max_packet).is_err() {
                out.too_large.extend_from_slice(&kept);
                continue;
            }
            let bytes = f.encode(0);
            let plain_len = plain_len(&bytes, f.payload.len(), self.plain.len());
            out.copies.push(LinkCopy {
                hop: *hop,
                targets: kept,
                listed: Some((bytes, plain_len)),
            });
        }
        out
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
        let shared = match &copy.listed {
            Some((frame, plain_len)) => {
                if *plain_len > limit as usize {
                    return Err(WireError::LengthTooLarge {
                        length: *plain_len as u64,
                        max: limit,
                    });
                }
                frame
            }
            None => {
                let form = self.direct_form();
                self.check(form, limit)?;
                self.direct.get_or_init(|| form.encode(0))
            }
        };
        Ok(if version == self.base.version {
            Cow::Borrowed(shared)
        } else {
            Cow::Owned(for_link(shared, version))
        })
    }
}

/// Size of an encoded frame of `len` bytes had its `wire` payload bytes been `plain`.
fn plain_len(frame: &Bytes, wire: usize, plain: usize) -> usize {
    frame.len().saturating_sub(wire).saturating_add(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, PacketType, DEFAULT_TTL, MAX_PROTOCOL_VERSION, TAG_LEN};

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
            tags: &[],
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

    /// A stand-in tag naming its target: every byte is the target's first.
    fn tag_of(t: &NodeId) -> Option<Tag> {
        Some([t.as_bytes()[0]; TAG_LEN])
    }

    /// `frame` as its receiver reads it, having got it from `sender` over their link.
    fn decode(frame: &[u8], sender: &NodeId) -> Packet {
        Packet::decode_exact_from(frame, MAX, sender).unwrap()
    }

    #[test]
    fn leaves_share_one_direct_encoding_and_relays_list_their_targets_with_tags() {
        let src = id(1);
        let copies = Copies::new(base(&src, b"block"), b"block", true);
        let plan = plan();
        let planned = copies.for_plan(&plan, MAX, tag_of);
        assert!(planned.too_large.is_empty() && planned.untagged.is_empty());
        let list = planned.copies;
        let hops: Vec<NodeId> = list.iter().map(|c| c.hop).collect();
        assert_eq!(hops, [id(2), id(3), id(4)]);
        let v = MAX_PROTOCOL_VERSION;
        let (a, b) = (
            copies.frame(&list[0], v, MAX).unwrap(),
            copies.frame(&list[1], v, MAX).unwrap(),
        );
        assert!(matches!((&a, &b), (Cow::Borrowed(_), Cow::Borrowed(_))));
        assert_eq!(a.as_ptr(), b.as_ptr(), "leaves share one buffer");
        // From the source to a neighbour that is the target: direct form, no node IDs, no
        // tags.
        let leaf = decode(&a, &src);
        assert!(leaf.ext.is_direct() && !leaf.ext.is_auth());
        assert_eq!(leaf.options.unwrap().src, src);
        let relay = decode(&copies.frame(&list[2], v, MAX).unwrap(), &src);
        assert!(!relay.ext.is_direct() && relay.ext.is_auth());
        let opts = relay.options.unwrap();
        assert_eq!(opts.dsts, [id(4), id(5), id(6)]);
        for (i, d) in opts.dsts.iter().enumerate() {
            assert_eq!(opts.tag(i), tag_of(d).as_ref().map(|t| &t[..]));
        }
        assert_eq!(
            (opts.src, relay.seq, relay.payload.as_ref()),
            (src, 5, &b"block"[..])
        );
    }

    #[test]
    fn relayed_leaves_are_listed_alone_with_their_own_tag() {
        // A relay forwards node 7's packet: its neighbours must read 7 as the source, which
        // the direct form cannot say, and check 7's tag, which only they can.
        let src = id(7);
        let copies = Copies::new(base(&src, b"x"), b"x", false);
        let plan = plan();
        let list = copies.for_plan(&plan, MAX, tag_of).copies;
        assert_eq!(list.len(), 3);
        for copy in &list {
            let p = decode(
                &copies.frame(copy, MAX_PROTOCOL_VERSION, MAX).unwrap(),
                &id(1),
            );
            assert!(!p.ext.is_direct() && p.ext.is_auth());
            let opts = p.options.unwrap();
            assert_eq!(opts.src, src);
            assert_eq!(opts.dsts, &copy.targets[..]);
            assert_eq!(opts.tags.len(), TAG_LEN * opts.dsts.len());
        }
        assert_eq!(list[0].targets[..], [id(2)]);
    }

    #[test]
    fn a_target_without_a_tag_is_left_out_without_costing_the_others() {
        let src = id(7);
        let copies = Copies::new(base(&src, b"x"), b"x", false);
        let plan = plan();
        let planned = copies.for_plan(&plan, MAX, |t| {
            (t.as_bytes()[0] != 5 && t.as_bytes()[0] != 3)
                .then(|| tag_of(t))
                .flatten()
        });
        assert_eq!(planned.untagged, [id(3), id(5)]);
        let relay = planned.copies.iter().find(|c| c.hop == id(4)).unwrap();
        assert_eq!(relay.targets[..], [id(4), id(6)]);
        let p = decode(
            &copies.frame(relay, MAX_PROTOCOL_VERSION, MAX).unwrap(),
            &id(1),
        );
        let opts = p.options.unwrap();
        assert_eq!(opts.dsts, [id(4), id(6)]);
        assert_eq!(opts.tag(1), Some(&[6u8; TAG_LEN][..]));
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
        let planned = copies.for_plan(&plan, MAX, tag_of);
        assert!(planned.too_large.is_empty());
        let list = planned.copies;
        // The wire frame is small, but the link takes less than the uncompressed packet.
        let small_link = 2000;
        for copy in &list {
            assert!(matches!(
                copies.frame(copy, MAX_PROTOCOL_VERSION, small_link),
                Err(WireError::LengthTooLarge { .. })
            ));
        }
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
        let planned = copies.for_plan(&plan, leaf_len as u32 + 64, tag_of);
        assert_eq!(planned.copies.len(), 2);
        assert_eq!(planned.too_large, [id(4), id(5), id(6)]);
    }
}
