//! SPEED on the network: the broker and a vendor's storefront as a
//! [`Service`].
//!
//! | route | body | what |
//! |---|---|---|
//! | `POST /v1/speed/vendor` | CBOR | NegotiationRequest, NegotiationStep, Handshake; ProductRequest (aggressive) |
//! | `GET /v1/speed/catalogue` | - | the vendor's products and list prices (JSON) |
//! | `POST /v1/speed/broker` | CBOR | PaymentOrder, message b, ReceiptRequest, CardLoadRequest |
//!
//! A negotiation goes on under the step id of the [`STEP_HEADER`](crate::STEP_HEADER): the
//! vendor's state waits in the node's table of pending steps between
//! NegotiationSteps. Message b names its payment
//! in the [`PAYMENT_ORDER_HEADER`] (the broker's held debit is found by it,
//! durably, so b may come after a restart).
//!
//! A delivery (the answer to a Handshake or a ProductRequest) is a stream of
//! type [`DELIVERY_TYPE`]: `u64` (big-endian) length of `|Product|_K`, the
//! encrypted product, `u32` length of the head, the head (message 4's
//! [`agora_speed::msg::ProductDelivery`] or aggressive message 2's
//! [`agora_speed::msg::AggressiveDelivery`]). The product is read from its
//! file and encrypted as it is sent, in constant memory; the head comes last
//! because the bill carries the digest of the encrypted product.

use crate::endpoint::{self, Answer, Endpoint, Inbound, Outbound, Reloading};
use crate::guard::MAX_DRAIN;
use crate::{blocking, cbor_reply, Core, Problem, Service};
use agora_core::crypto::{os_rng, Secret};
use agora_core::ports::Evidence;
use agora_core::wire::tags;
use agora_core::{Currency, Money, Timestamp};
use agora_speed::broker::{Broker, BrokerReply};
use agora_speed::ledger::{
    Account, Balance, HoldOutcome, JournalEntry, JournalLine, Ledger, PayOutcome, PaymentRecord,
    PostOutcome, Settlement,
};
use agora_speed::purse::Sam;
use agora_speed::strategy::{PriceRule, VendorStrategy};
use agora_speed::vendor::HandshakeRegister;
use agora_speed::vendor::{Catalogue, Delivery, Offer, Vendor, VendorNegotiation, VendorNext};
use agora_speed::{AccountNumber, Keys, PaymentOrderId, Peer, SpeedTrust};
use agora_store::Stores;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The media type of a complaint: `u32` (big-endian) length of the
/// complaint message, the message, then the encrypted product as delivered.
pub const COMPLAINT_TYPE: &str = "application/vnd.agora.speed-complaint";

/// The evidence kind of a broker's signed ruling in its archive.
pub const RULING_EVIDENCE: &str = "speed/ruling";

/// The header naming the payment of message b (PaymentOrderID, hex).
pub const PAYMENT_ORDER_HEADER: &str = "agora-payment-order";
/// The media type of a delivery stream.
pub const DELIVERY_TYPE: &str = "application/vnd.agora.speed-delivery";
/// Bytes of encrypted product per chunk sent.
const SEND_CHUNK: usize = 64 * 1024;
/// Chunks buffered between the encrypting thread and the connection.
const SEND_QUEUE: usize = 4;

/// Where the SPEED roles' trust (the SPEED CAs and their newest CRLs)
/// comes from.
pub use crate::endpoint::TrustSource as SpeedTrustSource;

/// A product the vendor sells: its ProductID (code and description), the
/// file it is in, and its price rule.
#[derive(Clone, Debug)]
pub struct Product {
    /// ProductID.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// The price rule.
    pub rule: PriceRule,
}

/// Products up to this size (one STREAM chunk) are kept in memory by the
/// catalogue and delivered as one body, encrypted on the thread that
/// checked the Handshake: for a key or a licence text, a file opened, a
/// thread hop and a chunked stream per sale cost more than the sale's
/// encryption. Larger products are streamed from their files.
const IN_MEMORY_PRODUCT: u64 = agora_core::crypto::stream::CHUNK_LEN as u64;

