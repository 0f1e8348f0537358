//! The P2P framing's classification, and how the outbox lays out queued frames for a framing
//! that coalesces and for one that does not.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::wire::{Ext, Handshake, Packet, PacketType, WireError};

const PEER: NodeId = NodeId::from_bytes([7; 64]);

fn p2p() -> P2pFraming {
    P2pFraming::on_link(1 << 20, 1, PEER)
}

/// Decodes the one whole packet in `bytes` with the P2P framing.
fn decode_one(framing: &mut P2pFraming, bytes: &[u8]) -> (Packet, Bytes) {
    let mut buf = BytesMut::from(bytes);
    let frame = framing.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "one packet, nothing left over");
    frame
}

fn data(seq: u32, len: usize) -> Bytes {
    Packet {
        version: 1,
        packet_type: PacketType(0x7f),
        seq,
        ext: Ext(0),
        options: None,
        payload: Bytes::from(vec![0xab; len]),
    }
    .to_bytes()
}

#[test]
fn p2p_heartbeat_bytes_decode_as_a_heartbeat_of_the_link_version() {
    let mut f = P2pFraming::on_link(1 << 20, 3, PEER);
    let beat = f.heartbeat().to_vec();
    let frame = decode_one(&mut f, &beat);
    assert_eq!(frame.0, Packet::heartbeat(3));
    assert_eq!(f.kind(&frame), FrameKind::Heartbeat);
}

#[test]
fn p2p_goodbye_round_trips_its_reason() {
    let mut f = p2p();
    let bye = f.goodbye("shutting down").unwrap();
    let frame = decode_one(&mut f, &bye);
    assert_eq!(f.kind(&frame), FrameKind::Goodbye("shutting down".into()));
}

#[test]
fn p2p_goodbye_with_an_unreadable_reason_still_means_leaving() {
    let mut f = p2p();
    let mut bye = Packet::goodbye(1, "");
    bye.payload = Bytes::from_static(b"ab\xff");
    let frame = decode_one(&mut f, &bye.to_bytes());
    assert_eq!(f.kind(&frame), FrameKind::Goodbye("ab\u{fffd}".into()));
}

#[test]
fn p2p_goodbye_flagged_as_a_response_and_other_types_are_data() {
    let mut f = p2p();
    let mut answer = Packet::goodbye(1, "x");
    answer.ext = Ext::RESPONSE;
    let frame = decode_one(&mut f, &answer.to_bytes());
    assert_eq!(f.kind(&frame), FrameKind::Data);
    let frame = decode_one(&mut f, &data(5, 10));
    assert_eq!(f.kind(&frame), FrameKind::Data);
    assert_eq!(frame.0.seq, 5);
    assert_eq!(frame.1, data(5, 10), "the whole packet comes with it");
}

#[test]
fn p2p_decode_refuses_a_length_over_the_limit_before_the_body_arrives() {
    let mut f = P2pFraming::on_link(100, 1, PEER);
    let mut buf = BytesMut::from(&[0u8, 0, 1, 0][..]);
    assert_eq!(
        f.decode(&mut buf).unwrap_err(),
        LinkError::Wire(WireError::LengthTooLarge {
            length: 256,
            max: 100
        })
    );
}

#[test]
fn p2p_decode_refuses_what_the_link_rules_forbid() {
    let mut f = P2pFraming::on_link(1 << 20, 2, PEER);
    let mut other_version = Packet::heartbeat(1).to_bytes();
    let mut buf = BytesMut::from(&other_version[..]);
    let e = f.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        LinkError::WrongVersion {
            expected: 2,
            got: 1,
            packet_type: 1
        }
    );
    assert!(e.to_string().contains("Version 1") && e.to_string().contains("version 2"));

    let hs = Handshake::ours(0, 1 << 20, std::num::NonZeroU64::MIN);
    let mut second = Packet::handshake(&hs);
    second.version = 2;
    let mut buf = BytesMut::from(&second.to_bytes()[..]);
    assert_eq!(
        f.decode(&mut buf).unwrap_err(),
        LinkError::SecondHandshake { version: 2 }
    );

    let mut beat = Packet::heartbeat(2);
    beat.payload = Bytes::from_static(b"hi");
    other_version = beat.to_bytes();
    let mut buf = BytesMut::from(&other_version[..]);
    assert_eq!(
        f.decode(&mut buf).unwrap_err(),
        LinkError::HeartbeatPayload { len: 2 }
    );
    let mut buf = BytesMut::from(&Packet::heartbeat(2).to_bytes()[..]);
    assert!(
        f.decode(&mut buf).unwrap().is_some(),
        "an empty one is fine"
    );
}

/// The P2P framing with coalescing turned off, to look at the other outbox layout.
struct OneByOne(P2pFraming);

impl Framing for OneByOne {
    type Frame = (Packet, Bytes);
    type Error = LinkError;

    const COALESCE: bool = false;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, LinkError> {
        self.0.decode(buf)
    }

    fn kind(&self, frame: &Self::Frame) -> FrameKind {
        self.0.kind(frame)
    }

    fn heartbeat(&self) -> &[u8] {
        self.0.heartbeat()
    }

    fn goodbye(&self, reason: &str) -> Option<Bytes> {
        self.0.goodbye(reason)
    }
}

