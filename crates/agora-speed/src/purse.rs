//! The e-purse card and the broker's SAM (paper section 2; ARCHITECTURE
//! section 2, last row): a simulated CEN WG10 ("Inter-sector Electronic
//! Purse") card and the secure access module that debits and loads it.
//!
//! Paper section 2: "A SAM security module uses the keys it shares with the
//! card to authenticate messages during the decrement (i.e. purchase) or the
//! increment transaction. This lets the SAM module convince the smart card
//! that it is genuine. The card convinces the module by using the shared key
//! to authenticate some information, like the amount to manage." The paper's
//! 3DES MACs are HMAC-SHA-256 here, each message a COSE_Mac0
//! ([`cose::mac`]) over a tagged agora [`Message`].
//!
//! # Keys
//!
//! The issuer (the broker) holds one 32-byte master key. Each card holds
//! only its diversified key
//! `K_card = HMAC-SHA-256(master, "agora/speed/purse/v1" ‖ card_id)`, so a
//! card that is broken open gives away no other card. Two MAC keys per
//! direction are expanded from it (HKDF-Expand with one output block, which
//! is one HMAC): `K_card→SAM = HMAC(K_card, "agora/speed/purse/v1/card-to-sam"
//! ‖ 0x01)` for S1, S3 and the load confirmation, and `K_SAM→card` likewise
//! with `"sam-to-card"` for S2 and the load command, so no message can be
//! reflected back to its sender even if the tags did not already tell them
//! apart. The SAM re-derives the keys from the master key and the card id;
//! it stores nothing per card.
//!
//! # Decrement (purchase), three passes
//!
//! - S1, [`CardAuth`] ([`Card::authenticate`]): card id, balance, counter
//!   and a fresh card nonce, MAC'd by the card. The card remembers the
//!   nonce as its one open session (a new S1 abandons the previous one).
//! - S2, [`DebitCommand`] ([`Sam::debit`]): the SAM checks S1's MAC (only a
//!   card holding `K_card` made it), the currency and the balance, and
//!   answers with card id, counter, card nonce, amount, PaymentOrderID and a
//!   fresh SAM nonce, MAC'd with the card key (only the SAM can derive it).
//! - S3, [`DebitConfirmation`] ([`Card::debit`]): the card checks the MAC,
//!   that S2 answers its open session and its current counter, and its
//!   balance; it then debits, increments the counter, closes the session and
//!   answers with card id, new counter, amount, new balance, PaymentOrderID
//!   and both nonces (the SAM's, and the card's own, so that S3 names the one
//!   session and the one command it closes), MAC'd. [`Sam::confirm`] checks S3 against the
//!   [`PendingDebit`] the broker stored when it sent S2 and gives a
//!   [`DebitProof`].
//!
//! Loading value is the same three passes with [`LoadCommand`] and
//! [`LoadConfirmation`] ([`Sam::load`], [`Card::load`],
//! [`Sam::confirm_load`]). The broker takes the money from the customer's
//! account when it issues the load command (with the [`PendingLoad`] stored
//! in the same transaction), as an issuer's load acquirer does.
//!
//! # One session, one command
//!
//! As a WG10/CEPS purse aborts a transaction on any error, every command
//! that reaches a card with an open session closes that session, whether the
//! card accepts it or not (a bad MAC, a replayed or foreign command, an
//! insufficient balance). The card's balance and counter change only on
//! success. Closing the session on refusal is the safe choice: a command
//! once refused can never be completed later, and each card nonce gives an
//! attacker one try. It costs the honest parties nothing but a fresh S1,
//! and whoever can inject a bad command can as well drop the good one. A
//! command with no open session is refused as [`Error::Replayed`] (out of
//! order), as is one that answers an earlier session or counter.
//!
//! The SAM keeps no state of its own: S1 carries no SAM challenge, so an old
//! S1 may be replayed to the SAM; the S2 it gets is then refused by the
//! card, which is the party that enforces freshness (its nonce and counter).
//!
//! # Recovery
//!
//! A card remembers the confirmation of its last successful command
//! ([`Card::last_confirmation`], kept in the card file), as WG10/CEPS purses
//! keep their last transaction for recovery: if S3 is lost on the way, the
//! holder resends it and the broker confirms it against the stored
//! [`PendingDebit`]. Confirming is idempotent; the broker settles a pending
//! debit once.
//!
//! # The card file
//!
//! A [`Card`] is saved with [`Card::to_bytes`] (versioned deterministic
//! CBOR, key included) and read back strictly with [`Card::from_bytes`].
//! The file **is** the card: whoever reads it can spend it, so it must be
//! mode 0600; and the driver must write it (atomically) after a debit or
//! load *before* it releases the confirmation, or a crash would hand out a
//! confirmation for money the saved card still holds. A simulated card is
//! not tamper-resistant: a copied or edited file is copied or forged money.
//! A broker that issues such cards should therefore keep, as issuers keep a
//! shadow account per card, the counter and balance of each card's last
//! confirmed command ([`DebitProof::counter`], [`DebitProof::balance_after`])
//! and compare them with a card's S1 ([`Sam::verify_card_auth`]) before it
//! debits.

use crate::ids::{CardId, PaymentOrderId};
use agora_core::crypto::{hmac_sha256, random_bytes, MacKey, Rng, Secret};
use agora_core::wire::{self, cose, tags, Decoder, Encoder, Message, Tag};
use agora_core::{Currency, DecodeError, Error, Money, Result};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Domain-separation prefix of the card key diversification; the card id
/// follows it.
pub const KEY_DIVERSIFICATION_INFO: &[u8] = b"agora/speed/purse/v1";

