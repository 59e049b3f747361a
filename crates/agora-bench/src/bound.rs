//! The crypto bound, priced from the operations the production code
//! performed (ARCHITECTURE section 8).
//!
//! agora-core counts every cryptographic operation it performs, by kind,
//! per thread ([`agora_core::crypto::ops`]); the node exposes its counts in
//! `/metrics`. Around the measured phase the load tool reads both: the
//! node's (`agora_crypto_operations_total`, `agora_crypto_bytes_total`) and
//! its own process's (its clients' side). The differences are what the run
//! cost in cryptography, failed attempts included. Each kind is then
//! priced by timing agora-core's own function for it on one thread of
//! this process, at the run's average size, fastest of [`ROUNDS`] rounds in
//! which every kind runs in turn (a
//! bound is what the CPU can do; on a shared machine a slower round
//! measured someone else's load too). The bound is the completed
//! operations per second that the priced cryptography alone would allow on
//! every core of the machine.
//!
//! Nothing here restates what a protocol step does: a step that gains an
//! operation moves the counts, and with them the bound.

use crate::stats::{per_sec, ratio};
use agora_client::transport::NodeClient;
use agora_core::crypto::ops::{self, Op, OpCounts, OPS};
use agora_core::crypto::{
    argon2id, hkdf_sha256, hmac_sha256, hpke, os_rng, sha256, verify_batch, AeadAlg, AeadKey,
    Argon2Params, Secret, SigningKey, X25519Secret, NONCE_LEN, TAG_LEN,
};
use anyhow::{bail, Context};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rounds of each price's measurement: the fastest counts.
const ROUNDS: u32 = 10;

/// Signatures per batch when pricing a batch verification's item.
const BATCH: usize = 16;

/// Largest HKDF output priced (RFC 5869: 255 hashes).
const MAX_HKDF_OUT: usize = 255 * 32;

/// The HPKE info string of the pricing (any would do).
const PRICE_INFO: &[u8] = b"agora/bench/price";

/// The metric families the node exposes its counts in.
const CALLS_METRIC: &str = "agora_crypto_operations_total";
const BYTES_METRIC: &str = "agora_crypto_bytes_total";

/// The node's counts, from the Prometheus text of its `/metrics`.
fn node_counts(client: &NodeClient) -> anyhow::Result<OpCounts> {
    let body = client
        .get_bytes("/metrics")
        .context("reading the node's /metrics")?;
    let text = std::str::from_utf8(&body).context("the node's /metrics is not UTF-8")?;
    parse_counts(text)
}

/// The crypto counters of a `/metrics` text: every kind agora-core counts
/// must be there, in both families, once; a kind this tool cannot price is
/// refused, so that no operation goes unpriced.
fn parse_counts(text: &str) -> anyhow::Result<OpCounts> {
    let mut calls = [None; OPS.len()];
    let mut bytes = [None; OPS.len()];
    for line in text.lines() {
        let (family, slot) = if let Some(rest) = line.strip_prefix(CALLS_METRIC) {
            (rest, &mut calls)
        } else if let Some(rest) = line.strip_prefix(BYTES_METRIC) {
            (rest, &mut bytes)
        } else {
            continue;
        };
        let rest = family
            .strip_prefix("{op=\"")
            .with_context(|| format!("a crypto counter without its op label: {line:?}"))?;
        let (name, value) = rest
            .split_once("\"} ")
            .with_context(|| format!("a crypto counter this tool cannot read: {line:?}"))?;
        let op = Op::from_name(name).with_context(|| {
            format!("the node counts an operation this load tool cannot price: {name:?}")
        })?;
        let value: u64 = value
            .trim()
            .parse()
            .with_context(|| format!("not a count: {line:?}"))?;
        if slot[op.index()].replace(value).is_some() {
            bail!("the node reports {name:?} twice");
        }
    }
    let mut counts = OpCounts::default();
    for (i, op) in OPS.into_iter().enumerate() {
        match (calls[i], bytes[i]) {
            (Some(c), Some(b)) => counts.add(op, c, b),
            _ => bail!(
                "the node's /metrics has no crypto counters for {:?} (a node older than \
                 this load tool?)",
                op.name()
            ),
        }
    }
    Ok(counts)
}

