//! `agora speed ...`: SPEED purchases (a customer buying a digital product
//! from a vendor through a broker), and the administration of the node's
//! broker and demo vendor.
//!
//! What lives in the data directory:
//!
//! ```text
//! speed/broker.pem, speed/vendor.pem      identity certificates of the node's broker and vendor
//! speed/catalogue.toml                    the vendor's products and price rules
//! speed/products/                         the demo vendor's product files
//! speed/customers/<name>.pem, .account    a registered customer's certificate and account number
//! speed/purchases/<order>/                a purchase: product.enc, bill.cose, customer, product_id;
//!                                         how it is paid (pay) and where its product goes (out);
//!                                         the payment's state and PaymentOrder (state, order.msg),
//!                                         kept before the order is sent; receipt.cose; done
//! speed/card-loads/<card id>.json         a card load asked for and not known to be applied
//! speed/paid                              the customer's register of paid bills (one order per line)
//! ```
//!
//! The customer's commands talk to a node over HTTP (`--node`, default
//! `http://127.0.0.1:7878`); the operator's (`register`, `broker ...`,
//! `vendor ...`) work on the data directory of the node.

use crate::datadir::Ctx;
use crate::output::Plainly;
use agora_client::datadir::{check_name, read_at_most, role_keys, Catalogue};
use agora_client::speed::{LocalSpeed, Negotiated, SpeedClient};
use agora_client::transport::NodeClient;
use agora_core::crypto::{os_rng, Secret, SigningKey, X25519Secret};
use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_node::speed::{
    BrokerSpec, Product, SpeedService, SpeedSpec, SpeedTrustSource, VendorSpec,
};
use agora_pki::{IdentityParams, Party, PartyRole, TrustStore};
use agora_speed::customer::{ExpectPurseDebit, ExpectReceipt, Identity, Purchase, ReadyToPay};
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Ledger, Posting};
use agora_speed::purse::{Card, Sam};
use agora_speed::strategy::{AcceptFirst, CustomerStrategy, Target, WalkAwayAbove};
use agora_speed::{AccountNumber, CardId, Keys, PaymentOrderId, Peer};
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

pub use agora_client::datadir::names::{BROKER_KEY, CASH_EUR, DEMO_KEY, SPEED_CA, VENDOR_KEY};
/// The SAM's master key (secret in the keystore).
const SAM_SECRET: &str = "speed-sam";
/// The broker's purse float account for euros.
pub const FLOAT_EUR: &str = "B-FLOAT-EUR";
/// The demo vendor's account.
pub const DEMO_VENDOR_ACCOUNT: &str = "V-DEMO";
/// The demo song's ProductID.
pub const DEMO_SONG: &str = "DEMO-SONG-1: Loopback Blues, 3 MB (demo bytes)";

const DAY_SECS: u64 = 86_400;

/// What is pending when a purchase stopped before its deal was made.
const NOTHING_PAID: &str = "nothing: no purchase was agreed or paid";

fn speed_dir(ctx: &Ctx) -> PathBuf {
    ctx.speed_dir()
}

fn eur() -> Currency {
    Currency::new("EUR").expect("EUR is a currency")
}

fn num(s: &str) -> anyhow::Result<AccountNumber> {
    AccountNumber::new(s).with_context(|| format!("account number {s:?}"))
}

/// Writes a file only its owner may read (card files, purchase states).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        hex::encode(agora_core::crypto::random_bytes::<8>(&mut os_rng()))
    ));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------- setup

/// Issues an identity certificate from the SPEED CA, records it in the CA's
/// register (so that it can be revoked) and archives it.
pub(crate) fn issue_identity(
    ctx: &Ctx,
    name: &str,
    role: PartyRole,
    keys: &Keys,
    days: u64,
) -> anyhow::Result<Vec<u8>> {
    let ca = ctx
        .agency(SPEED_CA)
        .context("this data directory runs no SPEED CA (it is made by `agora up`)")?;
    let now = ctx.now();
    let not_after = now.plus_secs(days.max(1) * DAY_SECS);
    let issued = agora_client::datadir::issue_identity(
        &ctx.store()?,
        &ca,
        &IdentityParams {
            name: name.to_owned(),
            key: keys.sign.verifying_key(),
            role,
            x25519: Some(keys.enc.public()),
            not_before: now,
            not_after,
            crl_uri: ca.crl_uri(&ctx.crl_base(SPEED_CA)),
        },
        now,
        &mut os_rng(),
    )?;
    Ok(issued.der)
}

fn open_account(
    ledger: &dyn Ledger,
    number: &str,
    owner: KeyId,
    kind: AccountKind,
) -> anyhow::Result<bool> {
    let number = num(number)?;
    if ledger.account(&number)?.is_some() {
        return Ok(false);
    }
    ledger.open_account(&Account {
        number,
        owner,
        kind,
        currency: eur(),
        allow_credit: false,
    })?;
    Ok(true)
}

/// A party of the node (broker, vendor): a key pair, an identity
/// certificate in `speed/<file>`, pinned in the trust store.
fn make_party(
    ctx: &Ctx,
    key: &str,
    name: &str,
    role: PartyRole,
    file: &str,
) -> anyhow::Result<KeyId> {
    make_party_in(ctx, &speed_dir(ctx), key, name, role, file)
}

/// A party of the node (broker, vendor, commit authority, escrow): a key
/// pair, an identity certificate from the node's identity CA in
/// `<dir>/<file>`, pinned in the trust store.
pub(crate) fn make_party_in(
    ctx: &Ctx,
    dir: &Path,
    key: &str,
    name: &str,
    role: PartyRole,
    file: &str,
) -> anyhow::Result<KeyId> {
    let mut rng = os_rng();
    let keys = Keys {
        sign: SigningKey::generate(&mut rng),
        enc: X25519Secret::generate(&mut rng),
    };
    let der = issue_identity(ctx, name, role, &keys, 3650)?;
    crate::datadir::write_file_atomic(
        &dir.join(file),
        agora_pki::pem::encode("CERTIFICATE", &der).as_bytes(),
    )?;
    let _lock = ctx.lock_for_update()?;
    let mut ks = ctx.load_keystore()?;
    let mut trust = ctx.load_trust()?;
    let id = keys.id();
    trust.add(Party {
        name: name.to_owned(),
        role,
        key_id: id,
        certificate: Some(agora_pki::parse_certificate(&der)?),
        ed25519: None,
        x25519: Some(keys.enc.public()),
    })?;
    ks.insert_ed25519(&crate::key::ed_name(key), keys.sign)?;
    ks.insert_x25519(&crate::key::x_name(key), keys.enc)?;
    if role == PartyRole::Broker && ks.secret(SAM_SECRET).is_none() {
        ks.insert_secret(SAM_SECRET, Secret::random(&mut rng))?;
    }
    ctx.save_keystore(&ks)?;
    ctx.save_trust(&trust)?;
    Ok(id)
}

/// The demo products: a 3 MB "song" (deterministic bytes) and a 16-byte key.
fn demo_catalogue(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = speed_dir(ctx);
    let products = dir.join("products");
    std::fs::create_dir_all(&products)?;
    let mut song = Vec::with_capacity(3_000_000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while song.len() < 3_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        song.extend_from_slice(&x.to_le_bytes());
    }
    song.truncate(3_000_000);
    crate::datadir::write_file_atomic(&products.join("loopback-blues.mp3"), &song)?;
    crate::datadir::write_file_atomic(&products.join("stream.key"), b"agora-demo-key16")?;
    let toml = format!(
        "# The node's demo vendor: its account at the broker and its products.\n\
         # Each product: its ProductID, its file (relative to this directory),\n\
         # and its price rule (list price, floor, step per negotiation round).\n\
         [vendor]\naccount = \"{DEMO_VENDOR_ACCOUNT}\"\nmax_aggressive_bytes = 1000000\n\n\
         [[product]]\nid = \"{DEMO_SONG}\"\nfile = \"products/loopback-blues.mp3\"\n\
         list = \"1.50 EUR\"\nfloor = \"1.00 EUR\"\nstep = \"0.20 EUR\"\n\n\
         [[product]]\nid = \"{DEMO_KEY}\"\nfile = \"products/stream.key\"\n\
         list = \"0.50 EUR\"\nfloor = \"0.50 EUR\"\nstep = \"0.00 EUR\"\n"
    );
    crate::datadir::write_file_atomic(&dir.join("catalogue.toml"), toml.as_bytes())
}

