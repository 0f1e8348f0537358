//! SDK certificates, laid out as FISCO BCOS's `build_chain.sh` lays them out: `sdk/ca.crt`
//! (the chain CA), `sdk/sdk.crt` (the SDK leaf, then the agency and the chain CA) and
//! `sdk/sdk.key`. FISCO's SDKs load exactly these three files, and a node accepts the leaf
//! because it chains to the same CA through the same agency as the nodes themselves.

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::{build_cert, create_dir, new_key, ossl, write_file, NetworkCa, Role, Subject};
use crate::identity::certs::{check_not_encrypted, parse_certs, read_file, Source};
use crate::identity::{Curve, Identity, IdentityError};

/// The chain CA certificate of an SDK directory.
pub const SDK_CA_FILE: &str = "ca.crt";
/// The SDK certificate chain (leaf, agency, chain CA) of an SDK directory.
pub const SDK_CERT_FILE: &str = "sdk.crt";
/// The SDK private key of an SDK directory.
pub const SDK_KEY_FILE: &str = "sdk.key";

/// A freshly issued SDK certificate and key, in memory.
#[derive(Clone)]
pub struct SdkCredentials {
    /// `sdk.crt`: the SDK certificate, the agency certificate and the chain CA, PEM.
    pub cert_pem: Vec<u8>,
    /// `sdk.key`: the SDK's private key, PKCS#8 PEM.
    pub key_pem: Vec<u8>,
    /// `ca.crt`: the chain CA certificate, PEM.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for SdkCredentials {
    // The key is left out so it never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkCredentials").finish_non_exhaustive()
    }
}

impl NetworkCa {
    /// Loads the chain CA and agency that [`write_ca`](NetworkCa::write_ca) wrote under `dir`:
    /// `dir/ca/{ca.crt,ca.key}` and `dir/agency/{agency.crt,agency.key}`. Fails, naming the
    /// file, when one is missing or unreadable, a key is not its certificate's, the agency is
    /// not signed by the CA, or the keys are on different or unsupported curves.
    pub fn load(dir: &Path) -> Result<NetworkCa, IdentityError> {
        let ca_crt = dir.join("ca").join("ca.crt");
        let agency_crt = dir.join("agency").join("agency.crt");
        let (ca_cert, ca_key) = load_pair(&ca_crt, &dir.join("ca").join("ca.key"))?;
        let (agency_cert, agency_key) =
            load_pair(&agency_crt, &dir.join("agency").join("agency.key"))?;
        let signed = agency_cert
            .verify(&ca_key)
            .map_err(ossl("check the agency certificate's signature"))?;
        if !signed {
            crate::identity::keys::discard_thread_errors();
            return Err(IdentityError::Content {
                file: agency_crt,
                problem: format!("is not signed by the chain CA in {}", ca_crt.display()),
            });
        }
        let curve = curve_of(&ca_crt, &ca_key)?;
        if curve_of(&agency_crt, &agency_key)? != curve {
            return Err(IdentityError::Content {
                file: agency_crt,
                problem: format!("its key is not on the chain CA's curve ({curve})"),
            });
        }
        Ok(NetworkCa {
            curve,
            ca_key,
            ca_cert,
            agency_key,
            agency_cert,
        })
    }

    /// Issues an SDK certificate (`CN=sdk`) signed by the agency, on the network's curve,
    /// with the extensions of a node certificate (CA:FALSE; nonRepudiation, digitalSignature,
    /// keyEncipherment), as `build_chain.sh` makes SDK certificates.
    pub fn issue_sdk(&self) -> Result<SdkCredentials, IdentityError> {
        let key = new_key(self.curve).map_err(ossl("generate the SDK key"))?;
        let cert = build_cert(
            &Subject {
                cn: "sdk",
                ou: Some("agency"),
            },
            &key,
            Some((&self.agency_cert, &self.agency_key)),
            Role::Node,
        )
        .map_err(ossl("build the SDK certificate"))?;
        let ca_pem = self.ca_pem()?;
        let mut cert_pem = cert.to_pem().map_err(ossl("encode the SDK certificate"))?;
        cert_pem.extend(
            self.agency_cert
                .to_pem()
                .map_err(ossl("encode the agency certificate"))?,
        );
        cert_pem.extend_from_slice(&ca_pem);
        Ok(SdkCredentials {
            cert_pem,
            key_pem: key
                .private_key_to_pem_pkcs8()
                .map_err(ossl("encode the SDK key"))?,
            ca_pem,
        })
    }

