#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! The public board's search (`SqliteBoard::search`, the `Board` port of
//! agora-cpo) over a board of 100,000 open CPOs, limit 50, by query shape:
//!
//! * `all`: no filter (`list_open`);
//! * `word_common`, `word_mid`, `word_rare`: one search word of Zipf rank
//!   0..20, 20..500, 2,000..8,000 in the board's vocabulary;
//! * `word_absent`: a word found nowhere (an empty result);
//! * `two_words`: two words of rank 0..500 (AND);
//! * `short_word`: one word of one or two letters (too short for a trigram):
//!   half of them taken from the vocabulary, half random letter pairs (many
//!   of which occur nowhere);
//! * `price`: a price range [p, 1.5 p] (about 4 % of the board);
//! * `currency`, `mode`: one currency (JPY is 3 % of the board), one mode;
//! * `price_currency_mode`: the three together (often a fraction of 1 %);
//! * `word_and_price`: a word of rank 20..500 and a price range;
//! * `page_after`: the next page after a random id, no filter or a common
//!   word or a currency (keyset paging).
//!
//! The board: 100,000 open CPOs plus 10,000 closed ones (expired, bound,
//! taken down), whose goods (2-8 words) and terms (8-40 words) are drawn
//! from a seeded vocabulary of 8,000 made-up words with a Zipf-like
//! distribution (some capitalised, some with non-ASCII letters, some
//! numbers), prices log-uniform from 1 to 10,000 in four currencies, and a
//! 640-byte bond certificate in each CCPO (so rows are as large as real
//! ones). It is built once, in a temporary directory, through the `Board`
//! port's `post` from 64 threads (so that group commit batches them), and
//! the build time is printed.
//!
//! Criterion measures each shape (cycling through pre-drawn parameters);
//! since the target is a p99, the run then times `SEARCH_BENCH_QUERIES`
//! queries per shape (default 200), the shapes interleaved, one at a time
//! on an otherwise idle store, and prints p50 / p99 / max per shape and
//! over all, the plan each query took (`SqliteBoard::search_explained`), and
//! checks a sample of the answers against `MemoryBoard` (the definition).
//!
//! `cargo bench -p agora-store --bench search` (about two minutes); smoke
//! mode (CI): `cargo bench -p agora-store --bench search -- --test`, which
//! builds a board of 20,000 open CPOs instead (about 5 s) and runs 20
//! queries per shape. Other knobs: `SEARCH_BENCH_DIR=<dir>` keeps the
//! database there and reuses it on the next run (to iterate on queries, or
//! to time a migration); `SEARCH_BENCH_SHAPES=a,b` runs only those shapes;
//! `SEARCH_BENCH_SLOW=1` prints every query slower than 15 ms.

use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_cpo::ports::{Binding, Board, BoardEntry, ListFilter, MemoryBoard, PostOutcome};
use agora_cpo::{Ccpo, CcpoDraft, Mode};
use agora_store::SqliteStore;
use criterion::{black_box, Criterion};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;
const LIMIT: usize = 50;
/// Open CPOs on the board (full run, smoke run).
const OPEN: usize = 100_000;
const OPEN_SMOKE: usize = 20_000;
/// Closed CPOs per 100 open ones: expired, bound, taken down.
const CLOSED_PER_100: usize = 10;
const VOCAB_LEN: usize = 8_000;
const CURRENCIES: [(&str, u64); 4] = [("EUR", 60), ("USD", 30), ("GBP", 7), ("JPY", 3)];

fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    usize::try_from(rng.next_u64() % u64::try_from(n).unwrap()).unwrap()
}

fn chance(rng: &mut ChaCha20Rng, percent: u64) -> bool {
    rng.next_u64() % 100 < percent
}

/// The vocabulary, most frequent first, and its cumulative Zipf weights.
struct Vocab {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Vocab {
    fn new(rng: &mut ChaCha20Rng) -> Vocab {
        const ONSETS: &[&str] = &[
            "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
            "z", "br", "ch", "cr", "dr", "fl", "gr", "pl", "pr", "qu", "sh", "st", "th", "tr", "x",
            "y", "",
        ];
        const NUCLEI: &[&str] = &[
            "a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y", "é", "ö", "ü",
        ];
        const CODAS: &[&str] = &["", "", "", "n", "r", "s", "t", "l", "ck", "ng", "x", "ß"];
        let mut words = Vec::with_capacity(VOCAB_LEN);
        let mut seen = std::collections::HashSet::new();
        while words.len() < VOCAB_LEN {
            let syllables = 1 + below(rng, 3) + usize::from(chance(rng, 20));
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(ONSETS[below(rng, ONSETS.len())]);
                // Non-ASCII vowels and codas are rarer.
                let mut nucleus = NUCLEI[below(rng, NUCLEI.len())];
                while !nucleus.is_ascii() && !chance(rng, 15) {
                    nucleus = NUCLEI[below(rng, NUCLEI.len())];
                }
                w.push_str(nucleus);
                let mut coda = CODAS[below(rng, CODAS.len())];
                while !coda.is_ascii() && !chance(rng, 15) {
                    coda = CODAS[below(rng, CODAS.len())];
                }
                w.push_str(coda);
            }
            if w.chars().count() >= 3 && seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut cdf = Vec::with_capacity(VOCAB_LEN);
        let mut total = 0.0;
        for r in 0..VOCAB_LEN {
            total += 1.0 / ((r + 1) as f64).powf(1.05);
            cdf.push(total);
        }
        Vocab { words, cdf }
    }

