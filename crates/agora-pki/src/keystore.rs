//! Keystore files: named private keys (Ed25519 seeds, X25519 secrets)
//! encrypted under a passphrase.
//!
//! File format, version 1 (TOML, binary fields in hex):
//!
//! ```toml
//! format = "agora-keystore"
//! version = 1
//! kdf = "argon2id"
//! argon2_memory_kib = 32768
//! argon2_iterations = 3
//! argon2_parallelism = 4
//! salt = "<16 bytes hex>"
//! aead = "chacha20-poly1305"
//! nonce = "<12 bytes hex>"
//! ciphertext = "<hex>"
//! ```
//!
//! key = Argon2id(passphrase, salt, params); ciphertext =
//! ChaCha20-Poly1305(key, nonce, aad, plaintext) with aad = `"agora-keystore/1"`
//! ‖ memory ‖ iterations ‖ parallelism (u32 big-endian each) ‖ salt, so the
//! header cannot be changed without detection. The plaintext (held only in
//! zeroizing buffers) is: u16 count, then per key, sorted by name: u8 kind
//! (1 = Ed25519 seed, 2 = X25519 secret), u8 name length, name (UTF-8), 32
//! secret bytes. A wrong passphrase and a tampered file are the same error:
//! [`KeystoreError::WrongPassphraseOrCorrupted`].

use agora_core::crypto::{
    argon2id, random_bytes, AeadAlg, AeadKey, Argon2Params, Rng, Secret, SigningKey, X25519Secret,
};
use agora_core::{DecodeError, Error};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest keystore file read, in bytes.
pub const MAX_KEYSTORE_LEN: usize = 1024 * 1024;
/// Most keys in one keystore.
pub const MAX_KEYS: usize = 1024;
/// Longest key name, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// Cheap Argon2id parameters (256 KiB, 1 pass, 1 lane) so that tests run
/// fast. Never for real keystores: production uses
/// [`Argon2Params::INTERACTIVE`].
pub const ARGON2_PARAMS_FOR_TESTING_ONLY: Argon2Params = Argon2Params {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

const AAD_PREFIX: &[u8] = b"agora-keystore/1";
const KIND_ED25519: u8 = 1;
const KIND_X25519: u8 = 2;
const KIND_SECRET: u8 = 3;

/// Why a keystore could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Decryption failed: the passphrase is wrong or the file was changed.
    #[error("wrong passphrase or corrupted keystore")]
    WrongPassphraseOrCorrupted,
    /// The file is not a keystore of a known version.
    #[error("not a valid agora keystore file: {0}")]
    Format(&'static str),
    /// Reading or writing the file failed.
    #[error("keystore file I/O: {0}")]
    Io(String),
    /// The parameters or the keys given are not acceptable.
    #[error(transparent)]
    Core(#[from] Error),
}

impl From<KeystoreError> for Error {
    fn from(e: KeystoreError) -> Error {
        match e {
            KeystoreError::WrongPassphraseOrCorrupted => Error::Crypto,
            KeystoreError::Format(why) => Error::Decode(DecodeError::Invalid(why)),
            KeystoreError::Io(s) => Error::Storage(s),
            KeystoreError::Core(e) => e,
        }
    }
}

/// The kind of a stored key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An Ed25519 signing key.
    Ed25519,
    /// An X25519 secret.
    X25519,
    /// A 32-byte symmetric secret (e.g. a CPO binding key K_p).
    Secret,
}

enum Entry {
    Ed25519(SigningKey),
    X25519(X25519Secret),
    Secret(Secret<32>),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Ed25519(k) => write!(f, "{k:?}"),
            Entry::X25519(k) => write!(f, "{k:?}"),
            Entry::Secret(k) => write!(f, "{k:?}"),
        }
    }
}

/// A set of named private keys. `Debug` prints no secret.
#[derive(Debug, Default)]
pub struct Keystore {
    keys: BTreeMap<String, Entry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    format: String,
    version: u32,
    kdf: String,
    argon2_memory_kib: u32,
    argon2_iterations: u32,
    argon2_parallelism: u32,
    salt: String,
    aead: String,
    nonce: String,
    ciphertext: String,
}

fn aad(params: &Argon2Params, salt: &[u8]) -> Vec<u8> {
    let mut a = AAD_PREFIX.to_vec();
    a.extend_from_slice(&params.memory_kib.to_be_bytes());
    a.extend_from_slice(&params.iterations.to_be_bytes());
    a.extend_from_slice(&params.parallelism.to_be_bytes());
    a.extend_from_slice(salt);
    a
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_KEY_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::ApiMisuse(
            "key name must be 1..=64 bytes without control characters",
        ));
    }
    Ok(())
}

