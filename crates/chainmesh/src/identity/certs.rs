//! Loading a node's identity from PEM files, and deriving node IDs from certificates and keys.
//!
//! Every error names the file it is about, because an operator fixing a node directory needs to
//! know which of `ca.crt`, `node.crt` and `node.key` is wrong, not only that something is.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use openssl::bn::BigNumContext;
use openssl::ec::PointConversionForm;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509KeyUsage, X509Ref, X509StoreContext, X509VerifyResult, X509};

use super::{NodeId, NODE_ID_LEN};

/// Largest certificate or key file read. Real ones are a few KiB; the cap keeps a mistyped path
/// (say, to a disk image) from being read into memory whole.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// What is wrong with a public key that is meant to be a node key.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// The key is not an EC key (e.g. RSA or Ed25519).
    #[error("key type {0} is not supported: node keys are EC keys on secp256k1 or prime256v1")]
    NotEc(String),
    /// The key is EC, but on a curve node IDs are not defined for.
    #[error("EC curve {0} is not supported: node keys are on secp256k1 or prime256v1")]
    Curve(String),
    /// The uncompressed public point is not `0x04 || X || Y` with 32-byte coordinates.
    #[error("the uncompressed public point is {0} bytes, expected 65 starting with 0x04")]
    Point(usize),
    /// OpenSSL could not extract the point.
    #[error("cannot read the public key: {0}")]
    OpenSsl(#[source] ErrorStack),
}

/// Why an identity, certificate or key could not be loaded, checked or generated.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than any certificate or key file could be.
    #[error("{file}: is {len} bytes; certificate and key files are at most 1 MiB")]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// A PEM block was found but its content did not parse.
    #[error("{file}: cannot parse {what}: {source}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// What was expected, e.g. "PEM certificate".
        what: &'static str,
        /// OpenSSL's reason.
        source: ErrorStack,
    },
    /// The file holds nothing of the kind that was needed.
    #[error("{file}: {problem}")]
    Content {
        /// The file.
        file: PathBuf,
        /// What is missing or unexpected, e.g. "contains no PEM certificate".
        problem: String,
    },
    /// A key read from a file cannot give a node ID.
    #[error("{file}: {problem}")]
    Key {
        /// The file holding the key or certificate.
        file: PathBuf,
        /// What is wrong with the key.
        problem: KeyProblem,
    },
    /// A certificate's key cannot give a node ID.
    #[error("certificate `{subject}`: {problem}")]
    CertKey {
        /// The certificate's subject.
        subject: String,
        /// What is wrong with its key.
        problem: KeyProblem,
    },
    /// The private key is not the key of the node certificate.
    #[error("{key_file}: private key does not match the certificate in {cert_file}")]
    KeyMismatch {
        /// The private key file.
        key_file: PathBuf,
        /// The certificate file.
        cert_file: PathBuf,
    },
    /// The node certificate does not chain to the CA.
    #[error(
        "{cert_file}: certificate `{subject}` does not verify against the CA in {ca_file}: {reason}"
    )]
    Untrusted {
        /// The node certificate file.
        cert_file: PathBuf,
        /// The CA certificate file.
        ca_file: PathBuf,
        /// The leaf's subject.
        subject: String,
        /// OpenSSL's verification result, e.g. "unable to get local issuer certificate".
        reason: String,
    },
    /// The node certificate is not a leaf (node) certificate.
    #[error("{cert_file}: certificate `{subject}` is not a node certificate: {problem}")]
    NotALeaf {
        /// The node certificate file.
        cert_file: PathBuf,
        /// The leaf's subject.
        subject: String,
        /// What makes it no leaf.
        problem: LeafProblem,
    },
    /// OpenSSL failed while generating or encoding keys or certificates.
    #[error("{what}: {source}")]
    OpenSsl {
        /// What was being done, e.g. "generate the agency certificate".
        what: String,
        /// OpenSSL's reason.
        source: ErrorStack,
    },
    /// A directory could not be created.
    #[error("{dir}: cannot create directory: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{file}: cannot write: {source}")]
    Write {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A caller asked for something that cannot be made, e.g. zero nodes.
    #[error("{0}")]
    Invalid(String),
}

