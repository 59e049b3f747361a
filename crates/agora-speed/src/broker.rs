//! The broker (paper sections 3 and 4.2, payment phase): takes the
//! customer's PaymentOrder, checks the vendor's bill, debits the customer's
//! account or e-purse card (through its SAM), credits the vendor, and
//! releases K in a signed receipt under RecKey. Every payment goes through
//! the [`Ledger`]: one transaction records it in the register and moves the
//! money, so a PaymentOrderID is paid at most once system-wide (section 5.3:
//! "it is mandatory for broker to keep track of every processed
//! transaction"), and the receipt can be sent again (section 5.7).

use crate::ledger::{
    AccountKind, HoldOutcome, JournalEntry, Ledger, PayMode, PayOutcome, PaymentRecord, Posting,
};
use crate::msg::{
    Bill, BillSecret, CardLoadRequest, Complaint, PaymentMode, PaymentOrder, PurseConfirm,
    PurseDebit, Receipt, ReceiptRequest, Ruling, Verdict,
};
use crate::purse::{PendingDebit, Sam};
use crate::{AccountNumber, Keys, PaymentOrderId, SpeedTrust};
use agora_core::crypto::{MacKey, Rng, Secret, VerifyingKey};
use agora_core::wire::{cose, decode, envelope, sym, Decoder, Encoder};
use agora_core::{Currency, DecodeError, Error, KeyId, Money, Result, Timestamp};
use agora_pki::PartyRole;
use std::collections::BTreeMap;
use zeroize::Zeroize;

/// How far from the broker's clock a card load request may be dated
/// (seconds): the window in which the same request can be retried.
pub const LOAD_REQUEST_WINDOW_SECS: u64 = 600;

/// The broker: its keys, the CAs it trusts for customers, its SAM, the
/// vendors registered with it and its purse float accounts (one per
/// currency: the value loaded onto cards).
#[derive(Debug)]
pub struct Broker {
    keys: Keys,
    trust: SpeedTrust,
    sam: Sam,
    vendors: BTreeMap<KeyId, VerifyingKey>,
    floats: BTreeMap<Currency, AccountNumber>,
}

/// The broker's answer to a PaymentOrder.
#[derive(Debug)]
pub enum BrokerReply {
    /// Paid from the customer's account: message 6, the sealed receipt.
    Receipt(Vec<u8>),
    /// Paying by card: message a, the SAM's debit command. The debit is held
    /// (durably) until message b.
    PurseDebit(Vec<u8>),
}

impl Broker {
    /// A broker with no vendors and no purse float accounts yet.
    pub fn new(keys: Keys, trust: SpeedTrust, sam: Sam) -> Broker {
        Broker {
            keys,
            trust,
            sam,
            vendors: BTreeMap::new(),
            floats: BTreeMap::new(),
        }
    }

    /// The broker's key id.
    pub fn id(&self) -> KeyId {
        self.keys.id()
    }

    /// Registers a vendor whose identity certificate is valid at `now`; its
    /// bills are accepted from then on. Returns the vendor's key id.
    pub fn add_vendor(&mut self, cert: &[u8], now: Timestamp) -> Result<KeyId> {
        let id = self.trust.identity(cert, now, PartyRole::Vendor)?;
        let key = *id.key();
        self.vendors.insert(key.key_id(), key);
        Ok(key.key_id())
    }

    /// Names the purse float account of `currency` (an
    /// [`AccountKind::PurseFloat`] account in the ledger).
    pub fn set_float(&mut self, currency: Currency, account: AccountNumber) {
        self.floats.insert(currency, account);
    }

    /// Replaces the CAs and CRLs (after a CRL refresh).
    pub fn set_trust(&mut self, trust: SpeedTrust) {
        self.trust = trust;
    }

    /// Checks the bill inside a PaymentOrder: signed by a registered vendor,
    /// its PaymentOrderID naming that vendor, its sealed part opening to an
    /// account of that vendor. Returns the bill and its secret part.
    fn check_bill(&self, signed: &[u8], ledger: &dyn Ledger) -> Result<(Bill, BillSecret)> {
        let (bill, vendor) =
            cose::verify_with::<Bill>(signed, |kid| self.vendors.get(kid).copied())?;
        if bill.order.vendor != vendor {
            return Err(Error::PeerMisbehaved(
                "PaymentOrderID names another vendor than the bill's signer",
            ));
        }
        if bill.price.cents == 0 {
            return Err(Error::PeerMisbehaved("bill of zero"));
        }
        let secret = BillSecret::open(&bill.secret, &self.keys.enc, &bill.order)?;
        let account = ledger
            .account(&secret.account)?
            .ok_or_else(|| Error::Refused("the bill names an unknown vendor account".into()))?;
        if account.kind != AccountKind::Vendor || account.owner != vendor {
            return Err(Error::NotAuthorised(
                "the bill names an account that is not the vendor's".into(),
            ));
        }
        Ok((bill, secret))
    }