/// What `agora up` creates for SPEED when it is missing: the SPEED CA, the
/// broker (keys, certificate, SAM key, float and cash accounts), the demo
/// vendor (keys, certificate, account, catalogue). Returns what it made.
pub fn setup(ctx: &Ctx, url: &str) -> anyhow::Result<Vec<String>> {
    let mut made = Vec::new();
    if !ctx.agency_dir(SPEED_CA).exists() {
        crate::agency::create(ctx, SPEED_CA, 3650, url, PartyRole::Ca)?;
        made.push(format!("SPEED CA {SPEED_CA}"));
    }
    let ks = ctx.load_keystore()?;
    let broker = match role_keys(&ks, BROKER_KEY) {
        Ok(k) => k.id(),
        Err(_) => {
            made.push("SPEED broker".to_owned());
            make_party(
                ctx,
                BROKER_KEY,
                "agora-broker",
                PartyRole::Broker,
                "broker.pem",
            )?
        }
    };
    let vendor = match role_keys(&ks, VENDOR_KEY) {
        Ok(k) => k.id(),
        Err(_) => {
            made.push("SPEED demo vendor".to_owned());
            make_party(
                ctx,
                VENDOR_KEY,
                "agora-demo-vendor",
                PartyRole::Vendor,
                "vendor.pem",
            )?
        }
    };
    let ledger = ctx.store()?.ledger();
    open_account(ledger.as_ref(), FLOAT_EUR, broker, AccountKind::PurseFloat)?;
    open_account(ledger.as_ref(), CASH_EUR, broker, AccountKind::External)?;
    open_account(
        ledger.as_ref(),
        DEMO_VENDOR_ACCOUNT,
        vendor,
        AccountKind::Vendor,
    )?;
    if !speed_dir(ctx).join("catalogue.toml").exists() {
        demo_catalogue(ctx)?;
        made.push("demo catalogue".to_owned());
    }
    Ok(made)
}

// ---------------------------------------------------------------- the node's service

/// The vendor's catalogue in `speed/catalogue.toml`, read afresh on every
/// call (the node's housekeeping picks up added products).
struct DirCatalogue {
    speed_dir: PathBuf,
}

impl agora_node::speed::CatalogueSource for DirCatalogue {
    fn products(&self) -> Result<Vec<Product>, String> {
        Catalogue::read(&self.speed_dir)
            .map(|c| c.products)
            .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
    }
}

fn pem_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(agora_pki::pem::decode(&text, "CERTIFICATE")?)
}

/// The vendors registered with the broker: the demo vendor's certificate
/// and those of `speed/vendors/*.pem` (`agora speed broker add-vendor`).
fn vendor_certs(ctx: &Ctx) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut certs = vec![pem_file(&speed_dir(ctx).join("vendor.pem"))?];
    let dir = speed_dir(ctx).join("vendors");
    if dir.exists() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        paths.sort();
        for p in paths {
            certs.push(pem_file(&p)?);
        }
    }
    Ok(certs)
}

/// The SPEED roles of this data directory (its broker and demo vendor).
pub fn speed_service(
    ctx: &Ctx,
    ks: &agora_pki::Keystore,
    trust: Box<dyn SpeedTrustSource<agora_speed::SpeedTrust>>,
) -> anyhow::Result<SpeedService> {
    let broker_keys = role_keys(ks, BROKER_KEY)?;
    let broker_peer = broker_keys.peer();
    let sam = ks
        .secret(SAM_SECRET)
        .context("the keystore holds no SAM key")?
        .clone();
    let vendor_keys = role_keys(ks, VENDOR_KEY)?;
    let cat = ctx.catalogue()?;
    let spec = SpeedSpec {
        store: ctx.store()?,
        broker: Some(BrokerSpec {
            keys: broker_keys,
            sam_master: sam,
            vendors: vendor_certs(ctx)?,
            floats: vec![(eur(), num(FLOAT_EUR)?)],
        }),
        vendor: Some(VendorSpec {
            keys: vendor_keys,
            account: num(&cat.vendor_account)?,
            broker: broker_peer,
            catalogue: Box::new(DirCatalogue {
                speed_dir: speed_dir(ctx),
            }),
            max_aggressive_len: cat.max_aggressive_bytes,
        }),
        trust,
    };
    SpeedService::new(spec).map_err(|e| anyhow::anyhow!("starting SPEED: {e}"))
}

// ---------------------------------------------------------------- commands

/// `agora speed ...`
#[derive(Debug, Subcommand)]
pub enum SpeedCmd {
    /// Register a customer with the node's SPEED CA and broker: an identity
    /// certificate for a key pair of this keystore, an account (with a first
    /// deposit), and optionally an e-purse card file.
    #[command(
        after_help = "Example:\n  agora key new carol\n  agora speed register carol --deposit \"20.00 EUR\" --card carol.card"
    )]
    Register {
        /// The customer's key pair (see `agora key new`).
        name: String,
        /// Money paid in to open the account (from outside the system).
        #[arg(long, allow_hyphen_values = true, default_value = "0.00 EUR")]
        deposit: Money,
        /// Also issue an e-purse card into this file (keep it private).
        #[arg(long)]
        card: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// The vendor's products and prices.
    #[command(after_help = "Example:\n  agora speed catalogue")]
    Catalogue,
    /// My account at the broker: its balance, as the broker signs it (a
    /// request only the account's holder can make).
    #[command(after_help = "Example:\n  agora speed balance --as carol")]
    Balance {
        /// The customer.
        #[arg(long = "as")]
        customer: String,
    },
    /// The purchases made from this data directory, newest first: what,
    /// for how much, whether paid, and where the product and the broker's
    /// receipt are; a payment left pending says how to finish it.
    #[command(after_help = "Example:\n  agora speed purchases --as carol")]
    Purchases {
        /// Only this customer's.
        #[arg(long = "as")]
        customer: Option<String>,
    },
    /// Buy a product: negotiate (or, with --aggressive, ask at a fixed
    /// price), receive it encrypted, pay, and decrypt it with the key from
    /// the broker's receipt.
    #[command(
        after_help = "Examples:\n  agora speed buy --as carol --product \"DEMO-SONG-1: ...\" --target \"1.00 EUR\" --limit \"1.30 EUR\" \\\n      --pay card --card carol.card --out song.mp3\n  \
        agora speed buy --as carol --product \"DEMO-KEY-1: ...\" --aggressive --price \"0.50 EUR\" --out stream.key"
    )]
    Buy(BuyArgs),
    /// Negotiate and receive the encrypted product, without paying yet:
    /// prints the PaymentOrderID to pay with `agora speed pay`.
    Negotiate(DealArgs),
    /// Pay a negotiated purchase and decrypt the product.
    Pay(PayArgs),
    /// Ask the broker again for the receipt of a paid purchase (a lost
    /// receipt), and decrypt the product with it.
    Receipt {
        /// The PaymentOrderID.
        order: String,
        /// Write the product here (default: where the purchase was started
        /// to write it).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The card of a card payment that was interrupted after the card
        /// debited: its confirmation is sent to the broker again.
        #[arg(long)]
        card: Option<PathBuf>,
    },
    /// Complain to the broker about a paid purchase (section 5.7): the
    /// product is not as described, or the receipt's key does not decrypt
    /// it. Sends the description and the encrypted product as delivered;
    /// prints the broker's signed ruling.
    #[command(after_help = "Example:\n  agora speed complain <order>")]
    Complain {
        /// The PaymentOrderID.
        order: String,
    },
    /// E-purse cards.
    #[command(subcommand)]
    Card(CardCmd),
    /// The broker's administration (on the node's data directory).
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// The demo vendor's administration (on the node's data directory).
    #[command(subcommand)]
    Vendor(VendorCmd),
}

