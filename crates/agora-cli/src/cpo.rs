//! `agora cpo ...`: Conditional Purchase Orders, the buyer's and the
//! seller's side. Every protocol message is built, sealed, opened and
//! checked here with the buyer and seller state machines; the arbiter and
//! the server are reached through a [`CpoTransport`]:
//!
//! - with `--node URL` (or `$AGORA_NODE`), a node over HTTP
//!   ([`NodeClient`]);
//! - without it, this data directory's own arbiter and server hosted in this
//!   process ([`LocalCpo`] on [`crate::node::cpo_service`]): the very code
//!   `agora up` runs.
//!
//! The arbiter's and the server's public keys always come from the trust
//! store: `agora init` pins this data directory's own, and
//! `agora cpo trust-node URL` pins a node's. The client keeps its own copies
//! of the evidence it receives in this data directory's archive.

use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_client::cpo::flow::{
    AnyApproval, AskBinding, Bid, Bind, Browse, Conversation, EndSession, FetchBids, FetchBinding,
    FetchPosted, Outgoing, Posting,
};
use agora_client::cpo::FlowError;
use agora_client::datadir::{pinned, role_keys};
use agora_client::transport::{ClientError, CpoTransport, LocalCpo, NodeClient};
use agora_core::wire::{cose, Decoder, Encoder};
use agora_core::{KeyId, Money, Timestamp};
use agora_cpo::bidding::{check_notice, Award, BidReceipt, HeldReceipt, Notice, Outcome};
use agora_cpo::buyer::Acceptance;
use agora_cpo::policy::{ArbiterPolicy, Template};
use agora_cpo::server::{check_acceptance, Server};
use agora_cpo::{BondTrust, Ccpo, CcpoDraft, Mode, Peer};
use agora_node::cpo::BoardQuery;
use agora_pki::{Keystore, Party, PartyRole, TrustStore};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::Value;
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
        #[arg(long, allow_hyphen_values = true)]
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
        /// The order: newest (posted last first), ending (soonest to end
        /// first), price, price-desc, or id.
        #[arg(long, default_value = "newest", value_parser = ["newest", "ending", "price", "price-desc", "id"])]
        sort: String,
        /// The next page: the cursor the previous page ended with.
        #[arg(long, conflicts_with = "after")]
        cursor: Option<String>,
        /// List CPOs whose id follows this one (paging in the id order;
        /// implies --sort id).
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
        #[arg(long, allow_hyphen_values = true, value_name = "MONEY")]
        min_price: Option<Money>,
        /// Highest price, inclusive, e.g. "200 EUR" (also selects its currency).
        #[arg(long, allow_hyphen_values = true, value_name = "MONEY")]
        max_price: Option<Money>,
        /// Only CPOs priced in this currency, e.g. EUR.
        #[arg(long)]
        currency: Option<agora_core::Currency>,
        /// Only CPOs active at this time (start <= t < end): a date
        /// (2026-12-07), RFC 3339 (2026-12-07T14:00:00Z) or Unix seconds.
        #[arg(long, value_name = "TIME", value_parser = crate::cert::parse_time)]
        active_at: Option<Timestamp>,
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
    /// My CPOs: the ones I posted as a buyer, and bound or bid on as a
    /// seller, as this data directory's evidence archive holds them, each
    /// with its state on the node now; and my browse session.
    #[command(after_help = "Example:\n  agora cpo mine --as bob")]
    Mine {
        /// The key pair whose CPOs to show (buyer or seller).
        #[arg(long = "as")]
        name: String,
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
        #[arg(long, allow_hyphen_values = true)]
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
        /// Directory for award.cose and notice-RECEIPT.cose files.
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
        /// A notice she received by mail (`agora cpo mail server` writes
        /// them with the award), checked instead of asking the server.
        #[arg(long)]
        notice: Option<PathBuf>,
        /// Write the notice here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The buyer fetches his posted CPO again (its answer was lost: posting
    /// again is refused "already posted") with a request signed by his bond
    /// key.
    #[command(after_help = "Example:\n  agora cpo posted <cpo-id> --buyer bob --out book.posted")]
    Posted {
        /// The CPO id (hex).
        id: String,
        /// The buyer's key pair.
        #[arg(long)]
        buyer: String,
        /// Write the server's signed CPO here.
        #[arg(long)]
        out: PathBuf,
    },
    /// A bidder fetches her BID_RECEIPTs on a CPO again (one was lost on
    /// the way, and she may have bid again) with a request signed by her
    /// bond key; each is checked and written to a file for `agora cpo
    /// notice`.
    #[command(
        after_help = "Example:\n  agora cpo bids <cpo-id> --seller pam --out-dir pam-receipts\n  agora cpo notice <cpo-id> --receipt pam-receipts/receipt-<hash>.cose"
    )]
    Bids {
        /// The CPO id (hex).
        id: String,
        /// The seller's key pair (the one her bond certifies).
        #[arg(long)]
        seller: String,
        /// Directory for the receipt-HASH.cose files (BID_RECEIPT,
        /// COSE_Sign1), created if missing.
        #[arg(long)]
        out_dir: PathBuf,
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
    /// Apply the CRLs of the data directory to this data directory's own
    /// server: CPOs of revoked buyers are taken down, sessions of revoked
    /// sellers end. Not with --node: a running node does this itself on
    /// every housekeeping run.
    Sweep,
    /// Pin a node's CPO server and arbiter, and its bonding agencies, in the
    /// trust store, as its /v1/node and /v1/pki/agencies describe them.
    /// Compare the key ids printed with the ones the node's operator gives
    /// you (`agora up` prints them), or pass them with --expect-server.
    #[command(
        after_help = "Example:\n  agora cpo trust-node http://127.0.0.1:7878 --expect-server <key id>\n  \
        export AGORA_NODE=http://127.0.0.1:7878"
    )]
    TrustNode {
        /// The node's URL, e.g. http://127.0.0.1:7878.
        url: String,
        /// Pin nothing unless the node's CPO server has this key id.
        #[arg(long, value_name = "KEY_ID")]
        expect_server: Option<String>,
        /// Pin nothing unless the node's CPO arbiter has this key id.
        #[arg(long, value_name = "KEY_ID")]
        expect_arbiter: Option<String>,
    },
    /// The protocols one message at a time through files, as by e-mail
    /// (approval, post, browse session, bind, bid and award): each party
    /// handles a message when it arrives; a file named *.asc is
    /// ASCII-armoured, to paste into a mail body.
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