    /// A word drawn with the Zipf weights.
    fn draw(&self, rng: &mut ChaCha20Rng) -> &str {
        let total = *self.cdf.last().unwrap();
        let x = (rng.next_u64() as f64 / u64::MAX as f64) * total;
        let r = self.cdf.partition_point(|c| *c < x).min(VOCAB_LEN - 1);
        &self.words[r]
    }

    /// A random word of rank in `ranks`, in a random case.
    fn query_word(&self, rng: &mut ChaCha20Rng, ranks: std::ops::Range<usize>) -> String {
        let w = &self.words[ranks.start + below(rng, ranks.len())];
        cased(rng, w)
    }
}

/// `w` as written: mostly lower case, sometimes capitalised or in capitals.
fn cased(rng: &mut ChaCha20Rng, w: &str) -> String {
    match below(rng, 10) {
        0 => w.to_uppercase(),
        1 | 2 => {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        _ => w.to_owned(),
    }
}

fn sentence(rng: &mut ChaCha20Rng, vocab: &Vocab, words: std::ops::Range<usize>) -> String {
    let n = words.start + below(rng, words.len());
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(if chance(rng, 8) { ',' } else { ' ' });
            if s.ends_with(',') {
                s.push(' ');
            }
        }
        if chance(rng, 4) {
            let units = ["kg", "cm", "h", "GB", "x"];
            s.push_str(&format!(
                "{}{}",
                1 + below(rng, 500),
                units[below(rng, units.len())]
            ));
        } else {
            let w = vocab.draw(rng);
            s.push_str(&cased(rng, w));
        }
    }
    s
}

/// What becomes of a CPO of the board.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    Expired,
    Bound,
    TakenDown,
}

fn make_entries(rng: &mut ChaCha20Rng, vocab: &Vocab, open: usize) -> Vec<(BoardEntry, Fate)> {
    let closed = open * CLOSED_PER_100 / 100;
    let bond: Vec<u8> = std::iter::once(0x30)
        .chain((1..640).map(|i| (i * 7 % 251) as u8))
        .collect();
    (0..open + closed)
        .map(|i| {
            let fate = if i < open {
                Fate::Open
            } else {
                match i % 10 {
                    0..=4 => Fate::Expired,
                    5..=8 => Fate::Bound,
                    _ => Fate::TakenDown,
                }
            };
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            let mut pick = below(rng, 100) as u64;
            let currency = CURRENCIES
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map(|(c, _)| *c)
                .unwrap();
            // Log-uniform from 1.00 to 10,000.00.
            let u = rng.next_u64() as f64 / u64::MAX as f64;
            let cents = (100.0 * 10f64.powf(4.0 * u)) as u64;
            let start = NOW.secs() - below(rng, 30) as u64 * DAY;
            let end = if fate == Fate::Expired {
                NOW.secs() - 1 - below(rng, 1000) as u64
            } else {
                NOW.secs() + 1 + below(rng, 30 * 86_400) as u64
            };
            let ccpo = Ccpo::with_id(
                id,
                CcpoDraft {
                    arbiter: KeyId([1; 32]),
                    server: KeyId([2; 32]),
                    goods: sentence(rng, vocab, 2..9),
                    price: Money::new(cents.max(1), Currency::new(currency).unwrap()),
                    start: Timestamp(start.min(end - 1)),
                    end: Timestamp(end),
                    terms: sentence(rng, vocab, 8..41),
                    bond: bond.clone(),
                },
            )
            .unwrap();
            let entry = BoardEntry {
                ccpo,
                mode: if chance(rng, 50) {
                    Mode::FirstCome
                } else {
                    Mode::Bidding
                },
                buyer: KeyId([3; 32]),
                posted_at: Timestamp(start),
                acceptance: vec![7; 200],
                posted: vec![8; 200],
            };
            (entry, fate)
        })
        .collect()
}

