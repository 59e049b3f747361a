//! `agora bench cpo-post | cpo-browse | cpo-bind | speed-normal |
//! speed-aggressive`: a load generator for a node started with `agora up`
//! on the same data directory.
//!
//! Loopback only (a `--node` on any other host is refused), and bounded:
//! at most `--concurrency` clients (256), and the measured phase stops at
//! `--requests` protocol messages or `--duration` seconds, whichever comes
//! first. The buyers and sellers are synthetic: their keys live only in
//! this process, and their bonds are issued by the data directory's own
//! bonding agency (`agora-bonding`, made by `agora up`). The bonds are not
//! recorded in the agency's register: validation (arbiter and server) checks
//! the agency's signature, the dates and the agency's CRL, never the
//! register, and the CPO scenarios write nothing into the node's database
//! themselves (the SPEED scenarios must: below). They are short-lived (the run's length plus an hour), and so are the CPOs and
//! the browse sessions it makes; the sessions are ended after the run.
//!
//! Scenarios:
//!
//! * `cpo-post`: N buyers each run approval (protocol 1, two round trips to
//!   the arbiter) and posting (protocol 2, two round trips to the server)
//!   over and over; throughput = CPOs posted per second.
//! * `cpo-browse`: setup posts a few CPOs and opens N browse sessions
//!   (protocol 3); then N sellers fetch listings of open CPOs under K_p
//!   (one round trip each); throughput = listings per second.
//! * `cpo-bind`: setup posts M CPOs (in parallel) and opens N sessions;
//!   then the N sellers race over the M CPOs (listing request + offer),
//!   each walking the board round from her own starting place and skipping
//!   CPOs she has seen bound, as a seller reading the live board would,
//!   until every CPO is bound (or the limits stop them); throughput = binds (BOUND_CPO) per second. The
//!   bench counts the BOUND_CPOs of every CPO: more than one is
//!   a broken invariant, reported loudly with a non-zero exit.
//! * `speed-normal`: N synthetic SPEED customers each buy the demo
//!   vendor's 16-byte product ([`crate::speed::DEMO_KEY`], fixed price)
//!   over and over in normal mode, paying from their accounts:
//!   NegotiationRequest (accepting the first offer), Handshake and the
//!   delivery, PaymentOrder and the receipt (three round trips); each
//!   product is decrypted with the receipt's K and compared with the
//!   vendor's file. Throughput = purchases completed per second.
//! * `speed-aggressive`: the same in aggressive mode: ProductRequest and
//!   the delivery, PaymentOrder and the receipt (two round trips).
//!
//! The SPEED customers are registered by the bench as `agora speed
//! register` would: an identity certificate of the data directory's SPEED
//! CA (recorded in its register, so it can be revoked; valid for the run's
//! length plus an hour) and an account at the broker with a deposit from
//! the cash account, enough for the most purchases the run's limits allow;
//! their keys live only in this process. At the end the bench checks the
//! money: the ledger still sums to zero, and the vendor's account grew by
//! exactly the price times the purchases paid, which is what the customers
//! spent; a broken rule exits non-zero like a CPO bound twice. Then what is
//! left on the customers' accounts goes back to the cash account.
//!
//! Setup (posting, sessions) is not measured. Each run prints requests,
//! successes, errors by code, throughput, p50/p99/p999 latency per protocol
//! step (a step is one HTTP round trip), wall time, and the crypto bound:
//! the same steps' cryptography measured in this process on one core after
//! the measured phase, scaled to this machine's cores, and the ratio of the
//! throughput to it.
//!
//! The crypto bound counts both sides, client and server: over loopback
//! the clients run on the same cores as the node, so their crypto takes
//! the same CPU the node's does, and a server-only bound would promise more
//! than this machine can do while it also runs the clients. The server-only
//! bound (what `crates/agora-store/benches/bind.rs` measures: the node on a
//! machine of its own) is reported next to it.
//!
//! Clients are OS threads, one per worker, each with its own blocking
//! [`NodeClient`] (its own connection): the buyer and seller state machines
//! are synchronous and CPU-bound (HPKE, Ed25519); `NodeClient` is the
//! transport the CLI itself uses, so the bench measures what a CLI user
//! meets; and at most 256 threads is cheap. Its price: a thread sleeps
//! while the node answers and is woken for every reply, and reqwest's
//! blocking client hands each request to its I/O thread and back. For
//! `cpo-bind`, where that was a quarter of the load tool's CPU (taken, over
//! loopback, from the node under test), the sellers are futures instead:
//! [`LOOPS`] event-loop threads each drive their share of them with an
//! [`AsyncNodeClient`], running each seller's protocol steps inline between
//! her round trips ([`race_loops`]).

use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_client::cpo::flow::{
    self, Approval, Bind, Browse, Conversation, EndSession, Listings, Next,
};
use agora_client::cpo::{role_of, run_async, FlowError};
use agora_client::transport::{
    AsyncCpoTransport, AsyncNodeClient, ClientError, CpoTransport, NodeClient,
};
use agora_core::crypto::hpke::{self, Encapped};
use agora_core::crypto::{
    os_rng, random_bytes, Rng, Signature, SigningKey, VerifyingKey, X25519Public, X25519Secret,
};
use agora_core::wire::tags;
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::msg::{digest, BindListing, BindOffer, BoundCpo, ListingRequest};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::seller::{Listing, SellerSession};
use agora_cpo::server::Server;
use agora_cpo::session::{BindingKey, Channel, Direction};
use agora_cpo::{buyer, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Mode, Peer};
use agora_node::cpo::{BoardQuery, Reply, Role};
use agora_node::pending::StepId;
use agora_node::speed::{SpeedTrustSource, DELIVERY_TYPE};
use agora_node::STEP_HEADER;
use agora_pki::registry::IssuedKind;
use agora_pki::{Agency, BondParams, Conditions, IdentityParams, PartyRole};
use agora_speed::customer::{self, CustomerNext, Identity};
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Ledger, Posting};
use agora_speed::msg::BillSecret;
use agora_speed::product::Encrypted;
use agora_speed::strategy::AcceptFirst;
use agora_speed::{AccountNumber, PaymentOrderId, SpeedTrust};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The node `agora up` serves, unless `--node` says otherwise.
const DEFAULT_NODE: &str = "http://127.0.0.1:7878";
/// Most concurrent clients.
pub const MAX_CONCURRENCY: u16 = 256;
/// Most threads posting the setup's CPOs.
const POSTERS: usize = 32;
/// Failed setup operations tolerated (each is retried) before giving up.
const MAX_SETUP_FAILURES: usize = 20;
/// The offer details of every bind.
const OFFER: &str = "agora bench: synthetic offer";
/// Goods of every CPO the bench posts (so that they can be told apart).
const GOODS: &str = "agora bench: synthetic CPO";
/// The price of every CPO, in cents of EUR.
const PRICE_CENTS: u64 = 100;
/// What every bond covers, in cents of EUR.
const BOND_CENTS: u64 = 100_000;
/// How long the single-core crypto measurement runs, at most.
const CRYPTO_SECS: f64 = 1.0;
/// Latency histograms: 1 µs to 1 hour, 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;

/// What `agora bench` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N buyers repeatedly get approval (protocol 1) and post (protocol 2).
    #[value(name = "cpo-post")]
    Post,
    /// N sellers with browse sessions repeatedly fetch listings.
    #[value(name = "cpo-browse")]
    Browse,
    /// N sellers race to bind M CPOs (listing + offer, protocol 4).
    #[value(name = "cpo-bind")]
    Bind,
    /// N SPEED customers buy the demo 16-byte product in normal mode
    /// (negotiate, handshake + delivery, pay from the account).
    #[value(name = "speed-normal")]
    SpeedNormal,
    /// N SPEED customers buy it in aggressive mode (request + delivery,
    /// pay from the account).
    #[value(name = "speed-aggressive")]
    SpeedAggressive,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Post => "cpo-post",
            Scenario::Browse => "cpo-browse",
            Scenario::Bind => "cpo-bind",
            Scenario::SpeedNormal => "speed-normal",
            Scenario::SpeedAggressive => "speed-aggressive",
        }
    }

    /// The SPEED mode of a SPEED scenario.
    fn speed_mode(self) -> Option<SpeedMode> {
        match self {
            Scenario::SpeedNormal => Some(SpeedMode::Normal),
            Scenario::SpeedAggressive => Some(SpeedMode::Aggressive),
            _ => None,
        }
    }

    fn default_concurrency(self) -> usize {
        match self {
            Scenario::Bind => 64,
            _ => 16,
        }
    }

    fn default_cpos(self) -> usize {
        match self {
            Scenario::Browse => 32,
            Scenario::Bind => 2000,
            _ => 0,
        }
    }

    /// What one success is.
    fn unit(self) -> &'static str {
        match self {
            Scenario::Post => "CPOs posted",
            Scenario::Browse => "listings",
            Scenario::Bind => "binds",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchases",
        }
    }

    /// Protocol messages (HTTP requests) of one operation, at most.
    fn requests_per_op(self) -> u64 {
        match self {
            Scenario::Post => 4,
            Scenario::Browse => 1,
            Scenario::Bind => 2,
            Scenario::SpeedNormal => 3,
            Scenario::SpeedAggressive => 2,
        }
    }
}

/// `agora bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// cpo-post: approval + posting; cpo-browse: listings under browse
    /// sessions; cpo-bind: sellers race to bind M CPOs; speed-normal,
    /// speed-aggressive: SPEED purchases of the demo 16-byte product.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Concurrent buyers, sellers or customers, 1-256 (default 16; 64 for
    /// cpo-bind).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=(MAX_CONCURRENCY as i64)))]
    concurrency: Option<u16>,
    /// CPOs posted during setup (default 2000 for cpo-bind, 32 for
    /// cpo-browse; cpo-post posts as it goes).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cpos: Option<u32>,
    /// Stop after this many protocol messages (HTTP requests) in the
    /// measured phase.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Stop after this many seconds of the measured phase (setup is not
    /// counted).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// The bonding agency of this data directory that bonds the synthetic
    /// buyers and sellers (CPO scenarios).
    #[arg(long, default_value = crate::node::DEFAULT_AGENCY)]
    agency: String,
    /// cpo-browse, cpo-bind: CPOs whose listings a seller asks for in one
    /// request. 1: one request per listing (CPO_LISTING_REQUEST); 2-32: a
    /// page per request (CPO_LISTINGS_REQUEST), as a seller reading a page
    /// of the board would.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=(agora_cpo::msg::MAX_LISTINGS_PER_REQUEST as i64)))]
    page: u8,
}

// ------------------------------------------------------------ the node URL

/// `url` as a base URL if it is plain HTTP to a loopback host
/// (`127.0.0.1`, `localhost`, `[::1]`), else why not: the bench must not
/// load anyone else's node.
fn loopback_url(url: &str) -> anyhow::Result<String> {
    let refuse = |why: &str| anyhow::anyhow!("--node {url:?}: {why}");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| refuse("use http://127.0.0.1:PORT (the bench runs over loopback only)"))?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return Err(refuse("give the node's base URL, without a path"));
    }
    if authority.contains('@') {
        return Err(refuse("no user information in the URL"));
    }
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| refuse("unclosed [ in the host"))?;
        (h, after)
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':').ok_or_else(|| refuse("bad port"))?;
        if digits.parse::<u16>().is_err() {
            return Err(refuse("bad port"));
        }
    }
    let host = host.to_ascii_lowercase();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        return Err(refuse(
            "not a loopback host: the bench only loads a node on this machine \
             (127.0.0.1, localhost or [::1])",
        ));
    }
    Ok(format!("http://{authority}"))
}

// ------------------------------------------------------------ statistics

/// `count` per second over `secs` (0 when no time passed).
fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// `a / b`, or `None` when `b` is not positive.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant, valid histogram bounds")
}

/// Count, p50, p99, p99.9 and max of a latency histogram, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Percentiles {
    count: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_us": self.p50,
            "p99_us": self.p99,
            "p999_us": self.p999,
            "max_us": self.max,
        })
    }
}

/// The error kind of a node's refusal: its problem code, except that a
/// refusal because the CPO is already bound (the expected loss of a bind
/// race) is `already-bound`.
/// Whether a refusal's text says the CPO was bound already (the race the
/// cpo-bind scenario expects), rather than something else.
fn says_already_bound(why: &str) -> bool {
    why.contains("already bound")
}

fn node_error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Problem(p)
            if p.code == "refused" && p.detail.as_deref().is_some_and(says_already_bound) =>
        {
            "already-bound".into()
        }
        ClientError::Problem(p) => p.code.clone(),
        ClientError::Transport(_) => "transport".into(),
    }
}

/// Why an operation failed: the node refused or could not be reached, or
/// the client refused the node's answer, or the bench's own check of a
/// SPEED purchase failed (`kind` is the error's code in the report).
#[derive(Debug)]
enum OpError {
    Node(ClientError),
    Client(agora_core::Error),
    Check {
        kind: &'static str,
        what: &'static str,
    },
}

impl From<ClientError> for OpError {
    fn from(e: ClientError) -> OpError {
        OpError::Node(e)
    }
}

impl From<agora_core::Error> for OpError {
    fn from(e: agora_core::Error) -> OpError {
        OpError::Client(e)
    }
}

impl From<agora_core::DecodeError> for OpError {
    fn from(e: agora_core::DecodeError) -> OpError {
        OpError::Client(e.into())
    }
}

impl OpError {
    fn kind(&self) -> String {
        match self {
            OpError::Node(e) => node_error_kind(e),
            OpError::Client(e) => format!("client-{}", e.code()),
            OpError::Check { kind, .. } => (*kind).to_owned(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Node(e) => write!(f, "the node: {e}"),
            OpError::Client(e) => write!(f, "the client refused the node's answer: {e}"),
            OpError::Check { what, .. } => write!(f, "the bench's check failed: {what}"),
        }
    }
}

/// What one worker saw: requests sent, errors by kind, latency per step.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    successes: u64,
    errors: BTreeMap<String, u64>,
    /// Latency (µs) by step; a failed round trip under `<step>:error`.
    steps: BTreeMap<String, Histogram<u64>>,
}