/// `agora speed vendor ...`
#[derive(Debug, Subcommand)]
pub enum VendorCmd {
    /// Offer a file: adds it to speed/catalogue.toml; a running node offers
    /// it after its next housekeeping (30 s by default).
    #[command(
        after_help = "Example:\n  agora speed vendor add-product --id \"EBOOK-1: a novel, sha256:<hex of the file>\" \\\n      --file novel.epub --price \"3.00 EUR\" --floor \"2.50 EUR\" --step \"0.10 EUR\""
    )]
    AddProduct {
        /// The ProductID: a code and a description. A description that names
        /// the file's digest (`sha256:<hex>`) lets the broker rule on
        /// complaints mechanically.
        #[arg(long)]
        id: String,
        /// The file.
        #[arg(long)]
        file: PathBuf,
        /// The list price.
        #[arg(long, allow_hyphen_values = true)]
        price: Money,
        /// The lowest price the vendor accepts (default: the list price).
        #[arg(long, allow_hyphen_values = true)]
        floor: Option<Money>,
        /// How much the ask drops per negotiation round.
        #[arg(long, allow_hyphen_values = true, default_value = "0.00 EUR")]
        step: Money,
    },
    /// The vendor's sales: its latest deliveries (from its handshake
    /// register), each with the broker's receipt if it was paid. The vendor
    /// asks the broker for each receipt and reads it with a RecKey derived
    /// from its own key; the broker's signature and the PaymentOrderID are
    /// checked.
    #[command(
        after_help = "Example:\n  agora speed vendor sales --limit 20 --out vendor-receipts"
    )]
    Sales {
        /// How many of the latest deliveries (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Write each paid sale's broker-signed receipt into this directory
        /// as `<PaymentOrderID>.receipt.cose` (check it with `agora evidence
        /// verify`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Most deliveries `agora speed vendor sales` lists (one request to the
/// broker each).
const MAX_SALES_LISTED: usize = 1000;

/// `agora speed vendor sales`.
fn vendor_sales(ctx: &Ctx, limit: usize, out: Option<&Path>) -> anyhow::Result<()> {
    if limit == 0 || limit > MAX_SALES_LISTED {
        bail!("--limit must be 1 to {MAX_SALES_LISTED}");
    }
    let ks = ctx.load_keystore()?;
    let keys = role_keys(&ks, VENDOR_KEY)?;
    let broker = role_keys(&ks, BROKER_KEY)?.peer();
    drop(ks);
    let cat = ctx.catalogue()?;
    let trust = DirSpeedTrust {
        trust_path: ctx.trust_path(),
        crl_dir: ctx.crl_dir(),
    }
    .load()
    .map_err(|e| anyhow::anyhow!(e))?;
    let vendor = agora_speed::vendor::Vendor {
        keys,
        account: num(&cat.vendor_account)?,
        broker,
        trust,
        max_aggressive_len: cat.max_aggressive_bytes,
    };
    let sales = ctx.store()?.handshakes(vendor.id()).deliveries(limit)?;
    let c = client(ctx)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let (mut paid, mut lines, mut rows) = (0usize, Vec::new(), Vec::new());
    for d in &sales {
        let order = PaymentOrderId {
            vendor: vendor.id(),
            nid: d.nid,
        };
        let receipt = match c.sealed_receipt(&order)? {
            None => None,
            Some(sealed) => {
                let (r, signed) = vendor
                    .open_receipt_of(&order, &sealed)
                    .with_context(|| format!("the broker's receipt for {}", order.to_hex()))?;
                if let Some(dir) = out {
                    crate::datadir::write_file_atomic(
                        &dir.join(format!("{}.receipt.cose", order.to_hex())),
                        &signed,
                    )?;
                }
                paid += 1;
                Some(r.price)
            }
        };
        let at = crate::cert::fmt_time(d.at);
        lines.push(format!(
            "  {at}  {:>12}  {}",
            receipt.map_or("not paid".to_owned(), |p| p.to_string()),
            order.to_hex()
        ));
        rows.push(serde_json::json!({
            "order": order.to_hex(),
            "delivered_at": d.at.secs(),
            "customer": d.customer.to_string(),
            "paid": receipt.is_some(),
            "price": receipt.map(|p| p.to_string()),
        }));
    }
    let mut text = format!(
        "vendor {}: {} deliveries, {paid} paid (receipts checked)",
        vendor.id(),
        sales.len()
    );
    for l in &lines {
        text.push('\n');
        text.push_str(l);
    }
    crate::output::emit(
        ctx.json,
        &text,
        serde_json::json!({
            "vendor": vendor.id().to_string(),
            "deliveries": sales.len(),
            "paid": paid,
            "sales": rows,
        }),
    );
    Ok(())
}

/// Who buys and how she negotiates.
#[derive(Debug, Args)]
pub struct DealArgs {
    /// The customer (a key pair registered with `agora speed register`).
    #[arg(long = "as")]
    customer: String,
    /// The ProductID, as the catalogue lists it.
    #[arg(long)]
    product: String,
    /// Aggressive mode: no negotiation, the product at --price.
    #[arg(long, requires = "price")]
    aggressive: bool,
    /// The price in aggressive mode.
    #[arg(long, allow_hyphen_values = true)]
    price: Option<Money>,
    /// Normal mode: open at this price and raise by --step each round...
    #[arg(long, allow_hyphen_values = true)]
    target: Option<Money>,
    /// ... by this much (default 0.10)...
    #[arg(long, allow_hyphen_values = true, default_value = "0.10 EUR")]
    step: Money,
    /// ... never paying more than this. Without --target: accept the first
    /// offer up to --limit; without either: accept the first offer.
    #[arg(long, allow_hyphen_values = true)]
    limit: Option<Money>,
}

/// How to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayWith {
    /// From the customer's account at the broker.
    Account,
    /// From an e-purse card (--card).
    Card,
}

/// How a purchase is paid.
#[derive(Debug, Args)]
pub struct PayOpts {
    /// Pay from the account or by card (default: the account; when a
    /// payment is finished, the way it was started).
    #[arg(long, value_enum)]
    pay: Option<PayWith>,
    /// The card file (with --pay card).
    #[arg(long)]
    card: Option<PathBuf>,
}

/// `agora speed buy`.
#[derive(Debug, Args)]
pub struct BuyArgs {
    #[command(flatten)]
    deal: DealArgs,
    #[command(flatten)]
    pay: PayOpts,
    /// Write the decrypted product here (an existing file only with
    /// --force).
    #[arg(long)]
    out: PathBuf,
}

/// `agora speed pay`.
#[derive(Debug, Args)]
pub struct PayArgs {
    /// The PaymentOrderID `agora speed negotiate` printed, or one that an
    /// interrupted `agora speed buy` or `pay` named: its payment is carried
    /// on from where it stopped, and paid at most once.
    order: String,
    #[command(flatten)]
    pay: PayOpts,
    /// Write the decrypted product here (default: where the purchase was
    /// started to write it).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `agora speed card ...`
#[derive(Debug, Subcommand)]
pub enum CardCmd {
    /// Load value onto a card from the customer's account, through the
    /// broker's SAM.
    #[command(
        after_help = "Example:\n  agora speed card load --as carol --card carol.card --amount \"5.00 EUR\""
    )]
    Load {
        /// The customer.
        #[arg(long = "as")]
        customer: String,
        /// The card file.
        #[arg(long)]
        card: PathBuf,
        /// How much.
        #[arg(long, allow_hyphen_values = true)]
        amount: Money,
    },
    /// Finish a load that was interrupted (the node or the connection
    /// failed, or the program stopped): the same request is sent again; the
    /// broker debits the account once and the card applies the load once.
    #[command(after_help = "Example:\n  agora speed card resume --card carol.card")]
    Resume {
        /// The card file.
        #[arg(long)]
        card: PathBuf,
    },
    /// What is on a card.
    #[command(after_help = "Example:\n  agora speed card balance --card carol.card")]
    Balance {
        /// The card file.
        #[arg(long)]
        card: PathBuf,
    },
}

