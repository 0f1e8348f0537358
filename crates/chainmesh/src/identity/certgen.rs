//! Generating a network's certificates the way FISCO BCOS's `build_chain.sh` does: a
//! self-signed chain CA, an agency CA signed by it, and node certificates signed by the agency.
//!
//! The files written are the ones [`Identity::load`](super::Identity::load) reads:
//! `ca.crt` (chain CA), `node.crt` (node certificate followed by the agency certificate, so a
//! peer can build the chain from the chain CA alone) and `node.key` (PKCS#8).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Ref, X509};

use super::certs::Source;
use super::{node_id_of_cert, Identity, IdentityError, NodeId};

mod sdk;

pub use sdk::{load_sdk_identity, SdkCredentials, SDK_CA_FILE, SDK_CERT_FILE, SDK_KEY_FILE};

/// Organisation name written into every generated certificate's subject.
const ORGANISATION: &str = "chainmesh";
/// Validity: from a day ago (so peers with slightly slow clocks accept a fresh certificate)
/// to ten years on, as `build_chain.sh`.
const BACKDATE_SECS: u64 = 24 * 60 * 60;
const VALIDITY_DAYS: u32 = 3650;

/// The elliptic curve of generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Curve {
    /// secp256k1, FISCO BCOS's default. Certificates on it work with TLS 1.2 only.
    #[default]
    Secp256k1,
    /// prime256v1 (NIST P-256). Certificates on it work with TLS 1.2 and 1.3.
    Prime256v1,
}

impl Curve {
    /// OpenSSL's identifier of the curve.
    pub fn nid(self) -> Nid {
        match self {
            Curve::Secp256k1 => Nid::SECP256K1,
            Curve::Prime256v1 => Nid::X9_62_PRIME256V1,
        }
    }

    /// The curve's OpenSSL name, as the command line takes it.
    pub fn name(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "secp256k1",
            Curve::Prime256v1 => "prime256v1",
        }
    }

    /// The curve with OpenSSL identifier `nid`, if it is one of ours.
    pub fn from_nid(nid: Nid) -> Option<Curve> {
        match nid {
            Nid::SECP256K1 => Some(Curve::Secp256k1),
            Nid::X9_62_PRIME256V1 => Some(Curve::Prime256v1),
            _ => None,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A curve name that is not `secp256k1` or `prime256v1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown curve `{0}`: expected secp256k1 or prime256v1")]
pub struct UnknownCurve(pub String);

impl FromStr for Curve {
    type Err = UnknownCurve;

    /// Accepts the OpenSSL names and, for P-256, its other common spellings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "secp256k1" => Ok(Curve::Secp256k1),
            "prime256v1" | "p-256" | "p256" | "secp256r1" => Ok(Curve::Prime256v1),
            _ => Err(UnknownCurve(s.to_owned())),
        }
    }
}

/// A chain CA and one agency CA under it, able to issue node certificates.
pub struct NetworkCa {
    curve: Curve,
    ca_key: PKey<Private>,
    ca_cert: X509,
    agency_key: PKey<Private>,
    agency_cert: X509,
}

impl fmt::Debug for NetworkCa {
    // Keys are left out so they never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkCa")
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

/// A freshly issued node certificate and key, in memory.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The node's name, also its certificate's common name (e.g. `node0`).
    pub name: String,
    /// The node ID of the certificate.
    pub node_id: NodeId,
    /// `node.crt`: the node certificate followed by the agency certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// `node.key`: the node's private key, PKCS#8 PEM.
    pub key_pem: Vec<u8>,
    /// `ca.crt`: the chain CA certificate, PEM.
    pub ca_pem: Vec<u8>,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("name", &self.name)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A node whose files were written by [`generate_node_files`] or [`NetworkCa::write_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedNode {
    /// The node's name, e.g. `node0`.
    pub name: String,
    /// The node's directory; its files are in `conf/` below it.
    pub dir: PathBuf,
    /// The node ID of its certificate.
    pub node_id: NodeId,
}

impl GeneratedNode {
    /// `dir/conf/ca.crt`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("conf").join("ca.crt")
    }

    /// `dir/conf/node.crt`.
    pub fn node_cert(&self) -> PathBuf {
        self.dir.join("conf").join("node.crt")
    }

    /// `dir/conf/node.key`.
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("conf").join("node.key")
    }

    /// Loads and checks the node's identity from its files.
    pub fn load_identity(&self) -> Result<Identity, IdentityError> {
        Identity::load(&self.ca_cert(), &self.node_cert(), &self.node_key())
    }
}

