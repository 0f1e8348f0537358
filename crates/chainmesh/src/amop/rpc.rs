//! JSON-RPC 2.0 over the channel (0x12): requests go to the handler the embedding
//! application registers; without one, or for a method it does not take, the answer is a
//! JSON-RPC "method not found" error, never silence.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::node::NodeHandle;

/// What a handler's call resolves to.
pub type RpcFuture = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;

/// A JSON-RPC error, as the response's `error` object carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The error code (JSON-RPC's -32700..-32600, or the application's).
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

/// The application's JSON-RPC methods.
pub trait RpcHandler: Send + Sync + 'static {
    /// Starts `method` with `params`; `None` when the method is not the handler's.
    fn call(&self, method: &str, params: &Value) -> Option<RpcFuture>;
}

/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC "parse error".
const PARSE_ERROR: i64 = -32700;

/// Answers the JSON-RPC requests of SDK sessions.
pub(crate) struct Rpc {
    handler: RwLock<Option<Arc<dyn RpcHandler>>>,
}

impl Rpc {
    pub(crate) fn new(_node: NodeHandle) -> Rpc {
        Rpc {
            handler: RwLock::new(None),
        }
    }

    pub(crate) fn set_handler(&self, handler: Arc<dyn RpcHandler>) {
        *self.handler.write() = Some(handler);
    }

    /// The response text to the request text `request`: a result or an error.
    pub(crate) async fn answer(&self, request: &[u8]) -> Bytes {
        let Ok(req) = serde_json::from_slice::<Value>(request) else {
            return response(Value::Null, Err(error(PARSE_ERROR, "Parse error")));
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req.get("method").and_then(Value::as_str).unwrap_or("");
        let params = req.get("params").cloned().unwrap_or(Value::Null);
        let call = self
            .handler
            .read()
            .clone()
            .and_then(|h| h.call(method, &params));
        let outcome = match call {
            Some(fut) => fut.await,
            None => Err(error(METHOD_NOT_FOUND, "Method not found")),
        };
        response(id, outcome)
    }
}

fn error(code: i64, message: &str) -> RpcError {
    RpcError {
        code,
        message: message.to_owned(),
    }
}

fn response(id: Value, outcome: Result<Value, RpcError>) -> Bytes {
    let v = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
        }
    };
    Bytes::from(v.to_string())
}
