//! The vendor (paper section 4): answers a NegotiationRequest with its price
//! rule, delivers the encrypted product and the signed bill after a
//! Handshake (normal mode) or at once for a small product at its price
//! (aggressive mode), and keeps a register of Handshakes so that a replayed
//! one delivers nothing twice (section 5.3).
//!
//! [`Vendor::on_negotiation_request`] -> [`VendorNegotiation`] (steps) ->
//! [`VendorNegotiation::on_handshake`] -> [`Delivery`] -> the driver
//! encrypts the product under [`Delivery::key`] -> [`Delivery::finish`]:
//! the head of message 4. [`Vendor::on_product_request`] is the aggressive
//! mode's way to a [`Delivery`].

use crate::msg::{
    self, AggressiveDelivery, Bill, BillSecret, Handshake, NegotiationRequest, NegotiationStep,
    ProductDelivery, ProductRequest, Receipt,
};
use crate::product::Encrypted;
use crate::strategy::{Move, VendorStrategy};
use crate::{AccountNumber, Keys, Nid, PaymentOrderId, Peer, SpeedTrust, MAX_ROUNDS};
use agora_core::crypto::{MacKey, Rng, Secret, VerifyingKey, X25519Public};
use agora_core::wire::{cose, encode, envelope, sym, Message};
use agora_core::{Error, KeyId, Money, Result, Timestamp};
use agora_pki::PartyRole;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The vendor's default limit on products sold in aggressive mode: the
/// paper advises normal mode above 1 MB (section 4.3), because an
/// unauthenticated request would otherwise make the vendor encrypt and send
/// a large product.
pub const DEFAULT_MAX_AGGRESSIVE_LEN: u64 = 1_000_000;

/// The largest SeqN a NegotiationRequest may start with (the customer
/// chooses it; honest ones start at 0).
pub const MAX_FIRST_SEQ: u64 = u32::MAX as u64;

/// A product on offer.
#[derive(Clone, Debug)]
pub struct Offer {
    /// How the vendor negotiates its price.
    pub strategy: Arc<dyn VendorStrategy>,
    /// Size of the product in bytes (before encryption).
    pub len: u64,
}

/// Where the vendor looks up what it sells, by ProductID.
pub trait Catalogue: Send + Sync {
    /// The offer for `product_id`, if the vendor sells it.
    fn offer(&self, product_id: &str) -> Option<Offer>;
}

/// The register of Handshakes (and aggressive ProductRequests) the vendor
/// has answered with a delivery: one delivery per NID, ever. Since
/// PaymentOrderID = (VendorID, NID), this also keeps the vendor from
/// issuing two bills with one PaymentOrderID.
pub trait HandshakeRegister: Send + Sync {
    /// Records `nid` (from `customer`) as delivered at `at`; `Ok(false)` if
    /// it was recorded before. Durable before it returns.
    fn record(&self, nid: &Nid, customer: &KeyId, at: Timestamp) -> Result<bool>;

    /// The latest `limit` deliveries, newest first (ties by NID,
    /// descending): the vendor's sales, whose receipts it asks the broker
    /// for.
    fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>>;
}

/// One delivery in a [`HandshakeRegister`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The negotiation: with the VendorID, the PaymentOrderID of the sale.
    pub nid: Nid,
    /// The customer's key id.
    pub customer: KeyId,
    /// When the vendor delivered.
    pub at: Timestamp,
}

/// The in-memory twin of [`HandshakeRegister`].
#[derive(Debug, Default)]
pub struct MemoryHandshakes(Mutex<BTreeMap<Nid, (KeyId, Timestamp)>>);

