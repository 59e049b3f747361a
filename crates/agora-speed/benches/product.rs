#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic
//! Throughput of `|Product|_K` (agora_speed::product, AES-256-GCM STREAM)
//! over a 16 MiB product in memory, against what it is made of, in the same
//! run: the bare STREAM of agora_core (no digest), the raw AEAD on the same
//! 64 KiB chunks in place (no STREAM framing, no copies), and the SHA-256 of
//! the ciphertext that `product::encrypt` computes for the bill.
//!
//! `cargo bench -p agora-speed --bench product` (about half a minute);
//! smoke mode: `cargo bench -p agora-speed --bench product -- --test`.

use agora_core::crypto::stream::{self, StreamReader, StreamWriter, CHUNK_LEN};
use agora_core::crypto::{sha256, AeadKey, Secret};
use agora_speed::product::{self, PRODUCT_ALG};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::time::Duration;

/// The product: 16 MiB (a few minutes of video; what the paper's normal
/// mode is for).
const PRODUCT_BYTES: usize = 16 << 20;

fn products(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5eed);
    let key = Secret::new([0x4b; 32]);
    let mut pt = vec![0u8; PRODUCT_BYTES];
    rng.fill_bytes(&mut pt);
    let ct_len = usize::try_from(stream::ciphertext_len(PRODUCT_BYTES as u64)).unwrap();
    let (ct, enc) = product::encrypt(&mut rng, &key, &pt[..], Vec::new()).unwrap();
    assert_eq!((ct.len(), enc.len), (ct_len, ct_len as u64));
    let mut out = Vec::with_capacity(ct_len);

    let mut g = c.benchmark_group("product_16MiB");
    g.throughput(Throughput::Bytes(PRODUCT_BYTES as u64));
    // The vendor: encrypt and hash, into a buffer kept between iterations.
    g.bench_function("speed_encrypt", |b| {
        b.iter(|| {
            out.clear();
            product::encrypt(&mut rng, &key, black_box(&pt[..]), &mut out)
                .unwrap()
                .1
        })
    });
    // The customer, once K arrives: decrypt and check every chunk.
    g.bench_function("speed_decrypt", |b| {
        b.iter(|| {
            out.clear();
            product::decrypt(&key, black_box(&ct[..]), &mut out).unwrap()
        })
    });
    g.bench_function("stream_encrypt_to_sink", |b| {
        b.iter(|| {
            let mut w = StreamWriter::new(&mut rng, PRODUCT_ALG, &key, std::io::sink()).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            w.finish().unwrap()
        })
    });
    let mut chunk = vec![0u8; CHUNK_LEN];
    g.bench_function("stream_decrypt_to_buffer", |b| {
        b.iter(|| {
            let mut r = StreamReader::new(PRODUCT_ALG, &key, black_box(&ct[..])).unwrap();
            let mut total = 0;
            loop {
                let n = r.read(&mut chunk).unwrap();
                if n == 0 {
                    break total;
                }
                total += n;
            }
        })
    });
    // The AEAD bound: each 64 KiB chunk sealed in place in one buffer.
    let aead = AeadKey::new(PRODUCT_ALG, &key);
    let mut buf = Vec::with_capacity(CHUNK_LEN + agora_core::crypto::TAG_LEN);
    g.bench_function("aead_seal_in_place_64KiB_chunks", |b| {
        b.iter(|| {
            for (i, p) in pt.chunks(CHUNK_LEN).enumerate() {
                let mut nonce = [0u8; agora_core::crypto::NONCE_LEN];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                buf.clear();
                buf.extend_from_slice(p);
                aead.seal_in_place(&nonce, b"", &mut buf);
            }
            black_box(&buf);
        })
    });
    g.bench_function("sha256_of_ciphertext", |b| {
        b.iter(|| sha256(black_box(&ct)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = products
}
criterion_main!(benches);