impl NetworkCa {
    /// Generates a chain CA (`CN=chain-ca`) and an agency CA (`CN=agency`) on `curve`.
    pub fn generate(curve: Curve) -> Result<NetworkCa, IdentityError> {
        let ca_key = new_key(curve).map_err(ossl("generate the chain CA key"))?;
        let ca_cert = build_cert(
            &Subject {
                cn: "chain-ca",
                ou: None,
            },
            &ca_key,
            None,
            Role::RootCa,
        )
        .map_err(ossl("build the chain CA certificate"))?;
        let agency_key = new_key(curve).map_err(ossl("generate the agency key"))?;
        let agency_cert = build_cert(
            &Subject {
                cn: "agency",
                ou: None,
            },
            &agency_key,
            Some((&ca_cert, &ca_key)),
            Role::AgencyCa,
        )
        .map_err(ossl("build the agency certificate"))?;
        Ok(NetworkCa {
            curve,
            ca_key,
            ca_cert,
            agency_key,
            agency_cert,
        })
    }

    /// The curve of every key this CA makes.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The self-signed chain CA certificate.
    pub fn ca_cert(&self) -> &X509Ref {
        &self.ca_cert
    }

    /// The agency CA certificate, signed by the chain CA.
    pub fn agency_cert(&self) -> &X509Ref {
        &self.agency_cert
    }

    /// Issues a node certificate with common name `name`, signed by the agency.
    pub fn issue_node(&self, name: &str) -> Result<NodeCredentials, IdentityError> {
        if name.is_empty() || name.len() > 64 {
            return Err(IdentityError::Invalid(format!(
                "node name `{name}` must be 1 to 64 bytes (it becomes the certificate's CN)"
            )));
        }
        let what = |step: &str| format!("{step} for node `{name}`");
        let key = new_key(self.curve).map_err(ossl(&what("generate the key")))?;
        let cert = build_cert(
            &Subject {
                cn: name,
                ou: Some("agency"),
            },
            &key,
            Some((&self.agency_cert, &self.agency_key)),
            Role::Node,
        )
        .map_err(ossl(&what("build the certificate")))?;
        let node_id = node_id_of_cert(&cert)?;
        let mut cert_pem = cert
            .to_pem()
            .map_err(ossl(&what("encode the certificate")))?;
        cert_pem.extend(
            self.agency_cert
                .to_pem()
                .map_err(ossl("encode the agency certificate"))?,
        );
        Ok(NodeCredentials {
            name: name.to_owned(),
            node_id,
            cert_pem,
            key_pem: key
                .private_key_to_pem_pkcs8()
                .map_err(ossl(&what("encode the key")))?,
            ca_pem: self.ca_pem()?,
        })
    }

    /// Writes `dir/ca/{ca.crt,ca.key}` and `dir/agency/{agency.crt,agency.key}`; the keys with
    /// mode 0600 on unix.
    pub fn write_ca(&self, dir: &Path) -> Result<(), IdentityError> {
        let ca_dir = dir.join("ca");
        create_dir(&ca_dir)?;
        write_file(&ca_dir.join("ca.crt"), &self.ca_pem()?, false)?;
        let ca_key = self
            .ca_key
            .private_key_to_pem_pkcs8()
            .map_err(ossl("encode the chain CA key"))?;
        write_file(&ca_dir.join("ca.key"), &ca_key, true)?;

        let agency_dir = dir.join("agency");
        create_dir(&agency_dir)?;
        let agency_pem = self
            .agency_cert
            .to_pem()
            .map_err(ossl("encode the agency certificate"))?;
        write_file(&agency_dir.join("agency.crt"), &agency_pem, false)?;
        let agency_key = self
            .agency_key
            .private_key_to_pem_pkcs8()
            .map_err(ossl("encode the agency key"))?;
        write_file(&agency_dir.join("agency.key"), &agency_key, true)
    }

    /// Issues node `name` and writes `dir/name/conf/{ca.crt,node.crt,node.key}`.
    pub fn write_node(&self, dir: &Path, name: &str) -> Result<GeneratedNode, IdentityError> {
        let creds = self.issue_node(name)?;
        let node_dir = dir.join(name);
        creds.write_conf(&node_dir.join("conf"))?;
        Ok(GeneratedNode {
            name: creds.name,
            dir: node_dir,
            node_id: creds.node_id,
        })
    }

    fn ca_pem(&self) -> Result<Vec<u8>, IdentityError> {
        self.ca_cert
            .to_pem()
            .map_err(ossl("encode the chain CA certificate"))
    }
}

