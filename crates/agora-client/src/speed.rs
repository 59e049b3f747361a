//! The customer's side of SPEED: drives [`agora_speed::customer`] against
//! a vendor and a broker, over HTTP (a node's, `agora_node::speed`) or
//! hosted in this process ([`LocalSpeed`]), through one [`SpeedTransport`].
//! The encrypted product is written as it arrives (to a file, or to any
//! writer the caller opens: the load tool keeps small ones in memory),
//! hashed on the way, so a product of any size costs constant memory; it
//! is checked against the bill before anything is paid.

use crate::transport::{ClientError, NodeClient};
use agora_core::crypto::Rng;
use agora_core::Money;
use agora_node::endpoint::Inbound;
use agora_node::pending::StepId;
use agora_node::speed::{SpeedService, VendorAnswer};
use agora_node::speed::{COMPLAINT_TYPE, DELIVERY_TYPE, PAYMENT_ORDER_HEADER};
use agora_node::PendingSteps;
use agora_node::STEP_HEADER;
use agora_speed::customer::{
    self, CustomerNext, ExpectProduct, ExpectPurseDebit, ExpectReceipt, Identity, Purchase,
    ReadyToPay,
};
use agora_speed::purse::Card;
use agora_speed::strategy::CustomerStrategy;
use agora_speed::{AccountNumber, PaymentOrderId, Peer};
use std::io::Write;
use std::io::{self, BufWriter, Read};
use std::path::Path;
use std::sync::Arc;

/// The largest encrypted product a customer accepts (64 GiB).
pub const MAX_PRODUCT_LEN: u64 = 64 << 30;

/// Why a purchase step failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeedClientError {
    /// The node refused, or could not be reached.
    #[error("{0}")]
    Node(#[from] ClientError),
    /// A message from the vendor or the broker failed the customer's checks.
    #[error("{0}")]
    Protocol(#[from] agora_core::Error),
    /// Reading the delivery or writing the product file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl SpeedClientError {
    /// A stable code: the node's problem code, the protocol error's, or `io`.
    pub fn code(&self) -> &str {
        match self {
            SpeedClientError::Node(e) => e.code(),
            SpeedClientError::Protocol(e) => e.code(),
            SpeedClientError::Io(_) => "io",
        }
    }
}

/// The result type of the client.
pub type Result<T> = std::result::Result<T, SpeedClientError>;

/// How a negotiation ended.
#[derive(Debug)]
pub enum Negotiated {
    /// Agreed, delivered and checked: ready to pay. The encrypted product is
    /// in the file given.
    Ready(ReadyToPay),
    /// The customer walked away from the vendor's last offer.
    WalkedAway {
        /// That offer.
        offer: Money,
        /// Rounds of NegotiationStep exchanged.
        rounds: u32,
    },
}

/// The vendor's answer to a customer's message.
pub enum VendorReply {
    /// A protocol message (a NegotiationStep), with the pending step the
    /// negotiation goes on under.
    Message(Vec<u8>, Option<StepId>),
    /// A delivery ([`agora_speed::delivery`]): the encrypted product, then
    /// the head with the bill, read as it comes.
    Delivery(Box<dyn Read + Send>),
}

impl std::fmt::Debug for VendorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VendorReply::Message(b, s) => {
                f.debug_tuple("Message").field(&b.len()).field(s).finish()
            }
            VendorReply::Delivery(_) => f.write_str("Delivery"),
        }
    }
}

/// A complaint upload, opened again for each attempt: the reader and its
/// length.
pub type Upload<'a> = &'a dyn Fn() -> io::Result<(Box<dyn Read + Send>, u64)>;