/// One product of a [`FileCatalogue`].
#[derive(Debug)]
struct Item {
    product: Product,
    /// Bytes of the product.
    len: u64,
    /// The product itself if it is small (up to [`IN_MEMORY_PRODUCT`]),
    /// as read when the catalogue was loaded.
    bytes: Option<Arc<[u8]>>,
    rule: Arc<dyn VendorStrategy>,
}

/// The vendor's catalogue, from files.
#[derive(Debug)]
struct FileCatalogue {
    items: BTreeMap<String, Item>,
}

impl FileCatalogue {
    fn new(products: Vec<Product>) -> Result<FileCatalogue, String> {
        let mut items = BTreeMap::new();
        for p in products {
            agora_speed::msg::check_product_id(&p.id).map_err(|e| format!("{:?}: {e}", p.id))?;
            let io = |e: io::Error| format!("product {:?} at {}: {e}", p.id, p.path.display());
            let mut len = std::fs::metadata(&p.path).map_err(io)?.len();
            let mut bytes = None;
            if len <= IN_MEMORY_PRODUCT {
                let mut small = Vec::new();
                io::Read::read_to_end(
                    &mut io::Read::take(
                        std::fs::File::open(&p.path).map_err(io)?,
                        IN_MEMORY_PRODUCT + 1,
                    ),
                    &mut small,
                )
                .map_err(io)?;
                // The file may have changed since its length was read: what
                // was read is what is sold, or the file is streamed.
                if small.len() as u64 <= IN_MEMORY_PRODUCT {
                    len = small.len() as u64;
                    bytes = Some(Arc::from(small));
                } else {
                    len = std::fs::metadata(&p.path).map_err(io)?.len();
                }
            }
            let rule: Arc<dyn VendorStrategy> = Arc::new(p.rule);
            items.insert(
                p.id.clone(),
                Item {
                    product: p,
                    len,
                    bytes,
                    rule,
                },
            );
        }
        Ok(FileCatalogue { items })
    }
}

impl Catalogue for FileCatalogue {
    fn offer(&self, product_id: &str) -> Option<Offer> {
        self.items.get(product_id).map(|item| Offer {
            strategy: item.rule.clone(),
            len: item.len,
        })
    }
}

/// What the node's broker needs.
pub struct BrokerSpec {
    /// Its keys.
    pub keys: Keys,
    /// The SAM's master key (cards' keys are diversified from it).
    pub sam_master: Secret<32>,
    /// The identity certificates (DER) of the vendors registered with it.
    pub vendors: Vec<Vec<u8>>,
    /// The purse float account of each currency.
    pub floats: Vec<(Currency, AccountNumber)>,
}

impl std::fmt::Debug for BrokerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSpec")
            .field("broker", &self.keys.id())
            .field("vendors", &self.vendors.len())
            .finish()
    }
}

/// What the node's vendor needs.
#[derive(Debug)]
pub struct VendorSpec {
    /// Its keys.
    pub keys: Keys,
    /// Its account at the broker.
    pub account: AccountNumber,
    /// The broker.
    pub broker: Peer,
    /// What it sells: read at start and again by housekeeping, so that a
    /// product added to the catalogue is offered without a restart.
    pub catalogue: Box<dyn CatalogueSource>,
    /// Largest product sold in aggressive mode.
    pub max_aggressive_len: u64,
}

/// Where the vendor's products come from.
pub trait CatalogueSource: Send + Sync {
    /// The products on offer now.
    fn products(&self) -> Result<Vec<Product>, String>;
}

impl std::fmt::Debug for dyn CatalogueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogueSource")
    }
}

