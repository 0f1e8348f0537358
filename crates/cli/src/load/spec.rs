//! The load SPEC of `chainmesh node --load`: comma-separated `key=value` pairs. Pure.

use std::str::FromStr;
use std::time::Duration;

/// Highest rate a SPEC may ask for, per second and kind.
const MAX_RATE: f64 = 100_000.0;
/// Bytes at the head of every load payload: the sender's incarnation and the message seq.
pub const HEADER_LEN: usize = 16;
/// Largest payload a SPEC may ask for.
const MAX_SIZE: usize = 16 << 20;
/// The module load traffic goes to unless the SPEC says otherwise: below chainmesh's own
/// (`0xff00` and up).
pub const DEFAULT_MODULE: u16 = 0xfe00;

/// What the load generator sends, per second for the whole node.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Echo requests per second (`requests=`).
    pub requests: f64,
    /// One-way unicasts per second (`unicasts=`).
    pub unicasts: f64,
    /// Broadcasts per second (`broadcasts=`).
    pub broadcasts: f64,
    /// Payload bytes of every message (`size=`, default 256, at least 16).
    pub size: usize,
    /// Each request's timeout (`request_timeout_ms=`, default 2000).
    pub request_timeout: Duration,
    /// Requests outstanding at once at most (`in_flight=`, default 1000); one more is
    /// skipped, not sent.
    pub in_flight: usize,
    /// The group broadcasts go to (`group=`; default the node's first group).
    pub group: Option<String>,
    /// The module load traffic is addressed to (`module=`, default 65024 = 0xfe00).
    pub module: u16,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            requests: 0.0,
            unicasts: 0.0,
            broadcasts: 0.0,
            size: 256,
            request_timeout: Duration::from_millis(2000),
            in_flight: 1000,
            group: None,
            module: DEFAULT_MODULE,
        }
    }
}

/// Why a SPEC was refused; every variant names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A key no load generator knows.
    #[error(
        "unknown key `{0}` (known: requests, unicasts, broadcasts, amop, size, \
         request_timeout_ms, in_flight, group, module)"
    )]
    UnknownKey(String),
    /// An item without `=`.
    #[error("`{0}` is not key=value")]
    NotKeyValue(String),
    /// A key given twice.
    #[error("key `{0}` is given twice")]
    Duplicate(String),
    /// A value out of range or of the wrong form.
    #[error("{key}: `{value}` {problem}")]
    Value {
        /// The key.
        key: String,
        /// Its value as given.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A key this build cannot act on.
    #[error("{key}: {problem}")]
    Unsupported {
        /// The key.
        key: String,
        /// Why.
        problem: &'static str,
    },
}

fn bad(key: &str, value: &str, problem: impl Into<String>) -> SpecError {
    SpecError::Value {
        key: key.into(),
        value: value.into(),
        problem: problem.into(),
    }
}

fn rate(key: &str, value: &str) -> Result<f64, SpecError> {
    let r: f64 = value
        .parse()
        .map_err(|_| bad(key, value, "is not a number"))?;
    if !r.is_finite() || !(0.0..=MAX_RATE).contains(&r) {
        return Err(bad(
            key,
            value,
            format!("must be 0 to {MAX_RATE} per second"),
        ));
    }
    Ok(r)
}

fn int<T: FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, SpecError> {
    let n: T = value
        .parse()
        .map_err(|_| bad(key, value, "is not a whole number"))?;
    if n < min || n > max {
        return Err(bad(key, value, format!("must be {min} to {max}")));
    }
    Ok(n)
}

impl FromStr for LoadSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = LoadSpec::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| SpecError::NotKeyValue(item.into()))?;
            if seen.contains(&key) {
                return Err(SpecError::Duplicate(key.into()));
            }
            seen.push(key);
            match key {
                "requests" => spec.requests = rate(key, value)?,
                "unicasts" => spec.unicasts = rate(key, value)?,
                "broadcasts" => spec.broadcasts = rate(key, value)?,
                "amop" => {
                    if rate(key, value)? > 0.0 {
                        return Err(SpecError::Unsupported {
                            key: key.into(),
                            problem: "load through AMOP is not built yet; leave it out or 0",
                        });
                    }
                }
                "size" => spec.size = int(key, value, HEADER_LEN, MAX_SIZE)?,
                "request_timeout_ms" => {
                    spec.request_timeout = Duration::from_millis(int(key, value, 1u64, 600_000)?);
                }
                "in_flight" => spec.in_flight = int(key, value, 1usize, 100_000)?,
                "group" => {
                    if value.is_empty() || value.len() > 255 {
                        return Err(bad(key, value, "must be 1 to 255 bytes"));
                    }
                    spec.group = Some(value.into());
                }
                "module" => spec.module = int(key, value, 0u16, 0xfeff)?,
                _ => return Err(SpecError::UnknownKey(key.into())),
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_are_zero_and_defaults() {
        let s: LoadSpec = "requests=50".parse().unwrap();
        assert_eq!(s.requests, 50.0);
        assert_eq!(s.unicasts, 0.0);
        assert_eq!(s.broadcasts, 0.0);
        assert_eq!(s.size, 256);
        assert_eq!(s.request_timeout, Duration::from_millis(2000));
        assert_eq!(s.module, DEFAULT_MODULE);
        assert_eq!("".parse::<LoadSpec>().unwrap(), LoadSpec::default());
    }

    #[test]
    fn every_key_parses() {
        let s: LoadSpec = "requests=1.5, unicasts=20,broadcasts=3,amop=0,size=1024,\
                           request_timeout_ms=500,in_flight=8,group=g1,module=7"
            .parse()
            .unwrap();
        assert_eq!(
            s,
            LoadSpec {
                requests: 1.5,
                unicasts: 20.0,
                broadcasts: 3.0,
                size: 1024,
                request_timeout: Duration::from_millis(500),
                in_flight: 8,
                group: Some("g1".into()),
                module: 7,
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (spec, key) in [
            ("requests=abc", "requests"),
            ("unicasts=-1", "unicasts"),
            ("broadcasts=inf", "broadcasts"),
            ("requests=100001", "requests"),
            ("size=15", "size"),
            ("request_timeout_ms=0", "request_timeout_ms"),
            ("in_flight=0", "in_flight"),
            ("module=65280", "module"),
            ("group=", "group"),
            ("amop=5", "amop"),
            ("speed=5", "speed"),
            ("requests=1,requests=2", "requests"),
        ] {
            let e = spec.parse::<LoadSpec>().unwrap_err().to_string();
            assert!(e.contains(key), "{spec}: {e}");
        }
        let e = "requests".parse::<LoadSpec>().unwrap_err();
        assert_eq!(e, SpecError::NotKeyValue("requests".into()));
    }
}
