//! Test certificate authority and the server certificate Prosody presents.
//!
//! Clients trust only our CA (added as an extra root), so the server certificate must
//! carry SAN entries for every name clients may verify and `CA:FALSE`: rustls rejects
//! CA certificates used as end-entity certificates.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::ServerError;

/// Where the generated PEM files live and the CA that clients must trust.
pub(crate) struct Certificates {
    /// PEM of the test CA, handed to clients as an extra root.
    pub(crate) ca_pem: String,
    /// The test CA certificate file.
    pub(crate) ca_path: PathBuf,
    /// The server certificate chain file Prosody loads.
    pub(crate) cert_path: PathBuf,
    /// The server private key file Prosody loads.
    pub(crate) key_path: PathBuf,
}

/// A certificate authority that signs server certificates.
pub(crate) type Ca = CertifiedIssuer<'static, KeyPair>;

/// A fresh test CA; federated servers share one, so each verifies the other's certificate.
pub(crate) fn test_ca() -> Result<Ca, ServerError> {
    new_ca("gridmuc test CA")
}

/// Test certificates live 30 days: rcgen's default end (year 4096) makes ejabberd 23.01's
/// expiry timer (`erlang:start_timer`) fail with badarg, which crashes its rooms.
fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
}

fn new_ca(common_name: &str) -> Result<Ca, ServerError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    validity(&mut params);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// Writes the test CA `ca` and a server certificate for `names` into `dir`.
///
/// With `untrusted`, the server certificate is signed by a second, throw-away CA instead,
/// so that clients (and peer servers) trusting only the test CA must fail the handshake.
pub(crate) fn generate(
    dir: &Path,
    ca: &Ca,
    names: &[String],
    untrusted: bool,
) -> Result<Certificates, ServerError> {
    let rogue;
    let signer = if untrusted {
        rogue = new_ca("gridmuc untrusted CA")?;
        &rogue
    } else {
        ca
    };

    let mut params = CertificateParams::new(names.to_vec())?;
    validity(&mut params);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    params.distinguished_name = dn;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, signer)?;

    let certs = Certificates {
        ca_pem: ca.pem(),
        ca_path: dir.join("ca.pem"),
        cert_path: dir.join("server.crt"),
        key_path: dir.join("server.key"),
    };
    let write = |path: &Path, contents: &str| {
        fs::write(path, contents).map_err(|source| ServerError::Io {
            context: format!("writing {}", path.display()),
            source,
        })
    };
    write(&certs.ca_path, &certs.ca_pem)?;
    write(&certs.cert_path, &format!("{}{}", cert.pem(), signer.pem()))?;
    write(&certs.key_path, &key.serialize_pem())?;
    Ok(certs)
}
