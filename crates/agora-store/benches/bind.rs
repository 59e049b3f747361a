#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! First-come binds per second through the real server core
//! (`agora_cpo::server::Server` on the SQLite store: board, replay cache and
//! sessions of one `SqliteStore`, WAL, `synchronous=FULL`, group commit) with 1,
//! 16 and 64 concurrent sellers, next to the crypto bound of the same
//! server steps measured in the same run.
//!
//! * `cpo_bind/server/N`: N seller threads, each with her own browse
//!   session (protocol 3, run once per seller). Measured: the server's side
//!   of a bind, that is `Server::listing` (protocol 4, step 1) and
//!   `Server::handle_bind_offer` (steps 2 -> 3: session lookup, MAC check,
//!   CRL check, signature of BOUND_CPO, durable `try_bind`), each bind on
//!   its own freshly posted first-come CPO, so every bind wins. Each seller
//!   waits for her BOUND_CPO before her next offer. Not measured: putting
//!   the CPOs on the board (directly through the board port, in bulk, before
//!   each chunk) and the sellers' own work (opening the listing, making the
//!   offer: it runs on their machines), done between the two timed phases
//!   (all listings of a chunk, then all offers).
//! * `cpo_bind/server_memory/N`: the same on the in-memory ports
//!   (`MemoryBoard`, `MemoryReplayCache`, `MemorySessions`): the server
//!   core's CPU cost without storage, to tell the two apart.
//! * `cpo_bind/crypto_bound/N`: the server-side crypto of one bind alone,
//!   in a tight loop on N threads, no storage: `Channel::seal_authed` of the
//!   listing, `Channel::open_authed` of the offer, `Channel::seal_signed` of
//!   BOUND_CPO (one Ed25519 signature), on an already derived channel.
//!
//! One element = one bind. At the end the run prints binds/s, the crypto
//! bound and their ratio per N (from the criterion samples of this run:
//! elements over measured time), the wall time per bind of the two server
//! phases (listing, bind), and of the bind phase: the CPU time of the whole
//! process and of the group-commit writer thread, the bytes written (WAL
//! frames, checkpoints), all per bind (from `/proc`, Linux only), and the
//! group-commit batches. The posts' own WAL frames are checkpointed before
//! each bind phase, untimed: copying them is posting's cost.
//!
//! `cargo bench -p agora-store --bench bind` (about two minutes);
//! smoke mode: `cargo bench -p agora-store --bench bind -- --test`.

use agora_core::crypto::{SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::arbiter::Arbiter;
use agora_cpo::msg::{BindListing, BindOffer, BoundCpo};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::ports::{BoardEntry, PostOutcome};
use agora_cpo::seller::{self, SellerSession};
use agora_cpo::server::Server;
use agora_cpo::session::{BindingKey, Channel, Direction};
use agora_cpo::store::{CpoStore, MemoryCpoStore};
use agora_cpo::{buyer, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Peer};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, Role, TrustAnchors};
use agora_store::SqliteStore;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;
const OFFER: &str = "Ship by registered mail to the buyer's intermediary.";
/// Concurrent sellers of the cases.
const SELLERS: [usize; 3] = [1, 16, 64];
/// Binds per criterion iteration (a multiple of every case's sellers).
const BINDS_PER_ITER: u64 = 64;
/// Most binds prepared at once (CPOs posted, listings outstanding): far
/// below the server's `MAX_ISSUED_LISTINGS`; a chunk also holds at most
/// `MAX_LISTINGS_PER_SESSION` listings per seller (more would retire her
/// oldest before she answers them).
const CHUNK: u64 = 4096;
/// Threads putting CPOs on the board between chunks (so that group commit
/// batches the posts; not measured).
const POSTERS: usize = 64;
/// Criterion samples per case: the ratios use the last this many calls.
const SAMPLES: usize = 10;

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

fn clone_keys(k: &Keys) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&k.sign.to_seed()),
        enc: X25519Secret::from_bytes(*k.enc.to_bytes()),
    }
}

