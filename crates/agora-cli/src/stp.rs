//! `agora stp ...`: STP transactions (the Secure Transaction Protocol): a
//! party begins a transaction with another, either brings in more, they
//! exchange signed, hash-chained data messages under a send token, and each
//! commits or aborts with the commit authority; an escrow holds items until
//! the outcome; a proof bundle shows an arbiter in which order things were
//! said.
//!
//! What lives in the data directory:
//!
//! ```text
//! stp/ca.pem, stp/escrow.pem           identity certificates of the node's commit authority and escrow
//! stp/parties/<name>.pem               a registered party's identity certificate
//! stp/parties/<name>/<tid>-<peer>.sub  a party's subtransaction, in whichever step it is (mode 0600)
//! ```
//!
//! Messages between parties travel as files (`--out` writes one, `receive`
//! reads one): STP asks only for a reliable, ordered channel. The commit
//! authority and the escrow are the node's (`--node`), or, without it, the
//! data directory's, hosted in this process.

use crate::datadir::Ctx;
use crate::output::emit;
use agora_client::datadir::{check_name, read_at_most, role_keys};
use agora_client::stp::{Incoming, LocalStp, Progress, StpClient, StpTransport};
use agora_client::transport::NodeClient;
use agora_core::crypto::{os_rng, sha256, VerifyingKey, X25519Secret};
use agora_core::wire::{cose, decode};
use agora_core::{KeyId, Timestamp};
use agora_node::stp::{StpService, StpSpec};
use agora_pki::{Party as Pinned, PartyRole};
use agora_stp::escrow::open_release;
use agora_stp::msg::{Claim, Deposit, DepositReceipt};
use agora_stp::process::{Party, Received};
use agora_stp::Tid;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// The commit authority's key in the keystore.
pub const CA_KEY: &str = "stp-ca";
/// The escrow's key in the keystore.
pub const ESCROW_KEY: &str = "stp-escrow";

fn stp_dir(ctx: &Ctx) -> PathBuf {
    ctx.dir().join("stp")
}

fn parties_dir(ctx: &Ctx) -> PathBuf {
    stp_dir(ctx).join("parties")
}

