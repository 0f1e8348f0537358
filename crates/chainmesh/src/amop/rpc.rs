//! JSON-RPC 2.0 over the channel port (frames of type 0x12): FISCO BCOS 2.x's SDKs open a
//! session with JSON-RPC calls, so the node answers every such frame with a response of the
//! same id, never with silence.
//!
//! A call goes first to the handler the embedding application registered (so it may answer,
//! or override, any method), then to the built-in network methods of FISCO's JSON-RPC
//! ([`network`]), and otherwise gets "method not found". `docs/amop.md` lists the methods,
//! their result shapes and the error codes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;

use crate::node::NodeHandle;

mod network;

/// The FISCO BCOS version whose channel protocol and JSON-RPC this node speaks: the
/// "Supported Version" of `getClientVersion`, and the `nodeVersion` of the 0x14 handshake.
pub(crate) const SUPPORTED_VERSION: &str = "2.11.0";

/// What a [`RpcHandler`] answers a call with, later.
pub type RpcFuture = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;

/// The JSON-RPC methods an embedding application answers on the channel port, registered
/// with the AMOP handle. It is asked first, so it may also override a built-in method.
pub trait RpcHandler: Send + Sync + 'static {
    /// The answer to `method` called with `params` (`null` when the request had none), or
    /// `None` when this handler does not serve `method`. The call is made on the session's
    /// task, so it should only start the work: the future does it.
    fn call(&self, method: &str, params: &Value) -> Option<RpcFuture>;
}

/// A JSON-RPC error object: what a call answers when it fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// The error code: JSON-RPC's own (-32700 to -32600) or FISCO BCOS's (-40001 ...).
    pub code: i64,
    /// A short description.
    pub message: String,
}

impl RpcError {
    /// The request is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The request is JSON but not a JSON-RPC 2.0 request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Nobody serves the method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method's params are not what it takes.
    pub const INVALID_PARAMS: i64 = -32602;
    /// FISCO BCOS's "GroupID does not exist".
    pub const GROUP_NOT_FOUND: i64 = -40001;

    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn invalid_request(why: &str) -> RpcError {
        RpcError::new(Self::INVALID_REQUEST, format!("Invalid request: {why}"))
    }
}

/// The JSON-RPC endpoint of a node's channel port: the built-in network methods over the
/// node, and the application's handler once one is set.
pub(crate) struct Rpc {
    node: NodeHandle,
    handler: RwLock<Option<Arc<dyn RpcHandler>>>,
}

impl Rpc {
    /// An endpoint answering for `node`, with no application handler yet.
    pub(crate) fn new(node: NodeHandle) -> Rpc {
        Rpc {
            node,
            handler: RwLock::new(None),
        }
    }

    /// Makes `handler` the first to be asked for every later call, replacing any before it.
    pub(crate) fn set_handler(&self, handler: Arc<dyn RpcHandler>) {
        *self.handler.write() = Some(handler);
    }

    /// The response text to the request text `request`: a result or an error object, with
    /// the request's id (`null` when the request has none or cannot be read). A batch (a
    /// JSON array) is refused with -32600: FISCO's SDKs never send one on the channel, and
    /// one frame of small calls would cost the node far more than the frame.
    pub(crate) async fn answer(&self, request: &[u8]) -> Bytes {
        let call = match parse_call(request) {
            Ok(call) => call,
            Err((id, error)) => return respond(&id, Err(error)),
        };
        let outcome = self.call(&call.method, &call.params).await;
        respond(&call.id, outcome)
    }

    async fn call(&self, method: &str, params: &Value) -> Result<Value, RpcError> {
        // The lock is not held across the handler's future.
        let handler = self.handler.read().clone();
        if let Some(pending) = handler.and_then(|h| h.call(method, params)) {
            return pending.await;
        }
        match network::call(&self.node, method, params) {
            Some(outcome) => outcome,
            None => Err(RpcError::new(
                RpcError::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        }
    }
}

/// A JSON-RPC 2.0 call as read from an 0x12 frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    /// The id the answer repeats: a string, a number, or `null` when the request has none.
    pub id: Value,
    /// The method's name.
    pub method: String,
    /// Its parameters: an array, an object, or `null` when the request has none.
    pub params: Value,
}

/// Reads one JSON-RPC 2.0 request object, as the node does for every 0x12 frame. On failure:
/// the id to answer with (`null` when none can be read) and the error the answer carries.
/// Pure: the channel fuzz target runs it on arbitrary bytes.
pub fn parse_call(request: &[u8]) -> Result<RpcCall, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(request).map_err(|e| {
        let error = RpcError::new(RpcError::PARSE_ERROR, format!("Parse error: {e}"));
        (Value::Null, error)
    })?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("batch requests are not supported"),
            ))
        }
        _ => {
            return Err((
                Value::Null,
                RpcError::invalid_request("not a request object"),
            ))
        }
    };
    // A request without an id (a notification) is answered all the same, with id null: the
    // channel pairs answers with requests by frame seq, and a client waits for one.
    let id = match object.remove("id") {
        None => Value::Null,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => id,
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("id must be a string, a number or null"),
            ))
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, RpcError::invalid_request("jsonrpc must be \"2.0\"")));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => return Err((id, RpcError::invalid_request("method must be a string"))),
    };
    let params = match object.remove("params") {
        None => Value::Null,
        Some(params @ (Value::Array(_) | Value::Object(_))) => params,
        Some(_) => {
            return Err((
                id,
                RpcError::invalid_request("params must be an array or an object"),
            ))
        }
    };
    Ok(RpcCall { id, method, params })
}

#[derive(Serialize)]
struct Response<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(flatten)]
    outcome: Outcome<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome<'a> {
    Result(&'a Value),
    Error { code: i64, message: &'a str },
}

/// The response text for `id` and `outcome`.
fn respond(id: &Value, outcome: Result<Value, RpcError>) -> Bytes {
    let response = Response {
        jsonrpc: "2.0",
        id,
        outcome: match &outcome {
            Ok(result) => Outcome::Result(result),
            Err(e) => Outcome::Error {
                code: e.code,
                message: &e.message,
            },
        },
    };
    match serde_json::to_vec(&response) {
        Ok(text) => Bytes::from(text),
        // A tree of JSON values always serializes; this keeps the answer an answer anyway.
        Err(_) => Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"Internal error"}}"#,
        ),
    }
}

#[cfg(test)]
mod tests;