/// `agora speed broker ...`
#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// The payments to a vendor's account over the last days.
    #[command(after_help = "Example:\n  agora speed broker settlement --account V-DEMO --days 30")]
    Settlement {
        /// The vendor's account.
        #[arg(long, default_value = DEMO_VENDOR_ACCOUNT)]
        account: String,
        /// How many days back.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Only payments from this time on (a date, RFC 3339 or Unix
        /// seconds): the next page of a listing cut short.
        #[arg(long, value_name = "TIME", value_parser = crate::cert::parse_time)]
        since: Option<Timestamp>,
    },
    /// Register another vendor with the broker: its identity certificate
    /// (from a trusted SPEED CA) and an account for it. The node accepts its
    /// bills after a restart.
    #[command(
        after_help = "Example:\n  agora speed broker add-vendor bookshop --cert bookshop.pem --account V-BOOKSHOP"
    )]
    AddVendor {
        /// A name for it.
        name: String,
        /// Its identity certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its account number at the broker.
        #[arg(long)]
        account: String,
    },
    /// An account's balance and its latest movements.
    #[command(after_help = "Example:\n  agora speed broker statement --account V-DEMO")]
    Statement {
        /// The account.
        #[arg(long)]
        account: String,
    },
}

pub fn run(ctx: &Ctx, cmd: &SpeedCmd) -> anyhow::Result<()> {
    match cmd {
        SpeedCmd::Register {
            name,
            deposit,
            card,
            days,
        } => register(ctx, name, *deposit, card.as_deref(), *days),
        SpeedCmd::Catalogue => catalogue(ctx),
        SpeedCmd::Purchases { customer } => purchases(ctx, customer.as_deref()),
        SpeedCmd::Balance { customer } => {
            let c = Customer::load(ctx, customer)?;
            let b = client(ctx)?.balance(
                &mut os_rng(),
                &c.id,
                &c.broker,
                c.account.clone(),
                ctx.now(),
            )?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{customer}'s account {}: {} (the broker's word at {})",
                    b.account,
                    b.balance,
                    crate::cert::fmt_time(b.at)
                ),
                serde_json::json!({
                    "customer": customer,
                    "account": b.account.to_string(),
                    "balance": b.balance.to_string(),
                    "at": b.at.secs(),
                }),
            );
            Ok(())
        }
        SpeedCmd::Buy(a) => {
            ctx.check_out(&a.out)?;
            if a.pay.pay == Some(PayWith::Card) {
                let path = a
                    .pay
                    .card
                    .as_deref()
                    .context("--pay card needs --card FILE")?;
                no_pending_load(ctx, &load_card(path)?, path)?;
            }
            let c = Customer::load(ctx, &a.deal.customer)?;
            let (order, ready) = c.deal(ctx, &a.deal)?;
            c.pay(ctx, order, ready, &a.pay, &a.out)
        }
        SpeedCmd::Negotiate(a) => {
            let c = Customer::load(ctx, &a.customer)?;
            let (order, ready) = c.deal(ctx, a)?;
            let state = ready.to_bytes(&c.vendor.sign);
            write_private(&purchase_dir(ctx, &order).join("state"), &state)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "agreed at {}; the encrypted product is checked against the bill\n  order  {order}\n\
                     next: agora speed pay {order} --out <file>",
                    ready.price()
                ),
                serde_json::json!({ "order": order.to_hex(), "price": ready.price().to_string() }),
            );
            Ok(())
        }
        SpeedCmd::Pay(a) => settle(ctx, &a.order, &a.pay, a.out.as_deref()),
        SpeedCmd::Receipt { order, out, card } => settle(
            ctx,
            order,
            &PayOpts {
                pay: None,
                card: card.clone(),
            },
            out.as_deref(),
        ),
        SpeedCmd::Complain { order } => {
            let order = PaymentOrderId::from_hex(order.trim()).context("PaymentOrderID")?;
            let dir = purchase_dir(ctx, &order);
            let who = std::fs::read_to_string(dir.join("customer"))
                .plainly(|| "no purchase with that id here".into())?;
            let product_id = std::fs::read_to_string(dir.join("product_id"))
                .plainly(|| "the purchase does not say what was asked for".into())?;
            let c = Customer::load(ctx, who.trim())?;
            let (ruling, signed) = client(ctx)?.complain(
                &mut os_rng(),
                &c.id,
                &c.broker,
                order,
                &product_id,
                &dir.join("product.enc"),
            )?;
            crate::datadir::write_file_atomic(&dir.join("ruling.cose"), &signed)?;
            ctx.store()?
                .archive()
                .append("speed/ruling", &signed, ctx.now())?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "ruling: {}\n  decrypts with the receipt's key  {}\n  product digest  {}  ({} bytes)\n  ruling          {}",
                    ruling.verdict.as_str(),
                    if ruling.decrypts { "yes" } else { "no" },
                    hex::encode(ruling.content_hash),
                    ruling.content_len,
                    dir.join("ruling.cose").display()
                ),
                serde_json::json!({
                    "order": order.to_hex(),
                    "verdict": ruling.verdict.as_str(),
                    "decrypts": ruling.decrypts,
                    "content_sha256": hex::encode(ruling.content_hash),
                    "content_len": ruling.content_len,
                    "ruling": dir.join("ruling.cose"),
                }),
            );
            Ok(())
        }
        SpeedCmd::Card(CardCmd::Load {
            customer,
            card,
            amount,
        }) => {
            let c = Customer::load(ctx, customer)?;
            let mut k = load_card(card)?;
            no_pending_load(ctx, &k, card)?;
            let pending = pending_load_path(ctx, &k);
            let counter = k.counter();
            let loaded = client(ctx)?.load_card(
                &mut os_rng(),
                &c.id,
                &c.broker,
                c.account.clone(),
                *amount,
                &mut k,
                ctx.now(),
                |k| save_card(card, k).map_err(std::io::Error::other),
                |req| {
                    let saved = PendingLoad {
                        customer: customer.clone(),
                        amount: *amount,
                        counter,
                        request: req.to_vec(),
                    };
                    saved.save(&pending).map_err(std::io::Error::other)
                },
            );
            match loaded {
                Ok(()) => {}
                // Nothing was asked of the broker: nothing is pending.
                Err(e) if !pending.exists() => return Err(e.into()),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(load_resume(ctx, card, *amount, customer))
                    )
                }
            }
            std::fs::remove_file(&pending)
                .with_context(|| format!("removing {}", pending.display()))?;
            crate::output::emit(
                ctx.json,
                &format!("loaded {amount} onto the card; it holds {}", k.balance()),
                serde_json::json!({ "loaded": amount.to_string(), "balance": k.balance().to_string() }),
            );
            Ok(())
        }
        SpeedCmd::Card(CardCmd::Resume { card }) => {
            let mut k = load_card(card)?;
            let path = pending_load_path(ctx, &k);
            if !path.exists() {
                bail!("no load onto {} is pending here", card.display());
            }
            let p = PendingLoad::load(&path)?;
            let applied = client(ctx)?
                .resume_card_load(&p.request, p.counter, &mut k, |k| {
                    save_card(card, k).map_err(std::io::Error::other)
                })
                .map_err(|e| {
                    anyhow::Error::new(e).context(load_resume(ctx, card, p.amount, &p.customer))
                })?;
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "{} {} onto the card; it holds {}",
                    if applied {
                        "loaded"
                    } else {
                        "the card had applied the load of"
                    },
                    p.amount,
                    k.balance()
                ),
                serde_json::json!({ "loaded": p.amount.to_string(), "balance": k.balance().to_string() }),
            );
            Ok(())
        }
        SpeedCmd::Card(CardCmd::Balance { card }) => {
            let k = load_card(card)?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "card {}: {} ({} transactions)",
                    hex::encode(k.card_id().0),
                    k.balance(),
                    k.counter()
                ),
                serde_json::json!({
                    "card": hex::encode(k.card_id().0),
                    "balance": k.balance().to_string(),
                    "counter": k.counter(),
                }),
            );
            Ok(())
        }
        SpeedCmd::Broker(BrokerCmd::Settlement {
            account,
            days,
            since,
        }) => {
            let ledger = ctx.store()?.ledger();
            let now = ctx.now();
            let from = now
                .minus_secs(days * DAY_SECS)
                .max(since.unwrap_or(Timestamp(0)));
            let s = ledger.settlement(&num(account)?, from, now.plus_secs(1))?;
            let mut text = format!(
                "{}: {} payments, {} since {}",
                s.vendor,
                s.count,
                s.total,
                crate::cert::fmt_time(from)
            );
            for (o, p, at) in &s.payments {
                text.push_str(&format!(
                    "\n  {}  {p}  {}",
                    crate::cert::fmt_time(*at),
                    o.to_hex()
                ));
            }
            // A listing cut short says so, and how to go on: from the last
            // time listed (its payments are listed again there).
            if (s.payments.len() as u64) < s.count {
                if let Some((_, _, last)) = s.payments.last() {
                    text.push_str(&format!(
                        "\nlisted the first {} of {} (by time); the rest: {}",
                        s.payments.len(),
                        s.count,
                        ctx.command(&[
                            "speed",
                            "broker",
                            "settlement",
                            "--account",
                            account,
                            "--days",
                            &days.to_string(),
                            "--since",
                            &last.secs().to_string(),
                        ])
                    ));
                }
            }
            crate::output::emit(
                ctx.json,
                &text,
                serde_json::json!({
                    "account": s.vendor.to_string(),
                    "count": s.count,
                    "total": s.total.to_string(),
                    "payments": s.payments.iter().map(|(o, p, at)| serde_json::json!({
                        "order": o.to_hex(), "price": p.to_string(), "at": at.secs(),
                    })).collect::<Vec<_>>(),
                }),
            );
            Ok(())
        }
        SpeedCmd::Broker(BrokerCmd::AddVendor {
            name,
            cert,
            account,
        }) => {
            check_name(name)?;
            let der = pem_file(cert)?;
            let trust = DirSpeedTrust {
                trust_path: ctx.trust_path(),
                crl_dir: ctx.crl_dir(),
            }
            .load()
            .map_err(|e| anyhow::anyhow!(e))?;
            let id = trust
                .identity(&der, ctx.now(), PartyRole::Vendor)
                .context("the certificate is not a valid vendor identity from a trusted CA")?;
            let ledger = ctx.store()?.ledger();
            if !open_account(
                ledger.as_ref(),
                account,
                id.key().key_id(),
                AccountKind::Vendor,
            )? {
                bail!("account {account} exists already");
            }
            let path = speed_dir(ctx).join("vendors").join(format!("{name}.pem"));
            crate::datadir::write_file_atomic(
                &path,
                agora_pki::pem::encode("CERTIFICATE", &der).as_bytes(),
            )?;
            crate::output::emit(
                ctx.json,
                &format!(
                    "registered vendor {name} ({})\n  account  {account}\n  restart the node for its bills to be accepted",
                    id.key().key_id()
                ),
                serde_json::json!({ "vendor": name, "key_id": id.key().key_id().to_string(), "account": account }),
            );
            Ok(())
        }
        SpeedCmd::Vendor(VendorCmd::Sales { limit, out }) => {
            vendor_sales(ctx, *limit, out.as_deref())
        }
        SpeedCmd::Vendor(VendorCmd::AddProduct {
            id,
            file,
            price,
            floor,
            step,
        }) => {
            agora_speed::msg::check_product_id(id)?;
            let file = std::fs::canonicalize(file)
                .with_context(|| format!("the product file {}", file.display()))?;
            let floor = floor.unwrap_or(*price);
            if floor.currency != price.currency
                || step.currency != price.currency
                || floor.cents > price.cents
            {
                bail!("the floor must be at most the price, all in one currency");
            }
            let products = ctx.catalogue()?.products;
            if products.iter().any(|p| p.id == *id) {
                bail!("the catalogue has a product {id:?} already");
            }
            let path = speed_dir(ctx).join("catalogue.toml");
            let mut text = std::fs::read_to_string(&path)?;
            let q = |v: String| toml::Value::String(v).to_string();
            text.push_str(&format!(
                "\n[[product]]\nid = {}\nfile = {}\nlist = {}\nfloor = {}\nstep = {}\n",
                q(id.clone()),
                q(file.display().to_string()),
                q(price.to_string()),
                q(floor.to_string()),
                q(step.to_string()),
            ));
            // What the node will read must parse.
            Catalogue::parse(&text, &speed_dir(ctx), "the new catalogue")?;
            crate::datadir::write_file_atomic(&path, text.as_bytes())?;
            crate::output::emit(
                ctx.json,
                &format!("added {id:?} at {price} (floor {floor}); the node offers it after its next housekeeping"),
                serde_json::json!({ "product_id": id, "price": price.to_string(), "floor": floor.to_string() }),
            );
            Ok(())
        }
        SpeedCmd::Broker(BrokerCmd::Statement { account }) => {
            let ledger = ctx.store()?.ledger();
            let n = num(account)?;
            let b = ledger.balance(&n)?;
            let lines = ledger.journal(&n, 20)?;
            let mut text = format!("{n}: balance {:.2} {}", b.cents as f64 / 100.0, b.currency);
            for l in &lines {
                text.push_str(&format!(
                    "\n  {}  {:+.2}  {}",
                    crate::cert::fmt_time(l.at),
                    l.cents as f64 / 100.0,
                    l.memo
                ));
            }
            crate::output::emit(
                ctx.json,
                &text,
                serde_json::json!({
                    "account": n.to_string(),
                    "balance_cents": b.cents,
                    "currency": b.currency.as_str(),
                    "lines": lines.iter().map(|l| serde_json::json!({
                        "at": l.at.secs(), "cents": l.cents, "memo": l.memo,
                    })).collect::<Vec<_>>(),
                }),
            );
            Ok(())
        }
    }
}