/// `agora stp ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum StpCmd {
    /// Issue a party an identity certificate (from the node's identity CA)
    /// for its key (`agora key new NAME` first).
    Register {
        /// The party (a key in the keystore).
        name: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Begin a new transaction with another party; writes the Begin for it.
    Begin {
        #[command(flatten)]
        who: As,
        /// The other party: a registered name, or its certificate's PEM file.
        #[arg(long)]
        with: String,
        /// Hours until the commit authority aborts the transaction if it is
        /// still undecided.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// Where to write the Begin for the other party.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring another party into a transaction through your own open
    /// subtransaction; writes the Join for it.
    Join {
        #[command(flatten)]
        who: As,
        /// The transaction.
        #[arg(long)]
        tid: String,
        /// The party of your open subtransaction in it.
        #[arg(long)]
        via: String,
        /// The party to bring in.
        #[arg(long)]
        with: String,
        /// Where to write the Join for it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a message another party wrote: a Begin or Join (accepted unless
    /// --reject), Data (its payload printed, or written to --out) or End.
    Receive {
        #[command(flatten)]
        who: As,
        /// The message file.
        file: PathBuf,
        /// Reject a Begin or Join (which aborts the transaction).
        #[arg(long)]
        reject: bool,
        /// Write a Data message's payload here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send data to the other party of a subtransaction (you must hold the
    /// send token); writes the signed Data message.
    Send {
        #[command(flatten)]
        sub: Sub,
        /// The data, as text.
        text: Option<String>,
        /// The data, from a file.
        #[arg(long, conflicts_with = "text")]
        file: Option<PathBuf>,
        /// Hand the send token to the other party with it.
        #[arg(long)]
        pass: bool,
        /// Where to write the message.
        #[arg(long)]
        out: PathBuf,
    },
    /// End a subtransaction (you must hold the send token); writes the End.
    End {
        #[command(flatten)]
        sub: Sub,
        /// Where to write the message.
        #[arg(long)]
        out: PathBuf,
    },
    /// Commit a subtransaction with your final context (after End).
    Commit {
        #[command(flatten)]
        sub: Sub,
    },
    /// Abort a subtransaction, and with it the whole transaction.
    Abort {
        #[command(flatten)]
        sub: Sub,
    },
    /// A transaction's outcome at the commit authority, or pending.
    Status {
        /// The transaction: 32 hex digits, or a message file of it.
        tid: String,
    },
    /// Your subtransactions and their steps.
    List {
        #[command(flatten)]
        who: As,
    },
    /// Write a proof bundle of a committed subtransaction: its signed
    /// messages, the CA's outcome, inclusion proof and tree head.
    Prove {
        #[command(flatten)]
        sub: Sub,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof bundle offline, and that message I preceded message J.
    VerifyProof {
        /// The bundle.
        file: PathBuf,
        /// A message's number in the bundle (0 is the opening).
        #[arg(long, requires = "then")]
        first: Option<usize>,
        /// A later message's number.
        #[arg(long, requires = "first")]
        then: Option<usize>,
    },
    /// Hold items in escrow until a transaction's outcome.
    #[command(subcommand)]
    Escrow(EscrowCmd),
}

/// `agora stp escrow ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum EscrowCmd {
    /// Deposit an item for a transaction, to go to another party if it
    /// commits and back to you if it aborts.
    Deposit {
        #[command(flatten)]
        who: As,
        /// The transaction.
        #[arg(long)]
        tid: String,
        /// Who gets the item if the transaction commits.
        #[arg(long = "for")]
        recipient: String,
        /// The item's file.
        #[arg(long)]
        item: PathBuf,
        /// Where to write the escrow's signed receipt (hand it to the
        /// recipient: it names the deposit).
        #[arg(long)]
        out: PathBuf,
    },
    /// Claim a deposit with the transaction's outcome; writes the item.
    Claim {
        #[command(flatten)]
        who: As,
        /// The escrow's receipt of the deposit.
        #[arg(long)]
        receipt: PathBuf,
        /// Where to write the item.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The acting party.
#[derive(Clone, Debug, Args)]
pub struct As {
    /// The acting party (a registered name).
    #[arg(long = "as")]
    name: String,
}

/// A subtransaction: the acting party, the transaction and the other party.
#[derive(Clone, Debug, Args)]
pub struct Sub {
    #[command(flatten)]
    who: As,
    /// The transaction: 32 hex digits, or a message file of it (its Begin).
    #[arg(long)]
    tid: String,
    /// The other party of the subtransaction.
    #[arg(long)]
    with: String,
}

/// A transaction id: 32 hex digits, or a message file of the transaction
/// (the Begin, a Join, Data or End), whose TID is read without checking its
/// signature: it only selects this party's own subtransaction.
fn tid(s: &str) -> anyhow::Result<Tid> {
    use agora_core::wire::tags;
    use agora_stp::msg::{Begin, Data, End, Join};
    if let Ok(t) = Tid::from_hex(s.trim()) {
        return Ok(t);
    }
    let path = Path::new(s);
    if !path.is_file() {
        bail!("{s:?} is not a transaction id (32 hex digits) nor a message file of one");
    }
    let b = read_at_most(path, (agora_stp::msg::MAX_PAYLOAD_LEN + 4096) as u64)?;
    let what = || format!("{} is not an STP message", path.display());
    let tag = cose::peek_tag(&b).with_context(what)?;
    Ok(if tag == tags::STP_BEGIN {
        cose::peek_unverified::<Begin>(&b)?.tid
    } else if tag == tags::STP_JOIN {
        cose::peek_unverified::<Join>(&b)?.tid
    } else if tag == tags::STP_DATA {
        cose::peek_unverified::<Data>(&b)?.tid
    } else if tag == tags::STP_END {
        cose::peek_unverified::<End>(&b)?.tid
    } else {
        bail!(what())
    })
}

fn read_pem_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = read_at_most(path, 64 * 1024)?;
    let text = String::from_utf8(text).with_context(|| format!("{} is not PEM", path.display()))?;
    agora_pki::pem::decode(&text, "CERTIFICATE")
        .with_context(|| format!("{} holds no certificate", path.display()))
}

/// A party's UID from a registered name or a certificate file.
fn peer_uid(ctx: &Ctx, who: &str) -> anyhow::Result<KeyId> {
    let path = Path::new(who);
    let der = if path.is_file() {
        read_pem_cert(path)?
    } else {
        check_name(who)?;
        let p = parties_dir(ctx).join(format!("{who}.pem"));
        read_pem_cert(&p).with_context(|| {
            format!("{who} is not a registered party here (agora stp register {who}), nor a certificate file")
        })?
    };
    Ok(agora_pki::parse_certificate(&der)?.public_key.key_id())
}

/// The pinned key of the single party of `role` in the trust store.
fn pinned_key(ctx: &Ctx, role: PartyRole, what: &str) -> anyhow::Result<VerifyingKey> {
    let trust = ctx.load_trust()?;
    let key = trust.by_role(role).find_map(Pinned::verifying_key);
    key.with_context(|| format!("the trust store pins no {what} (`agora up` makes one)"))
}

pub(crate) fn identity_trust(ctx: &Ctx) -> anyhow::Result<agora_pki::IdentityTrust> {
    use agora_node::speed::SpeedTrustSource;
    crate::speed::DirSpeedTrust {
        trust_path: ctx.trust_path(),
        crl_dir: ctx.crl_dir(),
    }
    .load()
    .map_err(|e| anyhow::anyhow!("loading the trust: {e}"))
}

/// The acting party: its key, certificate, trust and pinned CA.
fn party(ctx: &Ctx, name: &str) -> anyhow::Result<Party> {
    check_name(name)?;
    let ks = ctx.load_keystore()?;
    let keys = role_keys(&ks, name)
        .with_context(|| format!("no key {name} in the keystore (agora key new {name})"))?;
    let cert = read_pem_cert(&parties_dir(ctx).join(format!("{name}.pem")))
        .with_context(|| format!("{name} is not registered (agora stp register {name})"))?;
    Ok(Party {
        sign: keys.sign,
        cert,
        trust: identity_trust(ctx)?,
        ca: pinned_key(ctx, PartyRole::CommitAuthority, "commit authority")?,
    })
}

/// The node's STP service on this data directory (the roles hosted here
/// when no --node is given, and by `agora up`).
pub fn stp_service(ctx: &Ctx, ks: &agora_pki::Keystore) -> anyhow::Result<StpService> {
    let ca_key = role_keys(ks, CA_KEY)
        .context("the keystore holds no commit authority key (`agora up` makes it)")?
        .sign;
    let escrow_key = role_keys(ks, ESCROW_KEY).ok().map(|k| k.sign);
    let store = ctx.store()?;
    StpService::new(StpSpec {
        ca_key,
        escrow_key,
        trust: Box::new(crate::speed::DirSpeedTrust {
            trust_path: ctx.trust_path(),
            crl_dir: ctx.crl_dir(),
        }),
        log: store.commit_log(),
        escrow: store.escrow(),
    })
    .map_err(|e| anyhow::anyhow!("loading the trust: {e}"))
}

/// Makes the commit authority and the escrow of this data directory, once
/// (for `agora up`): their keys, identity certificates and trust entries.
pub fn setup(ctx: &Ctx) -> anyhow::Result<Vec<String>> {
    let mut made = Vec::new();
    let ks = ctx.load_keystore()?;
    let have_ca = role_keys(&ks, CA_KEY).is_ok();
    let have_escrow = role_keys(&ks, ESCROW_KEY).is_ok();
    drop(ks);
    if !have_ca {
        crate::speed::make_party_in(
            ctx,
            &stp_dir(ctx),
            CA_KEY,
            "agora-commit-authority",
            PartyRole::CommitAuthority,
            "ca.pem",
        )?;
        made.push("STP commit authority".to_owned());
    }
    if !have_escrow {
        crate::speed::make_party_in(
            ctx,
            &stp_dir(ctx),
            ESCROW_KEY,
            "agora-escrow",
            PartyRole::Escrow,
            "escrow.pem",
        )?;
        made.push("STP escrow".to_owned());
    }
    Ok(made)
}

enum Via {
    Node(NodeClient),
    Local(LocalStp),
}

impl StpTransport for Via {
    fn to_ca(&self, body: &[u8]) -> Result<Vec<u8>, agora_client::transport::ClientError> {
        match self {
            Via::Node(n) => n.to_ca(body),
            Via::Local(l) => l.to_ca(body),
        }
    }
    fn to_escrow(&self, body: &[u8]) -> Result<Vec<u8>, agora_client::transport::ClientError> {
        match self {
            Via::Node(n) => n.to_escrow(body),
            Via::Local(l) => l.to_escrow(body),
        }
    }
    fn transaction(
        &self,
        tid: &Tid,
    ) -> Result<serde_json::Value, agora_client::transport::ClientError> {
        match self {
            Via::Node(n) => n.transaction(tid),
            Via::Local(l) => l.transaction(tid),
        }
    }
}

fn via(ctx: &Ctx) -> anyhow::Result<Via> {
    Ok(match &ctx.node {
        Some(url) => Via::Node(NodeClient::new(url)?),
        None => {
            let ks = ctx.load_keystore()?;
            Via::Local(LocalStp::new(stp_service(ctx, &ks)?))
        }
    })
}

fn write_out(ctx: &Ctx, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    ctx.check_out(path)?;
    crate::datadir::write_file_atomic(path, bytes)
}

fn progress_words(p: &Progress) -> String {
    match p {
        Progress::AwaitingStart => "waiting for the other party to accept".into(),
        Progress::Open { token: true, .. } => "open; you hold the send token".into(),
        Progress::Open { ended: true, .. } => "ended; commit or abort".into(),
        Progress::Open { .. } => "open; the other party holds the send token".into(),
        Progress::AwaitingOutcome => {
            "decided by you; the transaction waits for the other decisions".into()
        }
        Progress::Decided(d) if d.committed() => "the transaction COMMITTED".into(),
        Progress::Decided(d) => format!(
            "the transaction ABORTED ({})",
            agora_stp::rules::AbortReason::from_code(d.outcome.leaf.outcome)
                .map_or("?", |r| r.as_str())
        ),
    }
}

fn progress_code(p: &Progress) -> &'static str {
    match p {
        Progress::AwaitingStart => "awaiting-start",
        Progress::Open { ended: true, .. } => "ended",
        Progress::Open { .. } => "open",
        Progress::AwaitingOutcome => "awaiting-outcome",
        Progress::Decided(d) if d.committed() => "committed",
        Progress::Decided(_) => "aborted",
    }
}

/// Runs an `agora stp` command.
pub fn run(ctx: &Ctx, cmd: &StpCmd) -> anyhow::Result<()> {
    let now = ctx.now();
    match cmd.clone() {
        StpCmd::Register { name, days } => register(ctx, &name, days),
        StpCmd::Begin {
            who,
            with,
            hours,
            out,
        } => {
            ctx.check_out(&out)?;
            let p = party(ctx, &who.name)?;
            let peer = peer_uid(ctx, &with)?;
            let t = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&who.name), &t);
            let deadline = now.plus_secs(hours.max(1) * 3600);
            let (tid, opening, progress) = c.begin(&mut os_rng(), now, peer, deadline)?;
            write_out(ctx, &out, &opening)?;
            emit(
                ctx.json,
                &format!(
                    "began transaction {tid} with {with}\n  Begin for {with}  {}\n  {}",
                    out.display(),
                    progress_words(&progress)
                ),
                serde_json::json!({"tid": tid.to_string(), "begin": out, "step": progress_code(&progress)}),
            );
            Ok(())
        }
        StpCmd::Join {
            who,
            tid: t,
            via: through,
            with,
            out,
        } => {
            ctx.check_out(&out)?;
            let p = party(ctx, &who.name)?;
            let tid = tid(&t)?;
            let via_uid = peer_uid(ctx, &through)?;
            let peer = peer_uid(ctx, &with)?;
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&who.name), &tr);
            let (opening, progress) = c.join(&mut os_rng(), now, &tid, &via_uid, peer)?;
            write_out(ctx, &out, &opening)?;
            emit(
                ctx.json,
                &format!(
                    "brought {with} into transaction {tid}\n  Join for {with}  {}\n  {}",
                    out.display(),
                    progress_words(&progress)
                ),
                serde_json::json!({"tid": tid.to_string(), "join": out, "step": progress_code(&progress)}),
            );
            Ok(())
        }
        StpCmd::Receive {
            who,
            file,
            reject,
            out,
        } => {
            if let Some(o) = &out {
                ctx.check_out(o)?;
            }
            let p = party(ctx, &who.name)?;
            let bytes = read_at_most(&file, (agora_stp::msg::MAX_PAYLOAD_LEN + 4096) as u64)?;
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&who.name), &tr);
            match c.receive(&mut os_rng(), now, &bytes, !reject)? {
                Incoming::Invitation { opening, progress } => {
                    let from = if opening.initiator_name.is_empty() {
                        opening.initiator.to_string()
                    } else {
                        opening.initiator_name.clone()
                    };
                    let what = if opening.via.is_some() {
                        "Join"
                    } else {
                        "Begin"
                    };
                    let step = progress.as_ref().map_or("rejected", progress_code);
                    let text = match &progress {
                        None => format!("rejected the {what} of {from} for transaction {}: it aborts", opening.tid),
                        Some(p) => format!(
                            "accepted the {what} of {from} for transaction {}\n  deadline  {}\n  {}",
                            opening.tid,
                            crate::cert::fmt_time(opening.deadline),
                            progress_words(p)
                        ),
                    };
                    emit(
                        ctx.json,
                        &text,
                        serde_json::json!({"tid": opening.tid.to_string(), "from": from, "step": step}),
                    );
                }
                Incoming::Message(Received::Data { payload, token }) => {
                    let token_words = if token {
                        "; you hold the send token now"
                    } else {
                        ""
                    };
                    match &out {
                        Some(o) => {
                            write_out(ctx, o, &payload)?;
                            emit(
                                ctx.json,
                                &format!(
                                    "data ({} bytes) written to {}{token_words}",
                                    payload.len(),
                                    o.display()
                                ),
                                serde_json::json!({"bytes": payload.len(), "out": o, "token": token}),
                            );
                        }
                        None => emit(
                            ctx.json,
                            &format!(
                                "{}{}",
                                String::from_utf8_lossy(&payload),
                                token_words.replace("; ", "\n(") + if token { ")" } else { "" }
                            ),
                            serde_json::json!({"data": String::from_utf8_lossy(&payload), "token": token}),
                        ),
                    }
                }
                Incoming::Message(Received::End) => emit(
                    ctx.json,
                    "the other party ended the subtransaction: commit or abort",
                    serde_json::json!({"end": true}),
                ),
            }
            Ok(())
        }
        StpCmd::Send {
            sub,
            text,
            file,
            pass,
            out,
        } => {
            ctx.check_out(&out)?;
            let payload = match (text, file) {
                (Some(t), None) => t.into_bytes(),
                (None, Some(f)) => read_at_most(&f, (agora_stp::msg::MAX_PAYLOAD_LEN - 16) as u64)?,
                _ => bail!("give the data as text or with --file"),
            };
            let (p, t, peer) = (
                party(ctx, &sub.who.name)?,
                tid(&sub.tid)?,
                peer_uid(ctx, &sub.with)?,
            );
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&sub.who.name), &tr);
            let m = c.send(now, &t, &peer, &payload, pass)?;
            write_out(ctx, &out, &m)?;
            let passed = if pass {
                "; the send token goes with it"
            } else {
                ""
            };
            emit(
                ctx.json,
                &format!("Data for {} written to {}{passed}", sub.with, out.display()),
                serde_json::json!({"out": out, "pass": pass}),
            );
            Ok(())
        }
        StpCmd::End { sub, out } => {
            ctx.check_out(&out)?;
            let (p, t, peer) = (
                party(ctx, &sub.who.name)?,
                tid(&sub.tid)?,
                peer_uid(ctx, &sub.with)?,
            );
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&sub.who.name), &tr);
            let m = c.end(now, &t, &peer)?;
            write_out(ctx, &out, &m)?;
            emit(
                ctx.json,
                &format!("End for {} written to {}", sub.with, out.display()),
                serde_json::json!({"out": out}),
            );
            Ok(())
        }
        StpCmd::Commit { sub } => decide(ctx, now, &sub, true),
        StpCmd::Abort { sub } => decide(ctx, now, &sub, false),
        StpCmd::Status { tid: t } => {
            let t = tid(&t)?;
            let json = via(ctx)?.transaction(&t)?;
            let state = json["state"].as_str().unwrap_or("?").to_owned();
            let text = match state.as_str() {
                "pending" if json["known"] == false => {
                    format!("transaction {t}: unknown to the commit authority")
                }
                "pending" => format!("transaction {t}: pending"),
                s => {
                    let reason = json["reason"]
                        .as_str()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    format!(
                        "transaction {t}: {}{reason}\n  subtransactions  {}\n  log leaf         {} of {}",
                        s.to_uppercase(),
                        json["subtransactions"].as_array().map_or(0, Vec::len),
                        json["leaf_index"],
                        json["tree_size"],
                    )
                }
            };
            emit(ctx.json, &text, json);
            Ok(())
        }
        StpCmd::List { who } => {
            let p = party(ctx, &who.name)?;
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&who.name), &tr);
            let subs = c.list(now)?;
            let mut text = String::new();
            for s in &subs {
                text.push_str(&format!(
                    "{}  with {}  {}\n",
                    s.tid,
                    &s.peer.to_string()[..16],
                    s.step
                ));
            }
            if subs.is_empty() {
                text.push_str("no subtransactions\n");
            }
            emit(
                ctx.json,
                text.trim_end(),
                serde_json::json!(subs
                    .iter()
                    .map(|s| serde_json::json!({
                        "tid": s.tid.to_string(), "peer": s.peer.to_string(), "step": s.step,
                    }))
                    .collect::<Vec<_>>()),
            );
            Ok(())
        }
        StpCmd::Prove { sub, out } => {
            ctx.check_out(&out)?;
            let (p, t, peer) = (
                party(ctx, &sub.who.name)?,
                tid(&sub.tid)?,
                peer_uid(ctx, &sub.with)?,
            );
            let tr = via(ctx)?;
            let c = StpClient::new(&p, &parties_dir(ctx).join(&sub.who.name), &tr);
            let bundle = c.prove(now, &t, &peer)?;
            write_out(ctx, &out, &bundle)?;
            emit(
                ctx.json,
                &format!(
                    "proof bundle of the subtransaction with {} written to {}",
                    sub.with,
                    out.display()
                ),
                serde_json::json!({"out": out}),
            );
            Ok(())
        }
        StpCmd::VerifyProof { file, first, then } => verify_proof(ctx, now, &file, first, then),
        StpCmd::Escrow(e) => escrow(ctx, now, e),
    }
}

