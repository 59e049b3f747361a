//! `agora lite derive | dispute`: the offline tools of the lightweight
//! protocols (agora-lite): a client's Janus key with one vendor, for
//! checking that two machines derive the same; and the judgement of a
//! dispute over a subscription with hash-chain receipts (paper section 5).
//!
//! Neither touches the data directory. The logic is agora-lite's
//! ([`agora_lite::Janus`], [`agora_lite::dispute::judge`]); this module
//! reads the inputs and prints.

use crate::datadir::Ctx;
use crate::output::emit;
use agora_client::datadir::{read_at_most, role_keys};
use agora_client::transport::NodeClient;
use agora_core::crypto::VerifyingKey;
use agora_lite::dispute::{self, ClientClaim, Finding, VendorEvidence};
use agora_lite::janus::MAX_SECRET_LEN;
use agora_lite::{ClientId, Janus, JanusParams, VendorId};
use anyhow::{bail, Context};
use base64ct::{Base64UrlUnpadded, Encoding};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable `agora lite derive` reads the client's secret
/// from (else stdin): never the command line, where other users see it.
pub const SECRET_ENV: &str = "AGORA_LITE_SECRET";

/// The keystore name of the node's lightweight vendor's keys.
pub const LITE_KEY: &str = "lite-vendor";
/// The demo vendor's id (`id_V`), also its certificate's name.
pub const VENDOR_ID: &str = "agora-quotes";

/// The largest receipt file read, in bytes (a receipt is under 2 KiB).
const MAX_RECEIPT_FILE: u64 = 64 * 1024;
/// The largest vendor key or certificate file read, in bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// `agora lite ...`.
#[derive(Debug, Subcommand)]
pub enum LiteCmd {
    /// Derive your Janus key with one vendor from your id and secret, and
    /// print its key id, so that you can check two machines derive the same
    /// key. The secret is read from $AGORA_LITE_SECRET, else from stdin
    /// (one line; a prompt without echo on a terminal), never from the
    /// command line.
    #[command(
        after_help = "Examples:\n  agora lite derive --id alice@example.org --vendor quotes.example\n  \
        printf '%s\\n' \"$SECRET\" | agora lite derive --id alice@example.org --vendor quotes.example --counter 1"
    )]
    Derive {
        /// Your client id (e.g. your e-mail address), exactly as your
        /// proxy uses it: ids are not case-folded.
        #[arg(long)]
        id: String,
        /// The vendor's id (e.g. the domain name of its site).
        #[arg(long)]
        vendor: String,
        /// The vendor's Janus counter (0 until you rotate that vendor's
        /// key).
        #[arg(long, default_value_t = 0)]
        counter: u32,
        /// Also print the key K itself (base64url). K is the secret you
        /// share with the vendor: whoever reads it can impersonate you to
        /// that vendor.
        #[arg(long)]
        reveal: bool,
    },
    /// Subscribe to the lightweight vendor at --node (SKEP): its keys are
    /// checked against its certificate under this data directory's trust,
    /// your key with it is derived from your id and secret, and its signed
    /// receipt (non-repudiation SKEP) is kept in the data directory (lite/receipts).
    #[command(
        after_help = "Example:\n  AGORA_LITE_SECRET='correct horse battery staple' \\\n      \
        agora lite subscribe --id alice@example.org --days 30"
    )]
    Subscribe {
        /// Your client id (e.g. your e-mail address).
        #[arg(long)]
        id: String,
        /// Your Janus counter with this vendor (0 until you rotate its key).
        #[arg(long, default_value_t = 0)]
        counter: u32,
        /// Days the subscription runs, from now.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Payment reference sent with the subscription (at most 1 KiB).
        #[arg(long, default_value = "free")]
        payment: String,
        /// Also write the receipt (COSE_Sign1) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fetch a route of the lightweight vendor at --node over SDDP: the
    /// request is signed under your session key, the reply checked and
    /// opened. Prints the reply's body.
    #[command(
        after_help = "Example:\n  agora lite fetch --id alice@example.org '/v1/lite/quotes?symbols=ACME,INITECH'"
    )]
    Fetch {
        /// Your client id.
        #[arg(long)]
        id: String,
        /// Your Janus counter with this vendor.
        #[arg(long, default_value_t = 0)]
        counter: u32,
        /// The path and query to fetch.
        path: String,
    },
    /// List the receipts kept in the data directory (lite/receipts), each
    /// checked against the vendor key it was received under; or, with
    /// --file, check one receipt (as `agora proxy` hands it over) against
    /// the key of the vendor at --node, validated by its certificate.
    Receipts {
        /// A receipt file (COSE_Sign1 bytes).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Judge a dispute over a subscription with hash-chain receipts: the
    /// vendor's signed receipt proves which chain it agreed to, an element
    /// w_i of that chain the vendor shows proves i deliveries acknowledged.
    /// Prints what each side proves and the refund owed, in units of the
    /// subscription (refund evidence is not built in agora yet).
    #[command(
        after_help = "Examples:\n  agora lite dispute --receipt receipt.cose --vendor-key quotes.ed25519.pem\n  \
        agora lite dispute --receipt receipt.cose --vendor-cert quotes.pem \\\n      \
        --vendor-shows 12:<64 hex digits> --client-claims 3"
    )]
    Dispute {
        /// The vendor's signed receipt: its COSE_Sign1 bytes, raw, as the
        /// client kept them from non-repudiation SKEP.
        #[arg(long)]
        receipt: PathBuf,
        /// The vendor's Ed25519 public key (PEM).
        #[arg(
            long,
            conflicts_with = "vendor_cert",
            required_unless_present = "vendor_cert"
        )]
        vendor_key: Option<PathBuf>,
        /// The vendor's certificate (PEM or DER); its key is used. Validate
        /// the certificate itself with `agora cert verify`.
        #[arg(long)]
        vendor_cert: Option<PathBuf>,
        /// The chain element the vendor shows as INDEX:HEX (the index i,
        /// then w_i as 64 hex digits).
        #[arg(long, value_name = "INDEX:HEX32")]
        vendor_shows: Option<String>,
        /// How many deliveries the client says she received.
        #[arg(long, value_name = "N")]
        client_claims: Option<u64>,
    },
}

