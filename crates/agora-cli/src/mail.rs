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
//! Messages travel as binary files (attachments), or pasted into a mail
//! body: a file named `*.asc` is written ASCII-armoured (base64 between
//! `-----BEGIN AGORA MESSAGE-----` and `-----END AGORA MESSAGE-----`
//! lines), and every step reads either form, wherever the armour sits in
//! the text (a whole mail saved to a file will do).
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
    arbiter_policy, bond_trust, cpo_id, keep, local_server, node_server, notice_file, read_limited,
};
use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_client::cpo::flow::{
    AnyApproval, Bid, Bind, Browse, Conversation, Next, Outgoing, Posting,
};
use agora_client::datadir::{pinned, role_keys};
use agora_core::ports::Freshness;
use agora_core::wire::{envelope, tags, Tag};
use agora_core::{KeyId, Money};
use agora_cpo::arbiter::{Arbiter, PendingApproval};
use agora_cpo::bidding::PendingAward;
use agora_cpo::buyer::Acceptance;
use agora_cpo::seller::SellerSession;
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
        #[arg(long, allow_hyphen_values = true)]
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
    ctx.dir().join("cpo-mail").join(role)
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
    let bytes = read_message(path)?;
    let tag = envelope::peek_tag(&bytes)
        .with_context(|| format!("{} is not an agora message", path.display()))?;
    Ok((tag, bytes))
}

/// The first and last lines of an ASCII-armoured message.
const ARMOR_BEGIN: &str = "-----BEGIN AGORA MESSAGE-----";
const ARMOR_END: &str = "-----END AGORA MESSAGE-----";
/// Base64 characters per armoured line (as PEM).
const ARMOR_LINE: usize = 64;

/// Writes a message to `out`: ASCII-armoured if its name ends in `.asc`
/// (to paste into a mail body), else as the bytes themselves.
fn write_message(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("asc") {
        return crate::datadir::write_file_atomic(out, bytes);
    }
    crate::datadir::write_file_atomic(out, armor(bytes).as_bytes())
}

