//! Development certificates, made with the openssl crate: a CA, a server
//! certificate for localhost and a hospital client certificate whose
//! Organization (O) names the hospital's GenomeGate organization.
//!
//! Production certificates come from the operator's PKI; see `certs/README.md`.

use crate::keyfile::write_private;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};
use std::path::{Path, PathBuf};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

#[derive(Debug, Clone)]
pub struct ClientCertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

type SslResult<T> = Result<T, openssl::error::ErrorStack>;

fn new_key() -> SslResult<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn name(common_name: &str, organization: Option<&str>) -> SslResult<X509Name> {
    let mut builder = X509NameBuilder::new()?;
    builder.append_entry_by_nid(Nid::COUNTRYNAME, "JP")?;
    if let Some(org) = organization {
        builder.append_entry_by_nid(Nid::ORGANIZATIONNAME, org)?;
    }
    builder.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(builder.build())
}

fn base_builder(subject: &X509Name, key: &PKey<Private>, days: u32) -> SslResult<X509Builder> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(subject)?;
    builder.set_pubkey(key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(days)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

/// A self-signed development CA.
pub fn make_ca() -> SslResult<(X509, PKey<Private>)> {
    let key = new_key()?;
    let subject = name("GenomeGate Development CA", Some("GenomeGate development"))?;
    let mut builder = base_builder(&subject, &key, 825)?;
    builder.set_issuer_name(&subject)?;
    builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// A server certificate for `hosts` (DNS names or IP addresses).
pub fn make_server(
    ca: &X509,
    ca_key: &PKey<Private>,
    hosts: &[&str],
) -> SslResult<(X509, PKey<Private>)> {
    let key = new_key()?;
    let mut builder = base_builder(
        &name(hosts.first().copied().unwrap_or("localhost"), None)?,
        &key,
        397,
    )?;
    builder.set_issuer_name(ca.subject_name())?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_agreement()
            .build()?,
    )?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for host in hosts {
        if host.parse::<std::net::IpAddr>().is_ok() {
            san.ip(host);
        } else {
            san.dns(host);
        }
    }
    let san = san.build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(san)?;
    builder.sign(ca_key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// A client certificate for a hospital system of `org`. The service maps the
/// certificate's Organization (O) to the caller's organization.
pub fn make_client(
    ca: &X509,
    ca_key: &PKey<Private>,
    org: &str,
) -> SslResult<(X509, PKey<Private>)> {
    let key = new_key()?;
    let mut builder = base_builder(&name(&format!("{org} EHR system"), Some(org))?, &key, 397)?;
    builder.set_issuer_name(ca.subject_name())?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    builder.sign(ca_key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// The organization a client certificate speaks for: its subject's O.
pub fn organization_of(cert: &openssl::x509::X509Ref) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::ORGANIZATIONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
}

fn write_pair(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    cert: &X509,
    key: &PKey<Private>,
) -> Result<(), String> {
    let err = |e: openssl::error::ErrorStack| e.to_string();
    write_private(
        &dir.join(key_file),
        &key.private_key_to_pem_pkcs8().map_err(err)?,
    )?;
    std::fs::write(dir.join(cert_file), cert.to_pem().map_err(err)?)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(cert_file).display()))
}

/// Creates the development CA and a localhost server certificate in `dir`,
/// plus a client certificate for `hospital_org`. Refuses to overwrite.
pub fn generate_dev_set(dir: &Path, hospital_org: &str) -> Result<ClientCertPaths, String> {
    let err = |e: openssl::error::ErrorStack| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if dir.join(CA_CERT).exists() {
        return Err(format!(
            "{} already exists; remove the old development set first",
            dir.join(CA_CERT).display()
        ));
    }
    let (ca, ca_key) = make_ca().map_err(err)?;
    write_pair(dir, CA_CERT, CA_KEY, &ca, &ca_key)?;
    let (server, server_key) =
        make_server(&ca, &ca_key, &["localhost", "127.0.0.1", "::1"]).map_err(err)?;
    write_pair(dir, SERVER_CERT, SERVER_KEY, &server, &server_key)?;
    issue_client(dir, hospital_org)
}

/// Issues a client certificate for `org` from the development CA in `dir`.
pub fn issue_client(dir: &Path, org: &str) -> Result<ClientCertPaths, String> {
    let err = |e: openssl::error::ErrorStack| e.to_string();
    if org.is_empty()
        || !org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err("organization names for certificates use a-z, 0-9, `-`, `_` and `.`".into());
    }
    let ca = X509::from_pem(&std::fs::read(dir.join(CA_CERT)).map_err(|e| e.to_string())?)
        .map_err(err)?;
    let ca_key =
        PKey::private_key_from_pem(&std::fs::read(dir.join(CA_KEY)).map_err(|e| e.to_string())?)
            .map_err(err)?;
    let (cert, key) = make_client(&ca, &ca_key, org).map_err(err)?;
    let cert_file = format!("client-{org}.pem");
    let key_file = format!("client-{org}.key");
    write_pair(dir, &cert_file, &key_file, &cert, &key)?;
    Ok(ClientCertPaths {
        cert: dir.join(cert_file),
        key: dir.join(key_file),
    })
}

/// Development mode convenience: make the set if there is no server
/// certificate yet. Returns whether it created one.
pub fn ensure_dev_set(dir: &Path) -> Result<bool, String> {
    if dir.join(SERVER_CERT).exists() {
        return Ok(false);
    }
    generate_dev_set(dir, "hospital-a").map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_verifies_and_the_client_names_its_hospital() {
        let (ca, ca_key) = make_ca().unwrap();
        let (server, _) = make_server(&ca, &ca_key, &["localhost", "127.0.0.1"]).unwrap();
        let (client, _) = make_client(&ca, &ca_key, "hospital-a").unwrap();
        assert!(server.verify(&ca.public_key().unwrap()).unwrap());
        assert!(client.verify(&ca.public_key().unwrap()).unwrap());
        assert_eq!(organization_of(&client).as_deref(), Some("hospital-a"));
        let (other_ca, _) = make_ca().unwrap();
        assert!(!client.verify(&other_ca.public_key().unwrap()).unwrap());
    }
}
