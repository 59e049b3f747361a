//! The storage a node or a party uses, on the backend chosen at start-up
//! (ARCHITECTURE section 1: "backends are chosen at start-up"). [`Stores`]
//! hands out every port as a trait object, so that the node, the client and
//! the CLI name no backend type: adding a backend is implementing the ports
//! (and passing their conformance suites) and one arm of [`StoreUrl`].

use crate::{AtRestKey, SqliteStore, StoreConfig, DB_FILE_NAME};
use agora_core::ports::{EvidenceArchive, ReplayCache};
use agora_core::{Error, KeyId};
use agora_cpo::store::CpoStore;
use agora_lite::records::ClientRecords;
use agora_pki::registry::AgencyRegistry;
use agora_speed::ledger::Ledger;
use agora_speed::vendor::HandshakeRegister;
use agora_stp::escrow::EscrowStore;
use agora_stp::log::CommitLog;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the state is: `sqlite:PATH` (a database file, created if absent),
/// or `postgres://...` (several nodes on one PostgreSQL: not built yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl StoreUrl {
    /// The embedded default of a data directory: `sqlite:<dir>/agora.db`.
    pub fn in_data_dir(dir: &Path) -> StoreUrl {
        StoreUrl::Sqlite(dir.join(DB_FILE_NAME))
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<StoreUrl, Error> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(Error::Refused(
                    "sqlite: needs a path, e.g. sqlite:agora-data/agora.db".into(),
                ));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(s.to_owned()));
        }
        Err(Error::Refused(format!(
            "unknown store {s:?}: use sqlite:PATH (or postgres://... once built)"
        )))
    }
}

impl std::fmt::Display for StoreUrl {
    /// The URL, without a PostgreSQL password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    write!(f, "{}://…{}", &url[..scheme], &url[at..])
                }
                _ => f.write_str(url),
            },
        }
    }
}

/// The backends this build has.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
}

/// Every storage port on one backend. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Stores {
    url: StoreUrl,
    backend: Backend,
}

impl Stores {
    /// Opens (creating, migrating) the store at `url` with the default
    /// configuration, its secrets sealed under `key` (refused if they were
    /// sealed under another).
    pub fn open(url: &StoreUrl, key: AtRestKey) -> Result<Stores, Error> {
        Stores::open_with(url, StoreConfig::default(), key)
    }

    /// Opens the embedded default of data directory `dir`
    /// (`sqlite:<dir>/agora.db`), its secrets sealed under `key`.
    pub fn in_data_dir(dir: &Path, key: AtRestKey) -> Result<Stores, Error> {
        Stores::open(&StoreUrl::in_data_dir(dir), key)
    }

    /// Opens the store at `url` with `config`, its secrets sealed under
    /// `key`.
    pub fn open_with(url: &StoreUrl, config: StoreConfig, key: AtRestKey) -> Result<Stores, Error> {
        let backend = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::Storage(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Backend::Sqlite(SqliteStore::open(path, config, key)?)
            }
            StoreUrl::Postgres(_) => {
                return Err(Error::Refused(
                    "PostgreSQL is not built yet (issue 19): use sqlite:PATH".into(),
                ))
            }
        };
        Ok(Stores {
            url: url.clone(),
            backend,
        })
    }

    /// Where it is.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The CPO server's ports and units of work.
    pub fn cpo(&self) -> Arc<dyn CpoStore> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.cpo()),
        }
    }

    /// The board's reads for people: listings in an order and behind a
    /// cursor, bid counts, the CPOs bound lately.
    pub fn board_views(&self) -> Arc<dyn crate::BoardViews> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.board()),
        }
    }

    /// The SPEED broker's ledger and payment register.
    pub fn ledger(&self) -> Arc<dyn Ledger> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.ledger()),
        }
    }

    /// The register of the deliveries a SPEED vendor made.
    pub fn handshakes(&self, vendor: KeyId) -> Arc<dyn HandshakeRegister> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.handshakes(vendor)),
        }
    }

    /// The STP commit authority's log (records, outcome leaves, tree
    /// heads).
    pub fn commit_log(&self) -> Arc<dyn CommitLog> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.commit_log()),
        }
    }

    /// The items the STP escrow holds.
    pub fn escrow(&self) -> Arc<dyn EscrowStore> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.escrow()),
        }
    }

    /// The client records of the lightweight protocols' vendors (`id_C ->
    /// K`, subscription, hash-chain state), keyed by vendor and client.
    pub fn lite_records(&self) -> Arc<dyn ClientRecords> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.lite_records()),
        }
    }

    /// The bonding agencies' register (issued certificates, revocations,
    /// CRL numbers).
    pub fn agency_registry(&self) -> Arc<dyn AgencyRegistry> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.agency_registry()),
        }
    }

    /// The evidence archive.
    pub fn archive(&self) -> Arc<dyn EvidenceArchive> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.archive()),
        }
    }

    /// The replay cache.
    pub fn replay_cache(&self) -> Arc<dyn ReplayCache> {
        match &self.backend {
            Backend::Sqlite(s) => Arc::new(s.replay_cache()),
        }
    }

    /// The schema version the store is at.
    pub fn schema_version(&self) -> Result<u32, Error> {
        match &self.backend {
            Backend::Sqlite(s) => s.schema_version(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_backend_or_are_refused() {
        assert_eq!(
            "sqlite:data/agora.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("data/agora.db".into()))
        );
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        assert!("agora.db".parse::<StoreUrl>().is_err());
        let pg: StoreUrl = "postgres://agora:secret@db:5432/agora".parse().unwrap();
        assert_eq!(
            pg.to_string(),
            "postgres://…@db:5432/agora",
            "no password shown"
        );
        assert!(matches!(
            Stores::open(&pg, AtRestKey::generate(&mut agora_core::crypto::os_rng())),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn an_sqlite_store_opens_in_a_new_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = StoreUrl::Sqlite(dir.path().join("a/b/agora.db"));
        let s = Stores::open(&url, AtRestKey::generate(&mut agora_core::crypto::os_rng()))
            .expect("opens");
        assert_eq!(s.url(), &url);
        assert!(s.schema_version().expect("version") > 0);
        assert_eq!(s.archive().head(), Ok(None));
    }
}
