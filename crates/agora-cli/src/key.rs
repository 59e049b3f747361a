//! `agora key new | list | export`: key pairs in the keystore. A party's key
//! pair is an Ed25519 signing key (`<name>.ed25519`) and an X25519
//! encryption key (`<name>.x25519`).

use crate::datadir::Ctx;
use agora_core::crypto::{SigningKey, VerifyingKey, X25519Public, X25519Secret};
use agora_pki::Keystore;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make a new key pair (Ed25519 for signing, X25519 for encryption).
    #[command(after_help = "Example:\n  agora key new alice")]
    New {
        /// Name of the key pair: letters, digits, '-' and '_'.
        name: String,
    },
    /// List the key pairs in the keystore with their key ids.
    List,
    /// Print (or write) the public halves of a key pair as PEM.
    #[command(after_help = "Example:\n  agora key export alice --out-dir ./alice-public")]
    Export {
        /// Name of the key pair.
        name: String,
        /// Write NAME.ed25519.pem and NAME.x25519.pem here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

pub use agora_client::datadir::{check_name, ed_name, x_name};

/// The public halves of key pair `name`.
pub fn public_pair(ks: &Keystore, name: &str) -> anyhow::Result<(VerifyingKey, X25519Public)> {
    let ed = ks.ed25519(&ed_name(name)).with_context(|| {
        format!("no key pair named {name:?} in the keystore (agora key new {name})")
    })?;
    let x = ks
        .x25519(&x_name(name))
        .with_context(|| format!("key pair {name:?} has no X25519 key"))?;
    Ok((ed.verifying_key(), x.public()))
}

pub fn run(ctx: &Ctx, cmd: &KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::New { name } => {
            check_name(name)?;
            let _lock = ctx.lock_for_update()?;
            let mut ks = ctx.load_keystore()?;
            if ks.ed25519(&ed_name(name)).is_some() {
                bail!("a key pair named {name:?} already exists");
            }
            let mut rng = agora_core::crypto::os_rng();
            let sign = SigningKey::generate(&mut rng);
            let x = X25519Secret::generate(&mut rng);
            let (id, xid) = (sign.key_id(), x.public().key_id());
            ks.insert_ed25519(&ed_name(name), sign)?;
            ks.insert_x25519(&x_name(name), x)?;
            ctx.save_keystore(&ks)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "created key pair {name}\n  key id (Ed25519)  {id}\n  X25519 key id     {xid}"
                ),
                serde_json::json!({ "name": name, "key_id": id.to_string(), "x25519_key_id": xid.to_string() }),
            );
        }
        KeyCmd::List => {
            let ks = ctx.load_keystore()?;
            let mut rows = Vec::new();
            let mut text = String::new();
            for (n, _) in ks.list() {
                if let Some(base) = n.strip_suffix(".ed25519") {
                    if let Some(k) = ks.ed25519(n) {
                        text.push_str(&format!("{base:<24} {}\n", k.key_id()));
                        rows.push(
                            serde_json::json!({ "name": base, "key_id": k.key_id().to_string() }),
                        );
                    }
                }
            }
            crate::output::emit(ctx.json, text.trim_end(), serde_json::Value::Array(rows));
        }
        KeyCmd::Export { name, out_dir } => {
            let ks = ctx.load_keystore()?;
            let (ed, x) = public_pair(&ks, name)?;
            let ed_pem = agora_pki::pem::ed25519_public_pem(&ed);
            let x_pem = agora_pki::pem::x25519_public_pem(&x);
            match out_dir {
                Some(dir) => {
                    let (a, b) = (
                        dir.join(format!("{name}.ed25519.pem")),
                        dir.join(format!("{name}.x25519.pem")),
                    );
                    ctx.check_out(&a)?;
                    ctx.check_out(&b)?;
                    crate::datadir::write_file_atomic(&a, ed_pem.as_bytes())?;
                    crate::datadir::write_file_atomic(&b, x_pem.as_bytes())?;
                    crate::output::emit(
                        ctx.json,
                        &format!("wrote {} and {}", a.display(), b.display()),
                        serde_json::json!({ "ed25519": a, "x25519": b }),
                    );
                }
                None => crate::output::emit(
                    ctx.json,
                    &format!("{ed_pem}{x_pem}"),
                    serde_json::json!({ "ed25519": ed_pem, "x25519": x_pem, "key_id": ed.key_id().to_string() }),
                ),
            }
        }
    }
    Ok(())
}
