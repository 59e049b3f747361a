//! The lightweight primitives on arbitrary bytes: every message's decoder
//! (what decodes must re-encode to exactly the input), the vendor's steps
//! that take a peer's message (SKEP's hello and confirm, SDDP's and EDDP's
//! requests, against the fixture's vendor, record, replay cache and
//! challenge ledger), the client's steps that take the vendor's (SKEP's
//! challenge and receipt, SDDP's and EDDP's replies) and a third party's
//! check of a receipt, and SDDP over HTTP on both sides (the message in
//! `lite_fixture::http_bytes`'s form). The first byte picks the step; the rest is the
//! message. No input may panic, and the only inputs a step may accept are
//! the fixture's genuine messages (a forged one accepted is a crash).
#![no_main]
use agora_core::ports::replay::MemoryReplayCache;
use agora_core::wire::{self, Message};
use agora_lite::eddp::{self, EddpChallenge, EddpHello, EddpReply, EddpRequest, EddpRequestBody};
use agora_lite::sddp::{self, SddpReply, SddpRequest, SddpRequestBody};
use agora_lite::skep::{
    self, Receipt, SkepChallenge, SkepClient, SkepConfirm, SkepConfirmBody, SkepHello, SkepMode,
};
use agora_lite::{Granularity, Janus, JanusParams};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "lite_fixture.rs"]
mod lite_fixture;

use lite_fixture::{parse_http, policy, rng, Lite, NOW};

fn lite() -> &'static Lite {
    static LITE: OnceLock<Lite> = OnceLock::new();
    LITE.get_or_init(Lite::new)
}

fn roundtrip<M: Message>(data: &[u8]) {
    if let Ok(m) = wire::decode::<M>(data) {
        assert_eq!(wire::encode(&m), data, "decoded a non-canonical encoding");
    }
}

