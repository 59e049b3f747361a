#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! Criterion benchmarks of the crypto suite (ARCHITECTURE section 2), one
//! thread: Ed25519 sign / strict verify / batch verify, HPKE one-shot and
//! context messages, STREAM over 16 MiB with both AEADs, HMAC-SHA-256 and
//! one-shot AEAD on 64 KiB.
//!
//! Measurement times are short (2 s, 20 samples) so that a full run takes
//! about two minutes: `cargo bench -p agora-core --bench crypto`; smoke
//! mode: `cargo bench -p agora-core --bench crypto -- --test`.

use agora_core::crypto::stream::{StreamReader, StreamWriter};
use agora_core::crypto::{
    hmac_sha256, hpke, verify_batch, AeadAlg, AeadKey, Secret, Signature, SigningKey, VerifyingKey,
    X25519Secret,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::time::Duration;

fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(0xbe_4c4d)
}

/// A 256-byte message: about the size of a signed protocol message.
const SIGNED_MSG_LEN: usize = 256;
/// Signatures per batch verification.
const BATCH: usize = 64;
/// STREAM payload: 16 MiB.
const STREAM_BYTES: usize = 16 << 20;
/// One-shot AEAD payload: 64 KiB (one STREAM chunk).
const AEAD_BYTES: usize = 64 << 10;

fn ed25519(c: &mut Criterion) {
    let mut rng = rng();
    let mut g = c.benchmark_group("ed25519");
    let sk = SigningKey::generate(&mut rng);
    let vk = sk.verifying_key();
    let msg = vec![0x4d; SIGNED_MSG_LEN];
    let sig = sk.sign(&msg);
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_256B", |b| b.iter(|| sk.sign(black_box(&msg))));
    g.bench_function("verify_strict_256B", |b| {
        b.iter(|| vk.verify(black_box(&msg), black_box(&sig)).unwrap())
    });

    let keys: Vec<SigningKey> = (0..BATCH).map(|_| SigningKey::generate(&mut rng)).collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let msgs: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; SIGNED_MSG_LEN]).collect();
    let sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
    let items: Vec<(&[u8], &Signature, &VerifyingKey)> = (0..BATCH)
        .map(|i| (msgs[i].as_slice(), &sigs[i], &vks[i]))
        .collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("verify_batch_64x256B", |b| {
        b.iter(|| verify_batch(black_box(&items)).unwrap())
    });
    g.finish();
}

fn hpke_bench(c: &mut Criterion) {
    let mut rng = rng();
    let mut g = c.benchmark_group("hpke");
    let sk = X25519Secret::generate(&mut rng);
    let pk = sk.public();
    let msg = vec![0x48; 64];
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_64B", |b| {
        b.iter(|| hpke::seal(&mut rng, &pk, b"agora/bench", b"", black_box(&msg)).unwrap())
    });
    let (enc, ct) = hpke::seal(&mut rng, &pk, b"agora/bench", b"", &msg).unwrap();
    g.bench_function("open_64B", |b| {
        b.iter(|| hpke::open(&sk, &enc, b"agora/bench", b"", black_box(&ct)).unwrap())
    });

    // One message of an established context, sealed by the sender and
    // opened by the receiver: both advance their sequence numbers together,
    // so the same pair of contexts serves every iteration.
    let msg = vec![0x53; 256];
    let (enc, mut s) = hpke::setup_sender(&mut rng, &pk, b"agora/bench").unwrap();
    let mut r = hpke::setup_receiver(&sk, &enc, b"agora/bench").unwrap();
    g.bench_function("context_seal_open_256B", |b| {
        b.iter(|| {
            let ct = s.seal(b"", black_box(&msg)).unwrap();
            r.open(b"", &ct).unwrap()
        })
    });
    g.finish();
}

fn stream(c: &mut Criterion) {
    let mut rng = rng();
    let mut g = c.benchmark_group("stream_16MiB");
    let key = Secret::new([0x53; 32]);
    let mut pt = vec![0u8; STREAM_BYTES];
    rng.fill_bytes(&mut pt);
    g.throughput(Throughput::Bytes(STREAM_BYTES as u64));
    for (alg, name) in [
        (AeadAlg::ChaCha20Poly1305, "chacha20poly1305"),
        (AeadAlg::Aes256Gcm, "aes256gcm"),
    ] {
        g.bench_function(format!("encrypt_{name}"), |b| {
            b.iter(|| {
                let mut w = StreamWriter::new(&mut rng, alg, &key, std::io::sink()).unwrap();
                w.write_all(black_box(&pt)).unwrap();
                w.finish().unwrap()
            })
        });
        let ct = agora_core::crypto::stream::encrypt_to_vec(&mut rng, alg, &key, &pt).unwrap();
        let mut out = vec![0u8; 64 << 10];
        g.bench_function(format!("decrypt_{name}"), |b| {
            b.iter(|| {
                let mut r = StreamReader::new(alg, &key, black_box(ct.as_slice())).unwrap();
                let mut total = 0;
                loop {
                    let n = r.read(&mut out).unwrap();
                    if n == 0 {
                        break total;
                    }
                    total += n;
                }
            })
        });
    }
    g.finish();
}

fn hmac(c: &mut Criterion) {
    let mut g = c.benchmark_group("hmac_sha256");
    let key = [0x4b; 32];
    let msg = [0x6d; 64];
    g.throughput(Throughput::Elements(1));
    g.bench_function("tag_64B", |b| {
        b.iter(|| hmac_sha256(black_box(&key), black_box(&msg)))
    });
    g.finish();
}

fn aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_64KiB");
    let mut pt = vec![0u8; AEAD_BYTES];
    rng().fill_bytes(&mut pt);
    let nonce = [7u8; 12];
    g.throughput(Throughput::Bytes(AEAD_BYTES as u64));
    for (alg, name) in [
        (AeadAlg::ChaCha20Poly1305, "chacha20poly1305"),
        (AeadAlg::Aes256Gcm, "aes256gcm"),
    ] {
        let k = AeadKey::new(alg, &Secret::new([0x41; 32]));
        g.bench_function(format!("seal_{name}"), |b| {
            b.iter(|| k.seal(&nonce, b"", black_box(&pt)))
        });
        let ct = k.seal(&nonce, b"", &pt);
        g.bench_function(format!("open_{name}"), |b| {
            b.iter(|| k.open(&nonce, b"", black_box(&ct)).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ed25519, hpke_bench, stream, hmac, aead
}
criterion_main!(benches);