fn register(ctx: &Ctx, name: &str, days: u64) -> anyhow::Result<()> {
    check_name(name)?;
    let ks = ctx.load_keystore()?;
    let keys = role_keys(&ks, name)
        .with_context(|| format!("make the party's key pair first: agora key new {name}"))?;
    drop(ks);
    let path = parties_dir(ctx).join(format!("{name}.pem"));
    if path.exists() {
        bail!(
            "{name} is registered already ({}); nothing was issued",
            path.display()
        );
    }
    let der = crate::speed::issue_identity(ctx, name, PartyRole::Customer, &keys, days)?;
    crate::datadir::write_file_atomic(
        &path,
        agora_pki::pem::encode("CERTIFICATE", &der).as_bytes(),
    )?;
    emit(
        ctx.json,
        &format!(
            "registered STP party {name}\n  certificate  {}",
            path.display()
        ),
        serde_json::json!({"party": name, "certificate": path, "uid": keys.id().to_string()}),
    );
    Ok(())
}

fn decide(ctx: &Ctx, now: Timestamp, sub: &Sub, commit: bool) -> anyhow::Result<()> {
    let (p, t, peer) = (
        party(ctx, &sub.who.name)?,
        tid(&sub.tid)?,
        peer_uid(ctx, &sub.with)?,
    );
    let tr = via(ctx)?;
    let c = StpClient::new(&p, &parties_dir(ctx).join(&sub.who.name), &tr);
    let progress = c.decide(now, &t, &peer, commit)?;
    let verb = if commit { "committed" } else { "aborted" };
    emit(
        ctx.json,
        &format!(
            "{verb} the subtransaction with {} in {t}\n  {}",
            sub.with,
            progress_words(&progress)
        ),
        serde_json::json!({"tid": t.to_string(), "step": progress_code(&progress)}),
    );
    Ok(())
}

