//! The customer (paper section 4): negotiates with a vendor (normal mode) or
//! asks for a product at a fixed price (aggressive mode), checks the bill
//! and the encrypted product against what was agreed, pays the broker from
//! her account or her e-purse card, and opens the receipt that holds K.
//!
//! Normal mode: [`negotiate`] -> [`Negotiating`] (NegotiationStep rounds) ->
//! [`ExpectDelivery`] -> [`ExpectProduct`] -> [`ReadyToPay`] ->
//! ([`ExpectPurseDebit`] ->) [`ExpectReceipt`] -> [`Purchase`].
//! Aggressive mode: [`request`] -> [`ExpectAggressiveDelivery`] ->
//! [`ExpectProduct`] -> ... as above.

use crate::msg::{
    self, AggressiveDelivery, Bill, Handshake, NegotiationRequest, NegotiationStep, PaymentMode,
    PaymentOrder, ProductDelivery, ProductRequest, PurseConfirm, PurseDebit, Receipt,
};
use crate::product::Encrypted;
use crate::strategy::{CustomerStrategy, Move};
use crate::{AccountNumber, Keys, Nid, PaymentOrderId, Peer, MAX_ROUNDS};
use agora_core::crypto::{MacKey, Rng, Secret, VerifyingKey};
use agora_core::wire::{cose, decode, encode, envelope, sym};
use agora_core::{Error, Money, Result};

/// The customer's own identity: her keys and her identity certificate (DER),
/// which carries both public keys.
#[derive(Debug)]
pub struct Identity {
    /// Her keys.
    pub keys: Keys,
    /// Her X.509 identity certificate (role customer), DER.
    pub cert: Vec<u8>,
}

/// Message 1: starts a negotiation for `product_id` with `vendor`. The
/// opening offer comes from `strategy`.
pub fn negotiate(
    rng: &mut impl Rng,
    me: &Identity,
    vendor: &Peer,
    product_id: &str,
    strategy: &dyn CustomerStrategy,
) -> Result<(Negotiating, Vec<u8>)> {
    msg::check_product_id(product_id)?;
    let nid = Nid::random(rng);
    let en_key = Secret::random(rng);
    let sign_key = MacKey::random(rng);
    let (price, last_offer) = strategy.opening();
    let seq = 0;
    let request = NegotiationRequest {
        nid,
        seq,
        product_id: product_id.to_owned(),
        price,
        vendor: vendor.id(),
        en_key: en_key.clone(),
        sign_key: MacKey::new(*sign_key.expose()),
        last_offer,
        customer_cert: me.cert.clone(),
    };
    let sealed = envelope::seal(rng, &me.keys.sign, &vendor.enc, &request)?;
    Ok((
        Negotiating {
            nid,
            vendor: *vendor,
            product_id_hash: msg::product_id_hash(product_id),
            en_key,
            sign_key,
            last_seq: seq,
            round: 0,
        },
        sealed,
    ))
}

/// Waiting for the vendor's NegotiationStep.
#[derive(Debug)]
pub struct Negotiating {
    nid: Nid,
    vendor: Peer,
    product_id_hash: [u8; 32],
    en_key: Secret<32>,
    sign_key: MacKey,
    last_seq: u64,
    round: u32,
}

/// What the customer does after a vendor's offer.
#[derive(Debug)]
pub enum CustomerNext {
    /// She counters with the NegotiationStep; wait for the vendor again.
    Counter(Negotiating, Vec<u8>),
    /// She accepts: send the Handshake, then wait for the delivery.
    Agreed(ExpectDelivery, Vec<u8>),
    /// She breaks the negotiation off (the vendor's last offer was too high,
    /// or her strategy says so). Nothing is sent.
    WalkedAway {
        /// The vendor's last offer.
        offer: Money,
    },
}

impl Negotiating {
    /// The negotiation's id.
    pub fn nid(&self) -> Nid {
        self.nid
    }

