//! agora's load tool (`agora bench cpo-post | cpo-browse | cpo-bind |
//! speed-normal | speed-aggressive | stp-ca | stp-e2e`): it loads a node
//! started with `agora up` on the same data directory, through
//! agora-client, and prices what the node and its clients did against the
//! cryptography they performed.
//!
//! Loopback only (a node on any other host is refused), and bounded: at
//! most 256 concurrent clients, and the measured phase stops at
//! `--requests` protocol messages or `--duration` seconds, whichever comes
//! first. The buyers and sellers are synthetic: their keys live only in
//! this process, and their bonds are issued by the data directory's own
//! bonding agency (`agora-bonding`, made by `agora up`). The bonds are not
//! recorded in the agency's register: validation (arbiter and server)
//! checks the agency's signature, the dates and the agency's CRL, never the
//! register, and the CPO scenarios write nothing into the node's database
//! themselves (the SPEED scenarios must: `src/speed.rs`). They are short-lived
//! (the run's length plus an hour), and so are the CPOs and the browse
//! sessions it makes; the sessions are ended after the run.
//!
//! One module per scenario: `cpo/post.rs`, `cpo/browse.rs`, `cpo/bind.rs`,
//! `speed.rs` (both SPEED modes), `stp.rs` (the STP commit authority alone,
//! and end to end). Setup (posting, sessions, customers) is
//! not measured. Each run reports requests, successes, errors by code,
//! throughput, p50/p99/p999 latency per protocol step (a step is one HTTP
//! round trip), wall time, and the crypto bound (`bound.rs`): every
//! cryptographic operation the node and the clients performed in the
//! measured phase, as agora-core counted them, each kind priced by a
//! measurement in the same run, and the ratio of the throughput to the
//! rate that cryptography alone would allow on this machine's cores.
//!
//! The crypto bound counts both sides, client and server: over loopback
//! the clients run on the same cores as the node, so their crypto takes
//! the same CPU the node's does, and a server-only bound would promise more
//! than this machine can do while it also runs the clients. The
//! server-only bound (what `crates/agora-store/benches/bind.rs` measures:
//! the node on a machine of its own) is reported next to it.
//!
//! Clients are OS threads, one per worker, each with a handle on one
//! blocking [`NodeClient`]: the buyer and seller state machines are
//! synchronous and CPU-bound; `NodeClient` is the transport the CLI itself
//! uses, so the bench measures what a CLI user meets. `cpo-bind`'s sellers
//! are futures on event loops instead (`cpo/bind.rs`).
#![forbid(unsafe_code)]

mod bound;
mod cpo;
mod race;
mod report;
mod speed;
mod stats;
mod stp;

pub use report::Report;

use crate::bound::{CryptoBound, Window};
use crate::race::Limits;
use agora_client::datadir::names::DEFAULT_AGENCY;
use agora_client::datadir::DataDir;
use agora_client::transport::NodeClient;
use agora_core::crypto::{Rng, SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_cpo::Keys;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The node `agora up` serves, unless the caller names another.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7878";
/// Most concurrent clients.
pub const MAX_CONCURRENCY: u16 = 256;
/// Transactions `stp-ca` prepares unless told otherwise.
pub const DEFAULT_STP_TRANSACTIONS: u32 = 20_000;
/// Most transactions `stp-ca` prepares (memory: some 4 KB each).
pub const MAX_STP_TRANSACTIONS: u32 = 200_000;
/// How long the pricing of the counted operations runs, at most.
const CRYPTO_SECS: f64 = 2.0;

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
    /// The STP commit authority alone: N connections send the votes and
    /// decisions of M two-party transactions, signed before the measured
    /// phase (2 votes, 2 decisions each).
    #[value(name = "stp-ca")]
    StpCa,
    /// STP end to end: N pairs of parties commit transactions with every
    /// role live (begin, accept, started, Data each way, End, decide,
    /// outcome verified by both).
    #[value(name = "stp-e2e")]
    StpE2e,
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Post => "cpo-post",
            Scenario::Browse => "cpo-browse",
            Scenario::Bind => "cpo-bind",
            Scenario::SpeedNormal => "speed-normal",
            Scenario::SpeedAggressive => "speed-aggressive",
            Scenario::StpCa => "stp-ca",
            Scenario::StpE2e => "stp-e2e",
        }
    }

    /// The SPEED mode of a SPEED scenario.
    fn speed_mode(self) -> Option<speed::SpeedMode> {
        match self {
            Scenario::SpeedNormal => Some(speed::SpeedMode::Normal),
            Scenario::SpeedAggressive => Some(speed::SpeedMode::Aggressive),
            _ => None,
        }
    }

    fn default_concurrency(self) -> usize {
        match self {
            Scenario::Bind | Scenario::StpCa => 64,
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
            Scenario::StpCa | Scenario::StpE2e => "transactions committed",
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
            // Two votes and two decisions.
            Scenario::StpCa => 4,
            // The initiator asks again for Started and for the Outcome.
            Scenario::StpE2e => 6,
        }
    }
}