fn verify_proof(
    ctx: &Ctx,
    now: Timestamp,
    file: &Path,
    first: Option<usize>,
    then: Option<usize>,
) -> anyhow::Result<()> {
    let bytes = read_at_most(file, agora_core::wire::MAX_MESSAGE_LEN as u64)?;
    let ca = pinned_key(ctx, PartyRole::CommitAuthority, "commit authority")?;
    let v = agora_stp::bundle::verify_bundle(&bytes, &identity_trust(ctx)?, &ca, now)?;
    let mut text = format!(
        "proof bundle OK: transaction {} committed; {} messages in this order:\n",
        v.tid(),
        v.messages().len()
    );
    for m in v.messages() {
        let who = if m.sender == v.initiator().uid {
            &v.initiator().name
        } else {
            &v.invitee().name
        };
        text.push_str(&format!(
            "  {:>3}  {:<9} from {who}\n",
            m.index,
            m.tag.trim_start_matches("STP_")
        ));
    }
    let mut order = serde_json::Value::Null;
    if let (Some(i), Some(j)) = (first, then) {
        let before = v.preceded(i, j)?;
        if !before {
            bail!("message {i} did not precede message {j} in this transaction");
        }
        text.push_str(&format!("message {i} preceded message {j}"));
        order = serde_json::json!({"first": i, "then": j, "preceded": true});
    }
    emit(
        ctx.json,
        text.trim_end(),
        serde_json::json!({"tid": v.tid().to_string(), "messages": v.messages().len(), "order": order}),
    );
    Ok(())
}