    /// Message 2 from the vendor: answer it with `strategy`.
    pub fn on_step(
        self,
        rng: &mut impl Rng,
        me: &Identity,
        bytes: &[u8],
        strategy: &dyn CustomerStrategy,
    ) -> Result<CustomerNext> {
        let step: NegotiationStep = sym::open_mac(bytes, &self.en_key, &self.sign_key)?;
        if step.nid != self.nid {
            return Err(Error::PeerMisbehaved(
                "NegotiationStep of another negotiation",
            ));
        }
        msg::check_seq(self.last_seq, step.seq)?;
        let mv = if self.round >= MAX_ROUNDS {
            Move::WalkAway
        } else {
            strategy.answer(self.round, step.price, step.last_offer)
        };
        match mv {
            Move::Accept => {
                let hs = Handshake {
                    nid: self.nid,
                    price: step.price,
                };
                let sealed = sym::seal_signed(&self.en_key, &me.keys.sign, rng, &hs);
                Ok(CustomerNext::Agreed(
                    ExpectDelivery {
                        nid: self.nid,
                        vendor: self.vendor,
                        product_id_hash: self.product_id_hash,
                        price: step.price,
                        en_key: self.en_key,
                    },
                    sealed,
                ))
            }
            // A last offer she does not take closes the negotiation.
            Move::Offer { .. } | Move::WalkAway if step.last_offer => {
                Ok(CustomerNext::WalkedAway { offer: step.price })
            }
            Move::WalkAway => Ok(CustomerNext::WalkedAway { offer: step.price }),
            Move::Offer { price, last } => {
                let seq = step.seq + 1;
                let counter = NegotiationStep {
                    nid: self.nid,
                    seq,
                    price,
                    last_offer: last,
                };
                let sealed = sym::seal_mac(&self.en_key, &self.sign_key, rng, &counter);
                Ok(CustomerNext::Counter(
                    Negotiating {
                        last_seq: seq,
                        round: self.round + 1,
                        ..self
                    },
                    sealed,
                ))
            }
        }
    }
}

/// The checks every bill gets before the customer accepts the product
/// (section 5.6): it is for this purchase from this vendor, for the product
/// she asked for, at the price agreed.
fn check_bill(
    bill: &Bill,
    nid: Nid,
    vendor: &Peer,
    product_id_hash: &[u8; 32],
    price: &Money,
) -> Result<()> {
    if bill.order.vendor != vendor.id() || bill.order.nid != nid {
        return Err(Error::PeerMisbehaved("bill for another purchase"));
    }
    if bill.product_id_hash != *product_id_hash {
        return Err(Error::PeerMisbehaved("bill for another product"));
    }
    if bill.price != *price {
        return Err(Error::PeerMisbehaved("bill at another price than agreed"));
    }
    Ok(())
}

/// Waiting for message 4 (normal mode): the bill and the product.
#[derive(Debug)]
pub struct ExpectDelivery {
    nid: Nid,
    vendor: Peer,
    product_id_hash: [u8; 32],
    price: Money,
    en_key: Secret<32>,
}

impl ExpectDelivery {
    /// The negotiation's id.
    pub fn nid(&self) -> Nid {
        self.nid
    }

    /// The price agreed.
    pub fn price(&self) -> Money {
        self.price
    }

    /// The head of message 4: opens and checks the bill. The encrypted
    /// product follows; feed its digest to [`ExpectProduct::on_product`].
    pub fn on_delivery(self, bytes: &[u8]) -> Result<ExpectProduct> {
        let d: ProductDelivery = decode(bytes)?;
        if d.nid != self.nid {
            return Err(Error::PeerMisbehaved("delivery of another negotiation"));
        }
        let (bill, signed) = sym::open_signed::<Bill>(&d.bill, &self.en_key, &self.vendor.sign)?;
        check_bill(
            &bill,
            self.nid,
            &self.vendor,
            &self.product_id_hash,
            &self.price,
        )?;
        Ok(ExpectProduct {
            bill,
            signed_bill: signed,
            product_len: d.product_len,
        })
    }
}

