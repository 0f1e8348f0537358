//! `/v1/topics` and `/v1/groups`: the topics this node subscribes to and the groups it is a
//! member of, changed while it runs. Both are lists of names in this node's status and work
//! alike, so one set of handlers serves both, told apart by a [`NameKind`]:
//! `GET /v1/{topics,groups}`, `POST` with `{"topic": T}` or `{"group": G}`, and
//! `DELETE /v1/{topics,groups}/{name}`. A change lasts until the node stops (`node.topics`
//! and `p2p.groups` are what it starts with); the other nodes learn it through status
//! synchronization.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::ApiError;
use chainmesh::node::NodeHandle;
use chainmesh::status::StatusError;

/// Which list of names a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Topics: multicasts to them are delivered here.
    Topic,
    /// Groups: broadcasts to them are delivered here.
    Group,
}

impl NameKind {
    /// The key of one name in a `POST` body: `topic` or `group`.
    pub fn field(self) -> &'static str {
        match self {
            NameKind::Topic => "topic",
            NameKind::Group => "group",
        }
    }

    /// The key of the list in an answer: `topics` or `groups`.
    pub fn plural(self) -> &'static str {
        match self {
            NameKind::Topic => "topics",
            NameKind::Group => "groups",
        }
    }

    /// The collection's path: `/v1/topics` or `/v1/groups`.
    pub fn path(self) -> &'static str {
        match self {
            NameKind::Topic => "/v1/topics",
            NameKind::Group => "/v1/groups",
        }
    }

    /// What a change that changed nothing means: (adding, removing).
    pub fn unchanged(self) -> (&'static str, &'static str) {
        match self {
            NameKind::Topic => ("already subscribed", "was not subscribed"),
            NameKind::Group => ("already a member", "was not a member"),
        }
    }

    fn names(self, node: &NodeHandle) -> Vec<String> {
        match self {
            NameKind::Topic => node.topics(),
            NameKind::Group => node.groups(),
        }
    }

    fn add(self, node: &NodeHandle, name: &str) -> Result<bool, StatusError> {
        match self {
            NameKind::Topic => node.subscribe(name),
            NameKind::Group => node.join_group(name),
        }
    }

    fn remove(self, node: &NodeHandle, name: &str) -> bool {
        match self {
            NameKind::Topic => node.unsubscribe(name),
            NameKind::Group => node.leave_group(name),
        }
    }
}

/// The answer of `GET /v1/topics` or `/v1/groups`, and of a change: `{"topics": [...]}` (or
/// `"groups"`), with `"changed"` after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesView {
    /// Which list.
    pub kind: NameKind,
    /// The names now, sorted.
    pub names: Vec<String>,
    /// Whether the request changed them (false: already there, or not there).
    pub changed: Option<bool>,
}

impl NamesView {
    /// The answer as JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(self.kind.plural().into(), self.names.clone().into());
        if let Some(c) = self.changed {
            m.insert("changed".into(), c.into());
        }
        Value::Object(m)
    }

    /// Reads an answer about `kind`.
    pub fn from_json(kind: NameKind, v: &Value) -> Result<Self, String> {
        let list = v[kind.plural()]
            .as_array()
            .ok_or_else(|| format!("the answer has no `{}` list", kind.plural()))?;
        let names = list
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("`{}` holds something but names", kind.plural()))?;
        Ok(NamesView {
            kind,
            names,
            changed: v["changed"].as_bool(),
        })
    }
}

/// The body of a `POST` about `kind` with `name`: `{"topic": name}` or `{"group": name}`.
pub fn name_request(kind: NameKind, name: &str) -> Value {
    let mut m = Map::new();
    m.insert(kind.field().into(), name.into());
    Value::Object(m)
}

/// The name in a `POST` body: exactly the one key of `kind`, a string.
fn requested(kind: NameKind, body: &Value) -> Result<String, ApiError> {
    let key = kind.field();
    let refused = || ApiError::bad_request(format!("give the {key} as {{\"{key}\": \"NAME\"}}"));
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(refused)?;
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(refused)
}

fn answer(kind: NameKind, node: &NodeHandle, changed: Option<bool>) -> Json<Value> {
    let view = NamesView {
        kind,
        names: kind.names(node),
        changed,
    };
    Json(view.to_json())
}

fn add(kind: NameKind, node: &NodeHandle, body: &Value) -> Result<Json<Value>, ApiError> {
    let name = requested(kind, body)?;
    let added = kind
        .add(node, &name)
        .map_err(|e| ApiError::bad_request(format!("{} `{name}`: {e}", kind.field())))?;
    Ok(answer(kind, node, Some(added)))
}

/// The routes of `kind`'s list, to merge into the admin API's router.
pub(crate) fn routes(kind: NameKind) -> Router<NodeHandle> {
    let one = format!("{}/{{name}}", kind.path());
    Router::new()
        .route(
            kind.path(),
            get(move |State(node): State<NodeHandle>| async move { answer(kind, &node, None) })
                .post(
                    move |State(node): State<NodeHandle>, Json(body): Json<Value>| async move {
                        add(kind, &node, &body)
                    },
                ),
        )
        .route(
            &one,
            axum::routing::delete(
                move |State(node): State<NodeHandle>, Path(name): Path<String>| async move {
                    let removed = kind.remove(&node, &name);
                    answer(kind, &node, Some(removed))
                },
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_round_trips_under_its_kinds_key() {
        let v = NamesView {
            kind: NameKind::Group,
            names: vec!["g1".into(), "group0".into()],
            changed: Some(true),
        };
        let json = v.to_json();
        assert_eq!(
            json,
            serde_json::json!({"groups": ["g1", "group0"], "changed": true})
        );
        assert_eq!(NamesView::from_json(NameKind::Group, &json), Ok(v));
        assert!(NamesView::from_json(NameKind::Topic, &json).is_err());
    }

    #[test]
    fn a_post_body_names_exactly_one_name_of_its_kind() {
        let body = name_request(NameKind::Topic, "blocks");
        assert_eq!(
            requested(NameKind::Topic, &body).ok(),
            Some("blocks".into())
        );
        assert!(requested(NameKind::Group, &body).is_err());
        let extra = serde_json::json!({"topic": "a", "group": "b"});
        assert!(requested(NameKind::Topic, &extra).is_err());
        assert!(requested(NameKind::Topic, &serde_json::json!({"topic": 7})).is_err());
    }
}
