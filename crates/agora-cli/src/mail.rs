//! `agora cpo mail ...`: protocols 1 (5), 2, 3, 4 and 6 (with its award) one message at a time,
//! through files, because the paper wants posting to work "with nothing
//! more than encrypted e-mail" (section 3.6), and every message can be
//! written to and read from a file. Each party runs its own
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
//! A seller opens her browse session (protocol 3) and binds (protocol 4)
//! the same way:
//!
//! ```text
//! seller:  agora cpo mail start-session --seller pam --bond pam-bond.pem --hours 8 --out s0.msg
//! server:  agora cpo mail server s0.msg --out s1.msg
//! seller:  agora cpo mail seller s1.msg --seller pam --out s2.msg
//! server:  agora cpo mail server s2.msg --out s3.msg
//! seller:  agora cpo mail seller s3.msg --seller pam
//! seller:  agora cpo mail start-bind <cpo-id> --seller pam --offer "Ships tomorrow" --out b0.msg
//! server:  agora cpo mail server b0.msg --out b1.msg
//! seller:  agora cpo mail seller b1.msg --seller pam --out b2.msg
//! server:  agora cpo mail server b2.msg --out b3.msg
//! seller:  agora cpo mail seller b3.msg --seller pam --out book.bound
//! ```
//! The last step of protocol 3 keeps the session (K_p in the keystore, the
//! rest in `cpo-sessions/<seller>.json`) exactly where `agora cpo session`
//! does, replacing an older one of hers, so `agora cpo bind`, `bid` and
//! `end-session` use it too. `start-bind` asks for the listing of one CPO
//! (protocol 4, step 1, pulled under K_p as `agora cpo bind` does); her
//! offer (`--offer`) is saved with the run and sent when the listing
//! arrives; the last step writes BOUND_CPO, the same file `agora cpo bind
//! --out` writes, and keeps a copy in her evidence archive. The server
//! saves each listing it sends until the offer (or the bid) comes back
//! (for a week, not the ten minutes of a live session), and handles each
//! listing request file once.
//!
//! She bids on a CPO that takes bids (protocol 6) under the same session:
//!
//! ```text
//! seller:  agora cpo mail start-bid <cpo-id> --seller pam --price "95.00 EUR" --details "3 days" --out d0.msg
//! server:  agora cpo mail server d0.msg --out d1.msg
//! seller:  agora cpo mail seller d1.msg --seller pam --out d2.msg
//! server:  agora cpo mail server d2.msg --out d3.msg
//! seller:  agora cpo mail seller d3.msg --seller pam --out pam.receipt
//! ```
//! `start-bid` asks for the bidding listing (protocol 6, step 1, as
//! `agora cpo bid` does) and saves her price and details with the run; the
//! listing is answered with her bid; the server takes the bid into the
//! store's bids (where `agora cpo award` finds it once bidding closes) and
//! answers with its signed BID_RECEIPT; her last step checks the receipt
//! against the bid she saved, keeps a copy in her evidence archive and
//! writes it to `--out`, the same file `agora cpo bid --out` writes (so
//! `agora evidence verify` and `agora cpo notice` take it). A bid file
//! handled twice finds its listing used up and is refused.
//!
//! When bidding has closed, the server hands the bids to the arbiter and
//! her award comes back by mail too (protocol 6, step 5):
//!
//! ```text
//! server:  agora cpo mail start-award <cpo-id> --out a0.msg
//! arbiter: agora cpo mail arbiter a0.msg --out a1.msg
//! server:  agora cpo mail server a1.msg --out mailed/book.award
//! seller:  agora cpo notice <cpo-id> --receipt pam.receipt --notice mailed/notice-<hash>.cose
//! ```
//! The server checks the award as `agora cpo award` does (it answers this
//! request, considers exactly its bids, names the winner the rule gives),
//! binds the CPO to the winner, and writes the award and, beside it, each
//! bidder's signed notice (`notice-<first 8 bytes of her receipt's
//! hash>.cose`) for mailing; each bidder checks hers against her receipt
//! and the award. An award handled twice finds nothing waiting for it.
//!
//! The buyer's and the seller's steps take the arbiter's and the server's
//! keys from the trust store, as `agora cpo approve`, `post` and `session`
//! do (`start-session` talks to this data directory's server, or the one
//! `--node` names, unless `--server` gives a pinned server's key id). The arbiter's and the
//! server's steps are this data directory's own roles, whatever `--node`
//! says: the file is the transport here. They do not go through the node's
//! `CpoService`, whose pending steps live in one process's memory for
//! minutes; a run by e-mail spans processes and days, so its pending states
//! are saved to files between messages instead.