pub fn run(ctx: &Ctx, cmd: &LiteCmd) -> anyhow::Result<()> {
    match cmd {
        LiteCmd::Subscribe {
            id,
            counter,
            days,
            payment,
            out,
        } => subscribe(ctx, id, *counter, *days, payment, out.as_deref()),
        LiteCmd::Fetch { id, counter, path } => fetch(ctx, id, *counter, path),
        LiteCmd::Receipts { file: None } => receipts(ctx),
        LiteCmd::Receipts { file: Some(f) } => receipt_file(ctx, f),
        LiteCmd::Derive {
            id,
            vendor,
            counter,
            reveal,
        } => derive(ctx, id, vendor, *counter, *reveal),
        LiteCmd::Dispute {
            receipt,
            vendor_key,
            vendor_cert,
            vendor_shows,
            client_claims,
        } => run_dispute(
            ctx,
            receipt,
            vendor_key.as_deref(),
            vendor_cert.as_deref(),
            vendor_shows.as_deref(),
            *client_claims,
        ),
    }
}

/// The client's secret: `$AGORA_LITE_SECRET` if set, else a prompt on a
/// terminal, else one line of stdin (its line ending removed, nothing
/// else: spaces are part of the secret).
fn read_secret(id: &ClientId) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(SECRET_ENV) {
        Ok(s) => return Ok(Zeroizing::new(s)),
        Err(std::env::VarError::NotUnicode(_)) => bail!("${SECRET_ENV} is not UTF-8"),
        Err(std::env::VarError::NotPresent) => {}
    }
    if std::io::stdin().is_terminal() {
        let s = rpassword::prompt_password(format!("Janus secret of {id}: "))
            .context("reading the secret from the terminal")?;
        return Ok(Zeroizing::new(s));
    }
    // Room for the longest secret and a CRLF, allocated once so that the
    // secret is not left behind in a reallocated buffer.
    let room = MAX_SECRET_LEN + 2;
    let mut line = Zeroizing::new(String::with_capacity(room));
    let n = std::io::stdin()
        .lock()
        .take(u64::try_from(room).unwrap_or(u64::MAX))
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    if n == 0 {
        bail!("no secret: set ${SECRET_ENV} or give it on stdin (one line)");
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    } else if line.len() > MAX_SECRET_LEN {
        bail!("the secret on stdin is over {MAX_SECRET_LEN} bytes");
    }
    Ok(line)
}