fn register(
    ctx: &Ctx,
    name: &str,
    deposit: Money,
    card: Option<&Path>,
    days: u64,
) -> anyhow::Result<()> {
    let ks = ctx.load_keystore()?;
    let keys = role_keys(&ks, name)
        .with_context(|| format!("make the customer's key pair first: agora key new {name}"))?;
    drop(ks);
    if deposit.currency != eur() {
        bail!("the broker keeps euro accounts");
    }
    if let Some(path) = card {
        ctx.check_out(path)?;
    }
    // Once: a second registration would pay in the deposit again and issue
    // another certificate and card.
    let dir = speed_dir(ctx).join("customers");
    if let Ok(account) = std::fs::read_to_string(dir.join(format!("{name}.account"))) {
        bail!(
            "{name} is registered already (account {}); nothing was deposited or issued",
            account.trim()
        );
    }
    let der = issue_identity(ctx, name, PartyRole::Customer, &keys, days)?;
    let cert_path = dir.join(format!("{name}.pem"));
    crate::datadir::write_file_atomic(
        &cert_path,
        agora_pki::pem::encode("CERTIFICATE", &der).as_bytes(),
    )?;
    let account = format!("C-{}", &keys.id().to_string()[..16]);
    let ledger = ctx.store()?.ledger();
    open_account(ledger.as_ref(), &account, keys.id(), AccountKind::Customer)?;
    crate::datadir::write_file_atomic(&dir.join(format!("{name}.account")), account.as_bytes())?;
    if deposit.cents > 0 {
        let cents = i64::try_from(deposit.cents).context("deposit too large")?;
        ledger.post(&JournalEntry {
            id: agora_core::crypto::random_bytes(&mut os_rng()),
            at: ctx.now(),
            memo: format!("deposit for {name}"),
            postings: vec![
                Posting {
                    account: num(CASH_EUR)?,
                    cents: -cents,
                },
                Posting {
                    account: num(&account)?,
                    cents,
                },
            ],
        })?;
    }
    let mut card_text = String::new();
    if let Some(path) = card {
        let ks = ctx.load_keystore()?;
        let sam = Sam::new(
            ks.secret(SAM_SECRET)
                .context("no SAM key here (agora up makes it)")?
                .clone(),
        );
        let id = CardId(agora_core::crypto::random_bytes(&mut os_rng()));
        save_card(path, &sam.issue(id, eur()))?;
        card_text = format!(
            "\n  card         {} (empty; agora speed card load)",
            path.display()
        );
    }
    crate::output::emit(
        ctx.json,
        &format!(
            "registered customer {name}\n  certificate  {}\n  account      {account} ({deposit} deposited){card_text}",
            cert_path.display()
        ),
        serde_json::json!({
            "customer": name,
            "certificate": cert_path,
            "account": account,
            "deposit": deposit.to_string(),
            "card": card,
        }),
    );
    Ok(())
}

