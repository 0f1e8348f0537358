//! A small client for the admin API, shared by the operator commands.

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The admin API of one node, at `host:port`.
pub struct AdminClient {
    base: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client for the admin API at `addr` (`host:port`, or a full `http://` URL).
    pub fn new(addr: &str) -> Self {
        let base = if addr.starts_with("http://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", addr.trim_end_matches('/'))
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            // Error statuses carry a JSON body explaining them: read it instead of failing.
            .http_status_as_error(false)
            .build()
            .into();
        AdminClient { base, agent }
    }

    fn check<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut resp = resp.with_context(|| format!("{what}: cannot reach {}", self.base))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            return Err(anyhow!("{what}: {status}: {msg}"));
        }
        serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer: {body}"))
    }

    /// `GET path`, decoded from JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.check(&format!("GET {path}"), self.agent.get(&url).call())
    }

    /// `POST path` with a JSON body, decoded from JSON.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.check(
            &format!("POST {path}"),
            self.agent.post(&url).send_json(body),
        )
    }

    /// `DELETE path`, decoded from JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.check(&format!("DELETE {path}"), self.agent.delete(&url).call())
    }
}
