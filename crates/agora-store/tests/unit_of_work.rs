#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
#![cfg(unix)] // SIGKILL and ExitStatusExt::signal
//! One server step, one unit of work, on SQLite: a CPO step's write and its
//! evidence are both durable or both absent, whether the unit fails between
//! them, its batch's COMMIT fails, or the process is killed between them or
//! at any moment of a stream of units.
//!
//! The failure points are the store's own (feature `failpoints`, enabled
//! for this crate's tests only): `cpo-unit-before-evidence` sits after a
//! unit's write and before its evidence. Every test here that arms one runs
//! under [`ARMING`], since armed points are process-wide.
//!
//! The killed processes are this test binary re-executed with `--exact
//! <child>`; the env var [`DB_ENV`] carries the database path (without it a
//! child test returns at once, so a normal run just passes it).

use agora_core::ports::Evidence;
use agora_core::{Error, KeyId, Timestamp};
use agora_cpo::ports::conformance::{entry, session};
use agora_cpo::ports::{Binding, BoardEntry};
use agora_cpo::store::{CpoStore, CpoUnit, CpoWrite, CpoWritten};
use agora_store::failpoint::{arm_for_testing_only, disarm_all_for_testing_only, Action};
use agora_store::{SqliteCpoStore, SqliteStore, StoreConfig};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;

const DB_ENV: &str = "AGORA_UNIT_TEST_DB";
const POINT: &str = "cpo-unit-before-evidence";
const NOW: Timestamp = Timestamp(1_000);

/// Armed failure points are process-wide: a test that arms one, or whose
/// units must not meet an armed one, holds this.
static ARMING: Mutex<()> = Mutex::new(());

fn binding(n: u8) -> Binding {
    Binding {
        seller: KeyId([n; 32]),
        bound_at: NOW,
        bound_cpo: vec![n; 40],
    }
}

fn post_unit(e: &BoardEntry) -> CpoUnit {
    CpoUnit {
        write: CpoWrite::Post(e.clone()),
        evidence: vec![Evidence::new("cpo/posted", e.posted.clone())],
    }
}

fn award_unit(cpo: [u8; 32]) -> CpoUnit {
    CpoUnit {
        write: CpoWrite::Award {
            cpo,
            award: b"the award".to_vec(),
            winner: Some(binding(7)),
        },
        evidence: vec![Evidence::new("cpo/award", b"the award".to_vec())],
    }
}

fn bind_unit(cpo: [u8; 32], session: [u8; 32]) -> CpoUnit {
    CpoUnit {
        write: CpoWrite::Bind {
            cpo,
            binding: binding(1),
            session,
        },
        evidence: vec![Evidence::new("cpo/bound", binding(1).bound_cpo)],
    }
}

fn kinds(s: &SqliteCpoStore) -> Vec<String> {
    s.archive()
        .entries(0, 1024)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Each kind of unit, failing after its write and before its evidence,
/// leaves neither; without the failure it leaves both.
#[test]
fn a_failure_between_a_steps_write_and_its_evidence_leaves_neither() {
    let _one = ARMING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let s = store.cpo();
    let posted = entry(2, 5_000);
    let bidding = entry(3, 5_000);
    let live = session(1, 1);
    s.sessions().create(&live).unwrap();

    arm_for_testing_only(POINT, Action::Fail);
    let failed = s.commit(post_unit(&posted), NOW).wait();
    assert!(matches!(failed, Err(Error::Storage(_))), "{failed:?}");
    assert_eq!(
        s.board().get(&posted.ccpo.id),
        Ok(None),
        "no post without its evidence"
    );
    disarm_all_for_testing_only();
    s.commit(post_unit(&posted), NOW).wait().unwrap();
    s.commit(post_unit(&bidding), NOW).wait().unwrap();
    assert_eq!(kinds(&s), ["cpo/posted", "cpo/posted"]);

    arm_for_testing_only(POINT, Action::Fail);
    assert!(s
        .commit(bind_unit(posted.ccpo.id, live.id), NOW)
        .wait()
        .is_err());
    assert!(s.commit(award_unit(bidding.ccpo.id), NOW).wait().is_err());
    assert_eq!(s.board().binding(&posted.ccpo.id), Ok(None), "no binding");
    assert_eq!(s.bids().award(&bidding.ccpo.id), Ok(None), "no award");
    assert_eq!(
        s.board().binding(&bidding.ccpo.id),
        Ok(None),
        "no winner's binding"
    );
    assert_eq!(kinds(&s).len(), 2, "no evidence of a failed unit");
    disarm_all_for_testing_only();

    assert_eq!(
        s.commit(bind_unit(posted.ccpo.id, live.id), NOW).wait(),
        Ok(CpoWritten::Bind(agora_cpo::ports::BindOutcome::Bound))
    );
    s.commit(award_unit(bidding.ccpo.id), NOW).wait().unwrap();
    assert_eq!(
        s.bids().award(&bidding.ccpo.id),
        Ok(Some(b"the award".to_vec()))
    );
    assert_eq!(s.board().binding(&bidding.ccpo.id), Ok(Some(binding(7))));
    assert_eq!(
        kinds(&s),
        ["cpo/posted", "cpo/posted", "cpo/bound", "cpo/award"]
    );
}

/// A unit whose batch fails at COMMIT (another request of the batch breaks
/// a deferred foreign key, checked only then) leaves nothing of itself.
#[test]
fn a_failed_commit_leaves_neither_the_write_nor_its_evidence() {
    let _one = ARMING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_dir(dir.path(), key()).unwrap();
    store
        .writer()
        .execute(|c| {
            c.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY,
                     parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    let s = store.cpo();
    let posted = entry(2, 5_000);
    // Hold the writer so that the unit and the poison form one batch.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = store
        .writer()
        .submit(move |_| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            Ok(())
        })
        .unwrap();
    started_rx.recv().unwrap();
    let unit = s.commit(post_unit(&posted), NOW);
    let poison = store
        .writer()
        .submit(|c| {
            c.execute("INSERT INTO child (id, parent_id) VALUES (1, 99)", [])
                .map_err(|e| Error::Storage(e.to_string()))
        })
        .unwrap();
    release_tx.send(()).unwrap();
    gate.wait().unwrap();
    assert!(matches!(unit.wait(), Err(Error::Storage(_))));
    assert!(poison.wait().is_err());
    assert_eq!(store.writer().stats().failed_commits, 1);
    assert_eq!(s.board().get(&posted.ccpo.id), Ok(None));
    assert_eq!(kinds(&s), Vec::<String>::new());
    // The same unit commits afterwards, whole.
    s.commit(post_unit(&posted), NOW).wait().unwrap();
    assert_eq!(s.board().get(&posted.ccpo.id), Ok(Some(posted)));
    assert_eq!(kinds(&s), ["cpo/posted"]);
}

/// The child of [`a_process_killed_between_a_write_and_its_evidence_leaves_neither`]:
/// posts one CPO with the point armed to abort.
#[test]
fn child_aborting_between_write_and_evidence() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store =
        SqliteStore::open(std::path::Path::new(&path), StoreConfig::default(), key()).unwrap();
    let s = store.cpo();
    s.commit(post_unit(&entry(1, 5_000)), NOW).wait().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "FIRST").unwrap();
    out.flush().unwrap();
    arm_for_testing_only(POINT, Action::Abort);
    let _ = s.commit(post_unit(&entry(2, 5_000)), NOW).wait();
    writeln!(out, "SURVIVED").unwrap();
}