pub(crate) fn cpo_id(hex_id: &str) -> anyhow::Result<[u8; 32]> {
    Ok(KeyId::from_hex(hex_id)
        .with_context(|| format!("CPO id {hex_id:?}"))?
        .0)
}

// ------------------------------------------------------------ transport

/// How this command reaches the arbiter and the server: the node named by
/// `--node` over HTTP, else this data directory's roles in this process.
pub(crate) fn transport(ctx: &Ctx, ks: &Keystore) -> anyhow::Result<Box<dyn CpoTransport>> {
    match &ctx.node {
        Some(url) => Ok(Box::new(NodeClient::new(url)?)),
        None => Ok(Box::new(LocalCpo::new(crate::node::cpo_service(ctx, ks)?))),
    }
}

/// [`transport`] for the public queries (the board, a CPO's status, awards,
/// notices): with `--node` no keystore is opened.
fn public_transport(ctx: &Ctx) -> anyhow::Result<Box<dyn CpoTransport>> {
    match &ctx.node {
        Some(url) => Ok(Box::new(NodeClient::new(url)?)),
        None => transport(ctx, &ctx.load_keystore()?),
    }
}

/// A refusal of the node (or of the in-process roles) as one line with its
/// code, under `what`. The codes agora's own errors have are given back
/// their type, so that `--json` reports the same code as the role did and
/// the text reads the same with and without `--node`.
fn node_error(e: ClientError, what: &str) -> anyhow::Error {
    use agora_core::Error as E;
    match e {
        // Its own sentence says what happened and what to do.
        e @ ClientError::Transport(_) => anyhow::Error::new(e),
        ClientError::Problem(p) => {
            let detail = || p.detail.clone().unwrap_or_default();
            let typed = match p.code.as_str() {
                "refused" => Some(E::Refused(detail())),
                "not-authorised" => Some(E::NotAuthorised(detail())),
                "crypto" => Some(E::Crypto),
                "replayed" => Some(E::Replayed),
                "overloaded" => Some(E::Overloaded),
                _ => None,
            };
            // The role's own words, as a person reads them: a refusal's
            // detail, without the certificate code kept for scripts.
            let said = match &typed {
                Some(E::Refused(d) | E::NotAuthorised(d)) => {
                    format!("{what}: {}", crate::output::human_detail(d))
                }
                _ => what.to_owned(),
            };
            match typed {
                Some(t) => anyhow::Error::new(t).context(said),
                None => anyhow::Error::new(ClientError::Problem(p)).context(said),
            }
        }
    }
}

/// Carries a client flow (`agora_client::cpo::flow`) over `t` to its end;
/// a refusal reads "`what`: code: detail", a failed check is its own error.
fn run_flow<C: Conversation>(
    ctx: &Ctx,
    t: &dyn CpoTransport,
    party: &C::Party,
    (first, conv): (Outgoing, C),
    rng: &mut impl agora_core::crypto::Rng,
    what: &str,
) -> anyhow::Result<C::Done> {
    agora_client::cpo::run(t, party, first, conv, rng, || ctx.now()).map_err(|e| {
        let retry = matches!(&e, FlowError::Node(c) if crate::output::retryable(c));
        let e = match e {
            FlowError::Node(e) => node_error(e, what),
            FlowError::Protocol(e) => anyhow::Error::new(e),
        };
        // Each CPO conversation may be run again from its start: a step the
        // node finished is answered again with its result (an acceptance,
        // the posted CPO, the seller's own binding or bid), and one it did
        // not finish left nothing behind.
        crate::output::run_again_if(retry, e, "the conversation with the node did not finish")
    })
}

/// The BID_RECEIPTs the server holds of `pam`'s bids on `cpo`, asked for
/// a page at a time under her signature.
fn my_bids(
    ctx: &Ctx,
    t: &dyn CpoTransport,
    pam: &agora_cpo::Keys,
    server: &Peer,
    cpo: [u8; 32],
    rng: &mut impl agora_core::crypto::Rng,
) -> anyhow::Result<Vec<HeldReceipt>> {
    // `from` grows with every page and the server holds at most
    // MAX_BIDS_PER_CPO bids, so this ends.
    let mut held: Vec<HeldReceipt> = Vec::new();
    let mut from = Some(0);
    while let Some(f) = from {
        let start = FetchBids::start(pam, rng, ctx.now(), cpo, f, server);
        let page = match run_flow(ctx, t, pam, start, rng, "the server refused") {
            Ok(page) => page,
            Err(e) if refused_with(&e, agora_cpo::bidding::NO_BIDS_OF_YOURS) => break,
            Err(e) => return Err(e),
        };
        from = page.next();
        held.extend(page.receipts);
    }
    Ok(held)
}

/// Where a bid sent and not yet answered is marked, by CPO, seller, price
/// and details (`cpo-pending/` in the data directory).
fn pending_bid_marker(
    ctx: &Ctx,
    cpo: &[u8; 32],
    seller: &str,
    price: &Money,
    details: &str,
) -> PathBuf {
    let what = agora_core::crypto::sha256(format!("{seller}\n{price}\n{details}").as_bytes());
    ctx.dir().join("cpo-pending").join(format!(
        "bid-{}-{}",
        hex::encode(&cpo[..8]),
        hex::encode(&what[..8])
    ))
}

/// A buyer's request for his binding or posted CPO is checked against the
/// key of the bond in the CPO: signed by any other key it is refused as not
/// authorised. Said as what it means (and still with that code).
fn not_the_buyer(e: anyhow::Error, buyer: &str) -> anyhow::Error {
    let refused = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<agora_core::Error>(),
            Some(agora_core::Error::NotAuthorised(_) | agora_core::Error::Crypto)
        )
    });
    if !refused {
        return e;
    }
    let sentence = format!(
        "{buyer} is not this CPO's buyer: only the key of the bond in the CPO may ask for it"
    );
    anyhow::Error::new(agora_core::Error::NotAuthorised(sentence.clone())).context(sentence)
}

/// Whether `e` is the role's refusal `detail` (one of agora-cpo's stable
/// refusals, e.g. [`agora_cpo::server::ALREADY_POSTED`]).
fn refused_with(e: &anyhow::Error, detail: &str) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<agora_core::Error>(), Some(agora_core::Error::Refused(d)) if d == detail)
    })
}