/// The most a card may hold, in cents (1 000.00 units). E-purses are for
/// low and medium value payments (paper section 1), and a simulated card
/// file is only as safe as its holder's disk: the limit bounds what a lost
/// or copied card is worth. Loads beyond it are refused.
pub const MAX_CARD_BALANCE_CENTS: u64 = 100_000;

/// Largest encoded purse message (before its COSE_Mac0): the largest,
/// [`DebitConfirmation`], is 179 bytes at most; the rest is headroom.
pub const MAX_PURSE_MESSAGE_LEN: usize = 256;

/// Largest purse message on the wire (a COSE_Mac0 of a purse message), for
/// the protocols that carry S1, S2 and S3 inside their own messages.
pub const MAX_PURSE_MAC0_LEN: usize = MAX_PURSE_MESSAGE_LEN + cose::MAC0_OVERHEAD;

/// Largest card file: id, currency, balance, counter, key, open session
/// and last confirmation come to under 500 bytes.
pub const MAX_CARD_FILE_LEN: usize = 1024;

/// Largest saved [`PendingDebit`] or [`PendingLoad`] (about 200 bytes).
pub const MAX_PENDING_LEN: usize = 512;

// ---- Keys ------------------------------------------------------------------

/// `K_card = HMAC-SHA-256(master, "agora/speed/purse/v1" ‖ card_id)`: a PRF
/// of a uniformly random master key, as good as HKDF-Expand here and
/// infallible.
fn diversify(master: &Secret<32>, card_id: &CardId) -> Secret<32> {
    let mut info = [0u8; KEY_DIVERSIFICATION_INFO.len() + 16];
    info[..KEY_DIVERSIFICATION_INFO.len()].copy_from_slice(KEY_DIVERSIFICATION_INFO);
    info[KEY_DIVERSIFICATION_INFO.len()..].copy_from_slice(&card_id.0);
    let mut k = hmac_sha256(master.expose(), &info);
    let key = Secret::new(k);
    k.zeroize();
    key
}

/// The two MAC keys of a card, one per direction.
struct CardKeys {
    /// `K_card→SAM`: S1, S3, load confirmations.
    to_sam: MacKey,
    /// `K_SAM→card`: S2, load commands.
    to_card: MacKey,
}

impl CardKeys {
    fn expand(card_key: &Secret<32>, label: &[u8]) -> MacKey {
        // HKDF-Expand(K_card, info, 32) = HMAC(K_card, info ‖ 0x01).
        let mut info = Vec::with_capacity(KEY_DIVERSIFICATION_INFO.len() + label.len() + 2);
        info.extend_from_slice(KEY_DIVERSIFICATION_INFO);
        info.push(b'/');
        info.extend_from_slice(label);
        info.push(1);
        let mut k = hmac_sha256(card_key.expose(), &info);
        let key = MacKey::new(k);
        k.zeroize();
        key
    }

    fn from_card_key(card_key: &Secret<32>) -> CardKeys {
        CardKeys {
            to_sam: CardKeys::expand(card_key, b"card-to-sam"),
            to_card: CardKeys::expand(card_key, b"sam-to-card"),
        }
    }
}

// ---- Messages --------------------------------------------------------------

fn read_currency(d: &mut Decoder<'_>) -> Result<Currency, DecodeError> {
    Currency::new(d.text("currency", 3)?)
}

/// S1 (tag [`tags::SPEED_PURSE_CARD_AUTH`]), card to SAM under
/// `K_card→SAM`: the card authenticates itself and states its balance and
/// counter, with a fresh nonce that the SAM's command must answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardAuth {
    /// The card.
    pub card_id: CardId,
    /// Its balance, in its currency.
    pub balance: Money,
    /// Its transaction counter.
    pub counter: u64,
    /// The fresh card nonce of the session this S1 opens.
    pub card_nonce: [u8; 32],
}

impl Message for CardAuth {
    const TAG: Tag = tags::SPEED_PURSE_CARD_AUTH;
    const FIELDS: usize = 4;
    const MAX_LEN: usize = MAX_PURSE_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.card_id)
            .field(&self.balance)
            .uint(self.counter)
            .field(&self.card_nonce);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(CardAuth {
            card_id: d.field()?,
            balance: d.field()?,
            counter: d.uint()?,
            card_nonce: d.field()?,
        })
    }
}

/// S2 (tag [`tags::SPEED_PURSE_DEBIT_COMMAND`]), SAM to card under
/// `K_SAM→card`: debit `amount` for `order`, answering the session
/// `card_nonce` at `counter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitCommand {
    /// The card the command is for.
    pub card_id: CardId,
    /// The card's counter as S1 stated it (before the debit).
    pub counter: u64,
    /// The card nonce of the S1 this answers.
    pub card_nonce: [u8; 32],
    /// The amount to debit, in the card's currency, above zero.
    pub amount: Money,
    /// The purchase paid.
    pub order: PaymentOrderId,
    /// The SAM's fresh nonce, which S3 must echo.
    pub sam_nonce: [u8; 32],
}

