#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic
//! Rows per second written durably (WAL, `synchronous=FULL`) through group
//! commit with 1, 16 and 64 concurrent writers (each waiting for its ticket
//! before the next row, as a server session would), against one transaction
//! per row (autocommit) on a single connection.
//!
//! `cargo bench -p agora-store --bench group_commit` (add `-- --test` for a
//! quick smoke run). Each case measures for about 3 seconds.

use agora_core::Error;
use agora_store::{open_connection, SqliteStore, StoreConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Rows written per measured iteration of a group-commit case.
const ROWS_PER_ITER: i64 = 1024;
/// Rows per iteration of the autocommit case (one fsync each: kept small).
const AUTOCOMMIT_ROWS_PER_ITER: i64 = 64;
const PAYLOAD: &[u8] = &[0x5a; 100];

fn db_dir() -> tempfile::TempDir {
    // On the target's disk, not a tmpfs: fsync must cost what it costs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_insert");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for writers in [1i64, 16, 64] {
        let dir = db_dir();
        let store =
            SqliteStore::open(&dir.path().join("agora.db"), StoreConfig::default(), key()).unwrap();
        store
            .writer()
            .execute(|c| {
                c.execute_batch("CREATE TABLE bench (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
                    .map_err(|e| Error::Storage(e.to_string()))
            })
            .unwrap();
        let next_key = AtomicI64::new(0);
        g.throughput(Throughput::Elements(ROWS_PER_ITER as u64));
        g.bench_with_input(
            BenchmarkId::new("group_commit", writers),
            &writers,
            |b, &writers| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::thread::scope(|s| {
                            for _ in 0..writers {
                                s.spawn(|| {
                                    for _ in 0..ROWS_PER_ITER / writers {
                                        let k = next_key.fetch_add(1, Ordering::Relaxed);
                                        store
                                            .writer()
                                            .submit(move |c| {
                                                c.prepare_cached(
                                                    "INSERT INTO bench (k, v) VALUES (?1, ?2)",
                                                )
                                                .and_then(|mut st| {
                                                    st.execute(rusqlite::params![k, PAYLOAD])
                                                })
                                                .map_err(|e| Error::Storage(e.to_string()))
                                            })
                                            .unwrap()
                                            .wait()
                                            .unwrap();
                                    }
                                });
                            }
                        });
                    }
                    start.elapsed()
                })
            },
        );
        let st = store.writer().stats();
        eprintln!(
            "  group_commit/{writers}: {} requests in {} commits (avg batch {:.1}, largest {})",
            st.requests,
            st.commits,
            st.requests as f64 / st.commits.max(1) as f64,
            st.largest_batch
        );
    }

    let dir = db_dir();
    let conn = open_connection(&dir.path().join("autocommit.db"), 5_000).unwrap();
    conn.execute_batch("CREATE TABLE bench (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .unwrap();
    let mut k = 0i64;
    g.throughput(Throughput::Elements(AUTOCOMMIT_ROWS_PER_ITER as u64));
    g.bench_function(BenchmarkId::new("autocommit_per_row", 1), |b| {
        b.iter_custom(|iters| {
            let mut st = conn
                .prepare_cached("INSERT INTO bench (k, v) VALUES (?1, ?2)")
                .unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..AUTOCOMMIT_ROWS_PER_ITER {
                    st.execute(rusqlite::params![k, PAYLOAD]).unwrap();
                    k += 1;
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
