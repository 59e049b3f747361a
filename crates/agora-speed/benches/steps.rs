#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! The CPU cost of each SPEED step per role (paper section 4), one thread,
//! on the in-memory ports (`MemoryHandshakes`, `MemoryLedger`): no storage
//! cost, only the role's own work. One criterion group per role
//! (`speed_customer`, `speed_vendor`, `speed_broker`, `speed_purse`); each
//! bench id starts with the paper's message (`m1_` NegotiationRequest ...
//! `m6_` PurchaseReceipt; `s1_`-`s3_` the e-purse passes). Then whole
//! purchases of a 16-byte product (`speed_purchase`: normal mode, one
//! negotiation round, paid from an account; aggressive mode, likewise), and
//! `speed_crypto_bound`: only the public-key operations of a normal-mode
//! purchase, so that purchase / crypto bound can be read off one run.
//!
//! Steps that consume a state get a fresh one per iteration from
//! `iter_batched`, built outside the measurement by running the protocol up
//! to that step; every measured Handshake and PaymentOrder has its own NID,
//! so no register refuses it as replayed. Carol's account is allowed credit,
//! so that any number of measured payments goes through.
//!
//! Criterion counts only the measured step, so a late step (whose setup is
//! the whole purchase before it) takes several times its measurement time:
//! `cargo bench -p agora-speed --bench steps -- --warm-up-time 1
//! --measurement-time 3` takes about two minutes; smoke mode:
//! `cargo bench -p agora-speed --bench steps -- --test`.