use crate::cpo::{
    arbiter_policy, bond_trust, cpo_id, keep, keep_session, keys, local_server, node_server,
    notice_file, pinned, read_limited, seller_session,
};
use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_core::ports::Freshness;
use agora_core::wire::{envelope, saved, tags, Tag};
use agora_core::{KeyId, Money};
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::bidding::{ExpectBidReceipt, PendingAward, MAX_BID_DETAILS_LEN};
use agora_cpo::buyer::{
    self, Acceptance, ExpectArbiterAcceptance, ExpectArbiterChallenge, ExpectPostChallenge,
    ExpectPosted,
};
use agora_cpo::seller::{self, ExpectBound, ExpectBrowseChallenge, ExpectBrowseGrant};
use agora_cpo::server::{check_acceptance, PendingBrowse, PendingListing, PendingPost};
use agora_cpo::{Bidding, FirstCome, Mode, Variant};
use agora_pki::PartyRole;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// How long a party waits for the next message of a run by e-mail: a week
/// (the in-process default is five minutes).
pub const MAIL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Replay-cache scope of listing requests handled by mail.
const LISTING_REQUEST_SCOPE: &str = "cpo/mail/listing-request";
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
    /// Seller: start protocol 3: write M_0 (her browse request) for the
    /// server.
    StartSession {
        /// The seller's key pair (the one her bond certifies).
        #[arg(long)]
        seller: String,
        /// Her bond certificate (role seller).
        #[arg(long)]
        bond: PathBuf,
        /// How long the session lasts (from now).
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// The key id (hex) of the pinned server to ask; by default this
        /// data directory's server (or the one `--node` names).
        #[arg(long)]
        server: Option<String>,
        /// Write M_0 here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seller: start protocol 4 under her session: write the listing
    /// request for one CPO for the server.
    StartBind {
        /// The CPO id (hex).
        id: String,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Offer details: how she and the buyer finish the deal (sent when
        /// the listing arrives).
        #[arg(long, default_value = "")]
        offer: String,
        /// Write the request here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seller: start protocol 6 under her session: write the listing
    /// request for one CPO that takes bids for the server.
    StartBid {
        /// The CPO id (hex).
        id: String,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Her price (at most the CPO's, in its currency; sent when the
        /// listing arrives).
        #[arg(long)]
        price: Money,
        /// How she would deliver (sent when the listing arrives).
        #[arg(long, default_value = "")]
        details: String,
        /// Write the request here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seller: handle a message from the server; writes the next message,
    /// or at the end BOUND_CPO or BID_RECEIPT (the grant of a session
    /// writes nothing: it keeps the session).
    Seller {
        /// The message received.
        message: PathBuf,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Write the answer (or BOUND_CPO, or BID_RECEIPT) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// This node's server: bidding on a CPO has closed; write the award
    /// request (protocol 6, step 5: the bids) for the CPO's arbiter. Her
    /// award comes back through `server`, which writes each bidder's notice.
    StartAward {
        /// The CPO id (hex).
        id: String,
        /// Write the request here.
        #[arg(long)]
        out: PathBuf,
    },
    /// This node's server: handle a message from a buyer, a seller or the
    /// arbiter (her award: written to `--out`, with each bidder's notice
    /// beside it as `notice-<receipt hash>.cose`).
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
    // The acceptance's unit of work: the acceptance archived, before the
    // reply is written.
    ctx.store()?
        .archive()
        .record(
            vec![agora_core::ports::Evidence::new(
                agora_node::cpo::ACCEPTANCE_EVIDENCE,
                issued.acceptance,
            )],
            now,
        )
        .wait()?;
    crate::datadir::write_file_atomic(out, &issued.reply)?;
    done(ctx, "M_3 (the ARBITER_ACCEPTANCE) for the buyer", out);
    Ok(())
}

/// Saved state kind (agora-cli's own numbering, see
/// [`agora_core::wire::saved`]) of a seller's listing request: the CPO she
/// asked for, her session and her offer.
const BIND_REQUEST_KIND: u64 = 1;

/// What a seller saves when she asks for a listing (`start-bind`).
struct BindRequest {
    cpo: [u8; 32],
    session: [u8; 32],
    offer: String,
}

impl BindRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let mut e = saved::start(BIND_REQUEST_KIND, 3);
        e.field(&self.cpo).field(&self.session).text(&self.offer);
        e.into_bytes()
    }

    fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = saved::open(b, BIND_REQUEST_KIND, 3, 64 * 1024)?;
        let r = BindRequest {
            cpo: d.field()?,
            session: d.field()?,
            offer: d
                .text("saved offer", agora_cpo::msg::MAX_OFFER_LEN)?
                .to_owned(),
        };
        d.finish()?;
        Ok(r)
    }
}

/// Saved state kind (agora-cli's own numbering) of a seller's bidding
/// listing request: the CPO she asked for, her session, her price and her
/// details.
const BID_REQUEST_KIND: u64 = 2;

/// What a seller saves when she asks for a bidding listing (`start-bid`).
struct BidRequest {
    cpo: [u8; 32],
    session: [u8; 32],
    price: Money,
    details: String,
}

impl BidRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let mut e = saved::start(BID_REQUEST_KIND, 4);
        e.field(&self.cpo)
            .field(&self.session)
            .field(&self.price)
            .text(&self.details);
        e.into_bytes()
    }

    fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = saved::open(b, BID_REQUEST_KIND, 4, 64 * 1024)?;
        let r = BidRequest {
            cpo: d.field()?,
            session: d.field()?,
            price: d.field()?,
            details: d.text("saved bid details", MAX_BID_DETAILS_LEN)?.to_owned(),
        };
        d.finish()?;
        Ok(r)
    }
}