fn escrow(ctx: &Ctx, now: Timestamp, cmd: EscrowCmd) -> anyhow::Result<()> {
    let escrow_key = pinned_key(ctx, PartyRole::Escrow, "escrow")?;
    match cmd {
        EscrowCmd::Deposit {
            who,
            tid: t,
            recipient,
            item,
            out,
        } => {
            ctx.check_out(&out)?;
            let p = party(ctx, &who.name)?;
            let t = tid(&t)?;
            let to = peer_uid(ctx, &recipient)?;
            let item_bytes = read_at_most(&item, agora_stp::msg::MAX_ITEM_LEN as u64)?;
            let deposit = cose::sign(
                &p.sign,
                &Deposit {
                    tid: t,
                    depositor_cert: p.cert.clone(),
                    recipient: to,
                    ca: p.ca_uid(),
                    item: item_bytes,
                },
            );
            let receipt = via(ctx)?.to_escrow(&deposit)?;
            let r: DepositReceipt = cose::verify(&receipt, &escrow_key)?;
            if r.deposit != sha256(&deposit) {
                bail!("the escrow's receipt is for another deposit");
            }
            write_out(ctx, &out, &receipt)?;
            let id = hex::encode(r.deposit);
            emit(
                ctx.json,
                &format!(
                    "{} held in escrow for transaction {t}, for {recipient} if it commits\n  receipt  {}",
                    item.display(),
                    out.display()
                ),
                serde_json::json!({"deposit": id, "tid": t.to_string(), "receipt": out}),
            );
            Ok(())
        }
        EscrowCmd::Claim { who, receipt, out } => {
            ctx.check_out(&out)?;
            let p = party(ctx, &who.name)?;
            let r: DepositReceipt = cose::verify(&read_at_most(&receipt, 4096)?, &escrow_key)
                .with_context(|| {
                    format!(
                        "{} is not a receipt of this node's escrow",
                        receipt.display()
                    )
                })?;
            let (id, t) = (r.deposit, r.tid);
            let tr = via(ctx)?;
            let status = tr.to_ca(&agora_core::wire::encode(&agora_stp::msg::Status {
                tid: t,
            }))?;
            if decode::<agora_stp::msg::Outcome>(&status).is_err() {
                bail!("transaction {t} is not decided yet: the escrow releases nothing before its outcome");
            }
            let reply = X25519Secret::generate(&mut os_rng());
            let claim = cose::sign(
                &p.sign,
                &Claim {
                    deposit: id,
                    claimant_cert: p.cert.clone(),
                    outcome: status,
                    at: now,
                    reply_to: reply.public(),
                },
            );
            let sealed = tr.to_escrow(&claim)?;
            let release = open_release(&sealed, &reply, &escrow_key)?;
            write_out(ctx, &out, &release.item)?;
            let how = if release.returned {
                "returned to you: the transaction aborted"
            } else {
                "released to you: the transaction committed"
            };
            emit(
                ctx.json,
                &format!("{} ({} bytes) {how}", out.display(), release.item.len()),
                serde_json::json!({"out": out, "returned": release.returned}),
            );
            Ok(())
        }
    }
}