impl HandshakeRegister for MemoryHandshakes {
    fn record(&self, nid: &Nid, customer: &KeyId, at: Timestamp) -> Result<bool> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("handshake register lock poisoned".into()))?;
        if m.contains_key(nid) {
            return Ok(false);
        }
        m.insert(*nid, (*customer, at));
        Ok(true)
    }

    fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>> {
        let m = self
            .0
            .lock()
            .map_err(|_| Error::Storage("handshake register lock poisoned".into()))?;
        let mut all: Vec<DeliveryRecord> = m
            .iter()
            .map(|(nid, (customer, at))| DeliveryRecord {
                nid: *nid,
                customer: *customer,
                at: *at,
            })
            .collect();
        all.sort_by_key(|d| std::cmp::Reverse((d.at, d.nid)));
        all.truncate(limit);
        Ok(all)
    }
}

/// HKDF-SHA256 `info` prefix of [`Vendor::rec_key`] (followed by the 48
/// bytes of the PaymentOrderID).
pub const REC_KEY_INFO: &[u8] = b"agora/speed/rec-key/v1";

/// A vendor: its keys, its account at the broker, the broker (whose X25519
/// key seals `{AccountNumber, K}`), and the CAs it trusts for customers.
#[derive(Debug)]
pub struct Vendor {
    /// Its keys; VendorID is the id of `keys.sign`.
    pub keys: Keys,
    /// Its account at the broker.
    pub account: AccountNumber,
    /// The broker.
    pub broker: Peer,
    /// CAs and CRLs for customers' certificates.
    pub trust: SpeedTrust,
    /// Largest product (bytes) sold in aggressive mode.
    pub max_aggressive_len: u64,
}

fn session_keys(en_key: &Secret<32>, sign_key: &MacKey) -> (Secret<32>, MacKey) {
    (en_key.clone(), MacKey::new(*sign_key.expose()))
}

impl Vendor {
    /// VendorID: the digest of the vendor's key.
    pub fn id(&self) -> KeyId {
        self.keys.id()
    }

    /// Opens a request sealed to this vendor and signed by a certified
    /// customer, and checks that VendorID names this vendor (section 5.4:
    /// a request forwarded by a man in the middle names him, not us).
    fn open_request<M: agora_core::wire::Message>(
        &self,
        now: Timestamp,
        bytes: &[u8],
        vendor_of: impl Fn(&M) -> KeyId,
        cert_of: impl Fn(&M) -> &[u8],
    ) -> Result<(M, VerifyingKey, Option<X25519Public>)> {
        let mut x25519 = None;
        let mut key = None;
        let opened = envelope::open_self_certified::<M>(bytes, &self.keys.enc, |m| {
            let id = self.trust.identity(cert_of(m), now, PartyRole::Customer)?;
            x25519 = id.x25519().copied();
            key = Some(*id.key());
            Ok(*id.key())
        })?;
        if vendor_of(&opened.message) != self.id() {
            return Err(Error::NotAuthorised(
                "request names another vendor (VendorID): forwarded by a man in the middle".into(),
            ));
        }
        let key = key.ok_or(Error::ApiMisuse("customer key not captured"))?;
        Ok((opened.message, key, x25519))
    }

    /// Message 1 (normal mode): answers a NegotiationRequest with the
    /// product's price rule. `Ok((state, Some(step)))` to continue,
    /// `Ok((_, None))` never: a request the rule walks away from is
    /// [`Error::Refused`].
    pub fn on_negotiation_request(
        &self,
        now: Timestamp,
        rng: &mut impl Rng,
        bytes: &[u8],
        catalogue: &dyn Catalogue,
    ) -> Result<(VendorNegotiation, Vec<u8>)> {
        let (req, customer, _) = self.open_request::<NegotiationRequest>(
            now,
            bytes,
            |m| m.vendor,
            |m| &m.customer_cert,
        )?;
        msg::check_product_id(&req.product_id)?;
        if req.seq > MAX_FIRST_SEQ {
            return Err(Error::PeerMisbehaved(
                "NegotiationRequest sequence number out of range",
            ));
        }
        let offer = catalogue
            .offer(&req.product_id)
            .ok_or_else(|| Error::Refused("no such product".into()))?;
        let state = VendorNegotiation {
            nid: req.nid,
            customer,
            product_id: req.product_id,
            strategy: offer.strategy,
            en_key: req.en_key,
            sign_key: req.sign_key,
            last_seq: req.seq,
            round: 0,
            offered: None,
            started_at: now,
        };
        match state.answer(rng, req.price, req.last_offer)? {
            VendorNext::Counter(s, step) => Ok((*s, step)),
            VendorNext::Closed => Err(Error::Refused(
                "the vendor does not sell at the customer's last offer".into(),
            )),
        }
    }

