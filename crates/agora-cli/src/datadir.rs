//! The command context over agora-client's data directory
//! (`agora_client::datadir`), the passphrase as the CLI finds it, and
//! `agora init`, which makes a node's data directory.

use crate::Cli;
use agora_client::datadir::{DataDir, PassphraseSource};
use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_pki::Keystore;
use agora_pki::{Party, PartyRole, TrustStore};
use anyhow::{bail, Context};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub use agora_client::datadir::names::{ARBITER_KEY, SELF_KEY, SERVER_KEY};

/// Everything a command needs: the data directory (agora-client's
/// [`DataDir`], which this derefs to), the output format, and the node.
#[derive(Debug)]
pub struct Ctx {
    data: DataDir,
    pub json: bool,
    /// `--force`: files that `--out` names may be replaced.
    pub force: bool,
    /// The node to talk to (`--node`, `$AGORA_NODE`); `None`: host the roles
    /// in this process, on the data directory.
    pub node: Option<String>,
}

impl std::ops::Deref for Ctx {
    type Target = DataDir;
    fn deref(&self) -> &DataDir {
        &self.data
    }
}

/// The keystore passphrase: `--passphrase-file`, else `$AGORA_PASSPHRASE`,
/// else a prompt if a person is at a terminal.
struct CliPassphrase {
    file: Option<PathBuf>,
}

impl PassphraseSource for CliPassphrase {
    fn passphrase(&self) -> Result<Zeroizing<String>, String> {
        if let Some(p) = &self.file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("reading passphrase file {}: {e}", p.display()))?;
            return Ok(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        if let Ok(p) = std::env::var("AGORA_PASSPHRASE") {
            return Ok(Zeroizing::new(p));
        }
        if std::io::stdin().is_terminal() {
            let p = rpassword::prompt_password("keystore passphrase: ")
                .map_err(|e| format!("reading the passphrase from the terminal: {e}"))?;
            return Ok(Zeroizing::new(p));
        }
        Err("no keystore passphrase: set AGORA_PASSPHRASE or pass --passphrase-file".into())
    }
}

impl Ctx {
    pub fn new(cli: &Cli) -> Ctx {
        Ctx {
            data: DataDir::new(
                cli.data_dir.clone(),
                Box::new(CliPassphrase {
                    file: cli.passphrase_file.clone(),
                }),
                cli.store.clone(),
            ),
            json: cli.json,
            force: cli.force,
            node: cli.node.clone(),
        }
    }

    /// `agora` with the global options this command was given that another
    /// command needs to reach the same state (the data directory unless it
    /// is the default, the node), then `args`: a command to print for the
    /// user to run, quoted for the shell.
    pub fn command(&self, args: &[&str]) -> String {
        let mut words = vec!["agora".to_owned()];
        if self.dir() != Path::new("agora-data") {
            words.push("--data-dir".into());
            words.push(crate::output::shell_quote(&self.dir().to_string_lossy()));
        }
        if let Some(url) = &self.node {
            words.push("--node".into());
            words.push(crate::output::shell_quote(url));
        }
        words.extend(args.iter().map(|a| crate::output::shell_quote(a)));
        words.join(" ")
    }

    /// [`crate::output::check_out`] under this command's `--force`.
    pub fn check_out(&self, path: &Path) -> anyhow::Result<()> {
        crate::output::check_out(path, self.force)
    }

    /// The wall clock: the CLI is a driver, so it may read it.
    pub fn now(&self) -> Timestamp {
        Timestamp::now_from_system_clock()
    }
}

/// Write `text` to `path` through a temporary file and a rename, so that a
/// crash leaves either the old or the new file.
pub fn write_file_atomic(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    Ok(agora_client::datadir::write_file_atomic(path, text)?)
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
                ctx.dir().display()
            ),
            serde_json::json!({ "data_dir": ctx.dir(), "node_key_id": id, "created": false }),
        );
        return Ok(());
    }
    let id = init_quiet(ctx)?;
    crate::output::emit(
        ctx.json,
        &format!(
            "created agora data directory {}\n  store      {}\n  keystore   {} (node key {id})\n  trust      {}\n\
             next: agora agency create <name>   (see agora --help)",
            ctx.dir().display(),
            ctx.store_url()?,
            ctx.keystore_path().display(),
            ctx.trust_path().display()
        ),
        serde_json::json!({ "data_dir": ctx.dir(), "node_key_id": id.to_string(), "created": true }),
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
    std::fs::create_dir_all(ctx.dir())
        .with_context(|| format!("creating {}", ctx.dir().display()))?;
    restrict_permissions(ctx.dir())?;
    // One maker at a time (`agora init` beside a starting `agora up`): under
    // the lock, a directory made meanwhile is kept, not made again over it.
    let _lock = ctx.lock_for_init()?;
    if ctx.keystore_path().exists() {
        let ks = ctx.load_keystore()?;
        return ks
            .ed25519(&crate::key::ed_name(SELF_KEY))
            .map(|k| k.key_id())
            .context("the keystore has no node key");
    }
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
    // Open the store once so that its schema exists (its secrets sealed
    // under a key derived from the node key just made).
    ctx.open_store(&ks)?;
    ctx.save_keystore(&ks)?;
    Ok(id)
}