    /// Issues an SDK certificate and writes `dir/{ca.crt,sdk.crt,sdk.key}`, creating `dir`.
    pub fn write_sdk(&self, dir: &Path) -> Result<SdkCredentials, IdentityError> {
        let creds = self.issue_sdk()?;
        creds.write(dir)?;
        Ok(creds)
    }
}

impl SdkCredentials {
    /// Writes `dir/{ca.crt,sdk.crt,sdk.key}`, creating `dir`; the key with mode 0600 on unix.
    pub fn write(&self, dir: &Path) -> Result<(), IdentityError> {
        create_dir(dir)?;
        write_file(&dir.join(SDK_CA_FILE), &self.ca_pem, false)?;
        write_file(&dir.join(SDK_CERT_FILE), &self.cert_pem, false)?;
        write_file(&dir.join(SDK_KEY_FILE), &self.key_pem, true)
    }

    /// The checked identity, straight from memory; errors name the files, prefixed with
    /// `(generated)`.
    pub fn identity(&self) -> Result<Identity, IdentityError> {
        let name = |f: &str| PathBuf::from(format!("(generated) sdk/{f}"));
        Identity::from_sources(
            Source {
                name: &name(SDK_CA_FILE),
                data: &self.ca_pem,
            },
            Source {
                name: &name(SDK_CERT_FILE),
                data: &self.cert_pem,
            },
            Source {
                name: &name(SDK_KEY_FILE),
                data: &self.key_pem,
            },
        )
    }
}

/// Loads and checks the SDK identity in `dir` (`ca.crt`, `sdk.crt`, `sdk.key`), with the
/// checks of [`Identity::load`]; errors name the file at fault.
pub fn load_sdk_identity(dir: &Path) -> Result<Identity, IdentityError> {
    Identity::load(
        &dir.join(SDK_CA_FILE),
        &dir.join(SDK_CERT_FILE),
        &dir.join(SDK_KEY_FILE),
    )
}

/// A certificate file's first certificate and the private key file that goes with it.
fn load_pair(cert_file: &Path, key_file: &Path) -> Result<(X509, PKey<Private>), IdentityError> {
    let data = read_file(cert_file)?;
    let cert = parse_certs(&Source {
        name: cert_file,
        data: &data,
    })?
    .swap_remove(0);
    let key_data = read_file(key_file)?;
    check_not_encrypted(key_file, &key_data)?;
    let key = PKey::private_key_from_pem(&key_data).map_err(|source| IdentityError::Parse {
        file: key_file.to_owned(),
        what: "PEM private key",
        source,
    })?;
    let public = cert.public_key().map_err(|source| IdentityError::Parse {
        file: cert_file.to_owned(),
        what: "the public key of the certificate",
        source,
    })?;
    if !public.public_eq(&key) {
        return Err(IdentityError::KeyMismatch {
            key_file: key_file.to_owned(),
            cert_file: cert_file.to_owned(),
        });
    }
    Ok((cert, key))
}