fn load_card(path: &Path) -> anyhow::Result<Card> {
    let bytes = read_at_most(path, agora_speed::purse::MAX_CARD_FILE_LEN as u64)?;
    Card::from_bytes(&bytes).with_context(|| format!("{} is not a card file", path.display()))
}

fn save_card(path: &Path, card: &Card) -> anyhow::Result<()> {
    write_private(path, &card.to_bytes())
}

/// How this command reaches the vendor and the broker: the node named by
/// `--node` over HTTP, else this data directory's roles in this process
/// (as `agora cpo` does).
fn client(ctx: &Ctx) -> anyhow::Result<SpeedClient> {
    match &ctx.node {
        Some(url) => Ok(SpeedClient::http(NodeClient::new(url)?)),
        None => {
            let ks = ctx.load_keystore()?;
            let trust = Box::new(DirSpeedTrust {
                trust_path: ctx.trust_path(),
                crl_dir: ctx.crl_dir(),
            });
            let service = speed_service(ctx, &ks, trust)?;
            Ok(SpeedClient::new(Box::new(LocalSpeed::new(service))))
        }
    }
}

fn catalogue(ctx: &Ctx) -> anyhow::Result<()> {
    let cat = client(ctx)?.catalogue()?;
    let mut text = format!("vendor {}", cat["vendor"].as_str().unwrap_or("?"));
    for p in cat["products"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  {:<12} {:>10} bytes  {}{}\n    {}",
            p["list_price"].as_str().unwrap_or("?"),
            p["size"],
            if p["negotiable"].as_bool() == Some(true) {
                "negotiable"
            } else {
                "fixed price"
            },
            if p["aggressive"].as_bool() == Some(true) {
                ", aggressive mode"
            } else {
                ""
            },
            p["product_id"].as_str().unwrap_or("?"),
        ));
    }
    crate::output::emit(ctx.json, &text, cat);
    Ok(())
}

/// The ProductID that `given` names in the vendor's catalogue: the whole
/// ProductID, or its code, the part before the first colon
/// (`DEMO-SONG-1`, in any case). A name the catalogue does not have is
/// refused with what it has, before anything is asked of the vendor.
fn resolve_product(c: &SpeedClient, given: &str) -> anyhow::Result<String> {
    let cat = c.catalogue().map_err(|e| {
        let retry = crate::output::retryable(&e);
        let e = anyhow::Error::new(e).context("reading the vendor's catalogue");
        crate::output::run_again_if(retry, e, NOTHING_PAID)
    })?;
    let products: Vec<(&str, &str)> = cat["products"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["product_id"].as_str()?, p["list_price"].as_str()?)))
        .collect();
    let code = |id: &str| id.split(':').next().unwrap_or(id).trim().to_owned();
    if let Some((id, _)) = products.iter().find(|(id, _)| *id == given) {
        return Ok((*id).to_owned());
    }
    let by_code: Vec<&str> = products
        .iter()
        .filter(|(id, _)| code(id).eq_ignore_ascii_case(given.trim()))
        .map(|(id, _)| *id)
        .collect();
    if let [id] = by_code[..] {
        return Ok(id.to_owned());
    }
    let mut text = format!("no product {given:?} in the vendor's catalogue; it offers:");
    for (id, price) in &products {
        text.push_str(&format!("\n  {:<14} {price:>12}  {id}", code(id)));
    }
    bail!(text)
}

fn purchase_dir(ctx: &Ctx, order: &PaymentOrderId) -> PathBuf {
    speed_dir(ctx).join("purchases").join(order.to_hex())
}

fn party(trust: &TrustStore, role: PartyRole) -> anyhow::Result<Peer> {
    trust
        .by_role(role)
        .find_map(|p| {
            Some(Peer {
                sign: p.verifying_key()?,
                enc: p.x25519()?,
            })
        })
        .with_context(|| format!("the trust store pins no {role:?} (agora up pins the node's)"))
}

/// A customer of this data directory: keys, certificate, account, and the
/// node's vendor and broker from the trust store.
struct Customer {
    name: String,
    id: Identity,
    account: AccountNumber,
    vendor: Peer,
    broker: Peer,
}

impl Customer {
    fn load(ctx: &Ctx, name: &str) -> anyhow::Result<Customer> {
        let ks = ctx.load_keystore()?;
        let keys = role_keys(&ks, name)?;
        let dir = speed_dir(ctx).join("customers");
        let cert = pem_file(&dir.join(format!("{name}.pem")))
            .plainly(|| format!("{name} is not registered (agora speed register {name})"))?;
        let account = std::fs::read_to_string(dir.join(format!("{name}.account")))
            .plainly(|| format!("{name} has no account (agora speed register {name})"))?;
        let trust = ctx.load_trust()?;
        Ok(Customer {
            name: name.to_owned(),
            id: Identity { keys, cert },
            account: num(account.trim())?,
            vendor: party(&trust, PartyRole::Vendor)?,
            broker: party(&trust, PartyRole::Broker)?,
        })
    }

    /// Negotiates (or asks, in aggressive mode) and receives the product.
    fn deal(&self, ctx: &Ctx, a: &DealArgs) -> anyhow::Result<(PaymentOrderId, ReadyToPay)> {
        let c = client(ctx)?;
        let product = resolve_product(&c, &a.product)?;
        let incoming = speed_dir(ctx).join("purchases").join(format!(
            "incoming-{}.enc",
            hex::encode(agora_core::crypto::random_bytes::<8>(&mut os_rng()))
        ));
        std::fs::create_dir_all(incoming.parent().expect("a parent"))?;
        let spinner = indicatif::ProgressBar::new_spinner().with_message("buying");
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let r = if a.aggressive {
            let price = a.price.context("--aggressive needs --price")?;
            c.request(
                &mut os_rng(),
                &self.id,
                &self.vendor,
                &product,
                price,
                &incoming,
            )
            .map(Negotiated::Ready)
        } else {
            let strategy: Box<dyn CustomerStrategy> = match (a.target, a.limit) {
                (Some(target), Some(limit)) => Box::new(Target {
                    target,
                    step: a.step.cents,
                    limit,
                }),
                (Some(target), None) => Box::new(Target {
                    target,
                    step: a.step.cents,
                    limit: target,
                }),
                (None, Some(limit)) => Box::new(WalkAwayAbove { limit }),
                (None, None) => Box::new(AcceptFirst),
            };
            c.negotiate(
                &mut os_rng(),
                &self.id,
                &self.vendor,
                &product,
                strategy.as_ref(),
                &incoming,
            )
        };
        spinner.finish_and_clear();
        let r = r.map_err(|e| {
            let _ = std::fs::remove_file(&incoming);
            let retry = crate::output::retryable(&e);
            // Nothing was paid, and the vendor's half-made deal expires on
            // its own: the same command starts afresh.
            crate::output::run_again_if(retry, anyhow::Error::new(e), NOTHING_PAID)
        })?;
        match r {
            Negotiated::Ready(ready) => {
                let order = ready.order();
                let dir = purchase_dir(ctx, &order);
                std::fs::create_dir_all(&dir)?;
                std::fs::rename(&incoming, dir.join("product.enc"))?;
                crate::datadir::write_file_atomic(&dir.join("customer"), self.name.as_bytes())?;
                crate::datadir::write_file_atomic(&dir.join("product_id"), product.as_bytes())?;
                crate::datadir::write_file_atomic(&dir.join("bill.cose"), ready.signed_bill())?;
                Ok((order, ready))
            }
            Negotiated::WalkedAway { offer, rounds } => {
                let _ = std::fs::remove_file(&incoming);
                bail!("no deal: the vendor's last offer was {offer} after {rounds} rounds")
            }
        }
    }