/// `bytes` between armour lines, in base64 lines of [`ARMOR_LINE`].
fn armor(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let b64 = Base64::encode_string(bytes);
    let mut text = format!("{ARMOR_BEGIN}\n");
    for line in b64.as_bytes().chunks(ARMOR_LINE) {
        // Base64 is ASCII: every chunk is text.
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(ARMOR_END);
    text.push('\n');
    text
}

/// Reads a message file: the bytes themselves, or the message armoured
/// inside it ([`armor`]) wherever the armour lines are (a mail body with
/// its quoting '>' and surrounding text will do). Strict inside the
/// armour: base64 only, one message, bounded as any message file.
fn read_message(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_limited(path)?;
    match dearmor(&bytes) {
        Some(decoded) => {
            decoded.with_context(|| format!("{}: the armoured message", path.display()))
        }
        None => Ok(bytes),
    }
}

/// The message armoured in `text`, or `None` if it has no armour.
fn dearmor(text: &[u8]) -> Option<anyhow::Result<Vec<u8>>> {
    use base64ct::{Base64, Encoding};
    let text = std::str::from_utf8(text).ok()?;
    // Lines as a mail client may quote them: "> " prefixes and spaces.
    fn strip(l: &str) -> &str {
        l.trim_start_matches(|c: char| c == '>' || c.is_whitespace())
            .trim_end()
    }
    let mut lines = text.lines().map(strip);
    lines.by_ref().find(|l| *l == ARMOR_BEGIN)?;
    let mut b64 = String::new();
    for line in lines {
        if line == ARMOR_END {
            return Some(Base64::decode_vec(&b64).map_err(|_| anyhow::anyhow!("it is not base64")));
        }
        if line.contains(ARMOR_BEGIN) {
            return Some(Err(anyhow::anyhow!(
                "a second message begins inside the first"
            )));
        }
        b64.push_str(line);
    }
    Some(Err(anyhow::anyhow!("it has no end line ({ARMOR_END})")))
}

fn done(ctx: &Ctx, what: &str, out: &Path) {
    crate::output::emit(
        ctx.json,
        &format!("{what}: written to {}", out.display()),
        serde_json::json!({ "result": what, "file": out }),
    );
}

/// How a party's conversation goes on by mail.
enum Mailed<T> {
    /// Its next message was written to the step's `--out`.
    Sent,
    /// It is over: what she holds.
    Done(T),
}

/// A saved kind of client conversation (`agora_client::cpo::flow`).
trait Saved: Conversation {
    /// The file-name prefix of its saved states.
    const KIND: &'static str;
    fn save(&self) -> Vec<u8>;
    fn load(b: &[u8]) -> Result<Self, agora_core::DecodeError>;
}

macro_rules! saved {
    ($t:ty, $kind:literal) => {
        impl Saved for $t {
            const KIND: &'static str = $kind;
            fn save(&self) -> Vec<u8> {
                self.to_bytes()
            }
            fn load(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
                <$t>::from_bytes(b)
            }
        }
    };
}
saved!(AnyApproval, "approval");
saved!(Posting, "posting");
saved!(Browse, "browse");
saved!(Bind, "bind");
saved!(Bid, "bid");

/// Starts a conversation by mail: saves it under `role` and writes its
/// first message to `out`.
fn start<C: Saved>(
    ctx: &Ctx,
    role: &str,
    (first, conv): (Outgoing, C),
    out: &Path,
    what: &str,
) -> anyhow::Result<()> {
    save(ctx, role, C::KIND, &conv.save())?;
    write_message(out, &first.body)?;
    done(ctx, what, out);
    Ok(())
}

/// One step of a party's conversation by mail: the saved conversation of
/// `role` that waits for `msg` and takes it goes on: its next message is
/// saved with it and written to `out` (which must be given then), or it
/// ends with what she holds.
fn converse<C: Saved>(
    ctx: &Ctx,
    role: &str,
    party: &C::Party,
    msg: &[u8],
    out: Option<&Path>,
    what: &str,
) -> anyhow::Result<Mailed<C::Done>> {
    let tag = envelope::peek_tag(msg)
        .or_else(|_| agora_cpo::session::peek(msg).map(|(t, _)| t))
        .ok();
    let now = ctx.now();
    let next = resume(ctx, role, C::KIND, |b| {
        let conv = C::load(b)?;
        if conv.expects().is_some() && conv.expects() != tag {
            bail!("this run waits for another message");
        }
        Ok(conv.on_reply(party, &mut agora_core::crypto::os_rng(), now, msg)?)
    })?;
    match next {
        Next::Done(d) => Ok(Mailed::Done(d)),
        Next::Send(m, conv) => {
            let out = need_out(out, what)?;
            save(ctx, role, C::KIND, &conv.save())?;
            write_message(out, &m.body)?;
            done(ctx, what, out);
            Ok(Mailed::Sent)
        }
    }
}

fn start_approval<V: Variant>(
    ctx: &Ctx,
    ccpo: agora_cpo::Ccpo,
    buyer: &str,
    terms: &str,
    out: &Path,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let bob = role_keys(&ks, buyer)?;
    let trust = ctx.load_trust()?;
    let alice = pinned(
        &trust,
        PartyRole::Arbiter,
        &ccpo.arbiter,
        "the CCPO's arbiter",
    )?;
    let rng = &mut agora_core::crypto::os_rng();
    let started = AnyApproval::start(V::MODE, &bob, rng, ccpo, terms, &alice)?;
    start(
        ctx,
        &format!("buyer-{buyer}"),
        started,
        out,
        "M_0 for the arbiter",
    )
}

/// The buyer's step on a reply of the arbiter (protocol 1 or 5) or of
/// the server (protocol 2).
fn buyer_step(ctx: &Ctx, buyer: &str, tag: Tag, msg: &[u8], out: &Path) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let bob = role_keys(&ks, buyer)?;
    let role = format!("buyer-{buyer}");
    let approval = [
        tags::CPO_ARBITER_CHALLENGE,
        tags::CPO_BID_ARBITER_CHALLENGE,
        tags::CPO_ARBITER_ACCEPTANCE,
        tags::CPO_BID_ARBITER_ACCEPTANCE,
    ];
    if approval.contains(&tag) {
        if let Mailed::Done(acc) =
            converse::<AnyApproval>(ctx, &role, &bob, msg, Some(out), "M_2 for the arbiter")?
        {
            write_message(out, &acc.signed)?;
            done(ctx, "ARBITER_ACCEPTANCE", out);
        }
        return Ok(());
    }
    if [tags::CPO_POST_CHALLENGE, tags::CPO_POSTED].contains(&tag) {
        if let Mailed::Done(receipt) =
            converse::<Posting>(ctx, &role, &bob, msg, Some(out), "M_2 for the server")?
        {
            write_message(out, &receipt.signed)?;
            done(ctx, "the posted CPO, signed by the server", out);
        }
        return Ok(());
    }
    bail!(
        "a buyer does not handle {} {tag}",
        tag.name().unwrap_or("this message")
    )
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
    write_message(out, &m1)?;
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
    write_message(out, &issued.reply)?;
    done(ctx, "M_3 (the ARBITER_ACCEPTANCE) for the buyer", out);
    Ok(())
}