/// The node's `/v1/node` document.
fn node_doc(url: &str) -> anyhow::Result<(NodeClient, Value)> {
    let c = NodeClient::new(url)?;
    let doc: Value = c.get_json("/v1/node").map_err(|e| {
        let retry = crate::output::retryable(&e);
        let e = node_error(e, &format!("reading {url}/v1/node"));
        crate::output::run_again_if(retry, e, "nothing yet: the node's roles could not be read")
    })?;
    Ok((c, doc))
}

/// The key ids of the server and the arbiter the transport reaches.
struct Hosted {
    server: Option<KeyId>,
    arbiter: Option<KeyId>,
    /// How to name the node in messages ("this node's").
    name: String,
    /// Where the roles are ("this data directory", a URL).
    place: String,
}

fn hosted(ctx: &Ctx, ks: &Keystore) -> anyhow::Result<Hosted> {
    match &ctx.node {
        None => Ok(Hosted {
            server: Some(node_peer(ks, SERVER_KEY)?.id()),
            arbiter: Some(node_peer(ks, ARBITER_KEY)?.id()),
            name: "this node's".into(),
            place: "this data directory".into(),
        }),
        Some(url) => {
            let (_, doc) = node_doc(url)?;
            let kid = |role: &str| -> anyhow::Result<Option<KeyId>> {
                match doc["services"]["cpo"][role]["key_id"].as_str() {
                    None => Ok(None),
                    Some(h) => Ok(Some(KeyId::from_hex(h).with_context(|| {
                        format!("{url}/v1/node: the {role}'s key id {h:?}")
                    })?)),
                }
            };
            Ok(Hosted {
                server: kid("server")?,
                arbiter: kid("arbiter")?,
                name: format!("the node's at {url}"),
                place: url.clone(),
            })
        }
    }
}

impl Hosted {
    fn server(&self) -> anyhow::Result<KeyId> {
        self.server
            .with_context(|| format!("{} hosts no CPO server", self.place))
    }
    fn arbiter(&self) -> anyhow::Result<KeyId> {
        self.arbiter
            .with_context(|| format!("{} hosts no CPO arbiter", self.place))
    }
}

/// The server the transport reaches, with its pinned keys.
pub(crate) fn node_server(ctx: &Ctx, ks: &Keystore, trust: &TrustStore) -> anyhow::Result<Peer> {
    let h = hosted(ctx, ks)?;
    Ok(pinned(
        trust,
        PartyRole::Server,
        &h.server()?,
        &format!("{} server", h.name),
    )?)
}

/// Keeps the client's own copy of evidence it received. Without `--node`
/// the in-process node archives what it issues (`node_archives_it`: the
/// acceptance, the posted CPO, the award) in this very archive already, so
/// it is not kept twice.
pub(crate) fn keep(
    ctx: &Ctx,
    kind: &str,
    bytes: &[u8],
    node_archives_it: bool,
) -> anyhow::Result<()> {
    if node_archives_it && ctx.node.is_none() {
        return Ok(());
    }
    ctx.store()?.archive().append(kind, bytes, ctx.now())?;
    Ok(())
}

// ------------------------------------------------------------ sessions

// ------------------------------------------------------------ local roles

/// This data directory's own server on its store, for what only the
/// node's operator does (`sweep`, `mail server`).
pub(crate) fn local_server(
    ctx: &Ctx,
    ks: &Keystore,
    store: &agora_store::Stores,
) -> anyhow::Result<(Server, Peer)> {
    let trust = ctx.load_trust()?;
    let arbiters: Vec<_> = trust
        .by_role(PartyRole::Arbiter)
        .filter_map(|p| p.verifying_key())
        .collect();
    let server_keys = role_keys(ks, SERVER_KEY)?;
    let peer = server_keys.peer();
    Ok((
        Server::new(server_keys, bond_trust(ctx)?, arbiters, store.cpo()),
        peer,
    ))
}

pub(crate) fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(agora_client::datadir::read_at_most(path, MAX_FILE_LEN)?)
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
    let path = ctx.dir().join("arbiter-policy.toml");
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
    Ok(role_keys(ks, name)
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

/// [`describe`] for a board entry as the node's JSON gives it.
fn describe_json(e: &Value) -> String {
    let terms = text_of(e, "terms");
    format!(
        "CPO {}\n  goods    {}\n  price    {}\n  active   {} .. {}\n  terms    {}",
        text_of(e, "id"),
        text_of(e, "goods"),
        text_of(e, "price"),
        crate::cert::fmt_time(time_of(e, "start")),
        crate::cert::fmt_time(time_of(e, "end")),
        if terms.is_empty() { "-" } else { terms }
    )
}

fn text_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("?")
}