/// What the node's SPEED service hosts.
pub struct SpeedSpec {
    /// The store (ledger, handshake register, evidence archive), on the
    /// backend chosen at start-up.
    pub store: Stores,
    /// The broker, if this node runs one.
    pub broker: Option<BrokerSpec>,
    /// The vendor, if this node runs one.
    pub vendor: Option<VendorSpec>,
    /// The SPEED CAs and their CRLs.
    pub trust: Box<dyn SpeedTrustSource<SpeedTrust>>,
}

impl std::fmt::Debug for SpeedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeedSpec")
            .field("broker", &self.broker)
            .field("vendor", &self.vendor)
            .finish()
    }
}

struct VendorRole {
    vendor: RwLock<Vendor>,
    /// Swapped whole by housekeeping; a purchase keeps the one it began with.
    catalogue: RwLock<Arc<FileCatalogue>>,
    source: Box<dyn CatalogueSource>,
    handshakes: Arc<dyn HandshakeRegister>,
}

impl VendorRole {
    fn catalogue(&self) -> Arc<FileCatalogue> {
        read(&self.catalogue).clone()
    }
}

/// The broker's ledger, counting each payment it records into the node's
/// business metrics (`agora_speed_purchases`, `agora_speed_volume_cents`):
/// after the payment's transaction committed, and only for a payment new
/// to the register (not one paid before).
struct CountingLedger {
    inner: Arc<dyn Ledger>,
    business: Arc<std::sync::OnceLock<crate::Business>>,
}