/// How a SPEED customer reaches the vendor and the broker: a node over
/// HTTP ([`SpeedClient::http`]) or their roles hosted in this process
/// ([`LocalSpeed`]).
pub trait SpeedTransport: Send + Sync {
    /// The vendor's catalogue (JSON).
    fn catalogue(&self) -> std::result::Result<serde_json::Value, ClientError>;
    /// One message to the vendor, continuing pending step `step`.
    fn vendor(
        &self,
        body: &[u8],
        step: Option<StepId>,
    ) -> std::result::Result<VendorReply, ClientError>;
    /// One message to the broker; message b names its payment (`order`).
    fn broker(
        &self,
        body: &[u8],
        order: Option<&PaymentOrderId>,
    ) -> std::result::Result<Vec<u8>, ClientError>;
    /// A complaint upload ([`agora_speed::delivery::complaint_head`], then
    /// the encrypted product): the broker's signed ruling.
    fn complaint(&self, upload: Upload<'_>) -> std::result::Result<Vec<u8>, ClientError>;
}

/// A node's vendor and broker over HTTP.
#[derive(Clone, Debug)]
pub struct HttpSpeed(NodeClient);

impl HttpSpeed {
    /// The vendor and broker of the node `node`.
    pub fn new(node: NodeClient) -> HttpSpeed {
        HttpSpeed(node)
    }
}

impl SpeedTransport for HttpSpeed {
    fn catalogue(&self) -> std::result::Result<serde_json::Value, ClientError> {
        self.0.get_json("/v1/speed/catalogue")
    }

    fn vendor(
        &self,
        body: &[u8],
        step: Option<StepId>,
    ) -> std::result::Result<VendorReply, ClientError> {
        let headers: Vec<(&str, String)> = step
            .map(|id| vec![(STEP_HEADER, hex::encode(id))])
            .unwrap_or_default();
        let r = self
            .0
            .post_cbor_stream("/v1/speed/vendor", body, &headers)?;
        let media = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if media == DELIVERY_TYPE {
            return Ok(VendorReply::Delivery(Box::new(r)));
        }
        if media != agora_node::CBOR {
            return Err(ClientError::Transport(format!(
                "the vendor answered {media:?}"
            )));
        }
        let step = r
            .headers()
            .get(STEP_HEADER)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| agora_node::pending::parse_id(v).ok())
                    .ok_or_else(|| ClientError::Transport("bad step header".into()))
            })
            .transpose()?;
        let mut buf = Vec::new();
        r.take(agora_core::wire::MAX_MESSAGE_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ClientError::Transport(format!("reading the reply: {e}")))?;
        Ok(VendorReply::Message(buf, step))
    }

    fn broker(
        &self,
        body: &[u8],
        order: Option<&PaymentOrderId>,
    ) -> std::result::Result<Vec<u8>, ClientError> {
        let headers: Vec<(&str, String)> = order
            .map(|o| vec![(PAYMENT_ORDER_HEADER, o.to_hex())])
            .unwrap_or_default();
        Ok(self.0.post_cbor("/v1/speed/broker", body, &headers)?.0)
    }

    fn complaint(&self, upload: Upload<'_>) -> std::result::Result<Vec<u8>, ClientError> {
        self.0
            .post_stream("/v1/speed/complaints", COMPLAINT_TYPE, upload)
    }
}

/// The SPEED roles (vendor, broker) hosted in this process, with their own
/// table of pending steps: a customer without `--node` talks to the data
/// directory's roles as to a node's.
pub struct LocalSpeed {
    service: Arc<SpeedService>,
    pending: PendingSteps,
}

impl std::fmt::Debug for LocalSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSpeed").finish_non_exhaustive()
    }
}

impl LocalSpeed {
    /// Hosts `service` here.
    pub fn new(service: SpeedService) -> LocalSpeed {
        LocalSpeed {
            service: Arc::new(service),
            pending: PendingSteps::new(64, std::time::Duration::from_secs(600)),
        }
    }

    fn inbound(body: &[u8], step: Option<StepId>) -> std::result::Result<Inbound, ClientError> {
        let tag = agora_node::endpoint::message_tag(body, |_| None)?;
        Ok(Inbound::local(
            tag,
            body,
            step,
            agora_core::Timestamp::now_from_system_clock(),
        ))
    }
}

/// Bytes of encrypted product per chunk between the in-process vendor's
/// thread and the customer.
const LOCAL_CHUNK: usize = 64 * 1024;

/// A delivery written on another thread and read here, a few chunks in
/// flight: constant memory whatever the product's size.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: io::Cursor<Vec<u8>>,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.cur.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(chunk) => self.cur = io::Cursor::new(chunk?),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// The writing end of a [`PipeReader`].
struct PipeWriter {
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= LOCAL_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buf);
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the customer went away"))
    }
}

impl SpeedTransport for LocalSpeed {
    fn catalogue(&self) -> std::result::Result<serde_json::Value, ClientError> {
        Ok(self.service.catalogue_json()?)
    }