fn time_of(v: &Value, key: &str) -> Timestamp {
    Timestamp(v[key].as_u64().unwrap_or(0))
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
            ctx.check_out(out)?;
            let ks = ctx.load_keystore()?;
            let bond = crate::cert::read_cert_der(bond)?;
            let holder = agora_pki::parse_certificate(&bond)?.public_key;
            let me = role_keys(&ks, buyer)?;
            if holder != me.sign.verifying_key() {
                bail!("the bond certifies another key than {buyer:?}'s");
            }
            // The node's roles are the default: it is asked only if needed,
            // and a node's roles must be pinned here already.
            let node = match (arbiter, server) {
                (Some(_), Some(_)) => None,
                _ => Some(hosted(ctx, &ks)?),
            };
            let trust = ctx.load_trust()?;
            let id_or = |given: &Option<String>, role: PartyRole| -> anyhow::Result<KeyId> {
                if let Some(h) = given {
                    return KeyId::from_hex(h).with_context(|| format!("key id {h:?}"));
                }
                let h = node.as_ref().context("the node's roles")?;
                let (id, what) = match role {
                    PartyRole::Server => (h.server()?, "server"),
                    _ => (h.arbiter()?, "arbiter"),
                };
                pinned(&trust, role, &id, &format!("{} {what}", h.name))?;
                Ok(id)
            };
            let arbiter = id_or(arbiter, PartyRole::Arbiter)?;
            let server = id_or(server, PartyRole::Server)?;
            let now = ctx.now();
            let ccpo = Ccpo::new(
                CcpoDraft {
                    arbiter,
                    server,
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
            ctx.check_out(out)?;
            let ccpo = read_ccpo(ccpo)?;
            let ks = ctx.load_keystore()?;
            let bob = role_keys(&ks, buyer)?;
            let trust = ctx.load_trust()?;
            let h = hosted(ctx, &ks)?;
            let theirs = h.arbiter()?;
            if ccpo.arbiter != theirs {
                bail!(
                    "the CCPO names arbiter {}, not {} ({theirs})",
                    ccpo.arbiter,
                    h.name
                );
            }
            let alice = pinned(
                &trust,
                PartyRole::Arbiter,
                &ccpo.arbiter,
                "the CCPO's arbiter",
            )?;
            let t = transport(ctx, &ks)?;
            let mode = if *bidding {
                Mode::Bidding
            } else {
                Mode::FirstCome
            };
            let start = AnyApproval::start(mode, &bob, &mut rng, ccpo, additional_terms, &alice)?;
            let acceptance = run_flow(ctx, &*t, &bob, start, &mut rng, "the arbiter refused")?;
            keep(ctx, "cpo/arbiter-acceptance", &acceptance.signed, true)?;
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
            ctx.check_out(out)?;
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
            let bob = role_keys(&ks, buyer)?;
            let h = hosted(ctx, &ks)?;
            let theirs = h.server()?;
            if acc.ccpo.server != theirs {
                bail!(
                    "the acceptance names server {}, not {} ({theirs})",
                    acc.ccpo.server,
                    h.name
                );
            }
            let server = pinned(
                &trust,
                PartyRole::Server,
                &acc.ccpo.server,
                "the CPO's server",
            )?;
            let t = transport(ctx, &ks)?;
            let start = Posting::start(&bob, &mut rng, &acc, &server)?;
            let mut already = false;
            let receipt = match run_flow(ctx, &*t, &bob, start, &mut rng, "the server refused") {
                Ok(r) => r,
                // Posted already, the answer lost: the server gives its
                // buyer the posted CPO again.
                Err(e) if refused_with(&e, agora_cpo::server::ALREADY_POSTED) => {
                    let id = acc.ccpo.id;
                    let start = FetchPosted::start(&bob, &mut rng, ctx.now(), id, &server);
                    let r = run_flow(ctx, &*t, &bob, start, &mut rng, "the server refused")
                        .map_err(|_| e)?;
                    if r.cpo.ccpo != acc.ccpo {
                        bail!("the server's posted CPO is not the one accepted");
                    }
                    already = true;
                    r
                }
                Err(e) => return Err(e),
            };
            keep(ctx, "cpo/posted", &receipt.signed, true)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\n{} ({}); the server's signed CPO is in {}",
                    describe(&receipt.cpo.ccpo),
                    if already {
                        "was posted already"
                    } else {
                        "posted"
                    },
                    acc.mode.as_str(),
                    out.display()
                ),
                serde_json::json!({
                    "id": hex::encode(receipt.cpo.ccpo.id),
                    "mode": acc.mode.as_str(),
                    "already_posted": already,
                    "file": out,
                }),
            );
        }
        CpoCmd::List {
            limit,
            sort,
            cursor,
            after,
            ids,
            search,
            min_price,
            max_price,
            currency,
            active_at,
            mode,
        } => {
            if let Some(h) = after {
                KeyId::from_hex(h).with_context(|| format!("CPO id {h:?}"))?;
            }
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
            let q = BoardQuery {
                q: search.clone(),
                min_price: min_price.map(|m| m.to_string()),
                max_price: max_price.map(|m| m.to_string()),
                currency: currency.map(|c| c.as_str().to_owned()),
                active_at: active_at.map(|t| t.secs()),
                mode: mode.clone(),
                after: after.clone(),
                limit: Some(*limit),
                // `--after` pages the id order.
                sort: Some(if after.is_some() {
                    "id".into()
                } else {
                    sort.clone()
                }),
                cursor: cursor.clone(),
            };
            let filtered = q.q.is_some()
                || q.min_price.is_some()
                || q.max_price.is_some()
                || q.currency.is_some()
                || q.active_at.is_some()
                || q.mode.is_some();
            if after.is_some() && sort != "newest" && sort != "id" {
                bail!("--after pages the id order: give --cursor to page --sort {sort}");
            }
            let page = public_transport(ctx)?
                .board(&q)
                .map_err(|e| node_error(e, "the board refused the query"))?;
            let entries = page.entries;
            let mut text = String::new();
            for e in entries.iter().filter(|_| *ids) {
                text.push_str(text_of(e, "id"));
                text.push('\n');
            }
            for e in entries.iter().filter(|_| !*ids) {
                let bids = match e["bids"].as_u64() {
                    Some(1) => "  (1 bid)".to_owned(),
                    Some(n) => format!("  ({n} bids)"),
                    None => String::new(),
                };
                text.push_str(&format!(
                    "{}  {:>14}  {:<10}  until {}  {}{bids}\n",
                    text_of(e, "id"),
                    text_of(e, "price"),
                    text_of(e, "mode"),
                    crate::cert::fmt_time(time_of(e, "end")),
                    text_of(e, "goods")
                ));
            }
            // A page cut short says how to go on (not in --ids, which
            // scripts page with --after).
            if let (Some(next), false) = (&page.next, *ids) {
                let mut args: Vec<String> = std::env::args().skip(1).collect();
                if let Some(i) = args.iter().position(|a| a == "--cursor") {
                    args.drain(i..(i + 2).min(args.len()));
                }
                args.retain(|a| !a.starts_with("--cursor="));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                text.push_str(&format!(
                    "more: {} --cursor {next}\n",
                    std::iter::once("agora".to_owned())
                        .chain(args.iter().map(|a| crate::output::shell_quote(a)))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            if entries.is_empty() && !*ids {
                text.push_str(if filtered {
                    "no open CPOs match"
                } else {
                    "no open CPOs"
                });
            }
            crate::output::emit(ctx.json, text.trim_end(), Value::Array(entries));
        }
        CpoCmd::Mine { name } => mine(ctx, name)?,
        CpoCmd::Status { id } => {
            let id = cpo_id(id)?;
            let json = public_transport(ctx)?.cpo(&id).map_err(|e| match e {
                ClientError::Problem(p) if p.code == "not-found" => {
                    anyhow::anyhow!("no CPO {} on this node's board", hex::encode(id))
                }
                e => node_error(e, "the node refused"),
            })?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\n  mode     {}\n  status   {}\n  posted   {}",
                    describe_json(&json),
                    text_of(&json, "mode"),
                    json["status"].as_str().unwrap_or("open"),
                    crate::cert::fmt_time(time_of(&json, "posted_at"))
                ),
                json,
            );
        }
        CpoCmd::Session {
            seller: name,
            bond,
            hours,
        } => session(ctx, name, bond, *hours, &mut rng)?,
        CpoCmd::Bind {
            id,
            seller: name,
            offer,
            out,
        } => {
            ctx.check_out(out)?;
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = ctx.seller_session(&ks, &trust, name)?;
            let t = transport(ctx, &ks)?;
            let start = Bind::start(&session, &mut rng, cpo, offer)?;
            let receipt = match run_flow(
                ctx,
                &*t,
                &session,
                start,
                &mut rng,
                "the server refused the binding",
            ) {
                Ok(r) => r,
                // Bound already: by her, the answer lost (the server gives
                // her binding to her session), or by someone else.
                Err(e) if refused_with(&e, agora_cpo::server::ALREADY_BOUND) => {
                    let start = AskBinding::start(&session, &mut rng, &cpo, session.bond());
                    run_flow(
                        ctx,
                        &*t,
                        &session,
                        start,
                        &mut rng,
                        "asking for the binding",
                    )
                    .map_err(|_| e)?
                }
                Err(e) => return Err(e),
            };
            keep(ctx, "cpo/bound-cpo", &receipt.signed, false)?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            let now = ctx.now();
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
            ctx.check_out(out)?;
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = ctx.seller_session(&ks, &trust, name)?;
            let t = transport(ctx, &ks)?;
            // A bid is a new bid each time it is sent; one whose answer was
            // lost is found among her bids instead of being made twice. The
            // marker says that this bid was sent and not answered.
            let marker = pending_bid_marker(ctx, &cpo, name, price, details);
            let mut found = None;
            if marker.exists() {
                let pam = role_keys(&ks, name)?;
                let server = node_server(ctx, &ks, &trust)?;
                found = my_bids(ctx, &*t, &pam, &server, cpo, &mut rng)?
                    .into_iter()
                    .find(|r| r.message.price == *price && r.message.details == *details);
            }
            let receipt = match found {
                Some(r) => r,
                None => {
                    crate::datadir::write_file_atomic(
                        &marker,
                        crate::output::this_command().as_bytes(),
                    )?;
                    let start = Bid::start(&session, &mut rng, cpo, *price, details)?;
                    run_flow(
                        ctx,
                        &*t,
                        &session,
                        start,
                        &mut rng,
                        "the server refused the bid",
                    )?
                }
            };
            std::fs::remove_file(&marker)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .with_context(|| format!("removing {}", marker.display()))?;
            keep(ctx, "cpo/bid-receipt", &receipt.signed, false)?;
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
        CpoCmd::Award { id, out_dir } => award(ctx, id, out_dir)?,
        CpoCmd::Notice {
            id,
            receipt,
            notice: mailed,
            out,
        } => {
            if let Some(out) = out {
                ctx.check_out(out)?;
            }
            let cpo = cpo_id(id)?;
            let trust = ctx.load_trust()?;
            let signed = read_limited(receipt)?;
            let not_a_receipt = || {
                format!(
                    "{} is not a BID_RECEIPT of a pinned server",
                    receipt.display()
                )
            };
            let kid = cose::peek_kid(&signed).with_context(not_a_receipt)?;
            let server = pinned(&trust, PartyRole::Server, &kid, "the receipt's signer")
                .with_context(not_a_receipt)?;
            let message: BidReceipt =
                cose::verify(&signed, &server.sign).with_context(not_a_receipt)?;
            if message.ccpo.id != cpo {
                bail!(
                    "{} is a receipt for CPO {}, not {}",
                    receipt.display(),
                    hex::encode(message.ccpo.id),
                    hex::encode(cpo)
                );
            }
            let alice = pinned(
                &trust,
                PartyRole::Arbiter,
                &message.ccpo.arbiter,
                "the CPO's arbiter",
            )?;
            let held = HeldReceipt { signed, message };
            let notice = match mailed {
                Some(f) => read_limited(f)?,
                None => public_transport(ctx)?
                    .notice(&cpo, &held.hash())
                    .map_err(|e| node_error(e, "no notice"))?,
            };
            let outcome = check_notice(&notice, &held, &server.sign, &alice.sign)?;
            keep(ctx, "cpo/bid-notice", &notice, false)?;
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
        CpoCmd::Posted { id, buyer, out } => {
            ctx.check_out(out)?;
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let bob = role_keys(&ks, buyer)?;
            let trust = ctx.load_trust()?;
            let server = node_server(ctx, &ks, &trust)?;
            let t = transport(ctx, &ks)?;
            let start = FetchPosted::start(&bob, &mut rng, ctx.now(), cpo, &server);
            let receipt = run_flow(ctx, &*t, &bob, start, &mut rng, "the server refused")
                .map_err(|e| not_the_buyer(e, buyer))?;
            crate::datadir::write_file_atomic(out, &receipt.signed)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\nposted; the server's signed CPO is in {}",
                    describe(&receipt.cpo.ccpo),
                    out.display()
                ),
                serde_json::json!({ "id": hex::encode(cpo), "file": out }),
            );
        }
        CpoCmd::Bids {
            id,
            seller: name,
            out_dir,
        } => {
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let pam = role_keys(&ks, name)?;
            let trust = ctx.load_trust()?;
            let server = node_server(ctx, &ks, &trust)?;
            let t = transport(ctx, &ks)?;
            // A page at a time; `from` grows with every page and the server
            // holds at most MAX_BIDS_PER_CPO bids, so this ends.
            let held = my_bids(ctx, &*t, &pam, &server, cpo, &mut rng)?;
            let mut text = format!(
                "{name} has {} bid(s) on CPO {}; BID_RECEIPTs, signed by the server, in {}:",
                held.len(),
                hex::encode(cpo),
                out_dir.display()
            );
            let mut list = Vec::new();
            for r in &held {
                keep(ctx, "cpo/bid-receipt", &r.signed, false)?;
                let file = out_dir.join(format!("receipt-{}.cose", hex::encode(&r.hash()[..8])));
                crate::datadir::write_file_atomic(&file, &r.signed)?;
                text.push_str(&format!(
                    "\n  {}  taken {}  award due by {}  {}",
                    r.message.price,
                    crate::cert::fmt_time(r.message.t),
                    crate::cert::fmt_time(r.message.t_response),
                    file.display()
                ));
                list.push(serde_json::json!({
                    "receipt_hash": hex::encode(r.hash()),
                    "price": r.message.price.to_string(),
                    "t": r.message.t.secs(),
                    "t_response": r.message.t_response.secs(),
                    "file": file,
                }));
            }
            crate::output::emit(
                ctx.json,
                &text,
                serde_json::json!({ "id": hex::encode(cpo), "bids": list }),
            );
        }
        CpoCmd::Binding { id, buyer, out } => {
            ctx.check_out(out)?;
            let cpo = cpo_id(id)?;
            let ks = ctx.load_keystore()?;
            let bob = role_keys(&ks, buyer)?;
            let trust = ctx.load_trust()?;
            let server = node_server(ctx, &ks, &trust)?;
            let t = transport(ctx, &ks)?;
            let start = FetchBinding::start(&bob, &mut rng, ctx.now(), cpo, &server);
            let evidence = run_flow(ctx, &*t, &bob, start, &mut rng, "the server refused")
                .map_err(|e| not_the_buyer(e, buyer))?;
            keep(ctx, "cpo/binding", &evidence, false)?;
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
            ctx.check_out(out)?;
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
            ctx.check_out(out)?;
            let ks = ctx.load_keystore()?;
            let pam = role_keys(&ks, name)?;
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
            let trust = ctx.load_trust()?;
            let bound_bytes = read_limited(bound)?;
            let kid = cose::peek_kid(&bound_bytes)
                .with_context(|| format!("{} is not a BOUND_CPO", bound.display()))?;
            let server = pinned(&trust, PartyRole::Server, &kid, "the BOUND_CPO's signer")?;
            let c: agora_cpo::delivery::ProofChallenge =
                agora_core::wire::decode(&read_limited(challenge)?)
                    .context("not a delivery challenge")?;
            let seller = agora_cpo::delivery::check_proof(
                &read_limited(proof)?,
                &c,
                &bound_bytes,
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
            if let Some(url) = &ctx.node {
                bail!(
                    "the node at {url} sweeps by itself (its housekeeping applies new CRLs every \
                     run); `agora cpo sweep` without --node sweeps this data directory's own server"
                );
            }
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
        CpoCmd::TrustNode {
            url,
            expect_server,
            expect_arbiter,
        } => trust_node(
            ctx,
            url,
            expect_server.as_deref(),
            expect_arbiter.as_deref(),
        )?,
        CpoCmd::EndSession { seller: name } => {
            let _lock = ctx.lock_for_update()?;
            let mut ks = ctx.load_keystore()?;
            let trust = ctx.load_trust()?;
            let session = ctx.seller_session(&ks, &trust, name)?;
            let t = transport(ctx, &ks)?;
            let outcome = run_flow(
                ctx,
                &*t,
                &session,
                EndSession::start(&session, &mut rng),
                &mut rng,
                "the server refused to end the session",
            )?;
            ctx.forget_session(&mut ks, name)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{name}'s browse session ended ({outcome}); K_p removed from the keystore"
                ),
                serde_json::json!({ "outcome": outcome.code() }),
            );
        }
    }
    Ok(())
}