impl Message for DebitCommand {
    const TAG: Tag = tags::SPEED_PURSE_DEBIT_COMMAND;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_PURSE_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.card_id)
            .uint(self.counter)
            .field(&self.card_nonce)
            .field(&self.amount)
            .field(&self.order)
            .field(&self.sam_nonce);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DebitCommand {
            card_id: d.field()?,
            counter: d.uint()?,
            card_nonce: d.field()?,
            amount: d.field()?,
            order: d.field()?,
            sam_nonce: d.field()?,
        })
    }
}

/// S3 (tag [`tags::SPEED_PURSE_DEBIT_CONFIRMATION`]), card to SAM under
/// `K_card→SAM`: the debit happened. It echoes both nonces of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitConfirmation {
    /// The card.
    pub card_id: CardId,
    /// The card's counter after the debit.
    pub counter: u64,
    /// The amount debited.
    pub amount: Money,
    /// The card's balance after the debit.
    pub balance: Money,
    /// The purchase paid.
    pub order: PaymentOrderId,
    /// The card nonce of the session the debit closed.
    pub card_nonce: [u8; 32],
    /// The SAM nonce of the S2 this confirms.
    pub sam_nonce: [u8; 32],
}

impl Message for DebitConfirmation {
    const TAG: Tag = tags::SPEED_PURSE_DEBIT_CONFIRMATION;
    const FIELDS: usize = 7;
    const MAX_LEN: usize = MAX_PURSE_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.card_id)
            .uint(self.counter)
            .field(&self.amount)
            .field(&self.balance)
            .field(&self.order)
            .field(&self.card_nonce)
            .field(&self.sam_nonce);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DebitConfirmation {
            card_id: d.field()?,
            counter: d.uint()?,
            amount: d.field()?,
            balance: d.field()?,
            order: d.field()?,
            card_nonce: d.field()?,
            sam_nonce: d.field()?,
        })
    }
}

/// The load command (tag [`tags::SPEED_PURSE_LOAD_COMMAND`]), SAM to card
/// under `K_SAM→card`: add `amount`, answering the session `card_nonce` at
/// `counter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadCommand {
    /// The card the command is for.
    pub card_id: CardId,
    /// The card's counter as S1 stated it (before the load).
    pub counter: u64,
    /// The card nonce of the S1 this answers.
    pub card_nonce: [u8; 32],
    /// The amount to add, in the card's currency, above zero.
    pub amount: Money,
    /// The SAM's fresh nonce, which the confirmation must echo; it also
    /// names the load in the broker's books.
    pub sam_nonce: [u8; 32],
}

impl Message for LoadCommand {
    const TAG: Tag = tags::SPEED_PURSE_LOAD_COMMAND;
    const FIELDS: usize = 5;
    const MAX_LEN: usize = MAX_PURSE_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.card_id)
            .uint(self.counter)
            .field(&self.card_nonce)
            .field(&self.amount)
            .field(&self.sam_nonce);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(LoadCommand {
            card_id: d.field()?,
            counter: d.uint()?,
            card_nonce: d.field()?,
            amount: d.field()?,
            sam_nonce: d.field()?,
        })
    }
}

/// The load confirmation (tag [`tags::SPEED_PURSE_LOAD_CONFIRMATION`]),
/// card to SAM under `K_card→SAM`: the load happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfirmation {
    /// The card.
    pub card_id: CardId,
    /// The card's counter after the load.
    pub counter: u64,
    /// The amount loaded.
    pub amount: Money,
    /// The card's balance after the load.
    pub balance: Money,
    /// The card nonce of the session the load closed.
    pub card_nonce: [u8; 32],
    /// The SAM nonce of the load command this confirms.
    pub sam_nonce: [u8; 32],
}

impl Message for LoadConfirmation {
    const TAG: Tag = tags::SPEED_PURSE_LOAD_CONFIRMATION;
    const FIELDS: usize = 6;
    const MAX_LEN: usize = MAX_PURSE_MESSAGE_LEN;

    fn encode_fields(&self, e: &mut Encoder) {
        e.field(&self.card_id)
            .uint(self.counter)
            .field(&self.amount)
            .field(&self.balance)
            .field(&self.card_nonce)
            .field(&self.sam_nonce);
    }

    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(LoadConfirmation {
            card_id: d.field()?,
            counter: d.uint()?,
            amount: d.field()?,
            balance: d.field()?,
            card_nonce: d.field()?,
            sam_nonce: d.field()?,
        })
    }
}

/// The first bytes of every purse COSE_Mac0 as [`cose::mac`] writes it:
/// CBOR tag 17, an array of 4, the protected header `{1: 5}` as a 3-byte
/// string, the empty unprotected map.
const MAC0_PREFIX: [u8; 7] = [0xd1, 0x84, 0x43, 0xa1, 0x01, 0x05, 0xa0];

/// The payload of a purse COSE_Mac0, **not verified**: only to find the
/// card whose key verifies it, or to show it.
fn unverified_payload(bytes: &[u8]) -> Result<&[u8]> {
    if bytes.len() > MAX_PURSE_MAC0_LEN {
        return Err(DecodeError::TooLarge {
            what: "purse message",
            limit: MAX_PURSE_MAC0_LEN,
        }
        .into());
    }
    let rest = bytes
        .strip_prefix(&MAC0_PREFIX)
        .ok_or(DecodeError::Unexpected("a COSE_Mac0 with HMAC 256/256"))?;
    let mut d = Decoder::new(rest);
    let payload = d.bytes("purse message", MAX_PURSE_MESSAGE_LEN)?;
    d.bytes_exact::<32>("HMAC tag")?;
    d.finish()?;
    Ok(payload)
}