/// Aggressive mode, message 1: asks `vendor` for `product_id` at `price`.
pub fn request(
    rng: &mut impl Rng,
    me: &Identity,
    vendor: &Peer,
    product_id: &str,
    price: Money,
) -> Result<(ExpectAggressiveDelivery, Vec<u8>)> {
    msg::check_product_id(product_id)?;
    let nid = Nid::random(rng);
    let req = ProductRequest {
        nid,
        product_id: product_id.to_owned(),
        price,
        vendor: vendor.id(),
        customer_cert: me.cert.clone(),
    };
    let sealed = envelope::seal(rng, &me.keys.sign, &vendor.enc, &req)?;
    Ok((
        ExpectAggressiveDelivery {
            nid,
            vendor: *vendor,
            product_id_hash: msg::product_id_hash(product_id),
            price,
        },
        sealed,
    ))
}

/// Waiting for aggressive message 2.
#[derive(Debug)]
pub struct ExpectAggressiveDelivery {
    nid: Nid,
    vendor: Peer,
    product_id_hash: [u8; 32],
    price: Money,
}

impl ExpectAggressiveDelivery {
    /// The purchase's id.
    pub fn nid(&self) -> Nid {
        self.nid
    }

    /// The head of aggressive message 2: opens the bill sealed to the
    /// customer and checks it.
    pub fn on_delivery(self, me: &Identity, bytes: &[u8]) -> Result<ExpectProduct> {
        let d: AggressiveDelivery = decode(bytes)?;
        if d.nid != self.nid {
            return Err(Error::PeerMisbehaved("delivery of another purchase"));
        }
        let opened = envelope::open::<Bill>(&d.bill, &me.keys.enc, |kid| self.vendor.key_if(kid))?;
        check_bill(
            &opened.message,
            self.nid,
            &self.vendor,
            &self.product_id_hash,
            &self.price,
        )?;
        Ok(ExpectProduct {
            bill: opened.message,
            signed_bill: opened.signed,
            product_len: d.product_len,
        })
    }
}

/// The bill checked; waiting for the encrypted product.
#[derive(Debug)]
pub struct ExpectProduct {
    bill: Bill,
    signed_bill: Vec<u8>,
    product_len: u64,
}

impl ExpectProduct {
    /// Bytes of `|Product|_K` the vendor announced.
    pub fn product_len(&self) -> u64 {
        self.product_len
    }

    /// The payment this bill asks for.
    pub fn order(&self) -> PaymentOrderId {
        self.bill.order
    }

    /// The encrypted product arrived (its length and digest, computed while
    /// it was stored, e.g. with [`crate::product::HashingWriter`]): it must
    /// be the one the bill names, or she does not pay.
    pub fn on_product(self, got: Encrypted) -> Result<ReadyToPay> {
        if got.len != self.product_len
            || !agora_core::crypto::ct_eq(&got.hash, &self.bill.product_hash)
        {
            return Err(Error::PeerMisbehaved(
                "encrypted product differs from the one the bill names",
            ));
        }
        Ok(ReadyToPay {
            bill: self.bill,
            signed_bill: self.signed_bill,
        })
    }
}

/// Bill and product checked: the customer may pay.
#[derive(Debug)]
pub struct ReadyToPay {
    bill: Bill,
    signed_bill: Vec<u8>,
}

/// Saved customer states: for a purchase that spans program runs (`agora
/// speed negotiate`, then `agora speed pay`; a card payment interrupted
/// between message a and the receipt). A state is the CBOR array `[version,
/// kind, fields...]`; it holds secrets (RecKey, BEncKey...), so the file
/// must be private. It is local data, decoded as strictly as peer input,
/// and the bill in it is verified again with the vendor's key.
mod saved {
    use super::*;
    use agora_core::wire::{Decoder, Encoder};
    use agora_core::DecodeError;