fn seller_role(seller: &str) -> String {
    format!("seller-{seller}")
}

/// The `--out` a step writes to, checked before anything changes.
fn need_out<'a>(out: &'a Option<PathBuf>, what: &str) -> anyhow::Result<&'a Path> {
    out.as_deref()
        .with_context(|| format!("this message is answered with {what}: give --out"))
}

fn start_session(
    ctx: &Ctx,
    name: &str,
    bond: &Path,
    hours: u64,
    server: Option<&str>,
    out: &Path,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let pam = keys(&ks, name)?;
    let bond = crate::cert::read_cert_der(bond)?;
    let trust = ctx.load_trust()?;
    let server = match server {
        Some(h) => pinned(
            &trust,
            PartyRole::Server,
            &KeyId::from_hex(h).with_context(|| format!("server key id {h:?}"))?,
            "the server",
        )?,
        None => node_server(ctx, &ks, &trust)?,
    };
    let now = ctx.now();
    let until = now.plus_secs(hours.clamp(1, agora_cpo::MAX_SESSION_SECS / 3600) * 3600);
    let (m0, state) = seller::request_session(
        &pam,
        &mut agora_core::crypto::os_rng(),
        bond,
        now,
        until,
        &server,
    )?;
    save(
        ctx,
        &seller_role(name),
        "browse-challenge",
        &state.to_bytes(),
    )?;
    crate::datadir::write_file_atomic(out, &m0)?;
    done(ctx, "M_0 (the browse request) for the server", out);
    Ok(())
}

