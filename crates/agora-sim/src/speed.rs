//! SPEED purchases (agora-speed) over the simulated network: customers, one
//! vendor and the broker as actors, normal mode (with a negotiation of a few
//! rounds) and aggressive mode, each paid from an account or by e-purse card.
//!
//! # Addresses
//!
//! The network ([`SimNet`]) names its parties with the CPO's [`Addr`]; here
//! the broker is [`BROKER`] (the server's slot), the vendor is [`VENDOR`]
//! and customer `i` is [`customer_addr`]`(i)`.
//!
//! # Transport frames
//!
//! Every message travels in a frame: one kind byte, then what the transport
//! needs to route it, then the protocol message as agora-speed made it. A
//! frame to or from the vendor names the NID (16 bytes), a frame to or from
//! the broker names the PaymentOrderID (48 bytes), as a connection would
//! (the broker's [`Broker::on_purse_confirm`] takes the order "named by the
//! transport" in the same way). The names are not authenticated: a damaged
//! name routes a message to a run it does not open in, or nowhere, and the
//! retransmissions below recover. The delivery frame carries the head of
//! message 4 (or aggressive 2) and then the encrypted product itself:
//! `[DELIVERY, nid, head length (u32, big-endian), head, |Product|_K]`.
//!
//! # How each actor copes with the network
//!
//! - **The customer** drives: she resends her last message, the same
//!   bytes, when no answer comes within [`Scenario::timeout_ms`]; up to
//!   [`Scenario::max_resends`] times before the point of no return, then
//!   she starts the purchase again with a fresh NID (at most
//!   [`Scenario::max_attempts`] purchases). After her PaymentOrder she never
//!   starts again while money may have moved: she resends the PaymentOrder
//!   (account) or message b (card) until the receipt comes. When the broker
//!   answers a resent PaymentOrder or b with `Replayed`, she asks for the
//!   receipt with a ReceiptRequest (section 5.7). An exact copy of the
//!   vendor message she processed last is dropped as a retransmission;
//!   anything else goes to her role, which ends the negotiation on a
//!   repeated or skipped SeqN or a damaged step (section 5.3), and she
//!   starts again. A damaged delivery ends the purchase the same way.
//! - **The vendor** answers: an exact copy of the last message it
//!   processed for a NID gets the same answer again (the same bytes). For a
//!   duplicate Handshake, whose negotiation state the first copy consumed,
//!   that is the delivery it sent; for a duplicate ProductRequest the
//!   [`HandshakeRegister`](agora_speed::vendor::HandshakeRegister) answers
//!   `Replayed` and the vendor resends the delivery it remembers for it.
//!   Every delivery is made (K drawn, product encrypted, bill signed) once
//!   per NID. Negotiations older than [`SESSION_TIMEOUT_SECS`] are
//!   forgotten.
//! - **The broker** answers each frame from its ledger and tells the
//!   customer `Replayed` when its role refuses a PaymentOrder or a b as
//!   replayed. It sends every receipt to the vendor too (message 6 goes to
//!   C and V).
//!
//! # Recovery the roles give a driver
//!
//! - A lost message a: the customer sends the same PaymentOrder again and
//!   the broker, which holds the debit ([`Ledger::hold`]), answers with the
//!   same message a. A *damaged* message a consumes the customer's
//!   `ExpectPurseDebit` here (a real driver restores it from its saved
//!   bytes); her card was never debited, so she leaves the bill unpaid and
//!   buys again ([`CustomerStats::stranded`]).
//! - `ExpectReceipt::on_receipt` keeps its state when a receipt does not
//!   open, so a damaged (or forged) receipt costs nothing: the customer
//!   waits for, or asks for, the broker's. [`Scenario::receipt_precheck`]
//!   (on by default) opens each receipt first with
//!   [`customer::open_receipt`] as a second line of defence.
//!
//! # What [`World::check`] asserts at the end of a run
//!
//! See [`World::check`]. A run is reproducible from its seed:
//! `World::new(seed, cfg, Scenario::default()).run()`.

use crate::net::{Addr, NetConfig, NetStats, Outbox, Packet, SimNet};
use crate::{EPOCH, MAX_EVENTS, MAX_RUN_MS};
use agora_core::crypto::{sha256, Secret, SigningKey, X25519Secret};
use agora_core::wire::{cose, envelope, tags};
use agora_core::{Currency, Error, Money, Timestamp};
use agora_pki::{Agency, IdentityParams, PartyRole};
use agora_speed::broker::{Broker, BrokerReply};
use agora_speed::customer::{self, CustomerNext, Identity, Purchase, ReadyToPay};
use agora_speed::ledger::{
    Account, AccountKind, JournalEntry, Ledger, MemoryLedger, PayMode, PaymentRecord, Posting,
    MAX_LIST_LEN,
};
use agora_speed::msg::{Bill, ReceiptRequest};
use agora_speed::product::{self, Encrypted};
use agora_speed::purse::{Card, Sam};
use agora_speed::strategy::{PriceRule, Target};
use agora_speed::vendor::{
    Catalogue, Delivery, MemoryHandshakes, Offer, Sale, Vendor, VendorNegotiation, VendorNext,
};
use agora_speed::{
    AccountNumber, CardId, Keys, Nid, PaymentOrderId, Peer, SpeedTrust, SESSION_TIMEOUT_SECS,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ------------------------------------------------------------- the market

/// The broker on the simulated network.
pub const BROKER: Addr = Addr::Server;
/// The vendor on the simulated network.
pub const VENDOR: Addr = Addr::Seller(0);

/// Customer `i` on the simulated network.
pub fn customer_addr(i: u8) -> Addr {
    Addr::Buyer(i)
}

/// What every customer buys.
pub const PRODUCT_ID: &str = "SONG-1: a song (4 KiB in the simulation)";
/// The vendor's list price (cents): aggressive mode pays it.
pub const LIST_CENTS: u64 = 1_000;
/// The vendor's floor (cents): its last offer in a negotiation.
pub const FLOOR_CENTS: u64 = 800;
/// How much the vendor's ask drops per round (cents).
pub const STEP_CENTS: u64 = 100;
/// What a customer holds in her account after loading her card (cents).
pub const ACCOUNT_CENTS: u64 = 5_000;
/// What a customer's card holds at the start (cents).
pub const CARD_CENTS: u64 = 5_000;
/// Largest product the simulated vendor sells (bytes): a simulated frame
/// is held in memory whole.
pub const MAX_PRODUCT_LEN: usize = 64 * 1024;
/// Most NIDs the vendor keeps a run for (a bound on its memory).
pub const MAX_VENDOR_RUNS: usize = 10_000;

const DAY: u64 = 86_400;
const VENDOR_ACCOUNT: &str = "V-SHOP";
const FLOAT_ACCOUNT: &str = "B-FLOAT-EUR";
const CASH_ACCOUNT: &str = "B-CASH-EUR";

/// The simulation's currency.
pub fn eur() -> Currency {
    Currency::new("EUR").expect("EUR is a currency code")
}

fn cents(c: u64) -> Money {
    Money::new(c, eur())
}

fn num(s: &str) -> AccountNumber {
    AccountNumber::new(s).expect("the simulation's account numbers are valid")
}

/// The account number of customer `i`.
pub fn customer_account(i: u8) -> AccountNumber {
    num(&format!("C-{i}"))
}

/// The customer's negotiation strategy: open at 7.00, raise by 0.50 up to
/// 9.00. Against the vendor's rule (10.00, 9.00, 8.00 last) they meet at
/// 8.00 after three vendor offers.
pub fn haggler() -> Target {
    Target {
        target: cents(700),
        step: 50,
        limit: cents(900),
    }
}

/// How a customer buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Messages 1-6: negotiation, Handshake, delivery, payment.
    Normal,
    /// Aggressive messages 1-2 at the list price, then 5-6.
    Aggressive,
}