    fn vendor(
        &self,
        body: &[u8],
        step: Option<StepId>,
    ) -> std::result::Result<VendorReply, ClientError> {
        let m = Self::inbound(body, step)?;
        match self.service.vendor_message(&self.pending, &m)? {
            VendorAnswer::Step(body, step) => Ok(VendorReply::Message(body, step)),
            VendorAnswer::Delivered(bytes) => {
                Ok(VendorReply::Delivery(Box::new(io::Cursor::new(bytes))))
            }
            VendorAnswer::Deliver(d) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                let service = self.service.clone();
                std::thread::spawn(move || {
                    let w = PipeWriter {
                        tx: tx.clone(),
                        buf: Vec::with_capacity(LOCAL_CHUNK),
                    };
                    if let Err(e) = service.write_delivery(d, w) {
                        let _ = tx.send(Err(e));
                    }
                });
                Ok(VendorReply::Delivery(Box::new(PipeReader {
                    rx,
                    cur: io::Cursor::new(Vec::new()),
                })))
            }
        }
    }

    fn broker(
        &self,
        body: &[u8],
        order: Option<&PaymentOrderId>,
    ) -> std::result::Result<Vec<u8>, ClientError> {
        Ok(self
            .service
            .broker_message(&Self::inbound(body, None)?, order)?)
    }

    fn complaint(&self, upload: Upload<'_>) -> std::result::Result<Vec<u8>, ClientError> {
        let (mut r, _) =
            upload().map_err(|e| ClientError::Transport(format!("reading the complaint: {e}")))?;
        let now = agora_core::Timestamp::now_from_system_clock();
        Ok(self.service.rule_on_complaint(now, &mut r)?)
    }
}

/// A SPEED customer's client: the customer's side of [`agora_speed::customer`]
/// over a [`SpeedTransport`].
pub struct SpeedClient {
    t: Box<dyn SpeedTransport>,
}

impl std::fmt::Debug for SpeedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeedClient").finish_non_exhaustive()
    }
}

impl SpeedClient {
    /// A client over `t`.
    pub fn new(t: Box<dyn SpeedTransport>) -> SpeedClient {
        SpeedClient { t }
    }

    /// A client of the node `node` over HTTP.
    pub fn http(node: NodeClient) -> SpeedClient {
        SpeedClient::new(Box::new(HttpSpeed(node)))
    }

    /// The vendor's catalogue (JSON).
    pub fn catalogue(&self) -> Result<serde_json::Value> {
        Ok(self.t.catalogue()?)
    }

    fn vendor(&self, body: &[u8], step: Option<StepId>) -> Result<(Vec<u8>, Option<StepId>)> {
        match self.t.vendor(body, step)? {
            VendorReply::Message(b, s) => Ok((b, s)),
            VendorReply::Delivery(_) => Err(ClientError::Transport(
                "the vendor answered a negotiation message with a delivery".into(),
            )
            .into()),
        }
    }

    fn broker(&self, body: &[u8], order: Option<&PaymentOrderId>) -> Result<Vec<u8>> {
        Ok(self.t.broker(body, order)?)
    }

    /// Reads a delivery stream: the encrypted product into the writer
    /// `open` gives (hashed on the way), then the head, which `expect`
    /// checks; then the product against the bill.
    fn receive<W: Write>(
        &self,
        body: &[u8],
        step: Option<StepId>,
        open: impl FnOnce() -> io::Result<W>,
        expect: impl FnOnce(&[u8]) -> agora_core::Result<ExpectProduct>,
    ) -> Result<(ReadyToPay, W)> {
        let VendorReply::Delivery(r) = self.t.vendor(body, step)? else {
            return Err(ClientError::Transport("expected a delivery, got a message".into()).into());
        };
        let r = io::BufReader::with_capacity(64 * 1024, r);
        let (out, enc, head) = agora_speed::delivery::read_delivery(r, MAX_PRODUCT_LEN, open()?)?;
        Ok((expect(&head)?.on_product(enc)?, out))
    }