    /// Message 6: `{PaymentOrderID, Price, K}` signed by the broker, under
    /// RecKey.
    fn receipt(&self, rng: &mut impl Rng, bill: &Bill, key: &Secret<32>) -> Vec<u8> {
        let r = Receipt {
            order: bill.order,
            price: bill.price,
            key: key.clone(),
        };
        sym::seal_signed(&bill.rec_key, &self.keys.sign, rng, &r)
    }

    /// Message 5: a PaymentOrder. Paid from an account, it is answered with
    /// the receipt; by card, with message a (the debit is held until b).
    /// A PaymentOrderID paid or held before is [`Error::Replayed`] and
    /// changes nothing; a customer who lost her receipt asks for it with a
    /// [`ReceiptRequest`].
    pub fn on_payment_order(
        &self,
        now: Timestamp,
        rng: &mut impl Rng,
        bytes: &[u8],
        ledger: &dyn Ledger,
    ) -> Result<BrokerReply> {
        let opened = envelope::open_self_certified::<PaymentOrder>(bytes, &self.keys.enc, |po| {
            Ok(*self
                .trust
                .identity(&po.customer_cert, now, PartyRole::Customer)?
                .key())
        })?;
        let customer = opened.signer;
        let po = opened.message;
        let (bill, secret) = self.check_bill(&po.bill, ledger)?;
        if ledger.payment(&bill.order)?.is_some() {
            return Err(Error::Replayed);
        }
        match po.mode {
            PaymentMode::Account(number) => {
                let payer = ledger
                    .account(&number)?
                    .ok_or_else(|| Error::Refused("no such customer account".into()))?;
                if payer.kind != AccountKind::Customer || payer.owner != customer {
                    return Err(Error::NotAuthorised(
                        "the account is not the customer's".into(),
                    ));
                }
                let receipt = self.receipt(rng, &bill, &secret.key);
                let record = PaymentRecord {
                    id: bill.order,
                    payer: number,
                    vendor: secret.account,
                    price: bill.price,
                    mode: PayMode::Account,
                    customer,
                    bill: po.bill,
                    receipt: receipt.clone(),
                    key: secret.key,
                    paid_at: now,
                };
                match ledger.pay(&record)? {
                    PayOutcome::Paid => Ok(BrokerReply::Receipt(receipt)),
                    PayOutcome::AlreadyPaid(_) => Err(Error::Replayed),
                }
            }
            PaymentMode::Purse {
                enc_key,
                sign_key,
                s1,
            } => {
                let float = self.floats.get(&bill.price.currency).ok_or_else(|| {
                    Error::Refused(format!("no e-purse in {}", bill.price.currency))
                })?;
                // Held already: message a was lost; send it again before
                // any SAM or signing work.
                if let Some(state) = ledger.held(&bill.order)? {
                    return Held::resend(&state, &customer);
                }
                let (s2, pending) = self.sam.debit(&s1, bill.price, &bill.order, rng)?;
                let receipt = self.receipt(rng, &bill, &secret.key);
                let mut held = Held {
                    pending: pending.to_bytes(),
                    enc_key,
                    sign_key,
                    customer,
                    payer: float.clone(),
                    vendor: secret.account,
                    price: bill.price,
                    bill: po.bill,
                    receipt,
                    key: secret.key,
                    a: Vec::new(),
                };
                let a = PurseDebit {
                    order: bill.order,
                    s2,
                };
                held.a = sym::seal_mac(&held.enc_key, &held.sign_key, rng, &a);
                match ledger.hold(&bill.order, &held.to_bytes(), now)? {
                    HoldOutcome::Held => Ok(BrokerReply::PurseDebit(held.a)),
                    // Held by a concurrent copy of the same order.
                    HoldOutcome::AlreadyHeld(state) => Held::resend(&state, &customer),
                    HoldOutcome::AlreadyPaid => Err(Error::Replayed),
                }
            }
        }
    }