fn seller_role(seller: &str) -> String {
    format!("seller-{seller}")
}

/// The `--out` a step writes to, checked before anything changes.
fn need_out<'a>(out: Option<&'a Path>, what: &str) -> anyhow::Result<&'a Path> {
    out.with_context(|| format!("this message is answered with {what}: give --out"))
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
    let pam = role_keys(&ks, name)?;
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
    let rng = &mut agora_core::crypto::os_rng();
    let started = Browse::start(&pam, rng, bond, now, until, &server)?;
    start(
        ctx,
        &seller_role(name),
        started,
        out,
        "M_0 (the browse request) for the server",
    )
}

/// The seller's session for a step by mail, refused once it is over.
fn live_session(ctx: &Ctx, name: &str) -> anyhow::Result<SellerSession> {
    let ks = ctx.load_keystore()?;
    let trust = ctx.load_trust()?;
    let session = ctx.seller_session(&ks, &trust, name)?;
    if ctx.now() >= session.until {
        bail!("{name}'s browse session is over: open a new one (agora cpo mail start-session)");
    }
    Ok(session)
}

fn start_bind(ctx: &Ctx, id: &str, name: &str, offer: &str, out: &Path) -> anyhow::Result<()> {
    let cpo = cpo_id(id)?;
    let session = live_session(ctx, name)?;
    let started = Bind::start(&session, &mut agora_core::crypto::os_rng(), cpo, offer)?;
    start(
        ctx,
        &seller_role(name),
        started,
        out,
        "the listing request for the server",
    )
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
    let session = live_session(ctx, name)?;
    let rng = &mut agora_core::crypto::os_rng();
    let started = Bid::start(&session, rng, cpo, price, details)?;
    start(
        ctx,
        &seller_role(name),
        started,
        out,
        "the bidding listing request for the server",
    )
}

