//! A party's data directory: where her keys, the parties she trusts and her
//! state are kept.
//!
//! ```text
//! <data-dir>/agora.db                   the store (by default: SQLite; `--store` names another), 0600,
//!                                       its secrets sealed under the at-rest key ([`at_rest_key`])
//! <data-dir>/keystore.toml              private keys, encrypted (Argon2id + ChaCha20-Poly1305), 0600
//! <data-dir>/trust.toml                 pinned well-known parties (agencies, arbiters, ...), 0600
//! <data-dir>/agencies/<name>/agency.pem the certificate of each agency run here
//! <data-dir>/crls/<agency-key-id>.pem   the newest CRL of each agency known here
//! <data-dir>/update.lock                held while a command changes the keystore or trust store, 0600
//! <data-dir>/node.lock                  held by the node serving this directory (`agora up`, `agora serve`), 0600
//! <data-dir>/speed/catalogue.toml       the SPEED vendor's catalogue (its products' files beside it)
//! <data-dir>/cpo-sessions/<name>.json   a seller's browse session (its K_p is in the keystore), 0600
//! ```
//!
//! The names of what `agora up` makes in it (the roles' key pairs, the
//! agencies, the broker's accounts) are in [`names`].

use agora_core::crypto::{Argon2Params, SigningKey, X25519Secret};
use agora_core::{KeyId, Money, Timestamp};
use agora_cpo::seller::SellerSession;
use agora_cpo::session::BindingKey;
use agora_cpo::{Keys, Peer};
use agora_node::speed::Product;
use agora_pki::registry::{IssuedKind, IssuedRecord};
use agora_pki::{Agency, IdentityParams, IssuedCert, Keystore, PartyRole, TrustStore};
use agora_speed::strategy::PriceRule;
use agora_store::{AtRestKey, StoreUrl, Stores};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The names of the key pairs, agencies, products and accounts a node's
/// data directory holds once `agora up` has made them.
pub mod names {
    /// The node's own key pair.
    pub const SELF_KEY: &str = "self";
    /// The CPO arbiter's key pair.
    pub const ARBITER_KEY: &str = "arbiter";
    /// The CPO server's key pair.
    pub const SERVER_KEY: &str = "server";
    /// The bonding agency `agora up` creates.
    pub const DEFAULT_AGENCY: &str = "agora-bonding";
    /// The SPEED certification authority `agora up` creates.
    pub const SPEED_CA: &str = "agora-speed-ca";
    /// The SPEED broker's key pair.
    pub const BROKER_KEY: &str = "speed-broker";
    /// The demo SPEED vendor's key pair.
    pub const VENDOR_KEY: &str = "speed-vendor";
    /// The broker's account for money entering and leaving (deposits).
    pub const CASH_EUR: &str = "B-CASH-EUR";
    /// The demo key's ProductID: 16 bytes at a fixed price.
    pub const DEMO_KEY: &str = "DEMO-KEY-1: a 16-byte key to the demo stream";
    /// Where an agency's CRLs are published unless its `crl-base` file
    /// says otherwise: the node `agora up` starts.
    pub const DEFAULT_CRL_BASE: &str = "http://127.0.0.1:7878";
}

/// The keystore's name of key pair `name`'s Ed25519 half.
pub fn ed_name(name: &str) -> String {
    format!("{name}.ed25519")
}

/// The keystore's name of key pair `name`'s X25519 half.
pub fn x_name(name: &str) -> String {
    format!("{name}.x25519")
}

/// Longest key-pair name.
const MAX_NAME_LEN: usize = 64;