    /// Aggressive message 1: a ProductRequest at a fixed price. The vendor
    /// refuses products over [`Vendor::max_aggressive_len`], prices its
    /// rule does not accept, and NIDs it has delivered before.
    pub fn on_product_request(
        &self,
        now: Timestamp,
        bytes: &[u8],
        catalogue: &dyn Catalogue,
        register: &dyn HandshakeRegister,
    ) -> Result<Delivery> {
        let (req, customer, x25519) =
            self.open_request::<ProductRequest>(now, bytes, |m| m.vendor, |m| &m.customer_cert)?;
        msg::check_product_id(&req.product_id)?;
        let offer = catalogue
            .offer(&req.product_id)
            .ok_or_else(|| Error::Refused("no such product".into()))?;
        if offer.len > self.max_aggressive_len {
            return Err(Error::Refused(
                "product too large for aggressive mode: use normal mode".into(),
            ));
        }
        if offer.strategy.answer(0, Some(req.price), true) != Move::Accept {
            return Err(Error::Refused("price below the vendor's".into()));
        }
        let x25519 = x25519.ok_or_else(|| {
            Error::Refused("customer certificate without an encryption key".into())
        })?;
        if !register.record(&req.nid, &customer.key_id(), now)? {
            return Err(Error::Replayed);
        }
        Ok(Delivery {
            nid: req.nid,
            product_id: req.product_id,
            price: req.price,
            seal: BillSeal::ToCustomer(x25519),
            key: Secret::new([0; 32]),
            customer: customer.key_id(),
            handshake: None,
        })
    }

    /// RecKey of the sale `order`: HKDF-SHA256 of the vendor's X25519
    /// decryption key, under its own label ([`REC_KEY_INFO`] and the
    /// PaymentOrderID). The bill carries it as the paper says; deriving it
    /// lets the vendor read the broker's receipt for any of its sales (its
    /// copy, section 5.6) without keeping a key per sale, and nobody without
    /// the vendor's private key can compute it. The label separates it from
    /// every HPKE use of that key.
    pub fn rec_key(&self, order: &PaymentOrderId) -> Result<Secret<32>> {
        let ikm = self.keys.enc.to_bytes();
        let mut info = Vec::with_capacity(REC_KEY_INFO.len() + 48);
        info.extend_from_slice(REC_KEY_INFO);
        info.extend_from_slice(&order.to_bytes());
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        agora_core::crypto::hkdf_sha256(&[], ikm.as_slice(), &info, out.as_mut_slice())?;
        Ok(Secret::new(*out))
    }

    /// The vendor's copy of the PurchaseReceipt of `order`, as the broker
    /// sends it (on a receipt request, say): opened under the derived RecKey,
    /// the broker's signature checked, and the PaymentOrderID checked to be
    /// `order` (a receipt of another sale, cut and pasted, is refused).
    /// Returns the receipt and the broker-signed bytes (evidence).
    pub fn open_receipt_of(
        &self,
        order: &PaymentOrderId,
        bytes: &[u8],
    ) -> Result<(Receipt, Vec<u8>)> {
        if order.vendor != self.id() {
            return Err(Error::Refused(
                "the payment order is another vendor's".into(),
            ));
        }
        let (r, signed) =
            crate::customer::open_receipt(bytes, &self.rec_key(order)?, &self.broker.sign)?;
        if r.order != *order {
            return Err(Error::PeerMisbehaved("receipt for another sale"));
        }
        Ok((r, signed))
    }