/// Posts every entry through the port from 64 threads, then binds and
/// takes down the closed ones.
fn build(board: &impl Board, entries: &[(BoardEntry, Fate)]) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..64 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((e, fate)) = entries.get(i) else {
                    break;
                };
                assert_eq!(board.post(e).unwrap(), PostOutcome::Posted);
                let id = &e.ccpo.id;
                match fate {
                    Fate::Bound => {
                        let b = Binding {
                            seller: KeyId([4; 32]),
                            bound_at: NOW,
                            bound_cpo: vec![9; 300],
                        };
                        board.try_bind(id, &b).unwrap();
                    }
                    Fate::TakenDown => {
                        board.take_down(id, NOW).unwrap();
                    }
                    Fate::Open | Fate::Expired => {}
                }
            });
        }
    });
}

type Query = (ListFilter, Option<[u8; 32]>);

fn text(t: String) -> ListFilter {
    ListFilter {
        text: Some(t),
        ..ListFilter::default()
    }
}

fn price_range(rng: &mut ChaCha20Rng) -> (Option<u64>, Option<u64>) {
    let u = rng.next_u64() as f64 / u64::MAX as f64;
    let min = (100.0 * 10f64.powf(4.0 * u)) as u64;
    (Some(min), Some(min + min / 2))
}

fn currency(rng: &mut ChaCha20Rng) -> Currency {
    Currency::new(CURRENCIES[below(rng, CURRENCIES.len())].0).unwrap()
}

fn mode(rng: &mut ChaCha20Rng) -> Mode {
    if chance(rng, 50) {
        Mode::FirstCome
    } else {
        Mode::Bidding
    }
}