impl NodeCredentials {
    /// Writes `conf_dir/{ca.crt,node.crt,node.key}`, creating `conf_dir`; the key with mode
    /// 0600 on unix.
    pub fn write_conf(&self, conf_dir: &Path) -> Result<(), IdentityError> {
        create_dir(conf_dir)?;
        write_file(&conf_dir.join("ca.crt"), &self.ca_pem, false)?;
        write_file(&conf_dir.join("node.crt"), &self.cert_pem, false)?;
        write_file(&conf_dir.join("node.key"), &self.key_pem, true)
    }

    /// The checked identity, straight from memory. Errors name the files `write_conf` would
    /// write, prefixed with `(generated)`.
    pub fn identity(&self) -> Result<Identity, IdentityError> {
        let name = |f: &str| PathBuf::from(format!("(generated) {}/conf/{f}", self.name));
        Identity::from_sources(
            Source {
                name: &name("ca.crt"),
                data: &self.ca_pem,
            },
            Source {
                name: &name("node.crt"),
                data: &self.cert_pem,
            },
            Source {
                name: &name("node.key"),
                data: &self.key_pem,
            },
        )
    }
}

/// Generates a network of `n` nodes on `curve` under `dir`: `dir/ca/{ca.crt,ca.key}`,
/// `dir/agency/{agency.crt,agency.key}` and `dir/nodeK/conf/{ca.crt,node.crt,node.key}` for K
/// in `0..n`. Existing files are overwritten. Returns the nodes in order.
pub fn generate_node_files(
    dir: &Path,
    n: usize,
    curve: Curve,
) -> Result<Vec<GeneratedNode>, IdentityError> {
    if n == 0 {
        return Err(IdentityError::Invalid(
            "a network needs at least one node".into(),
        ));
    }
    let ca = NetworkCa::generate(curve)?;
    ca.write_ca(dir)?;
    (0..n)
        .map(|k| ca.write_node(dir, &format!("node{k}")))
        .collect()
}

/// Which kind of certificate [`build_cert`] makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    RootCa,
    AgencyCa,
    Node,
}

struct Subject<'a> {
    cn: &'a str,
    ou: Option<&'a str>,
}

fn ossl(what: &str) -> impl Fn(ErrorStack) -> IdentityError + '_ {
    move |source| IdentityError::OpenSsl {
        what: format!("cannot {what}"),
        source,
    }
}

fn new_key(curve: Curve) -> Result<PKey<Private>, ErrorStack> {
    // A group made from a curve name is encoded by name (OPENSSL_EC_NAMED_CURVE is the
    // default since 1.1.0), which is what every TLS stack expects in certificates.
    let group = EcGroup::from_curve_name(curve.nid())?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// Builds and signs one X.509 v3 certificate; `issuer` is `None` for the self-signed root.
fn build_cert(
    subject: &Subject<'_>,
    key: &PKeyRef<Private>,
    issuer: Option<(&X509Ref, &PKeyRef<Private>)>,
    role: Role,
) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, subject.cn)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, ORGANISATION)?;
    if let Some(ou) = subject.ou {
        name.append_entry_by_nid(Nid::ORGANIZATIONALUNITNAME, ou)?;
    }
    let name = name.build();

    let mut b = X509Builder::new()?;
    // The version field is zero-based: 2 means X.509 v3, needed for extensions.
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    // 128 random bits with the top bit set: never zero, always the same length.
    serial.rand(128, MsbOption::ONE, false)?;
    b.set_serial_number(&*serial.to_asn1_integer()?)?;
    b.set_subject_name(&name)?;
    match issuer {
        Some((cert, _)) => b.set_issuer_name(cert.subject_name())?,
        None => b.set_issuer_name(&name)?,
    }
    b.set_pubkey(key)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let not_before = now.saturating_sub(BACKDATE_SECS);
    // Only a platform whose time_t cannot hold today's date fails the conversion; starting
    // validity now is then the closest correct value.
    let not_before = match not_before.try_into() {
        Ok(t) => Asn1Time::from_unix(t)?,
        Err(_) => Asn1Time::days_from_now(0)?,
    };
    b.set_not_before(&not_before)?;
    b.set_not_after(&*Asn1Time::days_from_now(VALIDITY_DAYS)?)?;

    match role {
        Role::RootCa => {
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            )?;
        }
        Role::AgencyCa => {
            b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            )?;
        }
        Role::Node => {
            b.append_extension(BasicConstraints::new().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .digital_signature()
                    .non_repudiation()
                    .key_encipherment()
                    .build()?,
            )?;
        }
    }
    let issuer_cert = issuer.map(|(c, _)| c);
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer_cert, None))?;
    b.append_extension(ski)?;
    // Added after the SKI: for the self-signed root the "issuer" is the certificate being
    // built, and its key ID is read from the SKI just appended.
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(issuer_cert, None))?;
    b.append_extension(aki)?;

    let signing_key = issuer.map(|(_, k)| k).unwrap_or(key);
    b.sign(signing_key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::CreateDir {
        dir: dir.to_owned(),
        source,
    })
}