    /// Message b for the card payment of `order` (named by the transport;
    /// the message repeats it): the card's S3 proves the debit; the payment
    /// is recorded and the receipt returned.
    pub fn on_purse_confirm(
        &self,
        now: Timestamp,
        order: &PaymentOrderId,
        bytes: &[u8],
        ledger: &dyn Ledger,
    ) -> Result<Vec<u8>> {
        let Some(state) = ledger.held(order)? else {
            return Err(match ledger.payment(order)? {
                Some(_) => Error::Replayed,
                None => Error::Refused("no card debit pending for this payment".into()),
            });
        };
        let held = Held::from_bytes(&state)?;
        let b: PurseConfirm = sym::open_mac(bytes, &held.enc_key, &held.sign_key)?;
        if b.order != *order {
            return Err(Error::PeerMisbehaved("confirmation for another payment"));
        }
        let pending = PendingDebit::from_bytes(&held.pending)?;
        let proof = self.sam.confirm(&pending, &b.s3)?;
        let record = PaymentRecord {
            id: *order,
            payer: held.payer,
            vendor: held.vendor,
            price: held.price,
            mode: PayMode::Purse {
                card: proof.card_id(),
            },
            customer: held.customer,
            bill: held.bill,
            receipt: held.receipt.clone(),
            key: held.key,
            paid_at: now,
        };
        match ledger.pay(&record)? {
            PayOutcome::Paid => Ok(held.receipt),
            PayOutcome::AlreadyPaid(_) => Err(Error::Replayed),
        }
    }

    /// A customer's [`BalanceRequest`](crate::msg::BalanceRequest): the
    /// balance of her own account (refused for anyone else's), signed and
    /// sealed under the request's reply key. A request far from the
    /// broker's clock is [`Error::Replayed`]; one sent again within it gets
    /// an answer only its sender can read. Nothing changes.
    pub fn on_balance_request(
        &self,
        now: Timestamp,
        rng: &mut impl Rng,
        bytes: &[u8],
        ledger: &dyn Ledger,
    ) -> Result<Vec<u8>> {
        let opened = envelope::open_self_certified::<crate::msg::BalanceRequest>(
            bytes,
            &self.keys.enc,
            |r| {
                Ok(*self
                    .trust
                    .identity(&r.customer_cert, now, PartyRole::Customer)?
                    .key())
            },
        )?;
        let req = opened.message;
        if req.at.distance_secs(now) > LOAD_REQUEST_WINDOW_SECS {
            return Err(Error::Replayed);
        }
        let account = ledger
            .account(&req.account)?
            .ok_or_else(|| Error::Refused("no such customer account".into()))?;
        if account.kind != AccountKind::Customer || account.owner != opened.signer {
            return Err(Error::NotAuthorised(
                "the account is not the customer's".into(),
            ));
        }
        let answer = crate::msg::Balance {
            request_hash: agora_core::crypto::sha256(bytes),
            account: req.account,
            // A customer's account never goes below zero (no credit).
            balance: ledger
                .balance(&account.number)?
                .as_money()
                .ok_or_else(|| Error::Storage("a customer account below zero".into()))?,
            at: now,
        };
        Ok(sym::seal_signed(
            &req.reply_key,
            &self.keys.sign,
            rng,
            &answer,
        ))
    }