fn start_bind(ctx: &Ctx, id: &str, name: &str, offer: &str, out: &Path) -> anyhow::Result<()> {
    let cpo = cpo_id(id)?;
    if offer.len() > agora_cpo::msg::MAX_OFFER_LEN {
        bail!(
            "the offer is {} bytes; at most {} are allowed",
            offer.len(),
            agora_cpo::msg::MAX_OFFER_LEN
        );
    }
    let ks = ctx.load_keystore()?;
    let trust = ctx.load_trust()?;
    let session = seller_session(ctx, &ks, &trust, name)?;
    let now = ctx.now();
    if now >= session.until {
        bail!("{name}'s browse session is over: open a new one (agora cpo mail start-session)");
    }
    let m0 = session.request_listing(&mut agora_core::crypto::os_rng(), cpo, Mode::FirstCome);
    let state = BindRequest {
        cpo,
        session: session.id(),
        offer: offer.to_owned(),
    };
    save(ctx, &seller_role(name), "bind-listing", &state.to_bytes())?;
    crate::datadir::write_file_atomic(out, &m0)?;
    done(ctx, "the listing request for the server", out);
    Ok(())
}

fn start_bid(
    ctx: &Ctx,
    id: &str,
    name: &str,
    price: Money,
    details: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let cpo = cpo_id(id)?;
    if details.len() > MAX_BID_DETAILS_LEN {
        bail!(
            "the bid details are {} bytes; at most {MAX_BID_DETAILS_LEN} are allowed",
            details.len()
        );
    }
    let ks = ctx.load_keystore()?;
    let trust = ctx.load_trust()?;
    let session = seller_session(ctx, &ks, &trust, name)?;
    let now = ctx.now();
    if now >= session.until {
        bail!("{name}'s browse session is over: open a new one (agora cpo mail start-session)");
    }
    let m0 = session.request_listing(&mut agora_core::crypto::os_rng(), cpo, Mode::Bidding);
    let state = BidRequest {
        cpo,
        session: session.id(),
        price,
        details: details.to_owned(),
    };
    save(ctx, &seller_role(name), "bid-listing", &state.to_bytes())?;
    crate::datadir::write_file_atomic(out, &m0)?;
    done(ctx, "the bidding listing request for the server", out);
    Ok(())
}