    /// Pays a purchase dealt and delivered (state [`ReadyToPay`]) and
    /// writes its product to `out`. Before anything is sent, the purchase
    /// directory keeps how it is paid and where the product goes; the
    /// client then keeps the state and the PaymentOrder before the order
    /// leaves. A failure from there on names the payment and the command
    /// that finishes it (`agora speed pay ORDER`).
    fn pay(
        &self,
        ctx: &Ctx,
        order: PaymentOrderId,
        ready: ReadyToPay,
        opts: &PayOpts,
        out: &Path,
    ) -> anyhow::Result<()> {
        let dir = purchase_dir(ctx, &order);
        let how = match opts.pay.unwrap_or(PayWith::Account) {
            PayWith::Account => "account".to_owned(),
            PayWith::Card => {
                let card = opts
                    .card
                    .as_deref()
                    .context("--pay card needs --card FILE")?;
                format!("card\n{}", absolute(card)?.display())
            }
        };
        crate::datadir::write_file_atomic(&dir.join("pay"), how.as_bytes())?;
        let out = absolute(out)?;
        let mut out_text = out.display().to_string();
        if ctx.force {
            out_text.push_str("\nforce");
        }
        crate::datadir::write_file_atomic(&dir.join("out"), out_text.as_bytes())?;
        // The deal itself, so that `agora speed pay ORDER` can finish even a
        // payment that stopped before its order was made (the client saves
        // the next states as they come).
        if !dir.join("state").exists() {
            write_private(&dir.join("state"), &ready.to_bytes(&self.vendor.sign))?;
        }
        let price = ready.price();
        self.settle(ctx, order, Stage::Ready(ready), opts, &out)
            .map_err(|e| crate::output::resumable(e, || payment_resume(ctx, &order, price)))
    }

    /// Carries the payment of `order` on from `stage` to the receipt, then
    /// decrypts the product into `out`.
    fn settle(
        &self,
        ctx: &Ctx,
        order: PaymentOrderId,
        stage: Stage,
        opts: &PayOpts,
        out: &Path,
    ) -> anyhow::Result<()> {
        let c = client(ctx)?;
        let paid_path = speed_dir(ctx).join("paid");
        let paid: Vec<String> = std::fs::read_to_string(&paid_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let dir = purchase_dir(ctx, &order);
        let save = |state: &[u8], msg: &[u8]| {
            // The message first: a state past ReadyToPay is never without
            // the order that goes with it.
            write_private(&dir.join("order.msg"), msg)
                .and_then(|()| write_private(&dir.join("state"), state))
                .map_err(std::io::Error::other)
        };
        let card_path = || -> anyhow::Result<PathBuf> {
            if let Some(p) = &opts.card {
                return Ok(p.clone());
            }
            let how = std::fs::read_to_string(dir.join("pay")).unwrap_or_default();
            how.strip_prefix("card\n")
                .map(PathBuf::from)
                .context("a card payment: name the card with --card")
        };
        let purchase = match stage {
            Stage::Ready(ready) => {
                // The customer's register of paid bills (section 5.3): a
                // bill paid before from here is refused.
                let already = |o: &PaymentOrderId| paid.iter().any(|p| *p == o.to_hex());
                match opts.pay.unwrap_or(PayWith::Account) {
                    PayWith::Account => c.pay_from_account(
                        &mut os_rng(),
                        &self.id,
                        &self.broker,
                        &self.vendor,
                        ready,
                        self.account.clone(),
                        &already,
                        save,
                    )?,
                    PayWith::Card => {
                        let path = card_path()?;
                        let mut k = load_card(&path)?;
                        no_pending_load(ctx, &k, &path)?;
                        c.pay_by_card(
                            &mut os_rng(),
                            &self.id,
                            &self.broker,
                            &self.vendor,
                            ready,
                            &mut k,
                            &already,
                            save,
                            |k| save_card(&path, k).map_err(std::io::Error::other),
                        )?
                    }
                }
            }
            Stage::Account(expect) => match read_order_msg(&dir)? {
                Some(msg) => c.resume_account(expect, &msg)?,
                // A purchase paid by an older agora, which kept no order.
                None => c.receipt(expect)?,
            },
            Stage::Card(expect) => {
                let path = card_path()?;
                let mut k = load_card(&path)?;
                let msg = read_order_msg(&dir)?
                    .context("the purchase kept no PaymentOrder to send again")?;
                c.resume_card(&mut os_rng(), expect, &msg, &mut k, |k| {
                    save_card(&path, k).map_err(std::io::Error::other)
                })?
            }
        };
        if !paid.iter().any(|p| *p == order.to_hex()) {
            let mut all = paid;
            all.push(order.to_hex());
            crate::datadir::write_file_atomic(&paid_path, (all.join("\n") + "\n").as_bytes())?;
        }
        finish(ctx, &purchase, out)
    }
}

/// Where a purchase's payment stands, as its saved state says.
enum Stage {
    /// Dealt and delivered; nothing sent to the broker.
    Ready(ReadyToPay),
    /// Paid from the account: the order was (perhaps) sent, the receipt not
    /// in.
    Account(ExpectReceipt),
    /// Paid by card: the order was (perhaps) sent, the card may have
    /// debited.
    Card(ExpectPurseDebit),
}

impl Stage {
    /// The price on the bill.
    fn price(&self) -> Money {
        match self {
            Stage::Ready(r) => r.price(),
            Stage::Account(e) => e.price(),
            Stage::Card(e) => e.price(),
        }
    }

    fn read(dir: &Path) -> anyhow::Result<Stage> {
        let state = read_at_most(&dir.join("state"), 64 * 1024).plainly(|| {
            "no purchase with that id here (agora speed negotiate, agora speed buy)".into()
        })?;
        if let Ok(r) = ReadyToPay::from_bytes(&state) {
            return Ok(Stage::Ready(r));
        }
        if let Ok(e) = ExpectReceipt::from_bytes(&state) {
            return Ok(Stage::Account(e));
        }
        ExpectPurseDebit::from_bytes(&state)
            .map(Stage::Card)
            .context("the saved purchase")
    }
}

/// The PaymentOrder a purchase kept before it was sent, if it kept one.
fn read_order_msg(dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = dir.join("order.msg");
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_at_most(&path, 64 * 1024)?))
}

/// `agora speed purchases`: the purchase directories of this data
/// directory, newest first.
fn purchases(ctx: &Ctx, only: Option<&str>) -> anyhow::Result<()> {
    let root = speed_dir(ctx).join("purchases");
    let mut found = Vec::new();
    if root.exists() {
        let entries =
            std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?;
        for entry in entries {
            let dir = entry?.path();
            let Some(order) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| PaymentOrderId::from_hex(n).ok())
            else {
                // The products of deals still under way (incoming-*.enc).
                continue;
            };
            let customer = std::fs::read_to_string(dir.join("customer")).unwrap_or_default();
            if only.is_some_and(|c| c != customer.trim()) {
                continue;
            }
            let modified = std::fs::metadata(dir.join("state"))
                .or_else(|_| std::fs::metadata(&dir))
                .and_then(|m| m.modified())
                .ok();
            found.push((modified, order, dir, customer.trim().to_owned()));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut text = String::new();
    let mut rows = Vec::new();
    for (_, order, dir, customer) in &found {
        let product = std::fs::read_to_string(dir.join("product_id")).unwrap_or_default();
        let done = std::fs::read_to_string(dir.join("done")).ok();
        let (price, status) = match Stage::read(dir) {
            Ok(stage @ Stage::Ready(_)) => (stage.price().to_string(), "not paid"),
            Ok(stage) if done.is_some() => (stage.price().to_string(), "paid"),
            Ok(stage) => (stage.price().to_string(), "payment pending"),
            Err(_) => ("?".to_owned(), "unreadable"),
        };
        let hex = order.to_hex();
        text.push_str(&format!(
            "{}  {price:>12}  {status:<15}  {customer}  {}\n",
            &hex[hex.len() - 16..],
            product.trim()
        ));
        match (status, &done) {
            ("paid", Some(out)) => text.push_str(&format!(
                "    product {out}, receipt {}\n",
                dir.join("receipt.cose").display()
            )),
            ("not paid" | "payment pending", _) => text.push_str(&format!(
                "    finish: {}\n",
                ctx.command(&["speed", "pay", &hex])
            )),
            _ => {}
        }
        let receipt = dir.join("receipt.cose");
        rows.push(serde_json::json!({
            "order": hex,
            "customer": customer,
            "product_id": product.trim(),
            "price": price,
            "status": status,
            "product": done,
            "receipt": receipt.exists().then_some(receipt),
        }));
    }
    if found.is_empty() {
        text.push_str("no purchases here");
    }
    crate::output::emit(ctx.json, text.trim_end(), serde_json::Value::Array(rows));
    Ok(())
}

/// `path` made absolute against the working directory, so that a resumed
/// command run elsewhere writes to the same file.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("the path {}", path.display()))
}

