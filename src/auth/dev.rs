//! The development token signer behind `genomegate token`.
//!
//! An Ed25519 key generated on first use under the development directory,
//! with its public half published as a JWKS the server trusts in development
//! mode only. Production mode refuses this issuer and this key file.

pub use crate::ed25519::{Ed25519Signer, TokenClaims};

use crate::config::DEV_ISSUER;
use crate::keyfile;
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};

pub const SIGNING_KEY_FILE: &str = "dev-jwt-signing.key";
pub const JWKS_FILE: &str = "dev-jwks.json";

/// The development signer in `dir`, created on first use.
pub fn load_or_create(dir: &Path) -> Result<Ed25519Signer, String> {
    let key_path = dir.join(SIGNING_KEY_FILE);
    if !key_path.exists() {
        keyfile::create_development_pem(
            &key_path,
            "development JWT signing key (Ed25519 PKCS#8)",
            &crate::ed25519::generate_pkcs8_v1()?,
        )?;
    }
    let file = keyfile::read(&key_path)?;
    let pkcs8 = file.material.expose_secret().to_vec();
    let fingerprint =
        hex::encode(&ring::digest::digest(&ring::digest::SHA256, &pkcs8).as_ref()[..6]);
    let signer =
        Ed25519Signer::from_pkcs8(pkcs8, format!("dev-{fingerprint}"), DEV_ISSUER.to_owned())?;
    let jwks_path = jwks_path(dir);
    std::fs::write(&jwks_path, signer.jwks_json())
        .map_err(|e| format!("cannot write {}: {e}", jwks_path.display()))?;
    Ok(signer)
}

pub fn jwks_path(dir: &Path) -> PathBuf {
    dir.join(JWKS_FILE)
}