    /// Opens the receipt the broker sent for a sale (the vendor's copy).
    pub fn open_receipt(&self, bytes: &[u8], sale: &Sale) -> Result<(Receipt, Vec<u8>)> {
        let (r, signed) = self.open_receipt_of(&sale.order, bytes)?;
        if r.price != sale.price {
            return Err(Error::PeerMisbehaved("receipt for another sale"));
        }
        Ok((r, signed))
    }
}

/// A negotiation in progress at the vendor.
///
/// Its steps consume it. A message that does not authenticate (damaged on
/// the way, or forged) must not end a negotiation, though: "bad input
/// changes nothing". The driver keeps a copy (it is `Clone`) and goes on
/// with it when the error [`Error::leaves_state_intact`]; a
/// message that authenticates and breaks the protocol (a repeated SeqN, a
/// Handshake at another price) ends the negotiation as an attack.
#[derive(Debug, Clone)]
pub struct VendorNegotiation {
    nid: Nid,
    customer: VerifyingKey,
    product_id: String,
    strategy: Arc<dyn VendorStrategy>,
    en_key: Secret<32>,
    sign_key: MacKey,
    last_seq: u64,
    round: u32,
    /// The vendor's last offer: the only price a Handshake may name.
    offered: Option<Money>,
    started_at: Timestamp,
}

/// What the vendor does after a customer's step.
#[derive(Debug)]
pub enum VendorNext {
    /// Send the NegotiationStep; wait for the next step or a Handshake.
    Counter(Box<VendorNegotiation>, Vec<u8>),
    /// The negotiation is over without agreement; nothing is sent.
    Closed,
}

impl VendorNegotiation {
    /// The negotiation's id.
    pub fn nid(&self) -> Nid {
        self.nid
    }

    /// When it started (the driver forgets it after
    /// [`crate::SESSION_TIMEOUT_SECS`]).
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// The customer's key id.
    pub fn customer(&self) -> KeyId {
        self.customer.key_id()
    }

    fn answer(self, rng: &mut impl Rng, offer: Option<Money>, last: bool) -> Result<VendorNext> {
        let mv = if self.round >= MAX_ROUNDS {
            Move::WalkAway
        } else {
            self.strategy.answer(self.round, offer, last)
        };
        let (price, last_offer) = match (mv, offer) {
            // Agreeing is offering exactly her price, as a last offer.
            (Move::Accept, Some(p)) => (p, true),
            (Move::Offer { price, last }, _) => (price, last),
            _ => return Ok(VendorNext::Closed),
        };
        // The first SeqN is at most MAX_FIRST_SEQ and a negotiation has at
        // most MAX_ROUNDS rounds: no overflow, but say so rather than wrap.
        let seq = self
            .last_seq
            .checked_add(1)
            .ok_or(Error::PeerMisbehaved("sequence number exhausted"))?;
        let step = NegotiationStep {
            nid: self.nid,
            seq,
            price,
            last_offer,
        };
        let (en, mac) = session_keys(&self.en_key, &self.sign_key);
        let sealed = sym::seal_mac(&en, &mac, rng, &step);
        Ok(VendorNext::Counter(
            Box::new(VendorNegotiation {
                last_seq: seq,
                round: self.round + 1,
                offered: Some(price),
                ..self
            }),
            sealed,
        ))
    }

    /// Message 2 from the customer: a counter-offer.
    pub fn on_step(self, rng: &mut impl Rng, bytes: &[u8]) -> Result<VendorNext> {
        let step: NegotiationStep = sym::open_mac(bytes, &self.en_key, &self.sign_key)?;
        if step.nid != self.nid {
            return Err(Error::PeerMisbehaved(
                "NegotiationStep of another negotiation",
            ));
        }
        msg::check_seq(self.last_seq, step.seq)?;
        VendorNegotiation {
            last_seq: step.seq,
            ..self
        }
        .answer(rng, Some(step.price), step.last_offer)
    }