fn seller_step(ctx: &Ctx, name: &str, message: &Path, out: &Option<PathBuf>) -> anyhow::Result<()> {
    let msg = read_message(message)?;
    let tag = envelope::peek_tag(&msg)
        .or_else(|_| agora_cpo::session::peek(&msg).map(|(t, _)| t))
        .with_context(|| format!("{} is not an agora message", message.display()))?;
    let role = seller_role(name);
    let out = out.as_deref();
    match tag {
        t if t == tags::CPO_BROWSE_CHALLENGE || t == tags::CPO_BROWSE_GRANT => {
            // --out is checked before anything is used up.
            if t == tags::CPO_BROWSE_CHALLENGE {
                need_out(out, "M_2")?;
            } else if let Some(o) = out {
                bail!(
                    "the grant ends protocol 3 and is answered with nothing: \
                     leave out --out {}",
                    o.display()
                );
            }
            let _lock = ctx.lock_for_update()?;
            let mut ks = ctx.load_keystore()?;
            let pam = role_keys(&ks, name)?;
            let Mailed::Done(session) =
                converse::<Browse>(ctx, &role, &pam, &msg, out, "M_2 for the server")?
            else {
                return Ok(());
            };
            ctx.keep_session(&mut ks, name, &session)?;
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
                    "session": hex::encode(session.id()),
                    "until": session.until.secs(),
                }),
            );
            Ok(())
        }
        t if t == tags::CPO_BIND_LISTING || t == tags::CPO_BOUND_CPO => {
            let out = Some(need_out(
                out,
                if t == tags::CPO_BOUND_CPO {
                    "BOUND_CPO"
                } else {
                    "the offer (M_1)"
                },
            )?);
            let session = ctx.seller_session(&ctx.load_keystore()?, &ctx.load_trust()?, name)?;
            let Mailed::Done(receipt) = converse::<Bind>(
                ctx,
                &role,
                &session,
                &msg,
                out,
                "the offer (M_1) for the server",
            )?
            else {
                return Ok(());
            };
            let out = need_out(out, "BOUND_CPO")?;
            keep(ctx, "cpo/bound-cpo", &receipt.signed, false)?;
            write_message(out, &receipt.signed)?;
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
        t if t == tags::CPO_BID_LISTING || t == tags::CPO_BID_RECEIPT => {
            let out = Some(need_out(
                out,
                if t == tags::CPO_BID_RECEIPT {
                    "BID_RECEIPT"
                } else {
                    "the bid (M_1)"
                },
            )?);
            let session = ctx.seller_session(&ctx.load_keystore()?, &ctx.load_trust()?, name)?;
            let Mailed::Done(receipt) = converse::<Bid>(
                ctx,
                &role,
                &session,
                &msg,
                out,
                "the bid (M_1) for the server",
            )?
            else {
                return Ok(());
            };
            let out = need_out(out, "BID_RECEIPT")?;
            keep(ctx, "cpo/bid-receipt", &receipt.signed, false)?;
            write_message(out, &receipt.signed)?;
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

impl MailCmd {
    /// The file the step writes (`--out`).
    fn out(&self) -> Option<&Path> {
        match self {
            MailCmd::StartApproval { out, .. }
            | MailCmd::StartPost { out, .. }
            | MailCmd::Buyer { out, .. }
            | MailCmd::Arbiter { out, .. }
            | MailCmd::StartSession { out, .. }
            | MailCmd::StartBind { out, .. }
            | MailCmd::StartBid { out, .. }
            | MailCmd::StartAward { out, .. }
            | MailCmd::Server { out, .. } => Some(out),
            MailCmd::Seller { out, .. } => out.as_deref(),
        }
    }
}

pub fn run(ctx: &Ctx, cmd: &MailCmd) -> anyhow::Result<()> {
    // Checked before the step runs: a refusal changes nothing.
    if let Some(out) = cmd.out() {
        ctx.check_out(out)?;
    }
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
            let signed = read_message(acceptance)?;
            let ks = ctx.load_keystore()?;
            let bob = role_keys(&ks, buyer)?;
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
            let started = Posting::start(&bob, &mut agora_core::crypto::os_rng(), &acc, &server)?;
            start(
                ctx,
                &format!("buyer-{buyer}"),
                started,
                out,
                "M_0 for the server",
            )
        }
        MailCmd::Buyer {
            message,
            buyer,
            out,
        } => {
            let (tag, msg) = tag_of(message)?;
            buyer_step(ctx, buyer, tag, &msg, out)
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
            write_message(out, &m)?;
            done(ctx, "the award request for the arbiter", out);
            Ok(())
        }
        MailCmd::Arbiter { message, out } => {
            let (tag, msg) = tag_of(message)?;
            let ks = ctx.load_keystore()?;
            let mut arbiter = Arbiter::new(
                role_keys(&ks, ARBITER_KEY)?,
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
                    let server = role_keys(&ks, SERVER_KEY)?.peer();
                    let (reply, _) = arbiter
                        .handle_award_request(
                            &mut agora_core::crypto::os_rng(),
                            ctx.now(),
                            &msg,
                            &server,
                        )
                        .context("the arbiter refused")?;
                    write_message(out, &reply)?;
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
                    write_message(out, &m1)?;
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
                    write_message(out, &posted.reply)?;
                    done(ctx, "M_3 (the posted CPO) for the buyer", out);
                    Ok(())
                }
                t if t == tags::CPO_BROWSE_REQUEST => {
                    let (m1, pending) = server
                        .handle_browse_request(&mut agora_core::crypto::os_rng(), now, &msg)
                        .context("the server refused")?;
                    save(ctx, "server", "pending-browse", &pending.to_bytes())?;
                    write_message(out, &m1)?;
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
                    write_message(out, &granted.reply)?;
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
                    write_message(out, &m0)?;
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
                    write_message(out, &bound.reply)?;
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
                    write_message(out, &taken.reply)?;
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
                    write_message(out, &awarded.award)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armoured_message_reads_back_as_its_bytes_even_quoted_in_a_mail() {
        let msg: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = armor(&msg);
        assert!(text
            .lines()
            .all(|l| l.len() <= ARMOR_LINE + 2 || l.starts_with("-----")));
        assert_eq!(dearmor(text.as_bytes()).unwrap().unwrap(), msg);
        // Pasted into a mail, then quoted in a reply.
        let mail = format!(
            "Hello,\n\nhere is M_1:\n\n{}\nregards\n",
            text.lines().map(|l| format!("> {l}\n")).collect::<String>()
        );
        assert_eq!(dearmor(mail.as_bytes()).unwrap().unwrap(), msg);
        // Not armoured: not touched.
        assert!(dearmor(&msg).is_none());
        assert!(dearmor(b"just text").is_none());
    }

    #[test]
    fn a_damaged_armour_is_refused() {
        let text = armor(b"message");
        let cut = text.replace(ARMOR_END, "");
        assert!(dearmor(cut.as_bytes()).unwrap().is_err(), "no end line");
        let bad = text.replace("bWVzc2FnZQ==", "bWVzc2F!ZQ==");
        assert!(dearmor(bad.as_bytes()).unwrap().is_err(), "not base64");
        let two = format!("{ARMOR_BEGIN}\n{text}");
        assert!(dearmor(two.as_bytes()).unwrap().is_err(), "nested");
    }
}