    /// A card load: the customer's account is debited and the purse float
    /// credited (one journal entry, whose id is derived from the request and
    /// its S1), and the SAM's load command is returned. The same request
    /// again debits nothing more and gets the same command, which the card
    /// applies at most once; a request with a fresh S1 is a new load.
    pub fn on_card_load(
        &self,
        now: Timestamp,
        bytes: &[u8],
        ledger: &dyn Ledger,
    ) -> Result<Vec<u8>> {
        let opened =
            envelope::open_self_certified::<CardLoadRequest>(bytes, &self.keys.enc, |r| {
                Ok(*self
                    .trust
                    .identity(&r.customer_cert, now, PartyRole::Customer)?
                    .key())
            })?;
        let customer = opened.signer;
        let req = opened.message;
        if req.at.distance_secs(now) > LOAD_REQUEST_WINDOW_SECS {
            return Err(Error::Replayed);
        }
        if req.amount.cents == 0 {
            return Err(Error::Refused("a load of zero".into()));
        }
        let cents = i64::try_from(req.amount.cents)
            .map_err(|_| Error::Refused("amount too large".into()))?;
        let payer = ledger
            .account(&req.account)?
            .ok_or_else(|| Error::Refused("no such customer account".into()))?;
        if payer.kind != AccountKind::Customer || payer.owner != customer {
            return Err(Error::NotAuthorised(
                "the account is not the customer's".into(),
            ));
        }
        let float = self
            .floats
            .get(&req.amount.currency)
            .ok_or_else(|| Error::Refused(format!("no e-purse in {}", req.amount.currency)))?;
        let mut label = b"agora/speed/card-load/v1".to_vec();
        label.extend_from_slice(&customer.0);
        label.extend_from_slice(&req.id);
        label.extend_from_slice(&agora_core::crypto::sha256(&req.s1));
        let request = agora_core::crypto::sha256(&label);
        // The SAM first: it checks S1 and the card's limit before any money
        // moves.
        let (cmd, _) = self.sam.load_for_request(&req.s1, req.amount, &request)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&request[..16]);
        let entry = JournalEntry {
            id,
            at: req.at,
            memo: format!("card load {}", hex::encode(req.id)),
            postings: vec![
                Posting {
                    account: req.account,
                    cents: -cents,
                },
                Posting {
                    account: float.clone(),
                    cents,
                },
            ],
        };
        ledger.post(&entry)?;
        Ok(cmd)
    }

    /// A complaint (section 5.7): checks it is the payer's, that the
    /// description she presents is the one the bill's digest names, and
    /// returns the case; the driver streams the encrypted product she sent
    /// through [`ComplaintCase::examine`] and the case rules.
    pub fn open_complaint(
        &self,
        now: Timestamp,
        bytes: &[u8],
        ledger: &dyn Ledger,
    ) -> Result<ComplaintCase> {
        let opened = envelope::open_self_certified::<Complaint>(bytes, &self.keys.enc, |c| {
            Ok(*self
                .trust
                .identity(&c.customer_cert, now, PartyRole::Customer)?
                .key())
        })?;
        let c = opened.message;
        let record = ledger
            .payment(&c.order)?
            .ok_or_else(|| Error::Refused("no such payment".into()))?;
        if record.customer != opened.signer {
            return Err(Error::NotAuthorised(
                "only the customer who paid may complain".into(),
            ));
        }
        let (bill, _) =
            cose::verify_with::<Bill>(&record.bill, |kid| self.vendors.get(kid).copied())?;
        if crate::msg::product_id_hash(&c.product_id) != bill.product_id_hash {
            return Err(Error::Refused(
                "that description is not the one the bill names".into(),
            ));
        }
        Ok(ComplaintCase {
            order: c.order,
            customer: opened.signer,
            product_id: c.product_id,
            product_len: c.product_len,
            product_hash: bill.product_hash,
            key: record.key,
        })
    }

    /// Signs a ruling.
    pub fn sign_ruling(&self, ruling: &Ruling) -> Vec<u8> {
        cose::sign(&self.keys.sign, ruling)
    }

    /// A request for the receipt of a payment: the sealed receipt as it was
    /// sent (readable only under RecKey).
    pub fn on_receipt_request(&self, bytes: &[u8], ledger: &dyn Ledger) -> Result<Vec<u8>> {
        let req: ReceiptRequest = decode(bytes)?;
        ledger
            .payment(&req.order)?
            .map(|r| r.receipt)
            .ok_or_else(|| Error::Refused("no such payment".into()))
    }

    /// The broker's key, to check its receipts.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.keys.sign.verifying_key()
    }
}

/// A card debit held between message a and message b: what the broker
/// needs to finish the payment, stored durably by [`Ledger::hold`].
struct Held {
    pending: Vec<u8>,
    enc_key: Secret<32>,
    sign_key: MacKey,
    customer: KeyId,
    payer: AccountNumber,
    vendor: AccountNumber,
    price: Money,
    bill: Vec<u8>,
    receipt: Vec<u8>,
    key: Secret<32>,
    /// Message a as first sent, to send again.
    a: Vec<u8>,
}

/// Format version of [`Held`].
const HELD_VERSION: u64 = 1;

