//! A party's data directory: where her keys, the parties she trusts and her
//! state are kept.
//!
//! ```text
//! <data-dir>/agora.db                   the store (by default: SQLite; `--store` names another)
//! <data-dir>/keystore.toml              private keys, encrypted (Argon2id + ChaCha20-Poly1305)
//! <data-dir>/trust.toml                 pinned well-known parties (agencies, arbiters, ...)
//! <data-dir>/agencies/<name>/agency.pem the certificate of each agency run here
//! <data-dir>/crls/<agency-key-id>.pem   the newest CRL of each agency known here
//! <data-dir>/update.lock                held while a command changes the keystore or trust store
//! ```

use agora_core::crypto::Argon2Params;
use agora_pki::{Keystore, TrustStore};
use agora_store::{StoreUrl, Stores};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why the data directory could not be used: what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct DataDirError {
    what: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DataDirError {
    fn new(what: impl Into<String>) -> DataDirError {
        DataDirError {
            what: what.into(),
            source: None,
        }
    }

    fn because(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DataDirError {
        DataDirError {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Where a data directory's keystore passphrase comes from (a file, the
/// environment, a prompt at a terminal: the driver decides).
pub trait PassphraseSource: Send + Sync {
    /// The passphrase, or why there is none.
    fn passphrase(&self) -> Result<Zeroizing<String>, String>;
}

/// A party's data directory.
pub struct DataDir {
    dir: PathBuf,
    passphrase: Box<dyn PassphraseSource>,
    /// The store's URL if not the directory's own SQLite file.
    store: Option<String>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("dir", &self.dir)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl DataDir {
    /// The data directory `dir`, its keystore opened with what `passphrase`
    /// gives, its state in the store `store` names (else
    /// `sqlite:<dir>/agora.db`).
    pub fn new(
        dir: PathBuf,
        passphrase: Box<dyn PassphraseSource>,
        store: Option<String>,
    ) -> DataDir {
        DataDir {
            dir,
            passphrase,
            store,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encrypted keystore.
    pub fn keystore_path(&self) -> PathBuf {
        self.dir.join("keystore.toml")
    }

    /// The trust store.
    pub fn trust_path(&self) -> PathBuf {
        self.dir.join("trust.toml")
    }

    /// The files of the agency `name` run here.
    pub fn agency_dir(&self, name: &str) -> PathBuf {
        self.dir.join("agencies").join(name)
    }

    /// The newest CRL of each agency known here.
    pub fn crl_dir(&self) -> PathBuf {
        self.dir.join("crls")
    }

    /// Where the state is: `--store`, else the directory's SQLite file.
    pub fn store_url(&self) -> Result<StoreUrl, DataDirError> {
        match &self.store {
            None => Ok(StoreUrl::in_data_dir(&self.dir)),
            Some(url) => url
                .parse()
                .map_err(|e| DataDirError::because(format!("--store {url:?}"), e)),
        }
    }

    /// Fails unless the directory was initialised (it holds a keystore).
    pub fn require_initialised(&self) -> Result<(), DataDirError> {
        if !self.keystore_path().exists() {
            return Err(DataDirError::new(format!(
                "no agora data directory at {} (run `agora init`, or pass --data-dir)",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// The keystore passphrase.
    pub fn passphrase(&self) -> Result<Zeroizing<String>, DataDirError> {
        self.passphrase.passphrase().map_err(DataDirError::new)
    }

    /// Takes the directory's update lock (an OS file lock): held by a
    /// command from before it reads the keystore or trust store it will
    /// change until after it wrote them, so that two commands at once (two
    /// sellers opening sessions, say) cannot lose each other's changes.
    /// Released on drop.
    pub fn lock_for_update(&self) -> Result<std::fs::File, DataDirError> {
        self.require_initialised()?;
        let path = self.dir.join("update.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DataDirError::because(format!("opening {}", path.display()), e))?;
        f.lock()
            .map_err(|e| DataDirError::because(format!("locking {}", path.display()), e))?;
        Ok(f)
    }

    /// The keystore, opened with the passphrase.
    pub fn load_keystore(&self) -> Result<Keystore, DataDirError> {
        self.require_initialised()?;
        let pass = self.passphrase()?;
        Keystore::load(&self.keystore_path(), pass.as_bytes()).map_err(|e| {
            DataDirError::because(
                format!("opening keystore {}", self.keystore_path().display()),
                e,
            )
        })
    }

    /// Writes the keystore, encrypted under the passphrase.
    pub fn save_keystore(&self, ks: &Keystore) -> Result<(), DataDirError> {
        let pass = self.passphrase()?;
        ks.save(
            &self.keystore_path(),
            pass.as_bytes(),
            Argon2Params::INTERACTIVE,
            &mut agora_core::crypto::os_rng(),
        )
        .map_err(|e| {
            DataDirError::because(
                format!("writing keystore {}", self.keystore_path().display()),
                e,
            )
        })
    }

    /// The parties pinned here.
    pub fn load_trust(&self) -> Result<TrustStore, DataDirError> {
        self.require_initialised()?;
        TrustStore::load(&self.trust_path()).map_err(|e| {
            DataDirError::because(
                format!("reading trust store {}", self.trust_path().display()),
                e,
            )
        })
    }

    /// Writes the trust store.
    pub fn save_trust(&self, t: &TrustStore) -> Result<(), DataDirError> {
        t.save(&self.trust_path()).map_err(|e| {
            DataDirError::because(
                format!("writing trust store {}", self.trust_path().display()),
                e,
            )
        })
    }

    /// The store (migrated on open), on the backend [`Self::store_url`]
    /// names.
    pub fn store(&self) -> Result<Stores, DataDirError> {
        self.require_initialised()?;
        self.open_store()
    }

    /// [`Self::store`] without the check that the directory is initialised
    /// (for `agora init` itself).
    pub fn open_store(&self) -> Result<Stores, DataDirError> {
        let url = self.store_url()?;
        Stores::open(&url).map_err(|e| DataDirError::because(format!("opening the store {url}"), e))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// a crash leaves either the old or the new file.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    agora_node::pki::write_file_atomic(path, bytes)
        .map_err(|e| DataDirError::because(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str);
    impl PassphraseSource for Fixed {
        fn passphrase(&self) -> Result<Zeroizing<String>, String> {
            Ok(Zeroizing::new(self.0.to_owned()))
        }
    }

    #[test]
    fn an_uninitialised_directory_is_refused_with_its_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(tmp.path().join("nowhere"), Box::new(Fixed("pass")), None);
        let e = d.load_keystore().expect_err("no keystore");
        assert!(e.to_string().contains("no agora data directory at"), "{e}");
        assert!(d.store().is_err());
    }

    #[test]
    fn the_keystore_and_trust_round_trip_and_the_store_opens() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("pass")), None);
        d.save_keystore(&Keystore::new()).expect("save");
        d.save_trust(&TrustStore::new()).expect("trust");
        assert!(d.load_keystore().is_ok());
        assert!(d.load_trust().is_ok());
        assert_eq!(
            d.store_url().expect("url"),
            StoreUrl::in_data_dir(tmp.path())
        );
        assert!(d.store().is_ok());
        let _lock = d.lock_for_update().expect("lock");
        let wrong = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("other")), None);
        assert!(wrong.load_keystore().is_err(), "a wrong passphrase");
        let bad = DataDir::new(
            tmp.path().to_owned(),
            Box::new(Fixed("pass")),
            Some("x".into()),
        );
        assert!(bad.store().is_err(), "an unknown store URL");
    }
}