/// Archive entries read per page while looking for a party's CPOs.
const MINE_PAGE: usize = 1000;

/// `agora cpo mine`: the CPOs of `name`'s key in this data directory's
/// evidence archive (posted CPOs whose bond is hers, BOUND_CPOs and
/// BID_RECEIPTs whose seller bond is hers), each checked against the
/// server that signed it, with its state on the node now.
fn mine(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let me = role_keys(&ks, name)?.sign.verifying_key();
    let trust = ctx.load_trust()?;
    let mine_bond =
        |bond: &[u8]| agora_pki::parse_certificate(bond).is_ok_and(|c| c.public_key == me);
    // (role, CPO, goods, price, what), once each.
    let mut found: Vec<(&str, [u8; 32], String, Money, String)> = Vec::new();
    let store = ctx.store()?;
    let mut from = 0;
    loop {
        let page = store.archive().entries(from, MINE_PAGE)?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for e in &page {
            let wanted = matches!(
                e.kind.as_str(),
                "cpo/posted" | "cpo/bound-cpo" | "cpo/bid-receipt"
            );
            let Some(server) = wanted
                .then(|| cose::peek_kid(&e.payload).ok())
                .flatten()
                .and_then(|kid| trust.by_key_id(&kid))
                .filter(|p| p.role == PartyRole::Server)
                .and_then(|p| p.verifying_key())
            else {
                continue;
            };
            let row = match e.kind.as_str() {
                "cpo/posted" => cose::verify::<agora_cpo::msg::PostedCpo>(&e.payload, &server)
                    .ok()
                    .filter(|m| mine_bond(&m.ccpo.bond))
                    .map(|m| ("buyer", m.ccpo, "posted".to_owned())),
                "cpo/bound-cpo" => cose::verify::<agora_cpo::msg::BoundCpo>(&e.payload, &server)
                    .ok()
                    .filter(|m| mine_bond(&m.seller_bond))
                    .map(|m| ("seller", m.ccpo, "bound it".to_owned())),
                _ => cose::verify::<BidReceipt>(&e.payload, &server)
                    .ok()
                    .filter(|m| mine_bond(&m.seller_bond))
                    .map(|m| ("seller", m.ccpo, format!("bid {}", m.price))),
            };
            if let Some((role, ccpo, what)) = row {
                if !found
                    .iter()
                    .any(|f| f.0 == role && f.1 == ccpo.id && f.4 == what)
                {
                    found.push((role, ccpo.id, ccpo.goods, ccpo.price, what));
                }
            }
        }
    }
    let t = public_transport(ctx)?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for (role, id, goods, price, what) in found.iter().rev() {
        let status = match t.cpo(id) {
            Ok(v) => v["status"].as_str().unwrap_or("open").to_owned(),
            Err(ClientError::Problem(p)) if p.code == "not-found" => {
                "not on the board (expired or taken down)".to_owned()
            }
            Err(e) => return Err(node_error(e, "the node refused")),
        };
        text.push_str(&format!(
            "{}  {role:<6}  {price:>12}  {what:<16}  now {status}  {goods}\n",
            hex::encode(id)
        ));
        rows.push(serde_json::json!({
            "id": hex::encode(id),
            "role": role,
            "goods": goods,
            "price": price.to_string(),
            "mine": what,
            "status": status,
        }));
    }
    let session = ctx.seller_session(&ks, &trust, name).ok();
    match &session {
        Some(s) => text.push_str(&format!(
            "browse session {} open (agora cpo end-session --seller {name} ends it)\n",
            hex::encode(&s.id()[..8])
        )),
        None if found.is_empty() => text.push_str(&format!("{name} has no CPOs here\n")),
        None => {}
    }
    crate::output::emit(
        ctx.json,
        text.trim_end(),
        serde_json::json!({
            "cpos": rows,
            "session": session.map(|s| hex::encode(s.id())),
        }),
    );
    Ok(())
}

