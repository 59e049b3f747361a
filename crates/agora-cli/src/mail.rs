//! `agora cpo mail ...`: protocols 1 (5) and 2 one message at a time,
//! through files, because the paper wants posting to work "with nothing
//! more than encrypted e-mail" (section 3.6). Each party runs its own
//! command on its own data directory when a message arrives; between
//! messages its protocol state is saved in `<data-dir>/cpo-mail/`. The
//! messages are the same sealed and signed envelopes as on any transport.
//!
//! ```text
//! buyer:   agora cpo mail start-approval book.ccpo --buyer bob --out m0.msg
//! arbiter: agora cpo mail arbiter m0.msg --out m1.msg
//! buyer:   agora cpo mail buyer m1.msg --buyer bob --out m2.msg
//! arbiter: agora cpo mail arbiter m2.msg --out m3.msg
//! buyer:   agora cpo mail buyer m3.msg --buyer bob --out book.acceptance
//! ```
//! and the same with `start-post` and `server` for protocol 2.
//!
//! The buyer's steps take the arbiter's and the server's keys from the trust
//! store, as `agora cpo approve` and `post` do. The arbiter's and the
//! server's steps are this data directory's own roles, whatever `--node`
//! says: the file is the transport here. They do not go through the node's
//! `CpoService`, whose pending exchanges live in one process's memory for
//! minutes; a run by e-mail spans processes and days, so its pending states
//! are saved to files between messages instead.

use crate::cpo::{arbiter_policy, bond_trust, keys, local_server, pinned, read_limited};
use crate::datadir::{Ctx, ARBITER_KEY};
use agora_core::ports::EvidenceArchive;
use agora_core::wire::{envelope, tags, Tag};
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::buyer::{
    self, Acceptance, ExpectArbiterAcceptance, ExpectArbiterChallenge, ExpectPostChallenge,
    ExpectPosted,
};
use agora_cpo::server::{check_acceptance, PendingPost};
use agora_cpo::{Bidding, FirstCome, Variant};
use agora_pki::PartyRole;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// How long a party waits for the next message of a run by e-mail: a week
/// (the in-process default is five minutes).
pub const MAIL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Most saved runs one party keeps of one kind.
const MAX_SAVED_RUNS: usize = 1000;