/// How a customer pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pay {
    /// From her account at the broker.
    Account,
    /// By e-purse card (messages a and b).
    Card,
}

/// One customer's purchase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Plan {
    /// Normal or aggressive.
    pub mode: Mode,
    /// Account or card.
    pub pay: Pay,
}

impl Plan {
    /// The four purchases: normal and aggressive, each by account and card.
    pub const ALL: [Plan; 4] = [
        Plan {
            mode: Mode::Normal,
            pay: Pay::Account,
        },
        Plan {
            mode: Mode::Normal,
            pay: Pay::Card,
        },
        Plan {
            mode: Mode::Aggressive,
            pay: Pay::Account,
        },
        Plan {
            mode: Mode::Aggressive,
            pay: Pay::Card,
        },
    ];

    /// The price the purchase ends at (cents).
    pub fn price_cents(self) -> u64 {
        match self.mode {
            Mode::Normal => FLOOR_CENTS,
            Mode::Aggressive => LIST_CENTS,
        }
    }
}

/// Who buys what, and how patient they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// One customer per plan, all at once.
    pub plans: Vec<Plan>,
    /// Size of the product (bytes, at most [`MAX_PRODUCT_LEN`]).
    pub product_len: usize,
    /// No answer for this long: resend. Above twice the network's longest
    /// delay, so that an answer still on its way is rarely taken for lost.
    pub timeout_ms: u64,
    /// Resends of one message before the customer starts the purchase
    /// again (before her PaymentOrder, or while message a does not come).
    pub max_resends: u32,
    /// Most purchases a customer starts before she gives up.
    pub max_attempts: u32,
    /// Whether the customer opens a receipt before she hands it to her
    /// role (see the module documentation).
    pub receipt_precheck: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            plans: Plan::ALL.to_vec(),
            product_len: 4096,
            timeout_ms: 5_000,
            max_resends: 3,
            max_attempts: 12,
            receipt_precheck: true,
        }
    }
}

impl Scenario {
    /// One customer with `plan`, the other settings as default.
    pub fn one(plan: Plan) -> Scenario {
        Scenario {
            plans: vec![plan],
            ..Scenario::default()
        }
    }
}

// ------------------------------------------------------------- the frames

/// Frame kinds (the first byte of every simulated message).
mod kind {
    /// Customer to vendor: `[nid, message]` (request, step, Handshake).
    pub const TO_VENDOR: u8 = 0x10;
    /// Vendor to customer: `[nid, NegotiationStep]`.
    pub const STEP: u8 = 0x11;
    /// Vendor to customer: `[nid, head length, head, |Product|_K]`.
    pub const DELIVERY: u8 = 0x12;
    /// Customer to broker: `[order, PaymentOrder]`.
    pub const PAY: u8 = 0x20;
    /// Customer to broker: `[order, message b]`.
    pub const CONFIRM: u8 = 0x21;
    /// Customer to broker: `[order, ReceiptRequest]`.
    pub const RECEIPT_REQUEST: u8 = 0x22;
    /// Broker to customer: `[order, message a]`.
    pub const DEBIT: u8 = 0x30;
    /// Broker to customer and vendor: `[order, PurchaseReceipt]`.
    pub const RECEIPT: u8 = 0x31;
    /// Broker to customer: `[order]`, the role refused a PaymentOrder or a b
    /// as replayed.
    pub const REPLAYED: u8 = 0x32;
}

const NID_LEN: usize = 16;
const ORDER_LEN: usize = 48;

fn frame(kind: u8, name: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(1 + name.len() + body.len());
    f.push(kind);
    f.extend_from_slice(name);
    f.extend_from_slice(body);
    f
}

fn split_kind(b: &[u8]) -> Option<(u8, &[u8])> {
    b.split_first().map(|(k, rest)| (*k, rest))
}

fn split_nid(b: &[u8]) -> Option<(Nid, &[u8])> {
    let (n, rest) = b.split_at_checked(NID_LEN)?;
    Some((Nid(n.try_into().ok()?), rest))
}

fn split_order(b: &[u8]) -> Option<(PaymentOrderId, &[u8])> {
    let (o, rest) = b.split_at_checked(ORDER_LEN)?;
    Some((PaymentOrderId::from_bytes(o).ok()?, rest))
}

/// A delivery as the vendor frames it (`agora_speed::delivery`, the same
/// bytes as over HTTP): the encrypted product, what it hashed to, the head.
fn read_delivery(b: &[u8]) -> std::io::Result<(Vec<u8>, Encrypted, Vec<u8>)> {
    agora_speed::delivery::read_delivery(b, MAX_DELIVERED, Vec::new())
}

/// The largest encrypted product a simulated customer takes.
const MAX_DELIVERED: u64 = 1 << 20;

/// The protocol messages, as the faults of directed tests name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Msg {
    /// Normal message 1.
    NegotiationRequest,
    /// Message 2 from the customer.
    StepToVendor,
    /// Message 2 from the vendor.
    StepToCustomer,
    /// Message 3.
    Handshake,
    /// Aggressive message 1.
    ProductRequest,
    /// Message 4, or aggressive message 2, with the product.
    Delivery,
    /// Message 5.
    PaymentOrder,
    /// Message a.
    PurseDebit,
    /// Message b.
    PurseConfirm,
    /// Message 6 (to the customer or the vendor).
    Receipt,
    /// A request for a receipt.
    ReceiptRequest,
    /// The broker's `Replayed`.
    Replayed,
}

impl Msg {
    /// The messages of a purchase made as `plan` says, in protocol order
    /// (ReceiptRequest and Replayed only occur after a loss).
    pub fn of(plan: Plan) -> Vec<Msg> {
        let mut v = match plan.mode {
            Mode::Normal => vec![
                Msg::NegotiationRequest,
                Msg::StepToCustomer,
                Msg::StepToVendor,
                Msg::Handshake,
            ],
            Mode::Aggressive => vec![Msg::ProductRequest],
        };
        v.extend([Msg::Delivery, Msg::PaymentOrder]);
        if plan.pay == Pay::Card {
            v.extend([Msg::PurseDebit, Msg::PurseConfirm]);
        }
        v.push(Msg::Receipt);
        v
    }

    /// Which message a frame carries.
    pub fn of_frame(bytes: &[u8]) -> Option<Msg> {
        let (k, rest) = split_kind(bytes)?;
        Some(match k {
            kind::TO_VENDOR => {
                let (_, m) = split_nid(rest)?;
                let tag = envelope::peek_tag(m).ok()?;
                if tag == tags::SPEED_NEGOTIATION_REQUEST {
                    Msg::NegotiationRequest
                } else if tag == tags::SPEED_NEGOTIATION_STEP {
                    Msg::StepToVendor
                } else if tag == tags::SPEED_HANDSHAKE {
                    Msg::Handshake
                } else if tag == tags::SPEED_PRODUCT_REQUEST {
                    Msg::ProductRequest
                } else {
                    return None;
                }
            }
            kind::STEP => Msg::StepToCustomer,
            kind::DELIVERY => Msg::Delivery,
            kind::PAY => Msg::PaymentOrder,
            kind::CONFIRM => Msg::PurseConfirm,
            kind::RECEIPT_REQUEST => Msg::ReceiptRequest,
            kind::DEBIT => Msg::PurseDebit,
            kind::RECEIPT => Msg::Receipt,
            kind::REPLAYED => Msg::Replayed,
            _ => return None,
        })
    }
}

/// What a directed test does to the first frame of a [`Msg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// It is lost.
    Lose,
    /// It is delivered twice.
    Duplicate,
    /// Its last byte has its lowest bit flipped (inside the message's
    /// authenticated part, or the product).
    Tamper,
}

// --------------------------------------------------------------- customer