impl Ledger for CountingLedger {
    fn open_account(&self, account: &Account) -> Result<(), agora_core::Error> {
        self.inner.open_account(account)
    }
    fn account(&self, number: &AccountNumber) -> Result<Option<Account>, agora_core::Error> {
        self.inner.account(number)
    }
    fn accounts_of(&self, owner: &agora_core::KeyId) -> Result<Vec<Account>, agora_core::Error> {
        self.inner.accounts_of(owner)
    }
    fn balance(&self, number: &AccountNumber) -> Result<Balance, agora_core::Error> {
        self.inner.balance(number)
    }
    fn post(&self, entry: &JournalEntry) -> Result<PostOutcome, agora_core::Error> {
        self.inner.post(entry)
    }
    fn pay(&self, payment: &PaymentRecord) -> Result<PayOutcome, agora_core::Error> {
        let outcome = self.inner.pay(payment)?;
        if let (PayOutcome::Paid, Some(b)) = (&outcome, self.business.get()) {
            b.purchase(payment.price);
        }
        Ok(outcome)
    }
    fn hold(
        &self,
        id: &PaymentOrderId,
        state: &[u8],
        at: Timestamp,
    ) -> Result<HoldOutcome, agora_core::Error> {
        self.inner.hold(id, state, at)
    }
    fn held(&self, id: &PaymentOrderId) -> Result<Option<Vec<u8>>, agora_core::Error> {
        self.inner.held(id)
    }
    fn payment(&self, id: &PaymentOrderId) -> Result<Option<PaymentRecord>, agora_core::Error> {
        self.inner.payment(id)
    }
    fn settlement(
        &self,
        vendor: &AccountNumber,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Settlement, agora_core::Error> {
        self.inner.settlement(vendor, from, to)
    }
    fn total(&self, currency: Currency) -> Result<i128, agora_core::Error> {
        self.inner.total(currency)
    }
    fn journal(
        &self,
        number: &AccountNumber,
        limit: usize,
    ) -> Result<Vec<JournalLine>, agora_core::Error> {
        self.inner.journal(number, limit)
    }
}

/// The SPEED roles as a node service.
pub struct SpeedService {
    store: Stores,
    ledger: Arc<dyn Ledger>,
    /// The node's business counts, once a node hosts this service.
    business: Arc<std::sync::OnceLock<crate::Business>>,
    broker: Option<RwLock<Broker>>,
    vendor: Option<VendorRole>,
    trust: Reloading<SpeedTrust>,
}

impl std::fmt::Debug for SpeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeedService")
            .field("broker", &self.broker.is_some())
            .field("vendor", &self.vendor.is_some())
            .finish()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Writers only replace the trust, a whole value: a poisoned lock still
    // holds a consistent role.
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl SpeedService {
    /// Builds the roles with the trust as it is now.
    pub fn new(spec: SpeedSpec) -> Result<SpeedService, String> {
        let reloading = Reloading::new(spec.trust)?;
        let trust = (*reloading.current()).clone();
        let now = Timestamp::now_from_system_clock();
        let broker = match spec.broker {
            None => None,
            Some(b) => {
                let mut broker = Broker::new(b.keys, trust.clone(), Sam::new(b.sam_master));
                for cert in &b.vendors {
                    broker
                        .add_vendor(cert, now)
                        .map_err(|e| format!("registering a vendor with the broker: {e}"))?;
                }
                for (c, a) in b.floats {
                    broker.set_float(c, a);
                }
                Some(RwLock::new(broker))
            }
        };
        let vendor = match spec.vendor {
            None => None,
            Some(v) => {
                let handshakes = spec.store.handshakes(v.keys.id());
                Some(VendorRole {
                    catalogue: RwLock::new(Arc::new(FileCatalogue::new(v.catalogue.products()?)?)),
                    source: v.catalogue,
                    vendor: RwLock::new(Vendor {
                        keys: v.keys,
                        account: v.account,
                        broker: v.broker,
                        trust: trust.clone(),
                        max_aggressive_len: v.max_aggressive_len,
                    }),
                    handshakes,
                })
            }
        };
        let business = Arc::new(std::sync::OnceLock::new());
        Ok(SpeedService {
            ledger: Arc::new(CountingLedger {
                inner: spec.store.ledger(),
                business: business.clone(),
            }),
            business,
            store: spec.store,
            broker,
            vendor,
            trust: reloading,
        })
    }

    /// The ledger the broker books on.
    pub fn ledger(&self) -> &dyn Ledger {
        self.ledger.as_ref()
    }

    fn reload_trust(&self) -> Result<(), String> {
        let t = (*self.trust.reload()?).clone();
        if let Some(b) = &self.broker {
            write(b).set_trust(t.clone());
        }
        if let Some(v) = &self.vendor {
            write(&v.vendor).trust = t;
        }
        Ok(())
    }

    /// Reads the catalogue again; says so if it changed.
    fn reload_catalogue(&self) -> Result<Option<String>, String> {
        let Some(v) = &self.vendor else {
            return Ok(None);
        };
        let fresh = FileCatalogue::new(v.source.products()?)?;
        let before: Vec<String> = v.catalogue().items.keys().cloned().collect();
        let after: Vec<String> = fresh.items.keys().cloned().collect();
        *write(&v.catalogue) = Arc::new(fresh);
        Ok((before != after).then(|| format!("catalogue: {} products", after.len())))
    }

    fn vendor(&self) -> Result<&VendorRole, Problem> {
        self.vendor
            .as_ref()
            .ok_or_else(|| Problem::not_found("this node runs no SPEED vendor"))
    }

    fn broker(&self) -> Result<&RwLock<Broker>, Problem> {
        self.broker
            .as_ref()
            .ok_or_else(|| Problem::not_found("this node runs no SPEED broker"))
    }

    /// The catalogue as JSON.
    pub fn catalogue_json(&self) -> Result<serde_json::Value, Problem> {
        let v = self.vendor()?;
        let vendor = read(&v.vendor);
        let catalogue = v.catalogue();
        let products: Vec<_> = catalogue
            .items
            .values()
            .map(|item| {
                let p = &item.product;
                serde_json::json!({
                    "product_id": p.id,
                    "size": item.len,
                    "list_price": p.rule.list.to_string(),
                    "negotiable": p.rule.floor.cents < p.rule.list.cents,
                    "aggressive": item.len <= vendor.max_aggressive_len,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "vendor": vendor.id().to_string(),
            "products": products,
        }))
    }
}

type Svc = (Arc<SpeedService>, Arc<Core>);

/// What the vendor answers a message with.
#[derive(Debug)]
pub enum VendorAnswer {
    /// A NegotiationStep, and the pending step the negotiation goes on
    /// under.
    Step(Vec<u8>, Option<crate::pending::StepId>),
    /// A delivery to stream from the product's file
    /// ([`SpeedService::write_delivery`]).
    Deliver(Delivery),
    /// A small product's whole delivery, made on the step's thread.
    Delivered(Vec<u8>),
}

impl VendorAnswer {
    /// The answer to a Handshake or ProductRequest that `d` answers: made
    /// here if the product is in memory, else streamed.
    fn delivery(v: &VendorRole, d: Delivery) -> Result<VendorAnswer, Problem> {
        let small = v
            .catalogue()
            .items
            .get(d.product_id())
            .and_then(|item| item.bytes.clone());
        match small {
            Some(bytes) => Ok(VendorAnswer::Delivered(deliver_in_memory(v, d, &bytes)?)),
            None => Ok(VendorAnswer::Deliver(d)),
        }
    }
}

/// The vendor's protocol endpoint, `POST /v1/speed/vendor`.
#[derive(Debug)]
struct VendorEndpoint(Arc<SpeedService>);

impl Endpoint for VendorEndpoint {
    fn handle(self: Arc<Self>, core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(vendor_step(self.0.clone(), core, m))
    }
}

async fn vendor_step(
    svc: Arc<SpeedService>,
    c: Arc<Core>,
    m: Inbound,
) -> Result<Outbound, Problem> {
    let s = svc.clone();
    let answer = blocking(move || s.vendor_message(&c.pending, &m)).await?;
    match answer {
        VendorAnswer::Step(body, step) => Ok(Outbound::Message { body, step }),
        VendorAnswer::Deliver(d) => Ok(Outbound::Response(deliver(svc, d)?)),
        VendorAnswer::Delivered(body) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(DELIVERY_TYPE),
            );
            Ok(Outbound::Response(r))
        }
    }
}

