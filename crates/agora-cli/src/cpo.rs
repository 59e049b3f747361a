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
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::policy::{ArbiterPolicy, Template};
use agora_cpo::ports::{Board, BoardEntry};
use agora_cpo::server::{check_acceptance, Server};
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
        #[arg(long, default_value_t = 30)]
        days: u64,
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
    /// List the open CPOs on this node's board: public fields only, never
    /// the buyer.
    List {
        /// Most CPOs to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// List CPOs whose id follows this one (paging).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one CPO of this node's board.
    Status {
        /// The CPO id (hex).
        id: String,
    },
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
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

fn read_ccpo(path: &Path) -> anyhow::Result<Ccpo> {
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
fn keys(ks: &Keystore, name: &str) -> anyhow::Result<Keys> {
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

fn bond_trust(ctx: &Ctx) -> anyhow::Result<BondTrust> {
    Ok(BondTrust {
        agencies: ctx.load_trust()?.agency_anchors(),
        crls: crate::cert::load_crls(ctx, &[])?,
    })
}

/// This node's arbiter's policy: `<data-dir>/arbiter-policy.toml` if
/// present, else a policy that refuses nothing but invalid bonds.
fn arbiter_policy(ctx: &Ctx) -> anyhow::Result<ArbiterPolicy> {
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
                    end: now.plus_secs(days.max(&1) * DAY_SECS),
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
            let acceptance: Acceptance = if *bidding {
                let (m0, b) = buyer::request_approval::<Bidding>(
                    &bob,
                    &mut rng,
                    ccpo,
                    additional_terms,
                    &alice,
                )?;
                let (m1, a) = arbiter
                    .handle_request::<Bidding>(&mut rng, now, &m0)
                    .context("the arbiter refused")?;
                let (m2, b) = b.handle(&bob, &mut rng, &m1)?;
                let issued = a.handle_response(&arbiter, &mut rng, now, &m2)?;
                b.handle(&bob, now, &issued.reply)?
            } else {
                let (m0, b) = buyer::request_approval::<FirstCome>(
                    &bob,
                    &mut rng,
                    ccpo,
                    additional_terms,
                    &alice,
                )?;
                let (m1, a) = arbiter
                    .handle_request::<FirstCome>(&mut rng, now, &m0)
                    .context("the arbiter refused")?;
                let (m2, b) = b.handle(&bob, &mut rng, &m1)?;
                let issued = a.handle_response(&arbiter, &mut rng, now, &m2)?;
                b.handle(&bob, now, &issued.reply)?
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
            let server_keys = keys(&ks, SERVER_KEY)?;
            let server_peer = server_keys.peer();
            let store = ctx.store()?;
            let server = Server::new(
                server_keys,
                bond_trust(ctx)?,
                arbiters,
                store.board(),
                store.replay_cache(),
            );
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
        CpoCmd::List { limit, after } => {
            let after = after
                .as_deref()
                .map(|h| {
                    let k = KeyId::from_hex(h).with_context(|| format!("CPO id {h:?}"))?;
                    Ok::<_, anyhow::Error>(k.0)
                })
                .transpose()?;
            let now = ctx.now();
            let entries = ctx.store()?.board().list_open(now, after, *limit)?;
            let mut text = String::new();
            for e in &entries {
                text.push_str(&format!(
                    "{}  {:>14}  {:<10}  until {}  {}\n",
                    hex::encode(e.ccpo.id),
                    e.ccpo.price.to_string(),
                    e.mode.as_str(),
                    crate::cert::fmt_time(e.ccpo.end),
                    e.ccpo.goods
                ));
            }
            if entries.is_empty() {
                text.push_str("no open CPOs");
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
            let status = public_json(&e, now)["status"]
                .as_str()
                .unwrap_or("open")
                .to_owned();
            crate::output::emit(
                ctx.json,
                &format!(
                    "{}\n  mode     {}\n  status   {status}\n  posted   {}",
                    describe(&e.ccpo),
                    e.mode.as_str(),
                    crate::cert::fmt_time(e.posted_at)
                ),
                public_json(&e, now),
            );
        }
    }
    Ok(())
}