    /// Largest saved state.
    pub const MAX_LEN: usize = 8 * 1024;
    pub const READY: u64 = 1;
    pub const RECEIPT: u64 = 2;
    pub const PURSE: u64 = 3;

    pub fn start(kind: u64, fields: usize) -> Encoder {
        agora_core::wire::saved::start(kind, fields)
    }

    pub fn open(
        bytes: &[u8],
        kind: u64,
        fields: usize,
    ) -> std::result::Result<Decoder<'_>, DecodeError> {
        agora_core::wire::saved::open(bytes, kind, fields, MAX_LEN)
    }

    pub fn secret(
        d: &mut Decoder<'_>,
        what: &'static str,
    ) -> std::result::Result<Secret<32>, DecodeError> {
        let mut b: [u8; 32] = d.bytes_exact(what)?;
        let s = Secret::new(b);
        zeroize::Zeroize::zeroize(&mut b);
        Ok(s)
    }

    /// The signed bill and the vendor's key; the bill verified.
    pub fn bill(d: &mut Decoder<'_>) -> Result<(Bill, Vec<u8>, VerifyingKey)> {
        let signed = d.bytes("signed bill", msg::MAX_SIGNED_BILL_LEN)?.to_vec();
        let vendor: VerifyingKey = d.field()?;
        let bill = cose::verify::<Bill>(&signed, &vendor)?;
        if bill.order.vendor != vendor.key_id() {
            return Err(Error::Decode(DecodeError::Invalid(
                "saved bill of another vendor",
            )));
        }
        Ok((bill, signed, vendor))
    }
}

impl ReadyToPay {
    /// The state as bytes, to pay later ([`ReadyToPay::from_bytes`]).
    pub fn to_bytes(&self, vendor: &VerifyingKey) -> zeroize::Zeroizing<Vec<u8>> {
        let mut e = saved::start(saved::READY, 2);
        e.bytes(&self.signed_bill).field(vendor);
        zeroize::Zeroizing::new(e.into_bytes())
    }

    /// A state saved by [`ReadyToPay::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ReadyToPay> {
        let mut d = saved::open(bytes, saved::READY, 2)?;
        let (bill, signed_bill, _) = saved::bill(&mut d)?;
        d.finish()?;
        Ok(ReadyToPay { bill, signed_bill })
    }
}

impl ReadyToPay {
    /// The payment this bill asks for.
    pub fn order(&self) -> PaymentOrderId {
        self.bill.order
    }

    /// The price.
    pub fn price(&self) -> Money {
        self.bill.price
    }

    /// The vendor's signed bill (`COSE_Sign1`): evidence.
    pub fn signed_bill(&self) -> &[u8] {
        &self.signed_bill
    }