/// `agora cpo session`: protocol 3 with the node's server.
fn session(
    ctx: &Ctx,
    name: &str,
    bond: &Path,
    hours: u64,
    rng: &mut impl agora_core::crypto::Rng,
) -> anyhow::Result<()> {
    let _lock = ctx.lock_for_update()?;
    let mut ks = ctx.load_keystore()?;
    let pam = role_keys(&ks, name)?;
    let bond = crate::cert::read_cert_der(bond)?;
    let trust = ctx.load_trust()?;
    let server_peer = node_server(ctx, &ks, &trust)?;
    let t = transport(ctx, &ks)?;
    let now = ctx.now();
    let until = now.plus_secs(hours.clamp(1, agora_cpo::MAX_SESSION_SECS / 3600) * 3600);
    let start = Browse::start(&pam, rng, bond, now, until, &server_peer)?;
    let session = run_flow(ctx, &*t, &pam, start, rng, "the server refused the session")?;
    // One session per seller name here: a new one replaces the old, which
    // its server is told to end (if it can still be reached: best effort).
    if let Ok(old) = ctx.seller_session(&ks, &trust, name) {
        let (first, conv) = EndSession::start(&old, rng);
        let _ = agora_client::cpo::run(&*t, &old, first, conv, rng, || ctx.now());
    }
    ctx.keep_session(&mut ks, name, &session)?;
    crate::output::emit(
        ctx.json,
        &format!(
            "browse session {} for {name} until {}; K_p is in the keystore\nnext: agora cpo list, then agora cpo bind <id> --seller {name}",
            hex::encode(&session.id()[..8]),
            crate::cert::fmt_time(until)
        ),
        serde_json::json!({ "session": hex::encode(session.id()), "until": until.secs() }),
    );
    Ok(())
}