/// Refuses a key-pair or agency name that is empty, too long, or more than
/// letters, digits, `-` and `_` (names become file names).
pub fn check_name(name: &str) -> Result<(), DataDirError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(DataDirError::new(format!(
            "invalid name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// HKDF-SHA256 `info` of the store's at-rest key ([`at_rest_key`]): its
/// purpose and version, so that the key is not the node key nor any other
/// key derived from it.
const AT_REST_KEY_INFO: &[u8] = b"agora/store/at-rest/v1";

/// The key the store of the data directory whose keystore is `ks` seals its
/// secrets under (agora_store::at_rest): HKDF-SHA256 of the seed of the
/// node's own Ed25519 key ([`names::SELF_KEY`], made by `agora init`), no
/// salt, info `agora/store/at-rest/v1`. Derived, not stored: every data
/// directory has it from its keystore alone, and whoever lacks the
/// passphrase lacks it.
pub fn at_rest_key(ks: &Keystore) -> Result<AtRestKey, DataDirError> {
    let node = ks.ed25519(&ed_name(names::SELF_KEY)).ok_or_else(|| {
        DataDirError::new(format!(
            "the keystore holds no node key {:?} (made by `agora init`): \
             the store's secrets are sealed under a key derived from it",
            names::SELF_KEY
        ))
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    agora_core::crypto::hkdf_sha256(&[], node.to_seed().as_ref(), AT_REST_KEY_INFO, &mut *key)
        .map_err(|e| DataDirError::because("deriving the store's at-rest key", e))?;
    Ok(AtRestKey::new(&agora_core::crypto::Secret::new(*key)))
}

/// Key pair `name` of the keystore (both halves), as a role's keys.
pub fn role_keys(ks: &Keystore, name: &str) -> Result<Keys, DataDirError> {
    let sign = ks
        .ed25519(&ed_name(name))
        .ok_or_else(|| DataDirError::new(format!("no key pair named {name:?} in the keystore")))?;
    let enc = ks
        .x25519(&x_name(name))
        .ok_or_else(|| DataDirError::new(format!("key pair {name:?} has no X25519 key")))?;
    Ok(Keys {
        sign: SigningKey::from_seed(&sign.to_seed()),
        enc: X25519Secret::from_bytes(*enc.to_bytes()),
    })
}

/// Keeps what `agency` issued: a row of its register (so that it can be
/// revoked) and an entry of the evidence archive.
pub fn record_issued(
    store: &Stores,
    agency: &Agency,
    issued: &IssuedCert,
    kind: IssuedKind,
    subject: KeyId,
    issued_at: Timestamp,
    not_after: Timestamp,
) -> Result<(), DataDirError> {
    store
        .agency_registry()
        .record_issued(
            &agency.key_id(),
            &IssuedRecord {
                serial: issued.serial.clone(),
                kind,
                subject,
                issued_at,
                not_after,
                der: issued.der.clone(),
            },
        )
        .map_err(|e| DataDirError::because("recording the certificate in the register", e))?;
    let what = match kind {
        IssuedKind::Bond => "pki/bond-certificate",
        IssuedKind::Identity => "pki/identity-certificate",
    };
    store
        .archive()
        .append(what, &issued.der, issued_at)
        .map_err(|e| DataDirError::because("archiving the certificate", e))?;
    Ok(())
}

/// Issues an identity certificate of `ca` as `params` say and keeps it
/// ([`record_issued`]: the CA's register, so that it can be revoked, and
/// the archive), as issued at `now`.
pub fn issue_identity(
    store: &Stores,
    ca: &Agency,
    params: &IdentityParams,
    now: Timestamp,
    rng: &mut impl agora_core::crypto::Rng,
) -> Result<IssuedCert, DataDirError> {
    let issued = ca
        .issue_identity(params, rng)
        .map_err(|e| DataDirError::because("issuing the identity certificate", e))?;
    record_issued(
        store,
        ca,
        &issued,
        IssuedKind::Identity,
        params.key.key_id(),
        now,
        params.not_after,
    )?;
    Ok(issued)
}

/// The public keys of the party pinned in `trust` as `role` with key id
/// `id`; `whose` names it in the error.
pub fn pinned(
    trust: &TrustStore,
    role: PartyRole,
    id: &KeyId,
    whose: &str,
) -> Result<Peer, DataDirError> {
    let what = match role {
        PartyRole::Server => "server",
        PartyRole::Arbiter => "arbiter",
        _ => "party",
    };
    let p = trust
        .by_key_id(id)
        .filter(|p| p.role == role)
        .ok_or_else(|| {
            DataDirError::new(format!(
                "{whose} {id} is not pinned in the trust store as a CPO {what} \
                 (pin a node's server and arbiter with `agora cpo trust-node <URL>`)"
            ))
        })?;
    Ok(Peer {
        sign: p.verifying_key().ok_or_else(|| {
            DataDirError::new(format!("the pinned {what} {id} has no Ed25519 key"))
        })?,
        enc: p.x25519().ok_or_else(|| {
            DataDirError::new(format!("the pinned {what} {id} has no X25519 key"))
        })?,
    })
}

/// Longest session file read back.
const MAX_SESSION_FILE_LEN: u64 = 64 * 1024;

/// The keystore's name of seller `name`'s K_p.
fn k_p_name(name: &str) -> String {
    format!("{name}.cpo-session")
}

/// What a seller keeps of her browse session besides K_p (which is in the
/// keystore): `cpo-sessions/<name>.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionFile {
    session: String,
    from: u64,
    until: u64,
    bond_der_hex: String,
    /// The key id of the server the session is with (absent in files
    /// written before the node existed: this data directory's server).
    #[serde(default)]
    server: Option<String>,
}

/// The SPEED vendor's catalogue (`speed/catalogue.toml`).
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The vendor's account at the broker.
    pub vendor_account: String,
    /// Largest product sold in aggressive mode.
    pub max_aggressive_bytes: u64,
    /// The products, their files resolved against the catalogue's
    /// directory.
    pub products: Vec<Product>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueToml {
    vendor: VendorToml,
    #[serde(default)]
    product: Vec<ProductToml>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorToml {
    account: String,
    #[serde(default = "default_aggressive")]
    max_aggressive_bytes: u64,
}

fn default_aggressive() -> u64 {
    agora_speed::vendor::DEFAULT_MAX_AGGRESSIVE_LEN
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductToml {
    id: String,
    file: String,
    list: String,
    floor: String,
    step: String,
}

impl Catalogue {
    /// Parses a catalogue's text; its products' files are relative to
    /// `dir`. `origin` names it in errors.
    pub fn parse(text: &str, dir: &Path, origin: &str) -> Result<Catalogue, DataDirError> {
        let t: CatalogueToml = toml::from_str(text)
            .map_err(|e| DataDirError::because(format!("parsing {origin}"), e))?;
        let money = |s: &str| {
            s.parse::<Money>().map_err(|_| {
                DataDirError::new(format!("{origin}: not an amount: {s:?} (say \"1.50 EUR\")"))
            })
        };
        let mut products = Vec::with_capacity(t.product.len());
        for p in &t.product {
            let (list, floor, step) = (money(&p.list)?, money(&p.floor)?, money(&p.step)?);
            if floor.currency != list.currency
                || step.currency != list.currency
                || floor.cents > list.cents
            {
                return Err(DataDirError::new(format!(
                    "{origin}: product {:?}: floor above list price, or mixed currencies",
                    p.id
                )));
            }
            products.push(Product {
                id: p.id.clone(),
                path: dir.join(&p.file),
                rule: PriceRule {
                    list,
                    floor,
                    step: step.cents,
                },
            });
        }
        Ok(Catalogue {
            vendor_account: t.vendor.account,
            max_aggressive_bytes: t.vendor.max_aggressive_bytes,
            products,
        })
    }

    /// The catalogue in `dir/catalogue.toml`.
    pub fn read(dir: &Path) -> Result<Catalogue, DataDirError> {
        let path = dir.join("catalogue.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| DataDirError::because(format!("reading {}", path.display()), e))?;
        Catalogue::parse(&text, dir, &path.display().to_string())
    }
}

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
    /// The store's at-rest key, once the keystore was opened (so that a
    /// command that opened it does not pay Argon2id again for its store).
    at_rest: OnceLock<AtRestKey>,
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
            at_rest: OnceLock::new(),
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

    /// The SPEED vendor's and broker's files.
    pub fn speed_dir(&self) -> PathBuf {
        self.dir.join("speed")
    }

    /// The SPEED vendor's catalogue, read afresh.
    pub fn catalogue(&self) -> Result<Catalogue, DataDirError> {
        Catalogue::read(&self.speed_dir())
    }

    /// The agency `name` run from this data directory: its certificate and
    /// its key from the keystore.
    pub fn agency(&self, name: &str) -> Result<Agency, DataDirError> {
        check_name(name)?;
        let cert_path = self.agency_dir(name).join("agency.pem");
        if !cert_path.exists() {
            return Err(DataDirError::new(format!(
                "no agency named {name:?} here (agora agency create {name})"
            )));
        }
        let pem = std::fs::read_to_string(&cert_path)
            .map_err(|e| DataDirError::because(format!("reading {}", cert_path.display()), e))?;
        let der = agora_pki::pem::decode(&pem, "CERTIFICATE")
            .map_err(|e| DataDirError::because(format!("reading {}", cert_path.display()), e))?;
        let ks = self.load_keystore()?;
        let key = ks.ed25519(&agency_key_name(name)).ok_or_else(|| {
            DataDirError::new(format!("the keystore holds no key for agency {name:?}"))
        })?;
        Agency::from_parts(SigningKey::from_seed(&key.to_seed()), &der)
            .map_err(|e| DataDirError::because(format!("agency {name:?}"), e))
    }

    fn session_file(&self, seller: &str) -> PathBuf {
        self.dir.join("cpo-sessions").join(format!("{seller}.json"))
    }

    /// Keeps seller `name`'s granted browse session where later commands
    /// find it: K_p in the keystore `ks` (replacing an older one; the
    /// keystore is saved), the rest in her session file. The caller holds
    /// the update lock ([`Self::lock_for_update`]).
    pub fn keep_session(
        &self,
        ks: &mut Keystore,
        name: &str,
        session: &SellerSession,
    ) -> Result<(), DataDirError> {
        ks.remove(&k_p_name(name));
        ks.insert_secret(
            &k_p_name(name),
            agora_core::crypto::Secret::new(*session.k_p().expose()),
        )
        .map_err(|e| DataDirError::because(format!("keeping {name}'s K_p"), e))?;
        self.save_keystore(ks)?;
        let f = SessionFile {
            session: hex::encode(session.id()),
            from: session.from.secs(),
            until: session.until.secs(),
            bond_der_hex: hex::encode(session.bond()),
            server: Some(session.server().id().to_string()),
        };
        let json = serde_json::to_vec_pretty(&f)
            .map_err(|e| DataDirError::because("encoding the session file", e))?;
        write_private_file_atomic(&self.session_file(name), &json)
    }

    /// Forgets seller `name`'s browse session (once it ended): K_p leaves
    /// the keystore `ks` (saved), and her session file goes. The caller
    /// holds the update lock.
    pub fn forget_session(&self, ks: &mut Keystore, name: &str) -> Result<(), DataDirError> {
        ks.remove(&k_p_name(name));
        self.save_keystore(ks)?;
        match std::fs::remove_file(self.session_file(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataDirError::because(
                format!("removing {name}'s session file"),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// Seller `name`'s browse session as [`Self::keep_session`] kept it,
    /// with a server pinned in `trust` (a file written before the node
    /// existed names none: this data directory's own server, key pair
    /// [`names::SERVER_KEY`] of `ks`).
    pub fn seller_session(
        &self,
        ks: &Keystore,
        trust: &TrustStore,
        name: &str,
    ) -> Result<SellerSession, DataDirError> {
        let k_p = ks.secret(&k_p_name(name)).ok_or_else(|| {
            DataDirError::new(format!(
                "{name} has no browse session (agora cpo session --seller {name})"
            ))
        })?;
        let path = self.session_file(name);
        let bad = |what: &str| DataDirError::new(format!("{}: {what}", path.display()));
        let f: SessionFile = serde_json::from_slice(&read_at_most(&path, MAX_SESSION_FILE_LEN)?)
            .map_err(|e| DataDirError::because(format!("reading {}", path.display()), e))?;
        let server = match &f.server {
            Some(h) => KeyId::from_hex(h).map_err(|_| bad("not a server key id"))?,
            None => role_keys(ks, names::SERVER_KEY)?.peer().id(),
        };
        let server = pinned(
            trust,
            PartyRole::Server,
            &server,
            &format!("{name}'s session server"),
        )?;
        Ok(SellerSession::from_parts(
            BindingKey::from_bytes(*k_p.expose()),
            server,
            hex::decode(&f.bond_der_hex).map_err(|_| bad("the bond is not hex"))?,
            Timestamp(f.from),
            Timestamp(f.until),
        ))
    }

    /// Where agency `name` publishes its CRLs: its `crl-base` file, else
    /// [`names::DEFAULT_CRL_BASE`].
    pub fn crl_base(&self, name: &str) -> String {
        std::fs::read_to_string(self.agency_dir(name).join("crl-base"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| names::DEFAULT_CRL_BASE.to_owned())
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
        self.update_lock()
    }

    /// The update lock for making the directory (`agora init`, and `agora
    /// up` on a directory that is not one yet): the directory is created if
    /// missing, then locked, so that two commands making it at once make it
    /// once. The caller checks again, under the lock, whether it is made.
    pub fn lock_for_init(&self) -> Result<std::fs::File, DataDirError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| DataDirError::because(format!("creating {}", self.dir.display()), e))?;
        self.update_lock()
    }

    fn update_lock(&self) -> Result<std::fs::File, DataDirError> {
        let path = self.dir.join("update.lock");
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let f = opts
            .open(&path)
            .map_err(|e| DataDirError::because(format!("opening {}", path.display()), e))?;
        // Mode 0600 whatever the umask, and for a file an older version
        // made: others have no business holding (or reading) it.
        restrict_to_owner(&f, &path)?;
        f.lock()
            .map_err(|e| DataDirError::because(format!("locking {}", path.display()), e))?;
        Ok(f)
    }

    /// Takes the directory's node lock (`node.lock`, an OS file lock)
    /// without waiting: held by `agora up` and `agora serve` for as long
    /// as they serve, so that a second node on the same data directory is
    /// refused, before it creates or changes anything, instead of starting
    /// beside the first. Creates the directory if there is none yet (the
    /// lock is the first thing a new node makes). Released on drop, and by
    /// the OS when the process ends however it ends.
    pub fn lock_for_node(&self) -> Result<std::fs::File, DataDirError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| DataDirError::because(format!("creating {}", self.dir.display()), e))?;
        let path = self.dir.join("node.lock");
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let f = opts
            .open(&path)
            .map_err(|e| DataDirError::because(format!("opening {}", path.display()), e))?;
        restrict_to_owner(&f, &path)?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::new(format!(
                "another node is serving the data directory {} (it holds {}): stop it first, \
                 or give this node a data directory of its own with --data-dir",
                self.dir.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(DataDirError::because(
                format!("locking {}", path.display()),
                e,
            )),
        }
    }

    /// The keystore, opened with the passphrase.
    pub fn load_keystore(&self) -> Result<Keystore, DataDirError> {
        self.require_initialised()?;
        let pass = self.passphrase()?;
        let ks = Keystore::load(&self.keystore_path(), pass.as_bytes()).map_err(|e| {
            DataDirError::because(
                format!("opening keystore {}", self.keystore_path().display()),
                e,
            )
        })?;
        if self.at_rest.get().is_none() {
            if let Ok(key) = at_rest_key(&ks) {
                let _ = self.at_rest.set(key);
            }
        }
        Ok(ks)
    }

    /// The store's at-rest key ([`at_rest_key`]): from this directory's
    /// keystore, opened (with the passphrase) unless a command opened it
    /// before.
    pub fn store_key(&self) -> Result<AtRestKey, DataDirError> {
        if let Some(k) = self.at_rest.get() {
            return Ok(k.clone());
        }
        let ks = self.load_keystore()?;
        let key = at_rest_key(&ks)?;
        Ok(self.at_rest.get_or_init(|| key).clone())
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
    /// names, its secrets sealed under [`Self::store_key`].
    pub fn store(&self) -> Result<Stores, DataDirError> {
        self.require_initialised()?;
        let key = self.store_key()?;
        self.open_store_with(key)
    }

    /// [`Self::store`] for the directory whose keystore is `ks`, not yet
    /// saved (for `agora init` itself).
    pub fn open_store(&self, ks: &Keystore) -> Result<Stores, DataDirError> {
        let key = at_rest_key(ks)?;
        // Remembered for this command's later stores, unless one is already.
        let _ = self.at_rest.set(key.clone());
        self.open_store_with(key)
    }

    fn open_store_with(&self, key: AtRestKey) -> Result<Stores, DataDirError> {
        let url = self.store_url()?;
        Stores::open(&url, key)
            .map_err(|e| DataDirError::because(format!("opening the store {url}"), e))
    }
}

/// Restricts the open file `f` (at `path`) to mode 0600 unless it is.
#[cfg(unix)]
fn restrict_to_owner(f: &std::fs::File, path: &Path) -> Result<(), DataDirError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f
        .metadata()
        .map_err(|e| DataDirError::because(format!("reading {}", path.display()), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| {
                DataDirError::because(format!("restricting {} to mode 0600", path.display()), e)
            })?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_to_owner(_f: &std::fs::File, _path: &Path) -> Result<(), DataDirError> {
    Ok(())
}

/// The file at `path`, refused if it is longer than `limit` bytes (read no
/// further than that: a file is input like any other).
pub fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, DataDirError> {
    use std::io::Read;
    let reading = |e| DataDirError::because(format!("reading {}", path.display()), e);
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .map_err(reading)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(reading)?;
    if buf.len() as u64 > limit {
        return Err(DataDirError::new(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// The keystore's name of agency `name`'s signing key.
pub fn agency_key_name(name: &str) -> String {
    ed_name(&format!("agency-{name}"))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// a crash leaves either the old or the new file.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    agora_node::pki::write_file_atomic(path, bytes)
        .map_err(|e| DataDirError::because(format!("writing {}", path.display()), e))
}

/// [`write_file_atomic`] for a file only its owner may read: mode 0600
/// whatever the umask, from before its first byte is written (a seller's
/// session file; the keystore and the trust store are written so by
/// agora-pki).
pub fn write_private_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    use std::io::Write;
    let writing = |e| DataDirError::because(format!("writing {}", path.display()), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(writing)?;
    }
    // A name of its own per writer, as write_file_atomic's.
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        hex::encode(agora_core::crypto::random_bytes::<8>(
            &mut agora_core::crypto::os_rng()
        ))
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(writing)?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(writing(e));
    }
    Ok(())
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

    /// A keystore with a node key, as `agora init` makes it.
    fn node_keystore() -> Keystore {
        let mut ks = Keystore::new();
        ks.insert_ed25519(
            &ed_name(names::SELF_KEY),
            SigningKey::generate(&mut agora_core::crypto::os_rng()),
        )
        .expect("insert");
        ks
    }

    #[test]
    fn the_keystore_and_trust_round_trip_and_the_store_opens() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("pass")), None);
        d.save_keystore(&node_keystore()).expect("save");
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

    #[test]
    fn a_kept_session_comes_back_only_with_its_server_pinned_and_goes_when_forgotten() {
        use agora_core::crypto::{os_rng, SigningKey, X25519Secret};
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("pass")), None);
        let mut ks = Keystore::new();
        d.save_keystore(&ks).expect("save");
        let rng = &mut os_rng();
        let server = Keys {
            sign: SigningKey::generate(rng),
            enc: X25519Secret::generate(rng),
        };
        let session = SellerSession::from_parts(
            BindingKey::random(rng),
            server.peer(),
            b"bond".to_vec(),
            Timestamp(1_000),
            Timestamp(2_000),
        );
        d.keep_session(&mut ks, "pam", &session).expect("keep");
        let mut trust = TrustStore::new();
        let e = d
            .seller_session(&ks, &trust, "pam")
            .expect_err("her server is not pinned");
        assert!(e.to_string().contains("not pinned"), "{e}");
        trust
            .add(agora_pki::Party {
                name: "the server".into(),
                role: PartyRole::Server,
                key_id: server.id(),
                certificate: None,
                ed25519: Some(server.sign.verifying_key()),
                x25519: Some(server.enc.public()),
            })
            .expect("pin");
        let back = d.seller_session(&ks, &trust, "pam").expect("back");
        assert_eq!(back.id(), session.id());
        assert_eq!((back.from, back.until), (session.from, session.until));
        assert_eq!(back.bond(), b"bond");
        d.forget_session(&mut ks, "pam").expect("forget");
        assert!(d.seller_session(&ks, &trust, "pam").is_err());
        assert!(!tmp.path().join("cpo-sessions/pam.json").exists());
    }

    #[test]
    fn the_store_is_sealed_under_a_key_from_the_keystore_and_refused_under_another() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("pass")), None);
        let e = d.open_store(&Keystore::new()).expect_err("no node key");
        assert!(e.to_string().contains("no node key"), "{e}");
        let ks = node_keystore();
        // `agora init`: the store first, then the keystore saved.
        d.open_store(&ks).expect("init opens it");
        d.save_keystore(&ks).expect("save");
        // Another command: the key comes from the keystore on disk.
        let later = DataDir::new(tmp.path().to_owned(), Box::new(Fixed("pass")), None);
        let store = later.store().expect("opens under the keystore's key");
        let url = later.store_url().expect("url");
        assert!(Stores::open(&url, at_rest_key(&ks).expect("key")).is_ok());
        // Another data directory's keystore: another key, refused.
        let e = Stores::open(&url, at_rest_key(&node_keystore()).expect("key"))
            .expect_err("another node's key");
        assert!(
            e.to_string().contains("sealed under another at-rest key"),
            "{e}"
        );
        // The key is not the node key itself: the HKDF of its seed.
        let seed = ks
            .ed25519(&ed_name(names::SELF_KEY))
            .expect("node key")
            .to_seed();
        assert!(Stores::open(
            &url,
            AtRestKey::new(&agora_core::crypto::Secret::new(*seed))
        )
        .is_err());
        drop(store);
    }

    /// The env var that makes [`umask_child`] work in its directory.
    #[cfg(unix)]
    const UMASK_DIR_ENV: &str = "AGORA_CLIENT_UMASK_TEST_DIR";

    /// The child of [`the_lock_file_trust_store_and_session_file_are_0600_under_umask_022`]:
    /// this test binary run again by a shell under umask 022 (the umask is
    /// the process's: setting it here would change it for the tests
    /// running beside). Without the variable it returns at once.
    #[cfg(unix)]
    #[test]
    fn umask_child() {
        let Ok(dir) = std::env::var(UMASK_DIR_ENV) else {
            return;
        };
        let d = DataDir::new(PathBuf::from(dir), Box::new(Fixed("pass")), None);
        d.save_keystore(&node_keystore()).expect("save");
        d.save_trust(&TrustStore::new()).expect("trust");
        drop(d.lock_for_update().expect("lock"));
        write_private_file_atomic(&d.session_file("pam"), b"{}").expect("session file");
        drop(d.store().expect("store"));
        println!("UMASK CHILD WROTE");
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_trust_store_and_session_file_are_0600_under_umask_022() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        // A lock file as an older version made it.
        let lock = tmp.path().join("update.lock");
        std::fs::write(&lock, b"").expect("lock file");
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "datadir::tests::umask_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(UMASK_DIR_ENV, tmp.path())
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("UMASK CHILD WROTE"), "the child ran: {text}");
        for name in [
            "update.lock",
            "trust.toml",
            "keystore.toml",
            "cpo-sessions/pam.json",
            "agora.db",
        ] {
            let mode = std::fs::metadata(tmp.path().join(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
        }
    }
}
