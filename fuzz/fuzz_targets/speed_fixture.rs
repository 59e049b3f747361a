//! The fixed SPEED market of the `speed_*` targets and of their seeds
//! (`examples/make_seeds.rs` includes this file too, so the seeds are made
//! under the very keys the targets hold). Every key comes from a fixed seed
//! and every random choice from a fixed ChaCha20 seed, one per protocol
//! step ([`rng`]), so a state rebuilt for one run is the state the seeds
//! were made against, whichever earlier steps were replayed to reach it.
//!
//! [`Speed::new`] runs one purchase of each kind once (normal mode paid
//! from Carol's account and by her e-purse card, aggressive mode) and keeps
//! every message and every key a target needs. The step states themselves
//! are consumed by their handlers and cannot be copied, so the targets
//! rebuild them per run with the constructors of [`Parties`] and [`Speed`]
//! (replaying the earlier steps, or loading Carol's saved state); the dear
//! parts of those (HPKE, signatures, certificate validation) are noted on
//! each.
//!
//! The "sealed" steps of the targets take the plaintext of a message: the
//! fixture authenticates and encrypts the fuzz input as the honest sender
//! would ([`Parties::seal_mac`], [`Parties::seal_signed`],
//! [`Parties::envelope`], [`PurseKeys`]), so that the checks after the
//! cryptography are fuzzed too.
#![allow(dead_code)] // each includer uses part of it

use agora_core::crypto::{hmac_sha256, MacKey, Secret, SigningKey, X25519Public, X25519Secret};
use agora_core::wire::{self, cose, envelope, sym, Message, Tag};
use agora_core::{Currency, Money, Timestamp};
use agora_pki::{Agency, CrlParams, PartyRole, TrustAnchors};
use agora_speed::broker::{Broker, BrokerReply};
use agora_speed::customer::{
    self, CustomerNext, ExpectAggressiveDelivery, ExpectDelivery, ExpectPurseDebit, ExpectReceipt,
    Identity, Negotiating, ReadyToPay,
};
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Ledger, MemoryLedger, Posting};
use agora_speed::msg::{NegotiationRequest, PaymentMode, PaymentOrder};
use agora_speed::product::Encrypted;
use agora_speed::purse::{Card, PendingDebit, PendingLoad, Sam};
use agora_speed::strategy::{AcceptFirst, PriceRule, Target};
use agora_speed::vendor::{Catalogue, MemoryHandshakes, Offer, Sale, Vendor, VendorNegotiation};
use agora_speed::{AccountNumber, CardId, Keys, Nid, PaymentOrderId, Peer, SpeedTrust};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The targets' clock.
pub const NOW: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

/// Carol (the customer), the vendor and the broker: one-byte key seeds.
pub const CAROL: u8 = 31;
pub const VENDOR: u8 = 32;
pub const BROKER: u8 = 33;

/// Keys from a one-byte seed.
pub fn keys(seed: u8) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&[seed; 32]),
        enc: X25519Secret::from_bytes([seed ^ 0x80; 32]),
    }
}

/// The issuer master key of the broker's SAM, and Carol's card.
pub const MASTER: [u8; 32] = [0x4d; 32];
pub const CARD: CardId = CardId([9; 16]);

/// Accounts at the broker.
pub const CAROL_ACCOUNT: &str = "C-CAROL";
pub const SHOP: &str = "V-SHOP";
pub const FLOAT: &str = "B-FLOAT-EUR";
pub const CASH: &str = "B-CASH-EUR";
/// What Carol has in her account (cents) before any purchase.
pub const DEPOSIT_CENTS: i64 = 10_000;
/// What her card holds (cents) before any purchase.
pub const CARD_CENTS: u64 = 5_000;

/// The products: negotiated (normal mode), sold at a fixed price in
/// aggressive mode, and too large for aggressive mode.
pub const SONG: &str = "SONG-1: a song, 4 minutes, MP3";
pub const LEAFLET: &str = "LEAFLET-1: a leaflet, 2 pages, PDF";
pub const FILM: &str = "FILM-1: a film, too large for aggressive mode";
pub const LEAFLET_CENTS: u64 = 200;

