//! `agora cpo draft | approve | post | list | status`: Conditional Purchase
//! Orders. Until the network node exists, the buyer, this node's arbiter and
//! this node's server run in one process on the data directory: every
//! protocol message is still built, sealed, opened and checked exactly as
//! it would be between machines; only the transport is a function call.

use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::ports::EvidenceArchive;
use agora_core::wire::{Decoder, Encoder};
use agora_core::{KeyId, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::bidding::{check_notice, BidReceipt, HeldReceipt, Outcome};
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::policy::{ArbiterPolicy, Template};
use agora_cpo::ports::{Board, BoardEntry};
use agora_cpo::seller::{self, SellerSession};
use agora_cpo::server::{check_acceptance, Server};
use agora_cpo::session::BindingKey;
use agora_cpo::{Bidding, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Peer};
use agora_pki::{Keystore, PartyRole};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};

const DAY_SECS: u64 = 86_400;
/// Largest CCPO or acceptance file read, in bytes.
const MAX_FILE_LEN: u64 = 256 * 1024;

#[derive(Debug, Subcommand)]
pub enum CpoCmd {
    /// Write a candidate CPO (paper section 3.4) backed by a buyer's bond.
    #[command(
        after_help = "Example:\n  agora cpo draft --buyer alice --bond alice-bond.pem \\\n      \
        --goods \"A first edition of Applied Cryptography\" --price \"120.00 EUR\" \\\n      \
        --terms \"Deliver within 5 days.\" --days 30 --out book.ccpo"
    )]
    Draft {
        /// The buyer's key pair (the one the bond certifies).
        #[arg(long)]
        buyer: String,
        /// The buyer's bond certificate (PEM or DER).
        #[arg(long)]
        bond: PathBuf,
        /// What the buyer wants.
        #[arg(long)]
        goods: String,
        /// What he will pay, e.g. "120.00 EUR".
        #[arg(long)]
        price: Money,
        /// All the terms.
        #[arg(long, default_value = "")]
        terms: String,
        /// Days from now until the CPO expires.
        #[arg(long, default_value_t = 30, conflicts_with = "ends_in")]
        days: u64,
        /// Or: how long until it expires, e.g. 90s, 15m, 8h, 3d (for a
        /// bidding CPO this is the bidding window).
        #[arg(long)]
        ends_in: Option<String>,
        /// The arbiter (key id); default: this node's arbiter.
        #[arg(long)]
        arbiter: Option<String>,
        /// The server (key id); default: this node's server.
        #[arg(long)]
        server: Option<String>,
        /// Write the CCPO here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Get this node's arbiter's ARBITER_ACCEPTANCE for a CCPO (protocol 1;
    /// protocol 5 with --bidding).
    #[command(
        after_help = "Example:\n  agora cpo approve book.ccpo --buyer alice --out book.acceptance"
    )]
    Approve {
        /// The CCPO file (from `agora cpo draft`).
        ccpo: PathBuf,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Ask for the bidding variant (protocol 5): sellers bid, the arbiter picks.
        #[arg(long)]
        bidding: bool,
        /// Additional terms for the arbiter, e.g. "arbiter-fee: 2.50 EUR".
        #[arg(long, default_value = "")]
        additional_terms: String,
        /// Write the acceptance (COSE_Sign1) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Post an approved CPO to this node's server (protocol 2).
    #[command(
        after_help = "Example:\n  agora cpo post book.acceptance --buyer alice --out book.posted"
    )]
    Post {
        /// The ARBITER_ACCEPTANCE file.
        acceptance: PathBuf,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Write the server's signed CPO (the buyer's receipt) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the open CPOs on this node's board, optionally searched and
    /// filtered: public fields only, never the buyer; no login needed.
    #[command(
        after_help = "Examples:\n  agora cpo list --search \"bicycle red\" --max-price \"200 EUR\"\n  \
        agora cpo list --min-price \"10 EUR\" --max-price \"200 EUR\" --mode first-come\n  \
        agora cpo list --currency USD --active-at 1767225600 --limit 20 --after <last-id>"
    )]
    List {
        /// Most CPOs to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// List CPOs whose id follows this one (paging).
        #[arg(long)]
        after: Option<String>,
        /// Print only the ids, one per line (for scripts).
        #[arg(long)]
        ids: bool,
        /// Words that must all occur in the goods or the terms (substrings;
        /// ASCII letters match either case). At most 200 bytes, 8 words.
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// Lowest price, inclusive, e.g. "10 EUR" (also selects its currency).
        #[arg(long, value_name = "MONEY")]
        min_price: Option<Money>,
        /// Highest price, inclusive, e.g. "200 EUR" (also selects its currency).
        #[arg(long, value_name = "MONEY")]
        max_price: Option<Money>,
        /// Only CPOs priced in this currency, e.g. EUR.
        #[arg(long)]
        currency: Option<agora_core::Currency>,
        /// Only CPOs active at this time (Unix seconds): start <= t < end.
        #[arg(long, value_name = "UNIX")]
        active_at: Option<u64>,
        /// Only first-come or only bidding CPOs.
        #[arg(long, value_parser = ["first-come", "bidding"])]
        mode: Option<String>,
    },
    /// Show one CPO of this node's board.
    Status {
        /// The CPO id (hex).
        id: String,
    },
    /// Open a seller's browse session with this node's server (protocol 3):
    /// her bond is checked and she receives K_p, kept in the keystore.
    #[command(
        after_help = "Example:\n  agora cpo session --seller pam --bond pam-bond.pem --hours 8"
    )]
    Session {
        /// The seller's key pair (the one her bond certifies).
        #[arg(long)]
        seller: String,
        /// Her bond certificate (role seller).
        #[arg(long)]
        bond: PathBuf,
        /// How long the session lasts.
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
    /// Bind a CPO under the seller's session (protocol 4): the first valid
    /// binding wins; the server's signed BOUND_CPO is the contract.
    #[command(
        after_help = "Example:\n  agora cpo bind <cpo-id> --seller pam --offer \"Ships tomorrow\" --out book.bound"
    )]
    Bind {
        /// The CPO id (hex), from `agora cpo list`.
        id: String,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Offer details: how she and the buyer finish the deal.
        #[arg(long, default_value = "")]
        offer: String,
        /// Write BOUND_CPO (COSE_Sign1) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// End the seller's browse session: K_p is taken out of action.
    EndSession {
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
    },
    /// Bid on a CPO that takes bids, under the seller's session (protocol
    /// 6); the server's signed BID_RECEIPT says when the award is due.
    #[command(
        after_help = "Example:\n  agora cpo bid <cpo-id> --seller pam --price \"95.00 EUR\" --details \"3 days\" --out pam.receipt"
    )]
    Bid {
        /// The CPO id (hex).
        id: String,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Her price (at most the CPO's, in its currency).
        #[arg(long)]
        price: Money,
        /// How she would deliver.
        #[arg(long, default_value = "")]
        details: String,
        /// Write BID_RECEIPT (COSE_Sign1) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// After bidding closes: the server hands the bids to this node's
    /// arbiter, who signs the winner (lowest price at or under the CPO's,
    /// ties to the earliest); writes the award and every bidder's notice.
    #[command(after_help = "Example:\n  agora cpo award <cpo-id> --out-dir award/")]
    Award {
        /// The CPO id (hex).
        id: String,
        /// Directory for award.cose and notice-<receipt>.cose files.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// A bidder fetches and checks her notice: won or lost.
    #[command(
        after_help = "Example:\n  agora cpo notice <cpo-id> --receipt pam.receipt --out pam.notice"
    )]
    Notice {
        /// The CPO id (hex).
        id: String,
        /// Her BID_RECEIPT file.
        #[arg(long)]
        receipt: PathBuf,
        /// Write the notice here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The buyer fetches his binding (BOUND_CPO with the seller's bond, or
    /// the winning notice) with a request signed by his bond key.
    #[command(
        after_help = "Example:\n  agora cpo binding <cpo-id> --buyer bob --out book.contract"
    )]
    Binding {
        /// The CPO id (hex).
        id: String,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Write the binding evidence here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a delivery challenge for the seller of a BOUND_CPO (section 3.11).
    #[command(
        after_help = "Example:\n  agora cpo challenge --bound book.contract --verifier bob --out book.challenge"
    )]
    Challenge {
        /// The BOUND_CPO file.
        #[arg(long)]
        bound: PathBuf,
        /// Who asks (the buyer or an intermediary).
        #[arg(long)]
        verifier: String,
        /// Write the challenge here.
        #[arg(long)]
        out: PathBuf,
    },
    /// The seller answers a delivery challenge with the key of her bond.
    #[command(
        after_help = "Example:\n  agora cpo prove --challenge book.challenge --bound book.bound --seller pam --out book.proof"
    )]
    Prove {
        /// The challenge file.
        #[arg(long)]
        challenge: PathBuf,
        /// Her BOUND_CPO file.
        #[arg(long)]
        bound: PathBuf,
        /// The seller's key pair.
        #[arg(long)]
        seller: String,
        /// Write the proof here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a seller's proof against the challenge and the BOUND_CPO.
    #[command(
        after_help = "Example:\n  agora cpo verify-proof --proof book.proof --challenge book.challenge --bound book.contract"
    )]
    VerifyProof {
        /// The proof file.
        #[arg(long)]
        proof: PathBuf,
        /// The challenge file.
        #[arg(long)]
        challenge: PathBuf,
        /// The BOUND_CPO file.
        #[arg(long)]
        bound: PathBuf,
    },
    /// Apply the CRLs of the data directory to this node's server: CPOs of
    /// revoked buyers are taken down, sessions of revoked sellers end.
    Sweep,
    /// Protocols 1 and 2 one message at a time through files, as by
    /// e-mail: each party handles a message when it arrives.
    #[command(subcommand)]
    Mail(crate::mail::MailCmd),
}

