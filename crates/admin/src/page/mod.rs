//! `GET /`: the live network page, and `GET /v1/network`, the JSON it polls.
//!
//! The page is one self-contained HTML document (its script and style inlined, nothing
//! fetched from elsewhere) that draws every node this node knows and the links between
//! them as an SVG graph and refreshes it from `/v1/network` every `admin.page_refresh`
//! (the interval comes in each answer), without reloading. What the JSON holds is built
//! per request from the node's live state ([`network`]), plus two things kept here: a
//! bounded ring of recent peer and reachability events ([`events`]), and per-link samples
//! of throughput and round-trip time ([`samples`]), taken only while someone polls.

mod events;
mod network;
mod samples;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use chainmesh::config::AdminConfig;
use chainmesh::node::NodeHandle;

pub use events::EventEntry;
pub use network::{LinkEntry, NetworkView, NodeEntry};

/// The page, assembled once at build time: the document with its style and script inlined.
const PAGE: &str = concat!(
    include_str!("head.html"),
    "<style>",
    include_str!("page.css"),
    "</style>",
    include_str!("body.html"),
    "<script>",
    include_str!("page.js"),
    "</script></body></html>\n",
);

/// What the page's handlers share: the node, its recent events, the link samples, and how
/// often the page refreshes.
#[derive(Clone)]
struct PageState {
    node: NodeHandle,
    events: Arc<events::EventRing>,
    samples: Arc<samples::Samples>,
    refresh: Duration,
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // Nothing but this document's own inline script and style, and fetches back to
            // this listener.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:",
            ),
        ],
        Html(PAGE),
    )
}

async fn get_network(State(s): State<PageState>) -> Json<NetworkView> {
    s.samples.refresh(&s.node);
    Json(network::network_view(
        &s.node, &s.events, &s.samples, s.refresh,
    ))
}

/// The page's routes, sampling and refreshing as the `admin.page_*` keys of `settings` say.
/// Starts recording the node's peer events (see [`events::EventRing`]), which needs a Tokio
/// runtime; without one the page shows no events.
pub(super) fn router(node: NodeHandle, settings: &AdminConfig) -> Router {
    let timing = samples::Timing {
        rate_window: settings.page_rate_window,
        ping_interval: settings.page_ping_interval,
        ping_timeout: settings.page_ping_timeout,
    };
    let state = PageState {
        events: events::EventRing::record(&node, settings.page_max_events),
        samples: Arc::new(samples::Samples::new(timing)),
        refresh: settings.page_refresh,
        node,
    };
    Router::new()
        .route("/", get(index))
        .route("/v1/network", get(get_network))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_is_one_document_that_fetches_nothing_from_elsewhere() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("<html"));
        // The one URL is the SVG namespace, a name rather than something to fetch.
        let urls = PAGE.matches("://").count();
        assert_eq!(urls, PAGE.matches("http://www.w3.org/2000/svg").count());
        assert!(!PAGE.contains("<script src") && !PAGE.contains("<link"));
        assert!(PAGE.contains("/v1/network"));
    }
}