impl Keystore {
    /// An empty keystore.
    pub fn new() -> Keystore {
        Keystore::default()
    }

    fn insert(&mut self, name: &str, e: Entry) -> Result<(), Error> {
        check_name(name)?;
        if self.keys.len() >= MAX_KEYS {
            return Err(Error::Refused("keystore is full".into()));
        }
        if self.keys.contains_key(name) {
            return Err(Error::ApiMisuse("a key with this name already exists"));
        }
        self.keys.insert(name.to_owned(), e);
        Ok(())
    }

    /// Store an Ed25519 key under `name` (names are unique).
    pub fn insert_ed25519(&mut self, name: &str, key: SigningKey) -> Result<(), Error> {
        self.insert(name, Entry::Ed25519(key))
    }

    /// Store an X25519 secret under `name` (names are unique).
    pub fn insert_x25519(&mut self, name: &str, key: X25519Secret) -> Result<(), Error> {
        self.insert(name, Entry::X25519(key))
    }

    /// The Ed25519 key named `name`.
    pub fn ed25519(&self, name: &str) -> Option<&SigningKey> {
        match self.keys.get(name) {
            Some(Entry::Ed25519(k)) => Some(k),
            _ => None,
        }
    }

    /// The X25519 secret named `name`.
    pub fn x25519(&self, name: &str) -> Option<&X25519Secret> {
        match self.keys.get(name) {
            Some(Entry::X25519(k)) => Some(k),
            _ => None,
        }
    }

    /// Store a 32-byte symmetric secret under `name` (names are unique).
    pub fn insert_secret(&mut self, name: &str, secret: Secret<32>) -> Result<(), Error> {
        self.insert(name, Entry::Secret(secret))
    }

    /// The symmetric secret named `name`.
    pub fn secret(&self, name: &str) -> Option<&Secret<32>> {
        match self.keys.get(name) {
            Some(Entry::Secret(k)) => Some(k),
            _ => None,
        }
    }