/// "90s", "15m", "8h", "3d" as seconds (at least one second).
fn parse_duration_secs(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .with_context(|| format!("duration {s:?}: use e.g. 90s, 15m, 8h, 3d"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => DAY_SECS,
        _ => bail!("duration {s:?}: use e.g. 90s, 15m, 8h, 3d"),
    };
    n.checked_mul(mul)
        .filter(|v| *v > 0)
        .with_context(|| format!("duration {s:?} out of range"))
}

/// Protocol 1 (or 5) between the buyer and this node's arbiter.
fn approve<V: agora_cpo::Variant>(
    arbiter: &Arbiter,
    bob: &Keys,
    alice: &Peer,
    ccpo: Ccpo,
    additional_terms: &str,
    now: Timestamp,
    rng: &mut impl agora_core::crypto::Rng,
) -> anyhow::Result<Acceptance> {
    let (m0, b) = buyer::request_approval::<V>(bob, rng, ccpo, additional_terms, alice)?;
    let (m1, a) = arbiter
        .handle_request::<V>(rng, now, &m0)
        .context("the arbiter refused")?;
    let (m2, b) = b.handle(bob, rng, &m1)?;
    let issued = a.handle_response(arbiter, rng, now, &m2)?;
    Ok(b.handle(bob, now, &issued.reply)?)
}

fn cpo_id(hex_id: &str) -> anyhow::Result<[u8; 32]> {
    Ok(KeyId::from_hex(hex_id)
        .with_context(|| format!("CPO id {hex_id:?}"))?
        .0)
}

/// Keystore name of a seller's K_p.
fn k_p_name(seller: &str) -> String {
    format!("{seller}.cpo-session")
}

/// What a seller keeps of her session besides K_p (which is in the keystore).
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionFile {
    session: String,
    from: u64,
    until: u64,
    bond_der_hex: String,
}

fn session_file(ctx: &Ctx, seller: &str) -> PathBuf {
    ctx.data_dir
        .join("cpo-sessions")
        .join(format!("{seller}.json"))
}

/// This node's server on the data directory's SQLite store.
pub(crate) fn local_server(
    ctx: &Ctx,
    ks: &Keystore,
    store: &agora_store::Store,
) -> anyhow::Result<(
    Server<agora_store::SqliteBoard, agora_store::SqliteReplayCache, agora_store::SqliteSessions>,
    Peer,
)> {
    let trust = ctx.load_trust()?;
    let arbiters: Vec<_> = trust
        .by_role(PartyRole::Arbiter)
        .filter_map(|p| p.verifying_key())
        .collect();
    let server_keys = keys(ks, SERVER_KEY)?;
    let peer = server_keys.peer();
    Ok((
        Server::new(
            server_keys,
            bond_trust(ctx)?,
            arbiters,
            store.board(),
            store.replay_cache(),
            store.sessions(),
        ),
        peer,
    ))
}

fn seller_session(
    ctx: &Ctx,
    ks: &Keystore,
    seller: &str,
    server: Peer,
) -> anyhow::Result<SellerSession> {
    let k_p = ks.secret(&k_p_name(seller)).with_context(|| {
        format!("{seller} has no browse session (agora cpo session --seller {seller})")
    })?;
    let path = session_file(ctx, seller);
    let f: SessionFile = serde_json::from_slice(&read_limited(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(SellerSession::from_parts(
        BindingKey::from_bytes(*k_p.expose()),
        server,
        hex::decode(&f.bond_der_hex).context("session file: bond")?,
        Timestamp(f.from),
        Timestamp(f.until),
    ))
}

pub(crate) fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_LEN {
        bail!("{} is larger than {MAX_FILE_LEN} bytes", path.display());
    }
    Ok(buf)
}

pub(crate) fn read_ccpo(path: &Path) -> anyhow::Result<Ccpo> {
    let bytes = read_limited(path)?;
    let mut d = Decoder::new(&bytes);
    let c: Ccpo = d
        .field()
        .with_context(|| format!("{} is not a CCPO", path.display()))?;
    d.finish()
        .with_context(|| format!("{} is not a CCPO", path.display()))?;
    Ok(c)
}

/// A key pair of the keystore as protocol keys.
pub(crate) fn keys(ks: &Keystore, name: &str) -> anyhow::Result<Keys> {
    let sign = ks
        .ed25519(&crate::key::ed_name(name))
        .with_context(|| format!("no key pair named {name:?} in the keystore"))?;
    let enc = ks
        .x25519(&crate::key::x_name(name))
        .with_context(|| format!("key pair {name:?} has no X25519 key"))?;
    Ok(Keys {
        sign: SigningKey::from_seed(&sign.to_seed()),
        enc: X25519Secret::from_bytes(*enc.to_bytes()),
    })
}

pub(crate) fn bond_trust(ctx: &Ctx) -> anyhow::Result<BondTrust> {
    Ok(BondTrust {
        agencies: ctx.load_trust()?.agency_anchors(),
        crls: crate::cert::load_crls(ctx, &[])?,
    })
}

/// This node's arbiter's policy: `<data-dir>/arbiter-policy.toml` if
/// present, else a policy that refuses nothing but invalid bonds.
pub(crate) fn arbiter_policy(ctx: &Ctx) -> anyhow::Result<ArbiterPolicy> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PolicyFile {
        #[serde(default)]
        refused_bonds: Vec<String>,
        #[serde(default)]
        refused_words: Vec<String>,
        #[serde(default)]
        max_prices: Vec<String>,
        #[serde(default)]
        templates: Vec<String>,
        fee: Option<String>,
    }
    let path = ctx.data_dir.join("arbiter-policy.toml");
    if !path.exists() {
        return Ok(ArbiterPolicy::default());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let f: PolicyFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let money = |s: &String| {
        s.parse::<Money>()
            .with_context(|| format!("amount {s:?} in {}", path.display()))
    };
    Ok(ArbiterPolicy {
        refused_bonds: crate::agency::parse_key_ids(&f.refused_bonds)?,
        refused_words: f.refused_words,
        max_prices: f
            .max_prices
            .iter()
            .map(money)
            .collect::<anyhow::Result<_>>()?,
        templates: f
            .templates
            .iter()
            .map(|t| Template::parse(t))
            .collect::<Result<_, _>>()?,
        fee: f.fee.as_ref().map(money).transpose()?,
    })
}

fn node_peer(ks: &Keystore, name: &str) -> anyhow::Result<Peer> {
    Ok(keys(ks, name)
        .with_context(|| format!("this data directory has no CPO {name} (made by `agora init`)"))?
        .peer())
}

fn describe(c: &Ccpo) -> String {
    format!(
        "CPO {}\n  goods    {}\n  price    {}\n  active   {} .. {}\n  terms    {}",
        hex::encode(c.id),
        c.goods,
        c.price,
        crate::cert::fmt_time(c.start),
        crate::cert::fmt_time(c.end),
        if c.terms.is_empty() { "-" } else { &c.terms }
    )
}

/// Public fields of a board entry: no buyer, no bond.
fn public_json(e: &BoardEntry, now: Timestamp) -> serde_json::Value {
    let c = &e.ccpo;
    serde_json::json!({
        "id": hex::encode(c.id),
        "goods": c.goods,
        "price": c.price.to_string(),
        "price_cents": c.price.cents,
        "currency": c.price.currency.as_str(),
        "start": c.start.secs(),
        "end": c.end.secs(),
        "terms": c.terms,
        "mode": e.mode.as_str(),
        "arbiter": c.arbiter.to_string(),
        "posted_at": e.posted_at.secs(),
        "status": if c.end <= now { "expired" } else if c.start > now { "not yet active" } else { "open" },
    })
}

pub fn run(ctx: &Ctx, cmd: &CpoCmd) -> anyhow::Result<()> {
    let mut rng = agora_core::crypto::os_rng();
    match cmd {
        CpoCmd::Draft {
            buyer,
            bond,
            goods,
            price,
            terms,
            days,
            ends_in,
            arbiter,
            server,
            out,
        } => {
            let ks = ctx.load_keystore()?;
            let bond = crate::cert::read_cert_der(bond)?;
            let holder = agora_pki::parse_certificate(&bond)?.public_key;
            let me = keys(&ks, buyer)?;
            if holder != me.sign.verifying_key() {
                bail!("the bond certifies another key than {buyer:?}'s");
            }
            let id_or = |given: &Option<String>, local: &str| -> anyhow::Result<KeyId> {
                match given {
                    Some(h) => KeyId::from_hex(h).with_context(|| format!("key id {h:?}")),
                    None => Ok(node_peer(&ks, local)?.id()),
                }
            };
            let now = ctx.now();
            let ccpo = Ccpo::new(
                CcpoDraft {
                    arbiter: id_or(arbiter, ARBITER_KEY)?,
                    server: id_or(server, SERVER_KEY)?,
                    goods: goods.clone(),
                    price: *price,
                    start: now,
                    end: now.plus_secs(match ends_in {
                        Some(d) => parse_duration_secs(d)?,
                        None => days.max(&1) * DAY_SECS,
                    }),
                    terms: terms.clone(),
                    bond,
                },
                &mut rng,
            )?;
            let mut e = Encoder::new();
            e.field(&ccpo);
            crate::datadir::write_file_atomic(out, e.as_bytes())?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\nwritten to {} (next: agora cpo approve)",
                    describe(&ccpo),
                    out.display()
                ),
                serde_json::json!({ "id": hex::encode(ccpo.id), "file": out }),
            );
        }
        CpoCmd::Approve {
            ccpo,
            buyer,
            bidding,
            additional_terms,
            out,
        } => {
            let ccpo = read_ccpo(ccpo)?;
            let ks = ctx.load_keystore()?;
            let bob = keys(&ks, buyer)?;
            let arbiter_keys = keys(&ks, ARBITER_KEY)?;
            let alice = arbiter_keys.peer();
            if ccpo.arbiter != alice.id() {
                bail!(
                    "the CCPO names arbiter {}, not this node's ({})",
                    ccpo.arbiter,
                    alice.id()
                );
            }
            let arbiter = Arbiter::new(arbiter_keys, arbiter_policy(ctx)?, bond_trust(ctx)?);
            let now = ctx.now();
            let acceptance = if *bidding {
                approve::<Bidding>(
                    &arbiter,
                    &bob,
                    &alice,
                    ccpo,
                    additional_terms,
                    now,
                    &mut rng,
                )?
            } else {
                approve::<FirstCome>(
                    &arbiter,
                    &bob,
                    &alice,
                    ccpo,
                    additional_terms,
                    now,
                    &mut rng,
                )?
            };
            ctx.store()?
                .archive()
                .append("cpo/arbiter-acceptance", &acceptance.signed, now)?;
            crate::datadir::write_file_atomic(out, &acceptance.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "arbiter {} accepted CPO {} ({}) for server {}\nacceptance written to {} (next: agora cpo post)",
                    alice.id(),
                    hex::encode(acceptance.ccpo.id),
                    acceptance.mode.as_str(),
                    acceptance.ccpo.server,
                    out.display()
                ),
                serde_json::json!({
                    "id": hex::encode(acceptance.ccpo.id),
                    "mode": acceptance.mode.as_str(),
                    "arbiter": alice.id().to_string(),
                    "t3": acceptance.t3.secs(),
                    "file": out,
                }),
            );
        }
        CpoCmd::Post {
            acceptance,
            buyer,
            out,
        } => {
            let signed = read_limited(acceptance)?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let arbiters: Vec<_> = trust
                .by_role(PartyRole::Arbiter)
                .filter_map(|p| p.verifying_key())
                .collect();
            let checked =
                check_acceptance(&signed, &arbiters).context("not a valid ARBITER_ACCEPTANCE")?;
            let acc = Acceptance {
                signed,
                ccpo: checked.ccpo,
                t3: checked.t3,
                mode: checked.mode,
            };
            let bob = keys(&ks, buyer)?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let now = ctx.now();
            let (m0, b) = buyer::request_post(&bob, &mut rng, &acc, &server_peer)?;
            let (m1, pending) = server
                .handle_post_request(&mut rng, now, &m0)
                .context("the server refused")?;
            let (m2, b) = b.handle(&bob, &mut rng, &m1)?;
            let posted = pending
                .handle_response(&server, &mut rng, now, &m2)
                .context("the server refused")?;
            let receipt = b.handle(&bob, &posted.reply)?;
            store.archive().append("cpo/posted", &receipt.signed, now)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\nposted ({}); the server's signed CPO is in {}",
                    describe(&receipt.cpo.ccpo),
                    posted.entry.mode.as_str(),
                    out.display()
                ),
                serde_json::json!({
                    "id": hex::encode(receipt.cpo.ccpo.id),
                    "mode": posted.entry.mode.as_str(),
                    "file": out,
                }),
            );
        }
        CpoCmd::List {
            limit,
            after,
            ids,
            search,
            min_price,
            max_price,
            currency,
            active_at,
            mode,
        } => {
            let after = after
                .as_deref()
                .map(|h| {
                    let k = KeyId::from_hex(h).with_context(|| format!("CPO id {h:?}"))?;
                    Ok::<_, anyhow::Error>(k.0)
                })
                .transpose()?;
            // A price names its currency: the bounds and --currency must agree.
            let mut currency = *currency;
            for m in [min_price, max_price].into_iter().flatten() {
                match currency {
                    Some(c) if c != m.currency => bail!(
                        "--min-price, --max-price and --currency name different currencies ({c} and {})",
                        m.currency
                    ),
                    _ => currency = Some(m.currency),
                }
            }
            let filter = agora_cpo::ports::ListFilter {
                text: search.clone(),
                min_price_cents: min_price.map(|m| m.cents),
                max_price_cents: max_price.map(|m| m.cents),
                currency,
                active_at: active_at.map(Timestamp),
                mode: mode
                    .as_deref()
                    .map(|m| agora_cpo::Mode::from_name(m).with_context(|| format!("mode {m:?}")))
                    .transpose()?,
            };
            let filtered = filter != agora_cpo::ports::ListFilter::default();
            let now = ctx.now();
            let entries = ctx.store()?.board().search(now, &filter, after, *limit)?;
            let mut text = String::new();
            for e in entries.iter().filter(|_| *ids) {
                text.push_str(&hex::encode(e.ccpo.id));
                text.push('\n');
            }
            for e in entries.iter().filter(|_| !*ids) {
                text.push_str(&format!(
                    "{}  {:>14}  {:<10}  until {}  {}\n",
                    hex::encode(e.ccpo.id),
                    e.ccpo.price.to_string(),
                    e.mode.as_str(),
                    crate::cert::fmt_time(e.ccpo.end),
                    e.ccpo.goods
                ));
            }
            if entries.is_empty() && !*ids {
                text.push_str(if filtered {
                    "no open CPOs match"
                } else {
                    "no open CPOs"
                });
            }
            crate::output::emit(
                ctx.json,
                text.trim_end(),
                serde_json::Value::Array(entries.iter().map(|e| public_json(e, now)).collect()),
            );
        }
        CpoCmd::Status { id } => {
            let id = KeyId::from_hex(id)
                .with_context(|| format!("CPO id {id:?}"))?
                .0;
            let now = ctx.now();
            let e = ctx
                .store()?
                .board()
                .get(&id)?
                .with_context(|| format!("no CPO {} on this node's board", hex::encode(id)))?;
            let mut json = public_json(&e, now);
            let store = ctx.store()?;
            if let Some(b) = store.board().binding(&id)? {
                json["status"] = "bound".into();
                json["bound_at"] = b.bound_at.secs().into();
            }
            if let Some(t) = store.board().taken_down(&id)? {
                json["status"] = "taken down".into();
                json["taken_down_at"] = t.secs().into();
            }
            let status = json["status"].as_str().unwrap_or("open").to_owned();
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\n  mode     {}\n  status   {status}\n  posted   {}",
                    describe(&e.ccpo),
                    e.mode.as_str(),
                    crate::cert::fmt_time(e.posted_at)
                ),
                json,
            );
        }
        CpoCmd::Session {
            seller: name,
            bond,
            hours,
        } => {
            let mut ks = ctx.load_keystore()?;
            let pam = keys(&ks, name)?;
            let bond = crate::cert::read_cert_der(bond)?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let now = ctx.now();
            let until =
                now.plus_secs(hours.clamp(&1, &(agora_cpo::MAX_SESSION_SECS / 3600)) * 3600);
            let (m0, p) =
                seller::request_session(&pam, &mut rng, bond.clone(), now, until, &server_peer)?;
            let (m1, pending) = server
                .handle_browse_request(&mut rng, now, &m0)
                .context("the server refused the session")?;
            let (m2, p) = p.handle(&pam, &mut rng, &m1)?;
            let granted = pending.handle_response(&server, &mut rng, now, &m2)?;
            let session = p.handle(&pam, &granted.reply)?;
            // One session per seller name here: a new one replaces the old,
            // which the server is told to end.
            if let Ok(old) = seller_session(ctx, &ks, name, server_peer) {
                let _ = server.handle_end_session(now, &old.end(&mut rng));
            }
            ks.remove(&k_p_name(name));
            ks.insert_secret(
                &k_p_name(name),
                agora_core::crypto::Secret::new(*session.k_p().expose()),
            )?;
            ctx.save_keystore(&ks)?;
            let f = SessionFile {
                session: hex::encode(session.id()),
                from: now.secs(),
                until: until.secs(),
                bond_der_hex: hex::encode(&bond),
            };
            crate::datadir::write_file_atomic(
                &session_file(ctx, name),
                &serde_json::to_vec_pretty(&f)?,
            )?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "browse session {} for {name} until {}; K_p is in the keystore\nnext: agora cpo list, then agora cpo bind <id> --seller {name}",
                    hex::encode(&session.id()[..8]),
                    crate::cert::fmt_time(until)
                ),
                serde_json::json!({ "session": f.session, "until": until.secs() }),
            );
        }
        CpoCmd::Bind {
            id,
            seller: name,
            offer,
            out,
        } => {
            let cpo = KeyId::from_hex(id)
                .with_context(|| format!("CPO id {id:?}"))?
                .0;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let session = seller_session(ctx, &ks, name, server_peer)?;
            let now = ctx.now();
            let m0 = server
                .listing(&mut rng, now, &session.id(), &cpo)
                .context("the server refused the listing")?;
            let listing = session.open_listing(&m0)?;
            let (m1, exp) = session.offer(&mut rng, &listing, offer)?;
            let bound = server
                .handle_bind_offer(&mut rng, now, &m1)
                .context("the server refused the binding")?;
            let receipt = exp.handle(&session, &bound.reply)?;
            store
                .archive()
                .append("cpo/bound-cpo", &receipt.signed, now)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name} bound CPO {} ({}); BOUND_CPO, signed by the server, is in {}",
                    hex::encode(cpo),
                    receipt.message.ccpo.goods,
                    out.display()
                ),
                serde_json::json!({ "id": hex::encode(cpo), "bound_at": now.secs(), "file": out }),
            );
        }
        CpoCmd::Bid {
            id,
            seller: name,
            price,
            details,
            out,
        } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let session = seller_session(ctx, &ks, name, server_peer)?;
            let now = ctx.now();
            let m0 = server
                .bid_listing(&mut rng, now, &session.id(), &cpo)
                .context("the server refused the listing")?;
            let listing = session.open_bid_listing(&m0)?;
            let (m1, exp) = session.bid(&mut rng, &listing, *price, details)?;
            let taken = server
                .handle_bid(&store.bids(), &mut rng, now, &m1)
                .context("the server refused the bid")?;
            let receipt = exp.handle(&session, &taken.reply)?;
            store
                .archive()
                .append("cpo/bid-receipt", &receipt.signed, now)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name} bid {price} on CPO {}; BID_RECEIPT in {} (award due by {})",
                    hex::encode(cpo),
                    out.display(),
                    crate::cert::fmt_time(receipt.message.t_response)
                ),
                serde_json::json!({
                    "id": hex::encode(cpo),
                    "receipt_hash": hex::encode(receipt.hash()),
                    "t_response": receipt.message.t_response.secs(),
                    "file": out,
                }),
            );
        }
        CpoCmd::Award { id, out_dir } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let arbiter_keys = keys(&ks, ARBITER_KEY)?;
            let alice = arbiter_keys.peer();
            let arbiter = Arbiter::new(arbiter_keys, arbiter_policy(ctx)?, bond_trust(ctx)?);
            let bids = store.bids();
            let now = ctx.now();
            let (m, pending) = server
                .request_award(&bids, &mut rng, now, &cpo, &alice)
                .context("no award")?;
            let (reply, _) = arbiter.handle_award_request(&mut rng, now, &m, &server_peer)?;
            let awarded = pending.handle_award(&server, &bids, now, &reply)?;
            store.archive().append("cpo/award", &awarded.award, now)?;
            crate::datadir::write_file_atomic(&out_dir.join("award.cose"), &awarded.award)?;
            for (_, receipt, notice) in &awarded.notices {
                let f = out_dir.join(format!("notice-{}.cose", hex::encode(&receipt[..8])));
                crate::datadir::write_file_atomic(&f, notice)?;
            }
            crate::output::emit(
                ctx.json,
                &format!(
                    "arbiter {} awarded CPO {}: {} of {} bids; award and notices in {}",
                    alice.id(),
                    hex::encode(cpo),
                    match awarded.winner {
                        Some(w) => format!("winner {w}"),
                        None => "no winner".into(),
                    },
                    awarded.notices.len(),
                    out_dir.display()
                ),
                serde_json::json!({
                    "id": hex::encode(cpo),
                    "winner": awarded.winner.map(|w| w.to_string()),
                    "bids": awarded.notices.len(),
                    "dir": out_dir,
                }),
            );
        }
        CpoCmd::Notice { id, receipt, out } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let alice = node_peer(&ks, ARBITER_KEY)?;
            let signed = read_limited(receipt)?;
            let message: BidReceipt = agora_core::wire::cose::verify(&signed, &server_peer.sign)
                .with_context(|| {
                    format!("{} is not a BID_RECEIPT of this server", receipt.display())
                })?;
            let held = HeldReceipt { signed, message };
            let notice = server.notice(&store.bids(), &cpo, &held.hash())?;
            let outcome = check_notice(&notice, &held, &server_peer.sign, &alice.sign)?;
            if let Some(out) = out {
                crate::datadir::write_file_atomic(out, &notice)?;
            }
            let word = match outcome {
                Outcome::Won => "won",
                Outcome::Lost => "lost",
            };
            crate::output::emit(
                ctx.json,
                &format!(
                    "the bid of {} {word} (notice checked against the arbiter's award)",
                    held.message.price
                ),
                serde_json::json!({ "outcome": word, "receipt_hash": hex::encode(held.hash()) }),
            );
        }
        CpoCmd::Binding { id, buyer, out } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let bob = keys(&ks, buyer)?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let now = ctx.now();
            let (req_bytes, req) = agora_cpo::delivery::request_binding(&bob, &mut rng, now, cpo);
            let reply = server
                .binding_for_buyer(&mut rng, now, &req_bytes)
                .context("the server refused")?;
            let evidence =
                agora_cpo::delivery::open_binding_reply(&bob, &server_peer.sign, &req, &reply)?;
            crate::datadir::write_file_atomic(out, &evidence)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "the binding of CPO {} is in {}",
                    hex::encode(cpo),
                    out.display()
                ),
                serde_json::json!({ "id": hex::encode(cpo), "file": out }),
            );
        }
        CpoCmd::Challenge {
            bound,
            verifier,
            out,
        } => {
            let bound = read_limited(bound)?;
            let c = agora_cpo::delivery::challenge(&mut rng, ctx.now(), &bound, verifier)?;
            crate::datadir::write_file_atomic(out, &agora_core::wire::encode(&c))?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "challenge written to {}: the seller answers with agora cpo prove",
                    out.display()
                ),
                serde_json::json!({ "file": out }),
            );
        }
        CpoCmd::Prove {
            challenge,
            bound,
            seller: name,
            out,
        } => {
            let ks = ctx.load_keystore()?;
            let pam = keys(&ks, name)?;
            let c: agora_cpo::delivery::ProofChallenge =
                agora_core::wire::decode(&read_limited(challenge)?)
                    .context("not a delivery challenge")?;
            let proof = agora_cpo::delivery::prove(&pam, &c, &read_limited(bound)?)?;
            crate::datadir::write_file_atomic(out, &proof)?;
            crate::output::emit(
                ctx.json,
                &format!("proof for {:?} written to {}", c.verifier, out.display()),
                serde_json::json!({ "file": out }),
            );
        }
        CpoCmd::VerifyProof {
            proof,
            challenge,
            bound,
        } => {
            let ks = ctx.load_keystore()?;
            let server = node_peer(&ks, SERVER_KEY)?;
            let c: agora_cpo::delivery::ProofChallenge =
                agora_core::wire::decode(&read_limited(challenge)?)
                    .context("not a delivery challenge")?;
            let seller = agora_cpo::delivery::check_proof(
                &read_limited(proof)?,
                &c,
                &read_limited(bound)?,
                &server.sign,
                ctx.now(),
            )
            .context("the proof is refused")?;
            crate::output::emit(
                ctx.json,
                &format!("proof valid: the deliverer holds the key of the bond that bound the CPO ({seller})"),
                serde_json::json!({ "valid": true, "seller_key_id": seller.to_string() }),
            );
        }
        CpoCmd::Mail(c) => crate::mail::run(ctx, c)?,
        CpoCmd::Sweep => {
            let ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, _) = local_server(ctx, &ks, &store)?;
            let r = server.apply_revocations(ctx.now())?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "revocation sweep: {} CPOs taken down, {} sessions ended",
                    r.cpos_taken_down, r.sessions_ended
                ),
                serde_json::json!({ "cpos_taken_down": r.cpos_taken_down, "sessions_ended": r.sessions_ended }),
            );
        }
        CpoCmd::EndSession { seller: name } => {
            let mut ks = ctx.load_keystore()?;
            let store = ctx.store()?;
            let (server, server_peer) = local_server(ctx, &ks, &store)?;
            let session = seller_session(ctx, &ks, name, server_peer)?;
            let outcome = server.handle_end_session(ctx.now(), &session.end(&mut rng))?;
            ks.remove(&k_p_name(name));
            ctx.save_keystore(&ks)?;
            let _ = std::fs::remove_file(session_file(ctx, name));
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name}'s browse session ended ({outcome:?}); K_p removed from the keystore"
                ),
                serde_json::json!({ "outcome": format!("{outcome:?}") }),
            );
        }
    }
    Ok(())
}
