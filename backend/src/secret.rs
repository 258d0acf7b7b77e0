//! Secrets and the values derived from them: wrapped so that `Debug` and
//! `Display` never print them, generated from the OS random source, hashed
//! for storage.

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// A value that must never reach a log line or a page.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The wrapped value; call only where it is really used.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A random string of `len` ASCII letters and digits from the OS generator.
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Lower-case hex SHA-256 of `value`: how tokens and session ids are stored.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn random_strings_differ() {
        let a = random_alphanumeric(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_alphanumeric(32));
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}

/// The server's secret key: signs and encrypts cookies today, encrypts
/// stored credentials later. Purpose-specific keys are derived from it so a
/// key used for one purpose is never reused for another.
#[derive(Clone)]
pub struct SecretKey(Secret<Vec<u8>>);

/// Shortest accepted `ROLLWAY_SECRET_KEY`.
pub const MIN_SECRET_KEY_LEN: usize = 32;

impl SecretKey {
    pub fn new(material: &[u8]) -> Self {
        Self(Secret::new(material.to_vec()))
    }

    /// 64 bytes derived for `purpose` (HKDF-SHA256).
    pub fn derive_64(&self, purpose: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        self.derive_into(purpose, &mut out);
        out
    }

    fn derive_into(&self, purpose: &str, out: &mut [u8]) {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"rollway-secret-key-v1"), self.0.expose());
        // Only fails for outputs longer than 255 × 32 bytes; ours are ≤ 64.
        let _ = hk.expand(purpose.as_bytes(), out);
    }

    /// The AES-256-GCM key for stored credentials.
    pub fn sealer(&self) -> Sealer {
        let mut key = [0u8; 32];
        self.derive_into("stored-credentials", &mut key);
        Sealer(Secret::new(key))
    }

    /// The HMAC-SHA256 key of the audit chain.
    pub fn audit_key(&self) -> AuditKey {
        let mut key = [0u8; 32];
        self.derive_into("audit-chain-v1", &mut key);
        AuditKey(Secret::new(key))
    }
}

/// Seals the audit chain: each row's MAC is HMAC-SHA256 under this key, so
/// whoever can write the database but does not hold the secret key can
/// neither edit a row nor rebuild the chain after it.
#[derive(Clone)]
pub struct AuditKey(Secret<[u8; 32]>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl AuditKey {
    /// Lower-case hex HMAC-SHA256 of `message`.
    pub fn mac_hex(&self, message: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose())
            .expect("HMAC accepts keys of any length");
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// A short public name of the key (not the key: a MAC of a constant),
    /// stored with the chain so that a command run with another key is
    /// refused with a clear message instead of appending rows nobody can
    /// verify. The constant cannot be the input of a row's MAC, which
    /// always starts with a digit.
    pub fn id(&self) -> String {
        self.mac_hex(b"rollway audit key id")[..16].to_string()
    }
}

/// Encrypts and decrypts stored credentials (kubeconfigs, the GitLab token)
/// with AES-256-GCM. The associated data binds a ciphertext to the row it
/// belongs to (e.g. `cluster:7`), so it cannot be copied to another row.
/// Stored form: `v1:` + hex(nonce ‖ ciphertext).
#[derive(Clone)]
pub struct Sealer(Secret<[u8; 32]>);

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    fn cipher(&self) -> aes_gcm::Aes256Gcm {
        use aes_gcm::KeyInit;
        aes_gcm::Aes256Gcm::new(self.0.expose().into())
    }

    pub fn seal(&self, plaintext: &str, associated_data: &str) -> Result<String, String> {
        use aes_gcm::AeadCore;
        use aes_gcm::aead::{Aead, OsRng, Payload};
        let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(format!("v1:{}", hex::encode(blob)))
    }

    pub fn open(&self, sealed: &str, associated_data: &str) -> Result<Secret<String>, String> {
        use aes_gcm::aead::{Aead, Payload};
        let blob = sealed
            .strip_prefix("v1:")
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > 12)
            .ok_or("stored credential is not in a known format")?;
        let (nonce, ciphertext) = blob.split_at(12);
        let plaintext = self
            .cipher()
            .decrypt(
                aes_gcm::Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| {
                "stored credential cannot be decrypted (was the secret key changed?)".to_string()
            })?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| "stored credential is not text".to_string())
    }
}

