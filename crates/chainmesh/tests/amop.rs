//! AMOP on the channel port, driven by a raw SDK client written from the protocol notes
//! (`chainmesh_testkit::channel::RawChannel`) over real TLS on 127.0.0.1: the behaviour cases
//! of one node, and publishers and subscribers on different nodes of a 3-node line, through
//! a relay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::config::Config;
use chainmesh::wire::{encode_amop, ChannelPack, ChannelSeq, ChannelType};
use chainmesh_testkit::channel::RawChannel;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

#[path = "amop/network.rs"]
mod network;
#[path = "amop/private.rs"]
mod private;
#[path = "amop/single_node.rs"]
mod single_node;

/// How long a test waits for what must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits for what must not happen.
const QUIET: Duration = Duration::from_millis(300);

/// A network of `n` nodes running AMOP, each config changed by `tweak`.
async fn amop_net(n: usize, tweak: Option<fn(usize, &mut Config)>) -> LocalNet {
    LocalNet::start(LocalNetOptions {
        amop: true,
        tweak,
        ..LocalNetOptions::for_traffic(n)
    })
    .await
    .unwrap()
}

/// An SDK client on node `i`'s channel port, with node `i`'s certificate.
async fn client(net: &LocalNet, i: usize) -> RawChannel {
    let identity = net.generated(i).load_identity().unwrap();
    RawChannel::dial(&identity, &net.channel_addr(i))
        .await
        .unwrap()
}

/// Waits until the node has handled everything `c` sent before: a v1 heartbeat "0" is
/// answered "1" in order with the other frames of the session.
async fn sync(c: &mut RawChannel) {
    let seq = c
        .send_new(ChannelType::HEARTBEAT, Bytes::from_static(b"0"))
        .await
        .unwrap();
    let answer = c.recv_kind(ChannelType::HEARTBEAT, WAIT).await.unwrap();
    assert_eq!((answer.seq, &answer.data[..]), (seq, &b"1"[..]));
}

/// A client on node `i` subscribed to `topics`, the subscription in force.
async fn subscriber(net: &LocalNet, i: usize, topics: &[&str]) -> RawChannel {
    let mut c = client(net, i).await;
    c.subscribe(topics).await.unwrap();
    sync(&mut c).await;
    c
}

/// The AMOP data of `payload` on `topic`.
fn amop(topic: &str, payload: &[u8]) -> Bytes {
    encode_amop(topic, payload).unwrap()
}

/// The 0x31 a subscriber sends for `push`: its topic, `ack:` and the pushed payload.
fn ack_for(push: &ChannelPack) -> ChannelPack {
    let (topic, payload) = chainmesh::wire::split_amop(&push.data).unwrap();
    let data = amop(&topic, &[b"ack:", &payload[..]].concat());
    ChannelPack::new(ChannelType::AMOP_RESPONSE, push.seq, data)
}

/// Waits for the 0x31 answering `seq` on `c`.
async fn answer(c: &mut RawChannel, seq: ChannelSeq) -> ChannelPack {
    loop {
        match c.recv_kind(ChannelType::AMOP_RESPONSE, WAIT).await {
            Some(p) if p.seq == seq => return p,
            Some(_) => {}
            None => panic!("no 0x31 answered the publish"),
        }
    }
}

/// Answers every push `c` gets with [`ack_for`] until the session closes or the task is
/// aborted; the counter says how many it answered.
fn acking(mut c: RawChannel) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let task = tokio::spawn(async move {
        while let Some(push) = c.recv_kind(ChannelType::AMOP_REQUEST, WAIT * 6).await {
            if c.send(&ack_for(&push)).await.is_err() {
                break;
            }
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    (count, task)
}

/// With `max_in_flight_total = 1` on the node holding `silent`'s subscription: a unicast
/// from a client on node `publisher` takes the one place (its push waits on `silent`, which
/// never answers), and a second one is answered 103 with no data.
async fn second_unicast_over_the_bound_gets_103(
    net: &LocalNet,
    mut silent: RawChannel,
    publisher: usize,
) {
    let mut first = client(net, publisher).await;
    first
        .publish(ChannelType::AMOP_REQUEST, "t1", b"first")
        .await
        .unwrap();
    // The first push is out and waiting for its ack: the one place is taken.
    silent
        .recv_kind(ChannelType::AMOP_REQUEST, WAIT)
        .await
        .unwrap();
    let mut second = client(net, publisher).await;
    let seq = second
        .publish(ChannelType::AMOP_REQUEST, "t1", b"second")
        .await
        .unwrap();
    let a = answer(&mut second, seq).await;
    assert_eq!(
        (a.result, a.data.len()),
        (chainmesh::wire::channel_result::OVER_LIMIT, 0)
    );
}