#[derive(Debug)]
enum Step {
    /// Before her first purchase.
    Idle,
    Negotiating(customer::Negotiating),
    ExpectDelivery(customer::ExpectDelivery),
    ExpectAggressive(customer::ExpectAggressiveDelivery),
    ExpectDebit(customer::ExpectPurseDebit),
    ExpectReceipt(customer::ExpectReceipt),
    Done,
    GaveUp,
}

/// Where a customer's purchase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// She holds the receipt and the product.
    Completed,
    /// Still under way when the run stopped.
    Unfinished,
    /// She gave up before paying ([`Scenario::max_attempts`]).
    GaveUp,
}

/// What a customer went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CustomerStats {
    /// Messages she sent again after a timeout.
    pub resent: u64,
    /// Purchases she started again (after the first).
    pub restarts: u64,
    /// Negotiations her role ended on a vendor step (a repeated or skipped
    /// SeqN, or a damaged step).
    pub negotiations_ended: u64,
    /// Deliveries her role refused (a damaged head or product).
    pub bad_deliveries: u64,
    /// Purchases she started again because the vendor stayed silent.
    pub timeouts: u64,
    /// Bills she left unpaid after her PaymentOrder because message a never
    /// came or did not open: the broker holds the debit for ever, the card
    /// was not debited.
    pub stranded: u64,
    /// `Replayed` answers she got from the broker.
    pub replayed: u64,
    /// ReceiptRequests she sent.
    pub receipt_requests: u64,
    /// Exact copies of the last vendor message, dropped.
    pub copies: u64,
    /// Messages for another NID or order, or out of turn, dropped.
    pub stale: u64,
    /// Messages that failed a check (framing, a receipt that does not open).
    pub rejected: u64,
}

impl CustomerStats {
    fn add(&mut self, o: &CustomerStats) {
        self.resent += o.resent;
        self.restarts += o.restarts;
        self.negotiations_ended += o.negotiations_ended;
        self.bad_deliveries += o.bad_deliveries;
        self.timeouts += o.timeouts;
        self.stranded += o.stranded;
        self.replayed += o.replayed;
        self.receipt_requests += o.receipt_requests;
        self.copies += o.copies;
        self.stale += o.stale;
        self.rejected += o.rejected;
    }
}

/// How patient a customer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Patience {
    timeout_ms: u64,
    max_resends: u32,
    max_attempts: u32,
}

/// Carol (or Chris, ...): buys [`PRODUCT_ID`] once, as her [`Plan`] says.
#[derive(Debug)]
pub struct CustomerActor {
    me: Identity,
    rng: ChaCha20Rng,
    /// How she buys.
    pub plan: Plan,
    vendor: Peer,
    broker: Peer,
    /// Her account at the broker.
    pub account: AccountNumber,
    /// Her e-purse card.
    pub card: Card,
    strategy: Target,
    patience: Patience,
    precheck: bool,
    step: Step,
    nid: Option<Nid>,
    order: Option<PaymentOrderId>,
    price: Option<Money>,
    rec_key: Option<Secret<32>>,
    ciphertext: Vec<u8>,
    /// Her last message, for resending: (to, frame).
    last_out: Option<(Addr, Vec<u8>)>,
    /// Digest of the last vendor frame she processed.
    last_in: Option<[u8; 32]>,
    resends: u32,
    /// Purchases she started.
    pub attempts: u32,
    pub(crate) deadline: Option<u64>,
    /// Every order she sent a PaymentOrder for (her register of paid bills,
    /// section 5.3).
    pub ordered: BTreeSet<PaymentOrderId>,
    /// Every card debit she made (her card gave S3), by order.
    pub debited: BTreeMap<PaymentOrderId, Money>,
    /// The completed purchase.
    pub purchase: Option<Purchase>,
    /// The encrypted product of the completed purchase.
    pub product_ct: Vec<u8>,
    /// The product, decrypted with the receipt's K (`None` if it did not
    /// decrypt).
    pub product: Option<Vec<u8>>,
    /// What she went through.
    pub stats: CustomerStats,
}

impl CustomerActor {
    /// Where her purchase ended.
    pub fn outcome(&self) -> Outcome {
        match self.step {
            Step::Done => Outcome::Completed,
            Step::GaveUp => Outcome::GaveUp,
            _ => Outcome::Unfinished,
        }
    }

    /// Her identity key's id.
    pub fn key_id(&self) -> agora_core::KeyId {
        self.me.keys.id()
    }

    /// Message sent, progress made: wait for the answer afresh.
    fn progress(&mut self, out: &Outbox) {
        self.resends = 0;
        self.deadline = Some(out.now_ms + self.patience.timeout_ms);
    }

    /// Sends `f` to `to` as her last message (resent on timeout).
    fn send_last(&mut self, out: &mut Outbox, to: Addr, f: Vec<u8>) {
        out.send(to, f.clone());
        self.last_out = Some((to, f));
        self.progress(out);
    }

    fn resend(&mut self, out: &mut Outbox) {
        if let Some((to, f)) = &self.last_out {
            out.send(*to, f.clone());
        }
        self.resends += 1;
        self.stats.resent += 1;
        self.deadline = Some(out.now_ms + self.patience.timeout_ms);
    }

    /// Starts a purchase (again, with a fresh NID), unless she has started
    /// too many.
    fn start(&mut self, out: &mut Outbox) {
        if self.attempts >= self.patience.max_attempts {
            self.step = Step::GaveUp;
            self.deadline = None;
            return;
        }
        if self.attempts > 0 {
            self.stats.restarts += 1;
        }
        self.attempts += 1;
        self.order = None;
        self.price = None;
        self.rec_key = None;
        self.last_in = None;
        self.ciphertext.clear();
        let (rng, me, vendor) = (&mut self.rng, &self.me, &self.vendor);
        let started = match self.plan.mode {
            Mode::Normal => customer::negotiate(rng, me, vendor, PRODUCT_ID, &self.strategy)
                .map(|(s, m)| (s.nid(), Step::Negotiating(s), m)),
            Mode::Aggressive => customer::request(rng, me, vendor, PRODUCT_ID, cents(LIST_CENTS))
                .map(|(s, m)| (s.nid(), Step::ExpectAggressive(s), m)),
        };
        match started {
            Ok((nid, step, m)) => {
                self.nid = Some(nid);
                self.step = step;
                self.send_last(out, VENDOR, frame(kind::TO_VENDOR, &nid.0, &m));
            }
            Err(_) => {
                self.step = Step::GaveUp;
                self.deadline = None;
            }
        }
    }

    pub(crate) fn on_timer(&mut self, out: &mut Outbox) {
        self.deadline = None;
        let patient = self.resends < self.patience.max_resends;
        match &self.step {
            Step::Done | Step::GaveUp => {}
            Step::Idle => self.start(out),
            Step::Negotiating(_) | Step::ExpectDelivery(_) | Step::ExpectAggressive(_) => {
                if patient {
                    self.resend(out);
                } else {
                    self.stats.timeouts += 1;
                    self.start(out);
                }
            }
            Step::ExpectDebit(_) => {
                if patient {
                    self.resend(out);
                } else {
                    // Message a never came: the bill cannot be paid (see
                    // the module documentation), and her card was not
                    // debited for it. Buy again.
                    self.stats.stranded += 1;
                    self.start(out);
                }
            }
            // Money may have moved: never give up on the receipt.
            Step::ExpectReceipt(_) => self.resend(out),
        }
    }

    pub(crate) fn on_message(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) {
        match split_kind(bytes) {
            Some((k @ (kind::STEP | kind::DELIVERY), rest)) if from == VENDOR => {
                self.on_vendor_frame(out, k, rest)
            }
            Some((k @ (kind::DEBIT | kind::RECEIPT | kind::REPLAYED), rest)) if from == BROKER => {
                self.on_broker_frame(out, k, rest)
            }
            _ => self.stats.rejected += 1,
        }
    }

