//! Key files: base64 key material, optionally preceded by comment lines,
//! or a PEM document (which is base64 between its boundary lines). Files
//! the service generates for development carry [`DEV_KEY_MARKER`] in a
//! comment, and production mode refuses them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretSlice;
use std::io::Write;
use std::path::Path;

/// Marks key material generated for local development; production mode
/// refuses any key file or JWKS that carries it.
pub const DEV_KEY_MARKER: &str = "GENOMEGATE DEVELOPMENT KEY";

pub struct KeyFile {
    pub material: SecretSlice<u8>,
    pub is_development: bool,
}

/// Writes `contents` readable by the owner only (mode 0600), creating parent
/// directories. Refuses to overwrite: key material is never replaced by
/// accident.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates a development key file with `bytes` of fresh random material.
pub fn create_development(path: &Path, purpose: &str, bytes: &[u8]) -> Result<(), String> {
    let text = format!(
        "# {DEV_KEY_MARKER}: {purpose}\n# Generated for local development. Never use in production.\n{}\n",
        STANDARD.encode(bytes)
    );
    write_private(path, text.as_bytes())
}

/// Creates a development key file holding a PKCS#8 private key as PEM
/// (`PRIVATE KEY`, RFC 7468), after the marker comment: standard tools
/// (openssl, JWT libraries) read it as it is, ignoring the text before the
/// boundary as RFC 7468 allows.
pub fn create_development_pem(path: &Path, purpose: &str, pkcs8_der: &[u8]) -> Result<(), String> {
    let encoded = STANDARD.encode(pkcs8_der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect();
    let text = format!(
        "# {DEV_KEY_MARKER}: {purpose}\n# Generated for local development. Never use in production.\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    write_private(path, text.as_bytes())
}

/// Reads a key file: comment lines and PEM boundary lines are skipped, the
/// rest is the base64 of the key material.
pub fn read(path: &Path) -> Result<KeyFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let is_development = text.contains(DEV_KEY_MARKER);
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let material = STANDARD.decode(body.trim()).map_err(|_| {
        format!(
            "key file {} does not hold base64 key material",
            path.display()
        )
    })?;
    Ok(KeyFile {
        material: SecretSlice::from(material),
        is_development,
    })
}

/// Fresh random bytes from the operating system.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .map_err(|_| "the operating system random source failed".to_owned())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_development_pem_key_reads_back_and_standard_tooling_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let pkcs8 = crate::ed25519::generate_pkcs8_v1().unwrap();
        create_development_pem(&path, "test", &pkcs8).unwrap();
        let read_back = read(&path).unwrap();
        assert!(read_back.is_development);
        assert_eq!(read_back.material.expose_secret(), pkcs8.as_slice());
        let signer =
            crate::ed25519::Ed25519Signer::from_pkcs8(pkcs8, "k".into(), "i".into()).unwrap();
        let text = std::fs::read(&path).unwrap();
        // OpenSSL and jsonwebtoken, as an operator's tooling would.
        let key = openssl::pkey::PKey::private_key_from_pem(&text).unwrap();
        assert_eq!(key.id(), openssl::pkey::Id::ED25519);
        let raw = key.raw_public_key().unwrap();
        assert_eq!(raw, signer.public_key(), "the same key pair");
        jsonwebtoken::EncodingKey::from_ed_pem(&text).unwrap();
    }

    #[test]
    fn development_keys_round_trip_marked_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/pseudonym.key");
        create_development(&path, "test", &[9; 32]).unwrap();
        let read_back = read(&path).unwrap();
        assert!(read_back.is_development);
        assert_eq!(read_back.material.expose_secret(), &[9; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(
            create_development(&path, "test", &[1; 32]).is_err(),
            "never overwrites"
        );
    }
}