#[derive(Debug, Subcommand)]
pub enum MailCmd {
    /// Buyer: start protocol 1 (5 with --bidding): write M_0 for the arbiter.
    StartApproval {
        /// The CCPO file.
        ccpo: PathBuf,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// The bidding variant (protocol 5).
        #[arg(long)]
        bidding: bool,
        /// Additional terms for the arbiter.
        #[arg(long, default_value = "")]
        additional_terms: String,
        /// Write M_0 here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Buyer: start protocol 2 with an acceptance: write M_0 for the server.
    StartPost {
        /// The ARBITER_ACCEPTANCE file.
        acceptance: PathBuf,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Write M_0 here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Buyer: handle a message from the arbiter or the server; writes the
    /// next message, or at the end the acceptance or the posted CPO.
    Buyer {
        /// The message received.
        message: PathBuf,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Write the answer (or the result) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// This node's arbiter: handle a message from a buyer.
    Arbiter {
        /// The message received.
        message: PathBuf,
        /// Write the answer here.
        #[arg(long)]
        out: PathBuf,
    },
    /// This node's server: handle a message from a buyer.
    Server {
        /// The message received.
        message: PathBuf,
        /// Write the answer here.
        #[arg(long)]
        out: PathBuf,
    },
}

fn dir(ctx: &Ctx, role: &str) -> PathBuf {
    ctx.data_dir.join("cpo-mail").join(role)
}

/// Saves a state of `kind` under `role` with a fresh random name.
fn save(ctx: &Ctx, role: &str, kind: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let d = dir(ctx, role);
    let existing = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
    if existing >= MAX_SAVED_RUNS {
        bail!(
            "{} holds {MAX_SAVED_RUNS} runs in progress already",
            d.display()
        );
    }
    let name: [u8; 8] = agora_core::crypto::random_bytes(&mut agora_core::crypto::os_rng());
    let path = d.join(format!("{kind}-{}.state", hex::encode(name)));
    crate::datadir::write_file_atomic(&path, bytes)?;
    Ok(path)
}

/// Offers `message` to every saved state of `kind`; the first that accepts
/// it is used up (its file removed) and its result returned.
fn resume<T>(
    ctx: &Ctx,
    role: &str,
    kind: &str,
    mut step: impl FnMut(&[u8]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let d = dir(ctx, role);
    let mut last: Option<anyhow::Error> = None;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        let is_kind = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{kind}-")));
        if !is_kind {
            continue;
        }
        let bytes = read_limited(&path)?;
        match step(&bytes) {
            Ok(t) => {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                return Ok(t);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.context("no run in progress accepts this message")),
        None => bail!(
            "no run in progress expects this message (nothing saved under {})",
            d.display()
        ),
    }
}

fn tag_of(path: &Path) -> anyhow::Result<(Tag, Vec<u8>)> {
    let bytes = read_limited(path)?;
    let tag = envelope::peek_tag(&bytes)
        .with_context(|| format!("{} is not an agora message", path.display()))?;
    Ok((tag, bytes))
}

fn done(ctx: &Ctx, what: &str, out: &Path) {
    crate::output::emit(
        ctx.json,
        &format!("{what}: written to {}", out.display()),
        serde_json::json!({ "result": what, "file": out }),
    );
}

fn start_approval<V: Variant>(
    ctx: &Ctx,
    ccpo: agora_cpo::Ccpo,
    buyer: &str,
    terms: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let bob = keys(&ks, buyer)?;
    let trust = ctx.load_trust()?;
    let alice = pinned(
        &trust,
        PartyRole::Arbiter,
        &ccpo.arbiter,
        "the CCPO's arbiter",
    )?;
    let (m0, state) =
        buyer::request_approval::<V>(&bob, &mut agora_core::crypto::os_rng(), ccpo, terms, &alice)?;
    save(
        ctx,
        &format!("buyer-{buyer}"),
        &format!("challenge{}", V::APPROVAL_PROTOCOL),
        &state.to_bytes(),
    )?;
    crate::datadir::write_file_atomic(out, &m0)?;
    done(ctx, "M_0 for the arbiter", out);
    Ok(())
}

fn buyer_on_challenge<V: Variant>(
    ctx: &Ctx,
    buyer: &str,
    msg: &[u8],
    out: &Path,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let bob = keys(&ks, buyer)?;
    let role = format!("buyer-{buyer}");
    let next = resume(
        ctx,
        &role,
        &format!("challenge{}", V::APPROVAL_PROTOCOL),
        |b| {
            let s = ExpectArbiterChallenge::<V>::from_bytes(b)?;
            Ok(s.handle(&bob, &mut agora_core::crypto::os_rng(), msg)?)
        },
    )?;
    save(
        ctx,
        &role,
        &format!("acceptance{}", V::APPROVAL_PROTOCOL),
        &next.1.to_bytes(),
    )?;
    crate::datadir::write_file_atomic(out, &next.0)?;
    done(ctx, "M_2 for the arbiter", out);
    Ok(())
}

fn buyer_on_acceptance<V: Variant>(
    ctx: &Ctx,
    buyer: &str,
    msg: &[u8],
    out: &Path,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let bob = keys(&ks, buyer)?;
    let now = ctx.now();
    let acc: Acceptance = resume(
        ctx,
        &format!("buyer-{buyer}"),
        &format!("acceptance{}", V::APPROVAL_PROTOCOL),
        |b| {
            let s = ExpectArbiterAcceptance::<V>::from_bytes(b)?;
            Ok(s.handle(&bob, now, msg)?)
        },
    )?;
    crate::datadir::write_file_atomic(out, &acc.signed)?;
    done(ctx, "ARBITER_ACCEPTANCE", out);
    Ok(())
}

fn arbiter_on_request<V: Variant>(
    ctx: &Ctx,
    arbiter: &Arbiter,
    msg: &[u8],
    out: &Path,
) -> anyhow::Result<()> {
    let (m1, pending) = arbiter
        .handle_request::<V>(&mut agora_core::crypto::os_rng(), ctx.now(), msg)
        .context("the arbiter refused")?;
    save(
        ctx,
        "arbiter",
        &format!("pending{}", V::APPROVAL_PROTOCOL),
        &pending.to_bytes(),
    )?;
    crate::datadir::write_file_atomic(out, &m1)?;
    done(ctx, "M_1 for the buyer", out);
    Ok(())
}

fn arbiter_on_response<V: Variant>(
    ctx: &Ctx,
    arbiter: &Arbiter,
    msg: &[u8],
    out: &Path,
) -> anyhow::Result<()> {
    let now = ctx.now();
    let issued = resume(
        ctx,
        "arbiter",
        &format!("pending{}", V::APPROVAL_PROTOCOL),
        |b| {
            let p = PendingApproval::<V>::from_bytes(b)?;
            Ok(p.handle_response(arbiter, &mut agora_core::crypto::os_rng(), now, msg)?)
        },
    )?;
    ctx.store()?
        .archive()
        .append("cpo/arbiter-acceptance", &issued.acceptance, now)?;
    crate::datadir::write_file_atomic(out, &issued.reply)?;
    done(ctx, "M_3 (the ARBITER_ACCEPTANCE) for the buyer", out);
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: &MailCmd) -> anyhow::Result<()> {
    match cmd {
        MailCmd::StartApproval {
            ccpo,
            buyer,
            bidding,
            additional_terms,
            out,
        } => {
            let ccpo = crate::cpo::read_ccpo(ccpo)?;
            if *bidding {
                start_approval::<Bidding>(ctx, ccpo, buyer, additional_terms, out)
            } else {
                start_approval::<FirstCome>(ctx, ccpo, buyer, additional_terms, out)
            }
        }
        MailCmd::StartPost {
            acceptance,
            buyer,
            out,
        } => {
            let signed = read_limited(acceptance)?;
            let ks = ctx.load_keystore()?;
            let bob = keys(&ks, buyer)?;
            let trust = ctx.load_trust()?;
            let arbiters: Vec<_> = trust
                .by_role(PartyRole::Arbiter)
                .filter_map(|p| p.verifying_key())
                .collect();
            let checked =
                check_acceptance(&signed, &arbiters).context("not a valid ARBITER_ACCEPTANCE")?;
            let server = pinned(
                &trust,
                PartyRole::Server,
                &checked.server,
                "the acceptance's server",
            )?;
            let acc = Acceptance {
                signed,
                ccpo: checked.ccpo,
                t3: checked.t3,
                mode: checked.mode,
            };
            let (m0, state) =
                buyer::request_post(&bob, &mut agora_core::crypto::os_rng(), &acc, &server)?;
            save(
                ctx,
                &format!("buyer-{buyer}"),
                "post-challenge",
                &state.to_bytes(),
            )?;
            crate::datadir::write_file_atomic(out, &m0)?;
            done(ctx, "M_0 for the server", out);
            Ok(())
        }
        MailCmd::Buyer {
            message,
            buyer,
            out,
        } => {
            let (tag, msg) = tag_of(message)?;
            match tag {
                t if t == tags::CPO_ARBITER_CHALLENGE => {
                    buyer_on_challenge::<FirstCome>(ctx, buyer, &msg, out)
                }
                t if t == tags::CPO_BID_ARBITER_CHALLENGE => {
                    buyer_on_challenge::<Bidding>(ctx, buyer, &msg, out)
                }
                t if t == tags::CPO_ARBITER_ACCEPTANCE => {
                    buyer_on_acceptance::<FirstCome>(ctx, buyer, &msg, out)
                }
                t if t == tags::CPO_BID_ARBITER_ACCEPTANCE => {
                    buyer_on_acceptance::<Bidding>(ctx, buyer, &msg, out)
                }
                t if t == tags::CPO_POST_CHALLENGE => {
                    let ks = ctx.load_keystore()?;
                    let bob = keys(&ks, buyer)?;
                    let role = format!("buyer-{buyer}");
                    let (m2, next) = resume(ctx, &role, "post-challenge", |b| {
                        let s = ExpectPostChallenge::from_bytes(b)?;
                        Ok(s.handle(&bob, &mut agora_core::crypto::os_rng(), &msg)?)
                    })?;
                    save(ctx, &role, "posted", &next.to_bytes())?;
                    crate::datadir::write_file_atomic(out, &m2)?;
                    done(ctx, "M_2 for the server", out);
                    Ok(())
                }
                t if t == tags::CPO_POSTED => {
                    let ks = ctx.load_keystore()?;
                    let bob = keys(&ks, buyer)?;
                    let receipt = resume(ctx, &format!("buyer-{buyer}"), "posted", |b| {
                        let s = ExpectPosted::from_bytes(b)?;
                        Ok(s.handle(&bob, &msg)?)
                    })?;
                    crate::datadir::write_file_atomic(out, &receipt.signed)?;
                    done(ctx, "the posted CPO, signed by the server", out);
                    Ok(())
                }
                other => bail!(
                    "a buyer does not handle {} {other}",
                    other.name().unwrap_or("this message")
                ),
            }
        }
        MailCmd::Arbiter { message, out } => {
            let (tag, msg) = tag_of(message)?;
            let ks = ctx.load_keystore()?;
            let mut arbiter = Arbiter::new(
                keys(&ks, ARBITER_KEY)?,
                arbiter_policy(ctx)?,
                bond_trust(ctx)?,
            );
            arbiter.session_timeout_secs = MAIL_TIMEOUT_SECS;
            match tag {
                t if t == tags::CPO_ARBITER_REQUEST => {
                    arbiter_on_request::<FirstCome>(ctx, &arbiter, &msg, out)
                }
                t if t == tags::CPO_BID_ARBITER_REQUEST => {
                    arbiter_on_request::<Bidding>(ctx, &arbiter, &msg, out)
                }
                t if t == tags::CPO_ARBITER_RESPONSE => {
                    arbiter_on_response::<FirstCome>(ctx, &arbiter, &msg, out)
                }
                t if t == tags::CPO_BID_ARBITER_RESPONSE => {
                    arbiter_on_response::<Bidding>(ctx, &arbiter, &msg, out)
                }
                other => bail!(
                    "the arbiter does not handle {} {other}",
                    other.name().unwrap_or("this message")
                ),
            }
        }
        MailCmd::Server { message, out } => {
            let (tag, msg) = tag_of(message)?;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (mut server, _) = local_server(ctx, &ks, &store)?;
            server.session_timeout_secs = MAIL_TIMEOUT_SECS;
            let now = ctx.now();
            match tag {
                t if t == tags::CPO_POST_REQUEST => {
                    let (m1, pending) = server
                        .handle_post_request(&mut agora_core::crypto::os_rng(), now, &msg)
                        .context("the server refused")?;
                    save(ctx, "server", "pending-post", &pending.to_bytes())?;
                    crate::datadir::write_file_atomic(out, &m1)?;
                    done(ctx, "M_1 for the buyer", out);
                    Ok(())
                }
                t if t == tags::CPO_POST_RESPONSE => {
                    let posted = resume(ctx, "server", "pending-post", |b| {
                        let p = PendingPost::from_bytes(b)?;
                        Ok(p.handle_response(
                            &server,
                            &mut agora_core::crypto::os_rng(),
                            now,
                            &msg,
                        )?)
                    })?;
                    store
                        .archive()
                        .append("cpo/posted", &posted.entry.posted, now)?;
                    crate::datadir::write_file_atomic(out, &posted.reply)?;
                    done(ctx, "M_3 (the posted CPO) for the buyer", out);
                    Ok(())
                }
                other => bail!(
                    "the server does not handle {} {other}",
                    other.name().unwrap_or("this message")
                ),
            }
        }
    }
}