/// The message inside a purse COSE_Mac0, decoded strictly but **not
/// verified** (nobody but the card and the SAM holds the key). For the
/// holder's software, which relays S2 to the card and should first check
/// that it debits the bill's amount for the bill's PaymentOrderID, and for
/// display. Never a basis for moving money.
pub fn read_unverified<M: Message>(bytes: &[u8]) -> Result<M> {
    Ok(wire::decode::<M>(unverified_payload(bytes)?)?)
}

// ---- Saved states ----------------------------------------------------------

/// Format version of the card file and of pending commands.
const STATE_VERSION: u64 = 1;
const CARD_MAGIC: &str = "agora/speed/purse-card";
const PENDING_DEBIT_MAGIC: &str = "agora/speed/pending-debit";
const PENDING_LOAD_MAGIC: &str = "agora/speed/pending-load";

/// Opens a saved state `[magic, version, fields...]` of `fields` fields.
fn open_state<'a>(
    bytes: &'a [u8],
    magic: &'static str,
    fields: usize,
    limit: usize,
) -> Result<Decoder<'a>, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { what: magic, limit });
    }
    let mut d = Decoder::new(bytes);
    d.array(fields + 2)?;
    if d.text("state kind", magic.len())? != magic {
        return Err(DecodeError::Invalid("saved state of another kind"));
    }
    if d.uint()? != STATE_VERSION {
        return Err(DecodeError::Invalid("saved state of another version"));
    }
    Ok(d)
}

fn start_state(magic: &str, fields: usize, capacity: usize) -> Encoder {
    let mut e = Encoder::with_capacity(capacity);
    e.array(fields + 2).text(magic).uint(STATE_VERSION);
    e
}

fn check_cents(cents: u64) -> Result<(), DecodeError> {
    if cents > MAX_CARD_BALANCE_CENTS {
        return Err(DecodeError::Invalid("balance over MAX_CARD_BALANCE_CENTS"));
    }
    Ok(())
}

// ---- The card --------------------------------------------------------------

/// A simulated e-purse card: id, currency, balance, transaction counter,
/// its diversified key, at most one open session (the nonce of its last
/// S1) and the confirmation of its last successful command.
///
/// All of its state is in [`Card::to_bytes`]; see the module documentation
/// for how the file must be kept.
pub struct Card {
    card_id: CardId,
    currency: Currency,
    balance_cents: u64,
    /// Strictly increasing: one more on every debit and every load.
    counter: u64,
    /// `K_card`.
    key: Secret<32>,
    /// The card nonce of the open session, if any.
    session: Option<[u8; 32]>,
    /// The last S3 or load confirmation this card gave, for recovery.
    last_confirmation: Option<Vec<u8>>,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("card_id", &self.card_id)
            .field("balance", &self.balance())
            .field("counter", &self.counter)
            .field("key", &"..")
            .field("open_session", &self.session.is_some())
            .finish()
    }
}

impl Card {
    /// Issues (personalises) a new card: what the issuer, the broker, does
    /// with its master key. Balance zero, counter zero, no session.
    pub fn issue(master: &Secret<32>, card_id: CardId, currency: Currency) -> Card {
        Card {
            card_id,
            currency,
            balance_cents: 0,
            counter: 0,
            key: diversify(master, &card_id),
            session: None,
            last_confirmation: None,
        }
    }

    /// The card's id.
    pub fn card_id(&self) -> CardId {
        self.card_id
    }

    /// The card's currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The card's balance.
    pub fn balance(&self) -> Money {
        Money::new(self.balance_cents, self.currency)
    }

    /// The transaction counter: the number of debits and loads so far.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Whether an S1 awaits its command.
    pub fn has_open_session(&self) -> bool {
        self.session.is_some()
    }

    /// The confirmation (S3 or load confirmation) of the card's last
    /// successful command, to resend if it was lost on the way.
    pub fn last_confirmation(&self) -> Option<&[u8]> {
        self.last_confirmation.as_deref()
    }

    fn keys(&self) -> CardKeys {
        CardKeys::from_card_key(&self.key)
    }

    /// S1: opens a session with a fresh card nonce (abandoning any open one)
    /// and returns the [`CardAuth`] MAC'd under `K_card→SAM`.
    #[must_use = "the S1 opens the card's session; send it to the SAM"]
    pub fn authenticate(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let card_nonce = random_bytes(rng);
        self.session = Some(card_nonce);
        let s1 = CardAuth {
            card_id: self.card_id,
            balance: self.balance(),
            counter: self.counter,
            card_nonce,
        };
        cose::mac(&self.keys().to_sam, &s1)
    }

    /// The checks common to both commands, after the MAC: the command is
    /// for this card, this session and this counter, in this currency, for
    /// an amount above zero.
    fn check_command(
        &self,
        session: &[u8; 32],
        card_id: &CardId,
        counter: u64,
        card_nonce: &[u8; 32],
        amount: &Money,
    ) -> Result<()> {
        if *card_id != self.card_id {
            // Only reachable if the SAM MACs a wrong id: keys are per card.
            return Err(Error::PeerMisbehaved("command for another card"));
        }
        if card_nonce != session || counter != self.counter {
            return Err(Error::Replayed);
        }
        if amount.currency != self.currency {
            return Err(Error::PeerMisbehaved("command in another currency"));
        }
        if amount.cents == 0 {
            return Err(Error::PeerMisbehaved("command for a zero amount"));
        }
        Ok(())
    }

