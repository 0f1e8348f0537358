//! Priority lanes between real nodes: a request to a module of `p2p.priority_modules`
//! completes while a bulk stream to the same peer keeps that link's bulk lane full, and the
//! bulk sent after it still arrives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::Lane;
use chainmesh_testkit::{serve_echo, wait_until, LocalNet, LocalNetOptions};

const PRIORITY: u16 = 3000;
const BULK: u16 = 3001;
const WAIT: Duration = Duration::from_secs(60);
const BULK_MESSAGES: usize = 24;
const BULK_SIZE: usize = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_request_completes_while_bulk_saturates_the_link_and_bulk_still_arrives() {
    let net = LocalNet::start(LocalNetOptions {
        tweak: Some(|_, c| {
            c.p2p.priority_modules = vec![PRIORITY];
            c.p2p.compress_threshold = 0;
        }),
        ..LocalNetOptions::new(2)
    })
    .await
    .unwrap();
    net.connect(0, 1);
    let (a, b) = (net.handle(0), net.handle(1));
    let peer = net.generated(1).node_id;
    assert!(wait_until(WAIT, || a.peers().is_connected(&peer)).await);
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    serve_echo(&b, BULK, 4, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    serve_echo(&b, PRIORITY, 16, |_| {});

    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (a, sent) = (a.clone(), sent.clone());
        tokio::spawn(async move {
            let payload = Bytes::from((0..BULK_SIZE).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            for _ in 0..BULK_MESSAGES {
                a.send(peer, BULK, payload.clone()).await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // The bulk lane holds megabytes: the link is saturated.
    let session = a.peers().session(&peer).unwrap();
    assert!(
        wait_until(WAIT, || session.queued_bytes_in(Lane::Bulk)
            >= 2 * BULK_SIZE)
        .await
    );
    let answer = a
        .request(peer, PRIORITY, Bytes::from_static(b"vote"), WAIT)
        .await
        .unwrap();
    assert_eq!(&answer[..], b"vote");
    let sent_before_answer = sent.load(Ordering::SeqCst);
    assert!(
        sent_before_answer < BULK_MESSAGES,
        "the bulk stream was still going when the answer came"
    );
    sender.await.unwrap();
    assert!(
        wait_until(WAIT, || received.load(Ordering::SeqCst) == BULK_MESSAGES).await,
        "bulk sent after the request still arrives: {} of {BULK_MESSAGES}",
        received.load(Ordering::SeqCst)
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_keeps_the_bulk_lane_full_never_makes_the_link_time_out() {
    let net = LocalNet::start(LocalNetOptions {
        tweak: Some(|_, c| c.p2p.priority_modules = vec![PRIORITY]),
        ..LocalNetOptions::new(2)
    })
    .await
    .unwrap();
    net.connect(0, 1);
    let (a, b) = (net.handle(0), net.handle(1));
    let peer = net.generated(1).node_id;
    assert!(wait_until(WAIT, || a.peers().is_connected(&peer)).await);
    let mut events = a.events();
    serve_echo(&b, PRIORITY, 16, |_| {});
    let mut bulk = b.register(BULK, 1024);
    tokio::spawn(async move { while bulk.recv().await.is_some() {} });
    // Incompressible, so the receiver's decompression limit plays no part; the peer reads
    // as fast as it is written, so no write ever blocks the sender's session task.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let payload = Bytes::from(
        (0..BULK_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<_>>(),
    );
    let sender = {
        let a = a.clone();
        tokio::spawn(async move { while a.send(peer, BULK, payload.clone()).await.is_ok() {} })
    };
    // Many heartbeat intervals (100 ms) of saturation: the session still reads its peer.
    for i in 0..300 {
        let r = a
            .request(peer, PRIORITY, Bytes::from_static(b"vote"), WAIT)
            .await;
        assert!(r.is_ok(), "request {i}: {r:?}");
    }
    assert!(
        !std::iter::from_fn(|| events.try_recv().ok())
            .any(|e| matches!(e, chainmesh::peers::PeerEvent::Disconnected { .. })),
        "the link stayed up"
    );
    sender.abort();
    net.shutdown().await;
}