    /// Refuses a bill she already paid (section 5.3: "the customer can
    /// avoid this attack keeping track of every paid bill").
    fn check_unpaid(&self, already_paid: &dyn Fn(&PaymentOrderId) -> bool) -> Result<()> {
        if already_paid(&self.bill.order) {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    fn order_message(
        &self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        mode: PaymentMode,
    ) -> Result<Vec<u8>> {
        let po = PaymentOrder {
            bill: self.signed_bill.clone(),
            mode,
            customer_cert: me.cert.clone(),
        };
        envelope::seal(rng, &me.keys.sign, &broker.enc, &po)
    }

    fn expect_receipt(self, broker: &Peer) -> ExpectReceipt {
        ExpectReceipt {
            order: self.bill.order,
            price: self.bill.price,
            rec_key: self.bill.rec_key,
            broker: broker.sign,
            signed_bill: self.signed_bill,
        }
    }

    /// Message 5, paying from her account at the broker. `already_paid`
    /// answers from her register of paid bills; the caller records the
    /// order there once this returns.
    pub fn pay_from_account(
        self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        account: AccountNumber,
        already_paid: &dyn Fn(&PaymentOrderId) -> bool,
    ) -> Result<(ExpectReceipt, Vec<u8>)> {
        self.check_unpaid(already_paid)?;
        let sealed = self.order_message(rng, me, broker, PaymentMode::Account(account))?;
        Ok((self.expect_receipt(broker), sealed))
    }

    /// Message 5, paying by e-purse card: `s1` is the card's authentication
    /// ([`crate::purse::Card::authenticate`]).
    pub fn pay_by_card(
        self,
        rng: &mut impl Rng,
        me: &Identity,
        broker: &Peer,
        s1: Vec<u8>,
        already_paid: &dyn Fn(&PaymentOrderId) -> bool,
    ) -> Result<(ExpectPurseDebit, Vec<u8>)> {
        self.check_unpaid(already_paid)?;
        let enc_key = Secret::random(rng);
        let sign_key = MacKey::random(rng);
        let mode = PaymentMode::Purse {
            enc_key: enc_key.clone(),
            sign_key: MacKey::new(*sign_key.expose()),
            s1,
        };
        let sealed = self.order_message(rng, me, broker, mode)?;
        Ok((
            ExpectPurseDebit {
                enc_key,
                sign_key,
                then: self.expect_receipt(broker),
            },
            sealed,
        ))
    }
}

/// Paying by card: waiting for message a (the SAM's debit command S2).
#[derive(Debug)]
pub struct ExpectPurseDebit {
    enc_key: Secret<32>,
    sign_key: MacKey,
    then: ExpectReceipt,
}

impl ExpectPurseDebit {
    /// The state as bytes ([`ExpectPurseDebit::from_bytes`]).
    pub fn to_bytes(&self, vendor: &VerifyingKey) -> zeroize::Zeroizing<Vec<u8>> {
        let mut e = saved::start(saved::PURSE, 5);
        e.bytes(self.enc_key.expose())
            .bytes(self.sign_key.expose())
            .bytes(&self.then.signed_bill)
            .field(vendor)
            .field(&self.then.broker);
        zeroize::Zeroizing::new(e.into_bytes())
    }

    /// A state saved by [`ExpectPurseDebit::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ExpectPurseDebit> {
        let mut d = saved::open(bytes, saved::PURSE, 5)?;
        let enc_key = saved::secret(&mut d, "BEncKey")?;
        let sign_key = MacKey::new(*saved::secret(&mut d, "BSignKey")?.expose());
        let (bill, signed_bill, _) = saved::bill(&mut d)?;
        let broker: VerifyingKey = d.field()?;
        d.finish()?;
        Ok(ExpectPurseDebit {
            enc_key,
            sign_key,
            then: ExpectReceipt {
                order: bill.order,
                price: bill.price,
                rec_key: bill.rec_key,
                broker,
                signed_bill,
            },
        })
    }

    /// The payment.
    pub fn order(&self) -> PaymentOrderId {
        self.then.order
    }

    /// The price on the bill.
    pub fn price(&self) -> Money {
        self.then.price
    }

    /// Message a: hands S2 to the card (`card_debit`, e.g.
    /// [`crate::purse::Card::debit`], returns S3) and answers with message b.
    /// The card itself checks that S2 comes from a genuine SAM and debits
    /// at most once. If the broker does not answer b, the driver sends the
    /// same bytes again: the broker pays at most once per PaymentOrderID.
    pub fn on_debit(
        self,
        rng: &mut impl Rng,
        bytes: &[u8],
        card_debit: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<(ExpectReceipt, Vec<u8>)> {
        let a: PurseDebit = sym::open_mac(bytes, &self.enc_key, &self.sign_key)?;
        if a.order != self.then.order {
            return Err(Error::PeerMisbehaved("debit command for another payment"));
        }
        let s3 = card_debit(&a.s2)?;
        let b = PurseConfirm {
            order: self.then.order,
            s3,
        };
        let sealed = sym::seal_mac(&self.enc_key, &self.sign_key, rng, &b);
        Ok((self.then, sealed))
    }

    /// The receipt to wait for when the broker says this payment is made
    /// already ([`Error::Replayed`] to the PaymentOrder sent again): the
    /// card debited and b arrived before an interruption. She asks for the
    /// receipt ([`receipt_request`]).
    pub fn paid_already(self) -> ExpectReceipt {
        self.then
    }

    /// Message b again after an interruption: the card has debited (its
    /// [`crate::purse::Card::last_confirmation`] is S3), but b or its answer
    /// was lost, perhaps with the program. The broker pays at most once per
    /// PaymentOrderID, so sending b again is safe.
    pub fn resume(self, rng: &mut impl Rng, s3: Vec<u8>) -> (ExpectReceipt, Vec<u8>) {
        let b = PurseConfirm {
            order: self.then.order,
            s3,
        };
        let sealed = sym::seal_mac(&self.enc_key, &self.sign_key, rng, &b);
        (self.then, sealed)
    }
}

/// Opens a PurchaseReceipt under `rec_key`, signed by `broker`: the receipt
/// and its `COSE_Sign1` (evidence). Used by customer and vendor.
pub fn open_receipt(
    bytes: &[u8],
    rec_key: &Secret<32>,
    broker: &VerifyingKey,
) -> Result<(Receipt, Vec<u8>)> {
    sym::open_signed::<Receipt>(bytes, rec_key, broker)
}

/// Waiting for message 6, the PurchaseReceipt.
#[derive(Debug)]
pub struct ExpectReceipt {
    order: PaymentOrderId,
    price: Money,
    rec_key: Secret<32>,
    broker: VerifyingKey,
    signed_bill: Vec<u8>,
}

impl ExpectReceipt {
    /// The state as bytes ([`ExpectReceipt::from_bytes`]): kept until the
    /// receipt is in, and after, to ask the broker for it again.
    pub fn to_bytes(&self, vendor: &VerifyingKey) -> zeroize::Zeroizing<Vec<u8>> {
        let mut e = saved::start(saved::RECEIPT, 3);
        e.bytes(&self.signed_bill).field(vendor).field(&self.broker);
        zeroize::Zeroizing::new(e.into_bytes())
    }

    /// A state saved by [`ExpectReceipt::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ExpectReceipt> {
        let mut d = saved::open(bytes, saved::RECEIPT, 3)?;
        let (bill, signed_bill, _) = saved::bill(&mut d)?;
        let broker: VerifyingKey = d.field()?;
        d.finish()?;
        Ok(ExpectReceipt {
            order: bill.order,
            price: bill.price,
            rec_key: bill.rec_key,
            broker,
            signed_bill,
        })
    }

    /// The payment.
    pub fn order(&self) -> PaymentOrderId {
        self.order
    }

    /// The price on the bill.
    pub fn price(&self) -> Money {
        self.price
    }

    /// Message 6: the broker's receipt, with K. The state is kept when the
    /// receipt does not open or does not match, so that anyone sending the
    /// customer a damaged or forged receipt cannot cost her RecKey: she asks
    /// the broker again ([`receipt_request`]).
    pub fn on_receipt(&self, bytes: &[u8]) -> Result<Purchase> {
        let (receipt, signed) = open_receipt(bytes, &self.rec_key, &self.broker)?;
        if receipt.order != self.order {
            return Err(Error::PeerMisbehaved("receipt for another payment"));
        }
        if receipt.price != self.price {
            return Err(Error::PeerMisbehaved("receipt for another price"));
        }
        Ok(Purchase {
            order: self.order,
            price: self.price,
            key: receipt.key,
            receipt: signed,
            bill: self.signed_bill.clone(),
        })
    }
}

/// A completed purchase: K to decrypt the product, and the evidence.
#[derive(Debug)]
pub struct Purchase {
    /// The payment.
    pub order: PaymentOrderId,
    /// What was paid.
    pub price: Money,
    /// K: decrypts the product ([`crate::product::decrypt`]).
    pub key: Secret<32>,
    /// The broker's signed receipt (`COSE_Sign1`).
    pub receipt: Vec<u8>,
    /// The vendor's signed bill (`COSE_Sign1`).
    pub bill: Vec<u8>,
}

/// Checks a signed receipt as a third party would: the broker's signature
/// over `{PaymentOrderID, Price, K}`.
pub fn verify_receipt(signed: &[u8], broker: &VerifyingKey) -> Result<Receipt> {
    cose::verify::<Receipt>(signed, broker)
}

/// The encoding of a receipt request for `order` (anyone may ask; the
/// answer is readable only under RecKey).
pub fn receipt_request(order: PaymentOrderId) -> Vec<u8> {
    encode(&msg::ReceiptRequest { order })
}

/// A request to load `amount` onto the card that made `s1`, from `account`:
/// sealed to the broker. Keep the bytes until the card has applied the
/// command: a retry must send the same request.
pub fn card_load_request(
    rng: &mut impl Rng,
    me: &Identity,
    broker: &Peer,
    account: AccountNumber,
    amount: Money,
    s1: Vec<u8>,
    now: agora_core::Timestamp,
) -> Result<Vec<u8>> {
    let req = msg::CardLoadRequest {
        id: agora_core::crypto::random_bytes(rng),
        account,
        amount,
        s1,
        at: now,
        customer_cert: me.cert.clone(),
    };
    envelope::seal(rng, &me.keys.sign, &broker.enc, &req)
}

/// A question to the broker for the balance of `account`, hers: the
/// state that reads the answer, and the request (sealed to the broker).
pub fn balance_request(
    rng: &mut impl Rng,
    me: &Identity,
    broker: &Peer,
    account: AccountNumber,
    now: agora_core::Timestamp,
) -> Result<(ExpectBalance, Vec<u8>)> {
    let reply_key = Secret::random(rng);
    let req = msg::BalanceRequest {
        account: account.clone(),
        at: now,
        reply_key: reply_key.clone(),
        customer_cert: me.cert.clone(),
    };
    let sealed = envelope::seal(rng, &me.keys.sign, &broker.enc, &req)?;
    Ok((
        ExpectBalance {
            request_hash: agora_core::crypto::sha256(&sealed),
            account,
            reply_key,
            broker: broker.sign,
        },
        sealed,
    ))
}

/// Waiting for the broker's [`msg::Balance`].
#[derive(Debug)]
pub struct ExpectBalance {
    request_hash: [u8; 32],
    account: AccountNumber,
    reply_key: Secret<32>,
    broker: VerifyingKey,
}

impl ExpectBalance {
    /// The answer: under the reply key, signed by the broker, answering this
    /// request about this account.
    pub fn on_balance(&self, bytes: &[u8]) -> Result<msg::Balance> {
        let (b, _) = sym::open_signed::<msg::Balance>(bytes, &self.reply_key, &self.broker)?;
        if b.request_hash != self.request_hash {
            return Err(Error::PeerMisbehaved("an answer to another request"));
        }
        if b.account != self.account {
            return Err(Error::PeerMisbehaved("the balance of another account"));
        }
        Ok(b)
    }
}

/// A complaint about a paid purchase (section 5.7): the description of her
/// request, sealed to the broker; send the encrypted product as delivered
/// after it (`product_len` bytes).
pub fn complaint(
    rng: &mut impl Rng,
    me: &Identity,
    broker: &Peer,
    order: PaymentOrderId,
    product_id: &str,
    product_len: u64,
) -> Result<Vec<u8>> {
    msg::check_product_id(product_id)?;
    let c = msg::Complaint {
        order,
        product_id: product_id.to_owned(),
        product_len,
        customer_cert: me.cert.clone(),
    };
    envelope::seal(rng, &me.keys.sign, &broker.enc, &c)
}

/// Checks a ruling as a third party would: the broker's signature.
pub fn verify_ruling(signed: &[u8], broker: &VerifyingKey) -> Result<msg::Ruling> {
    cose::verify::<msg::Ruling>(signed, broker)
}