/// The encrypted product as every delivery of the fixture announces it:
/// the roles only compare its length and digest with the bill, so nothing
/// needs to be encrypted.
pub const PRODUCT: Encrypted = Encrypted {
    len: 4096,
    hash: [0x5a; 32],
};

/// The RNG of one protocol step: deterministic, so a crash replays exactly
/// and a rebuilt state equals the seeds' one.
pub fn rng(step: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x5eed_0000 + step)
}
pub const R_NEGOTIATE: u64 = 1;
pub const R_VENDOR_STEP: u64 = 2;
pub const R_HANDSHAKE: u64 = 3;
pub const R_DELIVERY: u64 = 4;
pub const R_PAY: u64 = 5;
pub const R_BROKER: u64 = 6;
pub const R_CARD: u64 = 7;
pub const R_DEBIT: u64 = 8;
pub const R_REQUEST: u64 = 9;
pub const R_SEAL: u64 = 10;
pub const R_SAM: u64 = 11;
pub const R_CA: u64 = 12;

pub fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").expect("EUR"))
}

pub fn num(s: &str) -> AccountNumber {
    AccountNumber::new(s).expect("account number")
}

/// The customer strategy of the targets' NegotiationStep handler: opens at
/// 7.00, rises by 0.50 to 9.00, so an offer may be accepted, countered or
/// walked away from.
pub fn haggler() -> Target {
    Target {
        target: eur(700),
        step: 50,
        limit: eur(900),
    }
}