impl SpeedService {
    /// One message to the vendor (blocking: storage, signatures): the
    /// route's handler, and an in-process customer's transport.
    pub fn vendor_message(
        &self,
        pending: &crate::PendingSteps,
        m: &Inbound,
    ) -> Result<VendorAnswer, Problem> {
        let v = self.vendor()?;
        let (body, now) = (&m.body[..], m.now);
        let mut rng = os_rng();
        match m.tag {
            tags::SPEED_NEGOTIATION_REQUEST => {
                let (step, id) = pending.open(m.opening("speed/vendor"), || {
                    let (state, step) = read(&v.vendor).on_negotiation_request(
                        now,
                        &mut rng,
                        body,
                        v.catalogue().as_ref(),
                    )?;
                    Ok((step, state))
                })?;
                Ok(VendorAnswer::Step(step, Some(id)))
            }
            tags::SPEED_NEGOTIATION_STEP => {
                let next = pending.step(&m.pending_step()?, |s: VendorNegotiation| {
                    s.on_step(&mut rng, body)
                })?;
                match next {
                    VendorNext::Counter(state, step) => {
                        let id = pending.insert(*state)?;
                        Ok(VendorAnswer::Step(step, Some(id)))
                    }
                    VendorNext::Closed => Err(Problem::from(agora_core::Error::Refused(
                        "the vendor closed the negotiation".into(),
                    ))),
                }
            }
            tags::SPEED_HANDSHAKE => {
                let d = pending.step(&m.pending_step()?, |s: VendorNegotiation| {
                    s.on_handshake(now, body, v.handshakes.as_ref())
                })?;
                VendorAnswer::delivery(v, d)
            }
            tags::SPEED_PRODUCT_REQUEST => {
                let d = read(&v.vendor).on_product_request(
                    now,
                    body,
                    v.catalogue().as_ref(),
                    v.handshakes.as_ref(),
                )?;
                VendorAnswer::delivery(v, d)
            }
            other => Err(endpoint::unknown_message(other)),
        }
    }