/// What the measured phase cost in cryptography: the node's and this
/// process's (the clients') operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) client: OpCounts,
    pub(crate) node: OpCounts,
}

/// The measured phase's window on the counters: opened as the workers are
/// released, closed when the last has ended (by [`crate::race::race`]).
pub(crate) struct Window<'a> {
    node: &'a NodeClient,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    opened: Option<anyhow::Result<Counted>>,
    counted: Option<anyhow::Result<Counted>>,
}

impl<'a> Window<'a> {
    pub(crate) fn new(node: &'a NodeClient) -> Window<'a> {
        Window {
            node,
            state: Mutex::new(WindowState::default()),
        }
    }

    fn read(&self) -> anyhow::Result<Counted> {
        Ok(Counted {
            node: node_counts(self.node)?,
            client: ops::this_process(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the counters as the measured phase starts.
    pub(crate) fn open(&self) {
        let now = self.read();
        self.state().opened = Some(now);
    }

    /// Reads them again as it ends: the difference is the phase's.
    pub(crate) fn close(&self) {
        let now = self.read();
        let mut s = self.state();
        s.counted = Some(match (s.opened.take(), now) {
            (Some(Ok(before)), Ok(after)) => Ok(Counted {
                node: after.node.since(&before.node),
                client: after.client.since(&before.client),
            }),
            (Some(Err(e)), _) | (_, Err(e)) => Err(e),
            (None, _) => Err(anyhow::anyhow!(
                "the measured phase's window was never opened"
            )),
        });
    }

    /// What the phase cost, or why it could not be read.
    pub(crate) fn counted(&self) -> anyhow::Result<Counted> {
        self.state()
            .counted
            .take()
            .unwrap_or_else(|| Err(anyhow::anyhow!("the measured phase never ended")))
    }
}

/// One call of an operation of some kind, its inputs made ready, and how
/// many operations one call is (a batch verification is [`BATCH`]).
struct Pricer {
    call: Box<dyn FnMut() -> anyhow::Result<()>>,
    ops_per_call: f64,
}

impl Pricer {
    fn one(call: impl FnMut() -> anyhow::Result<()> + 'static) -> Pricer {
        Pricer {
            call: Box::new(call),
            ops_per_call: 1.0,
        }
    }
}

/// A call of agora-core's own function for kind `op` over `len` bytes.
/// The public-key kinds' costs barely depend on the bytes; the symmetric
/// ones' are affine in them, so pricing every call at the run's average
/// size prices their sum exactly.
fn pricer(op: Op, len: usize) -> anyhow::Result<Pricer> {
    let mut rng = os_rng();
    let msg = vec![0x5a_u8; len];
    Ok(match op {
        Op::Ed25519Sign => {
            let k = SigningKey::generate(&mut rng);
            Pricer::one(move || {
                black_box(k.sign(&msg));
                Ok(())
            })
        }
        Op::Ed25519Verify => {
            let k = SigningKey::generate(&mut rng);
            let (vk, sig) = (k.verifying_key(), k.sign(&msg));
            Pricer::one(move || Ok(vk.verify(&msg, &sig)?))
        }
        Op::Ed25519BatchItem => {
            let keys: Vec<SigningKey> =
                (0..BATCH).map(|_| SigningKey::generate(&mut rng)).collect();
            let signed: Vec<_> = keys
                .iter()
                .map(|k| (k.sign(&msg), k.verifying_key()))
                .collect();
            Pricer {
                call: Box::new(move || {
                    let items: Vec<_> = signed
                        .iter()
                        .map(|(sig, vk)| (msg.as_slice(), sig, vk))
                        .collect();
                    Ok(verify_batch(&items)?)
                }),
                ops_per_call: BATCH as f64,
            }
        }
        Op::X25519 => {
            let (a, b) = (
                X25519Secret::generate(&mut rng),
                X25519Secret::generate(&mut rng),
            );
            let peer = b.public();
            Pricer::one(move || {
                black_box(a.diffie_hellman(&peer)?);
                Ok(())
            })
        }
        Op::HpkeSeal => {
            let to = X25519Secret::generate(&mut rng).public();
            Pricer::one(move || {
                black_box(hpke::seal(&mut rng, &to, PRICE_INFO, b"", &msg)?);
                Ok(())
            })
        }
        Op::HpkeOpen => {
            let me = X25519Secret::generate(&mut rng);
            // The counted length of an open is the ciphertext's.
            let plain = vec![0x5a_u8; len.saturating_sub(TAG_LEN)];
            let (enc, ct) = hpke::seal(&mut rng, &me.public(), PRICE_INFO, b"", &plain)?;
            Pricer::one(move || {
                black_box(hpke::open(&me, &enc, PRICE_INFO, b"", &ct)?);
                Ok(())
            })
        }
        Op::ChaCha20Poly1305 | Op::Aes256Gcm => {
            let alg = if op == Op::Aes256Gcm {
                AeadAlg::Aes256Gcm
            } else {
                AeadAlg::ChaCha20Poly1305
            };
            let key = AeadKey::new(alg, &Secret::new([7; 32]));
            let mut buf = Vec::with_capacity(len + TAG_LEN);
            Pricer::one(move || {
                buf.clear();
                buf.extend_from_slice(&msg);
                key.seal_in_place(&[0u8; NONCE_LEN], b"", &mut buf);
                black_box(&buf);
                Ok(())
            })
        }
        Op::Hmac => Pricer::one(move || {
            black_box(hmac_sha256(&[7; 32], &msg));
            Ok(())
        }),
        Op::Sha256 => Pricer::one(move || {
            black_box(sha256(&msg));
            Ok(())
        }),
        Op::Hkdf => {
            let mut out = vec![0u8; len.clamp(1, MAX_HKDF_OUT)];
            Pricer::one(move || {
                hkdf_sha256(&[1; 32], &[2; 32], PRICE_INFO, &mut out)?;
                black_box(&out);
                Ok(())
            })
        }
        // Keystores are written with these parameters (`agora init`).
        Op::Argon2id => Pricer::one(move || {
            black_box(argon2id(&msg, &[3; 16], Argon2Params::INTERACTIVE)?);
            Ok(())
        }),
    })
}

/// The µs of one operation of each `(kind, bytes)` of `work`, timed on
/// this thread in [`ROUNDS`] rounds of about `budget / ROUNDS` each, every
/// kind in every round (so that a burst of someone else's load on this
/// shared machine falls on all kinds alike, not on one); each kind's
/// fastest round counts: a bound is what the CPU can do.
pub(crate) fn price(work: &[(Op, usize)], budget: Duration) -> anyhow::Result<Vec<f64>> {
    let mut pricers = work
        .iter()
        .map(|&(op, len)| pricer(op, len).with_context(|| format!("pricing {}", op.name())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for p in &mut pricers {
        // Warm-up: caches, lazy tables, the CPU's clock.
        (p.call)()?;
        (p.call)()?;
    }
    let slice = budget / ROUNDS / u32::try_from(pricers.len().max(1)).unwrap_or(u32::MAX);
    let mut best = vec![f64::INFINITY; pricers.len()];
    for _ in 0..ROUNDS {
        for (p, best) in pricers.iter_mut().zip(&mut best) {
            let (mut n, t0) = (0u64, Instant::now());
            while n == 0 || t0.elapsed() < slice {
                (p.call)()?;
                n += 1;
            }
            let us = t0.elapsed().as_secs_f64() * 1e6 / (n as f64 * p.ops_per_call);
            *best = best.min(us);
        }
    }
    Ok(best)
}

/// One kind of operation on one side, counted and priced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Priced {
    pub(crate) op: Op,
    pub(crate) calls: u64,
    pub(crate) bytes: u64,
    /// µs of one call at the run's average size.
    pub(crate) us_each: f64,
}

impl Priced {
    fn secs(&self) -> f64 {
        self.calls as f64 * self.us_each / 1e6
    }
}

/// The kinds `counts` holds, each with its calls' average size.
fn kinds(counts: &OpCounts) -> Vec<(Op, u64, u64, usize)> {
    counts
        .iter()
        .filter(|(_, calls, _)| *calls > 0)
        .map(|(op, calls, bytes)| {
            let len = usize::try_from(bytes / calls).unwrap_or(usize::MAX);
            (op, calls, bytes, len)
        })
        .collect()
}

/// The crypto bound of a run: `units` operations completed (binds,
/// purchases, ...) cost the node's and the clients' counted cryptography.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CryptoBound {
    pub(crate) units: u64,
    pub(crate) client: Vec<Priced>,
    pub(crate) node: Vec<Priced>,
    /// Cores of this machine (`available_parallelism`).
    pub(crate) cores: usize,
}

impl CryptoBound {
    /// Prices what `counted` holds, spending about `budget` on one thread
    /// (both sides' kinds in the same rounds).
    pub(crate) fn price(counted: &Counted, units: u64, budget: Duration) -> anyhow::Result<Self> {
        let (client, node) = (kinds(&counted.client), kinds(&counted.node));
        let work: Vec<(Op, usize)> = client
            .iter()
            .chain(&node)
            .map(|&(op, _, _, len)| (op, len))
            .collect();
        let prices = price(&work, budget)?;
        let (client_prices, node_prices) = prices.split_at(client.len());
        let priced = |side: &[(Op, u64, u64, usize)], prices: &[f64]| {
            side.iter()
                .zip(prices)
                .map(|(&(op, calls, bytes, _), &us_each)| Priced {
                    op,
                    calls,
                    bytes,
                    us_each,
                })
                .collect::<Vec<_>>()
        };
        let client = priced(&client, client_prices);
        let node = priced(&node, node_prices);
        Ok(CryptoBound {
            units,
            client,
            node,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    // Folded from 0.0: a sum of no f64 is -0.0, which a report would print
    // as "-0.0" for a side that performed nothing.
    fn client_secs(&self) -> f64 {
        self.client.iter().map(Priced::secs).fold(0.0, |a, b| a + b)
    }

    fn node_secs(&self) -> f64 {
        self.node.iter().map(Priced::secs).fold(0.0, |a, b| a + b)
    }

    /// The clients' crypto per unit, µs.
    pub(crate) fn client_us(&self) -> f64 {
        self.client_secs() * 1e6 / self.units.max(1) as f64
    }

    /// The node's crypto per unit, µs.
    pub(crate) fn server_us(&self) -> f64 {
        self.node_secs() * 1e6 / self.units.max(1) as f64
    }

    /// Units per second on one core: both sides' crypto, or the node's
    /// only.
    pub(crate) fn per_core(&self, server_only: bool) -> f64 {
        let secs = if server_only {
            self.node_secs()
        } else {
            self.client_secs() + self.node_secs()
        };
        per_sec(self.units, secs)
    }

    /// [`Self::per_core`] on every core of this machine (linearly: the
    /// operations share nothing but the CPU).
    pub(crate) fn bound(&self, server_only: bool) -> f64 {
        self.per_core(server_only) * self.cores as f64
    }

    /// The operations per unit, by side and kind: `node: ed25519_sign 1.00,
    /// ...`.
    pub(crate) fn per_unit_text(&self) -> String {
        let side = |name: &str, ps: &[Priced]| {
            let list: Vec<String> = ps
                .iter()
                .map(|p| {
                    format!(
                        "{} {:.2}",
                        p.op.name(),
                        p.calls as f64 / self.units.max(1) as f64
                    )
                })
                .collect();
            format!(
                "{name}: {}",
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                }
            )
        };
        format!(
            "{}; {}",
            side("node", &self.node),
            side("clients", &self.client)
        )
    }

    pub(crate) fn json(&self, throughput: f64, what: &str) -> serde_json::Value {
        let ops = |ps: &[Priced]| {
            ps.iter()
                .map(|p| {
                    serde_json::json!({
                        "op": p.op.name(),
                        "calls": p.calls,
                        "bytes": p.bytes,
                        "per_unit": p.calls as f64 / self.units.max(1) as f64,
                        "us_each": p.us_each,
                        "us_per_unit": p.secs() * 1e6 / self.units.max(1) as f64,
                    })
                })
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "sides": "client+server",
            "why_both_sides": "over loopback the clients' crypto runs on the node's cores",
            "what": what,
            "method": "counted: the node's /metrics crypto counters and this process's, read as \
                       the measured phase started and ended; each kind priced by timing \
                       agora-core's function for it at the run's average size, one thread, \
                       every kind in each of 10 rounds, the fastest round of each",
            "units": self.units,
            "operations": { "node": ops(&self.node), "clients": ops(&self.client) },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(counts: &[(Op, u64, u64)]) -> String {
        let mut s = String::from("# HELP agora_crypto_operations Cryptographic operations\n");
        for op in OPS {
            let (c, b) = counts
                .iter()
                .find(|(o, _, _)| *o == op)
                .map_or((0, 0), |(_, c, b)| (*c, *b));
            s.push_str(&format!("{CALLS_METRIC}{{op=\"{}\"}} {c}\n", op.name()));
            s.push_str(&format!("{BYTES_METRIC}{{op=\"{}\"}} {b}\n", op.name()));
        }
        s.push_str("agora_http_requests_total{route=\"/metrics\",status=\"200\"} 3\n");
        s
    }

    #[test]
    fn the_nodes_counters_are_read_strictly() {
        let c = parse_counts(&metrics(&[(Op::Ed25519Sign, 7, 700), (Op::Hmac, 2, 64)])).unwrap();
        assert_eq!(
            (c.calls(Op::Ed25519Sign), c.bytes(Op::Ed25519Sign)),
            (7, 700)
        );
        assert_eq!((c.calls(Op::Hmac), c.bytes(Op::Hmac)), (2, 64));
        assert_eq!(c.calls(Op::X25519), 0);
        // A node without the counters, a kind this tool cannot price, a
        // count twice, or a count that is not one: refused.
        assert!(parse_counts("agora_http_requests_total 1\n").is_err());
        let unknown = metrics(&[]) + "agora_crypto_operations_total{op=\"ml_kem\"} 1\n";
        assert!(parse_counts(&unknown)
            .unwrap_err()
            .to_string()
            .contains("cannot price"));
        let twice = metrics(&[]) + "agora_crypto_bytes_total{op=\"sha256\"} 1\n";
        assert!(parse_counts(&twice).is_err());
        let bad = metrics(&[]).replace("{op=\"x25519\"} 0", "{op=\"x25519\"} -1");
        assert!(parse_counts(&bad).is_err());
    }

    #[test]
    fn the_bound_counts_both_sides_and_scales_with_the_cores() {
        // 1000 units: the node spent 0.3 s, the clients 0.1 s.
        let p = |op, calls, us_each| Priced {
            op,
            calls,
            bytes: 0,
            us_each,
        };
        let b = CryptoBound {
            units: 1000,
            client: vec![p(Op::Ed25519Verify, 1000, 100.0)],
            node: vec![p(Op::Ed25519Sign, 1000, 200.0), p(Op::Hmac, 2000, 50.0)],
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
        assert_eq!(j["operations"]["node"][1]["op"], "hmac");
        assert!((j["operations"]["node"][1]["per_unit"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(
            b.per_unit_text(),
            "node: ed25519_sign 1.00, hmac 2.00; clients: ed25519_verify 1.00"
        );
        // Nothing completed: no bound, no ratio.
        let none = CryptoBound {
            units: 0,
            client: vec![],
            node: vec![],
            cores: 2,
        };
        assert_eq!(none.bound(false), 0.0);
        assert!(none.json(10.0, "none")["ratio"].is_null());
    }

    #[test]
    fn every_kind_is_priced_by_running_it_and_counts_as_it_runs() {
        // The pricing runs agora-core's own functions, so it counts too.
        let work: Vec<(Op, usize)> = OPS
            .into_iter()
            .filter(|o| *o != Op::Argon2id)
            .map(|op| (op, 64))
            .collect();
        let before = ops::this_process();
        let prices = price(&work, Duration::from_millis(20)).unwrap();
        let counted = ops::this_process().since(&before);
        assert_eq!(prices.len(), work.len());
        for ((op, _), us) in work.iter().zip(prices) {
            assert!(us > 0.0 && us.is_finite(), "{op:?}");
            assert!(counted.calls(*op) >= 3, "{op:?} was priced without running");
        }
    }
}