/// `agora speed pay ORDER` and `agora speed receipt ORDER`: carries the
/// payment of a purchase of this data directory on from wherever it
/// stopped (not begun, order sent or not, card debited or not, receipt lost)
/// to the decrypted product; pays at most once.
fn settle(ctx: &Ctx, order: &str, opts: &PayOpts, out: Option<&Path>) -> anyhow::Result<()> {
    let order = PaymentOrderId::from_hex(order.trim()).context("PaymentOrderID")?;
    let dir = purchase_dir(ctx, &order);
    let stage = Stage::read(&dir)?;
    let who = std::fs::read_to_string(dir.join("customer"))
        .plainly(|| "the saved purchase names no customer".into())?;
    let c = Customer::load(ctx, who.trim())?;
    let saved = std::fs::read_to_string(dir.join("out")).ok();
    let saved_out = saved
        .as_deref()
        .and_then(|t| t.lines().next())
        .map(PathBuf::from);
    let saved_force = saved
        .as_deref()
        .is_some_and(|t| t.lines().nth(1) == Some("force"));
    let out = match out {
        Some(o) => absolute(o)?,
        None => saved_out
            .clone()
            .context("name the file for the product with --out")?,
    };
    if let Stage::Ready(ready) = stage {
        ctx.check_out(&out)?;
        return c.pay(ctx, order, ready, opts, &out);
    }
    // Finished already: the product is where it was written.
    if dir.join("done").exists() && out.exists() && Some(&out) == saved_out.as_ref() {
        crate::output::emit(
            ctx.json,
            &format!(
                "order {order} is paid; its product is in {} and the receipt in {}",
                out.display(),
                dir.join("receipt.cose").display()
            ),
            serde_json::json!({
                "order": order.to_hex(),
                "product": out,
                "receipt": dir.join("receipt.cose"),
            }),
        );
        return Ok(());
    }
    if !(saved_force && Some(&out) == saved_out.as_ref()) {
        ctx.check_out(&out)?;
    }
    let price = stage.price();
    c.settle(ctx, order, stage, opts, &out)
        .map_err(|e| crate::output::resumable(e, || payment_resume(ctx, &order, price)))
}

/// A card load asked for and not known to be applied: the request (sent
/// again as it is), the card's counter when it was made, and for the user
/// whose load and how much. Kept in `speed/card-loads/<card id>.json`.
struct PendingLoad {
    customer: String,
    amount: Money,
    counter: u64,
    request: Vec<u8>,
}

impl PendingLoad {
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::json!({
            "customer": self.customer,
            "amount": self.amount.to_string(),
            "counter": self.counter,
            "request": hex::encode(&self.request),
        });
        write_private(path, json.to_string().as_bytes())
    }

    fn load(path: &Path) -> anyhow::Result<PendingLoad> {
        let bytes = read_at_most(path, 16 * 1024)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a pending card load", path.display()))?;
        let text = |k: &str| {
            v[k].as_str()
                .with_context(|| format!("{}: no {k}", path.display()))
        };
        Ok(PendingLoad {
            customer: text("customer")?.to_owned(),
            amount: text("amount")?
                .parse()
                .context("the pending load's amount")?,
            counter: v["counter"]
                .as_u64()
                .with_context(|| format!("{}: no counter", path.display()))?,
            request: hex::decode(text("request")?).context("the pending load's request")?,
        })
    }
}

/// Where a pending load onto `card` is kept.
fn pending_load_path(ctx: &Ctx, card: &Card) -> PathBuf {
    speed_dir(ctx)
        .join("card-loads")
        .join(format!("{}.json", hex::encode(card.card_id().0)))
}

/// Refuses to use a card whose load is pending: a new session would close
/// the one the load's command answers, and the load could not be applied.
fn no_pending_load(ctx: &Ctx, card: &Card, path: &Path) -> anyhow::Result<()> {
    let pending = pending_load_path(ctx, card);
    if pending.exists() {
        let p = PendingLoad::load(&pending)?;
        return Err(anyhow::anyhow!(
            "a load onto this card has not finished: finish it before using the card"
        )
        .context(load_resume(ctx, path, p.amount, &p.customer)));
    }
    Ok(())
}

/// A payment left pending, and the command that finishes it.
fn payment_resume(ctx: &Ctx, order: &PaymentOrderId, price: Money) -> crate::output::Resume {
    crate::output::Resume {
        pending: format!("the payment of {price} for order {order}"),
        command: ctx.command(&["speed", "pay", &order.to_hex()]),
    }
}

/// A card load left pending, and the command that finishes it.
fn load_resume(ctx: &Ctx, card: &Path, amount: Money, customer: &str) -> crate::output::Resume {
    crate::output::Resume {
        pending: format!(
            "the load of {amount} onto {} for {customer}",
            card.display()
        ),
        command: ctx.command(&["speed", "card", "resume", "--card", &card.to_string_lossy()]),
    }
}

/// Decrypts the product with K from the receipt, keeps the receipt, and
/// says what was bought.
fn finish(ctx: &Ctx, purchase: &Purchase, out: &Path) -> anyhow::Result<()> {
    let dir = purchase_dir(ctx, &purchase.order);
    crate::datadir::write_file_atomic(&dir.join("receipt.cose"), &purchase.receipt)?;
    ctx.store()?
        .archive()
        .append("speed/purchase-receipt", &purchase.receipt, ctx.now())?;
    let ct = std::fs::File::open(dir.join("product.enc"))?;
    let tmp = out.with_extension("part");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let n = agora_speed::product::decrypt(
        &purchase.key,
        std::io::BufReader::new(ct),
        std::io::BufWriter::new(f),
    )
    .context(
        "the key in the receipt does not decrypt the product (keep the receipt: it is evidence)",
    )?;
    std::fs::rename(&tmp, out)?;
    crate::datadir::write_file_atomic(&dir.join("done"), out.display().to_string().as_bytes())?;
    crate::output::emit(
        ctx.json,
        &format!(
            "paid {}; the broker's receipt holds the key\n  product  {} ({n} bytes)\n  order    {}\n  receipt  {}",
            purchase.price,
            out.display(),
            purchase.order,
            dir.join("receipt.cose").display()
        ),
        serde_json::json!({
            "order": purchase.order.to_hex(),
            "price": purchase.price.to_string(),
            "product": out,
            "bytes": n,
            "receipt": dir.join("receipt.cose"),
        }),
    );
    Ok(())
}

/// Trust for SPEED from this data directory: the CAs pinned with role
/// `Ca` and the CRLs in its CRL directory, read afresh on every call.
#[derive(Debug)]
pub struct DirSpeedTrust {
    pub trust_path: PathBuf,
    pub crl_dir: PathBuf,
}

impl SpeedTrustSource<agora_speed::SpeedTrust> for DirSpeedTrust {
    fn load(&self) -> Result<agora_speed::SpeedTrust, String> {
        let trust = TrustStore::load(&self.trust_path).map_err(|e| e.to_string())?;
        // The node validates the same customers' certificates on every
        // purchase: remember them until the CRLs' nextUpdate (a reload makes
        // a fresh cache).
        Ok(agora_speed::SpeedTrust::new(
            trust.anchors(PartyRole::Ca),
            agora_node::pki::current_crls(&self.crl_dir)?,
        )
        .with_cache())
    }
}