/// Why a certificate is not acceptable as a node (leaf) certificate.
///
/// A node certificate must say it is no CA (basicConstraints present with CA:FALSE; a
/// certificate without the extension is not taken for a leaf, since without it old
/// verifiers treat a certificate as a possible CA), and must carry keyUsage with
/// digitalSignature (the node signs its TLS handshakes). FISCO BCOS and `chainmesh init`
/// write both extensions on node certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafProblem {
    /// The certificate has no basicConstraints extension (or no extensions at all).
    #[error("it has no basicConstraints extension; node certificates must say CA:FALSE")]
    NoBasicConstraints,
    /// basicConstraints says CA:TRUE.
    #[error("basicConstraints says CA:TRUE; a CA certificate cannot be a node certificate")]
    Ca,
    /// The certificate has no keyUsage extension.
    #[error("it has no keyUsage extension; node certificates must allow digitalSignature")]
    NoKeyUsage,
    /// keyUsage does not allow digitalSignature.
    #[error("its keyUsage does not allow digitalSignature")]
    NoDigitalSignature,
    /// The certificate's DER could not be read far enough to find its extensions.
    #[error("its extensions cannot be read: {0}")]
    Unreadable(&'static str),
}

/// Checks that `cert` is a node (leaf) certificate: see [`LeafProblem`].
pub fn check_leaf(cert: &X509Ref) -> Result<(), LeafProblem> {
    let der = cert
        .to_der()
        .map_err(|_| LeafProblem::Unreadable("the certificate does not encode"))?;
    match basic_constraints_ca(&der)? {
        None => return Err(LeafProblem::NoBasicConstraints),
        Some(true) => return Err(LeafProblem::Ca),
        Some(false) => {}
    }
    match cert.key_usage() {
        None => Err(LeafProblem::NoKeyUsage),
        Some(ku) if ku.contains(X509KeyUsage::DIGITAL_SIGNATURE) => Ok(()),
        Some(_) => Err(LeafProblem::NoDigitalSignature),
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), LeafProblem> {
    let bad = LeafProblem::Unreadable;
    let (&tag, rest) = input.split_first().ok_or(bad("truncated element"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(bad("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("unsupported length"));
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(bad("element runs past its parent"));
    }
    let (contents, after) = rest.split_at(len);
    Ok((tag, contents, after))
}

/// The cA flag of the certificate's basicConstraints, `None` when the extension is absent.
fn basic_constraints_ca(der: &[u8]) -> Result<Option<bool>, LeafProblem> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    /// 2.5.29.19, id-ce-basicConstraints.
    const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    let bad = LeafProblem::Unreadable;
    let (tag, cert, _) = der_element(der)?;
    let (tbs_tag, mut tbs, _) = der_element(cert)?;
    if tag != SEQUENCE || tbs_tag != SEQUENCE {
        return Err(bad("not a certificate"));
    }
    // Extensions are the tbsCertificate's last field, tagged [3]; earlier fields are skipped.
    let mut exts = None;
    while !tbs.is_empty() {
        let (tag, contents, rest) = der_element(tbs)?;
        if tag == EXTENSIONS {
            exts = Some(contents);
        }
        tbs = rest;
    }
    let Some(exts) = exts else {
        return Ok(None);
    };
    let (tag, mut list, _) = der_element(exts)?;
    if tag != SEQUENCE {
        return Err(bad("extensions are not a sequence"));
    }
    while !list.is_empty() {
        let (tag, ext, rest) = der_element(list)?;
        list = rest;
        if tag != SEQUENCE {
            return Err(bad("an extension is not a sequence"));
        }
        let (tag, oid, mut fields) = der_element(ext)?;
        if tag != OID || oid != BASIC_CONSTRAINTS {
            continue;
        }
        let (mut tag, mut value, rest) = der_element(fields)?;
        if tag == BOOLEAN {
            // The critical flag.
            fields = rest;
            (tag, value, _) = der_element(fields)?;
        }
        if tag != OCTET_STRING {
            return Err(bad("basicConstraints has no value"));
        }
        let (tag, constraints, _) = der_element(value)?;
        if tag != SEQUENCE {
            return Err(bad("basicConstraints is not a sequence"));
        }
        // cA is an optional BOOLEAN, FALSE when left out (DER leaves defaults out).
        let ca = match der_element(constraints) {
            Ok((BOOLEAN, flag, _)) => flag.iter().any(|&b| b != 0),
            _ => false,
        };
        return Ok(Some(ca));
    }
    Ok(None)
}

/// A node's loaded and checked identity: its key, its certificate chain and the CA it trusts.
#[derive(Clone)]
pub struct Identity {
    /// The node ID of the leaf certificate.
    pub node_id: NodeId,
    /// The node's private key; it matches the leaf certificate.
    pub key: PKey<Private>,
    /// The leaf certificate first, then any agency or CA certificates that followed it in
    /// `node.crt`. Sent to peers during the TLS handshake.
    pub chain: Vec<X509>,
    /// Every certificate in `ca.crt`: the only roots peers are verified against.
    pub ca: Vec<X509>,
}

impl fmt::Debug for Identity {
    // The private key is left out on purpose: a Debug print must never leak it into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field(
                "chain",
                &self.chain.iter().map(|c| subject_of(c)).collect::<Vec<_>>(),
            )
            .field(
                "ca",
                &self.ca.iter().map(|c| subject_of(c)).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// PEM text and the name to use for it in errors.
pub(crate) struct Source<'a> {
    pub(crate) name: &'a Path,
    pub(crate) data: &'a [u8],
}

impl Identity {
    /// Reads and checks a node's identity from its three files.
    ///
    /// `node_cert` holds the leaf certificate first, optionally followed by the agency
    /// certificate(s); `ca_cert` holds the chain CA certificate(s). Fails, naming the file, if
    /// a file is unreadable or not PEM, holds no certificate or key, if the key is not the
    /// leaf's, if the leaf's key is not EC on secp256k1/prime256v1, or if the leaf does not
    /// verify against the CA (with the extra certificates of `node_cert` as intermediates).
    pub fn load(
        ca_cert: &Path,
        node_cert: &Path,
        node_key: &Path,
    ) -> Result<Identity, IdentityError> {
        let ca = read_file(ca_cert)?;
        let cert = read_file(node_cert)?;
        let key = read_file(node_key)?;
        Identity::from_sources(
            Source {
                name: ca_cert,
                data: &ca,
            },
            Source {
                name: node_cert,
                data: &cert,
            },
            Source {
                name: node_key,
                data: &key,
            },
        )
    }

    /// The checks of [`Identity::load`] on PEM text already in memory; the names only label
    /// errors.
    pub(crate) fn from_sources(
        ca: Source<'_>,
        cert: Source<'_>,
        key: Source<'_>,
    ) -> Result<Identity, IdentityError> {
        let ca_certs = parse_certs(&ca)?;
        let chain = parse_certs(&cert)?;
        let key_pem = key.data;
        if !pem_labels(key_pem)
            .iter()
            .any(|l| l.ends_with("PRIVATE KEY"))
        {
            return Err(IdentityError::Content {
                file: key.name.to_owned(),
                problem: "contains no PEM private key (expected `BEGIN PRIVATE KEY` or \
                          `BEGIN EC PRIVATE KEY`)"
                    .into(),
            });
        }
        check_not_encrypted(key.name, key_pem)?;
        let private =
            PKey::private_key_from_pem(key_pem).map_err(|source| IdentityError::Parse {
                file: key.name.to_owned(),
                what: "PEM private key",
                source,
            })?;
        let leaf = &chain[0];
        let leaf_key = leaf.public_key().map_err(|source| IdentityError::Parse {
            file: cert.name.to_owned(),
            what: "the public key of the certificate",
            source,
        })?;
        let node_id = node_id_of_key(&leaf_key).map_err(|problem| IdentityError::Key {
            file: cert.name.to_owned(),
            problem,
        })?;
        if !leaf_key.public_eq(&private) {
            return Err(IdentityError::KeyMismatch {
                key_file: key.name.to_owned(),
                cert_file: cert.name.to_owned(),
            });
        }
        verify_chain(leaf, &chain[1..], &ca_certs).map_err(|reason| IdentityError::Untrusted {
            cert_file: cert.name.to_owned(),
            ca_file: ca.name.to_owned(),
            subject: subject_of(leaf),
            reason,
        })?;
        check_leaf(leaf).map_err(|problem| IdentityError::NotALeaf {
            cert_file: cert.name.to_owned(),
            subject: subject_of(leaf),
            problem,
        })?;
        Ok(Identity {
            node_id,
            key: private,
            chain,
            ca: ca_certs,
        })
    }

    /// The leaf (node) certificate.
    pub fn leaf(&self) -> Option<&X509Ref> {
        self.chain.first().map(|c| &**c)
    }
}

/// The node ID of a certificate: its EC public point (secp256k1 or prime256v1), uncompressed,
/// without the leading `0x04`.
pub fn node_id_of_cert(cert: &X509Ref) -> Result<NodeId, IdentityError> {
    let err = |problem| IdentityError::CertKey {
        subject: subject_of(cert),
        problem,
    };
    let key = cert.public_key().map_err(|e| err(KeyProblem::OpenSsl(e)))?;
    node_id_of_key(&key).map_err(err)
}

/// The node ID of any key holding an EC public point on secp256k1 or prime256v1.
pub fn node_id_of_key<T: HasPublic>(key: &PKeyRef<T>) -> Result<NodeId, KeyProblem> {
    let ec = key
        .ec_key()
        .map_err(|_| KeyProblem::NotEc(key_type_name(key.id())))?;
    let group = ec.group();
    match group.curve_name() {
        Some(Nid::SECP256K1) | Some(Nid::X9_62_PRIME256V1) => {}
        Some(other) => {
            return Err(KeyProblem::Curve(
                other.short_name().unwrap_or("(unnamed)").to_owned(),
            ))
        }
        None => return Err(KeyProblem::Curve("(explicit parameters)".into())),
    }
    let mut ctx = BigNumContext::new().map_err(KeyProblem::OpenSsl)?;
    let point = ec
        .public_key()
        .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(KeyProblem::OpenSsl)?;
    match point.split_first() {
        Some((0x04, xy)) if xy.len() == NODE_ID_LEN => {
            NodeId::from_slice(xy).map_err(|_| KeyProblem::Point(point.len()))
        }
        _ => Err(KeyProblem::Point(point.len())),
    }
}

/// The node ID in a certificate or key file.
///
/// The file may be PEM: a certificate (the first one, the leaf, is used), a private key
/// (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, possibly preceded by `EC PARAMETERS`), or
/// a `PUBLIC KEY`. A DER certificate or key is accepted too.
pub fn node_id_of_file(path: &Path) -> Result<NodeId, IdentityError> {
    let data = read_file(path)?;
    let labels = pem_labels(&data);
    let key_err = |problem| IdentityError::Key {
        file: path.to_owned(),
        problem,
    };
    if labels.iter().any(|l| l == "CERTIFICATE") {
        let certs = parse_certs(&Source {
            name: path,
            data: &data,
        })?;
        return node_id_of_cert(&certs[0]).map_err(|e| match e {
            IdentityError::CertKey { problem, .. } => key_err(problem),
            other => other,
        });
    }
    if labels.iter().any(|l| l.ends_with("PRIVATE KEY")) {
        check_not_encrypted(path, &data)?;
        let key = PKey::private_key_from_pem(&data).map_err(|source| IdentityError::Parse {
            file: path.to_owned(),
            what: "PEM private key",
            source,
        })?;
        return node_id_of_key(&key).map_err(key_err);
    }
    if labels.iter().any(|l| l == "PUBLIC KEY") {
        let key = PKey::public_key_from_pem(&data).map_err(|source| IdentityError::Parse {
            file: path.to_owned(),
            what: "PEM public key",
            source,
        })?;
        return node_id_of_key(&key).map_err(key_err);
    }
    if let Some(label) = labels.first() {
        return Err(IdentityError::Content {
            file: path.to_owned(),
            problem: format!(
                "holds a PEM `{label}` block, not a certificate, private key or public key"
            ),
        });
    }
    // No PEM armour: DER is the other form OpenSSL tools write.
    if let Ok(cert) = X509::from_der(&data) {
        return node_id_of_cert(&cert).map_err(|e| match e {
            IdentityError::CertKey { problem, .. } => key_err(problem),
            other => other,
        });
    }
    if let Ok(key) = PKey::private_key_from_der(&data) {
        return node_id_of_key(&key).map_err(key_err);
    }
    if let Ok(key) = PKey::public_key_from_der(&data) {
        return node_id_of_key(&key).map_err(key_err);
    }
    Err(IdentityError::Content {
        file: path.to_owned(),
        problem: "is neither a PEM nor a DER certificate, private key or public key".into(),
    })
}

/// A readable name for a key type, for messages.
fn key_type_name(id: Id) -> String {
    match id {
        Id::RSA | Id::RSA_PSS => "RSA".into(),
        Id::DSA => "DSA".into(),
        Id::ED25519 => "Ed25519".into(),
        Id::ED448 => "Ed448".into(),
        other => Nid::from_raw(other.as_raw())
            .short_name()
            .map(str::to_owned)
            .unwrap_or_else(|_| format!("#{}", other.as_raw())),
    }
}

/// A certificate's subject as `CN=node0, O=chainmesh`, for messages.
pub fn subject_of(cert: &X509Ref) -> String {
    let parts: Vec<String> = cert
        .subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={value}")
        })
        .collect();
    if parts.is_empty() {
        "(empty subject)".into()
    } else {
        parts.join(", ")
    }
}

/// Reads a certificate or key file, refusing absurd sizes.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let read_err = |source| IdentityError::Read {
        file: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut data = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_FILE_LEN {
        let len = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(data.len() as u64);
        return Err(IdentityError::TooLarge {
            file: path.to_owned(),
            len,
        });
    }
    Ok(data)
}