/// Accepted only if it is the genuine message.
fn only_genuine<T, E>(r: Result<T, E>, data: &[u8], genuine: &[u8], what: &str) {
    if r.is_ok() {
        assert_eq!(
            data, genuine,
            "{what}: accepted a message the fixture did not make"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let f = lite();
    let Some((&step, data)) = input.split_first() else {
        return;
    };
    match step % 12 {
        0 => {
            roundtrip::<SkepHello>(data);
            roundtrip::<SkepChallenge>(data);
            roundtrip::<SkepConfirmBody>(data);
            roundtrip::<SkepConfirm>(data);
            roundtrip::<Receipt>(data);
            roundtrip::<SddpRequestBody>(data);
            roundtrip::<SddpRequest>(data);
            roundtrip::<SddpReply>(data);
            roundtrip::<EddpHello>(data);
            roundtrip::<EddpChallenge>(data);
            roundtrip::<EddpRequestBody>(data);
            roundtrip::<EddpRequest>(data);
            roundtrip::<EddpReply>(data);
        }
        1 => {
            // The hello is HPKE to the vendor: anyone can make one, so
            // accepting is not a finding; it must not panic.
            let _ = f.vendor.on_hello(&mut rng(6), data);
        }
        2 => {
            let r =
                f.pending()
                    .on_confirm(&f.vendor, &mut rng(7), NOW, data, SkepMode::NonRepudiation);
            only_genuine(r, data, &f.confirm, "SKEP confirm");
            let _ = skep::confirm_client(data);
        }
        3 => {
            let replay = MemoryReplayCache::new();
            let r = sddp::accept_request(&f.record(), &f.id_v, policy(), &replay, data);
            only_genuine(r, data, &f.sddp_request, "SDDP request");
            let _ = sddp::request_client(data);
        }
        4 => {
            let mut record = f.record();
            let r = eddp::accept_request(&mut record, &f.id_v, policy(), &f.ledger(), data);
            only_genuine(r, data, &f.eddp_request, "EDDP request");
            let _ = eddp::request_client(data);
            let _ = eddp::hello_client(data);
        }
        5 => {
            let _ = skep::verify_receipt(data, &f.vendor.verifying_key());
        }
        6 => {
            // The client's side: a challenge, then (for the genuine one) the
            // receipt, from the bytes after the first 0xff, if any.
            let key = client_key(f);
            let (wait, _) = SkepClient::start(
                &mut rng(8),
                &key,
                f.id_c.clone(),
                f.id_v.clone(),
                &f.vendor.x25519_public(),
            )
            .expect("start");
            // The fixture's challenge answers another hello (another N_C):
            // no input may be accepted here except by a vendor that knows K.
            let _ = wait.on_challenge(&mut rng(9), data, f.subscription.clone());
        }
        7 => {
            let key = client_key(f);
            let (wait, _) = sddp::request(
                &mut rng(10),
                &key,
                f.id_c.clone(),
                f.id_v.clone(),
                NOW,
                Granularity::MINUTE,
                b"GET /quotes",
            )
            .expect("request");
            let _ = wait.on_reply(data);
        }
        8 => {
            let key = client_key(f);
            let (wait, _) = eddp::start(&key, f.id_c.clone(), f.id_v.clone());
            if let Ok(ready) = wait.on_challenge(data) {
                let _ = ready.request(&mut rng(11), NOW, Granularity::MINUTE, b"q", None);
            }
        }
        10 => {
            // The vendor's HTTP layer: only the genuine request opens.
            let Some((first, headers, body)) = parse_http(data) else {
                return;
            };
            let Ok(path) = std::str::from_utf8(&first) else {
                return;
            };
            let Ok(mut req) = http::Request::builder().method("POST").uri(path).body(body) else {
                return;
            };
            *req.headers_mut() = headers.clone();
            // Header names are case-insensitive: compare the message as
            // parsed (names lowercased), not its bytes.
            let parsed = lite_fixture::http_bytes(path, req.headers(), req.body());
            let _ = agora_lite::http::request_client(&headers);
            let replay = MemoryReplayCache::new();
            let r =
                agora_lite::http::accept_request(&f.record(), &f.id_v, policy(), &replay, &mut req);
            only_genuine(r, &parsed, &f.http_request, "SDDP-over-HTTP request");
        }
        11 => {
            // The client's side: her request has another N_C than the
            // fixture's reply answers, so no reply may open.
            let Some((first, headers, body)) = parse_http(data) else {
                return;
            };
            let Some(status) = std::str::from_utf8(&first)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| http::StatusCode::from_u16(s).ok())
            else {
                return;
            };
            let mut req = http::Request::builder()
                .method("GET")
                .uri("http://quotes.example/quotes")
                .body(Vec::new())
                .expect("request");
            let wait = agora_lite::http::seal_request(
                &mut rng(13),
                &client_key(f),
                &f.id_c,
                &f.id_v,
                NOW,
                Granularity::MINUTE,
                &mut req,
            )
            .expect("HTTP request");
            let mut resp = http::Response::new(body);
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            assert!(
                wait.open_response(&mut resp).is_err(),
                "a reply to another request opened"
            );
        }
        _ => {
            let key = client_key(f);
            let (wait, _) = eddp::start(&key, f.id_c.clone(), f.id_v.clone());
            let ready = wait
                .on_challenge(&f.eddp_challenge)
                .map_err(|e| e.error)
                .expect("the fixture's challenge");
            let (wait, _) = ready
                .request(&mut rng(12), NOW, Granularity::MINUTE, b"q", None)
                .map_err(|e| e.error)
                .expect("request");
            let _ = wait.on_reply(data);
        }
    }
});

/// The client's key with the fixture's vendor (Argon2 at test parameters,
/// computed once).
fn client_key(f: &Lite) -> agora_lite::VendorKey {
    static S: OnceLock<Janus> = OnceLock::new();
    S.get_or_init(|| {
        Janus::open(
            f.id_c.clone(),
            b"fuzz secret",
            JanusParams::insecure_for_tests(),
        )
        .expect("Janus")
    })
    .vendor_key(&f.id_v, 0)
}