    /// Writes the delivery `d` to `w`: the product read from its file and
    /// encrypted as it is written (constant memory), then the head.
    pub fn write_delivery<W: Write + Send>(&self, d: Delivery, w: W) -> io::Result<W> {
        let v = self.vendor().map_err(|_| io::Error::other("no vendor"))?;
        let (path, len) = v
            .catalogue()
            .items
            .get(d.product_id())
            .map(|item| (item.product.path.clone(), item.len))
            .ok_or_else(|| io::Error::other("a product left the catalogue"))?;
        let file = std::fs::File::open(&path)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        let ct_len = agora_core::crypto::stream::ciphertext_len(len);
        let file = io::BufReader::with_capacity(SEND_CHUNK, file);
        write_delivery(v, d, file, ct_len, w)
    }
}

/// A delivery of a product held in memory, whole: the same bytes as the
/// stream of [`deliver`], as one body.
fn deliver_in_memory(v: &VendorRole, d: Delivery, product: &[u8]) -> Result<Vec<u8>, Problem> {
    let ct_len = agora_core::crypto::stream::ciphertext_len(product.len() as u64);
    let cap = usize::try_from(ct_len).map_err(|_| Problem::internal("product too large"))? + 1024;
    write_delivery(v, d, product, ct_len, Vec::with_capacity(cap))
        .map_err(|e| Problem::internal(&format!("encrypting a product: {e}")))
}

/// Writes a delivery to `w`: the length of `|Product|_K` (`ct_len`, what
/// `product` must encrypt to), the product encrypted as it is read, then
/// the head with the bill. Returns `w`.
fn write_delivery<W: Write + Send>(
    v: &VendorRole,
    mut d: Delivery,
    product: impl io::Read,
    ct_len: u64,
    w: W,
) -> io::Result<W> {
    let mut rng = os_rng();
    let key = d.draw_key(&mut rng).clone();
    agora_speed::delivery::write_delivery(
        w,
        ct_len,
        |w| agora_speed::product::encrypt(&mut os_rng(), &key, product, w),
        |enc| {
            let (head, sale) = d
                .finish(&mut rng, &read(&v.vendor), enc)
                .map_err(io::Error::other)?;
            tracing::debug!(order = %sale.order, price = %sale.price, "SPEED delivery sent");
            Ok(head)
        },
    )
}

/// Sends what is written to it as body chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(SEND_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the customer went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SEND_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Streams the delivery: the encrypted product as it is made, then the
/// head with the bill.
fn deliver(svc: Arc<SpeedService>, d: Delivery) -> Result<Response, Problem> {
    svc.vendor()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(SEND_QUEUE);
    tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(SEND_CHUNK),
        };
        if let Err(e) = svc.write_delivery(d, w) {
            tracing::warn!(error = %e, "SPEED delivery aborted");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(DELIVERY_TYPE),
    );
    Ok(r)
}

/// The broker's protocol endpoint, `POST /v1/speed/broker`.
#[derive(Debug)]
struct BrokerEndpoint(Arc<SpeedService>);

impl Endpoint for BrokerEndpoint {
    fn handle(self: Arc<Self>, _core: Arc<Core>, m: Inbound) -> Answer {
        Box::pin(broker_step(self.0.clone(), m))
    }
}

async fn broker_step(svc: Arc<SpeedService>, m: Inbound) -> Result<Outbound, Problem> {
    let order = match m.headers.get(PAYMENT_ORDER_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| PaymentOrderId::from_hex(s).ok())
                .ok_or_else(|| Problem::bad_request("the payment order id is not 96 hex digits"))?,
        ),
    };
    let reply = blocking(move || svc.broker_message(&m, order.as_ref())).await?;
    Ok(Outbound::done(reply))
}

