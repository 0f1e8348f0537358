//! `GET /v1/listen?module=M[&topic=T]`: the messages delivered to a module, as they arrive,
//! one JSON object per line (NDJSON) on a response that stays open.
//!
//! It reads a tap of the module ([`NodeHandle::tap`]): a copy of each message, so the
//! application's own handler still gets every one. The first line, `{"listening": ...}`,
//! says the tap is in place; then one line per message, `{"gap": n}` where a reader too slow
//! for the tap's `node.tap_buffer` lost `n` messages, and an empty line every
//! [`KEEPALIVE`] of silence so a reader that went away is noticed and its connection slot
//! freed. The stream ends when the node stops.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ApiError;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use chainmesh::identity::NodeId;
use chainmesh::node::{MessageKind, NodeHandle, ProtocolContext, TappedMessage};

/// How long a silent stream waits before it writes an empty line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/listen` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenQuery {
    /// The module whose messages to show.
    pub module: u16,
    /// Only multicasts to this topic.
    pub topic: Option<String>,
}

impl ListenQuery {
    /// Reads `module=M[&topic=T]` (percent-encoded); an unknown or repeated key is refused.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut module = None;
        let mut topic = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot_taken = match &*key {
                "module" => {
                    let m = value.parse::<u16>().map_err(|_| {
                        ApiError::bad_request(format!("module `{value}` is not 0 to 65535"))
                    })?;
                    module.replace(m).is_some()
                }
                "topic" => topic.replace(value.into_owned()).is_some(),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query key `{other}`: give module and optionally topic"
                    )))
                }
            };
            if slot_taken {
                return Err(ApiError::bad_request(format!("`{key}` is given twice")));
            }
        }
        let module = module.ok_or_else(|| ApiError::bad_request("give the module: ?module=M"))?;
        Ok(ListenQuery { module, topic })
    }

    /// The query string, percent-encoded.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("module", &self.module.to_string());
        if let Some(t) = &self.topic {
            q.append_pair("topic", t);
        }
        q.finish()
    }
}

/// One line of `GET /v1/listen`: a message as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenedMessage {
    /// The node that sent it.
    pub src: NodeId,
    /// `unicast`, `multicast` or `broadcast`.
    pub kind: String,
    /// The topic of a multicast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The group it was sent in.
    pub group: String,
    /// The module it is addressed to.
    pub module: u16,
    /// The sender's sequence number.
    pub seq: u32,
    /// Links it crossed: 1 from a neighbour.
    pub hops: u8,
    /// Whether the sender waits for a response.
    pub request: bool,
    /// The data as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The data as hex.
    pub data_hex: String,
}

impl From<&TappedMessage> for ListenedMessage {
    fn from(m: &TappedMessage) -> Self {
        let (kind, topic) = match &m.kind {
            MessageKind::Unicast => ("unicast", None),
            MessageKind::Broadcast => ("broadcast", None),
            MessageKind::Multicast { topic } => ("multicast", Some(topic.clone())),
        };
        ListenedMessage {
            src: m.src,
            kind: kind.into(),
            topic,
            group: m.group.to_string(),
            module: m.module,
            seq: m.seq,
            hops: m.hops,
            request: m.request,
            data: std::str::from_utf8(&m.payload).ok().map(str::to_owned),
            data_hex: hex::encode(&m.payload),
        }
    }
}

/// Whether `m` passes the query's filter.
fn matches(query: &ListenQuery, m: &TappedMessage) -> bool {
    match (&query.topic, &m.kind) {
        (None, _) => true,
        (Some(want), MessageKind::Multicast { topic }) => want == topic,
        (Some(_), _) => false,
    }
}

fn line(value: &impl Serialize) -> Bytes {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

struct Stream {
    query: ListenQuery,
    rx: Receiver<TappedMessage>,
    ctx: ProtocolContext,
    started: bool,
}

impl Stream {
    /// The next chunk of the response; `None` ends it.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            let head = serde_json::json!({ "listening": {
                "module": self.query.module,
                "topic": self.query.topic,
            }});
            return Some(line(&head));
        }
        loop {
            let got = tokio::select! {
                got = self.rx.recv() => got,
                _ = self.ctx.stopped() => return None,
                _ = tokio::time::sleep(KEEPALIVE) => return Some(Bytes::from_static(b"\n")),
            };
            match got {
                Ok(m) if matches(&self.query, &m) => return Some(line(&ListenedMessage::from(&m))),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Some(line(&serde_json::json!({ "gap": n }))),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// `GET /v1/listen`.
pub async fn listen(State(node): State<NodeHandle>, uri: Uri) -> Result<Response, ApiError> {
    let query = ListenQuery::parse(uri.query().unwrap_or(""))?;
    let stream = Stream {
        rx: node.tap(query.module),
        ctx: node.protocol_context(),
        query,
        started: false,
    };
    let chunks = futures_util::stream::unfold(stream, |mut s| async move {
        s.next()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), s))
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_module_and_maybe_a_topic() {
        let q = ListenQuery::parse("module=7&topic=a%20b").unwrap();
        assert_eq!(
            q,
            ListenQuery {
                module: 7,
                topic: Some("a b".into())
            }
        );
        assert_eq!(ListenQuery::parse(&q.to_query()).unwrap(), q);
        for bad in [
            "",
            "topic=t",
            "module=70000",
            "module=1&module=2",
            "module=1&x=2",
        ] {
            assert!(ListenQuery::parse(bad).is_err(), "{bad}");
        }
    }
}
