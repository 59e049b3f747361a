#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! A 1 GiB STREAM round trip in constant memory: peak RSS (VmHWM) must stay
//! under 64 MiB.
//!
//! The work runs in a child process (this test binary re-executed with only
//! [`stream_1gib_child`] selected and [`CHILD_ENV`] set), so that the test
//! harness's other threads and allocations do not disturb the measurement.
//! The child streams a deterministic pseudo-random source, generated 64 KiB
//! at a time, through a `StreamWriter` into an OS pipe read by a
//! `StreamReader` on another thread, hashes what went in and what came out
//! with SHA-256, compares, and prints its VmHWM. The parent checks both.
//!
//! The failure cases (truncation, reordering, a dropped final chunk, bit
//! flips, trailing data, wrong key) on multi-chunk streams are the unit tests
//! of `crypto::stream`.

use agora_core::crypto::stream::{StreamReader, StreamWriter, CHUNK_LEN};
use agora_core::crypto::{AeadAlg, Secret};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Instant;

/// Set in the child's environment: "do the work".
const CHILD_ENV: &str = "AGORA_STREAM_LARGE_CHILD";
/// The payload: 1 GiB.
const TOTAL_BYTES: u64 = 1 << 30;
/// The memory bound asserted by the parent: 64 MiB.
const MAX_HWM_KIB: u64 = 64 * 1024;

#[test]
fn stream_1gib_round_trip_constant_memory() {
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let out = Command::new(exe)
        .args([
            "--exact",
            "stream_1gib_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child failed: {}", out.status);
    assert!(
        stdout.contains("STREAM_LARGE round trip ok"),
        "the child did not run the round trip"
    );
    println!(
        "1 GiB STREAM round trip in a child process: {:.2} s",
        elapsed.as_secs_f64()
    );
    if cfg!(target_os = "linux") {
        let hwm_kib: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("STREAM_LARGE VmHWM kiB: "))
            .expect("the child reports VmHWM")
            .trim()
            .parse()
            .unwrap();
        assert!(
            hwm_kib < MAX_HWM_KIB,
            "peak RSS {hwm_kib} kiB, bound {MAX_HWM_KIB} kiB"
        );
    }
}

/// The child's half; does nothing unless [`CHILD_ENV`] is set.
#[test]
fn stream_1gib_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let key = Secret::new([0x5a; 32]);
    let alg = AeadAlg::ChaCha20Poly1305;
    let started = Instant::now();
    let (pipe_r, pipe_w) = std::io::pipe().unwrap();

    let reader = std::thread::spawn({
        let key = key.clone();
        move || {
            let mut r = StreamReader::new(alg, &key, pipe_r).unwrap();
            let mut h = Sha256::new();
            let mut buf = vec![0u8; CHUNK_LEN];
            let mut total = 0u64;
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                total += n as u64;
            }
            (total, h.finalize())
        }
    });

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5354_5245_414d);
    let mut w = StreamWriter::new(&mut rng, alg, &key, pipe_w).unwrap();
    let mut source = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut sent = 0u64;
    while sent < TOTAL_BYTES {
        source.fill_bytes(&mut buf);
        h.update(&buf);
        w.write_all(&buf).unwrap();
        sent += buf.len() as u64;
    }
    // Closing the pipe's write end (dropped with the writer) ends the stream.
    drop(w.finish().unwrap());
    let sent_hash = h.finalize();
    let (received, received_hash) = reader.join().unwrap();
    let secs = started.elapsed().as_secs_f64();

    assert_eq!(received, TOTAL_BYTES);
    assert_eq!(sent_hash, received_hash);
    println!(
        "STREAM_LARGE round trip ok: {TOTAL_BYTES} bytes, sha256 {}",
        hex::encode(sent_hash)
    );
    println!(
        "STREAM_LARGE time: {secs:.2} s ({:.0} MiB/s through encrypt + pipe + decrypt, both hashed)",
        TOTAL_BYTES as f64 / (1 << 20) as f64 / secs
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .expect("VmHWM in /proc/self/status")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .to_owned();
        println!("STREAM_LARGE VmHWM kiB: {hwm}");
    }
}
