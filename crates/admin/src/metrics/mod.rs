//! `GET /metrics`: the node's counters, gauges and histograms in the Prometheus text format
//! (OpenMetrics 1.0, as the `prometheus-client` crate writes it), read from the live node on
//! each scrape. The families are listed in `docs/metrics.md`.

mod families;
mod flow;
mod node;
mod peers;

pub(crate) use families::{counter, gauge};

use std::fmt;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use chainmesh::amop::AmopHandle;
use chainmesh::node::NodeHandle;

/// What one scrape reads.
struct Scrape {
    node: NodeHandle,
    amop: Option<AmopHandle>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("node", &self.node.node_id().short())
            .finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        node::encode(&mut encoder, &self.node)?;
        peers::encode(&mut encoder, &self.node)?;
        flow::encode(&mut encoder, &self.node)?;
        if let Some(amop) = &self.amop {
            super::amop::encode(&mut encoder, amop)?;
        }
        Ok(())
    }
}

/// Renders every family; the AMOP ones only when the node runs a channel port.
pub fn render(node: &NodeHandle, amop: Option<&AmopHandle>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        node: node.clone(),
        amop: amop.cloned(),
    }));
    let mut out = String::new();
    // Writing into a String cannot fail; a family that could not be encoded would be a
    // bug in the encoder, and a partial answer is better than none for a scraper.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

pub(super) async fn metrics(
    State(node): State<NodeHandle>,
    Extension(amop): Extension<super::amop::MaybeAmop>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&node, amop.as_ref()),
    )
}
