//! A small client for the admin API, shared by the operator commands.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use chainmesh_admin::AdminToken;

/// The environment variable a write command takes the admin token from.
pub const TOKEN_ENV: &str = "CHAINMESH_ADMIN_TOKEN";

/// Where a command that changes something finds the node's admin token.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// File holding the node's admin token: the `admin.token` beside its config file.
    /// Without it the token is taken from the CHAINMESH_ADMIN_TOKEN environment variable.
    #[arg(long, value_name = "PATH", global = true)]
    token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token from `--token-file`, else from the environment; `None` if neither is given.
    pub fn token(&self) -> anyhow::Result<Option<AdminToken>> {
        if let Some(file) = &self.token_file {
            return Ok(Some(AdminToken::read(file)?));
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => AdminToken::from_text(&text)
                .map(Some)
                .ok_or_else(|| anyhow!("{TOKEN_ENV} does not hold an admin token")),
            Err(_) => Ok(None),
        }
    }
}

/// The admin API of one node, at `host:port`.
pub struct AdminClient {
    base: String,
    agent: ureq::Agent,
    token: Option<AdminToken>,
}

impl AdminClient {
    /// A client for the admin API at `addr` (`host:port`, or a full `http://` URL) that
    /// only reads.
    pub fn new(addr: &str) -> Self {
        Self::with_token(addr, None)
    }

    /// A client that sends `token` with every write.
    pub fn with_token(addr: &str, token: Option<AdminToken>) -> Self {
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
        AdminClient { base, agent, token }
    }

    fn bearer(&self) -> Option<String> {
        self.token
            .as_ref()
            .map(|t| format!("Bearer {}", t.as_str()))
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
            if status == ureq::http::StatusCode::UNAUTHORIZED {
                let given = if self.token.is_some() {
                    "the token given is not this node's"
                } else {
                    "no token was given"
                };
                return Err(anyhow!(
                    "{what}: {status}: {given}: set {TOKEN_ENV} to the node's admin token or \
                     pass --token-file PATH (the node keeps it in admin.token beside its config \
                     file)"
                ));
            }
            return Err(anyhow!("{what}: {status}: {msg}"));
        }
        serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer: {body}"))
    }

    /// `GET path`, decoded from JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.check(&format!("GET {path}"), self.agent.get(&url).call())
    }

    /// `GET path` of a response that stays open (`/v1/listen`), read line by line: no
    /// overall timeout, only one on connecting.
    pub fn stream(&self, path: &str) -> anyhow::Result<impl std::io::BufRead> {
        let url = format!("{}{path}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let resp = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {path}: cannot reach {}", self.base))?;
        if !resp.status().is_success() {
            // The error body is JSON, as for every other route.
            return self
                .check::<()>(&format!("GET {path}"), Ok(resp))
                .and_then(|()| Err(anyhow!("GET {path}: unexpected answer")));
        }
        Ok(std::io::BufReader::new(resp.into_body().into_reader()))
    }

    /// `POST path` with a JSON body, decoded from JSON.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.post(&url);
        if let Some(b) = self.bearer() {
            req = req.header("Authorization", b);
        }
        self.check(&format!("POST {path}"), req.send_json(body))
    }

    /// `DELETE path`, decoded from JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.delete(&url);
        if let Some(b) = self.bearer() {
            req = req.header("Authorization", b);
        }
        self.check(&format!("DELETE {path}"), req.call())
    }
}

/// `s` as one path segment of an admin API URL: every byte percent-encoded but the
/// unreserved ones and `:` (a host:port stays readable; brackets and `/` are escaped).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_segment_keeps_host_port_and_escapes_brackets_slashes_and_spaces() {
        assert_eq!(super::path_segment("127.0.0.1:30300"), "127.0.0.1:30300");
        assert_eq!(super::path_segment("[::1]:30300"), "%5B::1%5D:30300");
        assert_eq!(super::path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(super::path_segment("blocks-1"), "blocks-1");
    }
}