/// The shapes: a name and a generator of queries.
type Shape = (&'static str, fn(&mut ChaCha20Rng, &Vocab) -> Query);

const SHAPES: &[Shape] = &[
    ("all", |_, _| (ListFilter::default(), None)),
    ("word_common", |r, v| (text(v.query_word(r, 0..20)), None)),
    ("word_mid", |r, v| (text(v.query_word(r, 20..500)), None)),
    ("word_rare", |r, v| {
        (text(v.query_word(r, 2000..8000)), None)
    }),
    ("word_absent", |r, _| {
        let w: String = (0..6)
            .map(|_| char::from(b'a' + below(r, 26) as u8))
            .collect();
        (text(format!("q{w}")), None)
    }),
    ("two_words", |r, v| {
        let (a, b) = (v.query_word(r, 0..500), v.query_word(r, 0..500));
        (text(format!("{a} {b}")), None)
    }),
    ("short_word", |r, v| {
        let w = if chance(r, 50) {
            let w: Vec<char> = v.query_word(r, 0..2000).chars().collect();
            let len = 1 + below(r, 2);
            let at = below(r, w.len() - len + 1);
            w[at..at + len].iter().collect()
        } else {
            (0..2)
                .map(|_| char::from(b'a' + below(r, 26) as u8))
                .collect()
        };
        (text(w), None)
    }),
    ("price", |r, _| {
        let (min_price_cents, max_price_cents) = price_range(r);
        (
            ListFilter {
                min_price_cents,
                max_price_cents,
                ..ListFilter::default()
            },
            None,
        )
    }),
    ("currency", |r, _| {
        (
            ListFilter {
                currency: Some(currency(r)),
                ..ListFilter::default()
            },
            None,
        )
    }),
    ("mode", |r, _| {
        (
            ListFilter {
                mode: Some(mode(r)),
                ..ListFilter::default()
            },
            None,
        )
    }),
    ("price_currency_mode", |r, _| {
        let (min_price_cents, max_price_cents) = price_range(r);
        (
            ListFilter {
                min_price_cents,
                max_price_cents,
                currency: Some(currency(r)),
                mode: Some(mode(r)),
                ..ListFilter::default()
            },
            None,
        )
    }),
    ("word_and_price", |r, v| {
        let (min_price_cents, max_price_cents) = price_range(r);
        (
            ListFilter {
                min_price_cents,
                max_price_cents,
                ..text(v.query_word(r, 20..500))
            },
            None,
        )
    }),
    ("page_after", |r, v| {
        let mut after = [0u8; 32];
        r.fill_bytes(&mut after);
        let f = match below(r, 3) {
            0 => ListFilter::default(),
            1 => text(v.query_word(r, 0..50)),
            _ => ListFilter {
                currency: Some(currency(r)),
                ..ListFilter::default()
            },
        };
        (f, Some(after))
    }),
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let open = if smoke { OPEN_SMOKE } else { OPEN };
    let per_shape: usize = if smoke {
        20
    } else {
        std::env::var("SEARCH_BENCH_QUERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200)
    };

    let mut rng = ChaCha20Rng::seed_from_u64(0x5EA4C4);
    let vocab = Vocab::new(&mut rng);
    let entries = make_entries(&mut rng, &vocab, open);
    // SEARCH_BENCH_DIR: keep the database there (and reuse it if it has
    // the board already), to iterate on the queries or to time a migration.
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SEARCH_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    let t = Instant::now();
    let store = SqliteStore::open_dir(&dir, key()).unwrap();
    let board = store.board();
    let opened = t.elapsed();
    let t = Instant::now();
    if board.get(&entries[0].0.ccpo.id).unwrap().is_none() {
        build(&board, &entries);
    } else {
        println!(
            "board reused from {} (opened in {opened:.1?})",
            dir.display()
        );
    }
    let db_bytes = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(store.path().with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "board: {open} open + {} closed CPOs posted in {:.1} s ({} commits); database {:.0} MiB",
        entries.len() - open,
        t.elapsed().as_secs_f64(),
        store.writer().stats().commits,
        db_bytes as f64 / (1 << 20) as f64,
    );

    // Pre-drawn queries per shape.
    // SEARCH_BENCH_SHAPES: only these shapes (comma-separated names).
    let only = std::env::var("SEARCH_BENCH_SHAPES").ok();
    let queries: Vec<(&str, Vec<Query>)> = SHAPES
        .iter()
        .filter(|(name, _)| {
            only.as_ref()
                .is_none_or(|o| o.split(',').any(|n| n == *name))
        })
        .map(|(name, make)| {
            let qs = (0..per_shape.max(64))
                .map(|_| make(&mut rng, &vocab))
                .collect();
            (*name, qs)
        })
        .collect();

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("board_search");
        for (name, qs) in &queries {
            let mut i = 0;
            g.bench_function(*name, |b| {
                b.iter(|| {
                    let (f, after) = &qs[i % qs.len()];
                    i += 1;
                    black_box(board.search(NOW, f, *after, LIMIT).unwrap())
                })
            });
        }
        g.finish();
    }
    c.final_summary();

    // Percentiles: the shapes interleaved, per_shape queries each.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); queries.len()];
    let mut hits: Vec<usize> = vec![0; queries.len()];
    // The plan each query took, and its times.
    let mut plans: Vec<std::collections::BTreeMap<&str, Vec<Duration>>> =
        vec![Default::default(); queries.len()];
    for k in 0..per_shape {
        for (s, (_, qs)) in queries.iter().enumerate() {
            let (f, after) = &qs[k % qs.len()];
            let t = Instant::now();
            let page = board.search(NOW, f, *after, LIMIT).unwrap();
            let d = t.elapsed();
            times[s].push(d);
            hits[s] += page.len();
            let plan = board.search_explained(NOW, f, *after, LIMIT).unwrap().1;
            plans[s].entry(plan).or_default().push(d);
            if std::env::var_os("SEARCH_BENCH_SLOW").is_some() && d > Duration::from_millis(15) {
                println!("slow: {} {plan} {:?} {f:?}", ms(d), page.len());
            }
        }
    }
    println!(
        "\n{per_shape} queries per shape over {open} open CPOs, limit {LIMIT}:\n{:<22} {:>10} {:>10} {:>10} {:>12}",
        "shape", "p50", "p99", "max", "mean rows"
    );
    let mut all = Vec::new();
    for (s, (name, _)) in queries.iter().enumerate() {
        let mut ts = times[s].clone();
        ts.sort();
        all.extend_from_slice(&ts);
        println!(
            "{name:<22} {:>10} {:>10} {:>10} {:>12.1}",
            ms(percentile(&ts, 0.5)),
            ms(percentile(&ts, 0.99)),
            ms(*ts.last().unwrap()),
            hits[s] as f64 / per_shape as f64
        );
    }
    all.sort();
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "(all shapes)",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(*all.last().unwrap())
    );

    println!("\nplans taken (queries, p50, max):");
    for (s, (name, _)) in queries.iter().enumerate() {
        let desc: Vec<String> = plans[s]
            .iter_mut()
            .map(|(plan, ts)| {
                ts.sort();
                format!(
                    "{plan}: {} ({}, {})",
                    ts.len(),
                    ms(percentile(ts, 0.5)),
                    ms(*ts.last().unwrap())
                )
            })
            .collect();
        println!("{name:<22} {}", desc.join("; "));
    }

    // The answers are those of the definition (MemoryBoard runs `matches`).
    let mem = MemoryBoard::new();
    build(&mem, &entries);
    let mut checked = 0;
    for (name, qs) in &queries {
        for (f, after) in qs.iter().take(if smoke { 3 } else { 10 }) {
            assert_eq!(
                board.search(NOW, f, *after, LIMIT).unwrap(),
                mem.search(NOW, f, *after, LIMIT).unwrap(),
                "{name}: {f:?} after {after:?}"
            );
            checked += 1;
        }
    }
    println!("{checked} answers checked against MemoryBoard");
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