impl Tally {
    fn record(&mut self, step: &str, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = self.steps.get_mut(step) {
            h.saturating_record(us);
        } else {
            let mut h = new_histogram();
            h.saturating_record(us);
            self.steps.insert(step.to_owned(), h);
        }
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// One timed request's outcome, under `step` or `<step>:error`.
    fn took<T, E>(&mut self, step: &str, d: Duration, r: &Result<T, E>) {
        self.requests += 1;
        match r {
            Ok(_) => self.record(step, d),
            Err(_) => self.record(&format!("{step}:error"), d),
        }
    }

    /// One timed round trip that is not a CPO message (those go through
    /// [`Timed`]): the time of `f`, under `step` or `<step>:error`.
    fn timed<T>(
        &mut self,
        step: &str,
        f: impl FnOnce() -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let t = Instant::now();
        let r = f();
        self.took(step, t.elapsed(), &r);
        r
    }
}

/// The report's name of the protocol step a CPO message starts.
fn step_name(body: &[u8]) -> &'static str {
    let tag = agora_core::wire::envelope::peek_tag(body)
        .or_else(|_| agora_cpo::session::peek(body).map(|(t, _)| t));
    match tag {
        Ok(t) if t == tags::CPO_ARBITER_REQUEST => "approval-1",
        Ok(t) if t == tags::CPO_ARBITER_RESPONSE => "approval-2",
        Ok(t) if t == tags::CPO_POST_REQUEST => "post-1",
        Ok(t) if t == tags::CPO_POST_RESPONSE => "post-2",
        Ok(t) if t == tags::CPO_BROWSE_REQUEST => "session-1",
        Ok(t) if t == tags::CPO_BROWSE_RESPONSE => "session-2",
        Ok(t) if t == tags::CPO_LISTING_REQUEST => "listing",
        Ok(t) if t == tags::CPO_LISTINGS_REQUEST => "listings",
        Ok(t) if t == tags::CPO_BIND_OFFER => "offer",
        Ok(t) if t == tags::CPO_BROWSE_END => "end-session",
        _ => "other",
    }
}

/// A CPO transport whose every protocol message is timed into a tally,
/// under the name of its step ([`step_name`]): the client flows of
/// agora-client run over it unchanged.
struct Timed<'a, C> {
    client: &'a C,
    tally: std::cell::RefCell<&'a mut Tally>,
}

impl<'a, C> Timed<'a, C> {
    fn new(client: &'a C, tally: &'a mut Tally) -> Self {
        Timed {
            client,
            tally: std::cell::RefCell::new(tally),
        }
    }
}

impl CpoTransport for Timed<'_, NodeClient> {
    fn call(&self, role: Role, body: &[u8], step: Option<StepId>) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.call(role, body, step);
        self.tally
            .borrow_mut()
            .took(step_name(body), t.elapsed(), &r);
        r
    }
    fn board(&self, q: &BoardQuery) -> Result<Vec<serde_json::Value>, ClientError> {
        self.client.board(q)
    }
    fn cpo(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.client.cpo(id)
    }
    fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        self.client.notice(id, receipt)
    }
    fn award(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.client.award(id)
    }
}

impl AsyncCpoTransport for Timed<'_, AsyncNodeClient> {
    async fn call(
        &self,
        role: Role,
        body: &[u8],
        step: Option<StepId>,
    ) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.call(role, body, step).await;
        self.tally
            .borrow_mut()
            .took(step_name(body), t.elapsed(), &r);
        r
    }
}

impl From<FlowError> for OpError {
    fn from(e: FlowError) -> OpError {
        match e {
            FlowError::Node(e) => OpError::Node(e),
            FlowError::Protocol(e) => OpError::Client(e),
        }
    }
}

fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.successes += other.successes;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, h) in other.steps {
            match self.steps.get_mut(&k) {
                // Same bounds on both sides: adding cannot fail.
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    self.steps.insert(k, h);
                }
            }
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The cryptography of one operation measured on one core: `ops`
/// operations took `client_secs` of client work and `server_secs` of
/// server work.
#[derive(Clone, Copy, Debug, PartialEq)]
struct CryptoBound {
    ops: u64,
    client_secs: f64,
    server_secs: f64,
    /// Cores of this machine (`available_parallelism`).
    cores: usize,
}

impl CryptoBound {
    fn client_us(&self) -> f64 {
        self.client_secs * 1e6 / self.ops.max(1) as f64
    }

    fn server_us(&self) -> f64 {
        self.server_secs * 1e6 / self.ops.max(1) as f64
    }

    /// Operations per second on one core: both sides' crypto, or the
    /// server's only.
    fn per_core(&self, server_only: bool) -> f64 {
        let secs = if server_only {
            self.server_secs
        } else {
            self.client_secs + self.server_secs
        };
        per_sec(self.ops, secs)
    }

    /// [`Self::per_core`] scaled to every core of this machine (linearly:
    /// the steps share nothing but the CPU).
    fn bound(&self, server_only: bool) -> f64 {
        self.per_core(server_only) * self.cores as f64
    }

    fn json(&self, throughput: f64, what: &str) -> serde_json::Value {
        serde_json::json!({
            "sides": "client+server",
            "why_both_sides": "over loopback the clients' crypto runs on the node's cores",
            "what": what,
            "ops_measured": self.ops,
            "rounds": CRYPTO_ROUNDS,
            "method": "one thread in this process after the measured phase; the fastest round",
            "client_us_per_op": self.client_us(),
            "server_us_per_op": self.server_us(),
            "per_core_per_sec": self.per_core(false),
            "cores": self.cores,
            "bound_per_sec": self.bound(false),
            "ratio": ratio(throughput, self.bound(false)),
            "server_only": {
                "per_core_per_sec": self.per_core(true),
                "bound_per_sec": self.bound(true),
                "ratio": ratio(throughput, self.bound(true)),
            },
        })
    }
}

/// The CPOs of a `cpo-bind` run whose BOUND_CPO count is not 0 or 1.
fn violations(counts: &[u32]) -> Vec<(usize, u32)> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 1)
        .map(|(i, c)| (i, *c))
        .collect()
}

/// What `cpo-bind` checks at the end.
#[derive(Debug)]
struct Invariant {
    /// CPOs bound by exactly one seller of the bench.
    bound_once: usize,
    /// CPOs nobody of the bench bound (the run stopped first).
    unbound: usize,
    /// CPOs some seller was told "already bound" although no seller of
    /// the bench holds a BOUND_CPO for it (a reply lost after the commit,
    /// or someone else bound it).
    refused_without_binder: usize,
    /// CPO ids (hex) with more than one BOUND_CPO, and how many.
    violations: Vec<(String, u32)>,
}

impl Invariant {
    fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "rule": "each CPO bound by at most one seller (BOUND_CPOs counted per CPO)",
            "cpos_bound_once": self.bound_once,
            "cpos_unbound": self.unbound,
            "cpos_already_bound_without_binder": self.refused_without_binder,
            "violations": self.violations.iter()
                .map(|(id, n)| serde_json::json!({ "id": id, "bound_cpos": n }))
                .collect::<Vec<_>>(),
        })
    }
}

// ------------------------------------------------------------ limits

/// The bounds of the measured phase, shared by its workers.
#[derive(Debug)]
struct Limits {
    budget: u64,
    duration: Duration,
    start: OnceLock<Instant>,
    sent: AtomicU64,
    halted: AtomicBool,
    stopped_by: Mutex<Option<&'static str>>,
}

impl Limits {
    fn new(budget: u64, duration: Duration) -> Limits {
        Limits {
            budget,
            duration,
            start: OnceLock::new(),
            sent: AtomicU64::new(0),
            halted: AtomicBool::new(false),
            stopped_by: Mutex::new(None),
        }
    }

    fn stop(&self, why: &'static str) {
        self.halted.store(true, Ordering::Relaxed);
        let mut s = self.stopped_by.lock().unwrap_or_else(|p| p.into_inner());
        s.get_or_insert(why);
    }

    /// Takes `n` requests from the budget, or says stop (time is up or the
    /// budget is spent).
    fn reserve(&self, n: u64) -> bool {
        if self.halted.load(Ordering::Relaxed) {
            return false;
        }
        let start = *self.start.get_or_init(Instant::now);
        if start.elapsed() >= self.duration {
            self.stop("duration");
            return false;
        }
        let before = self.sent.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.budget {
            self.sent.fetch_sub(n, Ordering::Relaxed);
            self.stop("requests");
            return false;
        }
        true
    }

    /// Gives back requests reserved and not sent.
    fn release(&self, n: u64) {
        self.sent.fetch_sub(n, Ordering::Relaxed);
    }

    fn stopped_by(&self) -> &'static str {
        self.stopped_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or("done")
    }
}

/// Runs `work` on one thread per item of `items`, all released at once;
/// returns their results and the wall time from the release to the last
/// one's end.
fn race<W: Send, R: Send>(
    items: Vec<W>,
    limits: &Limits,
    work: impl Fn(usize, W) -> R + Sync,
) -> (Vec<R>, Duration) {
    let n = items.len();
    let ready = Barrier::new(n + 1);
    let go = Barrier::new(n + 1);
    let (work, ready_ref, go_ref) = (&work, &ready, &go);
    let out: Vec<(R, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                s.spawn(move || {
                    ready_ref.wait();
                    go_ref.wait();
                    let r = work(i, item);
                    (r, Instant::now())
                })
            })
            .collect();
        ready.wait();
        let _ = limits.start.set(Instant::now());
        go.wait();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let start = limits.start.get().copied().unwrap_or_else(Instant::now);
    let end = out.iter().map(|(_, t)| *t).max().unwrap_or(start);
    (
        out.into_iter().map(|(r, _)| r).collect(),
        end.saturating_duration_since(start),
    )
}

/// Threads that drive `cpo-bind`'s sellers, each an event loop: one per
/// core of the reference machine.
const LOOPS: usize = 2;

/// Runs `work` for each of `items` as a future: the items are dealt round
/// robin to `loops` threads ([`race`] releases them at once), each driving
/// its share on a single-threaded runtime with its own HTTP client
/// (connection pool). Returns the results in the order of `items` and the
/// wall time from the release to the last one's end. Each thread makes its
/// runtime and client once released: a fraction of a millisecond of the
/// measured phase, before its first request.
///
/// A thread per worker with a blocking client (as [`race`]) sleeps while the
/// node answers and is woken for every reply: with 64 sellers on two cores
/// that was a quarter of the load tool's CPU, taken from the node under
/// test. An event loop sleeps only when none of its sellers has a reply to
/// read.
fn race_loops<'a, W: Sync, R: Send, F: std::future::Future<Output = R>>(
    items: &'a [W],
    loops: usize,
    url: &str,
    limits: &Limits,
    work: impl Fn(usize, &'a W, AsyncNodeClient) -> F + Sync,
) -> anyhow::Result<(Vec<R>, Duration)> {
    let loops = loops.clamp(1, items.len().max(1));
    let (out, wall) = race((0..loops).collect(), limits, |_, l: usize| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the event loop's runtime")?;
        let client = AsyncNodeClient::new(url)?;
        let mine = items
            .iter()
            .enumerate()
            .skip(l)
            .step_by(loops)
            .map(|(k, item)| {
                let f = work(k, item, client.clone());
                async move { (k, f.await) }
            });
        anyhow::Ok(rt.block_on(futures_util::future::join_all(mine)))
    });
    let mut all = Vec::with_capacity(items.len());
    for o in out {
        all.extend(o?);
    }
    all.sort_by_key(|(k, _)| *k);
    Ok((all.into_iter().map(|(_, r)| r).collect(), wall))
}

// ------------------------------------------------------------ parties

/// A synthetic buyer or seller: keys in memory, a bond of the agency.
struct Party {
    keys: Keys,
    bond: Vec<u8>,
}

/// What every scenario works with.
struct Env {
    url: String,
    client: NodeClient,
    agency: Agency,
    crl_uri: String,
    /// This data directory's CPO server and arbiter, as the node serves them.
    server: Peer,
    arbiter: Peer,
    /// The agencies and CRLs of this data directory (for the in-process
    /// crypto measurement).
    trust: BondTrust,
    /// How long bonds, CPOs and sessions last.
    life_secs: u64,
}

fn eur(cents: u64) -> anyhow::Result<Money> {
    Ok(Money::new(cents, Currency::new("EUR")?))
}