    fn next_counter(&self) -> Result<u64> {
        self.counter
            .checked_add(1)
            .ok_or_else(|| Error::Refused("transaction counter exhausted".into()))
    }

    /// S3: executes the S2 `s2` ([`DebitCommand`]) and returns the
    /// [`DebitConfirmation`] MAC'd under `K_card→SAM`.
    ///
    /// Refused, with balance and counter unchanged: no open session, or an
    /// S2 for an earlier session or counter ([`Error::Replayed`]); a bad MAC
    /// (forged SAM, another card's command, tampering: [`Error::Crypto`]);
    /// malformed input ([`Error::Decode`]); an amount over the balance
    /// ([`Error::Refused`]); an authentic command with a wrong card id,
    /// currency or a zero amount (a faulty SAM: [`Error::PeerMisbehaved`]).
    /// Every command closes the open session, accepted or refused (module
    /// documentation, "One session, one command").
    pub fn debit(&mut self, s2: &[u8]) -> Result<Vec<u8>> {
        let session = self.session.take().ok_or(Error::Replayed)?;
        let keys = self.keys();
        let cmd: DebitCommand = cose::verify_mac(s2, &keys.to_card)?;
        self.check_command(
            &session,
            &cmd.card_id,
            cmd.counter,
            &cmd.card_nonce,
            &cmd.amount,
        )?;
        let balance_cents = self
            .balance_cents
            .checked_sub(cmd.amount.cents)
            .ok_or_else(|| Error::Refused("insufficient balance".into()))?;
        let counter = self.next_counter()?;
        let s3 = cose::mac(
            &keys.to_sam,
            &DebitConfirmation {
                card_id: self.card_id,
                counter,
                amount: cmd.amount,
                balance: Money::new(balance_cents, self.currency),
                order: cmd.order,
                card_nonce: session,
                sam_nonce: cmd.sam_nonce,
            },
        );
        self.balance_cents = balance_cents;
        self.counter = counter;
        self.last_confirmation = Some(s3.clone());
        Ok(s3)
    }

    /// Executes the load command `cmd` ([`LoadCommand`]) and returns the
    /// [`LoadConfirmation`] MAC'd under `K_card→SAM`. Refused as
    /// [`Card::debit`] is, and also ([`Error::Refused`]) when the new
    /// balance would pass [`MAX_CARD_BALANCE_CENTS`].
    pub fn load(&mut self, cmd: &[u8]) -> Result<Vec<u8>> {
        let session = self.session.take().ok_or(Error::Replayed)?;
        let keys = self.keys();
        let cmd: LoadCommand = cose::verify_mac(cmd, &keys.to_card)?;
        self.check_command(
            &session,
            &cmd.card_id,
            cmd.counter,
            &cmd.card_nonce,
            &cmd.amount,
        )?;
        let balance_cents = self
            .balance_cents
            .checked_add(cmd.amount.cents)
            .filter(|&b| b <= MAX_CARD_BALANCE_CENTS)
            .ok_or_else(|| Error::Refused("load over the card's balance limit".into()))?;
        let counter = self.next_counter()?;
        let conf = cose::mac(
            &keys.to_sam,
            &LoadConfirmation {
                card_id: self.card_id,
                counter,
                amount: cmd.amount,
                balance: Money::new(balance_cents, self.currency),
                card_nonce: session,
                sam_nonce: cmd.sam_nonce,
            },
        );
        self.balance_cents = balance_cents;
        self.counter = counter;
        self.last_confirmation = Some(conf.clone());
        Ok(conf)
    }

    /// The card file: the CBOR array `["agora/speed/purse-card", 1, card_id,
    /// currency, balance_cents, counter, key, session nonce or null, last
    /// confirmation or null]`, deterministic. It holds the card key: wiped
    /// from memory on drop, to be stored with mode 0600.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Room for everything up front: no reallocation leaves a copy of
        // the key behind.
        let mut e = start_state(CARD_MAGIC, 7, MAX_CARD_FILE_LEN);
        e.field(&self.card_id)
            .text(self.currency.as_str())
            .uint(self.balance_cents)
            .uint(self.counter)
            .bytes(self.key.expose())
            .field(&self.session);
        match &self.last_confirmation {
            None => e.null(),
            Some(c) => e.bytes(c),
        };
        Zeroizing::new(e.into_bytes())
    }

    /// Reads a card file written by [`Card::to_bytes`], strictly: size
    /// limit, kind, version, every field, a balance within
    /// [`MAX_CARD_BALANCE_CENTS`], no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Card, DecodeError> {
        let mut d = open_state(bytes, CARD_MAGIC, 7, MAX_CARD_FILE_LEN)?;
        let card_id = d.field()?;
        let currency = read_currency(&mut d)?;
        let balance_cents = d.uint()?;
        check_cents(balance_cents)?;
        let counter = d.uint()?;
        let key = Secret::new(d.bytes_exact::<32>("card key")?);
        let session = d.field()?;
        let last_confirmation = if d.next_is_null() {
            d.null()?;
            None
        } else {
            Some(d.bytes("last confirmation", MAX_PURSE_MAC0_LEN)?.to_vec())
        };
        d.finish()?;
        Ok(Card {
            card_id,
            currency,
            balance_cents,
            counter,
            key,
            session,
            last_confirmation,
        })
    }
}