fn derive(ctx: &Ctx, id: &str, vendor: &str, counter: u32, reveal: bool) -> anyhow::Result<()> {
    let id_c = ClientId::new(id).context("--id")?;
    let id_v = VendorId::new(vendor).context("--vendor")?;
    let secret = read_secret(&id_c)?;
    let janus = Janus::open(id_c.clone(), secret.as_bytes(), JanusParams::DEFAULT)?;
    drop(secret);
    let key = janus.vendor_key(&id_v, counter);
    let kid = key.key_id();
    let mut text = format!("client   {id_c}\nvendor   {id_v}\ncounter  {counter}\nkey id   {kid}");
    let mut out = json!({
        "client": id_c.as_str(),
        "vendor": id_v.as_str(),
        "counter": counter,
        "key_id": kid,
    });
    if reveal {
        let k = Zeroizing::new(Base64UrlUnpadded::encode_string(key.k().expose()));
        text.push_str(&format!(
            "\nkey K    {} (SECRET: whoever holds it can impersonate you to {id_v})",
            k.as_str()
        ));
        out["key"] = k.as_str().into();
    }
    emit(ctx.json, &text, out);
    Ok(())
}

/// The node (`--node`), its lightweight vendor validated, and the
/// client's key with it.
fn connect(
    ctx: &Ctx,
    id: &str,
    counter: u32,
) -> anyhow::Result<(
    NodeClient,
    agora_client::lite::Vendor,
    ClientId,
    agora_lite::VendorKey,
)> {
    let url = ctx
        .node
        .clone()
        .context("which vendor? pass --node or set AGORA_NODE to the node that hosts it")?;
    let node = NodeClient::new(&url)?;
    let id_c = ClientId::new(id).context("--id")?;
    let trust = crate::stp::identity_trust(ctx)?;
    let vendor = agora_client::lite::discover(&node, &trust, ctx.now())
        .with_context(|| format!("checking the vendor at {url}"))?;
    let secret = read_secret(&id_c)?;
    let janus = Janus::open(id_c.clone(), secret.as_bytes(), JanusParams::DEFAULT)?;
    drop(secret);
    let key = janus.vendor_key(&vendor.id, counter);
    Ok((node, vendor, id_c, key))
}

fn receipts_dir(ctx: &Ctx) -> PathBuf {
    ctx.dir().join("lite").join("receipts")
}

/// A receipt's file name: 16 hex digits of SHA-256 over the vendor and
/// client ids (ids may hold any character; file names may not).
fn receipt_name(id_v: &VendorId, id_c: &ClientId) -> String {
    let mut m = Vec::new();
    for id in [id_v.as_str(), id_c.as_str()] {
        m.extend_from_slice(id.as_bytes());
        m.push(0);
    }
    hex::encode(&agora_core::crypto::sha256(&m)[..8])
}

fn subscribe(
    ctx: &Ctx,
    id: &str,
    counter: u32,
    days: u64,
    payment: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    if !(1..=3650).contains(&days) {
        bail!("--days must be 1 to 3650");
    }
    let (node, vendor, id_c, key) = connect(ctx, id, counter)?;
    let now = ctx.now();
    let subscription = agora_lite::wire::Subscription {
        not_before: now,
        not_after: now.plus_secs(days * 86_400),
        chain: None,
        payment: payment.as_bytes().to_vec(),
        counter,
    };
    subscription.check()?;
    let receipt = agora_client::lite::subscribe(
        &node,
        &vendor,
        &id_c,
        &key,
        &mut agora_core::crypto::os_rng(),
        subscription,
    )?;
    let mut text = format!(
        "subscribed  {id_c} with {} for {days} days (key id {})",
        vendor.id,
        key.key_id()
    );
    let mut doc = json!({
        "client": id_c.as_str(),
        "vendor": vendor.id.as_str(),
        "key_id": key.key_id(),
        "not_after": now.plus_secs(days * 86_400).0,
    });
    if let Some(r) = receipt {
        let dir = receipts_dir(ctx);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = receipt_name(&vendor.id, &id_c);
        let path = dir.join(format!("{name}.cose"));
        crate::datadir::write_file_atomic(&path, &r.cose_sign1)?;
        let meta = json!({ "vendor_ed25519": hex::encode(vendor.ed25519.to_bytes()) });
        crate::datadir::write_file_atomic(
            &dir.join(format!("{name}.json")),
            meta.to_string().as_bytes(),
        )?;
        if let Some(o) = out {
            crate::datadir::write_file_atomic(o, &r.cose_sign1)?;
        }
        text.push_str(&format!(
            "\nreceipt     {} (signed by the vendor)",
            path.display()
        ));
        doc["receipt"] = path.display().to_string().into();
    }
    emit(ctx.json, &text, doc);
    Ok(())
}