impl Env {
    fn load(ctx: &Ctx, a: &BenchArgs, url: String) -> anyhow::Result<Env> {
        let ks = ctx.load_keystore()?;
        let server = crate::cpo::keys(&ks, SERVER_KEY)
            .context("this data directory has no CPO server (run `agora up` on it)")?
            .peer();
        let arbiter = crate::cpo::keys(&ks, ARBITER_KEY)
            .context("this data directory has no CPO arbiter (run `agora up` on it)")?
            .peer();
        drop(ks);
        let agency = crate::agency::load_agency(ctx, &a.agency).with_context(|| {
            format!(
                "the bench bonds its buyers and sellers with agency {:?} of this data directory",
                a.agency
            )
        })?;
        let base = std::fs::read_to_string(ctx.agency_dir(&a.agency).join("crl-base"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| url.clone());
        let crl_uri = agency.crl_uri(&base);
        // The node must be the one of this data directory: its roles are
        // the ones whose keys are here.
        let client = NodeClient::new(&url)?;
        let node: serde_json::Value = client
            .get_json("/v1/node")
            .with_context(|| format!("is a node running at {url}? (agora up)"))?;
        let cpo = &node["services"]["cpo"];
        let served = |role: &str| cpo[role]["key_id"].as_str().map(str::to_owned);
        if served("server") != Some(server.id().to_string())
            || served("arbiter") != Some(arbiter.id().to_string())
        {
            bail!(
                "the node at {url} does not serve the CPO roles of data directory {} \
                 (start it with `agora up` on the same --data-dir)",
                ctx.dir().display()
            );
        }
        Ok(Env {
            url,
            client,
            agency,
            crl_uri,
            server,
            arbiter,
            trust: crate::cpo::bond_trust(ctx)?,
            life_secs: a.duration + 3600,
        })
    }

    /// A handle on the one HTTP client of the run: clones share its
    /// connection pool and its one I/O thread, where a client per worker
    /// would add a runtime thread per worker to the CPUs the node runs on.
    fn client(&self) -> anyhow::Result<NodeClient> {
        Ok(self.client.clone())
    }

    /// Progress, on stderr (also with `--json`, whose object is on stdout):
    /// the lines that start with `measuring:` and `measuring the crypto
    /// bound` mark the measured phase for tools that sample the node meanwhile.
    fn say(&self, what: &str) {
        eprintln!("{what}");
    }

    /// A fresh party bonded as `role`.
    fn party(&self, role: agora_pki::Role, rng: &mut impl Rng) -> anyhow::Result<Party> {
        let keys = fresh_keys(rng);
        let now = Timestamp::now_from_system_clock();
        let bond = self
            .agency
            .issue_bond(
                &BondParams {
                    holder: keys.sign.verifying_key(),
                    holder_x25519: keys.enc.public(),
                    amount: eur(BOND_CENTS)?,
                    roles: vec![role],
                    conditions: Conditions::default(),
                    not_before: now.minus_secs(300),
                    not_after: now.plus_secs(self.life_secs),
                    crl_uri: self.crl_uri.clone(),
                },
                rng,
            )?
            .der;
        Ok(Party { keys, bond })
    }

    fn parties(&self, role: agora_pki::Role, n: usize) -> anyhow::Result<Vec<Party>> {
        let mut rng = os_rng();
        (0..n).map(|_| self.party(role, &mut rng)).collect()
    }

    /// A first-come CPO of `bond`'s holder for `server` and `arbiter`.
    fn draft(&self, bond: &[u8], server: &Peer, arbiter: &Peer) -> anyhow::Result<CcpoDraft> {
        let now = Timestamp::now_from_system_clock();
        Ok(CcpoDraft {
            arbiter: arbiter.id(),
            server: server.id(),
            goods: GOODS.into(),
            price: eur(PRICE_CENTS)?,
            start: now.minus_secs(60),
            end: now.plus_secs(self.life_secs),
            terms: String::new(),
            bond: bond.to_vec(),
        })
    }
}

// ------------------------------------------------------------ operations

/// Protocols 1 and 2 over the node: one CPO approved and posted.
fn post_once(
    env: &Env,
    client: &NodeClient,
    bob: &Party,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<[u8; 32], OpError> {
    let draft = env
        .draft(&bob.bond, &env.server, &env.arbiter)
        .map_err(|_| OpError::Client(agora_core::Error::ApiMisuse("bad CPO draft")))?;
    let ccpo = Ccpo::new(draft, rng)?;
    let node = Timed::new(client, t);
    let (m0, c) = Approval::<FirstCome>::start(&bob.keys, rng, ccpo, "", &env.arbiter)?;
    let acceptance = agora_client::cpo::run(&node, &bob.keys, m0, c, rng, now)?;
    let (m0, c) = flow::Posting::start(&bob.keys, rng, &acceptance, &env.server)?;
    Ok(agora_client::cpo::run(&node, &bob.keys, m0, c, rng, now)?
        .cpo
        .ccpo
        .id)
}

/// Protocol 3 over the node: a browse session with K_p.
fn open_session(
    env: &Env,
    client: &NodeClient,
    pam: &Party,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<SellerSession, OpError> {
    let now = Timestamp::now_from_system_clock();
    let (m0, c) = Browse::start(
        &pam.keys,
        rng,
        pam.bond.clone(),
        now.minus_secs(60),
        now.plus_secs(env.life_secs),
        &env.server,
    )?;
    Ok(agora_client::cpo::run(
        &Timed::new(client, t),
        &pam.keys,
        m0,
        c,
        rng,
        self::now,
    )?)
}

/// The listing of `cpo` under the session (one round trip), opened and
/// checked to be of `cpo` (what `cpo-browse` measures: no offer is made).
fn listing(
    session: &SellerSession,
    client: &NodeClient,
    cpo: [u8; 32],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Listing, OpError> {
    let m = session.request_listing(rng, cpo, Mode::FirstCome);
    let r = Timed::new(client, t).call(Role::Server, &m, None)?;
    open_listing_of(session, &r.body, cpo)
}

/// Opens a sealed listing and checks it is of `cpo`.
fn open_listing_of(
    session: &SellerSession,
    sealed: &[u8],
    cpo: [u8; 32],
) -> Result<Listing, OpError> {
    let l = session.open_listing(sealed)?;
    if l.ccpo().id != cpo {
        return Err(agora_core::Error::PeerMisbehaved("the listing is of another CPO").into());
    }
    Ok(l)
}

/// The listings of a page of CPOs under the session (one round trip): per
/// CPO, in the order asked, its listing opened and checked, or the node's
/// refusal to list it.
fn listings(
    session: &SellerSession,
    client: &NodeClient,
    cpos: &[[u8; 32]],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Vec<Result<Listing, OpError>>, OpError> {
    let (m, c) = Listings::start(session, rng, cpos, Mode::FirstCome)?;
    let page = agora_client::cpo::run(&Timed::new(client, t), session, m, c, rng, now)?;
    Ok(page
        .into_iter()
        .map(|(cpo, entry)| {
            entry
                .map_err(refusal)
                .and_then(|s| open_listing_of(session, &s, cpo))
        })
        .collect())
}

/// Why the node did not list a CPO of a page.
fn refusal(why: String) -> OpError {
    if says_already_bound(&why) {
        OpError::Check {
            kind: "already-bound",
            what: "the node refused to list a bound CPO",
        }
    } else {
        OpError::Check {
            kind: "refused",
            what: "the node refused to list the CPO",
        }
    }
}

/// A bind's listing as it came, not yet opened: the bind opens and checks
/// it when (and if) she makes her offer.
type Listed = (Bind, Vec<u8>);

/// The listing of `cpo`, on an event loop.
async fn listing_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    cpo: [u8; 32],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Listed, OpError> {
    let (m, c) = Bind::start(session, rng, cpo, OFFER)?;
    let r = Timed::new(client, t)
        .call(role_of(m.to), &m.body, None)
        .await?;
    Ok((c, r.body))
}

/// The listings of a page of CPOs, on an event loop: per CPO, in the order
/// asked, the bind of her listing with its offer, or the node's refusal.
async fn listings_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    cpos: &[[u8; 32]],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Vec<Result<Listed, OpError>>, OpError> {
    let (m, c) = Listings::start(session, rng, cpos, Mode::FirstCome)?;
    let page = run_async(&Timed::new(client, t), session, m, c, rng, now).await?;
    Ok(page
        .into_iter()
        .map(|(cpo, entry)| {
            entry
                .map_err(refusal)
                .map(|sealed| (Bind::awaiting(session, cpo, OFFER), sealed))
        })
        .collect())
}

/// Opens and checks a listing (of the CPO asked for, in this session),
/// offers, and checks BOUND_CPO (signed by the server, answering this
/// offer), on an event loop.
async fn offer_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    (bind, sealed): Listed,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<(), OpError> {
    let (offer, bind) = match bind.on_reply(session, rng, now(), &sealed)? {
        Next::Send(offer, bind) => (offer, bind),
        Next::Done(_) => return Err(agora_core::Error::ApiMisuse("a listing ended a bind").into()),
    };
    run_async(&Timed::new(client, t), session, offer, bind, rng, now).await?;
    Ok(())
}

/// Posts `m` CPOs through the node, in parallel (setup, not measured).
fn post_many(env: &Env, m: usize) -> anyhow::Result<(Vec<[u8; 32]>, Duration)> {
    let posters = m.clamp(1, POSTERS);
    env.say(&format!(
        "setup: posting {m} CPOs through the node ({posters} buyers in parallel)..."
    ));
    let buyers = env.parties(agora_pki::Role::Buyer, posters)?;
    let clients = (0..posters)
        .map(|_| env.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let t0 = Instant::now();
    // A progress bar on a terminal (indicatif draws nothing otherwise):
    // posting thousands of CPOs takes seconds.
    let bar = indicatif::ProgressBar::new(m as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "setup: {bar:40} {pos}/{len} CPOs posted ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let bar = &bar;
    let results: Vec<anyhow::Result<Vec<[u8; 32]>>> = std::thread::scope(|s| {
        let hs: Vec<_> = buyers
            .iter()
            .zip(&clients)
            .map(|(bob, client)| {
                let (next, failures) = (&next, &failures);
                s.spawn(move || {
                    let mut rng = os_rng();
                    let mut ids = Vec::new();
                    let mut scratch = Tally::default();
                    while next.fetch_add(1, Ordering::Relaxed) < m {
                        loop {
                            match post_once(env, client, bob, &mut rng, &mut scratch) {
                                Ok(id) => {
                                    ids.push(id);
                                    bar.inc(1);
                                    break;
                                }
                                Err(e) => {
                                    if failures.fetch_add(1, Ordering::Relaxed)
                                        >= MAX_SETUP_FAILURES
                                    {
                                        bail!("setup: posting a CPO failed: {e}");
                                    }
                                }
                            }
                        }
                    }
                    Ok(ids)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut ids = Vec::with_capacity(m);
    for r in results {
        ids.extend(r?);
    }
    Ok((ids, t0.elapsed()))
}

/// Opens a browse session for each of `n` fresh sellers, in parallel
/// (setup, not measured); each keeps the client it opened it with.
fn open_sessions(env: &Env, n: usize) -> anyhow::Result<(Vec<Seller>, Duration)> {
    env.say(&format!(
        "setup: opening {n} browse sessions (protocol 3)..."
    ));
    let pams = env.parties(agora_pki::Role::Seller, n)?;
    let t0 = Instant::now();
    let results: Vec<anyhow::Result<Seller>> = std::thread::scope(|s| {
        let hs: Vec<_> = pams
            .into_iter()
            .map(|pam| {
                s.spawn(move || {
                    let client = env.client()?;
                    let mut rng = os_rng();
                    let mut scratch = Tally::default();
                    let mut last = None;
                    for _ in 0..3 {
                        match open_session(env, &client, &pam, &mut rng, &mut scratch) {
                            Ok(session) => return Ok(Seller { client, session }),
                            Err(e) => last = Some(e),
                        }
                    }
                    match last {
                        Some(e) => bail!("setup: opening a browse session failed: {e}"),
                        None => bail!("setup: opening a browse session failed"),
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let sellers = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((sellers, t0.elapsed()))
}

/// A seller with a live session and her own connection to the node.
struct Seller {
    client: NodeClient,
    session: SellerSession,
}

/// Ends the sessions (best effort, after the measured phase).
fn end_sessions(sellers: &[Seller]) {
    std::thread::scope(|s| {
        for seller in sellers {
            s.spawn(move || {
                let rng = &mut os_rng();
                let (m, c) = EndSession::start(&seller.session, rng);
                let _ = agora_client::cpo::run(&seller.client, &seller.session, m, c, rng, now);
            });
        }
    });
}

/// A number in `0..n` (`n` > 0); the modulo bias of a 64-bit draw is
/// far below anything a benchmark could notice.
fn below(rng: &mut impl Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

// ------------------------------------------------------------ crypto bound

/// Rounds of the crypto measurement: the fastest counts.
const CRYPTO_ROUNDS: u32 = 5;

/// Runs `op` on this thread for about `budget` (after a short warm-up),
/// in [`CRYPTO_ROUNDS`] rounds, and keeps the fastest round: a bound is
/// what the CPU can do, and on a shared machine a slower round measured
/// someone else's load too. `op` returns the client's and the server's
/// time of one operation.
fn measure(
    budget: Duration,
    mut op: impl FnMut() -> anyhow::Result<(Duration, Duration)>,
) -> anyhow::Result<CryptoBound> {
    for _ in 0..3 {
        op()?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut best: Option<CryptoBound> = None;
    for _ in 0..CRYPTO_ROUNDS {
        let (mut ops, mut client, mut server) = (0u64, Duration::ZERO, Duration::ZERO);
        let t0 = Instant::now();
        while ops < 5 || t0.elapsed() < budget / CRYPTO_ROUNDS {
            let (c, s) = op()?;
            client += c;
            server += s;
            ops += 1;
        }
        let round = CryptoBound {
            ops,
            client_secs: client.as_secs_f64(),
            server_secs: server.as_secs_f64(),
            cores,
        };
        if best.is_none_or(|b| round.per_core(false) > b.per_core(false)) {
            best = Some(round);
        }
    }
    best.context("no crypto measurement")
}

fn fresh_keys(rng: &mut impl Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

/// A seller's session and the server's channel of it, in this process,
/// with throwaway keys (the cost of the crypto does not depend on whose
/// keys they are).
struct LocalChannel {
    session: SellerSession,
    channel: Channel,
    server_sign: SigningKey,
    bond: Vec<u8>,
    ccpo: Ccpo,
}

impl LocalChannel {
    fn new(env: &Env) -> anyhow::Result<LocalChannel> {
        let mut rng = os_rng();
        let server_sign = SigningKey::generate(&mut rng);
        let server = Peer {
            sign: server_sign.verifying_key(),
            enc: X25519Secret::generate(&mut rng).public(),
        };
        let pam = env.party(agora_pki::Role::Seller, &mut rng)?;
        let bob = env.party(agora_pki::Role::Buyer, &mut rng)?;
        let k_p = BindingKey::random(&mut rng);
        let now = Timestamp::now_from_system_clock();
        let channel = Channel::new(&k_p);
        let session = SellerSession::from_parts(
            k_p,
            server,
            pam.bond.clone(),
            now,
            now.plus_secs(env.life_secs),
        );
        let ccpo = Ccpo::new(env.draft(&bob.bond, &server, &env.arbiter)?, &mut rng)?;
        Ok(LocalChannel {
            session,
            channel,
            server_sign,
            bond: pam.bond,
            ccpo,
        })
    }

    /// One listing: the seller's request, the server's opening of it and
    /// its sealed listing, the seller's opening of that.
    fn listing(&self, rng: &mut impl Rng) -> anyhow::Result<(Listing, Duration, Duration)> {
        let c0 = Instant::now();
        let m = self
            .session
            .request_listing(rng, self.ccpo.id, Mode::FirstCome);
        let c1 = Instant::now();
        let x = self
            .channel
            .open_authed::<ListingRequest>(Direction::ToServer, &m)?;
        let x0 = BindListing {
            r0: random_bytes(rng),
            ccpo: self.ccpo.clone(),
        };
        let m0 = self.channel.seal_authed(rng, Direction::ToSeller, &x0);
        let c2 = Instant::now();
        let l = self.session.open_listing(&m0)?;
        let c3 = Instant::now();
        if x.cpo != l.ccpo().id {
            bail!("the in-process listing is of another CPO");
        }
        Ok((l, (c1 - c0) + (c3 - c2), c2 - c1))
    }

    /// One bind: a listing, the seller's offer, the server's opening of it
    /// and its signed, sealed BOUND_CPO, the seller's check of that.
    fn bind(&self, rng: &mut impl Rng) -> anyhow::Result<(Duration, Duration)> {
        let (l, mut client, mut server) = self.listing(rng)?;
        let c0 = Instant::now();
        let (m1, expect) = self.session.offer(rng, &l, OFFER)?;
        let c1 = Instant::now();
        let x1 = self
            .channel
            .open_authed::<BindOffer>(Direction::ToServer, &m1)?;
        let x2 = BoundCpo {
            x1_hash: digest(&x1),
            seller_bond: self.bond.clone(),
            t: Timestamp::now_from_system_clock(),
            ccpo: l.message.ccpo,
            offer: x1.offer,
        };
        let (reply, _) = self
            .channel
            .seal_signed(rng, Direction::ToSeller, &self.server_sign, &x2);
        let c2 = Instant::now();
        expect.handle(&self.session, &reply)?;
        let c3 = Instant::now();
        client += (c1 - c0) + (c3 - c2);
        server += c2 - c1;
        Ok((client, server))
    }
}

/// Protocols 1 and 2 in this process: a buyer, an arbiter and a server
/// (throwaway keys, this data directory's agencies and CRLs, in-memory
/// ports), each step timed on the side that runs it.
fn local_post(
    env: &Env,
    bob: &Party,
    arbiter: &Arbiter,
    alice: &Peer,
    server: &Server,
    server_peer: &Peer,
    rng: &mut impl Rng,
) -> anyhow::Result<(Duration, Duration)> {
    let now = Timestamp::now_from_system_clock();
    let mut client = Duration::ZERO;
    let mut srv = Duration::ZERO;
    let mut lap = |on_client: bool, since: Instant| {
        if on_client {
            client += since.elapsed();
        } else {
            srv += since.elapsed();
        }
    };
    let t = Instant::now();
    let ccpo = Ccpo::new(env.draft(&bob.bond, server_peer, alice)?, rng)?;
    let (m0, b) = buyer::request_approval::<FirstCome>(&bob.keys, rng, ccpo, "", alice)?;
    lap(true, t);
    let t = Instant::now();
    let (m1, pending) = arbiter.handle_request::<FirstCome>(rng, now, &m0)?;
    lap(false, t);
    let t = Instant::now();
    let (m2, b) = b.handle(&bob.keys, rng, &m1)?;
    lap(true, t);
    let t = Instant::now();
    let issued = pending.handle_response(arbiter, rng, now, &m2)?;
    lap(false, t);
    let t = Instant::now();
    let acceptance = b.handle(&bob.keys, now, &issued.reply)?;
    let (m0, p) = buyer::request_post(&bob.keys, rng, &acceptance, server_peer)?;
    lap(true, t);
    let t = Instant::now();
    let (m1, pending) = server.handle_post_request(rng, now, &m0)?;
    lap(false, t);
    let t = Instant::now();
    let (m2, p) = p.handle(&bob.keys, rng, &m1)?;
    lap(true, t);
    let t = Instant::now();
    let posted = pending.handle_response(server, rng, now, &m2)?;
    lap(false, t);
    let t = Instant::now();
    p.handle(&bob.keys, &posted.reply)?;
    lap(true, t);
    Ok((client, srv))
}

/// The crypto bound of `scenario`'s operation, and what it covers.
fn crypto_bound(
    env: &Env,
    scenario: Scenario,
    budget: Duration,
) -> anyhow::Result<(CryptoBound, &'static str)> {
    let mut rng = os_rng();
    match scenario {
        Scenario::Bind => {
            let lc = LocalChannel::new(env)?;
            let b = measure(budget, || lc.bind(&mut rng))?;
            Ok((
                b,
                "per bind: the K_p channel operations of the listing request, the listing, \
                 the offer and BOUND_CPO (AEAD + HMAC) and BOUND_CPO's Ed25519 signature and \
                 its check, on an already derived channel (as benches/bind.rs); no HTTP, no storage",
            ))
        }
        Scenario::Browse => {
            let lc = LocalChannel::new(env)?;
            let b = measure(budget, || lc.listing(&mut rng).map(|(_, c, s)| (c, s)))?;
            Ok((
                b,
                "per listing: the K_p channel operations of the listing request and the \
                 listing (AEAD + HMAC), on an already derived channel; no HTTP, no storage",
            ))
        }
        Scenario::Post => {
            let (alice_keys, server_keys) = (fresh_keys(&mut rng), fresh_keys(&mut rng));
            let (alice, server_peer) = (alice_keys.peer(), server_keys.peer());
            let arbiter = Arbiter::new(alice_keys, ArbiterPolicy::default(), env.trust.clone());
            let server = Server::new(
                server_keys,
                env.trust.clone(),
                vec![alice.sign],
                std::sync::Arc::new(agora_cpo::store::MemoryCpoStore::new()),
            );
            let bob = env.party(agora_pki::Role::Buyer, &mut rng)?;
            let b = measure(budget, || {
                local_post(env, &bob, &arbiter, &alice, &server, &server_peer, &mut rng)
            })?;
            Ok((
                b,
                "per CPO: protocols 1 and 2 run in process by the buyer, the arbiter and the \
                 server on in-memory ports: HPKE envelopes, Ed25519 signatures and checks, \
                 the bond's validation, plus their CBOR; no HTTP, no storage",
            ))
        }
        Scenario::SpeedNormal | Scenario::SpeedAggressive => {
            bail!("the SPEED scenarios measure their bound with speed_crypto_bound")
        }
    }
}

// ------------------------------------------------------------ scenarios

/// What the setup did (not measured).
#[derive(Debug, Default)]
struct Setup {
    secs: f64,
    /// CPOs posted, and in how long.
    cpos: Option<(usize, f64)>,
    /// Browse sessions opened, and in how long.
    sessions: Option<(usize, f64)>,
    /// SPEED customers registered, and in how long.
    customers: Option<(usize, f64)>,
}

/// What the measured phase gave.
#[derive(Debug)]
struct Outcome {
    tally: Tally,
    wall: Duration,
    /// cpo-bind: CPOs tried (listing requests), and how many of them were
    /// already bound (at the listing or at the offer).
    attempts: Option<(u64, u64)>,
    /// cpo-bind: from the start to the last BOUND_CPO (the wall time adds
    /// the requests in flight then, or, when the limits stop the race
    /// first, nothing).
    to_last_bind: Option<Duration>,
    invariant: Option<Invariant>,
    /// speed-*: the product, the deposits and the money check.
    speed: Option<SpeedOutcome>,
}

fn merge_all(tallies: impl IntoIterator<Item = Tally>) -> Tally {
    let mut all = Tally::default();
    for t in tallies {
        all.merge(t);
    }
    all
}

/// A connection to the node per worker, opened now (setup).
fn warm_clients(env: &Env, n: usize) -> anyhow::Result<Vec<NodeClient>> {
    warm_clients_at(&env.client()?, &env.url, n)
}

/// `n` handles on `client`, the node at `url` checked up.
fn warm_clients_at(client: &NodeClient, url: &str, n: usize) -> anyhow::Result<Vec<NodeClient>> {
    (0..n)
        .map(|_| {
            let c = client.clone();
            c.get_bytes("/healthz")
                .with_context(|| format!("is the node at {url} up?"))?;
            Ok(c)
        })
        .collect()
}

fn run_post(env: &Env, n: usize, limits: &Limits) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let buyers = env.parties(agora_pki::Role::Buyer, n)?;
    let clients = warm_clients(env, n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} buyers approving and posting CPOs..."
    ));
    let per_op = Scenario::Post.requests_per_op();
    let workers: Vec<(Party, NodeClient)> = buyers.into_iter().zip(clients).collect();
    let (tallies, wall) = race(workers, limits, |_, (bob, client)| {
        let mut rng = os_rng();
        let mut t = Tally::default();
        while limits.reserve(per_op) {
            let before = t.requests;
            match post_once(env, &client, &bob, &mut rng, &mut t) {
                Ok(_) => t.successes += 1,
                Err(e) => t.error(e.kind()),
            }
            limits.release(per_op - (t.requests - before).min(per_op));
        }
        t
    });
    Ok((
        setup,
        Outcome {
            tally: merge_all(tallies),
            wall,
            attempts: None,
            to_last_bind: None,
            invariant: None,
            speed: None,
        },
    ))
}

fn run_browse(
    env: &Env,
    n: usize,
    m: usize,
    page: usize,
    limits: &Limits,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let (cpos, post_time) = post_many(env, m)?;
    let (sellers, session_time) = open_sessions(env, n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        cpos: Some((cpos.len(), post_time.as_secs_f64())),
        sessions: Some((sellers.len(), session_time.as_secs_f64())),
        customers: None,
    };
    env.say(&format!(
        "measuring: {n} sellers fetching listings of {} CPOs...",
        cpos.len()
    ));
    let cpos = &cpos;
    let (tallies, wall) = race(sellers.iter().collect(), limits, |_, seller: &Seller| {
        let mut rng = os_rng();
        let mut t = Tally::default();
        while limits.reserve(1) {
            let before = t.requests;
            if page == 1 {
                let cpo = cpos[below(&mut rng, cpos.len())];
                match listing(&seller.session, &seller.client, cpo, &mut rng, &mut t) {
                    Ok(_) => t.successes += 1,
                    Err(e) => t.error(e.kind()),
                }
            } else {
                // A page: `page` consecutive CPOs of the board from a random
                // place (distinct as long as the board has that many).
                let at = below(&mut rng, cpos.len());
                let ids: Vec<[u8; 32]> = (0..page.min(cpos.len()))
                    .map(|j| cpos[(at + j) % cpos.len()])
                    .collect();
                match listings(&seller.session, &seller.client, &ids, &mut rng, &mut t) {
                    Ok(entries) => {
                        for e in entries {
                            match e {
                                Ok(_) => t.successes += 1,
                                Err(e) => t.error(e.kind()),
                            }
                        }
                    }
                    Err(e) => t.error(e.kind()),
                }
            }
            limits.release(1 - (t.requests - before).min(1));
        }
        t
    });
    end_sessions(&sellers);
    Ok((
        setup,
        Outcome {
            tally: merge_all(tallies),
            wall,
            attempts: None,
            to_last_bind: None,
            invariant: None,
            speed: None,
        },
    ))
}

fn run_bind(
    env: &Env,
    n: usize,
    m: usize,
    page: usize,
    limits: &Limits,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let (cpos, post_time) = post_many(env, m)?;
    let (sellers, session_time) = open_sessions(env, n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        cpos: Some((cpos.len(), post_time.as_secs_f64())),
        sessions: Some((sellers.len(), session_time.as_secs_f64())),
        customers: None,
    };
    env.say(&format!(
        "measuring: {n} sellers racing to bind {} CPOs...",
        cpos.len()
    ));
    let per_op = Scenario::Bind.requests_per_op();
    let bound: Vec<AtomicU32> = cpos.iter().map(|_| AtomicU32::new(0)).collect();
    let binds = AtomicUsize::new(0);
    let refused: Vec<AtomicBool> = cpos.iter().map(|_| AtomicBool::new(false)).collect();
    let (cpos, bound_ref, refused_ref, binds) = (&cpos, &bound, &refused, &binds);
    let sellers_n = sellers.len().max(1);
    let (results, wall) = race_loops(
        &sellers,
        LOOPS,
        &env.url,
        limits,
        |k, seller, client| async move {
            let mut rng = os_rng();
            let mut t = Tally::default();
            let (mut attempts, mut already) = (0u64, 0u64);
            let mut last_bind = None;
            // Seller k starts at her own place in the board (k * M / N) and
            // walks it round; like a seller reading the live board, she skips
            // CPOs she has seen bound. Neighbours still collide where one
            // catches up with the next, so CPOs are raced for, but most
            // attempts are binds rather than refusals.
            let m = cpos.len();
            let start = k * m / sellers_n;
            let seen_closed = |i: usize| {
                bound_ref[i].load(Ordering::Relaxed) > 0 || refused_ref[i].load(Ordering::Relaxed)
            };
            // What one attempt on CPO `i` came to: bound, or why not.
            let mut settle = |i: usize, r: Result<(), OpError>, t: &mut Tally| match r {
                Ok(()) => {
                    bound_ref[i].fetch_add(1, Ordering::SeqCst);
                    t.successes += 1;
                    last_bind = Some(Instant::now());
                    // The race is over once every CPO is bound: what is
                    // left is refusals, which would only dilute binds/s.
                    if binds.fetch_add(1, Ordering::SeqCst) + 1 >= cpos.len() {
                        limits.stop("all-bound");
                    }
                }
                Err(e) => {
                    let kind = e.kind();
                    if kind == "already-bound" {
                        already += 1;
                        refused_ref[i].store(true, Ordering::Relaxed);
                    }
                    t.error(kind);
                }
            };
            let mut walk = (0..m).map(|j| (start + j) % m);
            if page == 1 {
                for i in walk {
                    if seen_closed(i) {
                        continue;
                    }
                    if !limits.reserve(per_op) {
                        break;
                    }
                    let before = t.requests;
                    attempts += 1;
                    let r = match listing_async(&seller.session, &client, cpos[i], &mut rng, &mut t)
                        .await
                    {
                        Ok(l) => offer_async(&seller.session, &client, l, &mut rng, &mut t).await,
                        Err(e) => Err(e),
                    };
                    settle(i, r, &mut t);
                    limits.release(per_op - (t.requests - before).min(per_op));
                }
            } else {
                // A page of the CPOs ahead that she has not seen bound, in one
                // request; then an offer on each listed one still not seen
                // bound (a listing she no longer needs just expires).
                'pages: loop {
                    let batch: Vec<usize> = walk
                        .by_ref()
                        .filter(|i| !seen_closed(*i))
                        .take(page)
                        .collect();
                    if batch.is_empty() || !limits.reserve(1) {
                        break;
                    }
                    let ids: Vec<[u8; 32]> = batch.iter().map(|i| cpos[*i]).collect();
                    let entries = match listings_async(
                        &seller.session,
                        &client,
                        &ids,
                        &mut rng,
                        &mut t,
                    )
                    .await
                    {
                        Ok(entries) => entries,
                        Err(e) => {
                            t.error(e.kind());
                            continue;
                        }
                    };
                    for (i, entry) in batch.into_iter().zip(entries) {
                        attempts += 1;
                        let l = match entry {
                            Ok(l) if !seen_closed(i) => l,
                            Ok(_) => continue,
                            Err(e) => {
                                settle(i, Err(e), &mut t);
                                continue;
                            }
                        };
                        if !limits.reserve(1) {
                            break 'pages;
                        }
                        let r = offer_async(&seller.session, &client, l, &mut rng, &mut t).await;
                        settle(i, r, &mut t);
                    }
                }
            }
            (t, attempts, already, last_bind)
        },
    )?;
    end_sessions(&sellers);
    let (mut attempts, mut already, mut last_bind) = (0, 0, None);
    let tally = merge_all(results.into_iter().map(|(t, a, r, l)| {
        attempts += a;
        already += r;
        last_bind = last_bind.max(l);
        t
    }));
    let start = limits.start.get().copied();
    let to_last_bind = match (start, last_bind) {
        (Some(s), Some(l)) => Some(l.saturating_duration_since(s)),
        _ => None,
    };
    let counts: Vec<u32> = bound.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let invariant = Invariant {
        bound_once: counts.iter().filter(|c| **c == 1).count(),
        unbound: counts.iter().filter(|c| **c == 0).count(),
        refused_without_binder: counts
            .iter()
            .zip(&refused)
            .filter(|(c, r)| **c == 0 && r.load(Ordering::Relaxed))
            .count(),
        violations: violations(&counts)
            .into_iter()
            .map(|(i, c)| (hex::encode(cpos[i]), c))
            .collect(),
    };
    Ok((
        setup,
        Outcome {
            tally,
            wall,
            attempts: Some((attempts, already)),
            to_last_bind,
            invariant: Some(invariant),
            speed: None,
        },
    ))
}

// ------------------------------------------------------------ SPEED

/// The node's SPEED vendor route.
const SPEED_VENDOR: &str = "/v1/speed/vendor";
/// The node's SPEED broker route.
const SPEED_BROKER: &str = "/v1/speed/broker";
/// What every SPEED purchase buys: the demo catalogue's 16-byte key at its
/// fixed price (`agora up` makes it), so that a purchase costs the
/// protocol, not the bulk encryption.
const SPEED_PRODUCT: &str = crate::speed::DEMO_KEY;
/// Largest product the bench buys: it keeps each delivery in memory.
const MAX_SPEED_PRODUCT_LEN: u64 = 64 * 1024;
/// Purchases per second one customer could make at most, to size the
/// deposits: a purchase is three round trips and some twenty public-key
/// operations, well over 100 µs on any machine. A customer whose deposit
/// runs out anyway is refused "insufficient funds", an error of the report.
const MAX_PURCHASES_PER_SEC_PER_CUSTOMER: u64 = 10_000;
/// Threads registering the customers (setup): the ledger's group commit
/// batches their writes.
const REGISTRARS: usize = 16;
/// The HPKE info string of the crypto measurement (any would do).
const BOUND_INFO: &[u8] = b"agora/bench/speed";

/// How a SPEED scenario buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpeedMode {
    /// NegotiationRequest, Handshake and delivery, PaymentOrder.
    Normal,
    /// ProductRequest and delivery, PaymentOrder.
    Aggressive,
}

impl SpeedMode {
    fn name(self) -> &'static str {
        match self {
            SpeedMode::Normal => "normal",
            SpeedMode::Aggressive => "aggressive",
        }
    }
}

fn euro() -> anyhow::Result<Currency> {
    Ok(Currency::new("EUR")?)
}

/// At most `limit` bytes of the file at `path`, or why not.
fn read_at_most(path: &std::path::Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(buf)
}

/// What the SPEED scenarios work with: the node's vendor and broker (this
/// data directory's, as the node serves them), the product, and the
/// ledger, CA and trust of the data directory.
struct SpeedEnv {
    url: String,
    client: NodeClient,
    vendor: Peer,
    broker: Peer,
    /// The vendor's account at the broker, whose balance the bench checks.
    vendor_account: AccountNumber,
    /// The product as the vendor's file holds it: every purchase must
    /// decrypt to it.
    product: Vec<u8>,
    price: Money,
    store: agora_store::Stores,
    ledger: std::sync::Arc<dyn Ledger>,
    /// The SPEED CA, which certifies the synthetic customers.
    ca: Agency,
    crl_uri: String,
    /// The SPEED CAs and CRLs of this data directory, as the node reads
    /// them (for the crypto measurement's certificate validations).
    trust: SpeedTrust,
    /// How long the customers' certificates last.
    life_secs: u64,
}

impl SpeedEnv {
    fn load(ctx: &Ctx, a: &BenchArgs, url: String, mode: SpeedMode) -> anyhow::Result<SpeedEnv> {
        let ks = ctx.load_keystore()?;
        let broker = crate::cpo::keys(&ks, crate::speed::BROKER_KEY)
            .context("this data directory has no SPEED broker (run `agora up` on it)")?
            .peer();
        let vendor = crate::cpo::keys(&ks, crate::speed::VENDOR_KEY)
            .context("this data directory has no SPEED vendor (run `agora up` on it)")?
            .peer();
        drop(ks);
        // The node must be the one of this data directory: the bench pays
        // into the ledger here and checks it.
        let client = NodeClient::new(&url)?;
        let node: serde_json::Value = client
            .get_json("/v1/node")
            .with_context(|| format!("is a node running at {url}? (agora up)"))?;
        let speed = &node["services"]["speed"];
        let served = |role: &str| speed[role]["key_id"].as_str().map(str::to_owned);
        if served("broker") != Some(broker.id().to_string())
            || served("vendor") != Some(vendor.id().to_string())
        {
            bail!(
                "the node at {url} does not serve the SPEED broker and vendor of data directory {} \
                 (start it with `agora up` on the same --data-dir)",
                ctx.dir().display()
            );
        }
        let (_, products) = crate::speed::load_catalogue(ctx)?;
        let p = products
            .iter()
            .find(|p| p.id == SPEED_PRODUCT)
            .with_context(|| {
                format!("the catalogue of this data directory has no {SPEED_PRODUCT:?} (agora up makes it)")
            })?;
        if p.rule.floor != p.rule.list {
            bail!("{SPEED_PRODUCT:?} is negotiable here: the bench buys it at a fixed price");
        }
        let product = read_at_most(&p.path, MAX_SPEED_PRODUCT_LEN)?;
        let price = p.rule.list;
        if price.currency != euro()? || price.cents == 0 {
            bail!("{SPEED_PRODUCT:?} costs {price}: the bench pays from euro accounts");
        }
        let cat: serde_json::Value = client.get_json("/v1/speed/catalogue")?;
        let listed = cat["products"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["product_id"] == SPEED_PRODUCT))
            .with_context(|| format!("the node's vendor does not sell {SPEED_PRODUCT:?}"))?;
        if listed["size"].as_u64() != Some(product.len() as u64)
            || listed["list_price"].as_str() != Some(price.to_string().as_str())
        {
            bail!(
                "the node's catalogue differs from this data directory's for {SPEED_PRODUCT:?} \
                 (restart `agora up`)"
            );
        }
        if mode == SpeedMode::Aggressive && listed["aggressive"].as_bool() != Some(true) {
            bail!("the node's vendor does not sell {SPEED_PRODUCT:?} in aggressive mode");
        }
        let store = ctx.store()?;
        let ledger = store.ledger();
        let eur = euro()?;
        let mut accounts: Vec<Account> = ledger
            .accounts_of(&vendor.id())?
            .into_iter()
            .filter(|acc| acc.kind == AccountKind::Vendor && acc.currency == eur)
            .collect();
        if accounts.len() != 1 {
            bail!(
                "the vendor has {} euro accounts at the broker; the bench checks one",
                accounts.len()
            );
        }
        let vendor_account = accounts.remove(0).number;
        let ca = crate::agency::load_agency(ctx, crate::speed::SPEED_CA)
            .context("this data directory runs no SPEED CA (it is made by `agora up`)")?;
        let crl_uri = ca.crl_uri(&crate::agency::crl_base(ctx, crate::speed::SPEED_CA));
        let trust = crate::speed::DirSpeedTrust {
            trust_path: ctx.trust_path(),
            crl_dir: ctx.crl_dir(),
        }
        .load()
        .map_err(|e| anyhow::anyhow!("the SPEED trust of this data directory: {e}"))?;
        Ok(SpeedEnv {
            url,
            client,
            vendor,
            broker,
            vendor_account,
            product,
            price,
            store,
            ledger,
            ca,
            crl_uri,
            trust,
            life_secs: a.duration + 3600,
        })
    }

    fn say(&self, what: &str) {
        eprintln!("{what}");
    }

    fn price_cents(&self) -> anyhow::Result<i64> {
        Ok(i64::try_from(self.price.cents)?)
    }

    /// Moves `cents` from one account to the others' `(account, cents)`
    /// in one journal entry.
    fn transfer(
        &self,
        from: &AccountNumber,
        to: &[(AccountNumber, i64)],
        memo: &str,
    ) -> anyhow::Result<()> {
        let sum: i64 = to.iter().map(|(_, c)| c).sum();
        let mut postings = vec![Posting {
            account: from.clone(),
            cents: -sum,
        }];
        postings.extend(to.iter().map(|(account, cents)| Posting {
            account: account.clone(),
            cents: *cents,
        }));
        self.ledger.post(&JournalEntry {
            id: random_bytes(&mut os_rng()),
            at: Timestamp::now_from_system_clock(),
            memo: memo.to_owned(),
            postings,
        })?;
        Ok(())
    }

    /// A new customer, as `agora speed register` makes one: an identity
    /// certificate of the SPEED CA, recorded in its register (so that it
    /// can be revoked) and archived, and an account at the broker with a
    /// deposit of `deposit_cents` from the cash account.
    fn register(&self, deposit_cents: i64, rng: &mut impl Rng) -> anyhow::Result<SpeedCustomer> {
        let keys = fresh_keys(rng);
        let now = Timestamp::now_from_system_clock();
        let not_after = now.plus_secs(self.life_secs);
        let short = keys.id().to_string()[..16].to_owned();
        let issued = self.ca.issue_identity(
            &IdentityParams {
                name: format!("agora bench customer {short}"),
                key: keys.sign.verifying_key(),
                role: PartyRole::Customer,
                x25519: Some(keys.enc.public()),
                not_before: now.minus_secs(60),
                not_after,
                crl_uri: self.crl_uri.clone(),
            },
            rng,
        )?;
        crate::agency::record_issued(
            &self.store,
            &self.ca,
            &issued,
            IssuedKind::Identity,
            keys.id(),
            now,
            not_after,
        )?;
        let account = AccountNumber::new(&format!("C-BENCH-{short}"))?;
        self.ledger.open_account(&Account {
            number: account.clone(),
            owner: keys.id(),
            kind: AccountKind::Customer,
            currency: euro()?,
            allow_credit: false,
        })?;
        let cash = AccountNumber::new(crate::speed::CASH_EUR)?;
        self.transfer(
            &cash,
            &[(account.clone(), deposit_cents)],
            "agora bench: deposit",
        )?;
        Ok(SpeedCustomer {
            id: Identity {
                keys,
                cert: issued.der,
            },
            account,
            deposit_cents,
        })
    }

    /// Registers `n` customers, [`REGISTRARS`] at a time (setup).
    fn register_many(
        &self,
        n: usize,
        deposit_cents: i64,
    ) -> anyhow::Result<(Vec<SpeedCustomer>, Duration)> {
        self.say(&format!(
            "setup: registering {n} SPEED customers (certificate, account, deposit of {:.2} EUR each)...",
            deposit_cents as f64 / 100.0
        ));
        let t0 = Instant::now();
        let next = AtomicUsize::new(0);
        let results: Vec<anyhow::Result<Vec<SpeedCustomer>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n.clamp(1, REGISTRARS))
                .map(|_| {
                    let next = &next;
                    s.spawn(move || {
                        let mut rng = os_rng();
                        let mut mine = Vec::new();
                        while next.fetch_add(1, Ordering::Relaxed) < n {
                            mine.push(self.register(deposit_cents, &mut rng)?);
                        }
                        Ok(mine)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut all = Vec::with_capacity(n);
        for r in results {
            all.extend(r.context("setup: registering a SPEED customer")?);
        }
        Ok((all, t0.elapsed()))
    }

    /// What is left on the customers' accounts goes back to the cash
    /// account (after the run, so that their deposits do not pile up in
    /// the books). Returns the cents moved.
    fn pay_out(&self, left: &[(AccountNumber, i64)]) -> anyhow::Result<i64> {
        let cash = AccountNumber::new(crate::speed::CASH_EUR)?;
        let mut moved = 0;
        // One entry holds at most 16 postings: 15 customers and the cash.
        for chunk in left
            .iter()
            .filter(|(_, c)| *c > 0)
            .collect::<Vec<_>>()
            .chunks(agora_speed::ledger::MAX_POSTINGS - 1)
        {
            let to: Vec<(AccountNumber, i64)> =
                chunk.iter().map(|(a, c)| (a.clone(), -c)).collect();
            self.transfer(&cash, &to, "agora bench: paid out")?;
            moved += chunk.iter().map(|(_, c)| c).sum::<i64>();
        }
        Ok(moved)
    }
}

/// A synthetic SPEED customer: keys in memory, a certificate of the SPEED
/// CA, an account at the broker.
struct SpeedCustomer {
    id: Identity,
    account: AccountNumber,
    deposit_cents: i64,
}

/// The wire lengths of one purchase's messages, for the crypto
/// measurement (signed and sealed payloads are a little shorter than the
/// messages, by their framing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WireSizes {
    /// NegotiationRequest or ProductRequest.
    request: usize,
    /// Handshake (normal mode; 0 in aggressive mode).
    handshake: usize,
    /// The signed bill.
    bill: usize,
    /// The delivery head (in aggressive mode, the bill sealed to the
    /// customer).
    head: usize,
    /// PaymentOrder.
    order: usize,
    /// PurchaseReceipt.
    receipt: usize,
}

impl WireSizes {
    /// The sizes `benches/steps.rs` measured (normal mode; the aggressive
    /// head a guess): for a run in which no purchase completed.
    const NOMINAL: WireSizes = WireSizes {
        request: 905,
        handshake: 176,
        bill: 379,
        head: 500,
        order: 1142,
        receipt: 245,
    };
}

/// An encrypted product, its length and digest, and the head that came
/// after it.
struct Delivered {
    ct: Vec<u8>,
    enc: Encrypted,
    head: Vec<u8>,
}

/// Sends `body` to the vendor and reads the whole delivery into memory,
/// hashing the encrypted product there (where `SpeedClient` writes it to a
/// file: the bench measures the node, not a disk).
fn receive(
    client: &NodeClient,
    body: &[u8],
    headers: &[(&str, String)],
) -> Result<Delivered, OpError> {
    let bad = |what| OpError::Check {
        kind: "delivery",
        what,
    };
    let r = client.post_cbor_stream(SPEED_VENDOR, body, headers)?;
    let media = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if media != DELIVERY_TYPE {
        return Err(bad("the vendor's answer is not a delivery"));
    }
    let max_ct = agora_core::crypto::stream::ciphertext_len(MAX_SPEED_PRODUCT_LEN);
    let (ct, enc, head) = agora_speed::delivery::read_delivery(r, max_ct, Vec::new())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("the delivery was cut"),
            _ => bad("the delivery breaks its framing (a length over its bound, or bytes after the head)"),
        })?;
    Ok(Delivered { ct, enc, head })
}

/// One SPEED purchase over the node, each round trip timed: the
/// customer's side of `agora_speed::customer` driven directly, as
/// `SpeedClient` drives it. `paying` is set to the order just before its
/// PaymentOrder is sent (a purchase that fails after may still be paid).
/// Returns the sizes of its messages.
fn speed_purchase(
    env: &SpeedEnv,
    mode: SpeedMode,
    client: &NodeClient,
    me: &SpeedCustomer,
    rng: &mut impl Rng,
    t: &mut Tally,
    paying: &mut Option<PaymentOrderId>,
) -> Result<WireSizes, OpError> {
    let (ready, ct, head, request, handshake) = match mode {
        SpeedMode::Normal => {
            let (state, m1) =
                customer::negotiate(rng, &me.id, &env.vendor, SPEED_PRODUCT, &AcceptFirst)?;
            let (step, step_id) = t.timed("negotiate", || {
                Ok(client.post_cbor(SPEED_VENDOR, &m1, &[])?)
            })?;
            let CustomerNext::Agreed(expect, m3) =
                state.on_step(rng, &me.id, &step, &AcceptFirst)?
            else {
                return Err(OpError::Check {
                    kind: "no-deal",
                    what: "the customer did not take the vendor's first offer",
                });
            };
            let step_id = step_id.ok_or(OpError::Check {
                kind: "no-step",
                what: "the vendor's offer named no pending step",
            })?;
            let headers = [(STEP_HEADER, hex::encode(step_id))];
            let d = t.timed("handshake+delivery", || receive(client, &m3, &headers))?;
            let ready = expect.on_delivery(&d.head)?.on_product(d.enc)?;
            (ready, d.ct, d.head, m1.len(), m3.len())
        }
        SpeedMode::Aggressive => {
            let (expect, m1) =
                customer::request(rng, &me.id, &env.vendor, SPEED_PRODUCT, env.price)?;
            let d = t.timed("request+delivery", || receive(client, &m1, &[]))?;
            let ready = expect.on_delivery(&me.id, &d.head)?.on_product(d.enc)?;
            (ready, d.ct, d.head, m1.len(), 0)
        }
    };
    if ready.price() != env.price {
        return Err(OpError::Check {
            kind: "wrong-price",
            what: "the bill is not at the catalogue's price",
        });
    }
    let bill = ready.signed_bill().len();
    // Every purchase has a fresh NID: the bench pays no bill twice.
    let (expect, po) =
        ready.pay_from_account(rng, &me.id, &env.broker, me.account.clone(), &|_| false)?;
    *paying = Some(expect.order());
    let (receipt, _) = t.timed("pay", || Ok(client.post_cbor(SPEED_BROKER, &po, &[])?))?;
    let purchase = expect.on_receipt(&receipt)?;
    let mismatch = |what| OpError::Check {
        kind: "product-mismatch",
        what,
    };
    let mut plain = Vec::with_capacity(env.product.len());
    agora_speed::product::decrypt(&purchase.key, &ct[..], &mut plain)
        .map_err(|_| mismatch("the receipt's K does not decrypt the product"))?;
    if plain != env.product {
        return Err(mismatch("the product is not the vendor's file"));
    }
    Ok(WireSizes {
        request,
        handshake,
        bill,
        head: head.len(),
        order: po.len(),
        receipt: receipt.len(),
    })
}

/// The money at the end of a SPEED run.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MoneyCheck {
    price_cents: i64,
    /// Purchases completed: receipt opened, product decrypted and checked.
    completed: u64,
    /// Purchases the broker recorded as paid that did not complete (the
    /// receipt was lost or refused, or the product did not check).
    paid_not_completed: u64,
    vendor_before: i64,
    vendor_after: i64,
    /// Deposits less what is left on the customers' accounts.
    customers_spent: i64,
    /// `Ledger::total` in euros before the setup and after the pay-out.
    total_before: i128,
    total_after: i128,
    /// Moved back from the customers to the cash account after the check.
    paid_out: i64,
}

impl MoneyCheck {
    fn vendor_gain(&self) -> i64 {
        self.vendor_after - self.vendor_before
    }

    /// What the vendor must have gained: the price times the purchases
    /// paid.
    fn expected_gain(&self) -> i128 {
        i128::from(self.price_cents)
            * i128::from(self.completed.saturating_add(self.paid_not_completed))
    }

    fn ok(&self) -> bool {
        self.total_before == 0
            && self.total_after == 0
            && i128::from(self.vendor_gain()) == self.expected_gain()
            && self.customers_spent == self.vendor_gain()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "rule": "the ledger sums to zero; the vendor gained price x purchases paid, \
                     which is what the customers spent",
            "price_cents": self.price_cents,
            "purchases_completed": self.completed,
            "paid_not_completed": self.paid_not_completed,
            "vendor_before_cents": self.vendor_before,
            "vendor_after_cents": self.vendor_after,
            "vendor_gain_cents": self.vendor_gain(),
            "expected_gain_cents": self.expected_gain().to_string(),
            "customers_spent_cents": self.customers_spent,
            "ledger_total_before_cents": self.total_before.to_string(),
            "ledger_total_after_cents": self.total_after.to_string(),
            "paid_out_cents": self.paid_out,
        })
    }
}

/// What a SPEED run reports besides the common figures.
#[derive(Debug)]
struct SpeedOutcome {
    mode: SpeedMode,
    price: Money,
    product_bytes: usize,
    deposit_cents: i64,
    money: MoneyCheck,
    /// The node's certificate validations (set with the crypto bound).
    validations: Option<Validations>,
}

/// A SPEED run: setup (customers), the measured phase, the money check.
/// Also returns the sizes of a purchase's messages and a customer's
/// certificate, for the crypto measurement.
fn run_speed(
    env: &SpeedEnv,
    mode: SpeedMode,
    scenario: Scenario,
    n: usize,
    limits: &Limits,
) -> anyhow::Result<(Setup, Outcome, WireSizes, Vec<u8>)> {
    let t0 = Instant::now();
    let eur = euro()?;
    let total_before = env.ledger.total(eur)?;
    let per_op = scenario.requests_per_op();
    // Enough for the most purchases one customer could make in the limits.
    let most = (limits.budget / per_op)
        .min(
            limits
                .duration
                .as_secs()
                .max(1)
                .saturating_mul(MAX_PURCHASES_PER_SEC_PER_CUSTOMER),
        )
        .saturating_add(1);
    let deposit = env
        .price_cents()?
        .checked_mul(i64::try_from(most)?)
        .context("deposit too large")?;
    let (customers, reg_time) = env.register_many(n, deposit)?;
    let clients = warm_clients_at(&env.client, &env.url, n)?;
    let vendor_before = env.ledger.balance(&env.vendor_account)?.cents;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        customers: Some((customers.len(), reg_time.as_secs_f64())),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} customers buying {:?} in {} mode...",
        SPEED_PRODUCT,
        mode.name()
    ));
    let workers: Vec<(&SpeedCustomer, NodeClient)> = customers.iter().zip(clients).collect();
    let (results, wall) = race(workers, limits, |_, (me, client)| {
        let mut rng = os_rng();
        let mut t = Tally::default();
        let mut unsure = Vec::new();
        let mut sizes = None;
        while limits.reserve(per_op) {
            let before = t.requests;
            let mut paying = None;
            let start = Instant::now();
            match speed_purchase(env, mode, &client, me, &mut rng, &mut t, &mut paying) {
                Ok(s) => {
                    t.successes += 1;
                    t.record("purchase", start.elapsed());
                    sizes.get_or_insert(s);
                }
                Err(e) => {
                    t.error(e.kind());
                    unsure.extend(paying);
                }
            }
            limits.release(per_op - (t.requests - before).min(per_op));
        }
        (t, unsure, sizes)
    });
    let mut unsure = Vec::new();
    let mut sizes = None;
    let tally = merge_all(results.into_iter().map(|(t, u, s)| {
        unsure.extend(u);
        sizes = sizes.or(s);
        t
    }));
    // The money: failed purchases whose payment went through count as
    // paid (their receipt was lost or refused after the broker booked).
    let mut paid_not_completed = 0u64;
    for order in &unsure {
        if env.ledger.payment(order)?.is_some() {
            paid_not_completed += 1;
        }
    }
    let vendor_after = env.ledger.balance(&env.vendor_account)?.cents;
    let mut left = Vec::with_capacity(customers.len());
    let mut customers_spent = 0i64;
    for c in &customers {
        let b = env.ledger.balance(&c.account)?.cents;
        customers_spent += c.deposit_cents - b;
        left.push((c.account.clone(), b));
    }
    let paid_out = env.pay_out(&left)?;
    let money = MoneyCheck {
        price_cents: env.price_cents()?,
        completed: tally.successes,
        paid_not_completed,
        vendor_before,
        vendor_after,
        customers_spent,
        total_before,
        total_after: env.ledger.total(eur)?,
        paid_out,
    };
    let cert = customers
        .first()
        .map(|c| c.id.cert.clone())
        .context("no customer")?;
    Ok((
        setup,
        Outcome {
            tally,
            wall,
            attempts: None,
            to_last_bind: None,
            invariant: None,
            speed: Some(SpeedOutcome {
                mode,
                price: env.price,
                product_bytes: env.product.len(),
                deposit_cents: deposit,
                money,
                validations: None,
            }),
        },
        sizes.unwrap_or(WireSizes::NOMINAL),
        cert,
    ))
}

/// The public-key operations of one purchase on one side, by the sizes of
/// what they sign, verify, seal and open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PkPlan {
    sign: Vec<usize>,
    verify: Vec<usize>,
    seal: Vec<usize>,
    open: Vec<usize>,
    /// X.509 identity validations of the customer's certificate.
    validations: usize,
}

/// The customer's and the node's (vendor and broker) public-key operations
/// of one purchase paid from an account, counted from the roles' code. In
/// normal mode, the table of `crates/agora-speed/benches/steps.rs`:
///
/// | side | Ed25519 sign | verify | HPKE seal | open | X.509 |
/// |---|---|---|---|---|---|
/// | customer | request, Handshake, order | bill, receipt | request, order | | |
/// | node | bill, receipt | request, Handshake, order, bill | bill secret | request, order, bill secret | 2 |
///
/// Aggressive mode has no Handshake; the vendor signs the bill and seals
/// it, signed again, to the customer (`envelope::seal`), who opens it:
///
/// | side | Ed25519 sign | verify | HPKE seal | open | X.509 |
/// |---|---|---|---|---|---|
/// | customer | request, order | sealed bill, receipt | request, order | sealed bill | |
/// | node | bill, sealed bill, receipt | request, order, bill | bill secret, sealed bill | request, order, bill secret | 2 |
fn pk_plans(mode: SpeedMode, s: &WireSizes, secret: usize) -> (PkPlan, PkPlan) {
    match mode {
        SpeedMode::Normal => (
            PkPlan {
                sign: vec![s.request, s.handshake, s.order],
                verify: vec![s.bill, s.receipt],
                seal: vec![s.request, s.order],
                open: vec![],
                validations: 0,
            },
            PkPlan {
                sign: vec![s.bill, s.receipt],
                verify: vec![s.request, s.handshake, s.order, s.bill],
                seal: vec![secret],
                open: vec![s.request, s.order, secret],
                validations: 2,
            },
        ),
        SpeedMode::Aggressive => (
            PkPlan {
                sign: vec![s.request, s.order],
                verify: vec![s.head, s.receipt],
                seal: vec![s.request, s.order],
                open: vec![s.head],
                validations: 0,
            },
            PkPlan {
                sign: vec![s.bill, s.head, s.receipt],
                verify: vec![s.request, s.order, s.bill],
                seal: vec![secret, s.head],
                open: vec![s.request, s.order, secret],
                validations: 2,
            },
        ),
    }
}

/// Throwaway keys and one customer's certificate, with the data
/// directory's SPEED trust (the cost does not depend on whose keys).
struct PkKeys {
    sign: SigningKey,
    verify: VerifyingKey,
    enc: X25519Secret,
    enc_pub: X25519Public,
    trust: SpeedTrust,
    cert: Vec<u8>,
}

/// A [`PkPlan`]'s inputs, made ready: messages to sign, signed messages to
/// verify, plaintexts to seal, ciphertexts to open.
struct PkWork {
    sign: Vec<Vec<u8>>,
    verify: Vec<(Vec<u8>, Signature)>,
    seal: Vec<Vec<u8>>,
    open: Vec<(Encapped, Vec<u8>)>,
    validations: usize,
}

impl PkWork {
    fn new(plan: &PkPlan, k: &PkKeys, rng: &mut impl Rng) -> anyhow::Result<PkWork> {
        let msg = |n: usize| vec![0x53u8; n];
        Ok(PkWork {
            sign: plan.sign.iter().map(|&n| msg(n)).collect(),
            verify: plan
                .verify
                .iter()
                .map(|&n| {
                    let m = msg(n);
                    let sig = k.sign.sign(&m);
                    (m, sig)
                })
                .collect(),
            seal: plan.seal.iter().map(|&n| msg(n)).collect(),
            open: plan
                .open
                .iter()
                .map(|&n| hpke::seal(rng, &k.enc_pub, BOUND_INFO, b"", &msg(n)))
                .collect::<Result<_, _>>()?,
            validations: plan.validations,
        })
    }

    /// Runs the operations once; their time.
    fn run(&self, k: &PkKeys, rng: &mut impl Rng, now: Timestamp) -> anyhow::Result<Duration> {
        use std::hint::black_box;
        let t = Instant::now();
        for m in &self.sign {
            black_box(k.sign.sign(m));
        }
        for (m, sig) in &self.verify {
            k.verify.verify(m, sig)?;
        }
        for p in &self.seal {
            black_box(hpke::seal(rng, &k.enc_pub, BOUND_INFO, b"", p)?);
        }
        for (enc, ct) in &self.open {
            black_box(hpke::open(&k.enc, enc, BOUND_INFO, b"", ct)?);
        }
        for _ in 0..self.validations {
            black_box(k.trust.identity(&k.cert, now, PartyRole::Customer)?);
        }
        Ok(t.elapsed())
    }
}

const SPEED_NORMAL_BOUND: &str =
    "per purchase: the public-key operations of one normal-mode purchase paid from an account, \
     customer and node (vendor + broker): 5 Ed25519 signatures, 6 verifications, 3 HPKE seals, \
     3 opens (counted as in benches/steps.rs), at the wire sizes of this run's messages, plus the \
     X.509 identity validations the node made in this run against this data directory's SPEED \
     CA and CRL (2 per customer and trust reload, amortized: the node remembers the \
     certificates it validated); no HTTP, no storage, no CBOR, no symmetric crypto";
const SPEED_AGGRESSIVE_BOUND: &str =
    "per purchase: the public-key operations of one aggressive-mode purchase paid from an \
     account, customer and node (vendor + broker): 5 Ed25519 signatures, 5 verifications, \
     4 HPKE seals, 4 opens, at the wire sizes of this run's messages, plus the X.509 identity \
     validations the node made in this run against this data directory's SPEED CA and CRL \
     (2 per customer and trust reload, amortized: the node remembers the certificates it \
     validated); no HTTP, no storage, no CBOR, no symmetric crypto";

/// How often the node reloads its trust (`agora up`'s housekeeping
/// period), and with it starts a fresh cache of validated certificates:
/// each customer's certificate is validated again (twice, vendor and
/// broker) after each reload.
const NODE_TRUST_RELOAD_SECS: f64 = 30.0;

/// The node's certificate validations in a SPEED run: what one costs, and
/// how many fell to a purchase.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Validations {
    /// One X.509 identity validation, without a cache (µs; the fastest
    /// round).
    us_each: f64,
    /// Validations per purchase completed, amortized over the run.
    per_purchase: f64,
}

impl Validations {
    /// `customers` each validated twice per trust-reload period begun in
    /// `wall`, over `purchases` purchases (all the protocol's two when none
    /// completed).
    fn amortized(customers: usize, purchases: u64, wall: Duration) -> f64 {
        if purchases == 0 {
            return 2.0;
        }
        let periods = (wall.as_secs_f64() / NODE_TRUST_RELOAD_SECS).floor() + 1.0;
        (2.0 * customers as f64 * periods / purchases as f64).min(2.0)
    }
}

/// The crypto bound of a SPEED purchase: its public-key operations on both
/// sides, run back to back in this process, and the node's certificate
/// validations of the run, amortized per purchase (`validations_per_purchase`,
/// see [`Validations::amortized`]), each timed on an uncached trust.
fn speed_crypto_bound(
    env: &SpeedEnv,
    mode: SpeedMode,
    sizes: &WireSizes,
    cert: Vec<u8>,
    validations_per_purchase: f64,
    budget: Duration,
) -> anyhow::Result<(CryptoBound, &'static str, Validations)> {
    let mut rng = os_rng();
    let enc = X25519Secret::generate(&mut rng);
    let sign = SigningKey::generate(&mut rng);
    let keys = PkKeys {
        verify: sign.verifying_key(),
        sign,
        enc_pub: enc.public(),
        enc,
        // Without the node's cache: each validation is timed whole.
        trust: SpeedTrust::new(env.trust.cas.clone(), env.trust.crls.clone()),
        cert,
    };
    // The bill's part for the broker: {AccountNumber, K}.
    let secret = agora_core::wire::encode(&BillSecret {
        account: env.vendor_account.clone(),
        key: agora_core::crypto::Secret::new([0; 32]),
    })
    .len();
    let (customer_plan, node_plan) = pk_plans(mode, sizes, secret);
    let validate = PkPlan {
        validations: 1,
        ..PkPlan::default()
    };
    let node_plan = PkPlan {
        validations: 0,
        ..node_plan
    };
    let customer_work = PkWork::new(&customer_plan, &keys, &mut rng)?;
    let node_work = PkWork::new(&node_plan, &keys, &mut rng)?;
    let validation = PkWork::new(&validate, &keys, &mut rng)?;
    let now = Timestamp::now_from_system_clock();
    let mut bound = measure(budget * 4 / 5, || {
        let c = customer_work.run(&keys, &mut rng, now)?;
        let s = node_work.run(&keys, &mut rng, now)?;
        Ok((c, s))
    })?;
    let one = measure(budget / 5, || {
        Ok((Duration::ZERO, validation.run(&keys, &mut rng, now)?))
    })?;
    let validations = Validations {
        us_each: one.server_us(),
        per_purchase: validations_per_purchase,
    };
    bound.server_secs +=
        bound.ops as f64 * validations_per_purchase * one.server_secs / one.ops.max(1) as f64;
    Ok((
        bound,
        match mode {
            SpeedMode::Normal => SPEED_NORMAL_BOUND,
            SpeedMode::Aggressive => SPEED_AGGRESSIVE_BOUND,
        },
        validations,
    ))
}

// ------------------------------------------------------------ the report

/// Everything a run prints.
#[derive(Debug)]
struct Report {
    scenario: Scenario,
    url: String,
    concurrency: usize,
    cpos: usize,
    /// CPOs per listings request (cpo-browse, cpo-bind; 0 elsewhere).
    page: usize,
    requests_limit: u64,
    duration_limit: u64,
    stopped_by: &'static str,
    setup: Setup,
    outcome: Outcome,
    crypto: CryptoBound,
    crypto_what: &'static str,
}

impl Report {
    fn wall_secs(&self) -> f64 {
        self.outcome.wall.as_secs_f64()
    }

    /// The crypto bound (both sides) had the node validated the customer's
    /// certificate twice in every purchase, as without its cache.
    fn bound_validating_every_purchase(&self, v: &Validations) -> f64 {
        let c = &self.crypto;
        let us = c.client_us() + c.server_us() + (2.0 - v.per_purchase).max(0.0) * v.us_each;
        if us > 0.0 {
            1e6 / us * c.cores as f64
        } else {
            0.0
        }
    }

    fn throughput(&self) -> f64 {
        per_sec(self.outcome.tally.successes, self.wall_secs())
    }

    fn unit_per_sec(&self) -> String {
        match self.scenario {
            Scenario::Post => "posted CPOs/s".into(),
            Scenario::Browse => "listings/s".into(),
            Scenario::Bind => "binds/s".into(),
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchases/s".into(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let t = &self.outcome.tally;
        let wall = self.wall_secs();
        let latency: serde_json::Map<String, serde_json::Value> = t
            .steps
            .iter()
            .map(|(k, h)| (k.clone(), Percentiles::of(h).json()))
            .collect();
        let mut setup = serde_json::json!({ "secs": self.setup.secs });
        if let Some((n, secs)) = self.setup.cpos {
            setup["cpos_posted"] = n.into();
            setup["cpos_secs"] = secs.into();
            setup["cpos_per_sec"] = per_sec(n as u64, secs).into();
        }
        if let Some((n, secs)) = self.setup.sessions {
            setup["sessions_opened"] = n.into();
            setup["sessions_secs"] = secs.into();
            setup["sessions_per_sec"] = per_sec(n as u64, secs).into();
        }
        if let Some((n, secs)) = self.setup.customers {
            setup["customers_registered"] = n.into();
            setup["customers_secs"] = secs.into();
        }
        let mut v = serde_json::json!({
            "scenario": self.scenario.name(),
            "node": self.url,
            "concurrency": self.concurrency,
            "cpos": self.cpos,
            "page": self.page,
            "limits": { "requests": self.requests_limit, "duration_secs": self.duration_limit },
            "stopped_by": self.stopped_by,
            "setup": setup,
            "wall_secs": wall,
            "requests": t.requests,
            "requests_per_sec": per_sec(t.requests, wall),
            "successes": t.successes,
            "unit": self.scenario.unit(),
            "throughput": self.throughput(),
            "throughput_unit": self.unit_per_sec(),
            "errors": t.errors,
            "errors_total": t.error_count(),
            "latency": latency,
            "crypto_bound": self.crypto.json(self.throughput(), self.crypto_what),
            "invariant": self.outcome.invariant.as_ref().map(Invariant::json),
        });
        if let Some((attempts, already)) = self.outcome.attempts {
            v["attempts"] = attempts.into();
            v["attempts_per_sec"] = per_sec(attempts, wall).into();
            v["already_bound"] = already.into();
        }
        if let Some(d) = self.outcome.to_last_bind {
            let secs = d.as_secs_f64();
            v["to_last_bind_secs"] = secs.into();
            v["binds_per_sec_to_last_bind"] = per_sec(t.successes, secs).into();
        }
        if let Some(sp) = &self.outcome.speed {
            v["speed"] = serde_json::json!({
                "mode": sp.mode.name(),
                "payment": "account",
                "product_id": SPEED_PRODUCT,
                "product_bytes": sp.product_bytes,
                "price": sp.price.to_string(),
                "deposit_per_customer_cents": sp.deposit_cents,
                "products_checked": t.successes,
            });
            if let Some(val) = sp.validations {
                let every = self.bound_validating_every_purchase(&val);
                v["speed"]["certificate_validations"] = serde_json::json!({
                    "us_each": val.us_each,
                    "per_purchase": val.per_purchase,
                    "why": "the node remembers the customer certificates it validated until the \
                            CRLs' nextUpdate or a trust reload (housekeeping)",
                    "bound_per_sec_if_every_purchase_validated_twice": every,
                    "ratio_if_every_purchase_validated_twice": ratio(self.throughput(), every),
                });
            }
            v["money"] = sp.money.json();
        }
        v
    }

    fn text(&self) -> String {
        use std::fmt::Write as _;
        let t = &self.outcome.tally;
        let wall = self.wall_secs();
        let mut s = String::new();
        let who = match self.scenario {
            Scenario::Post => "buyers",
            Scenario::Browse | Scenario::Bind => "sellers",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "customers",
        };
        let _ = write!(
            s,
            "agora bench {} at {}: {} {who}",
            self.scenario.name(),
            self.url,
            self.concurrency
        );
        if self.cpos > 0 {
            let _ = write!(s, ", {} CPOs", self.cpos);
        }
        if self.page > 1 {
            let _ = write!(s, ", listings {} per request", self.page);
        }
        let mut setup = Vec::new();
        if let Some((n, secs)) = self.setup.cpos {
            setup.push(format!("{n} CPOs posted in {secs:.2} s"));
        }
        if let Some((n, secs)) = self.setup.sessions {
            setup.push(format!(
                "{n} sessions opened in {secs:.2} s ({:.1} sessions/s)",
                per_sec(n as u64, secs)
            ));
        }
        if let Some((n, secs)) = self.setup.customers {
            let each = self
                .outcome
                .speed
                .as_ref()
                .map_or(0.0, |sp| sp.deposit_cents as f64 / 100.0);
            setup.push(format!(
                "{n} customers registered in {secs:.2} s (certificate, account, {each:.2} EUR deposit each)"
            ));
        }
        if setup.is_empty() {
            setup.push("parties bonded, connections opened".into());
        }
        let _ = writeln!(
            s,
            "\n  setup        {}; {:.2} s, not measured",
            setup.join("; "),
            self.setup.secs
        );
        let _ = writeln!(
            s,
            "  wall time    {wall:.3} s (stopped by: {}; limits {} requests, {} s)",
            self.stopped_by, self.requests_limit, self.duration_limit
        );
        let _ = writeln!(
            s,
            "  requests     {} ({:.1}/s)",
            t.requests,
            per_sec(t.requests, wall)
        );
        let _ = writeln!(s, "  successes    {} {}", t.successes, self.scenario.unit());
        let _ = writeln!(
            s,
            "  throughput   {:.1} {}",
            self.throughput(),
            self.unit_per_sec()
        );
        if let Some((attempts, already)) = self.outcome.attempts {
            let _ = writeln!(
                s,
                "  attempts     {attempts} ({:.1}/s); already bound {already}",
                per_sec(attempts, wall)
            );
        }
        if let Some(d) = self.outcome.to_last_bind {
            let _ = writeln!(
                s,
                "  last bind    at {:.3} s ({:.1} binds/s up to it)",
                d.as_secs_f64(),
                per_sec(t.successes, d.as_secs_f64())
            );
        }
        if t.errors.is_empty() {
            let _ = writeln!(s, "  errors       none");
        } else {
            let list: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(s, "  errors       {}", list.join(", "));
        }
        let _ = writeln!(
            s,
            "  latency µs   {:<18} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "step", "count", "p50", "p99", "p99.9", "max"
        );
        for (k, h) in &t.steps {
            let p = Percentiles::of(h);
            let _ = writeln!(
                s,
                "               {k:<18} {:>8} {:>8} {:>8} {:>8} {:>8}",
                p.count, p.p50, p.p99, p.p999, p.max
            );
        }
        let c = &self.crypto;
        let one = match self.scenario {
            Scenario::Post => "CPO",
            Scenario::Browse => "listing",
            Scenario::Bind => "bind",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchase",
        };
        let fmt_ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.3}"));
        let _ = writeln!(
            s,
            "  crypto bound client+server (the clients share the node's cores): {:.1} µs per {one} \
             (client {:.1}, server {:.1}),\n               {:.0}/s on one core x {} cores = {:.0}/s; \
             throughput / bound = {}",
            c.client_us() + c.server_us(),
            c.client_us(),
            c.server_us(),
            c.per_core(false),
            c.cores,
            c.bound(false),
            fmt_ratio(ratio(self.throughput(), c.bound(false)))
        );
        let _ = writeln!(
            s,
            "               server only: {:.0}/s on one core x {} = {:.0}/s; throughput / bound = {}",
            c.per_core(true),
            c.cores,
            c.bound(true),
            fmt_ratio(ratio(self.throughput(), c.bound(true)))
        );
        let _ = writeln!(s, "               ({})", self.crypto_what);
        if let Some(sp) = &self.outcome.speed {
            let m = &sp.money;
            let _ = writeln!(
                s,
                "  product      {SPEED_PRODUCT:?}, {} bytes at {}, {} mode, paid from the account; \
                 {} products decrypted and checked",
                sp.product_bytes,
                sp.price,
                sp.mode.name(),
                t.successes
            );
            if let Some(val) = sp.validations {
                let every = self.bound_validating_every_purchase(&val);
                let _ = writeln!(
                    s,
                    "  certificates the node validated {:.4} per purchase ({:.1} µs each, in the bound: it \
                     remembers validated certificates);\n               validating twice in every \
                     purchase would put the bound at {every:.0}/s (throughput / bound = {})",
                    val.per_purchase,
                    val.us_each,
                    fmt_ratio(ratio(self.throughput(), every))
                );
            }
            let _ = writeln!(
                s,
                "  money        {}: vendor +{:.2} EUR for {} purchases paid at {} (expected +{:.2} EUR; \
                 {} completed, {} paid without completing); customers spent {:.2} EUR;\n               \
                 ledger total {} before, {} after; {:.2} EUR left on the customers' accounts went \
                 back to the cash account",
                if m.ok() { "ok" } else { "VIOLATED" },
                m.vendor_gain() as f64 / 100.0,
                m.completed + m.paid_not_completed,
                sp.price,
                m.expected_gain() as f64 / 100.0,
                m.completed,
                m.paid_not_completed,
                m.customers_spent as f64 / 100.0,
                m.total_before,
                m.total_after,
                m.paid_out as f64 / 100.0
            );
        }
        if let Some(inv) = &self.outcome.invariant {
            if inv.ok() {
                let _ = write!(
                    s,
                    "  invariant    ok: {} CPOs bound by exactly one seller, {} unbound, none twice",
                    inv.bound_once, inv.unbound
                );
            } else {
                let _ = write!(
                    s,
                    "  invariant    VIOLATED: {} CPOs bound more than once",
                    inv.violations.len()
                );
            }
            if inv.refused_without_binder > 0 {
                let _ = write!(
                    s,
                    "\n               {} CPOs refused as already bound with no BOUND_CPO in the bench \
                     (a reply lost after the commit?)",
                    inv.refused_without_binder
                );
            }
        }
        s.trim_end().to_owned()
    }
}

/// `agora bench`.
pub fn run(ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<()> {
    // Refuse a remote node before anything else (no keystore, no request).
    let url = loopback_url(ctx.node.as_deref().unwrap_or(DEFAULT_NODE))?;
    let n = a
        .concurrency
        .map_or(a.scenario.default_concurrency(), usize::from)
        .clamp(1, usize::from(MAX_CONCURRENCY));
    let m = match a.scenario {
        Scenario::Browse | Scenario::Bind => a
            .cpos
            .map_or(a.scenario.default_cpos(), |c| c as usize)
            .max(1),
        _ => 0,
    };
    let limits = Limits::new(a.requests, Duration::from_secs(a.duration));
    let budget = Duration::from_secs_f64(CRYPTO_SECS.min(a.duration as f64 / 2.0));
    let (url, setup, outcome, (crypto, crypto_what)) = match a.scenario.speed_mode() {
        Some(mode) => {
            let env = SpeedEnv::load(ctx, a, url, mode)?;
            let (setup, mut outcome, sizes, cert) = run_speed(&env, mode, a.scenario, n, &limits)?;
            env.say("measuring the crypto bound (in this process, one core)...");
            let per_purchase = Validations::amortized(n, outcome.tally.successes, outcome.wall);
            let (bound, what, validations) =
                speed_crypto_bound(&env, mode, &sizes, cert, per_purchase, budget)?;
            if let Some(sp) = outcome.speed.as_mut() {
                sp.validations = Some(validations);
            }
            (env.url, setup, outcome, (bound, what))
        }
        None => {
            let env = Env::load(ctx, a, url)?;
            let (setup, outcome) = match a.scenario {
                Scenario::Post => run_post(&env, n, &limits)?,
                Scenario::Browse => run_browse(&env, n, m, usize::from(a.page), &limits)?,
                _ => run_bind(&env, n, m, usize::from(a.page), &limits)?,
            };
            env.say("measuring the crypto bound (in this process, one core)...");
            let bound = crypto_bound(&env, a.scenario, budget)?;
            (env.url, setup, outcome, bound)
        }
    };
    let report = Report {
        scenario: a.scenario,
        url,
        concurrency: n,
        cpos: m,
        page: match a.scenario {
            Scenario::Browse | Scenario::Bind => usize::from(a.page),
            _ => 0,
        },
        requests_limit: a.requests,
        duration_limit: a.duration,
        stopped_by: limits.stopped_by(),
        setup,
        outcome,
        crypto,
        crypto_what,
    };
    crate::output::emit(ctx.json, &report.text(), report.json());
    let mut broken = false;
    if let Some(inv) = report.outcome.invariant.as_ref().filter(|i| !i.ok()) {
        let _ = std::io::stdout().flush();
        eprintln!(
            "\n!!! INVARIANT VIOLATED: {} CPOs were bound by more than one seller \
             (each CPO must be bound at most once) !!!",
            inv.violations.len()
        );
        for (id, count) in &inv.violations {
            eprintln!("!!!   CPO {id}: {count} BOUND_CPOs");
        }
        broken = true;
    }
    if let Some(m) = report
        .outcome
        .speed
        .as_ref()
        .map(|sp| &sp.money)
        .filter(|m| !m.ok())
    {
        let _ = std::io::stdout().flush();
        eprintln!(
            "\n!!! MONEY CHECK FAILED: ledger total {} before and {} after (must be 0); the vendor \
             gained {} cents for {} purchases paid at {} cents (expected {}); the customers spent \
             {} cents !!!",
            m.total_before,
            m.total_after,
            m.vendor_gain(),
            m.completed + m.paid_not_completed,
            m.price_cents,
            m.expected_gain(),
            m.customers_spent
        );
        broken = true;
    }
    if broken {
        // The report is printed (one JSON object with --json): exit
        // without a second, error object.
        std::process::exit(2);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_nodes_are_loaded() {
        for ok in [
            "http://127.0.0.1:7878",
            "http://127.0.0.1:7878/",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:7878",
            "http://127.0.0.1",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            loopback_url("http://127.0.0.1:7878/").unwrap(),
            "http://127.0.0.1:7878"
        );
        for bad in [
            "http://10.0.0.1:7878",
            "http://example.com",
            "https://127.0.0.1:7878",
            "127.0.0.1:7878",
            "http://127.0.0.1.example.com:7878",
            "http://localhost.evil:80",
            "http://evil@127.0.0.1:7878",
            "http://127.0.0.1@evil.example:7878",
            "http://[::2]:7878",
            "http://::1:7878",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:7878/v1/cpo",
            "http://0.0.0.0:7878",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_sec(500, 2.0), 250.0);
        assert_eq!(per_sec(500, 0.0), 0.0);
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn the_crypto_bound_scales_with_the_cores_and_counts_both_sides() {
        // 1000 operations: 0.1 s of client work, 0.3 s of server work.
        let b = CryptoBound {
            ops: 1000,
            client_secs: 0.1,
            server_secs: 0.3,
            cores: 4,
        };
        assert!((b.client_us() - 100.0).abs() < 1e-9);
        assert!((b.server_us() - 300.0).abs() < 1e-9);
        assert!((b.per_core(false) - 2500.0).abs() < 1e-6);
        assert!((b.bound(false) - 10_000.0).abs() < 1e-6);
        assert!((b.per_core(true) - 1000.0 / 0.3).abs() < 1e-6);
        let j = b.json(2500.0, "test");
        assert_eq!(j["sides"], "client+server");
        assert!((j["ratio"].as_f64().unwrap() - 0.25).abs() < 1e-9);
        assert!(
            (j["server_only"]["ratio"].as_f64().unwrap() - 2500.0 / (4000.0 / 0.3)).abs() < 1e-9
        );
        let none = CryptoBound {
            ops: 0,
            client_secs: 0.0,
            server_secs: 0.0,
            cores: 2,
        };
        assert_eq!(none.bound(false), 0.0);
        assert!(none.json(10.0, "none")["ratio"].is_null());
    }

    #[test]
    fn percentiles_and_merging() {
        let mut a = Tally::default();
        for us in 1..=1000u64 {
            a.record("listing", Duration::from_micros(us));
        }
        a.requests = 1000;
        a.successes = 990;
        a.error("already-bound".into());
        let mut b = Tally::default();
        b.record("listing", Duration::from_micros(100_000));
        b.record("offer", Duration::from_micros(50));
        b.requests = 2;
        b.error("already-bound".into());
        b.error("replayed".into());
        a.merge(b);
        assert_eq!(a.requests, 1002);
        assert_eq!(a.successes, 990);
        assert_eq!(a.errors["already-bound"], 2);
        assert_eq!(a.error_count(), 3);
        let p = Percentiles::of(&a.steps["listing"]);
        assert_eq!(p.count, 1001);
        // 3 significant digits: within 0.1 %.
        assert!((499..=501).contains(&p.p50), "{p:?}");
        assert!((989..=992).contains(&p.p99), "{p:?}");
        assert!(p.p999 >= 999, "{p:?}");
        assert!((99_900..=100_100).contains(&p.max), "{p:?}");
        assert_eq!(Percentiles::of(&a.steps["offer"]).count, 1);
        // Sub-microsecond round trips count as 1 µs, never as nothing.
        let mut c = Tally::default();
        c.record("x", Duration::from_nanos(10));
        assert_eq!(Percentiles::of(&c.steps["x"]).p50, 1);
    }

    #[test]
    fn a_cpo_bound_twice_is_a_violation() {
        assert!(violations(&[0, 1, 1, 0]).is_empty());
        assert_eq!(violations(&[1, 2, 0, 3]), vec![(1, 2), (3, 3)]);
        let inv = Invariant {
            bound_once: 1,
            unbound: 1,
            refused_without_binder: 0,
            violations: vec![("ab".into(), 2)],
        };
        assert!(!inv.ok());
        assert_eq!(inv.json()["ok"], false);
        assert_eq!(inv.json()["violations"][0]["bound_cpos"], 2);
    }

    #[test]
    fn errors_are_classified_by_code() {
        use agora_client::transport::ProblemDoc;
        let problem = |code: &str, detail: Option<&str>| {
            ClientError::Problem(ProblemDoc {
                status: 409,
                code: code.into(),
                detail: detail.map(str::to_owned),
            })
        };
        assert_eq!(
            node_error_kind(&problem("refused", Some("this CPO is already bound"))),
            "already-bound"
        );
        assert_eq!(
            node_error_kind(&problem("refused", Some("this CPO was taken down"))),
            "refused"
        );
        assert_eq!(node_error_kind(&problem("replayed", None)), "replayed");
        assert_eq!(
            node_error_kind(&ClientError::Transport("down".into())),
            "transport"
        );
        assert_eq!(
            OpError::Client(agora_core::Error::Crypto).kind(),
            "client-crypto"
        );
    }

    #[test]
    fn speed_purchases_count_the_public_key_operations_of_the_roles() {
        let sizes = WireSizes::NOMINAL;
        let totals = |(c, n): (PkPlan, PkPlan)| {
            (
                c.sign.len() + n.sign.len(),
                c.verify.len() + n.verify.len(),
                c.seal.len() + n.seal.len(),
                c.open.len() + n.open.len(),
                c.validations + n.validations,
            )
        };
        // benches/steps.rs: 5 signatures, 6 verifications, 3 seals, 3
        // opens, 2 validations in normal mode.
        assert_eq!(
            totals(pk_plans(SpeedMode::Normal, &sizes, 80)),
            (5, 6, 3, 3, 2)
        );
        // Aggressive: no Handshake (one signature, one verification less),
        // the bill sealed to the customer (one seal, one open, one
        // signature more).
        assert_eq!(
            totals(pk_plans(SpeedMode::Aggressive, &sizes, 80)),
            (5, 5, 4, 4, 2)
        );
        // The customer validates no certificate; the node validates hers
        // twice (vendor and broker).
        for mode in [SpeedMode::Normal, SpeedMode::Aggressive] {
            let (c, n) = pk_plans(mode, &sizes, 80);
            assert_eq!((c.validations, n.validations), (0, 2));
            assert!(n.seal.contains(&80) && n.open.contains(&80), "{mode:?}");
        }
        assert_eq!(Scenario::SpeedNormal.requests_per_op(), 3);
        assert_eq!(Scenario::SpeedAggressive.requests_per_op(), 2);
        assert_eq!(Scenario::SpeedNormal.speed_mode(), Some(SpeedMode::Normal));
        assert_eq!(Scenario::Bind.speed_mode(), None);
    }

    #[test]
    fn the_nodes_certificate_validations_are_amortized_over_the_run() {
        let secs = Duration::from_secs;
        // 16 customers, each validated by vendor and broker once in a
        // 10-second run of 3,200 purchases.
        assert!((Validations::amortized(16, 3_200, secs(10)) - 0.01).abs() < 1e-12);
        // Again after each trust reload (every 30 s).
        assert!((Validations::amortized(16, 3_200, secs(45)) - 0.02).abs() < 1e-12);
        // Never more than the protocol's two per purchase.
        assert_eq!(Validations::amortized(16, 4, secs(10)), 2.0);
        assert_eq!(Validations::amortized(16, 0, secs(10)), 2.0);
    }

    #[test]
    fn the_money_check_wants_every_cent_accounted_for() {
        let good = MoneyCheck {
            price_cents: 50,
            completed: 10,
            paid_not_completed: 1,
            vendor_before: 1_000,
            vendor_after: 1_550,
            customers_spent: 550,
            total_before: 0,
            total_after: 0,
            paid_out: 12_345,
        };
        assert!(good.ok());
        assert_eq!(good.vendor_gain(), 550);
        assert_eq!(good.json()["ok"], true);
        let broken = [
            MoneyCheck {
                vendor_after: 1_600,
                ..good.clone()
            },
            MoneyCheck {
                customers_spent: 500,
                ..good.clone()
            },
            MoneyCheck {
                total_after: -50,
                ..good.clone()
            },
            MoneyCheck {
                total_before: 1,
                ..good.clone()
            },
            MoneyCheck {
                paid_not_completed: 0,
                ..good.clone()
            },
        ];
        for m in broken {
            assert!(!m.ok(), "{m:?}");
            assert_eq!(m.json()["ok"], false);
        }
    }

    #[test]
    fn limits_stop_at_the_request_budget() {
        let l = Limits::new(5, Duration::from_secs(3600));
        assert!(l.reserve(2));
        assert!(l.reserve(2));
        assert!(!l.reserve(2), "5 requests at most");
        assert_eq!(l.stopped_by(), "requests");
        let l = Limits::new(5, Duration::from_secs(3600));
        assert!(l.reserve(4));
        l.release(3);
        assert!(l.reserve(4), "released requests can be reserved again");
        let l = Limits::new(100, Duration::ZERO);
        assert!(!l.reserve(1));
        assert_eq!(l.stopped_by(), "duration");
        assert_eq!(Limits::new(1, Duration::from_secs(1)).stopped_by(), "done");
    }
}