impl SpeedService {
    /// One message to the broker (blocking: the ledger, signatures), with
    /// the payment message b names (`order`): the route's handler, and an
    /// in-process customer's transport.
    pub fn broker_message(
        &self,
        m: &Inbound,
        order: Option<&PaymentOrderId>,
    ) -> Result<Vec<u8>, Problem> {
        let b = read(self.broker()?);
        let ledger = self.ledger.as_ref();
        let (body, now) = (&m.body[..], m.now);
        Ok(match m.tag {
            tags::SPEED_PAYMENT_ORDER => {
                match b.on_payment_order(now, &mut os_rng(), body, ledger)? {
                    BrokerReply::Receipt(r) => r,
                    BrokerReply::PurseDebit(a) => a,
                }
            }
            tags::SPEED_PURSE_CONFIRM => {
                let order = order.ok_or_else(|| {
                    Problem::bad_request(format!(
                        "message b names its payment in {PAYMENT_ORDER_HEADER}"
                    ))
                })?;
                b.on_purse_confirm(now, order, body, ledger)?
            }
            tags::SPEED_RECEIPT_REQUEST => b.on_receipt_request(body, ledger)?,
            tags::SPEED_CARD_LOAD_REQUEST => b.on_card_load(now, body, ledger)?,
            tags::SPEED_BALANCE_REQUEST => {
                b.on_balance_request(now, &mut os_rng(), body, ledger)?
            }
            other => return Err(endpoint::unknown_message(other)),
        })
    }

    /// A complaint upload (its message, then the encrypted product) read
    /// from `r` and examined by the broker in constant memory; the signed
    /// ruling, archived before it is returned. Blocking.
    pub fn rule_on_complaint(
        &self,
        now: Timestamp,
        r: &mut impl io::Read,
    ) -> Result<Vec<u8>, Problem> {
        let b = read(self.broker()?);
        let msg = agora_speed::delivery::read_complaint_head(&mut *r).map_err(|e| {
            Problem::bad_request(match e.kind() {
                io::ErrorKind::UnexpectedEof => "the complaint was cut short".to_owned(),
                _ => e.to_string(),
            })
        })?;
        let ruled = (|| -> Result<Vec<u8>, Problem> {
            let case = b.open_complaint(now, &msg, self.ledger.as_ref())?;
            let found = case
                .examine(&mut *r)
                .map_err(|_| Problem::bad_request("the encrypted product could not be read"))?;
            let ruling = case.rule(&found, now)?;
            let signed = b.sign_ruling(&ruling);
            // The ruling's unit of work is its evidence; this (blocking)
            // thread waits for it.
            self.store
                .archive()
                .record(vec![Evidence::new(RULING_EVIDENCE, signed.clone())], now)
                .wait()
                .map_err(Problem::from)?;
            tracing::info!(order = %ruling.order, verdict = ruling.verdict.as_str(), "SPEED ruling");
            Ok(signed)
        })();
        ruled
    }
}

