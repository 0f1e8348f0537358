//! The admin token: a random secret that every write request must present as
//! `Authorization: Bearer <token>`. A node keeps it in `admin.token` beside its config file,
//! readable by its owner only, as Bitcoin Core keeps its RPC cookie: whoever can read the
//! node's files may change it; nobody else can, whatever reaches the admin port.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use subtle::ConstantTimeEq;

/// The name of the token file, beside the config file.
pub const TOKEN_FILE: &str = "admin.token";

/// Random bytes in a generated token (64 hex characters).
const TOKEN_BYTES: usize = 32;

/// Fewest characters a token read from a file may have: a short token can be guessed.
const MIN_TOKEN_CHARS: usize = 32;

/// Why a token could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No randomness was available.
    #[error("cannot generate an admin token: {0}")]
    Random(#[from] rand::rand_core::OsError),
    /// The file could not be read or written.
    #[error("{}: {source}", .file.display())]
    Io {
        /// The token file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something that is not a usable token.
    #[error("{}: {problem}", .file.display())]
    Malformed {
        /// The token file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// A secret admin token. Its `Debug` output hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Where the token of the node configured by `config_file` is kept.
pub fn token_path(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(TOKEN_FILE)
}

impl AdminToken {
    /// A fresh token of 32 random bytes, as hex.
    pub fn generate() -> Result<AdminToken, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(AdminToken(hex::encode(bytes)))
    }

    /// A token with a value given as text (surrounding whitespace ignored), e.g. from the
    /// environment; `None` if what is left is too short or not printable ASCII.
    pub fn from_text(text: &str) -> Option<AdminToken> {
        let t = text.trim();
        let usable = t.len() >= MIN_TOKEN_CHARS && t.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| AdminToken(t.to_owned()))
    }

    /// The token as it goes into the `Authorization` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        // The length of a token is no secret (generated ones are all 64 characters).
        presented.len() == self.0.len() && bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }

    /// Reads the token kept in `file`.
    pub fn read(file: &Path) -> Result<AdminToken, TokenError> {
        let text = std::fs::read_to_string(file).map_err(|source| TokenError::Io {
            file: file.to_owned(),
            source,
        })?;
        AdminToken::from_text(&text).ok_or_else(|| TokenError::Malformed {
            file: file.to_owned(),
            problem: format!(
                "not an admin token (at least {MIN_TOKEN_CHARS} printable ASCII characters)"
            ),
        })
    }

    /// Writes a fresh token to `file` (mode 0600), replacing any file of that name.
    pub fn create(file: &Path) -> Result<AdminToken, TokenError> {
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(TokenError::Io {
                    file: file.to_owned(),
                    source: e,
                })
            }
            _ => {}
        }
        AdminToken::create_new(file)
    }

    /// The token kept in `file`, made there first (mode 0600) if there is none; the flag
    /// says whether it was made.
    pub fn load_or_create(file: &Path) -> Result<(AdminToken, bool), TokenError> {
        match AdminToken::create_new(file) {
            Ok(t) => Ok((t, true)),
            Err(TokenError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok((AdminToken::read(file)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `file` can be read by others than its owner.
    pub fn readable_by_others(file: &Path) -> bool {
        std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }

    fn create_new(file: &Path) -> Result<AdminToken, TokenError> {
        let io = |source| TokenError::Io {
            file: file.to_owned(),
            source,
        };
        let token = AdminToken::generate()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .map_err(io)?;
        writeln!(f, "{}", token.0).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_64_hex_characters_and_matches_only_itself() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(b.as_str()));
        assert!(!a.matches(&a.as_str()[1..]));
        assert!(!a.matches(""));
        assert_eq!(format!("{a:?}"), "AdminToken(..)");
    }

    #[test]
    fn the_file_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = token_path(&dir.path().join("config.toml"));
        let (made, created) = AdminToken::load_or_create(&f).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!AdminToken::readable_by_others(&f));
        let (again, created) = AdminToken::load_or_create(&f).unwrap();
        assert!(!created);
        assert_eq!(made, again);
        let fresh = AdminToken::create(&f).unwrap();
        assert_ne!(fresh, made);
        assert_eq!(AdminToken::read(&f).unwrap(), fresh);
    }

    #[test]
    fn a_short_or_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(TOKEN_FILE);
        std::fs::write(&f, "secret\n").unwrap();
        let e = AdminToken::read(&f).unwrap_err().to_string();
        assert!(e.contains("admin.token"), "{e}");
        assert!(AdminToken::from_text("   ").is_none());
    }
}