    /// Message 3: the customer's Handshake accepts the vendor's last offer.
    /// Recorded in `register` before anything is delivered: a replayed
    /// Handshake (or a NID delivered before) is [`Error::Replayed`].
    pub fn on_handshake(
        self,
        now: Timestamp,
        bytes: &[u8],
        register: &dyn HandshakeRegister,
    ) -> Result<Delivery> {
        let (hs, signed) = sym::open_signed::<Handshake>(bytes, &self.en_key, &self.customer)?;
        if hs.nid != self.nid {
            return Err(Error::PeerMisbehaved("Handshake of another negotiation"));
        }
        if Some(hs.price) != self.offered {
            return Err(Error::PeerMisbehaved(
                "Handshake at another price than the vendor's last offer",
            ));
        }
        if !register.record(&self.nid, &self.customer.key_id(), now)? {
            return Err(Error::Replayed);
        }
        Ok(Delivery {
            nid: self.nid,
            product_id: self.product_id,
            price: hs.price,
            seal: BillSeal::UnderEnKey(self.en_key),
            key: Secret::new([0; 32]),
            customer: self.customer.key_id(),
            handshake: Some(signed),
        })
    }
}

/// How the bill reaches the customer.
#[derive(Debug)]
enum BillSeal {
    /// Normal mode: `|{Bill}_{V^-1}|_{EnKey}`.
    UnderEnKey(Secret<32>),
    /// Aggressive mode: `{{Bill}_{V^-1}}_C`.
    ToCustomer(X25519Public),
}

/// A delivery the vendor has committed to: encrypt the product under
/// [`Delivery::key`] (after [`Delivery::draw_key`]), then
/// [`Delivery::finish`] makes the bill.
#[derive(Debug)]
pub struct Delivery {
    nid: Nid,
    product_id: String,
    price: Money,
    seal: BillSeal,
    key: Secret<32>,
    customer: KeyId,
    handshake: Option<Vec<u8>>,
}

impl Delivery {
    /// The product to deliver.
    pub fn product_id(&self) -> &str {
        &self.product_id
    }

    /// The price agreed.
    pub fn price(&self) -> Money {
        self.price
    }

    /// The customer's key id.
    pub fn customer(&self) -> KeyId {
        self.customer
    }

    /// The customer's signed Handshake (normal mode): her acceptance of the
    /// price, as evidence.
    pub fn handshake(&self) -> Option<&[u8]> {
        self.handshake.as_deref()
    }

    /// Draws K, the fresh key the product is encrypted under, and returns
    /// it.
    pub fn draw_key(&mut self, rng: &mut impl Rng) -> &Secret<32> {
        self.key = Secret::random(rng);
        &self.key
    }

    /// K (all zeros until [`Delivery::draw_key`]).
    pub fn key(&self) -> &Secret<32> {
        &self.key
    }

    /// The bill for the product encrypted as `encrypted`, signed and sealed
    /// for the customer: the head of message 4 (or aggressive message 2),
    /// and the sale to remember for the receipt.
    pub fn finish(
        self,
        rng: &mut impl Rng,
        vendor: &Vendor,
        encrypted: Encrypted,
    ) -> Result<(Vec<u8>, Sale)> {
        if self.key == Secret::new([0; 32]) {
            return Err(Error::ApiMisuse("Delivery::finish before draw_key"));
        }
        let order = PaymentOrderId {
            vendor: vendor.id(),
            nid: self.nid,
        };
        let secret = BillSecret {
            account: vendor.account.clone(),
            key: self.key.clone(),
        }
        .seal(rng, &vendor.broker.enc, &order)?;
        let bill = Bill {
            secret,
            product_hash: encrypted.hash,
            product_id_hash: msg::product_id_hash(&self.product_id),
            order,
            price: self.price,
            rec_key: vendor.rec_key(&order)?,
        };
        let signed = cose::sign(&vendor.keys.sign, &bill);
        let head = match &self.seal {
            BillSeal::UnderEnKey(en_key) => encode(&ProductDelivery {
                nid: self.nid,
                product_len: encrypted.len,
                bill: sym::seal_raw(en_key, Bill::TAG, rng, &signed),
            }),
            BillSeal::ToCustomer(x) => encode(&AggressiveDelivery {
                nid: self.nid,
                product_len: encrypted.len,
                bill: envelope::seal_signed(rng, x, Bill::TAG, &signed)?,
            }),
        };
        Ok((
            head,
            Sale {
                order,
                price: self.price,
                signed_bill: signed,
            },
        ))
    }
}

