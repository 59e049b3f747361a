//! The customer's side of SPEED over HTTP: drives [`agora_speed::customer`]
//! against a node's vendor and broker ([`crate::speed`]). The encrypted
//! product is written to a file as it arrives, hashed on the way, so a
//! product of any size costs constant memory; it is checked against the
//! bill before anything is paid.

use crate::transport::{ClientError, NodeClient};
use agora_core::crypto::Rng;
use agora_core::Money;
use agora_node::speed::{COMPLAINT_TYPE, DELIVERY_TYPE, PAYMENT_ORDER_HEADER};
use agora_node::STEP_HEADER;
use agora_speed::customer::{
    self, CustomerNext, ExpectProduct, ExpectPurseDebit, ExpectReceipt, Identity, Purchase,
    ReadyToPay,
};
use agora_speed::purse::Card;
use agora_speed::strategy::CustomerStrategy;
use agora_speed::{AccountNumber, PaymentOrderId, Peer};
use std::io::{self, BufWriter, Read};
use std::path::Path;

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

/// A SPEED customer's client of a node.
#[derive(Clone, Debug)]
pub struct SpeedClient {
    node: NodeClient,
}

impl SpeedClient {
    /// A client of `node`.
    pub fn new(node: NodeClient) -> SpeedClient {
        SpeedClient { node }
    }

    /// The vendor's catalogue (JSON).
    pub fn catalogue(&self) -> Result<serde_json::Value> {
        Ok(self.node.get_json("/v1/speed/catalogue")?)
    }

    fn vendor(
        &self,
        body: &[u8],
        step_id: Option<agora_node::pending::StepId>,
    ) -> Result<(Vec<u8>, Option<agora_node::pending::StepId>)> {
        let headers: Vec<(&str, String)> = step_id
            .map(|id| vec![(STEP_HEADER, hex::encode(id))])
            .unwrap_or_default();
        Ok(self.node.post_cbor("/v1/speed/vendor", body, &headers)?)
    }

    fn broker(&self, body: &[u8], order: Option<&PaymentOrderId>) -> Result<Vec<u8>> {
        let headers: Vec<(&str, String)> = order
            .map(|o| vec![(PAYMENT_ORDER_HEADER, o.to_hex())])
            .unwrap_or_default();
        Ok(self.node.post_cbor("/v1/speed/broker", body, &headers)?.0)
    }

    /// Reads a delivery stream: the encrypted product into `out` (hashed on
    /// the way), then the head, which `expect` checks; then the product
    /// against the bill.
    fn receive(
        &self,
        body: &[u8],
        step_id: Option<agora_node::pending::StepId>,
        out: &Path,
        expect: impl FnOnce(&[u8]) -> agora_core::Result<ExpectProduct>,
    ) -> Result<ReadyToPay> {
        let headers: Vec<(&str, String)> = step_id
            .map(|id| vec![(STEP_HEADER, hex::encode(id))])
            .unwrap_or_default();
        let r = self
            .node
            .post_cbor_stream("/v1/speed/vendor", body, &headers)?;
        let ct = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct != DELIVERY_TYPE {
            return Err(ClientError::Transport(format!("expected a delivery, got {ct:?}")).into());
        }
        let r = io::BufReader::with_capacity(64 * 1024, r);
        let file = std::fs::File::create(out)?;
        let (file, enc, head) = agora_speed::delivery::read_delivery(
            r,
            MAX_PRODUCT_LEN,
            BufWriter::with_capacity(64 * 1024, file),
        )?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(expect(&head)?.on_product(enc)?)
    }

    /// Normal mode: negotiates `product_id` with `vendor` under `strategy`,
    /// and on agreement receives the encrypted product into `out` and checks
    /// it against the bill.
    pub fn negotiate(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        strategy: &dyn CustomerStrategy,
        out: &Path,
    ) -> Result<Negotiated> {
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
                    let ready =
                        self.receive(&handshake, step_id, out, |head| expect.on_delivery(head))?;
                    return Ok(Negotiated::Ready(ready));
                }
                CustomerNext::WalkedAway { offer } => {
                    return Ok(Negotiated::WalkedAway { offer, rounds })
                }
            }
        }
    }

    /// Aggressive mode: asks for `product_id` at `price`, receives the
    /// encrypted product into `out` and checks it against the bill.
    pub fn request(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        vendor: &Peer,
        product_id: &str,
        price: Money,
        out: &Path,
    ) -> Result<ReadyToPay> {
        let (expect, request) = customer::request(rng, me, vendor, product_id, price)?;
        self.receive(&request, None, out, |head| expect.on_delivery(me, head))
    }

    /// Pays from `account` and opens the receipt. `save` is called with the
    /// state to keep before the order is sent (to ask for the receipt again
    /// should the answer be lost).
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
        mut save: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<Purchase> {
        let (expect, order) = ready.pay_from_account(rng, me, broker, account, already_paid)?;
        save(&expect.to_bytes(&vendor.sign))?;
        let receipt = self.broker(&order, None)?;
        Ok(expect.on_receipt(&receipt)?)
    }

    /// Pays by `card` (S1, then message a to the card, message b back) and
    /// opens the receipt. `save` is called with the state to keep before the
    /// order is sent; with it and the card file (saved by `save_card` before
    /// S3 leaves the card) an interrupted payment can be finished
    /// ([`agora_speed::customer::ExpectPurseDebit::resume`],
    /// [`SpeedClient::confirm_again`]).
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
        mut save: impl FnMut(&[u8]) -> io::Result<()>,
        mut save_card: impl FnMut(&Card) -> io::Result<()>,
    ) -> Result<Purchase> {
        let order_id = ready.order();
        let s1 = card.authenticate(rng);
        let (expect, order) = ready.pay_by_card(rng, me, broker, s1, already_paid)?;
        save(&expect.to_bytes(&vendor.sign))?;
        let a = self.broker(&order, None)?;
        // The saved state stays the one that can make b again (with the
        // card's S3): see ExpectPurseDebit::resume.
        let (expect, b) = self.debit(rng, expect, &a, card, &mut save_card)?;
        let receipt = self.broker(&b, Some(&order_id))?;
        Ok(expect.on_receipt(&receipt)?)
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

    /// Loads `amount` onto `card` from `account`. The card file is saved by
    /// `save_card` after the card applied the command.
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
    ) -> Result<()> {
        let s1 = card.authenticate(rng);
        let req = customer::card_load_request(rng, me, broker, account, amount, s1, now)?;
        // A lost answer is asked for again with the same request: the broker
        // debits once and answers with the same command.
        let cmd = match self.broker(&req, None) {
            Ok(c) => c,
            Err(SpeedClientError::Node(ClientError::Transport(_))) => self.broker(&req, None)?,
            Err(e) => return Err(e),
        };
        card.load(&cmd)?;
        save_card(card)?;
        Ok(())
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
        let signed = self
            .node
            .post_stream("/v1/speed/complaints", COMPLAINT_TYPE, || {
                let f = std::fs::File::open(&path)?;
                let r: Box<dyn Read + Send> = Box::new(io::Cursor::new(head.clone()).chain(f));
                Ok((r, total))
            })?;
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