/// Every certificate in a PEM source; at least one.
pub(super) fn parse_certs(src: &Source<'_>) -> Result<Vec<X509>, IdentityError> {
    let certs = X509::stack_from_pem(src.data).map_err(|source| IdentityError::Parse {
        file: src.name.to_owned(),
        what: "PEM certificate",
        source,
    })?;
    if certs.is_empty() {
        let labels = pem_labels(src.data);
        let problem = match labels.first() {
            Some(l) => format!("contains no PEM certificate (found a `{l}` block instead)"),
            None => "contains no PEM certificate (no `-----BEGIN CERTIFICATE-----` line)".into(),
        };
        return Err(IdentityError::Content {
            file: src.name.to_owned(),
            problem,
        });
    }
    Ok(certs)
}

/// Encrypted keys would make OpenSSL prompt on the terminal for a passphrase; a node must
/// never block on that, so they are refused up front.
pub(super) fn check_not_encrypted(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    let encrypted = pem_labels(data)
        .iter()
        .any(|l| l == "ENCRYPTED PRIVATE KEY")
        || data
            .windows(b"Proc-Type: 4,ENCRYPTED".len())
            .any(|w| w == b"Proc-Type: 4,ENCRYPTED");
    if encrypted {
        return Err(IdentityError::Content {
            file: path.to_owned(),
            problem: "the private key is encrypted; node keys must be unencrypted \
                      (decrypt with `openssl pkey -in KEY -out KEY.plain`)"
                .into(),
        });
    }
    Ok(())
}

/// The labels of the PEM blocks in `data`, in order (`CERTIFICATE`, `EC PRIVATE KEY`, ...).
fn pem_labels(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
                .map(str::to_owned)
        })
        .collect()
}

/// Verifies `leaf` against `roots` with `intermediates` as untrusted helpers; the error is
/// OpenSSL's verification result in words.
fn verify_chain(leaf: &X509Ref, intermediates: &[X509], roots: &[X509]) -> Result<(), String> {
    let run = || -> Result<(bool, X509VerifyResult, u32), ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        for root in roots {
            store.add_cert(root.clone())?;
        }
        let store = store.build();
        let mut untrusted = Stack::new()?;
        for c in intermediates {
            untrusted.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        ctx.init(&store, leaf, &untrusted, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error(), c.error_depth()))
        })
    };
    match run() {
        Ok((true, _, _)) => Ok(()),
        Ok((false, result, depth)) => {
            // A refused chain is an answer, not an error: nothing may stay queued for the
            // next TLS operation on this thread (see `keys::discard_thread_errors`).
            super::keys::discard_thread_errors();
            Err(format!("{} (at depth {depth})", result.error_string()))
        }
        Err(e) => Err(format!("verification could not run: {e}")),
    }
}

#[cfg(test)]
mod tests;