    /// Remove the key named `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        self.keys.remove(name).is_some()
    }

    /// Names and kinds of the stored keys, sorted by name.
    pub fn list(&self) -> Vec<(&str, KeyKind)> {
        self.keys
            .iter()
            .map(|(n, e)| {
                let kind = match e {
                    Entry::Ed25519(_) => KeyKind::Ed25519,
                    Entry::X25519(_) => KeyKind::X25519,
                    Entry::Secret(_) => KeyKind::Secret,
                };
                (n.as_str(), kind)
            })
            .collect()
    }

    fn plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(2 + self.keys.len() * 100));
        // At most MAX_KEYS entries, so the count fits.
        p.extend_from_slice(&(self.keys.len() as u16).to_be_bytes());
        for (name, e) in &self.keys {
            let (kind, secret) = match e {
                Entry::Ed25519(k) => (KIND_ED25519, k.to_seed()),
                Entry::X25519(k) => (KIND_X25519, k.to_bytes()),
                Entry::Secret(k) => (KIND_SECRET, Zeroizing::new(*k.expose())),
            };
            p.push(kind);
            // check_name bounds the length by 64.
            p.push(name.len() as u8);
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(secret.as_ref());
        }
        p
    }

    fn from_plaintext(p: &[u8]) -> Result<Keystore, KeystoreError> {
        const BAD: KeystoreError = KeystoreError::Format("bad key list");
        let (count, mut rest) = match p {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) as usize, rest),
            _ => return Err(BAD),
        };
        let mut ks = Keystore::new();
        for _ in 0..count {
            let (kind, len, after) = match rest {
                [k, l, after @ ..] => (*k, *l as usize, after),
                _ => return Err(BAD),
            };
            if after.len() < len + 32 {
                return Err(BAD);
            }
            let (name, after) = after.split_at(len);
            let (secret, after) = after.split_at(32);
            let name = std::str::from_utf8(name).map_err(|_| BAD)?;
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(secret);
            let e = match kind {
                KIND_ED25519 => Entry::Ed25519(SigningKey::from_seed(&seed)),
                KIND_X25519 => Entry::X25519(X25519Secret::from_bytes(*seed)),
                KIND_SECRET => Entry::Secret(Secret::new(*seed)),
                _ => return Err(BAD),
            };
            if ks
                .keys
                .last_key_value()
                .is_some_and(|(last, _)| last.as_str() >= name)
            {
                return Err(KeystoreError::Format("keys not sorted or duplicated"));
            }
            ks.insert(name, e).map_err(|_| BAD)?;
            rest = after;
        }
        if !rest.is_empty() {
            return Err(KeystoreError::Format("trailing bytes after the key list"));
        }
        Ok(ks)
    }

    /// Encrypt under `passphrase` with Argon2id `params` (use
    /// [`Argon2Params::INTERACTIVE`]); returns the file's text.
    pub fn seal(
        &self,
        passphrase: &[u8],
        params: Argon2Params,
        rng: &mut impl Rng,
    ) -> Result<String, KeystoreError> {
        let salt: [u8; 16] = random_bytes(rng);
        let nonce: [u8; 12] = random_bytes(rng);
        let key = argon2id(passphrase, &salt, params)?;
        let aead = AeadKey::new(AeadAlg::ChaCha20Poly1305, &Secret::new(*key));
        let ct = aead.seal(&nonce, &aad(&params, &salt), &self.plaintext());
        let file = FileV1 {
            format: "agora-keystore".into(),
            version: 1,
            kdf: "argon2id".into(),
            argon2_memory_kib: params.memory_kib,
            argon2_iterations: params.iterations,
            argon2_parallelism: params.parallelism,
            salt: hex::encode(salt),
            aead: "chacha20-poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ct),
        };
        toml::to_string(&file).map_err(|e| KeystoreError::Io(e.to_string()))
    }

    /// Decrypt a keystore file's text with `passphrase`.
    pub fn open(text: &str, passphrase: &[u8]) -> Result<Keystore, KeystoreError> {
        if text.len() > MAX_KEYSTORE_LEN {
            return Err(KeystoreError::Format("file over the size limit"));
        }
        let f: FileV1 =
            toml::from_str(text).map_err(|_| KeystoreError::Format("not a keystore TOML file"))?;
        if f.format != "agora-keystore" || f.version != 1 {
            return Err(KeystoreError::Format("unknown format or version"));
        }
        if f.kdf != "argon2id" || f.aead != "chacha20-poly1305" {
            return Err(KeystoreError::Format("unknown KDF or AEAD"));
        }
        let mut salt = [0u8; 16];
        hex::decode_to_slice(&f.salt, &mut salt)
            .map_err(|_| KeystoreError::Format("salt must be 16 bytes hex"))?;
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&f.nonce, &mut nonce)
            .map_err(|_| KeystoreError::Format("nonce must be 12 bytes hex"))?;
        let ct = hex::decode(&f.ciphertext)
            .map_err(|_| KeystoreError::Format("ciphertext must be hex"))?;
        let params = Argon2Params {
            memory_kib: f.argon2_memory_kib,
            iterations: f.argon2_iterations,
            parallelism: f.argon2_parallelism,
        };
        // agora-core refuses parameters over its limits (a hostile file
        // cannot make us allocate without bound).
        let key = argon2id(passphrase, &salt, params)?;
        let aead = AeadKey::new(AeadAlg::ChaCha20Poly1305, &Secret::new(*key));
        let pt = Zeroizing::new(
            aead.open(&nonce, &aad(&params, &salt), &ct)
                .map_err(|_| KeystoreError::WrongPassphraseOrCorrupted)?,
        );
        Keystore::from_plaintext(&pt)
    }

    /// Encrypt and write to `path` (atomically; mode 0600 on Unix).
    pub fn save(
        &self,
        path: &Path,
        passphrase: &[u8],
        params: Argon2Params,
        rng: &mut impl Rng,
    ) -> Result<(), KeystoreError> {
        let text = self.seal(passphrase, params, rng)?;
        write_atomic(path, text.as_bytes(), true).map_err(|e| KeystoreError::Io(e.to_string()))
    }

    /// Read and decrypt the keystore at `path`.
    pub fn load(path: &Path, passphrase: &[u8]) -> Result<Keystore, KeystoreError> {
        let text =
            read_limited(path, MAX_KEYSTORE_LEN).map_err(|e| KeystoreError::Io(e.to_string()))?;
        Keystore::open(&text, passphrase)
    }
}

/// Read a UTF-8 file of at most `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: usize) -> Result<String, Error> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
    if buf.len() > limit {
        return Err(Error::Decode(DecodeError::TooLarge {
            what: "file",
            limit,
        }));
    }
    String::from_utf8(buf).map_err(|_| Error::Decode(DecodeError::Invalid("file is not UTF-8")))
}

/// Write `bytes` to `path` via a temporary file in the same directory and a
/// rename, so a crash leaves the old file or the new one. `private`: mode
/// 0600 on Unix whatever the umask (the temporary file is made so before a
/// byte is written, so the file never exists with a looser mode).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), Error> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    // A temporary file left by a crash keeps its mode when opened again:
    // set it.
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}
