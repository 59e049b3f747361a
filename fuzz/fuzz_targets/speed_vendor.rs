//! The vendor's message handlers on arbitrary bytes. The first byte picks
//! the step, the rest is the message, raw or as plaintext that the target
//! seals as Carol (or the broker) would (see `speed_customer.rs`).
//!
//! | step (`steps::vendor`) | handler | input |
//! |---|---|---|
//! | `REQUEST`, `REQUEST_SEALED` | `Vendor::on_negotiation_request` | message 1 raw / NegotiationRequest in PKE from Carol |
//! | `PRODUCT_REQUEST`, `_SEALED` | `Vendor::on_product_request`, then `Delivery::finish` | aggressive message 1 raw / ProductRequest in PKE from Carol |
//! | `STEP`, `STEP_SEALED` | `VendorNegotiation::on_step` | message 2 raw / NegotiationStep under EnKey, SignKey |
//! | `HANDSHAKE`, `HANDSHAKE_SEALED` | `VendorNegotiation::on_handshake`, then `Delivery::finish` | message 3 raw / Handshake signed by Carol, under EnKey |
//! | `RECEIPT`, `RECEIPT_SEALED` | `Vendor::open_receipt` | message 6 raw / Receipt signed by the broker, under RecKey |
//!
//! Each run gets a fresh Handshake register, so a seed's NID is not
//! "replayed" on the next run. The vendor's negotiation state is rebuilt
//! per run from the fixture's message 1 (an HPKE open, a certificate
//! validation and a signature check: the dear part of these steps).
#![no_main]
use agora_core::wire::{tags, Message};
use agora_speed::msg::{NegotiationRequest, ProductRequest};
use agora_speed::vendor::{Delivery, MemoryHandshakes};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "speed_fixture.rs"]
mod speed_fixture;

use speed_fixture::steps::vendor::*;
use speed_fixture::{rng, Speed, FILM, NOW, PRODUCT, R_DELIVERY, R_VENDOR_STEP};

fn speed() -> &'static Speed {
    static SPEED: OnceLock<Speed> = OnceLock::new();
    SPEED.get_or_init(Speed::new)
}

/// A delivery the vendor committed to must make a bill.
fn finish(f: &Speed, mut delivery: Delivery) {
    let mut r = rng(R_DELIVERY);
    delivery.draw_key(&mut r);
    delivery
        .finish(&mut r, &f.vendor, PRODUCT)
        .expect("a committed delivery makes its bill");
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let f = speed();
    let register = MemoryHandshakes::default();
    match step % COUNT {
        REQUEST => {
            let _ = f
                .vendor
                .on_negotiation_request(NOW, &mut rng(R_VENDOR_STEP), input, &f.shelf);
        }
        REQUEST_SEALED => {
            let m = f.envelope(
                &f.carol.keys.sign,
                &f.vendor_peer.enc,
                NegotiationRequest::TAG,
                input,
            );
            let _ = f
                .vendor
                .on_negotiation_request(NOW, &mut rng(R_VENDOR_STEP), &m, &f.shelf);
        }
        PRODUCT_REQUEST => {
            if let Ok(d) = f.vendor.on_product_request(NOW, input, &f.shelf, &register) {
                finish(f, d);
            }
        }
        PRODUCT_REQUEST_SEALED => {
            let m = f.envelope(
                &f.carol.keys.sign,
                &f.vendor_peer.enc,
                ProductRequest::TAG,
                input,
            );
            if let Ok(d) = f.vendor.on_product_request(NOW, &m, &f.shelf, &register) {
                assert_ne!(
                    d.product_id(),
                    FILM,
                    "sold a large product in aggressive mode"
                );
                assert_eq!(d.customer(), f.carol_peer.id());
                assert!(
                    f.vendor
                        .on_product_request(NOW, &m, &f.shelf, &register)
                        .is_err(),
                    "delivered one NID twice"
                );
                finish(f, d);
            }
        }
        STEP => {
            let _ = f
                .vendor_negotiation()
                .on_step(&mut rng(R_VENDOR_STEP), input);
        }
        STEP_SEALED => {
            let m = f.seal_mac(&f.en_key, &f.sign_key, tags::SPEED_NEGOTIATION_STEP, input);
            let _ = f.vendor_negotiation().on_step(&mut rng(R_VENDOR_STEP), &m);
        }
        HANDSHAKE => {
            if let Ok(d) = f.vendor_negotiation().on_handshake(NOW, input, &register) {
                finish(f, d);
            }
        }
        HANDSHAKE_SEALED => {
            let m = f.seal_signed(&f.en_key, &f.carol.keys.sign, tags::SPEED_HANDSHAKE, input);
            if let Ok(d) = f.vendor_negotiation().on_handshake(NOW, &m, &register) {
                assert_eq!(d.price(), f.price, "agreed to another price than offered");
                finish(f, d);
            }
        }
        RECEIPT => {
            let _ = f.vendor.open_receipt(input, &f.sale());
        }
        RECEIPT_SEALED => {
            let m = f.seal_signed(
                &f.rec_key,
                &f.broker_keys.sign,
                tags::SPEED_PURCHASE_RECEIPT,
                input,
            );
            if let Ok((r, _)) = f.vendor.open_receipt(&m, &f.sale()) {
                assert_eq!((r.order, r.price), (f.order, f.price));
            }
        }
        _ => unreachable!("step modulo COUNT"),
    }
});
