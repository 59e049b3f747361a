//! A SPEED market in one process, for the protocol tests: a certification
//! authority (with a current CRL), Carol the customer (an account and an
//! e-purse card), a vendor with a catalogue, and the broker on an in-memory
//! ledger. Deterministic from a seed; the clock is `NOW`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_core::crypto::{Secret, SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_pki::{Agency, PartyRole};
use agora_speed::broker::{Broker, BrokerReply};
use agora_speed::customer::{self, Identity, Purchase, ReadyToPay};
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Ledger, MemoryLedger, Posting};
use agora_speed::product::{self, Encrypted};
use agora_speed::purse::{Card, Sam};
use agora_speed::strategy::{AcceptFirst, CustomerStrategy, PriceRule};
use agora_speed::vendor::{Catalogue, Delivery, MemoryHandshakes, Offer, Sale, Vendor};
use agora_speed::{AccountNumber, CardId, Keys, Peer, SpeedTrust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NOW: Timestamp = Timestamp(1_800_000_000);
pub const DAY: u64 = 86_400;

pub const SONG: &str = "SONG-1: a song, 4 minutes, MP3";
pub const FILM: &str = "FILM-1: a film, too large for aggressive mode";

pub fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

pub fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

pub fn num(s: &str) -> AccountNumber {
    AccountNumber::new(s).unwrap()
}

/// The vendor's catalogue: products in memory with their price rules.
#[derive(Debug, Default)]
pub struct Shelf {
    pub items: BTreeMap<String, (Vec<u8>, Offer)>,
}

impl Catalogue for Shelf {
    fn offer(&self, product_id: &str) -> Option<Offer> {
        self.items.get(product_id).map(|(_, o)| o.clone())
    }
}

pub fn identity(
    ca: &Agency,
    rng: &mut ChaCha20Rng,
    name: &str,
    role: PartyRole,
    k: &Keys,
) -> Vec<u8> {
    agora_speed::testkit::identity(ca, rng, name, role, k, NOW)
}

pub fn trust_of(ca: &Agency, revoked: Vec<agora_pki::Revocation>) -> SpeedTrust {
    agora_speed::testkit::trust_of(ca, revoked, NOW)
}

pub struct Market {
    pub rng: ChaCha20Rng,
    pub ca: Agency,
    pub trust: SpeedTrust,
    pub carol: Identity,
    pub carol_account: AccountNumber,
    pub vendor: Vendor,
    pub vendor_cert: Vec<u8>,
    pub shelf: Shelf,
    pub handshakes: MemoryHandshakes,
    pub broker: Broker,
    pub broker_peer: Peer,
    pub ledger: MemoryLedger,
    pub sam: Sam,
    pub card: Card,
    pub now: Timestamp,
}

pub const CAROL: &str = "C-CAROL";
pub const SHOP: &str = "V-SHOP";
pub const FLOAT: &str = "B-FLOAT-EUR";
pub const CASH: &str = "B-CASH-EUR";
pub const MASTER: [u8; 32] = [0x4d; 32];

impl Market {
    pub fn new(seed: u64) -> Market {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = Agency::create(
            "SPEED CA",
            SigningKey::generate(&mut rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .unwrap();
        let trust = trust_of(&ca, vec![]);
        let carol_keys = keys(&mut rng);
        let carol_cert = identity(&ca, &mut rng, "carol", PartyRole::Customer, &carol_keys);
        let vendor_keys = keys(&mut rng);
        let vendor_cert = identity(&ca, &mut rng, "shop", PartyRole::Vendor, &vendor_keys);
        let broker_keys = keys(&mut rng);
        let broker_peer = broker_keys.peer();
        let broker_id = broker_keys.id();
        let sam = Sam::new(Secret::new(MASTER));
        let mut broker = Broker::new(broker_keys, trust.clone(), Sam::new(Secret::new(MASTER)));
        broker.add_vendor(&vendor_cert, NOW).unwrap();
        broker.set_float(eur(0).currency, num(FLOAT));
        let ledger = MemoryLedger::new();
        let eur_c = eur(0).currency;
        let open = |n: &str, owner, kind| {
            ledger
                .open_account(&Account {
                    number: num(n),
                    owner,
                    kind,
                    currency: eur_c,
                    allow_credit: false,
                })
                .unwrap()
        };
        open(CAROL, carol_keys.id(), AccountKind::Customer);
        open(SHOP, vendor_keys.id(), AccountKind::Vendor);
        open(FLOAT, broker_id, AccountKind::PurseFloat);
        open(CASH, broker_id, AccountKind::External);
        ledger
            .post(&JournalEntry {
                id: [1; 16],
                at: NOW,
                memo: "deposit".into(),
                postings: vec![
                    Posting {
                        account: num(CASH),
                        cents: -10_000,
                    },
                    Posting {
                        account: num(CAROL),
                        cents: 10_000,
                    },
                ],
            })
            .unwrap();
        let vendor = Vendor {
            keys: vendor_keys,
            account: num(SHOP),
            broker: broker_peer,
            trust: trust.clone(),
            max_aggressive_len: agora_speed::vendor::DEFAULT_MAX_AGGRESSIVE_LEN,
        };
        let mut shelf = Shelf::default();
        let song: Vec<u8> = (0..150_000u32).map(|i| (i * 7) as u8).collect();
        shelf.items.insert(
            SONG.into(),
            (
                song.clone(),
                Offer {
                    strategy: Arc::new(PriceRule {
                        list: eur(1000),
                        floor: eur(800),
                        step: 100,
                    }),
                    len: song.len() as u64,
                },
            ),
        );
        shelf.items.insert(
            FILM.into(),
            (
                b"(pretend this is large)".to_vec(),
                Offer {
                    strategy: Arc::new(PriceRule::fixed(eur(500))),
                    len: 2_000_000_000,
                },
            ),
        );
        let mut card = sam.issue(CardId([9; 16]), eur_c);
        // Load 50.00 onto the card, from Carol's account.
        let (cmd, pending) = sam
            .load(&card.authenticate(&mut rng), eur(5_000), &mut rng)
            .unwrap();
        let conf = card.load(&cmd).unwrap();
        sam.confirm_load(&pending, &conf).unwrap();
        ledger
            .post(&JournalEntry {
                id: [2; 16],
                at: NOW,
                memo: "card load".into(),
                postings: vec![
                    Posting {
                        account: num(CAROL),
                        cents: -5_000,
                    },
                    Posting {
                        account: num(FLOAT),
                        cents: 5_000,
                    },
                ],
            })
            .unwrap();
        Market {
            rng,
            ca,
            trust,
            carol: Identity {
                keys: carol_keys,
                cert: carol_cert,
            },
            carol_account: num(CAROL),
            vendor,
            vendor_cert,
            shelf,
            handshakes: MemoryHandshakes::default(),
            broker,
            broker_peer,
            ledger,
            sam,
            card,
            now: NOW,
        }
    }

    pub fn vendor_peer(&self) -> Peer {
        self.vendor.keys.peer()
    }

    pub fn cents(&self, n: &str) -> i64 {
        self.ledger.balance(&num(n)).unwrap().cents
    }

    /// The vendor encrypts the product of `delivery` and makes the head of
    /// the delivery message: (head, encrypted product, sale).
    pub fn deliver(&mut self, mut delivery: Delivery) -> (Vec<u8>, Vec<u8>, Sale) {
        let product = self.shelf.items[delivery.product_id()].0.clone();
        let key = delivery.draw_key(&mut self.rng).clone();
        let (ct, enc) = product::encrypt(&mut self.rng, &key, &product[..], Vec::new()).unwrap();
        let (head, sale) = delivery.finish(&mut self.rng, &self.vendor, enc).unwrap();
        (head, ct, sale)
    }

    /// Normal mode up to the point of paying, with `strategy`.
    pub fn negotiate_to_pay(
        &mut self,
        product_id: &str,
        strategy: &dyn CustomerStrategy,
    ) -> (ReadyToPay, Vec<u8>, Sale) {
        let vendor_peer = self.vendor_peer();
        let (mut state, mut msg) = customer::negotiate(
            &mut self.rng,
            &self.carol,
            &vendor_peer,
            product_id,
            strategy,
        )
        .unwrap();
        let (mut vstate, mut step) = self
            .vendor
            .on_negotiation_request(self.now, &mut self.rng, &msg, &self.shelf)
            .unwrap();
        loop {
            match state
                .on_step(&mut self.rng, &self.carol, &step, strategy)
                .unwrap()
            {
                customer::CustomerNext::Counter(s, m) => {
                    state = s;
                    msg = m;
                    match vstate.on_step(&mut self.rng, &msg).unwrap() {
                        agora_speed::vendor::VendorNext::Counter(v, st) => {
                            vstate = *v;
                            step = st;
                        }
                        agora_speed::vendor::VendorNext::Closed => panic!("vendor closed"),
                    }
                }
                customer::CustomerNext::Agreed(expect, handshake) => {
                    let delivery = vstate
                        .on_handshake(self.now, &handshake, &self.handshakes)
                        .unwrap();
                    let (head, ct, sale) = self.deliver(delivery);
                    let expect = expect.on_delivery(&head).unwrap();
                    let ready = expect.on_product(encrypted_of(&ct)).unwrap();
                    return (ready, ct, sale);
                }
                customer::CustomerNext::WalkedAway { offer } => panic!("walked away at {offer:?}"),
            }
        }
    }

    /// Pays `ready` from Carol's account and opens the receipt.
    pub fn pay_from_account(&mut self, ready: ReadyToPay) -> (Purchase, Vec<u8>) {
        let broker = self.broker_peer;
        let (expect, po) = ready
            .pay_from_account(
                &mut self.rng,
                &self.carol,
                &broker,
                self.carol_account.clone(),
                &|_| false,
            )
            .unwrap();
        let BrokerReply::Receipt(r) = self
            .broker
            .on_payment_order(self.now, &mut self.rng, &po, &self.ledger)
            .unwrap()
        else {
            panic!("expected a receipt");
        };
        (expect.on_receipt(&r).unwrap(), r)
    }

    /// Pays `ready` by card and opens the receipt.
    pub fn pay_by_card(&mut self, ready: ReadyToPay) -> (Purchase, Vec<u8>) {
        let broker = self.broker_peer;
        let order = ready.order();
        let s1 = self.card.authenticate(&mut self.rng);
        let (expect, po) = ready
            .pay_by_card(&mut self.rng, &self.carol, &broker, s1, &|_| false)
            .unwrap();
        let BrokerReply::PurseDebit(a) = self
            .broker
            .on_payment_order(self.now, &mut self.rng, &po, &self.ledger)
            .unwrap()
        else {
            panic!("expected message a");
        };
        let card = &mut self.card;
        let (expect, b) = expect
            .on_debit(&mut self.rng, &a, |s2| card.debit(s2))
            .unwrap();
        let r = self
            .broker
            .on_purse_confirm(self.now, &order, &b, &self.ledger)
            .unwrap();
        (expect.on_receipt(&r).unwrap(), r)
    }

    pub fn product(&self, id: &str) -> Vec<u8> {
        self.shelf.items[id].0.clone()
    }
}

/// Length and digest of an encrypted product, as the customer computes them
/// while storing it.
pub fn encrypted_of(ct: &[u8]) -> Encrypted {
    let mut w = product::HashingWriter::new(Vec::new());
    std::io::Write::write_all(&mut w, ct).unwrap();
    w.finish().1
}

pub fn decrypt(purchase: &Purchase, ct: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    product::decrypt(&purchase.key, ct, &mut out).unwrap();
    out
}

pub fn accept_first() -> AcceptFirst {
    AcceptFirst
}

impl Market {
    /// A second handle on Carol's identity (the keys cloned), for calls
    /// that borrow the market mutably.
    pub fn carol_identity(&self) -> Identity {
        Identity {
            keys: Keys {
                sign: SigningKey::from_seed(&self.carol.keys.sign.to_seed()),
                enc: X25519Secret::from_bytes(*self.carol.keys.enc.to_bytes()),
            },
            cert: self.carol.cert.clone(),
        }
    }
}
