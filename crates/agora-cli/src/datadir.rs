//! The data directory and what lives in it:
//!
//! ```text
//! <data-dir>/agora.db                   SQLite: evidence archive, agency registers, ...
//! <data-dir>/keystore.toml              private keys, encrypted (Argon2id + ChaCha20-Poly1305)
//! <data-dir>/trust.toml                 pinned well-known parties (agencies, arbiters, ...)
//! <data-dir>/agencies/<name>/agency.pem the certificate of each agency run here
//! <data-dir>/crls/<agency-key-id>.pem   the newest CRL of each agency known here
//! ```

use crate::Cli;
use agora_core::crypto::{Argon2Params, SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_pki::Keystore;
use agora_pki::{Party, PartyRole, TrustStore};
use agora_store::{StoreUrl, Stores};
use anyhow::{bail, Context};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Name of this node's own key pair in the keystore.
pub const SELF_KEY: &str = "self";
/// Name of the key pair of this node's CPO arbiter.
pub const ARBITER_KEY: &str = "arbiter";
/// Name of the key pair of this node's CPO server.
pub const SERVER_KEY: &str = "server";

/// Everything a command needs to reach the data directory.
#[derive(Debug)]
pub struct Ctx {
    pub data_dir: PathBuf,
    passphrase_file: Option<PathBuf>,
    pub json: bool,
    /// The node to talk to (`--node`, `$AGORA_NODE`); `None`: host the roles
    /// in this process, on the data directory.
    pub node: Option<String>,
    /// Where the state is (`--store`, `$AGORA_STORE`); `None`: the data
    /// directory's `sqlite:<data-dir>/agora.db`.
    store: Option<String>,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Ctx {
        Ctx {
            data_dir: cli.data_dir.clone(),
            passphrase_file: cli.passphrase_file.clone(),
            json: cli.json,
            node: cli.node.clone(),
            store: cli.store.clone(),
        }
    }

    /// Where the state is: `--store`, else the data directory's SQLite
    /// file.
    pub fn store_url(&self) -> anyhow::Result<StoreUrl> {
        match &self.store {
            None => Ok(StoreUrl::in_data_dir(&self.data_dir)),
            Some(url) => url.parse().with_context(|| format!("--store {url:?}")),
        }
    }
    pub fn keystore_path(&self) -> PathBuf {
        self.data_dir.join("keystore.toml")
    }
    pub fn trust_path(&self) -> PathBuf {
        self.data_dir.join("trust.toml")
    }
    pub fn agency_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("agencies").join(name)
    }
    pub fn crl_dir(&self) -> PathBuf {
        self.data_dir.join("crls")
    }

    /// The wall clock: the CLI is a driver, so it may read it.
    pub fn now(&self) -> Timestamp {
        Timestamp::now_from_system_clock()
    }

    /// Fails unless `agora init` has run here.
    pub fn require_initialised(&self) -> anyhow::Result<()> {
        if !self.keystore_path().exists() {
            bail!(
                "no agora data directory at {} (run `agora init`, or pass --data-dir)",
                self.data_dir.display()
            );
        }
        Ok(())
    }

    /// The keystore passphrase: --passphrase-file, else $AGORA_PASSPHRASE,
    /// else a prompt if a person is at a terminal.
    pub fn passphrase(&self) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = &self.passphrase_file {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading passphrase file {}", p.display()))?;
            return Ok(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        if let Ok(p) = std::env::var("AGORA_PASSPHRASE") {
            return Ok(Zeroizing::new(p));
        }
        if std::io::stdin().is_terminal() {
            let p = rpassword::prompt_password("keystore passphrase: ")
                .context("reading the passphrase from the terminal")?;
            return Ok(Zeroizing::new(p));
        }
        bail!("no keystore passphrase: set AGORA_PASSPHRASE or pass --passphrase-file")
    }

    /// Takes the data directory's update lock: held by a command from before
    /// it reads the keystore or trust store it will change until after it
    /// wrote them, so that two commands at once (two sellers opening
    /// sessions, say) cannot lose each other's changes. Released on drop.
    pub fn lock_for_update(&self) -> anyhow::Result<std::fs::File> {
        self.require_initialised()?;
        let path = self.data_dir.join("update.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(f)
    }

    pub fn load_keystore(&self) -> anyhow::Result<Keystore> {
        self.require_initialised()?;
        let pass = self.passphrase()?;
        Keystore::load(&self.keystore_path(), pass.as_bytes())
            .with_context(|| format!("opening keystore {}", self.keystore_path().display()))
    }

    pub fn save_keystore(&self, ks: &Keystore) -> anyhow::Result<()> {
        let pass = self.passphrase()?;
        ks.save(
            &self.keystore_path(),
            pass.as_bytes(),
            Argon2Params::INTERACTIVE,
            &mut agora_core::crypto::os_rng(),
        )
        .with_context(|| format!("writing keystore {}", self.keystore_path().display()))
    }

    pub fn load_trust(&self) -> anyhow::Result<TrustStore> {
        self.require_initialised()?;
        TrustStore::load(&self.trust_path())
            .with_context(|| format!("reading trust store {}", self.trust_path().display()))
    }

    pub fn save_trust(&self, t: &TrustStore) -> anyhow::Result<()> {
        t.save(&self.trust_path())
            .with_context(|| format!("writing trust store {}", self.trust_path().display()))
    }

    /// The store of this data directory (migrated on open), on the backend
    /// `--store` names.
    pub fn store(&self) -> anyhow::Result<Stores> {
        self.require_initialised()?;
        let url = self.store_url()?;
        Stores::open(&url).with_context(|| format!("opening the store {url}"))
    }
}

/// Write `text` to `path` through a temporary file and a rename, so that a
/// crash leaves either the old or the new file.
pub fn write_file_atomic(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    agora_node::pki::write_file_atomic(path, text)
        .with_context(|| format!("writing {}", path.display()))
}

/// `agora init`.
pub fn init(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.keystore_path().exists() {
        // Idempotent, but only for the owner: the passphrase must open it.
        let ks = ctx.load_keystore()?;
        let id = ks
            .ed25519(&crate::key::ed_name(SELF_KEY))
            .map(|k| k.key_id().to_string())
            .unwrap_or_default();
        crate::output::emit(
            ctx.json,
            &format!(
                "{} is already an agora data directory (node key {id}); nothing to do",
                ctx.data_dir.display()
            ),
            serde_json::json!({ "data_dir": ctx.data_dir, "node_key_id": id, "created": false }),
        );
        return Ok(());
    }
    let id = init_quiet(ctx)?;
    crate::output::emit(
        ctx.json,
        &format!(
            "created agora data directory {}\n  store      {}\n  keystore   {} (node key {id})\n  trust      {}\n\
             next: agora agency create <name>   (see agora --help)",
            ctx.data_dir.display(),
            ctx.store_url()?,
            ctx.keystore_path().display(),
            ctx.trust_path().display()
        ),
        serde_json::json!({ "data_dir": ctx.data_dir, "node_key_id": id.to_string(), "created": true }),
    );
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting permissions of {}", dir.display()))
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Creates the data directory (database, keystore with the node's own keys
/// and its CPO arbiter and server keys, trust store pinning them); returns
/// the node key's id.
pub fn init_quiet(ctx: &Ctx) -> anyhow::Result<agora_core::KeyId> {
    let pass = ctx.passphrase()?;
    if pass.len() < 4 {
        bail!("the keystore passphrase must be at least 4 characters");
    }
    std::fs::create_dir_all(&ctx.data_dir)
        .with_context(|| format!("creating {}", ctx.data_dir.display()))?;
    restrict_permissions(&ctx.data_dir)?;
    let mut rng = agora_core::crypto::os_rng();
    let sign = SigningKey::generate(&mut rng);
    let id = sign.key_id();
    let mut ks = Keystore::new();
    ks.insert_ed25519(&crate::key::ed_name(SELF_KEY), sign)?;
    ks.insert_x25519(
        &crate::key::x_name(SELF_KEY),
        X25519Secret::generate(&mut rng),
    )?;
    // The node's CPO arbiter and CPO server: their own key pairs, pinned in
    // the trust store as the well-known parties buyers and sellers address.
    let mut trust = TrustStore::new();
    for (name, role) in [
        (ARBITER_KEY, PartyRole::Arbiter),
        (SERVER_KEY, PartyRole::Server),
    ] {
        let sign = SigningKey::generate(&mut rng);
        let enc = X25519Secret::generate(&mut rng);
        trust.add(Party {
            name: format!("this node's {name}"),
            role,
            key_id: sign.key_id(),
            certificate: None,
            ed25519: Some(sign.verifying_key()),
            x25519: Some(enc.public()),
        })?;
        ks.insert_ed25519(&crate::key::ed_name(name), sign)?;
        ks.insert_x25519(&crate::key::x_name(name), enc)?;
    }
    ctx.save_trust(&trust)?;
    // Open the store once so that its schema exists.
    let url = ctx.store_url()?;
    Stores::open(&url).with_context(|| format!("creating the store {url}"))?;
    ctx.save_keystore(&ks)?;
    Ok(id)
}