// ---- The SAM ---------------------------------------------------------------

/// A debit the SAM commanded (S2 sent) and whose S3 has not been checked
/// yet. The broker stores it durably before it sends S2 (a crash in between
/// must not lose the debit) and gives it back to [`Sam::confirm`]. It holds
/// no key: the SAM re-derives the card's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDebit {
    card_id: CardId,
    amount: Money,
    order: PaymentOrderId,
    card_nonce: [u8; 32],
    sam_nonce: [u8; 32],
    /// The counter the card will have after the debit.
    counter_after: u64,
}

impl PendingDebit {
    /// The card to debit.
    pub fn card_id(&self) -> CardId {
        self.card_id
    }

    /// The amount to debit.
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// The purchase it pays.
    pub fn order(&self) -> &PaymentOrderId {
        &self.order
    }

    /// The SAM nonce of the S2: unique per command, a key for the broker's
    /// store.
    pub fn sam_nonce(&self) -> &[u8; 32] {
        &self.sam_nonce
    }

    /// The card's counter once the debit is done.
    pub fn counter_after(&self) -> u64 {
        self.counter_after
    }

    /// `["agora/speed/pending-debit", 1, card_id, amount, order,
    /// card_nonce, sam_nonce, counter_after]`, deterministic CBOR.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = start_state(PENDING_DEBIT_MAGIC, 6, 256);
        e.field(&self.card_id)
            .field(&self.amount)
            .field(&self.order)
            .field(&self.card_nonce)
            .field(&self.sam_nonce)
            .uint(self.counter_after);
        e.into_bytes()
    }

    /// Reads [`PendingDebit::to_bytes`], strictly (limit
    /// [`MAX_PENDING_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<PendingDebit, DecodeError> {
        let mut d = open_state(bytes, PENDING_DEBIT_MAGIC, 6, MAX_PENDING_LEN)?;
        let p = PendingDebit {
            card_id: d.field()?,
            amount: d.field()?,
            order: d.field()?,
            card_nonce: d.field()?,
            sam_nonce: d.field()?,
            counter_after: d.uint()?,
        };
        d.finish()?;
        Ok(p)
    }
}

/// A load the SAM commanded and whose confirmation has not been checked
/// yet; stored durably by the broker, with the debit of the customer's
/// account, before the command is sent. Holds no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLoad {
    card_id: CardId,
    amount: Money,
    card_nonce: [u8; 32],
    sam_nonce: [u8; 32],
    counter_after: u64,
}

impl PendingLoad {
    /// The card to load.
    pub fn card_id(&self) -> CardId {
        self.card_id
    }

    /// The amount to load.
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// The SAM nonce of the command: unique per load, a key for the
    /// broker's store.
    pub fn sam_nonce(&self) -> &[u8; 32] {
        &self.sam_nonce
    }

    /// The card's counter once the load is done.
    pub fn counter_after(&self) -> u64 {
        self.counter_after
    }

    /// `["agora/speed/pending-load", 1, card_id, amount, card_nonce,
    /// sam_nonce, counter_after]`, deterministic CBOR.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = start_state(PENDING_LOAD_MAGIC, 5, 192);
        e.field(&self.card_id)
            .field(&self.amount)
            .field(&self.card_nonce)
            .field(&self.sam_nonce)
            .uint(self.counter_after);
        e.into_bytes()
    }

    /// Reads [`PendingLoad::to_bytes`], strictly (limit
    /// [`MAX_PENDING_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<PendingLoad, DecodeError> {
        let mut d = open_state(bytes, PENDING_LOAD_MAGIC, 5, MAX_PENDING_LEN)?;
        let p = PendingLoad {
            card_id: d.field()?,
            amount: d.field()?,
            card_nonce: d.field()?,
            sam_nonce: d.field()?,
            counter_after: d.uint()?,
        };
        d.finish()?;
        Ok(p)
    }
}

/// Proof that a card was debited: only [`Sam::confirm`] makes one, from an
/// S3 that verified against its [`PendingDebit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitProof {
    card_id: CardId,
    order: PaymentOrderId,
    amount: Money,
    counter: u64,
    balance_after: Money,
    confirmation: Vec<u8>,
}

impl DebitProof {
    /// The card debited.
    pub fn card_id(&self) -> CardId {
        self.card_id
    }

    /// The purchase paid.
    pub fn order(&self) -> &PaymentOrderId {
        &self.order
    }

    /// The amount debited.
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// The card's counter after the debit.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The card's balance after the debit.
    pub fn balance_after(&self) -> Money {
        self.balance_after
    }

    /// The S3 bytes, for the broker's evidence archive.
    pub fn confirmation(&self) -> &[u8] {
        &self.confirmation
    }
}

/// Proof that a card was loaded: only [`Sam::confirm_load`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadProof {
    card_id: CardId,
    amount: Money,
    counter: u64,
    balance_after: Money,
    confirmation: Vec<u8>,
}

impl LoadProof {
    /// The card loaded.
    pub fn card_id(&self) -> CardId {
        self.card_id
    }

    /// The amount loaded.
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// The card's counter after the load.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The card's balance after the load.
    pub fn balance_after(&self) -> Money {
        self.balance_after
    }

    /// The load confirmation bytes, for the broker's evidence archive.
    pub fn confirmation(&self) -> &[u8] {
        &self.confirmation
    }
}