    fn on_vendor_frame(&mut self, out: &mut Outbox, k: u8, rest: &[u8]) {
        let Some((nid, body)) = split_nid(rest) else {
            self.stats.rejected += 1;
            return;
        };
        if self.nid != Some(nid) {
            self.stats.stale += 1;
            return;
        }
        let digest = sha256(rest);
        if self.last_in == Some(digest) {
            // The vendor's answer to a retransmission, or a network copy.
            self.stats.copies += 1;
            return;
        }
        match (k, std::mem::replace(&mut self.step, Step::Idle)) {
            (kind::STEP, Step::Negotiating(s)) => {
                self.last_in = Some(digest);
                match s.on_step(&mut self.rng, &self.me, body, &self.strategy) {
                    Ok(CustomerNext::Counter(s, m)) => {
                        self.step = Step::Negotiating(s);
                        self.send_last(out, VENDOR, frame(kind::TO_VENDOR, &nid.0, &m));
                    }
                    Ok(CustomerNext::Agreed(e, hs)) => {
                        self.step = Step::ExpectDelivery(e);
                        self.send_last(out, VENDOR, frame(kind::TO_VENDOR, &nid.0, &hs));
                    }
                    Ok(CustomerNext::WalkedAway { .. }) | Err(_) => {
                        // The role ended the negotiation (section 5.3).
                        self.stats.negotiations_ended += 1;
                        self.start(out);
                    }
                }
            }
            (kind::DELIVERY, Step::ExpectDelivery(e)) => {
                let Ok((ct, enc, head)) = read_delivery(body) else {
                    self.step = Step::ExpectDelivery(e);
                    self.stats.rejected += 1;
                    return;
                };
                self.last_in = Some(digest);
                let ready = e.on_delivery(&head).and_then(|p| p.on_product(enc));
                self.after_delivery(out, ready, &ct);
            }
            (kind::DELIVERY, Step::ExpectAggressive(e)) => {
                let Ok((ct, enc, head)) = read_delivery(body) else {
                    self.step = Step::ExpectAggressive(e);
                    self.stats.rejected += 1;
                    return;
                };
                self.last_in = Some(digest);
                let ready = e
                    .on_delivery(&self.me, &head)
                    .and_then(|p| p.on_product(enc));
                self.after_delivery(out, ready, &ct);
            }
            (_, other) => {
                self.step = other;
                self.stats.stale += 1;
            }
        }
    }

    fn after_delivery(
        &mut self,
        out: &mut Outbox,
        ready: agora_core::Result<ReadyToPay>,
        ct: &[u8],
    ) {
        match ready {
            Ok(r) => self.pay(out, r, ct),
            Err(_) => {
                self.stats.bad_deliveries += 1;
                self.start(out);
            }
        }
    }

    /// Message 5: the point of no return.
    fn pay(&mut self, out: &mut Outbox, ready: ReadyToPay, ct: &[u8]) {
        let order = ready.order();
        self.ciphertext = ct.to_vec();
        self.order = Some(order);
        self.price = Some(ready.price());
        // RecKey, from her signed bill: to open a receipt before her role
        // consumes its state on it.
        self.rec_key = cose::verify::<Bill>(ready.signed_bill(), &self.vendor.sign)
            .ok()
            .map(|b| b.rec_key);
        let ordered = &self.ordered;
        let already_paid = |o: &PaymentOrderId| ordered.contains(o);
        let (rng, me, broker) = (&mut self.rng, &self.me, &self.broker);
        let paid = match self.plan.pay {
            Pay::Account => ready
                .pay_from_account(rng, me, broker, self.account.clone(), &already_paid)
                .map(|(e, po)| (Step::ExpectReceipt(e), po)),
            Pay::Card => {
                let s1 = self.card.authenticate(rng);
                ready
                    .pay_by_card(rng, me, broker, s1, &already_paid)
                    .map(|(e, po)| (Step::ExpectDebit(e), po))
            }
        };
        match paid {
            Ok((step, po)) => {
                self.ordered.insert(order);
                self.step = step;
                self.send_last(out, BROKER, frame(kind::PAY, &order.to_bytes(), &po));
            }
            // A bill she paid before: refused by her register.
            Err(_) => self.start(out),
        }
    }

    fn on_broker_frame(&mut self, out: &mut Outbox, k: u8, rest: &[u8]) {
        let Some((order, body)) = split_order(rest) else {
            self.stats.rejected += 1;
            return;
        };
        if self.order != Some(order) {
            self.stats.stale += 1;
            return;
        }
        match (k, std::mem::replace(&mut self.step, Step::Idle)) {
            (kind::DEBIT, Step::ExpectDebit(e)) => {
                let before = self.card.balance().cents;
                let (rng, card) = (&mut self.rng, &mut self.card);
                let res = e.on_debit(rng, body, |s2| card.debit(s2));
                let after = self.card.balance().cents;
                if after < before {
                    self.debited.insert(order, cents(before - after));
                }
                match res {
                    Ok((r, b)) => {
                        self.step = Step::ExpectReceipt(r);
                        self.send_last(out, BROKER, frame(kind::CONFIRM, &order.to_bytes(), &b));
                    }
                    Err(_) => {
                        // Message a did not open (or the card refused S2):
                        // the state is gone, the card not debited, and the
                        // bill can no longer be paid. Buy again.
                        self.stats.stranded += 1;
                        self.start(out);
                    }
                }
            }
            (kind::RECEIPT, Step::ExpectReceipt(e)) => {
                if self.precheck && !self.receipt_opens(body, &order) {
                    self.step = Step::ExpectReceipt(e);
                    self.stats.rejected += 1;
                    return;
                }
                match e.on_receipt(body) {
                    Ok(p) => {
                        let mut plain = Vec::new();
                        self.product = product::decrypt(&p.key, &self.ciphertext[..], &mut plain)
                            .ok()
                            .map(|_| plain);
                        self.product_ct = std::mem::take(&mut self.ciphertext);
                        self.purchase = Some(p);
                        self.step = Step::Done;
                    }
                    Err(_) => {
                        // The state is kept: ask the broker for its copy
                        // of the receipt (paper 5.7).
                        self.stats.rejected += 1;
                        self.step = Step::ExpectReceipt(e);
                        self.stats.receipt_requests += 1;
                        let req = customer::receipt_request(order);
                        out.send(
                            BROKER,
                            frame(kind::RECEIPT_REQUEST, &order.to_bytes(), &req),
                        );
                        return;
                    }
                }
                self.deadline = None;
            }
            (kind::REPLAYED, s @ (Step::ExpectDebit(_) | Step::ExpectReceipt(_))) => {
                // The broker has this order already: ask for the receipt.
                self.step = s;
                self.stats.replayed += 1;
                self.stats.receipt_requests += 1;
                let req = customer::receipt_request(order);
                out.send(
                    BROKER,
                    frame(kind::RECEIPT_REQUEST, &order.to_bytes(), &req),
                );
            }
            (_, other) => {
                self.step = other;
                self.stats.stale += 1;
            }
        }
    }

    /// Whether `body` is the broker's receipt for `order` at her price,
    /// under the RecKey of her bill.
    fn receipt_opens(&self, body: &[u8], order: &PaymentOrderId) -> bool {
        let Some(k) = &self.rec_key else {
            return false;
        };
        matches!(
            customer::open_receipt(body, k, &self.broker.sign),
            Ok((r, _)) if r.order == *order && Some(r.price) == self.price
        )
    }
}

// ----------------------------------------------------------------- vendor

/// The vendor's catalogue: one product.
#[derive(Debug)]
struct Shelf {
    offer: Offer,
}

impl Catalogue for Shelf {
    fn offer(&self, product_id: &str) -> Option<Offer> {
        (product_id == PRODUCT_ID).then(|| self.offer.clone())
    }
}