fn bond(agency: &Agency, rng: &mut ChaCha20Rng, holder: &Keys, role: Role) -> Vec<u8> {
    agency
        .issue_bond(
            &BondParams {
                holder: holder.sign.verifying_key(),
                holder_x25519: holder.enc.public(),
                amount: eur(100_000),
                roles: vec![role],
                conditions: Conditions::default(),
                not_before: NOW.minus_secs(DAY),
                not_after: NOW.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            rng,
        )
        .unwrap()
        .der
}

/// The parties: one agency (with a current CRL), Bob the buyer, Alice the
/// arbiter and the server's keys.
struct World {
    rng: ChaCha20Rng,
    agency: Agency,
    trust: BondTrust,
    bob: Keys,
    bob_bond: Vec<u8>,
    alice: Arbiter,
    alice_peer: Peer,
    server_keys: Keys,
    server_peer: Peer,
}

/// One case: a fresh server (on a fresh store, or on the in-memory ports),
/// and N sellers with live sessions.
struct Case {
    /// The store, if the server is on SQLite.
    store: Option<SqliteStore>,
    server: Server,
    sellers: Vec<(SellerSession, Vec<u8>)>,
    /// Bob's CCPO draft; each CPO put on the board is a fresh CCPO of it.
    draft: CcpoDraft,
    /// The board entry of a CPO posted through protocols 1 and 2: the
    /// evidence blobs of the entries put on the board directly.
    template: BoardEntry,
    _dir: Option<tempfile::TempDir>,
}

impl World {
    fn new() -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(0xb1d);
        let agency = Agency::create(
            "First Bonding Agency",
            SigningKey::generate(&mut rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .unwrap();
        let mut agencies = TrustAnchors::new();
        agencies.add_der(agency.certificate_der()).unwrap();
        let crl = agency
            .issue_crl(&CrlParams {
                this_update: NOW.minus_secs(60),
                next_update: NOW.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: vec![],
            })
            .unwrap();
        let trust = BondTrust {
            agencies,
            crls: vec![crl],
        };
        let bob = keys(&mut rng);
        let bob_bond = bond(&agency, &mut rng, &bob, Role::Buyer);
        let alice_keys = keys(&mut rng);
        let alice_peer = alice_keys.peer();
        let alice = Arbiter::new(alice_keys, ArbiterPolicy::default(), trust.clone());
        let server_keys = keys(&mut rng);
        let server_peer = server_keys.peer();
        World {
            rng,
            agency,
            trust,
            bob,
            bob_bond,
            alice,
            alice_peer,
            server_keys,
            server_peer,
        }
    }

    /// A server on a fresh store (on the target's disk: fsync costs what it
    /// costs), with [`World::case`].
    fn sqlite_case(&mut self, sellers: usize) -> Case {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
        let mut case = self.case(sellers, Arc::new(store.cpo()));
        case.store = Some(store);
        case._dir = Some(dir);
        case
    }

    /// A server on the in-memory ports, with [`World::case`].
    fn memory_case(&mut self, sellers: usize) -> Case {
        self.case(sellers, Arc::new(MemoryCpoStore::new()))
    }

    /// A server on these ports; one CPO through protocols 1 and 2 (the
    /// template); `sellers` bonded sellers with a browse session each
    /// (protocol 3).
    fn case(&mut self, sellers: usize, store: Arc<dyn CpoStore>) -> Case {
        let rng = &mut self.rng;
        let server = Server::new(
            clone_keys(&self.server_keys),
            self.trust.clone(),
            vec![self.alice_peer.sign],
            store,
        );
        let draft = CcpoDraft {
            arbiter: self.alice_peer.id(),
            server: self.server_peer.id(),
            goods: "A first edition of 'Applied Cryptography', good condition".into(),
            price: eur(12_000),
            start: NOW,
            end: NOW.plus_secs(30 * DAY),
            terms: "Deliver within 5 days to the buyer's intermediary.".into(),
            bond: self.bob_bond.clone(),
        };

        let ccpo = Ccpo::new(draft.clone(), rng).unwrap();
        let (m0, b) =
            buyer::request_approval::<FirstCome>(&self.bob, rng, ccpo, "", &self.alice_peer)
                .unwrap();
        let (m1, a) = self
            .alice
            .handle_request::<FirstCome>(rng, NOW, &m0)
            .unwrap();
        let (m2, b) = b.handle(&self.bob, rng, &m1).unwrap();
        let issued = a.handle_response(&self.alice, rng, NOW, &m2).unwrap();
        let acceptance = b.handle(&self.bob, NOW, &issued.reply).unwrap();
        let (m0, b) = buyer::request_post(&self.bob, rng, &acceptance, &self.server_peer).unwrap();
        let (m1, pending) = server.handle_post_request(rng, NOW, &m0).unwrap();
        let (m2, b) = b.handle(&self.bob, rng, &m1).unwrap();
        let posted = pending.handle_response(&server, rng, NOW, &m2).unwrap();
        b.handle(&self.bob, &posted.reply).unwrap();

        let sellers = (0..sellers)
            .map(|_| {
                let keys = keys(rng);
                let bond = bond(&self.agency, rng, &keys, Role::Seller);
                let (m0, pam) = seller::request_session(
                    &keys,
                    rng,
                    bond.clone(),
                    NOW.minus_secs(60),
                    NOW.plus_secs(DAY),
                    &self.server_peer,
                )
                .unwrap();
                let (m1, pending) = server.handle_browse_request(rng, NOW, &m0).unwrap();
                let (m2, pam) = pam.handle(&keys, rng, &m1).unwrap();
                let granted = pending.handle_response(&server, rng, NOW, &m2).unwrap();
                (pam.handle(&keys, &granted.reply).unwrap(), bond)
            })
            .collect();
        Case {
            store: None,
            server,
            sellers,
            draft,
            template: posted.entry,
            _dir: None,
        }
    }
}

/// Elements and measured time of every criterion call, by bench id.
static RESULTS: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());
/// What the timed phases did, by N (over all calls, warm-up included).
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    binds: u64,
    /// Wall time of the listing phases.
    listing: Duration,
    /// Wall time of the bind phases.
    bind: Duration,
    /// Group-commit requests and commits during the bind phases.
    requests: u64,
    commits: u64,
    /// CPU time of the whole process, and of the group-commit writer
    /// thread, during the bind phases (Linux: `None` where `/proc` is not).
    bind_cpu: Option<Duration>,
    writer_cpu: Option<Duration>,
    /// Bytes the process handed to `write` during the bind phases (WAL
    /// frames and checkpoints; Linux only).
    written: Option<u64>,
}

