//! `[log]`: what the node logs and in which form.
//!
//! The library itself only emits `tracing` events; the `chainmesh` binary reads this section
//! to set up its subscriber. It lives in the config so that an operator sets it once per node
//! with the rest, beside `RUST_LOG` for a one-off run.

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};

/// Longest `log.level` filter, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// The levels a filter directive may name, as `tracing` spells them.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Comma-separated directives, each a level (`info`) or `target=level`
    /// (`chainmesh::routing=debug`): the default level and per-module levels.
    /// `RUST_LOG`, when set, replaces it.
    pub level: String,
    /// Text or JSON lines; `chainmesh node --log-format` overrides it.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    /// Checks `level`: 1 to [`MAX_FILTER_LEN`] bytes of directives, each naming one of the
    /// levels, after a target of letters, digits, `_`, `-` and `::` when it has one.
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        let bad = |problem: String| Err(c.bad("log.level", problem));
        if self.level.is_empty() || self.level.len() > MAX_FILTER_LEN {
            return bad(format!("must be 1 to {MAX_FILTER_LEN} bytes"));
        }
        for directive in self.level.split(',').map(str::trim) {
            if let Err(problem) = check_directive(directive) {
                return bad(format!("`{}`: {problem}", directive.escape_debug()));
            }
        }
        Ok(())
    }
}

/// Whether one directive of a filter is `level` or `target=level`.
fn check_directive(directive: &str) -> Result<(), String> {
    let (target, level) = match directive.split_once('=') {
        Some((target, level)) => (Some(target), level),
        None => (None, directive),
    };
    if let Some(target) = target {
        let ok = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | ':');
        if target.is_empty() || !target.chars().all(ok) {
            return Err("the target must be a module path such as chainmesh::routing".into());
        }
    }
    if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
        return Err(format!("the level must be one of {}", LEVELS.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(level: &str) -> Result<(), ConfigError> {
        let c = Check {
            file: Path::new("n.toml"),
        };
        LogConfig {
            level: level.into(),
            format: LogFormat::Json,
        }
        .validate(&c)
    }

    #[test]
    fn accepts_a_default_level_with_per_module_levels() {
        assert!(check("info").is_ok());
        assert!(check("warn, chainmesh::routing=debug,chainmesh_admin=TRACE").is_ok());
    }

    #[test]
    fn refuses_unknown_levels_and_malformed_targets_naming_the_key() {
        for bad in [
            "",
            "loud",
            "chainmesh=",
            "=debug",
            "chain mesh=info",
            "info,,warn",
        ] {
            let e = check(bad).expect_err(bad).to_string();
            assert!(e.contains("key `log.level`"), "{bad}: {e}");
        }
        assert!(check(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
    }
}