/// Writes a file; `secret` files get mode 0600 on unix, also when they already existed with a
/// looser mode.
fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), IdentityError> {
    let err = |source| IdentityError::Write {
        file: path.to_owned(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        // `mode` only applies when the file is created; tighten a pre-existing one before
        // the key goes in.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509KeyUsage;

    #[test]
    fn curve_names_round_trip() {
        for c in [Curve::Secp256k1, Curve::Prime256v1] {
            assert_eq!(c.to_string().parse::<Curve>().unwrap(), c);
            assert_eq!(Curve::from_nid(c.nid()), Some(c));
        }
        assert_eq!("P-256".parse::<Curve>().unwrap(), Curve::Prime256v1);
        assert!("ed25519"
            .parse::<Curve>()
            .unwrap_err()
            .to_string()
            .contains("ed25519"));
        assert_eq!(Curve::default(), Curve::Secp256k1);
    }

    #[test]
    fn curve_names_are_the_openssl_names_and_parse_back() {
        for c in [Curve::Secp256k1, Curve::Prime256v1] {
            assert_eq!(c.name().parse::<Curve>(), Ok(c));
        }
        assert!("ed25519".parse::<Curve>().is_err());
    }

    fn check_common(cert: &X509Ref, curve: Curve) {
        assert_eq!(cert.version(), 2);
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::ECDSA_WITH_SHA256
        );
        let serial = cert.serial_number().to_bn().unwrap();
        assert_eq!(serial.num_bits(), 128);
        let key = cert.public_key().unwrap();
        assert_eq!(
            key.ec_key().unwrap().group().curve_name(),
            Some(curve.nid())
        );
        assert!(cert.subject_key_id().is_some());
        assert!(cert.authority_key_id().is_some());
        let now = Asn1Time::days_from_now(0).unwrap();
        let d = cert.not_before().diff(&now).unwrap();
        assert!(d.days == 1 || (d.days == 0 && d.secs > 86_000), "{d:?}");
        let d = now.diff(cert.not_after()).unwrap();
        assert!((3649..=3650).contains(&d.days), "{d:?}");
    }

    #[test]
    fn generated_chain_has_the_build_chain_shape() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let ca = NetworkCa::generate(curve).unwrap();
            check_common(ca.ca_cert(), curve);
            check_common(ca.agency_cert(), curve);
            assert_eq!(
                ca.ca_cert().key_usage(),
                Some(X509KeyUsage::KEY_CERT_SIGN | X509KeyUsage::CRL_SIGN)
            );
            assert_eq!(ca.agency_cert().pathlen(), Some(0));
            assert_eq!(
                ca.agency_cert().authority_key_id().unwrap().as_slice(),
                ca.ca_cert().subject_key_id().unwrap().as_slice()
            );
            assert!(ca
                .agency_cert()
                .verify(&ca.ca_cert().public_key().unwrap())
                .unwrap());

            let node = ca.issue_node("node7").unwrap();
            let certs = X509::stack_from_pem(&node.cert_pem).unwrap();
            assert_eq!(certs.len(), 2, "node.crt is leaf + agency");
            let leaf = &certs[0];
            check_common(leaf, curve);
            assert_eq!(
                leaf.key_usage(),
                Some(
                    X509KeyUsage::DIGITAL_SIGNATURE
                        | X509KeyUsage::NON_REPUDIATION
                        | X509KeyUsage::KEY_ENCIPHERMENT
                )
            );
            assert_eq!(leaf.pathlen(), None);
            assert_eq!(
                leaf.authority_key_id().unwrap().as_slice(),
                ca.agency_cert().subject_key_id().unwrap().as_slice()
            );
            assert_eq!(
                super::super::subject_of(leaf),
                "CN=node7, O=chainmesh, OU=agency"
            );
            assert!(
                String::from_utf8_lossy(&node.key_pem).starts_with("-----BEGIN PRIVATE KEY-----")
            );
            let id = node.identity().unwrap();
            assert_eq!(id.node_id, node.node_id);
            assert_eq!(id.chain.len(), 2);
        }
    }

    #[test]
    fn serials_differ() {
        let ca = NetworkCa::generate(Curve::Prime256v1).unwrap();
        let a = X509::stack_from_pem(&ca.issue_node("a").unwrap().cert_pem).unwrap();
        let b = X509::stack_from_pem(&ca.issue_node("b").unwrap().cert_pem).unwrap();
        assert_ne!(
            a[0].serial_number().to_bn().unwrap(),
            b[0].serial_number().to_bn().unwrap()
        );
    }

    #[test]
    fn writes_the_layout_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = generate_node_files(dir.path(), 2, Curve::Secp256k1).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].dir, dir.path().join("node1"));
        for f in [
            "ca/ca.crt",
            "ca/ca.key",
            "agency/agency.crt",
            "agency/agency.key",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        for n in &nodes {
            let id = n.load_identity().unwrap();
            assert_eq!(id.node_id, n.node_id);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca/ca.key", "agency/agency.key", "node0/conf/node.key"] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        assert!(generate_node_files(dir.path(), 0, Curve::Secp256k1).is_err());
    }

    #[test]
    fn bad_node_names_are_refused() {
        let ca = NetworkCa::generate(Curve::Prime256v1).unwrap();
        assert!(ca.issue_node("").is_err());
        assert!(ca.issue_node(&"x".repeat(65)).is_err());
    }

    #[test]
    fn issued_node_certificates_are_leaves_and_the_cas_are_not() {
        use crate::identity::{check_leaf, LeafProblem};
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let ca = NetworkCa::generate(curve).unwrap();
            let node = ca.issue_node("n").unwrap();
            let leaf = X509::stack_from_pem(&node.cert_pem).unwrap().remove(0);
            assert_eq!(check_leaf(&leaf), Ok(()));
            assert_eq!(check_leaf(ca.ca_cert()), Err(LeafProblem::Ca));
            assert_eq!(check_leaf(ca.agency_cert()), Err(LeafProblem::Ca));
        }
    }

    #[test]
    fn leaves_without_the_extensions_are_refused_at_load_naming_the_file() {
        use crate::identity::{check_leaf, LeafProblem};
        let ca = NetworkCa::generate(Curve::Secp256k1).unwrap();
        let key = new_key(Curve::Secp256k1).unwrap();
        let subject = Subject {
            cn: "odd",
            ou: None,
        };
        let issuer = Some((&*ca.agency_cert, &*ca.agency_key));
        // A node certificate built as a CA, and one with every extension but the two.
        let as_ca = build_cert(&subject, &key, issuer, Role::AgencyCa).unwrap();
        assert_eq!(check_leaf(&as_ca), Err(LeafProblem::Ca));
        // The same certificate as `as_ca` but with exactly the extensions given.
        let with_only = |extensions: Vec<openssl::x509::X509Extension>| {
            let mut b = openssl::x509::X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            b.set_subject_name(as_ca.subject_name()).unwrap();
            b.set_issuer_name(ca.agency_cert.subject_name()).unwrap();
            b.set_pubkey(&key).unwrap();
            b.set_not_before(as_ca.not_before()).unwrap();
            b.set_not_after(as_ca.not_after()).unwrap();
            for e in extensions {
                b.append_extension(e).unwrap();
            }
            b.sign(&ca.agency_key, MessageDigest::sha256()).unwrap();
            b.build()
        };
        let bare = with_only(Vec::new());
        assert_eq!(check_leaf(&bare), Err(LeafProblem::NoBasicConstraints));
        let no_signing = with_only(vec![
            BasicConstraints::new().build().unwrap(),
            KeyUsage::new().key_encipherment().build().unwrap(),
        ]);
        assert_eq!(
            check_leaf(&no_signing),
            Err(LeafProblem::NoDigitalSignature)
        );

        let key_pem = key.private_key_to_pem_pkcs8().unwrap();
        let ca_pem = ca.ca_pem().unwrap();
        for cert in [as_ca, bare] {
            let mut pem = cert.to_pem().unwrap();
            pem.extend(ca.agency_cert.to_pem().unwrap());
            let e = Identity::from_sources(
                Source {
                    name: Path::new("ca.crt"),
                    data: &ca_pem,
                },
                Source {
                    name: Path::new("odd-node.crt"),
                    data: &pem,
                },
                Source {
                    name: Path::new("node.key"),
                    data: &key_pem,
                },
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(
                e.contains("odd-node.crt") && e.contains("not a node certificate"),
                "{e}"
            );
        }
    }
}