fn info() -> SessionInfo {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    SessionInfo {
        peer: PEER,
        addr,
        local_addr: addr,
        direction: Direction::Outbound,
        version: 1,
        peer_listen_port: 0,
        peer_max_packet: 1 << 20,
    }
}

/// Queues, in this order, a small frame, one encoded in place, a shared one and a big one.
fn queue_four<F: Framing>(h: &SessionHandle<F>) -> Vec<Bytes> {
    let frames = vec![data(1, 10), data(2, 20), data(3, 30), data(4, BIG_FRAME)];
    h.try_send(frames[0].clone()).unwrap();
    h.offer_encoded(frames[1].len(), |out| out.extend_from_slice(&frames[1]))
        .unwrap();
    h.offer_shared(&frames[2]).unwrap();
    h.try_send(frames[3].clone()).unwrap();
    frames
}

/// Everything the session's task would take from the bulk lane, in order, as (bytes, permits).
fn take_all<F: Framing>(h: &SessionHandle<F>) -> Vec<(Bytes, usize)> {
    let mut out = Vec::new();
    loop {
        let mut spare = BytesMut::new();
        match h.take(None, Some(&mut spare)).bulk {
            Some(Taken::Chunk(chunk, permits)) => out.push((chunk, permits)),
            Some(Taken::Batch(permits)) => out.push((spare.freeze(), permits)),
            None => return out,
        }
    }
}

#[test]
fn without_coalescing_every_frame_is_taken_alone_with_its_permits() {
    let h = new_framed_session::<OneByOne>(1, info(), 1 << 20);
    let frames = queue_four(&h);
    let taken = take_all(&h);
    let expected: Vec<(Bytes, usize)> = frames.iter().map(|f| (f.clone(), f.len())).collect();
    assert_eq!(taken, expected);
    assert!(
        h.outbox.lock().batch_capacity(Lane::Bulk) == 0,
        "a drained outbox keeps no batch buffer"
    );
}

#[test]
fn without_coalescing_an_empty_frame_leaves_nothing_to_write() {
    let h = new_framed_session::<OneByOne>(1, info(), 1 << 20);
    h.try_send(Bytes::new()).unwrap();
    h.offer_encoded(0, |_| {}).unwrap();
    h.offer_shared(&Bytes::new()).unwrap();
    assert!(take_all(&h).is_empty());
    assert_eq!(h.queued_bytes(), 0);
}

#[test]
fn with_coalescing_small_frames_share_one_chunk_before_a_big_one() {
    let h = new_session(1, info(), 1 << 20);
    let frames = queue_four(&h);
    let taken = take_all(&h);
    let small: Vec<u8> = frames[..3].iter().flat_map(|f| f.to_vec()).collect();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0], (Bytes::from(small.clone()), small.len()));
    assert_eq!(taken[1], (frames[3].clone(), frames[3].len()));
}

#[test]
fn each_lane_has_its_own_budget_and_the_urgent_slot_takes_control_before_priority() {
    let h = new_session(1, info(), MIN_QUEUE_BYTES);
    h.try_send(data(1, MIN_QUEUE_BYTES)).unwrap();
    assert_eq!(
        h.try_send(data(2, 10)),
        Err(QueueError::Full),
        "bulk is full"
    );
    h.try_send_in(Lane::Priority, data(3, 10)).unwrap();
    h.try_send_in(Lane::Control, data(4, 10)).unwrap();
    assert_eq!(h.queued_bytes_in(Lane::Bulk), MIN_QUEUE_BYTES);
    assert_eq!(h.queued_bytes_in(Lane::Priority), data(3, 10).len());
    assert_eq!(
        h.queued_bytes(),
        MIN_QUEUE_BYTES + data(3, 10).len() + data(4, 10).len()
    );
    let mut urgent = BytesMut::new();
    let took = h.take(Some(&mut urgent), None);
    assert!(matches!(
        took.urgent,
        Some((Lane::Control, Taken::Batch(_)))
    ));
    assert_eq!(urgent.freeze(), data(4, 10));
    let mut urgent = BytesMut::new();
    let took = h.take(Some(&mut urgent), None);
    assert!(matches!(
        took.urgent,
        Some((Lane::Priority, Taken::Batch(_)))
    ));
    assert_eq!(urgent.freeze(), data(3, 10));
    // What is still queued when the queue closes comes back, every lane's.
    h.try_send_in(Lane::Control, data(5, 10)).unwrap();
    let left = h.close_queue();
    assert_eq!(left, vec![data(5, 10), data(1, MIN_QUEUE_BYTES)]);
}

#[test]
fn a_frame_queued_while_the_task_delivers_wakes_nobody_and_is_written_after() {
    let d = Delivering::default();
    // Resting: the first frame into an empty outbox wakes the task.
    assert!(d.must_wake());
    d.begin();
    assert!(!d.must_wake(), "the task writes before it rests");
    assert!(!d.must_wake(), "still queued, still no wake-up");
    assert!(d.end(), "the task learns it must write");
    // Resting again: wake-ups are back.
    assert!(d.must_wake());
    assert!(!d.end(), "nothing was queued while resting");
}

#[test]
fn a_delivery_that_queues_nothing_asks_for_no_write() {
    let d = Delivering::default();
    d.begin();
    assert!(!d.end());
    assert!(d.must_wake());
}