fn fetch(ctx: &Ctx, id: &str, counter: u32, path: &str) -> anyhow::Result<()> {
    if !path.starts_with('/') {
        bail!("the path must start with / (e.g. /v1/lite/quotes?symbols=ACME)");
    }
    let (node, vendor, id_c, key) = connect(ctx, id, counter)?;
    let resp = agora_client::lite::fetch(
        &node,
        &vendor,
        &id_c,
        &key,
        &mut agora_core::crypto::os_rng(),
        ctx.now(),
        http::Method::GET,
        path,
        None,
        Vec::new(),
    )?;
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    if !resp.status().is_success() {
        bail!("the vendor answered {} (signed): {body}", resp.status());
    }
    if ctx.json {
        // The body as the vendor sent it (JSON for the demo quotes).
        println!("{body}");
    } else {
        match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(_) => println!("{body}"),
        }
    }
    Ok(())
}

/// One receipt file checked against the vendor at --node.
fn receipt_file(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let url = ctx
        .node
        .clone()
        .context("which vendor signed it? pass --node or set AGORA_NODE")?;
    let node = NodeClient::new(&url)?;
    let trust = crate::stp::identity_trust(ctx)?;
    let vendor = agora_client::lite::discover(&node, &trust, ctx.now())
        .with_context(|| format!("checking the vendor at {url}"))?;
    let cose = read_at_most(file, MAX_RECEIPT_FILE)?;
    let r = agora_lite::skep::verify_receipt(&cose, &vendor.ed25519).with_context(|| {
        format!(
            "{} is not a receipt signed by {}",
            file.display(),
            vendor.id
        )
    })?;
    let s = &r.subscription;
    let text = format!(
        "{}: receipt signed by {} (its certificate checked)\nclient   {}\nperiod   {} .. {}\nissued   {}\nchain    {}",
        file.display(),
        r.id_v,
        r.id_c,
        crate::cert::fmt_time(s.not_before),
        crate::cert::fmt_time(s.not_after),
        crate::cert::fmt_time(r.issued_at),
        match s.chain {
            Some(c) => format!("{} deliveries, w_0 {}", c.n, hex::encode(c.anchor)),
            None => "none (no deliveries to acknowledge)".to_owned(),
        }
    );
    emit(
        ctx.json,
        &text,
        json!({
            "vendor": r.id_v.as_str(),
            "client": r.id_c.as_str(),
            "not_before": s.not_before.0,
            "not_after": s.not_after.0,
            "issued_at": r.issued_at.0,
            "chain_n": s.chain.map(|c| c.n),
        }),
    );
    Ok(())
}

fn receipts(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = receipts_dir(ctx);
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cose"))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for p in names {
        let cose = read_at_most(&p, MAX_RECEIPT_FILE)?;
        let meta: serde_json::Value =
            serde_json::from_slice(&read_at_most(&p.with_extension("json"), MAX_KEY_FILE)?)?;
        let key: [u8; 32] = meta["vendor_ed25519"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{}: no vendor key", p.display()))?;
        let vk = VerifyingKey::from_bytes(&key)?;
        let r = agora_lite::skep::verify_receipt(&cose, &vk)
            .with_context(|| format!("{} does not verify", p.display()))?;
        text.push_str(&format!(
            "{}  {} with {}  {} .. {}  {}\n",
            p.file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
            r.id_c,
            r.id_v,
            crate::cert::fmt_time(r.subscription.not_before),
            crate::cert::fmt_time(r.subscription.not_after),
            match r.subscription.chain {
                Some(c) => format!("chain of {}", c.n),
                None => "no chain".to_owned(),
            }
        ));
        rows.push(json!({
            "file": p.display().to_string(),
            "client": r.id_c.as_str(),
            "vendor": r.id_v.as_str(),
            "not_before": r.subscription.not_before.0,
            "not_after": r.subscription.not_after.0,
            "chain_n": r.subscription.chain.map(|c| c.n),
        }));
    }
    if rows.is_empty() {
        text.push_str("no receipts kept (agora lite subscribe keeps them)\n");
    }
    emit(ctx.json, text.trim_end(), json!(rows));
    Ok(())
}