/// Reads what an async body sends, on a blocking thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
    cur: Bytes,
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.cur = chunk?,
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// `POST /v1/speed/complaints`: a complaint and the encrypted product it is
/// about, streamed through the broker's examination (constant memory); the
/// answer is the signed ruling, also kept in the evidence archive.
async fn complaint_route(
    State((svc, core)): State<Svc>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    if !crate::content_type_is(&headers, COMPLAINT_TYPE) {
        return Err(
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
                .with_detail(format!("a complaint is {COMPLAINT_TYPE}")),
        );
    }
    use futures_util::StreamExt;
    let limit = core.config.max_upload_bytes;
    let over = std::sync::atomic::AtomicBool::new(false);
    let too_large = || crate::guard::too_large(limit);
    // An upload whose data stops for `body_timeout` is cut (408): one that
    // keeps flowing is bounded by `upload_timeout` as a whole.
    let idle = core.config.body_timeout;
    let stalled = std::sync::atomic::AtomicBool::new(false);
    let stalled_answer = || {
        Problem::new(StatusCode::REQUEST_TIMEOUT, "request-timeout").with_detail(format!(
            "the upload sent nothing for {} s",
            idle.as_secs_f64()
        ))
    };
    let mut stream = body.into_data_stream();
    // The complaint message first, on the runtime: an upload that stalls
    // here holds no thread.
    let mut head = Vec::new();
    loop {
        if head.len() >= 4 {
            let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if n > agora_speed::delivery::MAX_COMPLAINT_LEN || head.len() >= 4 + n {
                break;
            }
        }
        let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
            return Err(stalled_answer());
        };
        match next {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) if past_limit(&e) => return Err(too_large()),
            Some(Err(_)) => return Err(Problem::bad_request("the upload could not be read")),
            None => break,
        }
    }
    // Then the product, streamed through the examination on a blocking
    // thread (at most `max_uploads` of them, for at most `upload_timeout`).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(SEND_QUEUE);
    let now = Timestamp::now_from_system_clock();
    let work = blocking(move || {
        let mut r = ChannelReader {
            rx,
            cur: Bytes::from(head),
        };
        svc.rule_on_complaint(now, &mut r)
    });
    let forward = async {
        let tx = tx;
        loop {
            let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
                // Dropping the sender ends the examination's input.
                stalled.store(true, std::sync::atomic::Ordering::SeqCst);
                break;
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| {
                if past_limit(&e) {
                    over.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                io::Error::other(e)
            });
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    };
    let ruled = {
        tokio::pin!(forward, work);
        tokio::select! {
            r = &mut work => r,
            () = &mut forward => work.await,
        }
    };
    if over.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(too_large());
    }
    if stalled.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(stalled_answer());
    }
    if ruled.is_err() {
        // A refused complaint still reads (a bounded amount of) what the
        // customer is sending, on the runtime, so that she reads the
        // refusal rather than a reset in the middle of her upload. Past
        // MAX_DRAIN the answer goes out anyway and the connection closes.
        let mut drained = 0u64;
        while drained < MAX_DRAIN {
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
                _ => break,
            }
        }
    }
    Ok(cbor_reply(ruled?, None))
}

/// Whether a body error is the upload limit's (the guard's `Limited`).
fn past_limit(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

async fn catalogue_route(State((svc, _)): State<Svc>) -> Result<Response, Problem> {
    Ok(Json(svc.catalogue_json()?).into_response())
}

impl Service for SpeedService {
    fn name(&self) -> &'static str {
        "speed"
    }

    fn upload_routes(&self) -> &'static [&'static str] {
        &["/v1/speed/complaints"]
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        let _ = self.business.set(core.metrics.business.clone());
        Router::new()
            .route(
                "/v1/speed/vendor",
                endpoint::route(Arc::new(VendorEndpoint(self.clone())), core.clone()),
            )
            .route("/v1/speed/catalogue", get(catalogue_route))
            .route(
                "/v1/speed/broker",
                endpoint::route(Arc::new(BrokerEndpoint(self.clone())), core.clone()),
            )
            .route("/v1/speed/complaints", post(complaint_route))
            .with_state((self, core))
    }

    fn housekeeping(&self, _now: Timestamp) -> Result<Option<String>, String> {
        self.reload_trust()?;
        self.reload_catalogue()
    }

    fn storefront(&self) -> Option<Result<serde_json::Value, Problem>> {
        self.vendor.as_ref().map(|_| self.catalogue_json())
    }

    fn describe(&self) -> serde_json::Value {
        let mut v = serde_json::json!({});
        if let Some(b) = &self.broker {
            let b = read(b);
            v["broker"] = serde_json::json!({ "key_id": b.id().to_string() });
        }
        if let Some(r) = &self.vendor {
            let vendor = read(&r.vendor);
            v["vendor"] = serde_json::json!({
                "key_id": vendor.id().to_string(),
                "products": r.catalogue().items.len(),
            });
        }
        v
    }
}

/// `1.50 EUR` and the like, for the catalogue TOML.
pub fn parse_money(s: &str) -> Result<Money, String> {
    s.parse().map_err(|_| format!("not an amount: {s:?}"))
}