impl SecretKey {
    /// Only for tests of code that needs a key.
    pub fn for_tests() -> Self {
        Self::new(b"a test key that is long enough to be accepted")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Where the key comes from: `ROLLWAY_SECRET_KEY`, or for SQLite a file
/// beside the database (`<db>.key`, mode 0600) created on the first start.
pub fn load_secret_key(
    from_env: Option<&str>,
    sqlite_file: Option<&std::path::Path>,
) -> Result<SecretKey, String> {
    if let Some(value) = from_env.filter(|v| !v.is_empty()) {
        if value.len() < MIN_SECRET_KEY_LEN {
            return Err(format!(
                "invalid ROLLWAY_SECRET_KEY: it must be at least {MIN_SECRET_KEY_LEN} characters (try: openssl rand -hex 32)"
            ));
        }
        return Ok(SecretKey::new(value.as_bytes()));
    }
    let Some(db_file) = sqlite_file else {
        return Err(
            "ROLLWAY_SECRET_KEY is required with PostgreSQL, so that every replica shares it (try: openssl rand -hex 32)"
                .into(),
        );
    };
    let mut key_file = db_file.as_os_str().to_owned();
    key_file.push(".key");
    let key_file = std::path::PathBuf::from(key_file);
    match std::fs::read_to_string(&key_file) {
        Ok(content) if content.trim().len() >= MIN_SECRET_KEY_LEN => {
            Ok(SecretKey::new(content.trim().as_bytes()))
        }
        Ok(_) => Err(format!(
            "the key file {} is too short; restore it or set ROLLWAY_SECRET_KEY",
            key_file.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = random_alphanumeric(64);
            write_private_file(&key_file, &value)
                .map_err(|e| format!("cannot write the key file {}: {e}", key_file.display()))?;
            Ok(SecretKey::new(value.as_bytes()))
        }
        Err(e) => Err(format!(
            "cannot read the key file {}: {e}",
            key_file.display()
        )),
    }
}

fn write_private_file(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_beside_the_database_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rollway.db");
        let first = load_secret_key(None, Some(&db)).unwrap();
        let second = load_secret_key(None, Some(&db)).unwrap();
        assert_eq!(first.derive_64("x"), second.derive_64("x"));
        assert_ne!(first.derive_64("x"), first.derive_64("y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("rollway.db.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn postgres_needs_an_explicit_key_and_short_keys_are_refused() {
        assert!(
            load_secret_key(None, None)
                .unwrap_err()
                .contains("ROLLWAY_SECRET_KEY")
        );
        assert!(load_secret_key(Some("short"), None).is_err());
        assert!(load_secret_key(Some(&"k".repeat(32)), None).is_ok());
    }
}

#[cfg(test)]
mod sealer_tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_the_same_key_and_row() {
        let sealer = SecretKey::for_tests().sealer();
        let sealed = sealer.seal("apiVersion: v1", "cluster:7").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("apiVersion"));
        assert_eq!(
            sealer.open(&sealed, "cluster:7").unwrap().expose(),
            "apiVersion: v1"
        );
        assert!(
            sealer.open(&sealed, "cluster:8").is_err(),
            "bound to its row"
        );
        let other = SecretKey::new(b"another key that is long enough, really").sealer();
        assert!(other.open(&sealed, "cluster:7").is_err());
        assert_ne!(
            sealed,
            sealer.seal("apiVersion: v1", "cluster:7").unwrap(),
            "fresh nonce"
        );
        assert!(sealer.open("garbage", "cluster:7").is_err());
    }

    #[test]
    fn the_audit_key_is_its_own_and_depends_on_the_secret_key() {
        let key = SecretKey::for_tests();
        let other = SecretKey::new(b"another key that is long enough, really");
        let mac = key.audit_key().mac_hex(b"row");
        assert_eq!(mac.len(), 64);
        assert_eq!(mac, key.audit_key().mac_hex(b"row"));
        assert_ne!(mac, other.audit_key().mac_hex(b"row"));
        assert_ne!(mac, key.audit_key().mac_hex(b"row2"));
        assert_ne!(key.audit_key().id(), other.audit_key().id());
        // Not the bytes of another purpose's key.
        assert_ne!(
            key.audit_key().0.expose()[..],
            key.derive_64("stored-credentials")[..32]
        );
        assert_eq!(format!("{:?}", key.audit_key()), "AuditKey(***)");
    }
}