/// What the vendor remembers of a sale to read the broker's receipt.
#[derive(Debug)]
pub struct Sale {
    /// The payment.
    pub order: PaymentOrderId,
    /// The price.
    pub price: Money,
    /// The signed bill (evidence). Its RecKey is
    /// [`Vendor::rec_key`] of `order`.
    pub signed_bill: Vec<u8>,
}

/// The conformance suite of [`HandshakeRegister`]: every implementation
/// (the in-memory twin here, SQLite in agora-store) runs it.
#[cfg(any(test, feature = "testkit"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a test suite may panic
pub mod conformance {
    use super::HandshakeRegister;
    use crate::Nid;
    use agora_core::{KeyId, Timestamp};

    /// Runs every case on fresh registers from `make`.
    pub fn handshake_suite<R: HandshakeRegister + Sync>(make: impl Fn() -> R) {
        a_nid_is_recorded_once(&make());
        racing_records_of_one_nid_let_exactly_one_through(&make());
        deliveries_come_newest_first(&make());
    }

    /// The listing: newest first, ties by NID descending, `limit` rows, the
    /// first record of a NID (a refused replay changes nothing).
    pub fn deliveries_come_newest_first<R: HandshakeRegister>(r: &R) {
        assert!(r.deliveries(10).unwrap().is_empty());
        let c = KeyId([7; 32]);
        for (n, at) in [(3u8, 20u64), (1, 10), (2, 20), (4, 5)] {
            assert!(r.record(&Nid([n; 16]), &c, Timestamp(at)).unwrap());
        }
        assert!(!r
            .record(&Nid([4; 16]), &KeyId([8; 32]), Timestamp(99))
            .unwrap());
        let all = r.deliveries(10).unwrap();
        let order: Vec<(u8, u64)> = all.iter().map(|d| (d.nid.0[0], d.at.0)).collect();
        assert_eq!(order, vec![(3, 20), (2, 20), (1, 10), (4, 5)]);
        assert!(all.iter().all(|d| d.customer == c));
        assert_eq!(r.deliveries(2).unwrap(), all[..2].to_vec());
        assert!(r.deliveries(0).unwrap().is_empty());
    }

    /// First record fresh, every later one not, whoever the customer.
    pub fn a_nid_is_recorded_once<R: HandshakeRegister>(r: &R) {
        let (a, b) = (Nid([1; 16]), Nid([2; 16]));
        let c = KeyId([7; 32]);
        assert!(r.record(&a, &c, Timestamp(10)).unwrap());
        assert!(!r.record(&a, &c, Timestamp(11)).unwrap());
        assert!(!r.record(&a, &KeyId([8; 32]), Timestamp(12)).unwrap());
        assert!(r.record(&b, &c, Timestamp(13)).unwrap());
    }

    /// 16 threads record the same NID: exactly one is told it is fresh.
    pub fn racing_records_of_one_nid_let_exactly_one_through<R: HandshakeRegister + Sync>(r: &R) {
        let fresh = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..16u8 {
                let fresh = &fresh;
                s.spawn(move || {
                    if r.record(&Nid([9; 16]), &KeyId([i; 32]), Timestamp(1))
                        .unwrap()
                    {
                        fresh.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(fresh.into_inner(), 1);
    }

    #[test]
    fn memory_register_passes() {
        handshake_suite(super::MemoryHandshakes::default);
    }
}