/// The curve of a CA key, which must be one generated keys can use.
fn curve_of(cert_file: &Path, key: &PKey<Private>) -> Result<Curve, IdentityError> {
    key.ec_key()
        .ok()
        .and_then(|k| k.group().curve_name())
        .and_then(Curve::from_nid)
        .ok_or_else(|| IdentityError::Content {
            file: cert_file.to_owned(),
            problem: "its key is not an EC key on secp256k1 or prime256v1".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509KeyUsage;

    #[test]
    fn sdk_chain_is_leaf_agency_ca_and_verifies_against_the_ca() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let ca = NetworkCa::generate(curve).unwrap();
            let sdk = ca.issue_sdk().unwrap();
            let certs = X509::stack_from_pem(&sdk.cert_pem).unwrap();
            assert_eq!(certs.len(), 3, "sdk.crt is leaf + agency + CA");
            assert_eq!(
                certs[1].to_der().unwrap(),
                ca.agency_cert().to_der().unwrap()
            );
            assert_eq!(certs[2].to_der().unwrap(), ca.ca_cert().to_der().unwrap());
            let leaf = &certs[0];
            assert_eq!(
                leaf.public_key()
                    .unwrap()
                    .ec_key()
                    .unwrap()
                    .group()
                    .curve_name(),
                Some(curve.nid())
            );
            assert_eq!(leaf.pathlen(), None);
            assert_eq!(
                leaf.key_usage(),
                Some(
                    X509KeyUsage::DIGITAL_SIGNATURE
                        | X509KeyUsage::NON_REPUDIATION
                        | X509KeyUsage::KEY_ENCIPHERMENT
                )
            );
            assert_eq!(crate::identity::check_leaf(leaf), Ok(()));
            assert_eq!(
                crate::identity::subject_of(leaf),
                "CN=sdk, O=chainmesh, OU=agency"
            );
            // Same issuer DN as the nodes': FISCO's check_cert_issuer compares them.
            let node = ca.issue_node("node0").unwrap();
            let node_leaf = X509::stack_from_pem(&node.cert_pem).unwrap().remove(0);
            assert_eq!(
                leaf.issuer_name().to_der().unwrap(),
                node_leaf.issuer_name().to_der().unwrap()
            );
            // Identity checks the key against the leaf and the chain against ca.crt.
            let id = sdk.identity().unwrap();
            assert_eq!(id.chain.len(), 3);
        }
    }

    #[test]
    fn an_sdk_directory_loads_back_from_files_and_from_a_reloaded_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = NetworkCa::generate(Curve::Secp256k1).unwrap();
        ca.write_ca(dir.path()).unwrap();
        let loaded = NetworkCa::load(dir.path()).unwrap();
        assert_eq!(loaded.curve(), Curve::Secp256k1);
        let sdk_dir = dir.path().join("sdk");
        loaded.write_sdk(&sdk_dir).unwrap();
        let id = load_sdk_identity(&sdk_dir).unwrap();
        assert_eq!(
            id.ca[0].to_der().unwrap(),
            ca.ca_cert().to_der().unwrap(),
            "issued under the original CA"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sdk_dir.join(SDK_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn loading_a_ca_names_the_missing_or_mismatched_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = NetworkCa::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("ca.crt"), "{e}");

        let ca = NetworkCa::generate(Curve::Prime256v1).unwrap();
        ca.write_ca(dir.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        NetworkCa::generate(Curve::Prime256v1)
            .unwrap()
            .write_ca(other.path())
            .unwrap();
        // An agency key of another network.
        std::fs::copy(
            other.path().join("agency/agency.key"),
            dir.path().join("agency/agency.key"),
        )
        .unwrap();
        let e = NetworkCa::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("agency.key") && e.contains("does not match"),
            "{e}"
        );
        // An agency of another network, with its own key.
        std::fs::copy(
            other.path().join("agency/agency.crt"),
            dir.path().join("agency/agency.crt"),
        )
        .unwrap();
        let e = NetworkCa::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("agency.crt") && e.contains("not signed"), "{e}");

        let sdk_dir = dir.path().join("nothing");
        let e = load_sdk_identity(&sdk_dir).unwrap_err().to_string();
        assert!(e.contains("ca.crt"), "{e}");
    }
}