/// `wchar` of `/proc/self/io`: bytes handed to `write` and the like.
fn proc_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()
}

/// CPU time (user + system) in `/proc/<path>/stat`; `None` off Linux. Tick
/// resolution (10 ms), so only sums over many phases mean anything.
fn proc_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// `self/task/<tid>` of this process's group-commit writer thread.
fn writer_task() -> Option<String> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let t = t.ok()?.file_name().into_string().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/self/task/{t}/comm")).ok()?;
        comm.starts_with("agora-group-com")
            .then(|| format!("self/task/{t}"))
    })
}

fn cpu_between(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    Some(b?.saturating_sub(a?))
}

fn add_cpu(total: &mut Option<Duration>, d: Option<Duration>) {
    if let Some(d) = d {
        *total = Some(total.unwrap_or_default() + d);
    }
}

/// By bench id.
static PHASES: Mutex<BTreeMap<String, Phases>> = Mutex::new(BTreeMap::new());

fn record(id: &str, elements: u64, d: Duration) {
    RESULTS
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push((elements, d));
}

/// Elements per second over the last [`SAMPLES`] calls (criterion's
/// measurement; the calls before are its warm-up).
fn rate(id: &str) -> Option<f64> {
    let r = RESULTS.lock().unwrap();
    let calls = r.get(id)?;
    let last = &calls[calls.len().saturating_sub(SAMPLES)..];
    let n: u64 = last.iter().map(|(n, _)| n).sum();
    let t: f64 = last.iter().map(|(_, d)| d.as_secs_f64()).sum();
    (t > 0.0).then(|| n as f64 / t)
}

/// Puts `count` fresh first-come CPOs on the board (not measured).
fn post_fresh(case: &Case, rng: &mut ChaCha20Rng, count: u64) -> Vec<[u8; 32]> {
    let entries: Vec<BoardEntry> = (0..count)
        .map(|_| {
            let mut e = case.template.clone();
            e.ccpo = Ccpo::new(case.draft.clone(), rng).unwrap();
            e
        })
        .collect();
    std::thread::scope(|s| {
        for i in 0..POSTERS {
            let entries = &entries;
            s.spawn(move || {
                for e in entries.iter().skip(i).step_by(POSTERS) {
                    assert_eq!(case.server.board().post(e).unwrap(), PostOutcome::Posted);
                }
            });
        }
    });
    entries.iter().map(|e| e.ccpo.id).collect()
}