#[test]
fn a_process_killed_between_a_write_and_its_evidence_leaves_neither() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.db");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_aborting_between_write_and_evidence",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("FIRST"), "the child ran: {said}");
    assert!(!said.contains("SURVIVED"), "the child died at the point");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(6), "SIGABRT: {:?}", out.status);
    let store = SqliteStore::open(&path, StoreConfig::default(), key()).unwrap();
    let s = store.cpo();
    assert!(s.board().get(&entry(1, 5_000).ccpo.id).unwrap().is_some());
    assert_eq!(s.board().get(&entry(2, 5_000).ccpo.id), Ok(None));
    assert_eq!(
        kinds(&s),
        ["cpo/posted"],
        "the first unit whole, the second absent"
    );
    assert_eq!(s.archive().verify(), Ok(1));
}

/// A post whose evidence names its CPO, so that board and archive can be
/// matched one to one.
fn named_post(n: u64) -> CpoUnit {
    let e = entry(n, 5_000);
    CpoUnit {
        evidence: vec![Evidence::new("cpo/posted", e.ccpo.id.to_vec())],
        write: CpoWrite::Post(e),
    }
}

/// Units of work committed by writer threads, CPO number `n` posted by the
/// `n`-th: printed `ACK n` once durable.
#[test]
fn child_posting_until_killed() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store =
        SqliteStore::open(std::path::Path::new(&path), StoreConfig::default(), key()).unwrap();
    let s = store.cpo();
    std::thread::scope(|scope| {
        for w in 0..8u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..20_000u64 {
                    let n = 1 + i * 8 + w;
                    match s.commit(named_post(n), NOW).wait() {
                        Ok(_) => {}
                        Err(Error::Overloaded) => continue,
                        Err(e) => panic!("{e}"),
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {n}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// A process committing posts is SIGKILLed at three moments: every
/// acknowledged post is on the board, and the board and the evidence
/// archive name exactly the same CPOs (no post without its evidence, no
/// evidence without its post); the archive's chain is whole.
#[test]
fn a_process_killed_while_committing_units_leaves_each_whole_or_absent() {
    use std::collections::BTreeSet;
    for kill_after in [50, 300, 900] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_posting_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        for line in lines.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("ACK ") {
                acked.push(n.trim().parse::<u64>().unwrap());
                if acked.len() >= kill_after {
                    break;
                }
            }
        }
        assert_eq!(acked.len(), kill_after, "the child ended before the kill");
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        let status = child.wait().unwrap();
        drop(lines);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");

        let store = SqliteStore::open(&path, StoreConfig::default(), key()).unwrap();
        let on_board: BTreeSet<Vec<u8>> = store
            .read(|c| {
                let mut st = c.prepare("SELECT id FROM cpo_board").unwrap();
                let ids = st
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                Ok(ids)
            })
            .unwrap();
        let s = store.cpo();
        let checked = s.archive().verify().expect("the chain is whole");
        let mut archived = BTreeSet::new();
        let mut from = 1;
        loop {
            let page = s.archive().entries(from, 1024).unwrap();
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            archived.extend(page.into_iter().map(|e| e.payload));
        }
        assert_eq!(archived.len() as u64, checked, "one entry per post");
        for n in &acked {
            let id = entry(*n, 5_000).ccpo.id.to_vec();
            assert!(on_board.contains(&id), "acknowledged post {n} lost");
        }
        assert_eq!(
            on_board, archived,
            "every post with its evidence, and only those"
        );
        eprintln!(
            "killed after {kill_after} acks: {} units whole, none half",
            on_board.len()
        );
    }
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