/// `agora bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// cpo-post: approval + posting; cpo-browse: listings under browse
    /// sessions; cpo-bind: sellers race to bind M CPOs; speed-normal,
    /// speed-aggressive: SPEED purchases of the demo 16-byte product;
    /// stp-ca: the STP commit authority alone; stp-e2e: STP transactions
    /// with every role live.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Concurrent buyers, sellers, customers, connections (stp-ca) or pairs
    /// of parties (stp-e2e), 1-256 (default 16; 64 for cpo-bind and stp-ca).
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
    #[arg(long, default_value = DEFAULT_AGENCY)]
    agency: String,
    /// cpo-browse, cpo-bind: CPOs whose listings a seller asks for in one
    /// request. 1: one request per listing (CPO_LISTING_REQUEST); 2-32: a
    /// page per request (CPO_LISTINGS_REQUEST), as a seller reading a page
    /// of the board would.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=(agora_cpo::msg::MAX_LISTINGS_PER_REQUEST as i64)))]
    page: u8,
    /// stp-ca: transactions whose votes and decisions are signed during
    /// setup; the measured phase ends when all are sent (or at the limits).
    /// Each holds some 4 KB of signed messages in memory.
    #[arg(long, default_value_t = DEFAULT_STP_TRANSACTIONS, value_parser = clap::value_parser!(u32).range(1..=(MAX_STP_TRANSACTIONS as i64)))]
    transactions: u32,
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

fn now() -> Timestamp {
    Timestamp::now_from_system_clock()
}

fn fresh_keys(rng: &mut impl Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

/// Threads registering synthetic parties in a setup (SPEED customers, STP
/// parties): the group commit batches their writes.
pub(crate) const REGISTRARS: usize = 16;

/// `make(i)` for every `i` in `0..n` on up to `threads` threads, in order
/// of `i`.
pub(crate) fn in_parallel<T: Send>(
    n: usize,
    threads: usize,
    make: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<(usize, T)>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n.clamp(1, threads.max(1)))
            .map(|_| {
                let (next, make) = (&next, &make);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(mine);
                        }
                        mine.push((i, make(i)?));
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// `n` handles on `client`, the node at `url` checked up (setup).
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

/// What the crypto bound covers, per unit of `scenario`.
fn bound_what(scenario: Scenario) -> String {
    format!(
        "per {}: every cryptographic operation the node (its /metrics counters) and the \
         load tool's clients (this process's counters) performed in the measured phase, \
         failed attempts included, over the {} completed; no HTTP, no storage, no CBOR, \
         no X.509 parsing",
        match scenario {
            Scenario::Post => "CPO posted",
            Scenario::Browse => "listing",
            Scenario::Bind => "bind",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchase",
            Scenario::StpCa | Scenario::StpE2e => "transaction committed",
        },
        scenario.unit()
    )
}

/// Runs `a` against the node at `node` (else [`DEFAULT_NODE`]), which must
/// serve data directory `dir`'s roles on a loopback address. Progress goes
/// to stderr: the lines that start with `measuring:` and `pricing the
/// crypto bound` mark the measured phase's start and end for tools that
/// sample the node meanwhile.
pub fn run(dir: &DataDir, node: Option<&str>, a: &BenchArgs) -> anyhow::Result<Report> {
    // Refuse a remote node before anything else (no keystore, no request).
    let url = loopback_url(node.unwrap_or(DEFAULT_NODE))?;
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
    let client = NodeClient::new(&url)?;
    let window = Window::new(&client);
    let (setup, outcome) = match a.scenario.speed_mode() {
        Some(mode) => {
            let env = speed::SpeedEnv::load(dir, a, url.clone(), mode)?;
            speed::run_speed(&env, mode, a.scenario, n, &limits, &window)?
        }
        None if matches!(a.scenario, Scenario::StpCa | Scenario::StpE2e) => {
            let env = stp::StpEnv::load(dir, a, url.clone())?;
            if a.scenario == Scenario::StpCa {
                stp::run_ca(&env, n, a.transactions as usize, &limits, &window)?
            } else {
                stp::run_e2e(&env, n, &limits, &window)?
            }
        }
        None => {
            let env = cpo::Env::load(dir, a, url.clone())?;
            match a.scenario {
                Scenario::Post => cpo::post::run_post(&env, n, &limits, &window)?,
                Scenario::Browse => {
                    cpo::browse::run_browse(&env, n, m, usize::from(a.page), &limits, &window)?
                }
                _ => cpo::bind::run_bind(&env, n, m, usize::from(a.page), &limits, &window)?,
            }
        }
    };
    eprintln!("pricing the crypto bound (the operations counted, each timed on one core)...");
    let counted = window
        .counted()
        .context("counting the measured phase's cryptographic operations")?;
    let crypto = CryptoBound::price(&counted, outcome.tally.successes, budget)?;
    Ok(Report {
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
        crypto_what: bound_what(a.scenario),
    })
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
    fn scenarios_know_their_round_trips_and_modes() {
        assert_eq!(Scenario::Bind.requests_per_op(), 2);
        assert_eq!(Scenario::SpeedNormal.requests_per_op(), 3);
        assert_eq!(Scenario::SpeedAggressive.requests_per_op(), 2);
        assert_eq!(
            Scenario::SpeedNormal.speed_mode(),
            Some(speed::SpeedMode::Normal)
        );
        assert_eq!(Scenario::Bind.speed_mode(), None);
        assert!(bound_what(Scenario::Bind).starts_with("per bind:"));
    }
}
