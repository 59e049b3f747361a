//! Every SPEED decoder on arbitrary bytes: the messages of
//! `agora_speed::msg` and of the e-purse (`agora_speed::purse`), the purse
//! messages read unverified out of their COSE_Mac0 (`read_unverified`), the
//! saved card file and pending commands (`Card`, `PendingDebit`,
//! `PendingLoad`), the customer's saved states (`ReadyToPay`,
//! `ExpectReceipt`, `ExpectPurseDebit`: they carry the vendor's key and
//! check the bill's signature with it), and the identifiers parsed from text
//! or bytes. No input may panic, and whatever decodes must encode (or save)
//! to exactly the same bytes.
#![no_main]
use agora_core::crypto::VerifyingKey;
use agora_core::wire::{self, Message};
use agora_speed::customer::{ExpectPurseDebit, ExpectReceipt, ReadyToPay};
use agora_speed::msg::{
    self, AggressiveDelivery, Bill, BillSecret, CardLoadRequest, Handshake, NegotiationRequest,
    NegotiationStep, PaymentOrder, ProductDelivery, ProductRequest, PurseConfirm, PurseDebit,
    Receipt, ReceiptRequest,
};
use agora_speed::purse::{
    self, Card, CardAuth, DebitCommand, DebitConfirmation, LoadCommand, LoadConfirmation,
    PendingDebit, PendingLoad,
};
use agora_speed::{AccountNumber, PaymentOrderId};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "speed_fixture.rs"]
mod speed_fixture;

fn roundtrip<M: Message>(data: &[u8]) {
    if let Ok(m) = wire::decode::<M>(data) {
        assert_eq!(wire::encode(&m), data, "decoded a non-canonical encoding");
    }
}

/// A purse message read out of its COSE_Mac0 without the key: what it
/// decodes is the MAC'd payload, so it re-encodes to bytes found in the
/// input.
fn unverified<M: Message>(data: &[u8]) {
    if let Ok(m) = purse::read_unverified::<M>(data) {
        let payload = wire::encode(&m);
        assert!(
            data.windows(payload.len()).any(|w| w == payload),
            "read_unverified decoded something that is not the payload"
        );
    }
}

macro_rules! saved {
    ($data:expr, $($t:ty),+ $(,)?) => {
        $(
            if let Ok(s) = <$t>::from_bytes($data) {
                assert_eq!(
                    &s.to_bytes()[..],
                    $data,
                    "{} read a non-canonical saved state",
                    stringify!($t)
                );
            }
        )+
    };
}

/// A customer's saved state holds the vendor's key and a bill signed with
/// it; no one but the fixture's vendor (`speed_fixture::VENDOR`, whose bills
/// are the seeds) can sign one, so whatever loads is saved again with that
/// key.
macro_rules! customer_saved {
    ($data:expr, $($t:ty),+ $(,)?) => {
        $(
            if let Ok(s) = <$t>::from_bytes($data) {
                assert_eq!(
                    &s.to_bytes(vendor())[..],
                    $data,
                    "{} read a non-canonical saved state",
                    stringify!($t)
                );
            }
        )+
    };
}

fn vendor() -> &'static VerifyingKey {
    static VENDOR: OnceLock<VerifyingKey> = OnceLock::new();
    VENDOR.get_or_init(|| {
        speed_fixture::keys(speed_fixture::VENDOR)
            .sign
            .verifying_key()
    })
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<NegotiationRequest>(data);
    roundtrip::<NegotiationStep>(data);
    roundtrip::<Handshake>(data);
    roundtrip::<BillSecret>(data);
    roundtrip::<Bill>(data);
    roundtrip::<ProductDelivery>(data);
    roundtrip::<ProductRequest>(data);
    roundtrip::<AggressiveDelivery>(data);
    roundtrip::<PaymentOrder>(data);
    roundtrip::<PurseDebit>(data);
    roundtrip::<PurseConfirm>(data);
    roundtrip::<Receipt>(data);
    roundtrip::<CardLoadRequest>(data);
    roundtrip::<ReceiptRequest>(data);

    roundtrip::<CardAuth>(data);
    roundtrip::<DebitCommand>(data);
    roundtrip::<DebitConfirmation>(data);
    roundtrip::<LoadCommand>(data);
    roundtrip::<LoadConfirmation>(data);
    unverified::<CardAuth>(data);
    unverified::<DebitCommand>(data);
    unverified::<DebitConfirmation>(data);
    unverified::<LoadCommand>(data);
    unverified::<LoadConfirmation>(data);

    saved!(data, Card, PendingDebit, PendingLoad);
    customer_saved!(data, ReadyToPay, ExpectReceipt, ExpectPurseDebit);

    if let Ok(id) = PaymentOrderId::from_bytes(data) {
        assert_eq!(&id.to_bytes()[..], data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = PaymentOrderId::from_hex(text) {
            assert_eq!(id.to_hex(), text.to_ascii_lowercase());
        }
        if let Ok(n) = AccountNumber::new(text) {
            assert_eq!(n.as_str(), text);
        }
        let _ = msg::check_product_id(text);
    }
});