/// What the vendor keeps per NID.
#[derive(Debug)]
enum Run {
    /// Negotiating: the role's state, the digest of the last customer
    /// message and the answer the vendor gave it.
    Negotiating {
        state: Box<VendorNegotiation>,
        last_in: [u8; 32],
        reply: Vec<u8>,
    },
    /// Delivered: the digest of the Handshake (or ProductRequest) and the
    /// delivery frame.
    Delivered {
        last_in: [u8; 32],
        delivery: Vec<u8>,
    },
    /// Over without a delivery.
    Ended,
}

/// The vendor: negotiates, delivers once per NID, and reads the broker's
/// receipts.
#[derive(Debug)]
pub struct VendorActor {
    vendor: Vendor,
    rng: ChaCha20Rng,
    shelf: Shelf,
    /// The product it sells.
    pub product: Vec<u8>,
    register: MemoryHandshakes,
    runs: BTreeMap<Nid, Run>,
    /// Digest of a run's last customer message -> its NID.
    last_of: BTreeMap<[u8; 32], Nid>,
    sales: BTreeMap<PaymentOrderId, Sale>,
    /// The receipts it opened: order -> price.
    pub receipts: BTreeMap<PaymentOrderId, Money>,
    /// Deliveries made (K drawn, product encrypted, bill signed).
    pub deliveries: u64,
    /// Answers sent again for an exact copy of a customer's message.
    pub resent: u64,
    /// Negotiations that ended without a delivery.
    pub ended: u64,
    /// Messages dropped (failed a check, or for no run).
    pub rejected: u64,
}

impl VendorActor {
    /// The NIDs it delivered.
    pub fn delivered(&self) -> usize {
        self.runs
            .values()
            .filter(|r| matches!(r, Run::Delivered { .. }))
            .count()
    }

    pub(crate) fn on_message(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) {
        let ok = match split_kind(bytes) {
            Some((kind::TO_VENDOR, rest)) => self.on_customer_frame(out, from, rest),
            Some((kind::RECEIPT, rest)) if from == BROKER => self.on_receipt(rest),
            _ => false,
        };
        if !ok {
            self.rejected += 1;
        }
    }

    /// Sends again the answer to `digest`, if it is the last message of a
    /// run.
    fn answer_again(&mut self, out: &mut Outbox, from: Addr, digest: &[u8; 32]) -> bool {
        let Some(nid) = self.last_of.get(digest) else {
            return false;
        };
        let again = match self.runs.get(nid) {
            Some(Run::Negotiating { last_in, reply, .. }) if last_in == digest => reply.clone(),
            Some(Run::Delivered { last_in, delivery }) if last_in == digest => delivery.clone(),
            _ => return false,
        };
        out.send(from, again);
        self.resent += 1;
        true
    }

    /// Forgets negotiations older than the session timeout.
    fn sweep(&mut self, now: Timestamp) {
        for run in self.runs.values_mut() {
            let stale = matches!(run, Run::Negotiating { state, .. }
                if state.started_at().plus_secs(SESSION_TIMEOUT_SECS) < now);
            if stale {
                if let Run::Negotiating { last_in, .. } = std::mem::replace(run, Run::Ended) {
                    self.last_of.remove(&last_in);
                    self.ended += 1;
                }
            }
        }
    }

    fn on_customer_frame(&mut self, out: &mut Outbox, from: Addr, rest: &[u8]) -> bool {
        let Some((nid, m)) = split_nid(rest) else {
            return false;
        };
        let Ok(tag) = envelope::peek_tag(m) else {
            return false;
        };
        let digest = sha256(m);
        let now = out.now();
        if tag == tags::SPEED_PRODUCT_REQUEST {
            if self.runs.len() >= MAX_VENDOR_RUNS {
                return false;
            }
            return match self
                .vendor
                .on_product_request(now, m, &self.shelf, &self.register)
            {
                Ok(d) => self.deliver(out, from, d, digest),
                // Delivered before: the same request gets the same delivery.
                Err(Error::Replayed) => self.answer_again(out, from, &digest),
                Err(_) => false,
            };
        }
        if self.answer_again(out, from, &digest) {
            return true;
        }
        if tag == tags::SPEED_NEGOTIATION_REQUEST {
            self.sweep(now);
            if self.runs.len() >= MAX_VENDOR_RUNS {
                return false;
            }
            let Ok((state, step)) =
                self.vendor
                    .on_negotiation_request(now, &mut self.rng, m, &self.shelf)
            else {
                return false;
            };
            let nid = state.nid();
            if self.runs.contains_key(&nid) {
                // A NID in use, and not the copy of its last message.
                return false;
            }
            let reply = frame(kind::STEP, &nid.0, &step);
            out.send(from, reply.clone());
            self.last_of.insert(digest, nid);
            self.runs.insert(
                nid,
                Run::Negotiating {
                    state: Box::new(state),
                    last_in: digest,
                    reply,
                },
            );
            return true;
        }
        if tag != tags::SPEED_NEGOTIATION_STEP && tag != tags::SPEED_HANDSHAKE {
            return false;
        }
        // A step or a Handshake continues the run the transport names.
        let Some(run) = self.runs.get_mut(&nid) else {
            return false;
        };
        if !matches!(run, Run::Negotiating { .. }) {
            return false;
        }
        let Run::Negotiating { state, last_in, .. } = std::mem::replace(run, Run::Ended) else {
            return false;
        };
        self.last_of.remove(&last_in);
        if tag == tags::SPEED_NEGOTIATION_STEP {
            match state.on_step(&mut self.rng, m) {
                Ok(VendorNext::Counter(s, step)) => {
                    let reply = frame(kind::STEP, &nid.0, &step);
                    out.send(from, reply.clone());
                    self.last_of.insert(digest, nid);
                    self.runs.insert(
                        nid,
                        Run::Negotiating {
                            state: s,
                            last_in: digest,
                            reply,
                        },
                    );
                    true
                }
                Ok(VendorNext::Closed) => {
                    self.ended += 1;
                    true
                }
                Err(_) => {
                    // The role ended the negotiation (section 5.3).
                    self.ended += 1;
                    false
                }
            }
        } else {
            match state.on_handshake(now, m, &self.register) {
                Ok(d) => self.deliver(out, from, d, digest),
                Err(_) => {
                    self.ended += 1;
                    false
                }
            }
        }
    }

    /// Encrypts the product under a fresh K, makes the bill, sends and
    /// remembers the delivery.
    fn deliver(&mut self, out: &mut Outbox, from: Addr, mut d: Delivery, digest: [u8; 32]) -> bool {
        let key = d.draw_key(&mut self.rng).clone();
        let Ok((ct, enc)) = product::encrypt(&mut self.rng, &key, &self.product[..], Vec::new())
        else {
            return false;
        };
        let Ok((head, sale)) = d.finish(&mut self.rng, &self.vendor, enc) else {
            return false;
        };
        let nid = sale.order.nid;
        let Ok(delivery) = agora_speed::delivery::delivery_bytes(&ct, enc, &head) else {
            return false;
        };
        let delivery = frame(kind::DELIVERY, &nid.0, &delivery);
        out.send(from, delivery.clone());
        self.deliveries += 1;
        self.last_of.insert(digest, nid);
        self.sales.insert(sale.order, sale);
        self.runs.insert(
            nid,
            Run::Delivered {
                last_in: digest,
                delivery,
            },
        );
        true
    }

    fn on_receipt(&mut self, rest: &[u8]) -> bool {
        let Some((order, body)) = split_order(rest) else {
            return false;
        };
        let Some(sale) = self.sales.get(&order) else {
            return false;
        };
        match self.vendor.open_receipt(body, sale) {
            Ok((r, _)) => {
                self.receipts.insert(order, r.price);
                true
            }
            Err(_) => false,
        }
    }
}

// ----------------------------------------------------------------- broker

/// The broker on an in-memory ledger.
#[derive(Debug)]
pub struct BrokerActor {
    broker: Broker,
    rng: ChaCha20Rng,
    /// Its ledger and payment register.
    pub ledger: MemoryLedger,
    /// `Replayed` answers it sent.
    pub replayed: u64,
    /// Receipts it sent again on request.
    pub receipts_resent: u64,
    /// Messages dropped (failed a check, or refused).
    pub rejected: u64,
}