/// The vendor's catalogue.
#[derive(Debug)]
pub struct Shelf(BTreeMap<&'static str, Offer>);

impl Catalogue for Shelf {
    fn offer(&self, product_id: &str) -> Option<Offer> {
        self.0.get(product_id).cloned()
    }
}

fn shelf() -> Shelf {
    let mut m = BTreeMap::new();
    let offer = |rule: PriceRule, len: u64| Offer {
        strategy: Arc::new(rule),
        len,
    };
    m.insert(
        SONG,
        offer(
            PriceRule {
                list: eur(1000),
                floor: eur(800),
                step: 100,
            },
            150_000,
        ),
    );
    m.insert(LEAFLET, offer(PriceRule::fixed(eur(LEAFLET_CENTS)), 4_096));
    m.insert(FILM, offer(PriceRule::fixed(eur(500)), 2_000_000_000));
    Shelf(m)
}

/// The two MAC keys of [`CARD`], derived from [`MASTER`] as
/// `agora_speed::purse` documents it (the SAM's keys are private): the
/// purse target MACs its structured inputs with them. [`Parties::new`] checks
/// them against a real S1 and load command, so a change of the derivation fails at
/// once instead of making those inputs useless.
pub struct PurseKeys {
    /// `K_card→SAM`: S1, S3, load confirmations.
    pub to_sam: MacKey,
    /// `K_SAM→card`: S2, load commands.
    pub to_card: MacKey,
}

impl PurseKeys {
    fn derive(master: &[u8; 32], card: &CardId) -> PurseKeys {
        const INFO: &[u8] = agora_speed::purse::KEY_DIVERSIFICATION_INFO;
        let mut info = INFO.to_vec();
        info.extend_from_slice(&card.0);
        let card_key = hmac_sha256(master, &info);
        let expand = |label: &[u8]| {
            let mut info = INFO.to_vec();
            info.push(b'/');
            info.extend_from_slice(label);
            info.push(1);
            MacKey::new(hmac_sha256(&card_key, &info))
        };
        PurseKeys {
            to_sam: expand(b"card-to-sam"),
            to_card: expand(b"sam-to-card"),
        }
    }
}

/// A fresh ledger: Carol's, the vendor's and the broker's accounts, with
/// [`DEPOSIT_CENTS`] deposited to Carol and [`CARD_CENTS`] moved onto her
/// card. Cheap (a few map inserts): the broker target makes one per run, so
/// that a seed's payment is not "replayed" on the next run.
pub fn ledger(carol: &Peer, vendor: &Peer, broker: &Peer) -> MemoryLedger {
    let ledger = MemoryLedger::new();
    let currency = eur(0).currency;
    for (n, owner, kind) in [
        (CAROL_ACCOUNT, carol.id(), AccountKind::Customer),
        (SHOP, vendor.id(), AccountKind::Vendor),
        (FLOAT, broker.id(), AccountKind::PurseFloat),
        (CASH, broker.id(), AccountKind::External),
    ] {
        ledger
            .open_account(&Account {
                number: num(n),
                owner,
                kind,
                currency,
                allow_credit: false,
            })
            .expect("account");
    }
    for (id, memo, from, to, cents) in [
        (1u8, "deposit", CASH, CAROL_ACCOUNT, DEPOSIT_CENTS),
        (2, "card load", CAROL_ACCOUNT, FLOAT, CARD_CENTS as i64),
    ] {
        ledger
            .post(&JournalEntry {
                id: [id; 16],
                at: NOW,
                memo: memo.into(),
                postings: vec![
                    Posting {
                        account: num(from),
                        cents: -cents,
                    },
                    Posting {
                        account: num(to),
                        cents,
                    },
                ],
            })
            .expect("post");
    }
    ledger
}

/// The balances of the four accounts, in cents.
pub fn balances(ledger: &MemoryLedger) -> [i64; 4] {
    [CAROL_ACCOUNT, SHOP, FLOAT, CASH].map(|n| ledger.balance(&num(n)).expect("balance").cents)
}

fn identity(ca: &Agency, rng: &mut ChaCha20Rng, name: &str, role: PartyRole, k: &Keys) -> Vec<u8> {
    agora_speed::testkit::identity(ca, rng, name, role, k, NOW)
}

/// The parties: a CA (with a current CRL) that certified Carol and the
/// vendor, the broker with the vendor registered and a purse float in EUR,
/// the SAM, and Carol's card (loaded with [`CARD_CENTS`], its session
/// open). Public keys are computed once (each is a scalar multiplication).
pub struct Parties {
    pub trust: SpeedTrust,
    pub carol: Identity,
    pub carol_peer: Peer,
    pub vendor: Vendor,
    pub vendor_peer: Peer,
    pub broker: Broker,
    pub broker_keys: Keys,
    pub broker_peer: Peer,
    pub shelf: Shelf,
    pub sam: Sam,
    pub purse_keys: PurseKeys,
    /// The card file, with the session of [`Parties::s1`] open (a plain
    /// `Vec`: the fixture's card key is no secret).
    pub card_open: Vec<u8>,
    /// S1 ([`R_CARD`]).
    pub s1: Vec<u8>,
}

impl Parties {
    pub fn new() -> Parties {
        let mut ca_rng = rng(R_CA);
        let ca = Agency::create(
            "SPEED Fuzz CA",
            SigningKey::from_seed(&[30; 32]),
            NOW.minus_secs(30 * DAY),
            NOW.plus_secs(3650 * DAY),
            &mut ca_rng,
        )
        .expect("CA");
        let mut cas = TrustAnchors::new();
        cas.add_der(ca.certificate_der()).expect("trust anchor");
        let crl = ca
            .issue_crl(&CrlParams {
                this_update: NOW.minus_secs(60),
                next_update: NOW.plus_secs(7 * DAY),
                crl_number: 1,
                revoked: vec![],
            })
            .expect("CRL");
        let trust = SpeedTrust::new(cas, vec![crl]);
        let carol_keys = keys(CAROL);
        let carol_cert = identity(&ca, &mut ca_rng, "carol", PartyRole::Customer, &carol_keys);
        let carol_peer = carol_keys.peer();
        let vendor_keys = keys(VENDOR);
        let vendor_cert = identity(&ca, &mut ca_rng, "shop", PartyRole::Vendor, &vendor_keys);
        let vendor_peer = vendor_keys.peer();
        let broker_keys = keys(BROKER);
        let broker_peer = broker_keys.peer();
        let mut broker = Broker::new(keys(BROKER), trust.clone(), Sam::new(Secret::new(MASTER)));
        broker.add_vendor(&vendor_cert, NOW).expect("vendor");
        broker.set_float(eur(0).currency, num(FLOAT));
        let vendor = Vendor {
            keys: vendor_keys,
            account: num(SHOP),
            broker: broker_peer,
            trust: trust.clone(),
            max_aggressive_len: agora_speed::vendor::DEFAULT_MAX_AGGRESSIVE_LEN,
        };

        let sam = Sam::new(Secret::new(MASTER));
        let mut card = sam.issue(CARD, eur(0).currency);
        let mut card_rng = rng(R_CARD);
        let s1 = card.authenticate(&mut card_rng);
        let (cmd, pending) = sam.load(&s1, eur(CARD_CENTS), &mut card_rng).expect("load");
        let conf = card.load(&cmd).expect("card load");
        sam.confirm_load(&pending, &conf).expect("load confirmed");
        let s1 = card.authenticate(&mut card_rng);
        let purse_keys = PurseKeys::derive(&MASTER, &CARD);
        cose::verify_mac::<agora_speed::purse::CardAuth>(&s1, &purse_keys.to_sam)
            .expect("the fixture derives the card's keys as the SAM does");
        cose::verify_mac::<agora_speed::purse::LoadCommand>(&cmd, &purse_keys.to_card)
            .expect("the fixture derives the card's keys as the SAM does");
        Parties {
            trust,
            carol: Identity {
                keys: carol_keys,
                cert: carol_cert,
            },
            carol_peer,
            vendor,
            vendor_peer,
            broker,
            broker_keys,
            broker_peer,
            shelf: shelf(),
            sam,
            purse_keys,
            card_open: card.to_bytes().to_vec(),
            s1,
        }
    }

    /// A fresh ledger ([`ledger`]).
    pub fn ledger(&self) -> MemoryLedger {
        ledger(&self.carol_peer, &self.vendor_peer, &self.broker_peer)
    }

    /// Carol's card, its session open. Cheap.
    pub fn card(&self) -> Card {
        Card::from_bytes(&self.card_open).expect("the fixture's card")
    }

    /// Carol waiting for the vendor's first step, and message 1. Dear: an
    /// HPKE seal and a signature.
    pub fn negotiate(&self) -> (Negotiating, Vec<u8>) {
        customer::negotiate(
            &mut rng(R_NEGOTIATE),
            &self.carol,
            &self.vendor_peer,
            SONG,
            &AcceptFirst,
        )
        .expect("request")
    }

    /// Carol after accepting `vendor_step`, and her Handshake:
    /// [`Self::negotiate`] and a signature.
    pub fn agree(&self, vendor_step: &[u8]) -> (ExpectDelivery, Vec<u8>) {
        match self
            .negotiate()
            .0
            .on_step(
                &mut rng(R_HANDSHAKE),
                &self.carol,
                vendor_step,
                &AcceptFirst,
            )
            .expect("step")
        {
            CustomerNext::Agreed(e, handshake) => (e, handshake),
            _ => panic!("Carol accepts the first offer"),
        }
    }

    /// Carol's aggressive-mode request for the leaflet. Dear: an HPKE seal
    /// and a signature.
    pub fn aggressive_request(&self) -> (ExpectAggressiveDelivery, Vec<u8>) {
        customer::request(
            &mut rng(R_REQUEST),
            &self.carol,
            &self.vendor_peer,
            LEAFLET,
            eur(LEAFLET_CENTS),
        )
        .expect("product request")
    }

    /// The vendor's answer to `request` ([`R_VENDOR_STEP`]). Dear: an HPKE
    /// open, a certificate validation and a signature check.
    pub fn vendor_answer(&self, request: &[u8]) -> (VendorNegotiation, Vec<u8>) {
        self.vendor
            .on_negotiation_request(NOW, &mut rng(R_VENDOR_STEP), request, &self.shelf)
            .expect("the vendor answers")
    }

    // ---- Sealing structured inputs as the honest sender would -----------

    /// `|payload|^{mac}_{enc}` under `tag` (NegotiationStep, messages a, b).
    pub fn seal_mac(&self, enc: &Secret<32>, mac: &MacKey, tag: Tag, payload: &[u8]) -> Vec<u8> {
        sym::seal_raw(enc, tag, &mut rng(R_SEAL), &cose::mac_raw(mac, payload))
    }

    /// `|{payload}_{signer^-1}|_{enc}` under `tag` (Handshake, bill,
    /// receipt).
    pub fn seal_signed(
        &self,
        enc: &Secret<32>,
        signer: &SigningKey,
        tag: Tag,
        payload: &[u8],
    ) -> Vec<u8> {
        sym::seal_raw(enc, tag, &mut rng(R_SEAL), &cose::sign_raw(signer, payload))
    }

    /// `PKE(payload, Sign(payload))` to `recipient` under `tag`, from bytes
    /// rather than a message. [`Speed::new`] checks that it agrees with
    /// `envelope::seal`.
    pub fn envelope(
        &self,
        sender: &SigningKey,
        recipient: &X25519Public,
        tag: Tag,
        payload: &[u8],
    ) -> Vec<u8> {
        envelope::seal_signed(
            &mut rng(R_SEAL),
            recipient,
            tag,
            &cose::sign_raw(sender, payload),
        )
        .expect("HPKE seal")
    }

    /// The payload of a `COSE_Sign1` by `signer`.
    pub fn signed_payload(&self, signed: &[u8], signer: &Peer) -> Vec<u8> {
        cose::verify_raw(signed, &signer.sign).expect("signed payload")
    }

    /// The plaintext of `|X|^{mac}_{enc}`.
    pub fn mac_payload(&self, sealed: &[u8], enc: &Secret<32>, mac: &MacKey, tag: Tag) -> Vec<u8> {
        let inner = sym::open_raw(sealed, enc, tag, 4096).expect("open");
        cose::verify_mac_raw(&inner, mac).expect("MAC")
    }

    /// The plaintext of `|{X}_{signer^-1}|_{enc}`.
    pub fn signed_sealed_payload(
        &self,
        sealed: &[u8],
        enc: &Secret<32>,
        signer: &Peer,
        tag: Tag,
    ) -> Vec<u8> {
        let inner = sym::open_raw(sealed, enc, tag, 4096).expect("open");
        self.signed_payload(&inner, signer)
    }

    /// The signed payload of an envelope of an `M` from `sender`.
    pub fn envelope_payload<M: Message>(
        &self,
        sealed: &[u8],
        recipient: &X25519Secret,
        sender: &Peer,
    ) -> Vec<u8> {
        let opened =
            envelope::open::<M>(sealed, recipient, |kid| sender.key_if(kid)).expect("envelope");
        self.signed_payload(&opened.signed, sender)
    }
}

/// The parties and one run of each purchase: every message, and the keys
/// the structured inputs are sealed under.
pub struct Speed {
    pub parties: Parties,

    // Normal mode.
    /// Message 1 ([`R_NEGOTIATE`], Carol with [`AcceptFirst`]).
    pub negotiation_request: Vec<u8>,
    /// Its NID, EnKey and SignKey.
    pub nid: Nid,
    pub en_key: Secret<32>,
    pub sign_key: MacKey,
    /// Message 2, the vendor's first offer ([`R_VENDOR_STEP`]).
    pub vendor_step: Vec<u8>,
    /// Message 3, Carol's Handshake of it ([`R_HANDSHAKE`]).
    pub handshake: Vec<u8>,
    /// Message 4, its head ([`R_DELIVERY`]).
    pub delivery: Vec<u8>,
    /// The vendor's signed bill in it, and the sale's other parts ([`Sale`]
    /// is not `Clone`).
    pub signed_bill: Vec<u8>,
    pub order: PaymentOrderId,
    pub price: Money,
    pub rec_key: Secret<32>,
    /// Carol's saved states (`to_bytes`): bill and product checked, paid
    /// from her account, paid by card.
    pub saved_ready: Vec<u8>,
    pub saved_receipt: Vec<u8>,
    pub saved_purse: Vec<u8>,

    // Paid from Carol's account.
    /// Message 5 ([`R_PAY`]) and message 6 ([`R_BROKER`]).
    pub account_order: Vec<u8>,
    pub receipt: Vec<u8>,
    /// A ledger where that payment is recorded (for receipt requests).
    pub paid_ledger: MemoryLedger,

    // Paid by card.
    /// Message 5 with the card ([`R_PAY`]) and its BEncKey and BSignKey.
    pub card_order: Vec<u8>,
    pub b_enc_key: Secret<32>,
    pub b_sign_key: MacKey,
    /// Message a ([`R_BROKER`]), and the debit as the broker's ledger holds
    /// it.
    pub purse_debit: Vec<u8>,
    pub held: Vec<u8>,
    /// Message b ([`R_DEBIT`]) and the receipt that answers it.
    pub purse_confirm: Vec<u8>,
    pub card_receipt: Vec<u8>,

    // Aggressive mode.
    /// Message 1 ([`R_REQUEST`]) and the head of message 2 ([`R_DELIVERY`]).
    pub product_request: Vec<u8>,
    pub aggressive_delivery: Vec<u8>,
    pub aggressive_signed_bill: Vec<u8>,

    // The SAM's own run on the open card ([`R_SAM`]): S2 and S3, the load
    // command and its confirmation, each on its own copy of the card.
    pub sam_order: PaymentOrderId,
    pub debit_cmd: Vec<u8>,
    pub pending_debit: PendingDebit,
    pub debit_conf: Vec<u8>,
    pub load_cmd: Vec<u8>,
    pub pending_load: PendingLoad,
    pub load_conf: Vec<u8>,
}

/// What the SAM debits and loads in its run.
pub const SAM_DEBIT_CENTS: u64 = 500;
pub const SAM_LOAD_CENTS: u64 = 1_000;

impl std::ops::Deref for Speed {
    type Target = Parties;
    fn deref(&self) -> &Parties {
        &self.parties
    }
}

impl Speed {
    pub fn new() -> Speed {
        let p = Parties::new();

        // Normal mode, up to the delivery.
        let (_, negotiation_request) = p.negotiate();
        let opened =
            envelope::open::<NegotiationRequest>(&negotiation_request, &p.vendor.keys.enc, |kid| {
                p.carol_peer.key_if(kid)
            })
            .expect("the vendor reads the request");
        let replica = p.envelope(
            &p.carol.keys.sign,
            &p.vendor_peer.enc,
            NegotiationRequest::TAG,
            &wire::encode(&opened.message),
        );
        envelope::open::<NegotiationRequest>(&replica, &p.vendor.keys.enc, |kid| {
            p.carol_peer.key_if(kid)
        })
        .expect("the fixture seals envelopes as agora_core does");
        let request = opened.message;
        let (vendor, vendor_step) = p.vendor_answer(&negotiation_request);
        let (expect, handshake) = p.agree(&vendor_step);
        let mut delivery = vendor
            .on_handshake(NOW, &handshake, &MemoryHandshakes::default())
            .expect("handshake");
        let mut r = rng(R_DELIVERY);
        delivery.draw_key(&mut r);
        let (delivery, sale) = delivery
            .finish(&mut r, &p.vendor, PRODUCT)
            .expect("delivery");
        let saved_ready = expect
            .on_delivery(&delivery)
            .expect("Carol reads the delivery")
            .on_product(PRODUCT)
            .expect("the product")
            .to_bytes(&p.vendor_peer.sign)
            .to_vec();

        // The SAM's own run on the open card: S2 and S3, the load command
        // and its confirmation, each on its own copy of the card.
        let sam_order = PaymentOrderId {
            vendor: agora_core::KeyId([0x77; 32]),
            nid: Nid([0x78; 16]),
        };
        let mut r = rng(R_SAM);
        let (debit_cmd, pending_debit) = p
            .sam
            .debit(&p.s1, eur(SAM_DEBIT_CENTS), &sam_order, &mut r)
            .expect("S2");
        let debit_conf = p.card().debit(&debit_cmd).expect("S3");
        p.sam
            .confirm(&pending_debit, &debit_conf)
            .expect("S3 confirmed");
        let (load_cmd, pending_load) = p
            .sam
            .load(&p.s1, eur(SAM_LOAD_CENTS), &mut r)
            .expect("load");
        let load_conf = p.card().load(&load_cmd).expect("load confirmation");
        p.sam
            .confirm_load(&pending_load, &load_conf)
            .expect("load confirmed");

        let mut s = Speed {
            negotiation_request,
            nid: request.nid,
            en_key: request.en_key.clone(),
            sign_key: MacKey::new(*request.sign_key.expose()),
            vendor_step,
            handshake,
            delivery,
            signed_bill: sale.signed_bill,
            order: sale.order,
            price: sale.price,
            rec_key: p.vendor.rec_key(&sale.order).expect("RecKey"),
            saved_ready,
            saved_receipt: vec![],
            saved_purse: vec![],
            account_order: vec![],
            receipt: vec![],
            paid_ledger: p.ledger(),
            card_order: vec![],
            b_enc_key: Secret::new([0; 32]),
            b_sign_key: MacKey::new([0; 32]),
            purse_debit: vec![],
            held: vec![],
            purse_confirm: vec![],
            card_receipt: vec![],
            product_request: vec![],
            aggressive_delivery: vec![],
            aggressive_signed_bill: vec![],
            sam_order,
            debit_cmd,
            pending_debit,
            debit_conf,
            load_cmd,
            pending_load,
            load_conf,
            parties: p,
        };
        s.pay_from_account();
        s.pay_by_card();
        s.aggressive_mode();
        s
    }

    fn pay_from_account(&mut self) {
        let (expect, po) = self
            .ready_to_pay()
            .pay_from_account(
                &mut rng(R_PAY),
                &self.carol,
                &self.broker_peer,
                num(CAROL_ACCOUNT),
                &|_| false,
            )
            .expect("payment order");
        self.saved_receipt = expect.to_bytes(&self.vendor_peer.sign).to_vec();
        self.account_order = po;
        let BrokerReply::Receipt(receipt) = self
            .broker
            .on_payment_order(
                NOW,
                &mut rng(R_BROKER),
                &self.account_order,
                &self.paid_ledger,
            )
            .expect("paid")
        else {
            panic!("a receipt")
        };
        self.receipt = receipt;
        self.expect_receipt()
            .on_receipt(&self.receipt)
            .expect("Carol reads the receipt");
    }

    fn pay_by_card(&mut self) {
        let (expect, po) = self
            .ready_to_pay()
            .pay_by_card(
                &mut rng(R_PAY),
                &self.carol,
                &self.broker_peer,
                self.s1.clone(),
                &|_| false,
            )
            .expect("payment order");
        self.saved_purse = expect.to_bytes(&self.vendor_peer.sign).to_vec();
        let opened = envelope::open::<PaymentOrder>(&po, &self.broker_keys.enc, |kid| {
            self.carol_peer.key_if(kid)
        })
        .expect("the broker reads the order");
        let PaymentMode::Purse {
            enc_key, sign_key, ..
        } = opened.message.mode
        else {
            panic!("paid by card")
        };
        self.b_enc_key = enc_key;
        self.b_sign_key = sign_key;
        self.card_order = po;
        let ledger = self.ledger();
        let BrokerReply::PurseDebit(a) = self
            .broker
            .on_payment_order(NOW, &mut rng(R_BROKER), &self.card_order, &ledger)
            .expect("held")
        else {
            panic!("message a")
        };
        self.purse_debit = a;
        self.held = ledger
            .held(&self.order)
            .expect("held")
            .expect("a held debit");
        let mut card = self.card();
        let (_, b) = self
            .expect_purse_debit()
            .on_debit(&mut rng(R_DEBIT), &self.purse_debit, |s2| card.debit(s2))
            .expect("message b");
        self.purse_confirm = b;
        self.card_receipt = self
            .broker
            .on_purse_confirm(NOW, &self.order, &self.purse_confirm, &ledger)
            .expect("paid by card");
    }

    fn aggressive_mode(&mut self) {
        let (expect, request) = self.aggressive_request();
        let mut delivery = self
            .vendor
            .on_product_request(NOW, &request, &self.shelf, &MemoryHandshakes::default())
            .expect("product request");
        self.product_request = request;
        let mut r = rng(R_DELIVERY);
        delivery.draw_key(&mut r);
        let (head, sale) = delivery
            .finish(&mut r, &self.vendor, PRODUCT)
            .expect("delivery");
        self.aggressive_delivery = head;
        self.aggressive_signed_bill = sale.signed_bill;
        expect
            .on_delivery(&self.carol, &self.aggressive_delivery)
            .expect("Carol reads the aggressive delivery");
    }

    // ---- Per-run states -------------------------------------------------

    /// Carol waiting for the delivery: [`Parties::agree`].
    pub fn expect_delivery(&self) -> ExpectDelivery {
        self.agree(&self.vendor_step).0
    }

    /// Carol with the bill and the product checked, from her saved state:
    /// a signature check.
    pub fn ready_to_pay(&self) -> ReadyToPay {
        ReadyToPay::from_bytes(&self.saved_ready).expect("the fixture's saved state")
    }

    /// Carol after paying from her account, from her saved state: a
    /// signature check.
    pub fn expect_receipt(&self) -> ExpectReceipt {
        ExpectReceipt::from_bytes(&self.saved_receipt).expect("the fixture's saved state")
    }

    /// Carol after paying by card, waiting for message a, from her saved
    /// state: a signature check.
    pub fn expect_purse_debit(&self) -> ExpectPurseDebit {
        ExpectPurseDebit::from_bytes(&self.saved_purse).expect("the fixture's saved state")
    }

    /// The vendor after its first offer: [`Parties::vendor_answer`].
    pub fn vendor_negotiation(&self) -> VendorNegotiation {
        self.vendor_answer(&self.negotiation_request).0
    }

    /// What the vendor keeps of the normal-mode sale.
    pub fn sale(&self) -> Sale {
        Sale {
            order: self.order,
            price: self.price,
            signed_bill: self.signed_bill.clone(),
        }
    }

    /// A ledger holding the card debit of the normal-mode bill, as the
    /// broker left it after message a. Cheap.
    pub fn held_ledger(&self, held: &[u8]) -> MemoryLedger {
        let ledger = self.ledger();
        ledger
            .hold(&self.order, held, NOW)
            .expect("the fixture's hold");
        ledger
    }
}

/// The steps of the handler targets: the first byte of an input, modulo the
/// target's `COUNT`, picks one (the seeds are made with the same numbers).
/// `*_SEALED` steps take the plaintext of the message and seal it as its
/// honest sender would.
pub mod steps {
    /// `speed_customer`.
    pub mod customer {
        pub const STEP: u8 = 0;
        pub const STEP_SEALED: u8 = 1;
        pub const DELIVERY: u8 = 2;
        pub const DELIVERY_SEALED: u8 = 3;
        pub const AGGRESSIVE_DELIVERY: u8 = 4;
        pub const AGGRESSIVE_DELIVERY_SEALED: u8 = 5;
        pub const PRODUCT: u8 = 6;
        pub const RECEIPT: u8 = 7;
        pub const RECEIPT_SEALED: u8 = 8;
        pub const PURSE_DEBIT: u8 = 9;
        pub const PURSE_DEBIT_SEALED: u8 = 10;
        pub const PAY_BY_CARD: u8 = 11;
        pub const COUNT: u8 = 12;
    }
    /// `speed_vendor`.
    pub mod vendor {
        pub const REQUEST: u8 = 0;
        pub const REQUEST_SEALED: u8 = 1;
        pub const PRODUCT_REQUEST: u8 = 2;
        pub const PRODUCT_REQUEST_SEALED: u8 = 3;
        pub const STEP: u8 = 4;
        pub const STEP_SEALED: u8 = 5;
        pub const HANDSHAKE: u8 = 6;
        pub const HANDSHAKE_SEALED: u8 = 7;
        pub const RECEIPT: u8 = 8;
        pub const RECEIPT_SEALED: u8 = 9;
        pub const COUNT: u8 = 10;
    }
    /// `speed_broker`.
    pub mod broker {
        pub const ORDER: u8 = 0;
        pub const ORDER_SEALED: u8 = 1;
        pub const BILL_SEALED: u8 = 2;
        pub const CONFIRM: u8 = 3;
        pub const CONFIRM_SEALED: u8 = 4;
        pub const HELD: u8 = 5;
        pub const RECEIPT_REQUEST: u8 = 6;
        pub const BILL_SECRET: u8 = 7;
        pub const CARD_LOAD: u8 = 8;
        pub const CARD_LOAD_SEALED: u8 = 9;
        pub const BALANCE: u8 = 10;
        pub const BALANCE_SEALED: u8 = 11;
        pub const COUNT: u8 = 12;
    }
    /// `speed_purse`.
    pub mod purse {
        pub const DEBIT: u8 = 0;
        pub const DEBIT_SEALED: u8 = 1;
        pub const LOAD: u8 = 2;
        pub const LOAD_SEALED: u8 = 3;
        pub const AUTH: u8 = 4;
        pub const AUTH_SEALED: u8 = 5;
        pub const CONFIRM: u8 = 6;
        pub const CONFIRM_SEALED: u8 = 7;
        pub const CARD_FILE: u8 = 8;
        pub const PENDING: u8 = 9;
        pub const COUNT: u8 = 10;
    }
}