fn seller_step(ctx: &Ctx, name: &str, message: &Path, out: &Option<PathBuf>) -> anyhow::Result<()> {
    let (tag, msg) = tag_of(message)?;
    let role = seller_role(name);
    match tag {
        t if t == tags::CPO_BROWSE_CHALLENGE => {
            let out = need_out(out, "M_2")?;
            let ks = ctx.load_keystore()?;
            let pam = keys(&ks, name)?;
            let (m2, next) = resume(ctx, &role, "browse-challenge", |b| {
                let s = ExpectBrowseChallenge::from_bytes(b)?;
                Ok(s.handle(&pam, &mut agora_core::crypto::os_rng(), &msg)?)
            })?;
            save(ctx, &role, "browse-grant", &next.to_bytes())?;
            crate::datadir::write_file_atomic(out, &m2)?;
            done(ctx, "M_2 for the server", out);
            Ok(())
        }
        t if t == tags::CPO_BROWSE_GRANT => {
            if let Some(o) = out {
                bail!(
                    "the grant ends protocol 3 and is answered with nothing: \
                     leave out --out {}",
                    o.display()
                );
            }
            let _lock = ctx.lock_for_update()?;
            let mut ks = ctx.load_keystore()?;
            let pam = keys(&ks, name)?;
            let session = resume(ctx, &role, "browse-grant", |b| {
                let s = ExpectBrowseGrant::from_bytes(b)?;
                Ok(s.handle(&pam, &msg)?)
            })?;
            let f = keep_session(ctx, &mut ks, name, &session)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "browse session {} for {name} until {}; K_p is in the keystore\n\
                     next: agora cpo mail start-bind <id> --seller {name} (or agora cpo bind)",
                    hex::encode(&session.id()[..8]),
                    crate::cert::fmt_time(session.until)
                ),
                serde_json::json!({
                    "result": "session",
                    "session": f.session,
                    "until": session.until.secs(),
                }),
            );
            Ok(())
        }
        t if t == tags::CPO_BIND_LISTING => {
            let out = need_out(out, "the offer (M_1)")?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = seller_session(ctx, &ks, &trust, name)?;
            let (m1, next) = resume(ctx, &role, "bind-listing", |b| {
                let req = BindRequest::from_bytes(b)?;
                if req.session != session.id() {
                    bail!("the listing was asked for under another browse session of {name}");
                }
                let listing = session.open_listing(&msg)?;
                if listing.ccpo().id != req.cpo {
                    bail!(
                        "the listing is of CPO {}, not {} asked for",
                        hex::encode(listing.ccpo().id),
                        hex::encode(req.cpo)
                    );
                }
                Ok(session.offer(&mut agora_core::crypto::os_rng(), &listing, &req.offer)?)
            })?;
            save(ctx, &role, "bound", &next.to_bytes())?;
            crate::datadir::write_file_atomic(out, &m1)?;
            done(ctx, "the offer (M_1) for the server", out);
            Ok(())
        }
        t if t == tags::CPO_BOUND_CPO => {
            let out = need_out(out, "BOUND_CPO")?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = seller_session(ctx, &ks, &trust, name)?;
            let receipt = resume(ctx, &role, "bound", |b| {
                let s = ExpectBound::from_bytes(b)?;
                Ok(s.handle(&session, &msg)?)
            })?;
            keep(ctx, "cpo/bound-cpo", &receipt.signed, false)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name} bound CPO {} ({}); BOUND_CPO, signed by the server, is in {}",
                    hex::encode(receipt.message.ccpo.id),
                    receipt.message.ccpo.goods,
                    out.display()
                ),
                serde_json::json!({
                    "result": "BOUND_CPO",
                    "id": hex::encode(receipt.message.ccpo.id),
                    "file": out,
                }),
            );
            Ok(())
        }
        t if t == tags::CPO_BID_LISTING => {
            let out = need_out(out, "the bid (M_1)")?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = seller_session(ctx, &ks, &trust, name)?;
            let (m1, next) = resume(ctx, &role, "bid-listing", |b| {
                let req = BidRequest::from_bytes(b)?;
                if req.session != session.id() {
                    bail!("the listing was asked for under another browse session of {name}");
                }
                let listing = session.open_bid_listing(&msg)?;
                if listing.message.ccpo.id != req.cpo {
                    bail!(
                        "the listing is of CPO {}, not {} asked for",
                        hex::encode(listing.message.ccpo.id),
                        hex::encode(req.cpo)
                    );
                }
                Ok(session.bid(
                    &mut agora_core::crypto::os_rng(),
                    &listing,
                    req.price,
                    &req.details,
                )?)
            })?;
            save(ctx, &role, "bid-receipt", &next.to_bytes())?;
            crate::datadir::write_file_atomic(out, &m1)?;
            done(ctx, "the bid (M_1) for the server", out);
            Ok(())
        }
        t if t == tags::CPO_BID_RECEIPT => {
            let out = need_out(out, "BID_RECEIPT")?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = seller_session(ctx, &ks, &trust, name)?;
            let receipt = resume(ctx, &role, "bid-receipt", |b| {
                let s = ExpectBidReceipt::from_bytes(b)?;
                Ok(s.handle(&session, &msg)?)
            })?;
            keep(ctx, "cpo/bid-receipt", &receipt.signed, false)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name} bid {} on CPO {}; BID_RECEIPT in {} (award due by {})",
                    receipt.message.price,
                    hex::encode(receipt.message.ccpo.id),
                    out.display(),
                    crate::cert::fmt_time(receipt.message.t_response)
                ),
                serde_json::json!({
                    "result": "BID_RECEIPT",
                    "id": hex::encode(receipt.message.ccpo.id),
                    "receipt_hash": hex::encode(receipt.hash()),
                    "t_response": receipt.message.t_response.secs(),
                    "file": out,
                }),
            );
            Ok(())
        }
        other => bail!(
            "a seller does not handle {} {other}",
            other.name().unwrap_or("this message")
        ),
    }
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
        MailCmd::StartSession {
            seller,
            bond,
            hours,
            server,
            out,
        } => start_session(ctx, seller, bond, *hours, server.as_deref(), out),
        MailCmd::StartBind {
            id,
            seller,
            offer,
            out,
        } => start_bind(ctx, id, seller, offer, out),
        MailCmd::StartBid {
            id,
            seller,
            price,
            details,
            out,
        } => start_bid(ctx, id, seller, *price, details, out),
        MailCmd::Seller {
            message,
            seller,
            out,
        } => seller_step(ctx, seller, message, out),
        MailCmd::StartAward { id, out } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, _) = local_server(ctx, &ks, &store)?;
            let entry = agora_cpo::ports::Board::state(server.board(), &cpo)?
                .with_context(|| format!("no CPO {} on this node's board", hex::encode(cpo)))?;
            let trust = ctx.load_trust()?;
            let alice = pinned(
                &trust,
                PartyRole::Arbiter,
                &entry.ccpo.arbiter,
                "the CPO's arbiter",
            )?;
            let (m, pending) = server
                .request_award(&mut agora_core::crypto::os_rng(), ctx.now(), &cpo, &alice)
                .context("the server refused")?;
            save(ctx, "server", "pending-award", &pending.to_bytes())?;
            crate::datadir::write_file_atomic(out, &m)?;
            done(ctx, "the award request for the arbiter", out);
            Ok(())
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
                t if t == tags::CPO_BID_AWARD_REQUEST => {
                    // This data directory's server is the one she awards for.
                    let server = keys(&ks, SERVER_KEY)?.peer();
                    let (reply, _) = arbiter
                        .handle_award_request(
                            &mut agora_core::crypto::os_rng(),
                            ctx.now(),
                            &msg,
                            &server,
                        )
                        .context("the arbiter refused")?;
                    crate::datadir::write_file_atomic(out, &reply)?;
                    done(ctx, "the award for the server", out);
                    Ok(())
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
            server.listing_ttl_secs = MAIL_TIMEOUT_SECS;
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
                    // The posting's unit (the board row and the posted CPO
                    // archived) committed inside `handle_response`.
                    crate::datadir::write_file_atomic(out, &posted.reply)?;
                    done(ctx, "M_3 (the posted CPO) for the buyer", out);
                    Ok(())
                }
                t if t == tags::CPO_BROWSE_REQUEST => {
                    let (m1, pending) = server
                        .handle_browse_request(&mut agora_core::crypto::os_rng(), now, &msg)
                        .context("the server refused")?;
                    save(ctx, "server", "pending-browse", &pending.to_bytes())?;
                    crate::datadir::write_file_atomic(out, &m1)?;
                    done(ctx, "M_1 for the seller", out);
                    Ok(())
                }
                t if t == tags::CPO_BROWSE_RESPONSE => {
                    let granted = resume(ctx, "server", "pending-browse", |b| {
                        let p = PendingBrowse::from_bytes(b)?;
                        Ok(p.handle_response(
                            &server,
                            &mut agora_core::crypto::os_rng(),
                            now,
                            &msg,
                        )?)
                    })?;
                    crate::datadir::write_file_atomic(out, &granted.reply)?;
                    done(ctx, "M_3 (K_p) for the seller", out);
                    Ok(())
                }
                t if t == tags::CPO_LISTING_REQUEST => {
                    let (m0, pending) = server
                        .handle_listing_request_saved(&mut agora_core::crypto::os_rng(), now, &msg)
                        .context("the server refused")?;
                    // A listing request carries no nonce of its own (the
                    // channel's is random): the same file handled twice
                    // would save a second listing each time.
                    if store.replay_cache().check_and_insert(
                        LISTING_REQUEST_SCOPE,
                        &agora_core::crypto::sha256(&msg),
                        now.plus_secs(MAIL_TIMEOUT_SECS),
                        now,
                    )? == Freshness::Replayed
                    {
                        bail!(
                            "this listing request was handled already (a replayed message): \
                             the seller asks again with a new start-bind or start-bid"
                        );
                    }
                    save(
                        ctx,
                        "server",
                        &format!("listing-{}", hex::encode(pending.session())),
                        &pending.to_bytes(),
                    )?;
                    crate::datadir::write_file_atomic(out, &m0)?;
                    done(ctx, "the listing (M_0) for the seller", out);
                    Ok(())
                }
                t if t == tags::CPO_BIND_OFFER => {
                    let (_, session) = agora_cpo::session::peek(&msg)
                        .context("not a message of a browse session")?;
                    let bound = resume(
                        ctx,
                        "server",
                        &format!("listing-{}", hex::encode(session)),
                        |b| {
                            let p = PendingListing::from_bytes(b)?;
                            server.restore_listing(&p)?;
                            Ok(server.handle_bind_offer(
                                &mut agora_core::crypto::os_rng(),
                                now,
                                &msg,
                            )?)
                        },
                    )?;
                    crate::datadir::write_file_atomic(out, &bound.reply)?;
                    done(ctx, "M_2 (BOUND_CPO) for the seller", out);
                    Ok(())
                }
                t if t == tags::CPO_BID => {
                    let (_, session) = agora_cpo::session::peek(&msg)
                        .context("not a message of a browse session")?;
                    let taken = resume(
                        ctx,
                        "server",
                        &format!("listing-{}", hex::encode(session)),
                        |b| {
                            let p = PendingListing::from_bytes(b)?;
                            if p.mode() != Mode::Bidding {
                                bail!("the listing answered was not a bidding listing");
                            }
                            server.restore_listing(&p)?;
                            Ok(server.handle_bid(&mut agora_core::crypto::os_rng(), now, &msg)?)
                        },
                    )?;
                    crate::datadir::write_file_atomic(out, &taken.reply)?;
                    done(ctx, "M_2 (BID_RECEIPT) for the seller", out);
                    Ok(())
                }
                t if t == tags::CPO_BID_AWARD => {
                    // The award's unit (the award, the winner's binding and
                    // the award archived) commits inside `handle_award`.
                    let awarded = resume(ctx, "server", "pending-award", |b| {
                        let p = PendingAward::from_bytes(b)?;
                        Ok(p.handle_award(&server, now, &msg)?)
                    })?;
                    crate::datadir::write_file_atomic(out, &awarded.award)?;
                    let beside = out.parent().unwrap_or(Path::new("."));
                    for (_, receipt, notice) in &awarded.notices {
                        crate::datadir::write_file_atomic(&notice_file(beside, receipt), notice)?;
                    }
                    crate::output::emit(
                        ctx.json,
                        &format!(
                            "the award: written to {}, with {} notices beside it",
                            out.display(),
                            awarded.notices.len()
                        ),
                        serde_json::json!({
                            "result": "the award",
                            "file": out,
                            "notices": awarded.notices.len(),
                            "winner": awarded.winner.map(|w| w.to_string()),
                        }),
                    );
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