/// The vendor's Ed25519 key from a public-key PEM or a certificate.
fn vendor_key(key: Option<&Path>, cert: Option<&Path>) -> anyhow::Result<VerifyingKey> {
    if let Some(p) = key {
        let bytes = read_at_most(p, MAX_KEY_FILE)?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not a PEM public key", p.display()))?;
        return agora_pki::pem::ed25519_from_public_pem(text)
            .with_context(|| format!("reading the vendor's key {}", p.display()));
    }
    if let Some(p) = cert {
        let der = crate::cert::read_cert_der(p)?;
        return Ok(agora_pki::parse_certificate(&der)
            .with_context(|| format!("reading the vendor's certificate {}", p.display()))?
            .public_key);
    }
    bail!("give the vendor's key with --vendor-key or --vendor-cert")
}

/// `INDEX:HEX`: the index and the 32-byte element.
fn parse_element(s: &str) -> anyhow::Result<(u64, [u8; 32])> {
    let (index, w) = s
        .split_once(':')
        .with_context(|| format!("--vendor-shows {s:?} is not INDEX:HEX (e.g. 12:ab01...)"))?;
    let index: u64 = index
        .trim()
        .parse()
        .with_context(|| format!("--vendor-shows: the index {index:?} is not a number"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(w.trim(), &mut out)
        .with_context(|| "--vendor-shows: the element is not 64 hex digits")?;
    Ok((index, out))
}

fn run_dispute(
    ctx: &Ctx,
    receipt: &Path,
    key: Option<&Path>,
    cert: Option<&Path>,
    shows: Option<&str>,
    claims: Option<u64>,
) -> anyhow::Result<()> {
    let vendor = vendor_key(key, cert)?;
    let shows = shows.map(parse_element).transpose()?;
    let bytes = read_at_most(receipt, MAX_RECEIPT_FILE)?;
    let finding = dispute::judge(&bytes, &vendor, shows, claims).map_err(|e| {
        let refused_receipt = matches!(
            e,
            agora_core::Error::Crypto
                | agora_core::Error::NotAuthorised(_)
                | agora_core::Error::Decode(_)
        );
        let e = anyhow::Error::new(e);
        if refused_receipt {
            e.context(format!(
                "the receipt {} is not a receipt signed by the vendor key {}",
                receipt.display(),
                vendor.key_id()
            ))
        } else {
            e
        }
    })?;
    emit(ctx.json, &human(&finding), to_json(&finding));
    Ok(())
}

fn human(f: &Finding) -> String {
    let t = crate::cert::fmt_time;
    let mut text = format!(
        "subscription  {} with {}\nperiod        {} to {}\nreceipt       issued {}\ndeliveries    {} promised, {} proven, {} not acknowledged\nrefund owed   {}\n",
        f.client,
        f.vendor,
        t(f.not_before),
        t(f.not_after),
        t(f.issued_at),
        f.n,
        f.proven(),
        f.not_acknowledged(),
        f.refund_owed(),
    );
    for line in f.lines() {
        text.push_str("\n- ");
        text.push_str(&line);
    }
    text
}

fn to_json(f: &Finding) -> serde_json::Value {
    let (judgement, index) = match f.vendor_evidence {
        VendorEvidence::NoneShown => ("none", None),
        VendorEvidence::Valid { index } => ("valid", Some(index)),
        VendorEvidence::NotOnChain { index } => ("not-on-chain", Some(index)),
        VendorEvidence::BeyondEnd { index } => ("beyond-end", Some(index)),
    };
    let (claim, claimed) = match f.client_claim {
        ClientClaim::NoneMade => ("none", None),
        ClientClaim::Consistent { claimed } => ("consistent", Some(claimed)),
        ClientClaim::Refuted { claimed } => ("refuted", Some(claimed)),
    };
    json!({
        "client": f.client.as_str(),
        "vendor": f.vendor.as_str(),
        "vendor_key_id": f.vendor_key.to_string(),
        "not_before": f.not_before.secs(),
        "not_after": f.not_after.secs(),
        "issued_at": crate::cert::fmt_time(f.issued_at),
        "issued_at_unix": f.issued_at.secs(),
        "anchor": hex::encode(f.anchor),
        "n": f.n,
        "vendor_evidence": { "judgement": judgement, "index": index },
        "proven": f.proven(),
        "not_acknowledged": f.not_acknowledged(),
        "client_claim": { "judgement": claim, "claimed": claimed },
        "refund_owed": { "units": f.refund_owed().units, "of": f.refund_owed().n },
        "refund_evidence": "not built in agora yet: a refund paid can be neither shown nor checked",
        "findings": f.lines(),
    })
}

// ---- the node's lightweight vendor (`agora up`) ---------------------------

fn lite_dir(ctx: &Ctx) -> PathBuf {
    ctx.dir().join("lite")
}

/// Makes the node's demo vendor of quotes once (for `agora up`): its
/// Ed25519 and X25519 keys and its identity certificate (role `vendor`,
/// named [`VENDOR_ID`], both keys in it), issued by the data directory's
/// identity CA, in `lite/vendor.pem`.
pub fn setup(ctx: &Ctx) -> anyhow::Result<Vec<String>> {
    if role_keys(&ctx.load_keystore()?, LITE_KEY).is_ok() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(lite_dir(ctx))
        .with_context(|| format!("creating {}", lite_dir(ctx).display()))?;
    crate::speed::make_party_in(
        ctx,
        &lite_dir(ctx),
        LITE_KEY,
        VENDOR_ID,
        agora_pki::PartyRole::Vendor,
        "vendor.pem",
    )?;
    Ok(vec![format!("lightweight vendor {VENDOR_ID}")])
}

/// The node's lightweight vendor: SKEP (non-repudiation: every subscriber
/// gets a signed receipt) and the demo quotes over SDDP, with its records
/// and replay cache in the data directory's store, session keys by the
/// minute, two minutes either side.
pub fn lite_service(
    ctx: &Ctx,
    ks: &agora_pki::Keystore,
) -> anyhow::Result<agora_node::lite::LiteService> {
    let keys = role_keys(ks, LITE_KEY)
        .context("the keystore holds no lightweight vendor key (`agora up` makes it)")?;
    let certificate = std::fs::read_to_string(lite_dir(ctx).join("vendor.pem")).ok();
    let store = ctx.store()?;
    agora_node::lite::LiteService::new(agora_node::lite::LiteSpec {
        vendor: agora_lite::skep::SkepVendor::new(VendorId::new(VENDOR_ID)?, keys.enc, keys.sign),
        mode: agora_lite::skep::SkepMode::NonRepudiation,
        certificate,
        records: store.lite_records(),
        replay: store.replay_cache(),
        granularity: agora_lite::Granularity::MINUTE,
        window_units: 2,
    })
    .map_err(|e| anyhow::anyhow!(e))
}

// ---- agora proxy ------------------------------------------------------------

/// `agora proxy`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  agora proxy --port 8118 &\n  \
    curl -x 'http://alice%40example.org:my%20secret@127.0.0.1:8118' \\\n      \
    'http://127.0.0.1:7878/v1/lite/quotes?symbols=ACME'")]
pub struct ProxyArgs {
    /// The loopback port to listen on.
    #[arg(long, default_value_t = 8118)]
    port: u16,
    /// Days a subscription made on first contact runs.
    #[arg(long, default_value_t = 30)]
    days: u64,
}

/// `agora proxy`: serves until Ctrl-C or SIGTERM. It reads the data
/// directory's trust (which CAs certify vendors) and writes nothing.
pub fn proxy(ctx: &Ctx, a: &ProxyArgs) -> anyhow::Result<()> {
    if !(1..=3650).contains(&a.days) {
        bail!("--days must be 1 to 3650");
    }
    let trust = crate::stp::identity_trust(ctx)?;
    let upstream = std::sync::Arc::new(agora_client::lite::LiteProxy::new(
        trust,
        JanusParams::DEFAULT,
        a.days,
    ));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.port));
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr}: is another proxy running there?"))?;
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    println!(
        "agora proxy at http://{addr} (credentials: your client id and secret, \
         e.g. curl -x http://alice%40example.org:SECRET@{addr} URL); nothing is written to disk"
    );
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        agora_node::proxy::serve(listener, upstream, agora_node::shutdown_signal()).await
    })
    .context("serving the proxy")
}
