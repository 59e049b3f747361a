//! The simulated network and clock.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Who a message is from or to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// Alice, the arbiter.
    Arbiter,
    /// The CPO server.
    Server,
    /// Buyer number n.
    Buyer(u8),
    /// Seller (or bidder) number n.
    Seller(u8),
}

impl Addr {
    fn code(self) -> [u8; 2] {
        match self {
            Addr::Arbiter => [0, 0],
            Addr::Server => [1, 0],
            Addr::Buyer(n) => [2, n],
            Addr::Seller(n) => [3, n],
        }
    }
}

/// How the network misbehaves: each message is dropped, duplicated and
/// tampered with (one random bit flipped) with these probabilities, and
/// each copy is delayed uniformly in `min_delay_ms..=max_delay_ms`
/// (different delays reorder messages).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a delivered copy has one bit flipped.
    pub tamper: f64,
    /// Shortest delay.
    pub min_delay_ms: u64,
    /// Longest delay.
    pub max_delay_ms: u64,
}

impl NetConfig {
    /// No faults, a fixed 10 ms delay (so no reordering).
    pub fn ideal() -> NetConfig {
        NetConfig {
            drop: 0.0,
            duplicate: 0.0,
            tamper: 0.0,
            min_delay_ms: 10,
            max_delay_ms: 10,
        }
    }

    /// 10% drop, 5% duplicate, 5% tamper, delays of 1 ms to 2 s.
    pub fn lossy() -> NetConfig {
        NetConfig {
            drop: 0.10,
            duplicate: 0.05,
            tamper: 0.05,
            min_delay_ms: 1,
            max_delay_ms: 2_000,
        }
    }
}

/// A message in flight or delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Sender.
    pub from: Addr,
    /// Recipient.
    pub to: Addr,
    /// The bytes (as tampered with, if they were).
    pub bytes: Vec<u8>,
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Copies delivered.
    pub delivered: u64,
    /// Messages lost.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Copies with a bit flipped.
    pub tampered: u64,
}

/// A seeded network with a simulated clock (milliseconds since the start
/// of the run). Deliveries come out in (time, sequence) order; every
/// delivered copy and its time go into the transcript hash.
#[derive(Debug)]
pub struct SimNet {
    cfg: NetConfig,
    rng: ChaCha20Rng,
    now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Packet>,
    stats: NetStats,
    transcript: Sha256,
}

impl SimNet {
    /// A network behaving as `cfg`, its faults drawn from `seed`.
    pub fn new(cfg: NetConfig, seed: u64) -> SimNet {
        SimNet {
            cfg,
            rng: ChaCha20Rng::seed_from_u64(seed),
            now_ms: 0,
            seq: 0,
            queue: BTreeMap::new(),
            stats: NetStats::default(),
            transcript: Sha256::new(),
        }
    }

    /// A network without faults.
    pub fn ideal(seed: u64) -> SimNet {
        SimNet::new(NetConfig::ideal(), seed)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        chance(&mut self.rng, p)
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = (
            self.cfg.min_delay_ms,
            self.cfg.max_delay_ms.max(self.cfg.min_delay_ms),
        );
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    /// Sends `bytes` from `from` to `to`: dropped, duplicated, tampered
    /// with and delayed as the configuration says.
    pub fn send(&mut self, from: Addr, to: Addr, bytes: Vec<u8>) {
        self.stats.sent += 1;
        if self.chance(self.cfg.drop) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut b = bytes.clone();
            if !b.is_empty() && self.chance(self.cfg.tamper) {
                self.stats.tampered += 1;
                let bit = (self.rng.next_u64() % (b.len() as u64 * 8)) as usize;
                b[bit / 8] ^= 1 << (bit % 8);
            }
            let at = self.now_ms + self.delay();
            self.seq += 1;
            self.queue
                .insert((at, self.seq), Packet { from, to, bytes: b });
        }
    }

    /// The simulated time (ms since the start).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// When the next delivery is due.
    pub fn next_delivery_at(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Moves the clock forward to `t` (never back).
    pub fn advance_to(&mut self, t: u64) {
        self.now_ms = self.now_ms.max(t);
    }

    /// The next delivery due now or earlier, recorded in the transcript.
    pub fn pop_due(&mut self) -> Option<Packet> {
        let (&(t, seq), _) = self.queue.iter().next()?;
        if t > self.now_ms {
            return None;
        }
        let p = self.queue.remove(&(t, seq))?;
        self.stats.delivered += 1;
        self.transcript.update(t.to_be_bytes());
        self.transcript.update(p.from.code());
        self.transcript.update(p.to.code());
        self.transcript.update((p.bytes.len() as u64).to_be_bytes());
        self.transcript.update(&p.bytes);
        Some(p)
    }

    /// Messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// SHA-256 over every delivered copy so far (time, from, to, bytes).
    pub fn transcript_hash(&self) -> [u8; 32] {
        self.transcript.clone().finalize().into()
    }
}

/// True with probability `p`, from 53 random bits of `rng` (a uniform f64
/// in [0, 1)).
pub(crate) fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// What one actor's handling of an event produced: the time it ran at and
/// the messages it sends, which the simulation hands to the network.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) now_ms: u64,
    pub(crate) sends: Vec<(Addr, Vec<u8>)>,
}

impl Outbox {
    pub(crate) fn new(now_ms: u64) -> Outbox {
        Outbox {
            now_ms,
            sends: Vec::new(),
        }
    }

    pub(crate) fn now(&self) -> agora_core::Timestamp {
        crate::now_of(self.now_ms)
    }

    pub(crate) fn send(&mut self, to: Addr, bytes: Vec<u8>) {
        self.sends.push((to, bytes));
    }
}