/// Whether the SAM checks the card's balance limits before it commands
/// (always, but for the `_for_testing_only` hooks that exercise the card's
/// own checks).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limits {
    Check,
    Skip,
}

/// The broker's secure access module: holds the issuer master key, derives
/// each card's key from its id, and debits and loads cards. Stateless
/// between calls; the broker stores the [`PendingDebit`]s and
/// [`PendingLoad`]s.
pub struct Sam {
    master: Secret<32>,
}

impl fmt::Debug for Sam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sam(..)")
    }
}

impl Sam {
    /// A SAM holding the issuer master key `master`.
    pub fn new(master: Secret<32>) -> Sam {
        Sam { master }
    }

    /// Issues a card under this SAM's master key ([`Card::issue`]).
    pub fn issue(&self, card_id: CardId, currency: Currency) -> Card {
        Card::issue(&self.master, card_id, currency)
    }

    fn keys(&self, card_id: &CardId) -> CardKeys {
        CardKeys::from_card_key(&diversify(&self.master, card_id))
    }

    /// Verifies an S1: finds the card id in it (unverified, only to derive
    /// the key), then checks the whole COSE_Mac0 under that card's key. A
    /// card issued under another master key fails with [`Error::Crypto`].
    pub fn verify_card_auth(&self, s1: &[u8]) -> Result<CardAuth> {
        let claimed: CardAuth = read_unverified(s1)?;
        let auth: CardAuth = cose::verify_mac(s1, &self.keys(&claimed.card_id).to_sam)?;
        Ok(auth)
    }

    /// The S1 checks common to debits and loads: genuine card, the
    /// amount's currency, an amount above zero, a counter that can grow.
    fn open_command(&self, s1: &[u8], amount: &Money) -> Result<(CardAuth, CardKeys)> {
        let auth = self.verify_card_auth(s1)?;
        if auth.balance.currency != amount.currency {
            return Err(Error::Refused(format!(
                "the card holds {}, not {}",
                auth.balance.currency, amount.currency
            )));
        }
        if amount.cents == 0 {
            return Err(Error::Refused("amount must be above zero".into()));
        }
        if auth.counter == u64::MAX {
            return Err(Error::Refused(
                "card's transaction counter exhausted".into(),
            ));
        }
        let keys = self.keys(&auth.card_id);
        Ok((auth, keys))
    }

    fn debit_with(
        &self,
        s1: &[u8],
        amount: Money,
        order: &PaymentOrderId,
        rng: &mut impl Rng,
        limits: Limits,
    ) -> Result<(Vec<u8>, PendingDebit)> {
        let (auth, keys) = self.open_command(s1, &amount)?;
        if limits == Limits::Check && auth.balance.cents < amount.cents {
            return Err(Error::Refused("insufficient balance".into()));
        }
        let cmd = DebitCommand {
            card_id: auth.card_id,
            counter: auth.counter,
            card_nonce: auth.card_nonce,
            amount,
            order: *order,
            sam_nonce: random_bytes(rng),
        };
        let pending = PendingDebit {
            card_id: cmd.card_id,
            amount,
            order: *order,
            card_nonce: cmd.card_nonce,
            sam_nonce: cmd.sam_nonce,
            counter_after: auth.counter.saturating_add(1),
        };
        Ok((cose::mac(&keys.to_card, &cmd), pending))
    }

    /// S2: verifies the S1 `s1` (genuine card, same currency as `amount`,
    /// balance at least `amount`) and returns the [`DebitCommand`] MAC'd
    /// under `K_SAM→card`, with the [`PendingDebit`] to store durably
    /// before sending it.
    ///
    /// Errors: [`Error::Decode`] (malformed), [`Error::Crypto`] (not a card
    /// of this issuer, or tampered), [`Error::Refused`] (currency, zero
    /// amount, insufficient balance, exhausted counter).
    pub fn debit(
        &self,
        s1: &[u8],
        amount: Money,
        order: &PaymentOrderId,
        rng: &mut impl Rng,
    ) -> Result<(Vec<u8>, PendingDebit)> {
        self.debit_with(s1, amount, order, rng, Limits::Check)
    }

    /// [`Sam::debit`] without the balance check, so that tests can reach
    /// the card's own check. Never use outside tests.
    pub fn debit_for_testing_only(
        &self,
        s1: &[u8],
        amount: Money,
        order: &PaymentOrderId,
        rng: &mut impl Rng,
    ) -> Result<(Vec<u8>, PendingDebit)> {
        self.debit_with(s1, amount, order, rng, Limits::Skip)
    }

    /// Checks the S3 `s3` against `pending`: a genuine confirmation by that
    /// card ([`Error::Crypto`] otherwise), of that very command
    /// ([`Error::Replayed`] for a confirmation of another command of the
    /// card), for its amount, order and counter ([`Error::PeerMisbehaved`]
    /// otherwise). Idempotent: the broker settles a pending debit once.
    pub fn confirm(&self, pending: &PendingDebit, s3: &[u8]) -> Result<DebitProof> {
        let keys = self.keys(&pending.card_id);
        let conf: DebitConfirmation = cose::verify_mac(s3, &keys.to_sam)?;
        if conf.card_id != pending.card_id {
            return Err(Error::PeerMisbehaved("confirmation from another card"));
        }
        if conf.sam_nonce != pending.sam_nonce || conf.card_nonce != pending.card_nonce {
            return Err(Error::Replayed);
        }
        if conf.amount != pending.amount
            || conf.order != pending.order
            || conf.counter != pending.counter_after
            || conf.balance.currency != pending.amount.currency
        {
            return Err(Error::PeerMisbehaved(
                "confirmation differs from the debit command",
            ));
        }
        Ok(DebitProof {
            card_id: conf.card_id,
            order: conf.order,
            amount: conf.amount,
            counter: conf.counter,
            balance_after: conf.balance,
            confirmation: s3.to_vec(),
        })
    }

