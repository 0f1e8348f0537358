//! The echo service that the demo, the tests and the benchmarks run on their nodes.

use chainmesh::{Message, NodeHandle};

/// Serves `module` on `node` until the node stops: every request is answered with its own
/// payload, every one-way message goes to `on_message`. `capacity` is the inbox's, as for
/// [`NodeHandle::register`]; a full inbox slows the senders, as it would any application.
pub fn serve_echo(
    node: &NodeHandle,
    module: u16,
    capacity: usize,
    mut on_message: impl FnMut(Message) + Send + 'static,
) {
    let mut inbox = node.register(module, capacity);
    tokio::spawn(async move {
        while let Some(mut msg) = inbox.recv().await {
            match msg.take_responder() {
                Some(r) => {
                    // A requester that gave up meanwhile has nobody left to answer.
                    let _ = r.respond(msg.payload.clone());
                }
                None => on_message(msg),
            }
        }
    });
}