/// `binds` binds by the case's sellers, in chunks; returns the time of the
/// server's phases only.
fn run_binds(id: &str, case: &Case, rng: &mut ChaCha20Rng, binds: u64) -> Duration {
    let n = case.sellers.len();
    let chunk_max = CHUNK.min((n * agora_cpo::MAX_LISTINGS_PER_SESSION) as u64);
    let mut timed = Duration::ZERO;
    let mut left = binds;
    while left > 0 {
        let chunk = left.min(chunk_max);
        left -= chunk;
        let cpos = post_fresh(case, rng, chunk);
        if let Some(store) = &case.store {
            // The posts' WAL frames are posting's cost: copied into the
            // database here, not by a checkpoint during the bind phase.
            let c = rusqlite::Connection::open(store.path()).unwrap();
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
        }
        let seeds: Vec<u64> = (0..n)
            .map(|_| rand_chacha::rand_core::RngCore::next_u64(rng))
            .collect();
        let stats = || case.store.as_ref().map(|s| s.writer().stats());
        let before = stats();
        let writer = case.store.as_ref().and_then(|_| writer_task());
        // (process CPU, writer CPU, bytes written) when the bind phase starts
        // and ends, read by one seller between barriers.
        let cpu = || {
            (
                proc_cpu("self"),
                writer.as_deref().and_then(proc_cpu),
                proc_written(),
            )
        };
        let cpu_marks = Mutex::new(Vec::new());
        let barrier = Barrier::new(n);
        let marks: Vec<[Instant; 4]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (barrier, cpos, server) = (&barrier, &cpos, &case.server);
                    let (cpu, cpu_marks) = (&cpu, &cpu_marks);
                    let (session, seed) = (&case.sellers[i].0, seeds[i]);
                    s.spawn(move || {
                        let mut rng = ChaCha20Rng::seed_from_u64(seed);
                        let sid = session.id();
                        let mine: Vec<[u8; 32]> = cpos.iter().copied().skip(i).step_by(n).collect();
                        // Phase 1 (timed): the server lists the CPOs.
                        let a0 = Instant::now();
                        barrier.wait();
                        let listings: Vec<Vec<u8>> = mine
                            .iter()
                            .map(|id| server.listing(&mut rng, NOW, &sid, id).unwrap())
                            .collect();
                        let e1 = Instant::now();
                        barrier.wait();
                        // The seller's work (not timed).
                        let offers: Vec<Vec<u8>> = listings
                            .iter()
                            .map(|l| {
                                let l = session.open_listing(l).unwrap();
                                session.offer(&mut rng, &l, OFFER).unwrap().0
                            })
                            .collect();
                        // Phase 2 (timed): the server binds, one offer of this
                        // seller at a time.
                        let a2 = Instant::now();
                        if barrier.wait().is_leader() {
                            cpu_marks.lock().unwrap().push(cpu());
                        }
                        for o in &offers {
                            black_box(server.handle_bind_offer(&mut rng, NOW, o).unwrap());
                        }
                        let e3 = Instant::now();
                        if barrier.wait().is_leader() {
                            cpu_marks.lock().unwrap().push(cpu());
                        }
                        [a0, e1, a2, e3]
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let after = stats();
        let last = |k: usize| marks.iter().map(|m| m[k]).max().unwrap();
        let (listing, bind) = (last(1) - last(0), last(3) - last(2));
        timed += listing + bind;
        let mut p = PHASES.lock().unwrap();
        let e = p.entry(id.to_owned()).or_default();
        e.binds += chunk;
        e.listing += listing;
        e.bind += bind;
        if let (Some(a), Some(b)) = (after, before) {
            e.requests += a.requests - b.requests;
            e.commits += a.commits - b.commits;
        }
        if let [(p0, w0, b0), (p1, w1, b1)] = cpu_marks.into_inner().unwrap()[..] {
            add_cpu(&mut e.bind_cpu, cpu_between(p0, p1));
            add_cpu(&mut e.writer_cpu, cpu_between(w0, w1));
            if let (Some(b0), Some(b1)) = (b0, b1) {
                *e.written.get_or_insert(0) += b1.saturating_sub(b0);
            }
        }
    }
    timed
}

/// `binds` times the server's crypto of one bind, on the case's N threads
/// (one per seller's channel); no storage, no lookups.
fn run_crypto(
    case: &Case,
    server_sign: &SigningKey,
    rng: &mut ChaCha20Rng,
    binds: u64,
) -> Duration {
    let n = case.sellers.len();
    let per_thread = binds / n as u64;
    let seeds: Vec<u64> = (0..n)
        .map(|_| rand_chacha::rand_core::RngCore::next_u64(rng))
        .collect();
    let barrier = Barrier::new(n);
    let marks: Vec<[Instant; 2]> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                let (session, bond) = (&case.sellers[i].0, &case.sellers[i].1);
                let ccpo = case.template.ccpo.clone();
                let seed = seeds[i];
                s.spawn(move || {
                    let mut rng = ChaCha20Rng::seed_from_u64(seed);
                    let ch = Channel::new(&BindingKey::from_bytes(*session.k_p().expose()));
                    let x0 = BindListing { r0: [7; 32], ccpo };
                    let l = session
                        .open_listing(&ch.seal_authed(&mut rng, Direction::ToSeller, &x0))
                        .unwrap();
                    let (offer, _) = session.offer(&mut rng, &l, OFFER).unwrap();
                    let x2 = BoundCpo {
                        x1_hash: [9; 32],
                        seller_bond: bond.clone(),
                        t: NOW,
                        ccpo: x0.ccpo.clone(),
                        offer: OFFER.into(),
                    };
                    let a0 = Instant::now();
                    barrier.wait();
                    for _ in 0..per_thread {
                        black_box(ch.seal_authed(&mut rng, Direction::ToSeller, black_box(&x0)));
                        black_box(
                            ch.open_authed::<BindOffer>(Direction::ToServer, black_box(&offer))
                                .unwrap(),
                        );
                        black_box(ch.seal_signed(
                            &mut rng,
                            Direction::ToSeller,
                            server_sign,
                            black_box(&x2),
                        ));
                    }
                    [a0, Instant::now()]
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = |k: usize| marks.iter().map(|m| m[k]).max().unwrap();
    last(1) - last(0)
}

fn bind(c: &mut Criterion) {
    let mut world = World::new();
    let server_sign = SigningKey::from_seed(&world.server_keys.sign.to_seed());
    let mut g = c.benchmark_group("cpo_bind");
    g.sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BINDS_PER_ITER));
    for n in SELLERS {
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
        let case = world.sqlite_case(n);
        g.bench_with_input(BenchmarkId::new("server", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let (id, binds) = (format!("server/{n}"), iters * BINDS_PER_ITER);
                let d = run_binds(&id, &case, &mut rng, binds);
                record(&id, binds, d);
                d
            })
        });
        {
            let case = world.memory_case(n);
            g.bench_with_input(BenchmarkId::new("server_memory", n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let (id, binds) = (format!("server_memory/{n}"), iters * BINDS_PER_ITER);
                    let d = run_binds(&id, &case, &mut rng, binds);
                    record(&id, binds, d);
                    d
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("crypto_bound", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let binds = iters * BINDS_PER_ITER;
                let d = run_crypto(&case, &server_sign, &mut rng, binds);
                record(&format!("crypto_bound/{n}"), binds, d);
                d
            })
        });
    }
    g.finish();
}