    fn load_with(
        &self,
        s1: &[u8],
        amount: Money,
        rng: &mut impl Rng,
        limits: Limits,
    ) -> Result<(Vec<u8>, PendingLoad)> {
        let (auth, keys) = self.open_command(s1, &amount)?;
        let within = auth
            .balance
            .cents
            .checked_add(amount.cents)
            .is_some_and(|b| b <= MAX_CARD_BALANCE_CENTS);
        if limits == Limits::Check && !within {
            return Err(Error::Refused("load over the card's balance limit".into()));
        }
        let cmd = LoadCommand {
            card_id: auth.card_id,
            counter: auth.counter,
            card_nonce: auth.card_nonce,
            amount,
            sam_nonce: random_bytes(rng),
        };
        let pending = PendingLoad {
            card_id: cmd.card_id,
            amount,
            card_nonce: cmd.card_nonce,
            sam_nonce: cmd.sam_nonce,
            counter_after: auth.counter.saturating_add(1),
        };
        Ok((cose::mac(&keys.to_card, &cmd), pending))
    }

    /// The load command: verifies the S1 `s1` (genuine card, same currency,
    /// the new balance within [`MAX_CARD_BALANCE_CENTS`]) and returns the
    /// [`LoadCommand`] MAC'd under `K_SAM→card`, with the [`PendingLoad`]
    /// to store durably (with the debit of the customer's account) before
    /// sending it. Errors as [`Sam::debit`].
    pub fn load(
        &self,
        s1: &[u8],
        amount: Money,
        rng: &mut impl Rng,
    ) -> Result<(Vec<u8>, PendingLoad)> {
        self.load_with(s1, amount, rng, Limits::Check)
    }

    /// [`Sam::load`] with a SAM nonce derived from `request` (the broker's id
    /// of a load request) instead of drawn at random: the same request for
    /// the same S1 gets the same command again, so a customer whose command
    /// was lost can ask again without being debited twice (the broker's
    /// journal entry has an id derived from the same request), and the card
    /// applies it at most once (its session and counter).
    pub fn load_for_request(
        &self,
        s1: &[u8],
        amount: Money,
        request: &[u8; 32],
    ) -> Result<(Vec<u8>, PendingLoad)> {
        let mut rng = DerivedNonces {
            key: diversify_nonce_key(&self.master),
            request: *request,
            block: 0,
        };
        self.load_with(s1, amount, &mut rng, Limits::Check)
    }

    /// [`Sam::load`] without the balance-limit check, so that tests can
    /// reach the card's own check. Never use outside tests.
    pub fn load_for_testing_only(
        &self,
        s1: &[u8],
        amount: Money,
        rng: &mut impl Rng,
    ) -> Result<(Vec<u8>, PendingLoad)> {
        self.load_with(s1, amount, rng, Limits::Skip)
    }

    /// Checks the load confirmation `conf` against `pending`, with the
    /// errors of [`Sam::confirm`].
    pub fn confirm_load(&self, pending: &PendingLoad, conf: &[u8]) -> Result<LoadProof> {
        let keys = self.keys(&pending.card_id);
        let c: LoadConfirmation = cose::verify_mac(conf, &keys.to_sam)?;
        if c.card_id != pending.card_id {
            return Err(Error::PeerMisbehaved("confirmation from another card"));
        }
        if c.sam_nonce != pending.sam_nonce || c.card_nonce != pending.card_nonce {
            return Err(Error::Replayed);
        }
        if c.amount != pending.amount
            || c.counter != pending.counter_after
            || c.balance.currency != pending.amount.currency
        {
            return Err(Error::PeerMisbehaved(
                "confirmation differs from the load command",
            ));
        }
        Ok(LoadProof {
            card_id: c.card_id,
            amount: c.amount,
            counter: c.counter,
            balance_after: c.balance,
            confirmation: conf.to_vec(),
        })
    }
}

/// The key of [`Sam::load_for_request`]'s nonces, apart from the card keys.
fn diversify_nonce_key(master: &Secret<32>) -> Secret<32> {
    Secret::new(agora_core::crypto::hmac_sha256(
        master.expose(),
        b"agora/speed/purse/load-nonce/v1",
    ))
}

/// Deterministic "randomness" for one load request: HMAC-SHA-256(key,
/// request ‖ block) blocks. A CSPRNG in the sense that matters here: nobody
/// without the SAM's master key can predict it, and each request gets its
/// own stream.
struct DerivedNonces {
    key: Secret<32>,
    request: [u8; 32],
    block: u64,
}

impl rand_core::RngCore for DerivedNonces {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let mut input = self.request.to_vec();
            input.extend_from_slice(&self.block.to_be_bytes());
            self.block += 1;
            let out = agora_core::crypto::hmac_sha256(self.key.expose(), &input);
            chunk.copy_from_slice(&out[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for DerivedNonces {}