/// `agora cpo award`: the node hands the bids of a closed bidding CPO to
/// the arbiter (or gives the award it made already); the award is checked
/// against the arbiter the CPO names, and every bidder's notice against the
/// server, before they are written.
/// Where an award's notice of the bid with receipt hash `receipt` is
/// written in `dir`: `notice-<first 8 bytes of the hash>.cose`.
pub(crate) fn notice_file(dir: &Path, receipt: &[u8; 32]) -> PathBuf {
    dir.join(format!("notice-{}.cose", hex::encode(&receipt[..8])))
}

fn award(ctx: &Ctx, id: &str, out_dir: &Path) -> anyhow::Result<()> {
    let cpo = cpo_id(id)?;
    let trust = ctx.load_trust()?;
    let t = public_transport(ctx)?;
    let entry = t.cpo(&cpo).map_err(|e| match e {
        ClientError::Problem(p) if p.code == "not-found" => {
            anyhow::anyhow!("no CPO {} on this node's board", hex::encode(cpo))
        }
        e => node_error(e, "the node refused"),
    })?;
    let arbiter_id = KeyId::from_hex(text_of(&entry, "arbiter"))
        .context("the node's entry for the CPO names no arbiter")?;
    let alice = pinned(&trust, PartyRole::Arbiter, &arbiter_id, "the CPO's arbiter")?;
    let a = t.award(&cpo).map_err(|e| node_error(e, "no award"))?;
    let signed = hex::decode(text_of(&a, "award")).context("the node's award is not hex")?;
    let award: Award = cose::verify(&signed, &alice.sign)
        .context("the award is not signed by the CPO's arbiter")?;
    if award.cpo != cpo {
        bail!("the node answered with the award of another CPO");
    }
    keep(ctx, "cpo/award", &signed, true)?;
    crate::datadir::write_file_atomic(&out_dir.join("award.cose"), &signed)?;
    for receipt in &award.considered {
        let notice = t
            .notice(&cpo, receipt)
            .map_err(|e| node_error(e, "no notice"))?;
        let kid = cose::peek_kid(&notice).context("a notice is not COSE_Sign1")?;
        let server = pinned(&trust, PartyRole::Server, &kid, "the notice's signer")?;
        let n: Notice = cose::verify(&notice, &server.sign).context("a notice is refused")?;
        if n.cpo != cpo || n.receipt_hash != *receipt {
            bail!("the node answered with the notice of another bid");
        }
        crate::datadir::write_file_atomic(&notice_file(out_dir, receipt), &notice)?;
    }
    // The winner's bond key id is known to the node when this call made the
    // award; otherwise the award names the winning bid by its receipt.
    let winner = a["winner"].as_str().map(str::to_owned);
    let winner_name = winner.as_deref().and_then(|w| key_name(ctx, w));
    let winner_receipt = award.winner.map(hex::encode);
    crate::output::emit(
        ctx.json,
        &format!(
            "arbiter {} awarded CPO {}: {} of {} bids; award and notices in {}",
            alice.id(),
            hex::encode(cpo),
            match (&winner, &winner_receipt) {
                (Some(w), _) => match &winner_name {
                    Some(n) => format!("winner {n} ({w})"),
                    None => format!("winner {w}"),
                },
                (None, Some(r)) => format!("winner the bid with receipt {}", &r[..16]),
                (None, None) => "no winner".into(),
            },
            award.considered.len(),
            out_dir.display()
        ),
        serde_json::json!({
            "id": hex::encode(cpo),
            "winner": winner,
            "winner_name": winner_name,
            "winner_receipt": winner_receipt,
            "bids": award.considered.len(),
            "dir": out_dir,
        }),
    );
    Ok(())
}