use agora_core::crypto::{hpke, Rng, SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_pki::{Agency, CrlParams, PartyRole, TrustAnchors};
use agora_speed::broker::{Broker, BrokerReply};
use agora_speed::customer::{
    self, CustomerNext, ExpectDelivery, ExpectReceipt, Identity, Negotiating, ReadyToPay,
};
use agora_speed::ledger::{Account, AccountKind, Ledger, MemoryLedger};
use agora_speed::msg::BillSecret;
use agora_speed::product::{self, Encrypted, HashingWriter};
use agora_speed::purse::{Card, Sam};
use agora_speed::strategy::{AcceptFirst, PriceRule};
use agora_speed::vendor::{
    Catalogue, Delivery, MemoryHandshakes, Offer, Vendor, VendorNegotiation,
};
use agora_speed::{AccountNumber, CardId, Keys, Nid, PaymentOrderId, Peer, SpeedTrust};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::io::Write;
use std::sync::Arc;

const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;
/// The one product on the shelf: 16 bytes (a licence key, say), so that a
/// whole purchase is the protocol's cost, not the bulk encryption's.
const TUNE: &str = "TUNE-1: a licence key, 16 bytes";
const PRODUCT: [u8; 16] = *b"0123456789abcdef";
const PRICE_CENTS: u64 = 100;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

fn num(s: &str) -> AccountNumber {
    AccountNumber::new(s).unwrap()
}

fn identity(ca: &Agency, rng: &mut ChaCha20Rng, name: &str, role: PartyRole, k: &Keys) -> Vec<u8> {
    agora_speed::testkit::identity(ca, rng, name, role, k, NOW)
}

/// The vendor's catalogue: the one product at a fixed price.
#[derive(Debug)]
struct Shelf(Offer);

impl Catalogue for Shelf {
    fn offer(&self, product_id: &str) -> Option<Offer> {
        (product_id == TUNE).then(|| self.0.clone())
    }
}

/// A CA (with a current CRL), Carol the customer (an account allowed
/// credit, and a loaded e-purse card), a vendor selling [`TUNE`], and the
/// broker on an in-memory ledger.
struct Market {
    trust: SpeedTrust,
    carol: Identity,
    carol_account: AccountNumber,
    vendor: Vendor,
    vendor_peer: Peer,
    shelf: Shelf,
    handshakes: MemoryHandshakes,
    broker: Broker,
    broker_peer: Peer,
    ledger: MemoryLedger,
    sam: Sam,
    /// Carol's card, loaded: each card bench starts from a copy of it.
    card: Card,
}

impl Market {
    fn new(seed: u64) -> Market {
        let mut rng = rng(seed);
        let ca = Agency::create(
            "SPEED CA",
            SigningKey::generate(&mut rng),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut rng,
        )
        .unwrap();
        let mut cas = TrustAnchors::new();
        cas.add_der(ca.certificate_der()).unwrap();
        let crl = ca
            .issue_crl(&CrlParams {
                this_update: NOW.minus_secs(60),
                next_update: NOW.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: vec![],
            })
            .unwrap();
        let trust = SpeedTrust::new(cas, vec![crl]);
        let carol_keys = keys(&mut rng);
        let carol_cert = identity(&ca, &mut rng, "carol", PartyRole::Customer, &carol_keys);
        let vendor_keys = keys(&mut rng);
        let vendor_cert = identity(&ca, &mut rng, "shop", PartyRole::Vendor, &vendor_keys);
        let broker_keys = keys(&mut rng);
        let broker_peer = broker_keys.peer();
        let master = || agora_core::crypto::Secret::new([0x4d; 32]);
        let mut broker = Broker::new(broker_keys, trust.clone(), Sam::new(master()));
        broker.add_vendor(&vendor_cert, NOW).unwrap();
        let ledger = MemoryLedger::new();
        for (n, owner, kind) in [
            ("C-CAROL", carol_keys.id(), AccountKind::Customer),
            ("V-SHOP", vendor_keys.id(), AccountKind::Vendor),
        ] {
            ledger
                .open_account(&Account {
                    number: num(n),
                    owner,
                    kind,
                    currency: eur(0).currency,
                    allow_credit: true,
                })
                .unwrap();
        }
        let vendor_peer = vendor_keys.peer();
        let vendor = Vendor {
            keys: vendor_keys,
            account: num("V-SHOP"),
            broker: broker_peer,
            trust: trust.clone(),
            max_aggressive_len: agora_speed::vendor::DEFAULT_MAX_AGGRESSIVE_LEN,
        };
        let sam = Sam::new(master());
        let mut card = sam.issue(CardId([9; 16]), eur(0).currency);
        let (cmd, pending) = sam
            .load(
                &card.authenticate(&mut rng),
                eur(agora_speed::purse::MAX_CARD_BALANCE_CENTS),
                &mut rng,
            )
            .unwrap();
        let conf = card.load(&cmd).unwrap();
        sam.confirm_load(&pending, &conf).unwrap();
        Market {
            trust,
            carol: Identity {
                keys: carol_keys,
                cert: carol_cert,
            },
            carol_account: num("C-CAROL"),
            vendor,
            vendor_peer,
            shelf: Shelf(Offer {
                strategy: Arc::new(PriceRule::fixed(eur(PRICE_CENTS))),
                len: PRODUCT.len() as u64,
            }),
            handshakes: MemoryHandshakes::default(),
            broker,
            broker_peer,
            ledger,
            sam,
            card,
        }
    }

    /// Message 1 (normal mode).
    fn request(&self, rng: &mut impl Rng) -> (Negotiating, Vec<u8>) {
        customer::negotiate(rng, &self.carol, &self.vendor_peer, TUNE, &AcceptFirst).unwrap()
    }

    /// Up to the vendor's first NegotiationStep (message 2).
    fn offered(&self, rng: &mut impl Rng) -> (Negotiating, VendorNegotiation, Vec<u8>) {
        let (carol, m1) = self.request(rng);
        let (vendor, m2) = self
            .vendor
            .on_negotiation_request(NOW, rng, &m1, &self.shelf)
            .unwrap();
        (carol, vendor, m2)
    }

    /// Up to Carol's Handshake (message 3).
    fn agreed(&self, rng: &mut impl Rng) -> (ExpectDelivery, VendorNegotiation, Vec<u8>) {
        let (carol, vendor, m2) = self.offered(rng);
        let CustomerNext::Agreed(carol, m3) =
            carol.on_step(rng, &self.carol, &m2, &AcceptFirst).unwrap()
        else {
            panic!("Carol accepts the first offer");
        };
        (carol, vendor, m3)
    }

    /// Up to the vendor's delivery with K drawn and the product encrypted.
    fn delivery(&self, rng: &mut impl Rng) -> (ExpectDelivery, Delivery, Vec<u8>, Encrypted) {
        let (carol, vendor, m3) = self.agreed(rng);
        let mut delivery = vendor.on_handshake(NOW, &m3, &self.handshakes).unwrap();
        let key = delivery.draw_key(rng).clone();
        let (ct, enc) = product::encrypt(rng, &key, &PRODUCT[..], Vec::new()).unwrap();
        (carol, delivery, ct, enc)
    }

    /// Up to the head of message 4 and the encrypted product.
    fn delivered(&self, rng: &mut impl Rng) -> (ExpectDelivery, Vec<u8>, Vec<u8>) {
        let (carol, delivery, ct, enc) = self.delivery(rng);
        let (head, _sale) = delivery.finish(rng, &self.vendor, enc).unwrap();
        (carol, head, ct)
    }

    /// Bill and product checked: Carol may pay.
    fn ready(&self, rng: &mut impl Rng) -> ReadyToPay {
        let (carol, head, ct) = self.delivered(rng);
        carol
            .on_delivery(&head)
            .unwrap()
            .on_product(encrypted_of(&ct))
            .unwrap()
    }

    /// Message 5, from Carol's account.
    fn pay(&self, rng: &mut impl Rng, ready: ReadyToPay) -> (ExpectReceipt, Vec<u8>) {
        ready
            .pay_from_account(
                rng,
                &self.carol,
                &self.broker_peer,
                self.carol_account.clone(),
                &|_| false,
            )
            .unwrap()
    }

    /// The broker's answer to an account PaymentOrder: message 6.
    fn receipt(&self, rng: &mut impl Rng, po: &[u8]) -> Vec<u8> {
        let BrokerReply::Receipt(r) = self
            .broker
            .on_payment_order(NOW, rng, po, &self.ledger)
            .unwrap()
        else {
            panic!("an account payment is answered with the receipt");
        };
        r
    }

    /// A whole normal-mode purchase, the product decrypted at the end.
    fn normal_purchase(&self, rng: &mut impl Rng) -> Vec<u8> {
        let (carol, delivery, ct, enc) = self.delivery(rng);
        let (head, _sale) = delivery.finish(rng, &self.vendor, enc).unwrap();
        let ready = carol
            .on_delivery(&head)
            .unwrap()
            .on_product(encrypted_of(&ct))
            .unwrap();
        self.finish_purchase(rng, ready, &ct)
    }

    /// A whole aggressive-mode purchase, the product decrypted at the end.
    fn aggressive_purchase(&self, rng: &mut impl Rng) -> Vec<u8> {
        let price = eur(PRICE_CENTS);
        let (carol, m1) =
            customer::request(rng, &self.carol, &self.vendor_peer, TUNE, price).unwrap();
        let mut delivery = self
            .vendor
            .on_product_request(NOW, &m1, &self.shelf, &self.handshakes)
            .unwrap();
        let key = delivery.draw_key(rng).clone();
        let (ct, enc) = product::encrypt(rng, &key, &PRODUCT[..], Vec::new()).unwrap();
        let (head, _sale) = delivery.finish(rng, &self.vendor, enc).unwrap();
        let ready = carol
            .on_delivery(&self.carol, &head)
            .unwrap()
            .on_product(encrypted_of(&ct))
            .unwrap();
        self.finish_purchase(rng, ready, &ct)
    }

    /// Messages 5 and 6, then the product decrypted under K.
    fn finish_purchase(&self, rng: &mut impl Rng, ready: ReadyToPay, ct: &[u8]) -> Vec<u8> {
        let (carol, po) = self.pay(rng, ready);
        let r = self.receipt(rng, &po);
        let purchase = carol.on_receipt(&r).unwrap();
        let mut out = Vec::with_capacity(PRODUCT.len());
        product::decrypt(&purchase.key, ct, &mut out).unwrap();
        out
    }
}

/// Length and digest of an encrypted product, as the customer computes them
/// while storing it.
fn encrypted_of(ct: &[u8]) -> Encrypted {
    let mut w = HashingWriter::new(Vec::with_capacity(ct.len()));
    w.write_all(ct).unwrap();
    w.finish().1
}

fn customer_steps(c: &mut Criterion) {
    let m = Market::new(1);
    let (mut setup_rng, mut rng) = (rng(10), rng(11));
    let mut g = c.benchmark_group("speed_customer");

    g.bench_function("m1_negotiate", |b| b.iter(|| m.request(&mut rng)));
    g.bench_function("m2_on_step_to_handshake", |b| {
        b.iter_batched(
            || {
                let (carol, _, m2) = m.offered(&mut setup_rng);
                (carol, m2)
            },
            |(carol, m2)| {
                carol
                    .on_step(&mut rng, &m.carol, &m2, &AcceptFirst)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    // The digest of the encrypted product is computed while it is stored
    // (as it arrives), so it is not part of this step.
    g.bench_function("m4_on_delivery_and_product", |b| {
        b.iter_batched(
            || {
                let (carol, head, ct) = m.delivered(&mut setup_rng);
                (carol, head, encrypted_of(&ct))
            },
            |(carol, head, enc)| carol.on_delivery(&head).unwrap().on_product(enc).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("m5_pay_from_account", |b| {
        b.iter_batched(
            || m.ready(&mut setup_rng),
            |ready| m.pay(&mut rng, ready),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("m6_on_receipt", |b| {
        b.iter_batched(
            || {
                let ready = m.ready(&mut setup_rng);
                let (carol, po) = m.pay(&mut setup_rng, ready);
                (carol, m.receipt(&mut setup_rng, &po))
            },
            |(carol, r)| carol.on_receipt(&r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn vendor_steps(c: &mut Criterion) {
    let m = Market::new(2);
    let (mut setup_rng, mut rng) = (rng(20), rng(21));
    let mut g = c.benchmark_group("speed_vendor");

    // The vendor keeps no register of NegotiationRequests (a request only
    // opens a negotiation): the same one may be answered again.
    let (_, m1) = m.request(&mut setup_rng);
    g.bench_function("m1_on_negotiation_request", |b| {
        b.iter(|| {
            m.vendor
                .on_negotiation_request(NOW, &mut rng, &m1, &m.shelf)
                .unwrap()
        })
    });
    g.bench_function("m3_on_handshake", |b| {
        b.iter_batched(
            || {
                let (_, vendor, m3) = m.agreed(&mut setup_rng);
                (vendor, m3)
            },
            |(vendor, m3)| vendor.on_handshake(NOW, &m3, &m.handshakes).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // The bill: {AccountNumber, K} sealed to the broker, signed, under EnKey.
    // The product's encryption is not part of it (see benches/product.rs).
    g.bench_function("m4_finish_bill", |b| {
        b.iter_batched(
            || {
                let (_, delivery, _, enc) = m.delivery(&mut setup_rng);
                (delivery, enc)
            },
            |(delivery, enc)| delivery.finish(&mut rng, &m.vendor, enc).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn broker_steps(c: &mut Criterion) {
    let m = Market::new(3);
    let (mut setup_rng, mut rng) = (rng(30), rng(31));
    let mut g = c.benchmark_group("speed_broker");

    g.bench_function("m5_on_payment_order_account", |b| {
        b.iter_batched(
            || {
                let ready = m.ready(&mut setup_rng);
                m.pay(&mut setup_rng, ready).1
            },
            |po| m.receipt(&mut rng, &po),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn purse_steps(c: &mut Criterion) {
    let m = Market::new(4);
    let (mut setup_rng, mut rng) = (rng(40), rng(41));
    let mut g = c.benchmark_group("speed_purse");
    let price = eur(PRICE_CENTS);
    let order = PaymentOrderId {
        vendor: m.vendor.id(),
        nid: Nid::random(&mut setup_rng),
    };
    let loaded = m.card.to_bytes();
    let copy = || Card::from_bytes(&loaded).unwrap();

    // A new S1 abandons the previous session: the same card serves.
    let mut card = copy();
    g.bench_function("s1_card_authenticate", |b| {
        b.iter(|| card.authenticate(&mut rng))
    });
    // The SAM keeps no state: the same S1 may be answered again.
    let s1 = card.authenticate(&mut setup_rng);
    g.bench_function("s2_sam_debit", |b| {
        b.iter(|| m.sam.debit(&s1, price, &order, &mut rng).unwrap())
    });
    // Each debit on a copy of the loaded card, with its own session.
    g.bench_function("s3_card_debit", |b| {
        b.iter_batched(
            || {
                let mut card = copy();
                let s1 = card.authenticate(&mut setup_rng);
                let (s2, _) = m.sam.debit(&s1, price, &order, &mut setup_rng).unwrap();
                (card, s2)
            },
            |(mut card, s2)| {
                let s3 = card.debit(&s2).unwrap();
                (card, s3)
            },
            BatchSize::SmallInput,
        )
    });
    // Confirming is idempotent: the same S3 may be checked again.
    let (s2, pending) = m.sam.debit(&s1, price, &order, &mut setup_rng).unwrap();
    let s3 = card.debit(&s2).unwrap();
    g.bench_function("sam_confirm", |b| {
        b.iter(|| m.sam.confirm(&pending, &s3).unwrap())
    });
    g.finish();
}

fn purchases(c: &mut Criterion) {
    let m = Market::new(5);
    let mut rng = rng(51);
    let mut g = c.benchmark_group("speed_purchase");
    g.throughput(Throughput::Elements(1));
    assert_eq!(m.normal_purchase(&mut rng), PRODUCT);
    assert_eq!(m.aggressive_purchase(&mut rng), PRODUCT);
    g.bench_function("normal_16B", |b| b.iter(|| m.normal_purchase(&mut rng)));
    g.bench_function("aggressive_16B", |b| {
        b.iter(|| m.aggressive_purchase(&mut rng))
    });
    g.finish();
}

/// The public-key operations of one normal-mode purchase (AcceptFirst, one
/// negotiation round, paid from an account), counted from the roles' code:
///
/// | step | Ed25519 sign | verify | HPKE seal | open | X.509 validation |
/// |---|---|---|---|---|---|
/// | customer m1 `negotiate` (envelope) | 1 | | 1 | | |
/// | vendor m1 `on_negotiation_request` | | 1 | | 1 | 1 |
/// | customer m2 `on_step` (Handshake) | 1 | | | | |
/// | vendor m3 `on_handshake` | | 1 | | | |
/// | vendor m4 `finish` (bill, its secret) | 1 | | 1 | | |
/// | customer m4 `on_delivery` | | 1 | | | |
/// | customer m5 `pay_from_account` (envelope) | 1 | | 1 | | |
/// | broker m5 `on_payment_order` (order, bill, secret, receipt) | 1 | 2 | | 2 | 1 |
/// | customer m6 `on_receipt` | | 1 | | | |
/// | **total** | **5** | **6** | **3** | **3** | **2** |
///
/// An X.509 validation (`SpeedTrust::identity`) is timed whole: parsing,
/// the CA's signature on the certificate and on its CRL (two more Ed25519
/// verifications), dates and revocation. Payload sizes are the wire lengths
/// of the real messages of one purchase (a little over the signed and
/// sealed bytes, by their framing).
const SIGNS: usize = 5;
const VERIFIES: usize = 6;
const SEALS: usize = 3;
const OPENS: usize = 3;
const VALIDATIONS: usize = 2;

/// The sizes of a normal-mode purchase's messages, from one real run:
/// (signed payloads in the order of the table's verifications, HPKE
/// plaintexts).
fn purchase_sizes(m: &Market, rng: &mut impl Rng) -> ([usize; VERIFIES], [usize; SEALS]) {
    let (carol, m1) = m.request(rng);
    let (vendor, m2) = m
        .vendor
        .on_negotiation_request(NOW, rng, &m1, &m.shelf)
        .unwrap();
    let CustomerNext::Agreed(carol, m3) = carol.on_step(rng, &m.carol, &m2, &AcceptFirst).unwrap()
    else {
        panic!("Carol accepts the first offer");
    };
    let mut delivery = vendor.on_handshake(NOW, &m3, &m.handshakes).unwrap();
    let key = delivery.draw_key(rng).clone();
    let (ct, enc) = product::encrypt(rng, &key, &PRODUCT[..], Vec::new()).unwrap();
    let (head, sale) = delivery.finish(rng, &m.vendor, enc).unwrap();
    let ready = carol
        .on_delivery(&head)
        .unwrap()
        .on_product(encrypted_of(&ct))
        .unwrap();
    let (_, po) = m.pay(rng, ready);
    let r = m.receipt(rng, &po);
    let bill = sale.signed_bill.len();
    let secret = agora_core::wire::encode(&BillSecret {
        account: m.vendor.account.clone(),
        key,
    })
    .len();
    (
        [m1.len(), m3.len(), bill, po.len(), bill, r.len()],
        [m1.len(), secret, po.len()],
    )
}

fn crypto_bound(c: &mut Criterion) {
    let m = Market::new(6);
    let mut rng = rng(61);
    let (signed, sealed) = purchase_sizes(&m, &mut rng);
    let sk = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    let msgs: Vec<Vec<u8>> = signed.iter().map(|&n| vec![0x53; n]).collect();
    let sigs: Vec<_> = msgs.iter().map(|msg| sk.sign(msg)).collect();
    // The signatures made: m1, Handshake, bill, PaymentOrder, receipt.
    let to_sign = [0, 1, 2, 3, 5].map(|i| &msgs[i]);
    assert_eq!(to_sign.len(), SIGNS);
    let xs = X25519Secret::generate(&mut rng);
    let xp = xs.public();
    let plains: Vec<Vec<u8>> = sealed.iter().map(|&n| vec![0x48; n]).collect();
    let cts: Vec<_> = plains
        .iter()
        .map(|p| hpke::seal(&mut rng, &xp, b"agora/bench", b"", p).unwrap())
        .collect();
    assert_eq!((cts.len(), msgs.len()), (OPENS, VERIFIES));
    let cert = m.carol.cert.clone();
    let validate = || m.trust.identity(&cert, NOW, PartyRole::Customer).unwrap();

    let mut g = c.benchmark_group("speed_crypto_bound");
    g.throughput(Throughput::Elements(1));
    g.bench_function("normal_purchase_pk_ops", |b| {
        b.iter(|| {
            for msg in to_sign {
                criterion::black_box(sk.sign(msg));
            }
            for (msg, sig) in msgs.iter().zip(&sigs) {
                vk.verify(msg, sig).unwrap();
            }
            for p in &plains {
                criterion::black_box(hpke::seal(&mut rng, &xp, b"agora/bench", b"", p).unwrap());
            }
            for (enc, ct) in &cts {
                criterion::black_box(hpke::open(&xs, enc, b"agora/bench", b"", ct).unwrap());
            }
            for _ in 0..VALIDATIONS {
                criterion::black_box(validate());
            }
        })
    });
    // The same operations one at a time, at the size of the PaymentOrder
    // (the largest message).
    let (po, po_sig) = (&msgs[3], &sigs[3]);
    let (po_plain, (po_enc, po_ct)) = (&plains[2], &cts[2]);
    g.bench_function("ed25519_sign_order", |b| b.iter(|| sk.sign(po)));
    g.bench_function("ed25519_verify_order", |b| {
        b.iter(|| vk.verify(po, po_sig).unwrap())
    });
    g.bench_function("hpke_seal_order", |b| {
        b.iter(|| hpke::seal(&mut rng, &xp, b"agora/bench", b"", po_plain).unwrap())
    });
    g.bench_function("hpke_open_order", |b| {
        b.iter(|| hpke::open(&xs, po_enc, b"agora/bench", b"", po_ct).unwrap())
    });
    g.bench_function("x509_identity_validation", |b| b.iter(validate));
    g.finish();
}

criterion_group!(
    benches,
    customer_steps,
    vendor_steps,
    broker_steps,
    purse_steps,
    purchases,
    crypto_bound
);
criterion_main!(benches);
