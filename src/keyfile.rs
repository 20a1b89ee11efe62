//! Key files: base64 key material, optionally preceded by comment lines.
//! Files the service generates for development carry
//! [`DEV_KEY_MARKER`](crate::config::DEV_KEY_MARKER) in a comment, and
//! production mode refuses them.

use crate::config::DEV_KEY_MARKER;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretSlice;
use std::io::Write;
use std::path::Path;

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

pub fn read(path: &Path) -> Result<KeyFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let is_development = text.contains(DEV_KEY_MARKER);
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
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