impl BrokerActor {
    /// The broker's key, to check its receipts.
    pub fn verifying_key(&self) -> agora_core::crypto::VerifyingKey {
        self.broker.verifying_key()
    }

    fn receipt(out: &mut Outbox, to: Addr, order: &PaymentOrderId, r: &[u8]) {
        out.send(to, frame(kind::RECEIPT, &order.to_bytes(), r));
        out.send(VENDOR, frame(kind::RECEIPT, &order.to_bytes(), r));
    }

    fn replayed(&mut self, out: &mut Outbox, to: Addr, order: &PaymentOrderId) {
        self.replayed += 1;
        out.send(to, frame(kind::REPLAYED, &order.to_bytes(), &[]));
    }

    pub(crate) fn on_message(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) {
        if !self.handle(out, from, bytes) {
            self.rejected += 1;
        }
    }

    fn handle(&mut self, out: &mut Outbox, from: Addr, bytes: &[u8]) -> bool {
        let Some((k, rest)) = split_kind(bytes) else {
            return false;
        };
        let Some((order, body)) = split_order(rest) else {
            return false;
        };
        let now = out.now();
        match k {
            kind::PAY => match self
                .broker
                .on_payment_order(now, &mut self.rng, body, &self.ledger)
            {
                Ok(BrokerReply::Receipt(r)) => {
                    Self::receipt(out, from, &order, &r);
                    true
                }
                Ok(BrokerReply::PurseDebit(a)) => {
                    out.send(from, frame(kind::DEBIT, &order.to_bytes(), &a));
                    true
                }
                Err(Error::Replayed) => {
                    self.replayed(out, from, &order);
                    true
                }
                Err(_) => false,
            },
            kind::CONFIRM => {
                match self
                    .broker
                    .on_purse_confirm(now, &order, body, &self.ledger)
                {
                    Ok(r) => {
                        Self::receipt(out, from, &order, &r);
                        true
                    }
                    Err(Error::Replayed) => {
                        self.replayed(out, from, &order);
                        true
                    }
                    Err(_) => false,
                }
            }
            kind::RECEIPT_REQUEST => {
                let Ok(req) = agora_core::wire::decode::<ReceiptRequest>(body) else {
                    return false;
                };
                match self.broker.on_receipt_request(body, &self.ledger) {
                    Ok(r) => {
                        self.receipts_resent += 1;
                        out.send(from, frame(kind::RECEIPT, &req.order.to_bytes(), &r));
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}

// ------------------------------------------------------------------ world

fn keys(rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

/// An identity certificate from the world's CA for `k` in `role`, valid
/// from a day before the simulation's epoch for a year. Written here, not
/// taken from agora-speed's `testkit`: this crate is a workspace member, so
/// a `testkit` it enabled would be built into the release `agora` binary.
fn identity(ca: &Agency, rng: &mut ChaCha20Rng, name: &str, role: PartyRole, k: &Keys) -> Vec<u8> {
    let params = IdentityParams {
        name: name.into(),
        key: k.sign.verifying_key(),
        role,
        x25519: Some(k.enc.public()),
        not_before: EPOCH.minus_secs(DAY),
        not_after: EPOCH.plus_secs(365 * DAY),
        crl_uri: ca.crl_uri("http://sim.invalid"),
    };
    ca.issue_identity(&params, rng)
        .expect("the simulated CA issues identity certificates")
        .der
}

/// Trust in the world's CA, with a current empty CRL (the CPO world's).
fn trust_of(ca: &Agency) -> SpeedTrust {
    let t = crate::trust_of(ca);
    SpeedTrust::new(t.agencies, t.crls)
}

fn child(rng: &mut ChaCha20Rng) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(rng.next_u64())
}

fn open(ledger: &MemoryLedger, n: AccountNumber, owner: agora_core::KeyId, kind: AccountKind) {
    ledger
        .open_account(&Account {
            number: n,
            owner,
            kind,
            currency: eur(),
            allow_credit: false,
        })
        .expect("the simulation opens each account once");
}

fn post(
    ledger: &MemoryLedger,
    id: [u8; 16],
    memo: &str,
    from: &AccountNumber,
    to: &AccountNumber,
    c: u64,
) {
    let c = i64::try_from(c).expect("the simulation's amounts are small");
    ledger
        .post(&JournalEntry {
            id,
            at: EPOCH,
            memo: memo.into(),
            postings: vec![
                Posting {
                    account: from.clone(),
                    cents: -c,
                },
                Posting {
                    account: to.clone(),
                    cents: c,
                },
            ],
        })
        .expect("the simulation's opening entries are valid");
}

/// One simulated SPEED market and its network.
#[derive(Debug)]
pub struct World {
    /// The seed of the run.
    pub seed: u64,
    /// The network.
    pub net: SimNet,
    /// The customers, one per plan.
    pub customers: Vec<CustomerActor>,
    /// The vendor.
    pub vendor: VendorActor,
    /// The broker.
    pub broker: BrokerActor,
    faults: Vec<(Msg, Fault)>,
    events: u64,
}

/// What a run did, for tests and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// SHA-256 over every delivered message and its time.
    pub transcript: [u8; 32],
    /// What the network did.
    pub net: NetStats,
    /// Simulated time at the end (ms).
    pub end_ms: u64,
    /// Events processed (deliveries and timers).
    pub events: u64,
    /// Per customer: where her purchase ended.
    pub outcomes: Vec<Outcome>,
    /// Per customer: purchases she started.
    pub attempts: Vec<u32>,
    /// Per customer: the price she paid, if she completed.
    pub prices: Vec<Option<Money>>,
    /// What the customers went through, summed.
    pub customers: CustomerStats,
    /// Deliveries the vendor made.
    pub deliveries: u64,
    /// Answers the vendor sent again.
    pub vendor_resent: u64,
    /// Negotiations that ended at the vendor without a delivery.
    pub vendor_ended: u64,
    /// Messages the vendor dropped.
    pub vendor_rejected: u64,
    /// `Replayed` answers of the broker.
    pub broker_replayed: u64,
    /// Receipts the broker sent again on request.
    pub receipts_resent: u64,
    /// Messages the broker dropped.
    pub broker_rejected: u64,
}

impl Summary {
    /// How many customers completed their purchase.
    pub fn completed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == Outcome::Completed)
            .count()
    }
}

impl World {
    /// A market for `scenario` on a network behaving as `cfg`, everything
    /// drawn from `seed`.
    pub fn new(seed: u64, cfg: NetConfig, scenario: Scenario) -> World {
        assert!(
            scenario.product_len <= MAX_PRODUCT_LEN,
            "the simulated product is at most MAX_PRODUCT_LEN bytes"
        );
        assert!(
            scenario.plans.len() <= usize::from(u8::MAX),
            "at most 255 customers"
        );
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = Agency::create(
            "SPEED Simulated CA",
            SigningKey::generate(&mut rng),
            EPOCH.minus_secs(30 * DAY),
            EPOCH.plus_secs(3650 * DAY),
            &mut rng,
        )
        .expect("the simulated CA");
        let trust = trust_of(&ca);
        let vendor_keys = keys(&mut rng);
        let vendor_cert = identity(&ca, &mut rng, "shop", PartyRole::Vendor, &vendor_keys);
        let broker_keys = keys(&mut rng);
        let broker_peer = broker_keys.peer();
        let broker_id = broker_keys.id();
        let mut master = [0u8; 32];
        rng.fill_bytes(&mut master);
        let sam = Sam::new(Secret::new(master));
        let mut broker = Broker::new(broker_keys, trust.clone(), Sam::new(Secret::new(master)));
        broker
            .add_vendor(&vendor_cert, EPOCH)
            .expect("the vendor's certificate is valid");
        broker.set_float(eur(), num(FLOAT_ACCOUNT));

        let ledger = MemoryLedger::new();
        open(
            &ledger,
            num(VENDOR_ACCOUNT),
            vendor_keys.id(),
            AccountKind::Vendor,
        );
        open(
            &ledger,
            num(FLOAT_ACCOUNT),
            broker_id,
            AccountKind::PurseFloat,
        );
        open(&ledger, num(CASH_ACCOUNT), broker_id, AccountKind::External);

        let vendor_peer = vendor_keys.peer();
        let patience = Patience {
            timeout_ms: scenario.timeout_ms,
            max_resends: scenario.max_resends,
            max_attempts: scenario.max_attempts,
        };
        let mut customers = Vec::new();
        for (i, plan) in scenario.plans.iter().enumerate() {
            let i = u8::try_from(i).expect("at most 255 customers");
            let k = keys(&mut rng);
            let cert = identity(
                &ca,
                &mut rng,
                &format!("customer{i}"),
                PartyRole::Customer,
                &k,
            );
            let account = customer_account(i);
            open(&ledger, account.clone(), k.id(), AccountKind::Customer);
            post(
                &ledger,
                [0xD0, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "deposit",
                &num(CASH_ACCOUNT),
                &account,
                ACCOUNT_CENTS + CARD_CENTS,
            );
            // Her card, loaded from her account (the broker takes the
            // money when it issues the load command).
            let mut card = sam.issue(CardId([i; 16]), eur());
            let (cmd, pending) = sam
                .load(&card.authenticate(&mut rng), cents(CARD_CENTS), &mut rng)
                .expect("the SAM loads a new card");
            let conf = card.load(&cmd).expect("the card takes the load");
            sam.confirm_load(&pending, &conf)
                .expect("the SAM confirms the load");
            post(
                &ledger,
                [0xC0, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "card load",
                &account,
                &num(FLOAT_ACCOUNT),
                CARD_CENTS,
            );
            customers.push(CustomerActor {
                me: Identity { keys: k, cert },
                rng: child(&mut rng),
                plan: *plan,
                vendor: vendor_peer,
                broker: broker_peer,
                account,
                card,
                strategy: haggler(),
                patience,
                precheck: scenario.receipt_precheck,
                step: Step::Idle,
                nid: None,
                order: None,
                price: None,
                rec_key: None,
                ciphertext: Vec::new(),
                last_out: None,
                last_in: None,
                resends: 0,
                attempts: 0,
                // Customers start a few ms apart.
                deadline: Some(u64::from(i) * 7),
                ordered: BTreeSet::new(),
                debited: BTreeMap::new(),
                purchase: None,
                product_ct: Vec::new(),
                product: None,
                stats: CustomerStats::default(),
            });
        }

        let mut product = vec![0u8; scenario.product_len];
        rng.fill_bytes(&mut product);
        let vendor = VendorActor {
            vendor: Vendor {
                keys: vendor_keys,
                account: num(VENDOR_ACCOUNT),
                broker: broker_peer,
                trust,
                max_aggressive_len: agora_speed::vendor::DEFAULT_MAX_AGGRESSIVE_LEN,
            },
            rng: child(&mut rng),
            shelf: Shelf {
                offer: Offer {
                    strategy: Arc::new(PriceRule {
                        list: cents(LIST_CENTS),
                        floor: cents(FLOOR_CENTS),
                        step: STEP_CENTS,
                    }),
                    len: product.len() as u64,
                },
            },
            product,
            register: MemoryHandshakes::default(),
            runs: BTreeMap::new(),
            last_of: BTreeMap::new(),
            sales: BTreeMap::new(),
            receipts: BTreeMap::new(),
            deliveries: 0,
            resent: 0,
            ended: 0,
            rejected: 0,
        };
        let broker = BrokerActor {
            broker,
            rng: child(&mut rng),
            ledger,
            replayed: 0,
            receipts_resent: 0,
            rejected: 0,
        };
        let net = SimNet::new(cfg, rng.next_u64());
        World {
            seed,
            net,
            customers,
            vendor,
            broker,
            faults: Vec::new(),
            events: 0,
        }
    }

    /// Makes the network do `fault` to the next frame carrying `msg` (once),
    /// on top of what its configuration does: for directed tests.
    pub fn fault_for_testing_only(&mut self, msg: Msg, fault: Fault) {
        self.faults.push((msg, fault));
    }

    fn flush(&mut self, from: Addr, out: Outbox) {
        for (to, mut bytes) in out.sends {
            let fault = Msg::of_frame(&bytes).and_then(|m| {
                let i = self.faults.iter().position(|(f, _)| *f == m)?;
                Some(self.faults.remove(i).1)
            });
            match fault {
                None => self.net.send(from, to, bytes),
                Some(Fault::Lose) => {}
                Some(Fault::Duplicate) => {
                    self.net.send(from, to, bytes.clone());
                    self.net.send(from, to, bytes);
                }
                Some(Fault::Tamper) => {
                    if let Some(b) = bytes.last_mut() {
                        *b ^= 1;
                    }
                    self.net.send(from, to, bytes);
                }
            }
        }
    }

    fn deliver(&mut self, p: Packet) {
        let mut out = Outbox::new(self.net.now_ms());
        match p.to {
            BROKER => self.broker.on_message(&mut out, p.from, &p.bytes),
            VENDOR => self.vendor.on_message(&mut out, p.from, &p.bytes),
            Addr::Buyer(i) => {
                if let Some(c) = self.customers.get_mut(usize::from(i)) {
                    c.on_message(&mut out, p.from, &p.bytes);
                }
            }
            _ => {}
        }
        self.flush(p.to, out);
    }

    fn next_timer(&self) -> Option<u64> {
        self.customers.iter().filter_map(|c| c.deadline).min()
    }

    fn fire_timers(&mut self, now: u64) {
        for i in 0..self.customers.len() {
            if self.customers[i].deadline.is_some_and(|d| d <= now) {
                let mut out = Outbox::new(now);
                self.customers[i].on_timer(&mut out);
                let addr = customer_addr(u8::try_from(i).expect("at most 255 customers"));
                self.flush(addr, out);
            }
        }
    }

    /// Runs until nothing is in flight and no timer is set (or
    /// [`MAX_RUN_MS`] / [`MAX_EVENTS`]).
    pub fn run(&mut self) -> Summary {
        while self.events < MAX_EVENTS {
            let t = match (self.net.next_delivery_at(), self.next_timer()) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            if t > MAX_RUN_MS {
                break;
            }
            self.events += 1;
            self.net.advance_to(t);
            match self.net.pop_due() {
                Some(p) => self.deliver(p),
                None => self.fire_timers(t),
            }
        }
        self.summary()
    }

    /// What the run did.
    pub fn summary(&self) -> Summary {
        let mut customers = CustomerStats::default();
        for c in &self.customers {
            customers.add(&c.stats);
        }
        Summary {
            seed: self.seed,
            transcript: self.net.transcript_hash(),
            net: self.net.stats(),
            end_ms: self.net.now_ms(),
            events: self.events,
            outcomes: self.customers.iter().map(CustomerActor::outcome).collect(),
            attempts: self.customers.iter().map(|c| c.attempts).collect(),
            prices: self
                .customers
                .iter()
                .map(|c| c.purchase.as_ref().map(|p| p.price))
                .collect(),
            customers,
            deliveries: self.vendor.deliveries,
            vendor_resent: self.vendor.resent,
            vendor_ended: self.vendor.ended,
            vendor_rejected: self.vendor.rejected,
            broker_replayed: self.broker.replayed,
            receipts_resent: self.broker.receipts_resent,
            broker_rejected: self.broker.rejected,
        }
    }

    /// Every invariant the run broke (empty: all hold). Checked:
    ///
    /// 1. The books sum to zero ([`Ledger::total`] in EUR).
    /// 2. No account below zero, except the external cash account (the
    ///    other side of the deposits, below zero by design).
    /// 3. Each PaymentOrderID is paid at most once: the vendor's statement
    ///    has one line per payment, no two for one order; the register's
    ///    settlement of the vendor counts as many payments as there are
    ///    lines, and its total is the vendor's balance.
    /// 4. Every payment in the register is for an order some customer sent
    ///    a PaymentOrder for.
    /// 5. A customer who completed has exactly one payment among the orders
    ///    she sent, the order of her purchase, at her price, by her plan's
    ///    mode (from her account, or from the float by her card); her
    ///    receipt verifies under the broker's key with that order, price
    ///    and K; and her encrypted product decrypts with K to the vendor's
    ///    product. A customer who did not complete has no payment at all.
    /// 6. Her account holds [`ACCOUNT_CENTS`] less her account payments.
    /// 7. Her card holds [`CARD_CENTS`] less her card payments and less the
    ///    debits her card made that are not paid; each of those is still
    ///    held by the broker ([`Ledger::held`]), and each card payment is a
    ///    debit her card made.
    /// 8. The purse float equals the sum of the card balances plus the
    ///    debits cards made that the broker still holds.
    /// 9. Every receipt the vendor opened is for a recorded payment at the
    ///    recorded price; the vendor made one delivery per NID it delivered.
    pub fn check(&self) -> Vec<String> {
        let mut v = Vec::new();
        let l = &self.broker.ledger;
        let bal = |n: &AccountNumber| l.balance(n).map(|b| b.cents).unwrap_or(i64::MIN);

        // 1.
        match l.total(eur()) {
            Ok(0) => {}
            Ok(t) => v.push(format!("the books sum to {t} cents, not zero")),
            Err(e) => v.push(format!("the books cannot be summed: {e}")),
        }

        // 2.
        let vendor_account = num(VENDOR_ACCOUNT);
        let float = num(FLOAT_ACCOUNT);
        let mut accounts = vec![vendor_account.clone(), float.clone()];
        accounts.extend(self.customers.iter().map(|c| c.account.clone()));
        for n in &accounts {
            if bal(n) < 0 {
                v.push(format!("account {n} is below zero ({} cents)", bal(n)));
            }
        }

        // 3.
        let lines = l.journal(&vendor_account, MAX_LIST_LEN).unwrap_or_default();
        let memos: BTreeSet<&str> = lines.iter().map(|x| x.memo.as_str()).collect();
        if memos.len() != lines.len() {
            v.push("an order is paid twice: two statement lines for one payment".into());
        }
        let settlement = l.settlement(&vendor_account, EPOCH.minus_secs(DAY), EPOCH.plus_secs(DAY));
        match &settlement {
            Ok(s) => {
                if s.count != lines.len() as u64 {
                    v.push(format!(
                        "{} payments in the register, {} lines on the vendor's statement",
                        s.count,
                        lines.len()
                    ));
                }
                if i64::try_from(s.total.cents).ok() != Some(bal(&vendor_account)) {
                    v.push("the vendor's balance is not the sum of its payments".into());
                }
            }
            Err(e) => v.push(format!("no settlement of the vendor: {e}")),
        }

        // 4.
        let all_ordered: BTreeSet<PaymentOrderId> = self
            .customers
            .iter()
            .flat_map(|c| c.ordered.iter().copied())
            .collect();
        if let Ok(s) = &settlement {
            for (o, _, _) in &s.payments {
                if !all_ordered.contains(o) {
                    v.push(format!("payment {o} that no customer ordered"));
                }
            }
        }

        // 5.-7.
        let broker_key = self.broker.verifying_key();
        let mut held_debits: u64 = 0;
        let mut card_total: u64 = 0;
        for (i, c) in self.customers.iter().enumerate() {
            let paid: Vec<PaymentRecord> = c
                .ordered
                .iter()
                .filter_map(|o| l.payment(o).ok().flatten())
                .collect();
            match &c.purchase {
                Some(p) => {
                    if paid.len() != 1 || paid[0].id != p.order {
                        v.push(format!(
                            "customer {i} completed order {} with {} payments of hers recorded",
                            p.order,
                            paid.len()
                        ));
                    }
                    if let Some(r) = paid.iter().find(|r| r.id == p.order) {
                        if r.price != p.price {
                            v.push(format!(
                                "customer {i}: paid {} for a bill of {}",
                                r.price, p.price
                            ));
                        }
                        if r.customer != c.key_id() {
                            v.push(format!("customer {i}: her payment names another customer"));
                        }
                        let by_plan = match (c.plan.pay, r.mode) {
                            (Pay::Account, PayMode::Account) => r.payer == c.account,
                            (Pay::Card, PayMode::Purse { card }) => {
                                r.payer == float && card == c.card.card_id()
                            }
                            _ => false,
                        };
                        if !by_plan {
                            v.push(format!(
                                "customer {i}: paid otherwise than {:?}",
                                c.plan.pay
                            ));
                        }
                    }
                    match customer::verify_receipt(&p.receipt, &broker_key) {
                        Ok(r) if r.order == p.order && r.price == p.price && r.key == p.key => {}
                        _ => v.push(format!("customer {i}: her receipt does not verify")),
                    }
                    if c.product.as_deref() != Some(&self.vendor.product[..]) {
                        v.push(format!(
                            "customer {i}: her product does not decrypt to the vendor's"
                        ));
                    }
                }
                None => {
                    if !paid.is_empty() {
                        v.push(format!(
                            "customer {i} did not complete ({:?}) but {} of her orders are paid",
                            c.outcome(),
                            paid.len()
                        ));
                    }
                }
            }
            let sum = |mode: Pay| -> u64 {
                paid.iter()
                    .filter(|r| match mode {
                        Pay::Account => r.mode == PayMode::Account,
                        Pay::Card => matches!(r.mode, PayMode::Purse { .. }),
                    })
                    .map(|r| r.price.cents)
                    .sum()
            };
            let account_paid = sum(Pay::Account);
            let card_paid = sum(Pay::Card);
            if i128::from(ACCOUNT_CENTS) - i128::from(account_paid) != i128::from(bal(&c.account)) {
                v.push(format!(
                    "customer {i}: account holds {} cents, paid {account_paid} from it",
                    bal(&c.account)
                ));
            }
            let mut unpaid_debits = 0u64;
            for (o, amount) in &c.debited {
                if l.payment(o).ok().flatten().is_none() {
                    unpaid_debits += amount.cents;
                    if l.held(o).ok().flatten().is_none() {
                        v.push(format!(
                            "customer {i}: her card paid {o}, which is neither paid nor held"
                        ));
                    }
                }
            }
            for r in &paid {
                if matches!(r.mode, PayMode::Purse { .. }) && !c.debited.contains_key(&r.id) {
                    v.push(format!(
                        "customer {i}: card payment {} her card never made",
                        r.id
                    ));
                }
            }
            let card = c.card.balance().cents;
            if card + card_paid + unpaid_debits != CARD_CENTS {
                v.push(format!(
                    "customer {i}: card holds {card} cents, paid {card_paid}, {unpaid_debits} held"
                ));
            }
            card_total += card;
            held_debits += unpaid_debits;
        }

        // 8.
        if i64::try_from(card_total + held_debits).ok() != Some(bal(&float)) {
            v.push(format!(
                "the float holds {} cents; the cards {card_total}, held debits {held_debits}",
                bal(&float)
            ));
        }

        // 9.
        for (o, price) in &self.vendor.receipts {
            match l.payment(o).ok().flatten() {
                Some(r) if r.price == *price => {}
                _ => v.push(format!("the vendor holds a receipt for {o}, not paid so")),
            }
        }
        if self.vendor.deliveries != self.vendor.delivered() as u64 {
            v.push(format!(
                "the vendor made {} deliveries for {} NIDs",
                self.vendor.deliveries,
                self.vendor.delivered()
            ));
        }
        v
    }
}