/// Prints binds/s next to the crypto bound of the same run, and where the
/// server's time goes.
fn report(_: &mut Criterion) {
    println!(
        "\nbinds/s through the server core vs. the server's crypto bound, this run \
         (sqlite: the SQLite store; memory: the in-memory ports, CPU only):"
    );
    println!(
        "| sellers | ports | binds/s | crypto bound/s | ratio | listing phase µs/bind | \
         bind phase µs/bind | its CPU µs/bind | writer's CPU µs/bind | KB written/bind | \
         binds per commit |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in SELLERS {
        let Some(cb) = rate(&format!("crypto_bound/{n}")) else {
            continue;
        };
        for (ports, id) in [
            ("sqlite", format!("server/{n}")),
            ("memory", format!("server_memory/{n}")),
        ] {
            let Some(s) = rate(&id) else {
                continue;
            };
            let p = PHASES.lock().unwrap().get(&id).copied().unwrap_or_default();
            let per_bind = |d: Duration| d.as_secs_f64() * 1e6 / p.binds.max(1) as f64;
            let batch = if p.commits == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}", p.requests as f64 / p.commits as f64)
            };
            let cpu =
                |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", per_bind(d)));
            println!(
                "| {n} | {ports} | {s:.0} | {cb:.0} | {:.3} | {:.1} | {:.1} | {} | {} | {} | {batch} |",
                s / cb,
                per_bind(p.listing),
                per_bind(p.bind),
                cpu(p.bind_cpu),
                cpu(p.writer_cpu),
                p.written.map_or("-".to_owned(), |b| format!(
                    "{:.1}",
                    b as f64 / 1e3 / p.binds.max(1) as f64
                )),
            );
        }
    }
}

criterion_group!(benches, bind, report);
criterion_main!(benches);

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