    /// The product file `out`, created, and written through a buffer.
    fn create(out: &Path) -> io::Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::with_capacity(
            64 * 1024,
            std::fs::File::create(out)?,
        ))
    }

    /// Flushes and syncs a product file.
    fn sync(file: BufWriter<std::fs::File>) -> io::Result<()> {
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// Normal mode: negotiates `product_id` with `vendor` under `strategy`,
    /// and on agreement receives the encrypted product into the file `out`
    /// and checks it against the bill.
    pub fn negotiate(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        strategy: &dyn CustomerStrategy,
        out: &Path,
    ) -> Result<Negotiated> {
        let (n, file) =
            self.negotiate_into(rng, me, vendor, product_id, strategy, || Self::create(out))?;
        if let Some(file) = file {
            Self::sync(file)?;
        }
        Ok(n)
    }

    /// [`Self::negotiate`], the encrypted product written into what `open`
    /// opens on agreement (and returned with the outcome).
    pub fn negotiate_into<W: Write>(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        strategy: &dyn CustomerStrategy,
        open: impl FnOnce() -> io::Result<W>,
    ) -> Result<(Negotiated, Option<W>)> {
        let (mut state, request) = customer::negotiate(rng, me, vendor, product_id, strategy)?;
        let (mut step, mut step_id) = self.vendor(&request, None)?;
        let mut rounds = 1;
        loop {
            match state.on_step(rng, me, &step, strategy)? {
                CustomerNext::Counter(s, counter) => {
                    state = s;
                    let (next, id) = self.vendor(&counter, step_id)?;
                    step = next;
                    step_id = id;
                    rounds += 1;
                }
                CustomerNext::Agreed(expect, handshake) => {
                    let (ready, out) =
                        self.receive(&handshake, step_id, open, |head| expect.on_delivery(head))?;
                    return Ok((Negotiated::Ready(ready), Some(out)));
                }
                CustomerNext::WalkedAway { offer } => {
                    return Ok((Negotiated::WalkedAway { offer, rounds }, None))
                }
            }
        }
    }

    /// Aggressive mode: asks for `product_id` at `price`, receives the
    /// encrypted product into the file `out` and checks it against the
    /// bill.
    pub fn request(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        price: Money,
        out: &Path,
    ) -> Result<ReadyToPay> {
        let (ready, file) =
            self.request_into(rng, me, vendor, product_id, price, || Self::create(out))?;
        Self::sync(file)?;
        Ok(ready)
    }

    /// [`Self::request`], the encrypted product written into what `open`
    /// opens (and returned with it).
    pub fn request_into<W: Write>(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        price: Money,
        open: impl FnOnce() -> io::Result<W>,
    ) -> Result<(ReadyToPay, W)> {
        let (expect, request) = customer::request(rng, me, vendor, product_id, price)?;
        self.receive(&request, None, open, |head| expect.on_delivery(me, head))
    }

    /// Pays from `account` and opens the receipt. `save` is called with the
    /// state and the PaymentOrder (message 5) before the order is sent: with
    /// them an interrupted payment is finished by
    /// [`SpeedClient::resume_account`], which sends the same bytes again.
    #[allow(clippy::too_many_arguments)] // each is one party or one piece of state
    pub fn pay_from_account(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        vendor: &Peer,
        ready: ReadyToPay,
        account: AccountNumber,
        already_paid: &dyn Fn(&PaymentOrderId) -> bool,
        mut save: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<Purchase> {
        let (expect, order) = ready.pay_from_account(rng, me, broker, account, already_paid)?;
        save(&expect.to_bytes(&vendor.sign), &order)?;
        self.resume_account(expect, &order)
    }

    /// Sends the PaymentOrder `order` (saved with `expect` before it was
    /// first sent) and opens the receipt. The broker pays a PaymentOrderID
    /// at most once: an order it has paid already is refused as replayed,
    /// and the receipt is then asked for ([`SpeedClient::receipt`]). So an
    /// interrupted payment, whether the order or its answer was lost, ends
    /// paid exactly once.
    pub fn resume_account(&self, expect: ExpectReceipt, order: &[u8]) -> Result<Purchase> {
        match self.broker(order, None) {
            Ok(receipt) => Ok(expect.on_receipt(&receipt)?),
            Err(SpeedClientError::Node(ClientError::Problem(p))) if p.code == "replayed" => {
                self.receipt(expect)
            }
            Err(e) => Err(e),
        }
    }

    /// Pays by `card` (S1, then message a to the card, message b back) and
    /// opens the receipt. The card file is saved (`save_card`) once the card
    /// has opened its session and again before S3 leaves it; `save` is
    /// called with the state and the PaymentOrder before the order is sent.
    /// With them an interrupted payment is finished by
    /// [`SpeedClient::resume_card`].
    #[allow(clippy::too_many_arguments)] // each is one party or one piece of state
    pub fn pay_by_card(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        vendor: &Peer,
        ready: ReadyToPay,
        card: &mut Card,
        already_paid: &dyn Fn(&PaymentOrderId) -> bool,
        mut save: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
        mut save_card: impl FnMut(&Card) -> io::Result<()>,
    ) -> Result<Purchase> {
        let s1 = card.authenticate(rng);
        // The session outlives this process: message a, sent again after an
        // interruption, is for this session.
        save_card(card)?;
        let (expect, order) = ready.pay_by_card(rng, me, broker, s1, already_paid)?;
        save(&expect.to_bytes(&vendor.sign), &order)?;
        self.resume_card(rng, expect, &order, card, save_card)
    }

    /// Carries a card payment on from wherever it stopped. If the card's
    /// last confirmation is this payment's debit, the card has paid: message
    /// b is made from it again and sent ([`SpeedClient::confirm_again`]).
    /// Otherwise the PaymentOrder `order` (saved with `expect` before it was
    /// first sent) is sent again: the broker answers a held order with the
    /// same message a, which the card, still in the session it opened for
    /// this payment, debits once. A PaymentOrderID paid already gets its
    /// receipt.
    pub fn resume_card(
        &self,
        rng: &mut impl Rng,
        expect: ExpectPurseDebit,
        order: &[u8],
        card: &mut Card,
        mut save_card: impl FnMut(&Card) -> io::Result<()>,
    ) -> Result<Purchase> {
        if let Some(s3) = debit_of(card, &expect.order()) {
            let (expect, b) = expect.resume(rng, s3);
            return self.confirm_again(expect, &b);
        }
        if !card.has_open_session() {
            return Err(agora_core::Error::Refused(
                "the card has closed the session this payment opened (it was used since): \
                 it cannot debit for this order; pay again once the broker's hold expires"
                    .into(),
            )
            .into());
        }
        let a = match self.broker(order, None) {
            Ok(a) => a,
            Err(SpeedClientError::Node(ClientError::Problem(p))) if p.code == "replayed" => {
                return self.receipt(expect.paid_already());
            }
            Err(e) => return Err(e),
        };
        let (expect, b) = self.debit(rng, expect, &a, card, &mut save_card)?;
        self.confirm_again(expect, &b)
    }

    fn debit(
        &self,
        rng: &mut impl Rng,
        expect: ExpectPurseDebit,
        a: &[u8],
        card: &mut Card,
        save_card: &mut impl FnMut(&Card) -> io::Result<()>,
    ) -> Result<(ExpectReceipt, Vec<u8>)> {
        let mut saved = Ok(());
        let r = expect.on_debit(rng, a, |s2| {
            let s3 = card.debit(s2)?;
            // The card file is written before S3 leaves it.
            saved = save_card(card);
            Ok(s3)
        })?;
        saved?;
        Ok(r)
    }

    /// Asks the broker for the receipt of a payment again and opens it.
    pub fn receipt(&self, expect: ExpectReceipt) -> Result<Purchase> {
        let req = customer::receipt_request(expect.order());
        let receipt = self.broker(&req, None)?;
        Ok(expect.on_receipt(&receipt)?)
    }

    /// The sealed PurchaseReceipt of `order` as the broker resends it, or
    /// `None` if the broker has no payment of that order (yet). For the
    /// vendor's copy ([`agora_speed::vendor::Vendor::open_receipt_of`]).
    pub fn sealed_receipt(&self, order: &PaymentOrderId) -> Result<Option<Vec<u8>>> {
        match self.broker(&customer::receipt_request(*order), None) {
            Ok(r) => Ok(Some(r)),
            Err(SpeedClientError::Node(ClientError::Problem(p))) if p.code == "refused" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads `amount` onto `card` from `account`. The card file is saved
    /// (`save_card`) once the card has opened its session and again after
    /// it applied the command; the request is given to `save_request`
    /// before it is sent. With both an interrupted load is finished by
    /// [`SpeedClient::resume_card_load`]: the broker debits the account once
    /// per request and answers it again with the same command.
    #[allow(clippy::too_many_arguments)] // each is one party or one piece of state
    pub fn load_card(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        account: AccountNumber,
        amount: Money,
        card: &mut Card,
        now: agora_core::Timestamp,
        mut save_card: impl FnMut(&Card) -> io::Result<()>,
        save_request: impl FnOnce(&[u8]) -> io::Result<()>,
    ) -> Result<()> {
        let counter = card.counter();
        let s1 = card.authenticate(rng);
        save_card(card)?;
        let req = customer::card_load_request(rng, me, broker, account, amount, s1, now)?;
        save_request(&req)?;
        self.resume_card_load(&req, counter, card, save_card)
            .map(|_| ())
    }

    /// Finishes the card load `req`, asked for when the card's counter was
    /// `counter`. If the card has moved past that counter with its session
    /// closed, it applied the command before the interruption: nothing is
    /// sent, and the answer is `false`. Otherwise the same request is sent
    /// (the broker debits once and answers with the same command), the card
    /// applies it and is saved: `true`.
    pub fn resume_card_load(
        &self,
        req: &[u8],
        counter: u64,
        card: &mut Card,
        mut save_card: impl FnMut(&Card) -> io::Result<()>,
    ) -> Result<bool> {
        if card.counter() == counter + 1 && !card.has_open_session() {
            return Ok(false);
        }
        if card.counter() != counter || !card.has_open_session() {
            return Err(agora_core::Error::Refused(
                "the card has been used since this load was asked for: it cannot apply it".into(),
            )
            .into());
        }
        // A lost answer is asked for again with the same request.
        let cmd = match self.broker(req, None) {
            Ok(c) => c,
            Err(SpeedClientError::Node(ClientError::Transport(_))) => self.broker(req, None)?,
            Err(e) => return Err(e),
        };
        card.load(&cmd)?;
        save_card(card)?;
        Ok(true)
    }

    /// The balance of `account`, hers, as the broker signs it.
    pub fn balance(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        account: AccountNumber,
        now: agora_core::Timestamp,
    ) -> Result<agora_speed::msg::Balance> {
        let (expect, req) = customer::balance_request(rng, me, broker, account, now)?;
        let answer = self.broker(&req, None)?;
        Ok(expect.on_balance(&answer)?)
    }

    /// A complaint about a paid purchase (section 5.7): the description of
    /// her request and the encrypted product as delivered (the file at
    /// `product`), streamed to the broker; returns the broker's signed
    /// ruling.
    #[allow(clippy::too_many_arguments)] // each is one party or one piece of evidence
    pub fn complain(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        order: PaymentOrderId,
        product_id: &str,
        product: &Path,
    ) -> Result<(agora_speed::msg::Ruling, Vec<u8>)> {
        let len = std::fs::metadata(product)?.len();
        let msg = customer::complaint(rng, me, broker, order, product_id, len)?;
        let head = agora_speed::delivery::complaint_head(&msg)?;
        let total = head.len() as u64 + len;
        let path = product.to_path_buf();
        let upload = || {
            let f = std::fs::File::open(&path)?;
            let r: Box<dyn Read + Send> = Box::new(io::Cursor::new(head.clone()).chain(f));
            Ok((r, total))
        };
        let signed = self.t.complaint(&upload)?;
        let ruling = customer::verify_ruling(&signed, &broker.sign)?;
        if ruling.order != order {
            return Err(agora_core::Error::PeerMisbehaved("ruling on another payment").into());
        }
        Ok((ruling, signed))
    }

    /// Sends message b again (the same bytes) for `order` and opens the
    /// receipt: after an interruption between the card's debit and the
    /// receipt.
    pub fn confirm_again(&self, expect: ExpectReceipt, b: &[u8]) -> Result<Purchase> {
        let order = expect.order();
        match self.broker(b, Some(&order)) {
            Ok(receipt) => Ok(expect.on_receipt(&receipt)?),
            // Paid already: the receipt is in the broker's register.
            Err(SpeedClientError::Node(ClientError::Problem(p))) if p.code == "replayed" => {
                self.receipt(expect)
            }
            Err(e) => Err(e),
        }
    }
}

/// S3 of the card's last debit, if that debit paid `order`. The card's
/// confirmation is MAC'd for the SAM, not for her: it is read unverified,
/// only to know whether the card has paid this order already (the broker
/// checks the MAC).
fn debit_of(card: &Card, order: &PaymentOrderId) -> Option<Vec<u8>> {
    let s3 = card.last_confirmation()?;
    let c: agora_speed::purse::DebitConfirmation = agora_speed::purse::read_unverified(s3).ok()?;
    (c.order == *order).then(|| s3.to_vec())
}