impl Held {
    /// Message a again, for the order held in `state`: it was lost on its
    /// way. It is sealed under the customer's BEncKey (worthless to anyone
    /// else), and her card, still in that session, can answer it. Only the
    /// customer who ordered gets it.
    fn resend(state: &[u8], customer: &KeyId) -> Result<BrokerReply> {
        let held = Held::from_bytes(state)?;
        if held.customer != *customer {
            return Err(Error::Replayed);
        }
        Ok(BrokerReply::PurseDebit(held.a))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.array(12)
            .uint(HELD_VERSION)
            .bytes(&self.pending)
            .bytes(self.enc_key.expose())
            .bytes(self.sign_key.expose())
            .field(&self.customer)
            .field(&self.payer)
            .field(&self.vendor)
            .field(&self.price)
            .bytes(&self.bill)
            .bytes(&self.receipt)
            .bytes(self.key.expose())
            .bytes(&self.a);
        e.into_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> std::result::Result<Held, DecodeError> {
        let mut d = Decoder::new(bytes);
        d.array(12)?;
        if d.uint()? != HELD_VERSION {
            return Err(DecodeError::Invalid("held debit of another version"));
        }
        let pending = d
            .bytes("pending debit", crate::purse::MAX_PENDING_LEN)?
            .to_vec();
        let mut k: [u8; 32] = d.bytes_exact("BEncKey")?;
        let enc_key = Secret::new(k);
        let mut m: [u8; 32] = d.bytes_exact("BSignKey")?;
        let sign_key = MacKey::new(m);
        k.zeroize();
        m.zeroize();
        let customer = d.field()?;
        let payer = d.field()?;
        let vendor = d.field()?;
        let price = d.field()?;
        let bill = d.bytes("bill", crate::msg::MAX_SIGNED_BILL_LEN)?.to_vec();
        let receipt = d.bytes("receipt", 1024)?.to_vec();
        let mut kk: [u8; 32] = d.bytes_exact("K")?;
        let key = Secret::new(kk);
        kk.zeroize();
        let a = d
            .bytes("message a", crate::msg::MAX_PURSE_COMMAND_LEN + 256)?
            .to_vec();
        d.finish()?;
        Ok(Held {
            pending,
            enc_key,
            sign_key,
            customer,
            payer,
            vendor,
            price,
            bill,
            receipt,
            key,
            a,
        })
    }
}

/// A complaint under examination at the broker.
#[derive(Debug)]
pub struct ComplaintCase {
    order: PaymentOrderId,
    customer: KeyId,
    product_id: String,
    product_len: u64,
    product_hash: [u8; 32],
    key: Secret<32>,
}

/// What the broker found in the encrypted product of a complaint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Examined {
    /// Bytes of `|Product|_K` read.
    pub product_len: u64,
    /// Their SHA-256.
    pub product_hash: [u8; 32],
    /// The decrypted product's length and SHA-256, if K decrypts it.
    pub content: Option<(u64, [u8; 32])>,
}

impl ComplaintCase {
    /// Bytes of `|Product|_K` the customer sends with the complaint.
    pub fn product_len(&self) -> u64 {
        self.product_len
    }

    /// Reads the encrypted product the customer sent (exactly
    /// [`ComplaintCase::product_len`] bytes), hashing it and decrypting it
    /// with K, in constant memory.
    pub fn examine(&self, ciphertext: impl std::io::Read) -> std::io::Result<Examined> {
        use agora_core::crypto::Digest;
        use std::io::Read;
        struct Tee<R> {
            inner: R,
            hasher: agora_core::crypto::Sha256,
            len: u64,
        }
        impl<R: Read> Read for Tee<R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.inner.read(buf)?;
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
        }
        let mut tee = Tee {
            inner: ciphertext.take(self.product_len),
            hasher: agora_core::crypto::Sha256::new(),
            len: 0,
        };
        let mut plain = crate::product::HashingWriter::new(std::io::sink());
        let decrypted = crate::product::decrypt(&self.key, &mut tee, &mut plain);
        // Whatever decryption made of it, read the rest so that the digest
        // is of everything sent.
        std::io::copy(&mut tee, &mut std::io::sink())?;
        let content = match decrypted {
            Ok(_) => {
                let (_, e) = plain.finish();
                Some((e.len, e.hash))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => None,
            Err(e) => return Err(e),
        };
        Ok(Examined {
            product_len: tee.len,
            product_hash: tee.hasher.finalize().into(),
            content,
        })
    }

    /// The ruling on what [`ComplaintCase::examine`] found: the encrypted
    /// product must be the one the bill names (else the complaint is
    /// refused: it is not about this purchase); then the verdict.
    pub fn rule(self, found: &Examined, now: Timestamp) -> Result<Ruling> {
        if found.product_len != self.product_len
            || !agora_core::crypto::ct_eq(&found.product_hash, &self.product_hash)
        {
            return Err(Error::Refused(
                "the encrypted product sent is not the one the bill names".into(),
            ));
        }
        let (decrypts, content_len, content_hash) = match found.content {
            Some((len, hash)) => (true, len, hash),
            None => (false, 0, [0u8; 32]),
        };
        let verdict = match (decrypts, crate::msg::described_digest(&self.product_id)) {
            (false, _) => Verdict::Upheld,
            (true, Some(d)) if d == content_hash => Verdict::Dismissed,
            (true, Some(_)) => Verdict::Upheld,
            (true, None) => Verdict::Recorded,
        };
        Ok(Ruling {
            order: self.order,
            customer: self.customer,
            product_id: self.product_id,
            product_hash: self.product_hash,
            decrypts,
            content_hash,
            content_len,
            verdict,
            at: now,
        })
    }
}