/// The name of the key pair with key id `id` (hex) in this data
/// directory's keystore, if it holds it and its passphrase is given
/// (`AGORA_PASSPHRASE` or a passphrase file): people read "quinn", not a
/// key id.
fn key_name(ctx: &Ctx, id: &str) -> Option<String> {
    // Never a prompt for a name: only a passphrase given beforehand.
    if std::env::var_os("AGORA_PASSPHRASE").is_none()
        && std::env::var_os("AGORA_PASSPHRASE_FILE").is_none()
    {
        return None;
    }
    let ks = ctx.load_keystore().ok()?;
    ks.list().into_iter().find_map(|(name, _)| {
        let key = ks.ed25519(name)?;
        let pair = name.strip_suffix(".ed25519")?;
        (key.key_id().to_string() == id).then(|| pair.to_owned())
    })
}

/// A role's public keys as `/v1/node` describes them.
fn advertised(v: &Value, what: &str) -> anyhow::Result<Option<Peer>> {
    if v.is_null() {
        return Ok(None);
    }
    let key = |field: &str| -> anyhow::Result<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text_of(v, field), &mut out)
            .with_context(|| format!("/v1/node: the {what}'s {field} is not 64 hex digits"))?;
        Ok(out)
    };
    let peer = Peer {
        sign: agora_core::crypto::VerifyingKey::from_bytes(&key("ed25519")?)
            .with_context(|| format!("/v1/node: the {what}'s ed25519 key"))?,
        enc: agora_core::crypto::X25519Public::from_slice(&key("x25519")?)?,
    };
    if text_of(v, "key_id") != peer.id().to_string() {
        bail!("/v1/node: the {what}'s key id does not match its key");
    }
    Ok(Some(peer))
}

/// Pins `peer` as `role`; says whether it was pinned already.
fn pin_peer(
    trust: &mut TrustStore,
    peer: &Peer,
    role: PartyRole,
    name: String,
) -> anyhow::Result<&'static str> {
    let id = peer.id();
    match trust.by_key_id(&id) {
        Some(p) if p.role == role && p.x25519().map(|k| k.to_bytes()) == Some(peer.enc.to_bytes()) => {
            Ok("already pinned")
        }
        Some(p) if p.role == role => bail!(
            "{id} is pinned already with another encryption key ({:?}): remove it from the trust store first",
            p.name
        ),
        Some(p) => bail!("{id} is pinned already, in another role ({:?})", p.name),
        None => {
            trust.add(Party {
                name,
                role,
                key_id: id,
                certificate: None,
                ed25519: Some(peer.sign),
                x25519: Some(peer.enc),
            })?;
            Ok("pinned")
        }
    }
}

/// `agora cpo trust-node URL`.
fn trust_node(
    ctx: &Ctx,
    url: &str,
    expect_server: Option<&str>,
    expect_arbiter: Option<&str>,
) -> anyhow::Result<()> {
    let _lock = ctx.lock_for_update()?;
    let mut trust = ctx.load_trust()?;
    let (client, doc) = node_doc(url)?;
    let cpo = &doc["services"]["cpo"];
    let server = advertised(&cpo["server"], "server")?;
    let arbiter = advertised(&cpo["arbiter"], "arbiter")?;
    if server.is_none() && arbiter.is_none() {
        bail!("{url} hosts no CPO server and no CPO arbiter");
    }
    for (expect, got, what) in [
        (expect_server, &server, "server"),
        (expect_arbiter, &arbiter, "arbiter"),
    ] {
        let Some(e) = expect else { continue };
        let want = KeyId::from_hex(e.trim()).with_context(|| format!("key id {e:?}"))?;
        match got {
            Some(p) if p.id() == want => {}
            Some(p) => bail!(
                "the CPO {what} of {url} is {}, not the {want} expected: nothing pinned",
                p.id()
            ),
            None => bail!("{url} hosts no CPO {what}: nothing pinned"),
        }
    }
    let mut text = format!("node {url}\n");
    let mut json = serde_json::json!({ "url": url, "agencies": [] });
    for (peer, role, what) in [
        (&server, PartyRole::Server, "server"),
        (&arbiter, PartyRole::Arbiter, "arbiter"),
    ] {
        let Some(p) = peer else { continue };
        let state = pin_peer(&mut trust, p, role, format!("CPO {what} of {url}"))?;
        text.push_str(&format!("  CPO {what:<8} {}  {state}\n", p.id()));
        json[what] = serde_json::json!({ "key_id": p.id().to_string(), "state": state });
    }
    // Its agencies, so that bonds they issue are trusted here too. A node
    // without the agency role has none to tell.
    let agencies: Vec<Value> = match client.get_json("/v1/pki/agencies") {
        Ok(a) => a,
        Err(ClientError::Problem(p)) if p.code == "not-found" => Vec::new(),
        Err(e) => return Err(node_error(e, "reading the node's agencies")),
    };
    for a in &agencies {
        let kid = KeyId::from_hex(text_of(a, "key_id"))
            .context("/v1/pki/agencies: an agency's key id")?;
        let name = a["name"].as_str().unwrap_or("agency");
        let der = client
            .get_bytes(&format!("/v1/pki/{kid}/cert"))
            .map_err(|e| node_error(e, &format!("reading the certificate of agency {name}")))?;
        let cert = agora_pki::parse_certificate(&der)
            .with_context(|| format!("the certificate of agency {name}"))?;
        if cert.key_id() != kid {
            bail!("the certificate of agency {name} is not of key {kid}");
        }
        let state = match trust.by_key_id(&kid) {
            Some(p) if p.role == PartyRole::Agency => "already pinned",
            Some(p) => bail!("{kid} is pinned already, in another role ({:?})", p.name),
            None => {
                trust
                    .add_ca(name, PartyRole::Agency, &der)
                    .with_context(|| format!("pinning agency {name}"))?;
                "pinned"
            }
        };
        text.push_str(&format!("  agency {name} {kid}  {state}\n"));
        if let Some(list) = json["agencies"].as_array_mut() {
            list.push(
                serde_json::json!({ "name": name, "key_id": kid.to_string(), "state": state }),
            );
        }
    }
    ctx.save_trust(&trust)?;
    text.push_str(&format!(
        "compare these key ids with the ones the node's operator gives you\nnext: export AGORA_NODE={url}"
    ));
    crate::output::emit(ctx.json, &text, json);
    Ok(())
}
