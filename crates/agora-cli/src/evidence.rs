//! `agora evidence verify | list`: signed evidence (COSE_Sign1 files) and the
//! hash-chained evidence archive of the data directory.

use crate::datadir::Ctx;
use agora_core::crypto::VerifyingKey;
use agora_core::wire;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::PathBuf;

/// Largest evidence file read, in bytes.
const MAX_EVIDENCE_LEN: u64 = 1024 * 1024;
/// Most archive entries `list` prints.
const MAX_LIST: usize = 10_000;

#[derive(Debug, Subcommand)]
pub enum EvidenceCmd {
    /// Verify a signed evidence file (COSE_Sign1, EdDSA), or with --archive
    /// the whole evidence archive's hash chain.
    #[command(
        after_help = "Examples:\n  agora evidence verify acceptance.cose --cert arbiter.pem\n  \
        agora evidence verify bound-cpo.cose          # signer looked up in the trust store by kid\n  \
        agora evidence verify --archive"
    )]
    Verify {
        /// The evidence file (binary COSE_Sign1, tagged).
        #[arg(required_unless_present = "archive")]
        file: Option<PathBuf>,
        /// The signer's Ed25519 public key (PEM).
        #[arg(long, conflicts_with = "cert")]
        key: Option<PathBuf>,
        /// The signer's certificate (PEM or DER); its key is used. Validate
        /// the certificate itself with `agora cert verify`.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Verify the evidence archive of the data directory instead.
        #[arg(long, conflicts_with_all = ["file", "key", "cert"])]
        archive: bool,
    },
    /// List the entries of the evidence archive.
    List {
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn signer_key(
    ctx: &Ctx,
    key: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    kid: &agora_core::KeyId,
) -> anyhow::Result<VerifyingKey> {
    if let Some(p) = key {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return Ok(agora_pki::pem::ed25519_from_public_pem(&text)?);
    }
    if let Some(p) = cert {
        let der = crate::cert::read_cert_der(p)?;
        return Ok(agora_pki::parse_certificate(&der)?.public_key);
    }
    let trust = ctx.load_trust()?;
    trust
        .by_key_id(kid)
        .and_then(|p| p.verifying_key())
        .with_context(|| format!("signer {kid} is not in the trust store: pass --key or --cert"))
}

pub fn run(ctx: &Ctx, cmd: &EvidenceCmd) -> anyhow::Result<()> {
    match cmd {
        EvidenceCmd::Verify {
            file: _,
            archive: true,
            ..
        } => {
            let store = ctx.store()?;
            let a = store.archive();
            let checked = a
                .verify()
                .map_err(|e| anyhow::anyhow!("evidence archive is broken: {e}"))?;
            let head = a.head()?;
            let head_hex = head.map(|(_, h)| hex::encode(h)).unwrap_or_default();
            crate::output::emit(
                ctx.json,
                &format!("evidence archive intact: {checked} entries, head {head_hex}"),
                serde_json::json!({ "valid": true, "entries": checked, "head": head_hex }),
            );
        }
        EvidenceCmd::Verify {
            file: Some(file),
            key,
            cert,
            ..
        } => {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(file)
                .with_context(|| format!("reading {}", file.display()))?
                .take(MAX_EVIDENCE_LEN + 1)
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > MAX_EVIDENCE_LEN {
                bail!("{} is larger than {MAX_EVIDENCE_LEN} bytes", file.display());
            }
            let kid = wire::cose::peek_kid(&bytes)
                .with_context(|| format!("{} is not agora COSE_Sign1 evidence", file.display()))?;
            let vk = signer_key(ctx, key, cert, &kid)?;
            let payload = wire::cose::verify_raw(&bytes, &vk)
                .with_context(|| format!("{} refused", file.display()))?;
            let tag = wire::peek_tag(&payload).ok();
            let what = tag
                .and_then(|t| t.name().map(|n| format!("{n} {t}")))
                .unwrap_or_else(|| "a payload that is not an agora message".into());
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}: valid signature by {} over {} ({} bytes)",
                    file.display(),
                    vk.key_id(),
                    what,
                    payload.len()
                ),
                serde_json::json!({
                    "valid": true,
                    "signer_key_id": vk.key_id().to_string(),
                    "message": tag.and_then(|t| t.name()),
                    "tag": tag.map(|t| [t.system, t.protocol, t.step]),
                    "payload_len": payload.len(),
                }),
            );
        }
        EvidenceCmd::Verify { file: None, .. } => bail!("name an evidence file, or pass --archive"),
        EvidenceCmd::List { from, limit } => {
            let store = ctx.store()?;
            let limit = (*limit).min(MAX_LIST);
            // One more than asked for: whether the listing is cut short.
            let mut entries = store.archive().entries(*from, limit + 1)?;
            let more = entries.len() > limit;
            entries.truncate(limit);
            let mut text = String::new();
            let mut rows = Vec::new();
            for e in &entries {
                text.push_str(&format!(
                    "{:>6}  {}  {:<24} {:>6} bytes  {}\n",
                    e.seq,
                    crate::cert::fmt_time(e.recorded_at),
                    e.kind,
                    e.payload.len(),
                    hex::encode(&e.hash[..8])
                ));
                rows.push(serde_json::json!({
                    "seq": e.seq,
                    "recorded_at": e.recorded_at.secs(),
                    "kind": e.kind,
                    "payload_len": e.payload.len(),
                    "hash": hex::encode(e.hash),
                }));
            }
            if entries.is_empty() {
                text.push_str("the evidence archive is empty");
            }
            if let (true, Some(last)) = (more, entries.last()) {
                text.push_str(&format!(
                    "listed {} entries; more follow: {}",
                    entries.len(),
                    ctx.command(&[
                        "evidence",
                        "list",
                        "--from",
                        &(last.seq + 1).to_string(),
                        "--limit",
                        &limit.to_string(),
                    ])
                ));
            }
            crate::output::emit(ctx.json, text.trim_end(), serde_json::Value::Array(rows));
        }
    }
    Ok(())
}
