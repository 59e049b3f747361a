#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Opening, configuration and migrations of the database.

use agora_core::Error;
use agora_store::{migrate, open_connection, schema_version, Migration, SqliteStore, MIGRATIONS};
use rusqlite::Connection;

#[test]
fn open_configures_durability() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_dir(&dir.path().join("data"), key()).unwrap();
    assert!(s.path().ends_with("data/agora.db"));
    s.read(|c| {
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let fk: i64 = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
        assert_eq!(fk, 1);
        Ok(())
    })
    .unwrap();
    s.writer()
        .execute(|c| {
            let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
            assert_eq!(sync, 2, "the writer too");
            Ok(())
        })
        .unwrap();
    assert_eq!(s.schema_version(), Ok(MIGRATIONS.len() as u32));
}

#[test]
fn read_connections_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_dir(dir.path(), key()).unwrap();
    let r = s.read(|c| {
        c.execute("DELETE FROM replay_cache", [])
            .map_err(|e| Error::Storage(e.to_string()))
    });
    assert!(r.is_err());
}

#[test]
fn reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let s = SqliteStore::open_dir(dir.path(), key()).unwrap();
        assert_eq!(s.schema_version(), Ok(agora_store::MIGRATIONS.len() as u32));
    }
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agora.db");
    drop(SqliteStore::open(&path, Default::default(), key()).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path, Default::default(), key()).unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("newer")),
        "{err:?}"
    );
}

#[test]
fn migrations_apply_in_order_each_atomically() {
    const GOOD: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            sql: "CREATE TABLE a (x);",
            then: None,
        },
        Migration {
            version: 2,
            name: "b",
            sql: "CREATE TABLE b (x);",
            then: None,
        },
    ];
    const BAD: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            sql: "CREATE TABLE a (x);",
            then: None,
        },
        Migration {
            version: 2,
            name: "b",
            sql: "CREATE TABLE b (x);",
            then: None,
        },
        Migration {
            version: 3,
            name: "half",
            sql: "CREATE TABLE c (x); THIS IS NOT SQL;",
            then: None,
        },
    ];
    const MISNUMBERED: &[Migration] = &[Migration {
        version: 2,
        name: "a",
        sql: "",
        then: None,
    }];
    let dir = tempfile::tempdir().unwrap();
    let mut c = open_connection(&dir.path().join("m.db"), 1_000).unwrap();
    assert_eq!(migrate(&mut c, &GOOD[..1], &key()), Ok(1));
    assert_eq!(migrate(&mut c, GOOD, &key()), Ok(2));
    assert_eq!(migrate(&mut c, GOOD, &key()), Ok(2));
    assert!(
        matches!(migrate(&mut c, BAD, &key()), Err(Error::Storage(m)) if m.contains("migration 3"))
    );
    assert_eq!(
        schema_version(&c),
        Ok(2),
        "the failed migration left nothing"
    );
    let c_exists: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'c'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(c_exists, 0);
    assert!(matches!(
        migrate(&mut c, MISNUMBERED, &key()),
        Err(Error::ApiMisuse(_))
    ));
}

/// The at-rest key of this file's stores (fixed: some are opened again).
fn key() -> agora_store::AtRestKey {
    agora_store::AtRestKey::new(&agora_core::crypto::Secret::new([7; 32]))
}
