//! The lightweight targets' fixture (shared with `examples/make_seeds.rs`):
//! a vendor with fixed keys, a client's Janus key (cheap Argon2 parameters:
//! the key's value does not matter here, only that both sides hold it), a
//! subscription committing to a hash chain, and one genuine message of
//! every step (SKEP, SDDP, EDDP), all made at [`NOW`] from a fixed RNG.
#![allow(dead_code)] // each target and the seed maker use part of it

use agora_core::crypto::{Secret, SigningKey, X25519Secret};
use agora_core::Timestamp;
use agora_lite::eddp::{self, Ack, ChallengeLedger, MemoryChallengeLedger};
use agora_lite::sddp::{self, SessionPolicy};
use agora_lite::skep::{ClientRecord, SkepClient, SkepMode, SkepVendor, VendorAwaitConfirm};
use agora_lite::wire::{ChainCommitment, Nonce, Subscription};
use agora_lite::{
    ChainVerifier, ClientId, Granularity, HashChain, Janus, JanusParams, VendorId, VendorKey,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub const NOW: Timestamp = Timestamp(1_790_000_000);
pub const CHAIN_LEN: u64 = 30;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn policy() -> SessionPolicy {
    SessionPolicy {
        now: NOW,
        granularity: Granularity::MINUTE,
        window_units: 2,
    }
}

pub struct Lite {
    pub vendor: SkepVendor,
    pub id_c: ClientId,
    pub id_v: VendorId,
    /// K, from which every test builds a fresh record.
    pub k: [u8; 32],
    pub subscription: Subscription,
    pub chain: HashChain,
    pub hello: Vec<u8>,
    pub challenge: Vec<u8>,
    pub confirm: Vec<u8>,
    pub receipt: Vec<u8>,
    pub sddp_request: Vec<u8>,
    pub sddp_reply: Vec<u8>,
    pub eddp_hello: Vec<u8>,
    pub eddp_challenge: Vec<u8>,
    /// The challenge the EDDP request answers (issue it before the request).
    pub n_v: Nonce,
    pub eddp_request: Vec<u8>,
    pub eddp_reply: Vec<u8>,
    /// A genuine SDDP-over-HTTP request and its reply, in [`http_bytes`]'s
    /// form.
    pub http_request: Vec<u8>,
    pub http_reply: Vec<u8>,
}

impl Lite {
    pub fn new() -> Lite {
        let mut r = rng(4);
        let id_c = ClientId::new("alice@example.org").expect("id");
        let id_v = VendorId::new("quotes.example").expect("id");
        let vendor = SkepVendor::new(
            id_v.clone(),
            X25519Secret::from_bytes([41; 32]),
            SigningKey::from_seed(&[42; 32]),
        );
        let key = Janus::open(
            id_c.clone(),
            b"fuzz secret",
            JanusParams::insecure_for_tests(),
        )
        .expect("Janus")
        .vendor_key(&id_v, 0);
        let chain = HashChain::generate(&mut r, CHAIN_LEN).expect("chain");
        let subscription = Subscription {
            not_before: NOW.minus_secs(60),
            not_after: NOW.plus_secs(30 * 86_400),
            chain: Some(ChainCommitment {
                anchor: chain.anchor(),
                n: CHAIN_LEN as u32,
            }),
            payment: b"payment-ref".to_vec(),
            counter: 0,
        };
        let (await_challenge, hello) = SkepClient::start(
            &mut r,
            &key,
            id_c.clone(),
            id_v.clone(),
            &vendor.x25519_public(),
        )
        .expect("hello");
        let (pending, challenge) = vendor.on_hello(&mut r, &hello).expect("challenge");
        let (_, confirm) = await_challenge
            .on_challenge(&mut r, &challenge, subscription.clone())
            .map_err(|e| e.error)
            .expect("confirm");
        let (mut record, receipt) = pending
            .on_confirm(&vendor, &mut r, NOW, &confirm, SkepMode::NonRepudiation)
            .map_err(|e| e.error)
            .expect("record");
        let receipt = receipt.expect("a receipt in non-repudiation mode");

        let (_, sddp_request) = sddp::request(
            &mut r,
            &key,
            id_c.clone(),
            id_v.clone(),
            NOW,
            Granularity::MINUTE,
            b"GET /quotes",
        )
        .expect("SDDP request");
        let replay = agora_core::ports::replay::MemoryReplayCache::new();
        let sddp_reply = sddp::accept_request(&record, &id_v, policy(), &replay, &sddp_request)
            .expect("SDDP accepted")
            .reply(&mut r, b"ACME 12.34")
            .expect("SDDP reply");

        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://quotes.example/quotes?symbols=ACME")
            .header("content-type", "application/json")
            .body(b"{\"limit\": 3}".to_vec())
            .expect("request");
        agora_lite::http::seal_request(
            &mut r,
            &key,
            &id_c,
            &id_v,
            NOW,
            Granularity::MINUTE,
            &mut req,
        )
        .expect("HTTP request");
        let req = as_received(&req);
        let http_request = http_bytes(
            req.uri().path_and_query().expect("path").as_str(),
            req.headers(),
            req.body(),
        );
        let mut received = req;
        let accepted =
            agora_lite::http::accept_request(&record, &id_v, policy(), &replay, &mut received)
                .expect("HTTP request accepted");
        let mut resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(b"{\"ACME\": \"12.34\"}".to_vec())
            .expect("reply");
        accepted
            .seal_response(&mut r, NOW, &mut resp)
            .expect("HTTP reply");
        let http_reply = http_bytes(resp.status().as_str(), resp.headers(), resp.body());

        let ledger = MemoryChallengeLedger::with_capacity(16);
        let (await_eddp, eddp_hello) = eddp::start(&key, id_c.clone(), id_v.clone());
        let eddp_challenge =
            eddp::challenge(&mut r, &record, policy(), &ledger).expect("challenge");
        let ch: eddp::EddpChallenge = agora_core::wire::decode(&eddp_challenge).expect("decodes");
        let ready = await_eddp
            .on_challenge(&eddp_challenge)
            .map_err(|e| e.error)
            .expect("ready");
        let ack = Ack {
            index: 1,
            w: chain.element(1).expect("w_1"),
        };
        let (_, eddp_request) = ready
            .request(&mut r, NOW, Granularity::MINUTE, b"GET /quotes", Some(ack))
            .map_err(|e| e.error)
            .expect("EDDP request");
        let eddp_reply = eddp::accept_request(&mut record, &id_v, policy(), &ledger, &eddp_request)
            .expect("EDDP accepted")
            .reply(&mut r, b"ACME 12.34", None)
            .expect("EDDP reply");
        Lite {
            k: *record.k.k().expose(),
            vendor,
            id_c,
            id_v,
            subscription,
            chain,
            hello,
            challenge,
            confirm,
            receipt,
            sddp_request,
            sddp_reply,
            eddp_hello,
            eddp_challenge,
            n_v: ch.n_v,
            eddp_request,
            eddp_reply,
            http_request,
            http_reply,
        }
    }

    /// A fresh record of the client, as SKEP left it (its chain verifier at
    /// the anchor).
    pub fn record(&self) -> ClientRecord {
        ClientRecord {
            id_c: self.id_c.clone(),
            k: VendorKey::from_shared_key(Secret::new(self.k)),
            subscription: self.subscription.clone(),
            chain: Some(ChainVerifier::new(self.chain.anchor(), CHAIN_LEN).expect("verifier")),
        }
    }

    /// The vendor waiting for the confirm of [`Self::hello`].
    pub fn pending(&self) -> VendorAwaitConfirm {
        self.vendor
            .on_hello(&mut rng(5), &self.hello)
            .expect("the fixture's hello opens")
            .0
    }

    /// A ledger holding the challenge the fixture's EDDP request answers.
    pub fn ledger(&self) -> MemoryChallengeLedger {
        let l = MemoryChallengeLedger::with_capacity(16);
        l.issue(&self.id_c, &self.n_v, NOW.plus_secs(600), NOW)
            .expect("issued");
        l
    }
}

/// A request as the vendor's server receives it: origin form, `Host` set.
pub fn as_received(req: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let uri = req.uri();
    let mut b = http::Request::builder()
        .method(req.method().clone())
        .uri(uri.path_and_query().expect("path").as_str())
        .header("host", uri.authority().expect("authority").as_str());
    for (k, v) in req.headers() {
        b = b.header(k, v);
    }
    b.body(req.body().clone()).expect("request")
}

/// An HTTP message as the targets read it: a first line (a request's path
/// and query, or a reply's status), then `name: value` lines, an empty
/// line, the body.
pub fn http_bytes(first: &str, headers: &http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut v = first.as_bytes().to_vec();
    v.push(b'\n');
    for (k, val) in headers {
        v.extend_from_slice(k.as_str().as_bytes());
        v.extend_from_slice(b": ");
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

/// The first line, the headers and the body of [`http_bytes`]'s form;
/// `None` if a name or value is not one HTTP allows.
pub fn parse_http(data: &[u8]) -> Option<(Vec<u8>, http::HeaderMap, Vec<u8>)> {
    let split = data.windows(2).position(|w| w == b"\n\n")?;
    let (head, body) = (&data[..split], &data[split + 2..]);
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?.to_vec();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        headers.append(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    Some((first, headers, body.to_vec()))
}
