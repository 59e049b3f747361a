#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! Errors a user can act on (issue 16, item 4): each message a user met at
//! the edges, as the CLI prints it now against a running node.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The one line a failed command prints (panics on success or on more).
fn line(cli: &Cli, args: &[&str]) -> String {
    cli.fails(args).trim().to_owned()
}

fn bond(cli: &Cli, holder: &str, amount: &str, role: &str) -> String {
    let out = format!("{holder}-bond.pem");
    issue_bond(cli, holder, amount, role, &out);
    out
}

/// Bob drafts `goods` at `price` (with `--ends-in ends_in` if given), has
/// the node's arbiter accept it (for bids if `bidding`) and posts it; files
/// `<name>.ccpo`, `.acc`, `.posted`. The CPO's id.
fn posted(
    cli: &Cli,
    bond: &str,
    name: &str,
    goods: &str,
    price: &str,
    ends_in: Option<&str>,
    bidding: bool,
) -> String {
    let (ccpo, acc, posted) = (
        format!("{name}.ccpo"),
        format!("{name}.acc"),
        format!("{name}.posted"),
    );
    let mut draft = vec![
        "cpo", "draft", "--buyer", "bob", "--bond", bond, "--goods", goods, "--price", price,
        "--out", &ccpo,
    ];
    if let Some(t) = ends_in {
        draft.extend(["--ends-in", t]);
    }
    cli.ok(&draft);
    let mut approve = vec!["cpo", "approve", &ccpo, "--buyer", "bob", "--out", &acc];
    if bidding {
        approve.push("--bidding");
    }
    cli.ok(&approve);
    let v = cli.json(&["cpo", "post", &acc, "--buyer", "bob", "--out", &posted]);
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn errors_say_what_happened_with_the_numbers_and_names_a_user_knows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, free_port(), &tmp.path().join("node.log"));
    let cli = Cli::new(&data, &tmp.path().join("work"), Some(node.url()));
    for name in ["bob", "quinn", "carol"] {
        cli.ok(&["key", "new", name]);
    }
    let bob_bond = bond(&cli, "bob", "500.00 EUR", "buyer");
    let quinn_bond = bond(&cli, "quinn", "2000.00 EUR", "seller");

    // The bond does not cover the price: both numbers, no repeated
    // "refused", no code for scripts.
    cli.ok(&[
        "cpo",
        "draft",
        "--buyer",
        "bob",
        "--bond",
        &bob_bond,
        "--goods",
        "a piano",
        "--price",
        "900.00 EUR",
        "--out",
        "piano.ccpo",
    ]);
    let err = line(
        &cli,
        &[
            "cpo",
            "approve",
            "piano.ccpo",
            "--buyer",
            "bob",
            "--out",
            "piano.acc",
        ],
    );
    assert_eq!(
        err,
        "error: the arbiter refused: the bond covers 500.00 EUR, the price is 900.00 EUR"
    );

    // A negative amount is read as an amount (not as an unknown option),
    // and refused as negative.
    let out = cli.run(&[
        "cpo",
        "draft",
        "--buyer",
        "bob",
        "--bond",
        &bob_bond,
        "--goods",
        "x",
        "--price",
        "-5.00 EUR",
        "--out",
        "x.ccpo",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid value '-5.00 EUR' for '--price <PRICE>'")
            && err.contains("an amount cannot be negative"),
        "{err}"
    );

    // Someone else's binding: quinn is not the buyer.
    let violin = posted(
        &cli,
        &bob_bond,
        "violin",
        "a violin",
        "100.00 EUR",
        None,
        false,
    );
    cli.ok(&["cpo", "session", "--seller", "quinn", "--bond", &quinn_bond]);
    cli.ok(&[
        "cpo",
        "bind",
        &violin,
        "--seller",
        "quinn",
        "--out",
        "violin.bound",
    ]);
    let err = line(
        &cli,
        &[
            "cpo",
            "binding",
            &violin,
            "--buyer",
            "quinn",
            "--out",
            "not-mine.bound",
        ],
    );
    assert!(
        err.starts_with("error: quinn is not this CPO's buyer"),
        "{err}"
    );

    // No silent overwrite: the bound CPO is not replaced, and nothing is
    // asked of the node.
    let before = std::fs::read(cli.work.join("violin.bound")).unwrap();
    let err = line(
        &cli,
        &[
            "cpo",
            "binding",
            &violin,
            "--buyer",
            "bob",
            "--out",
            "violin.bound",
        ],
    );
    assert!(err.contains("violin.bound exists already"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(cli.work.join("violin.bound")).unwrap(),
        before
    );
    cli.ok(&[
        "--force",
        "cpo",
        "binding",
        &violin,
        "--buyer",
        "bob",
        "--out",
        "violin.bound",
    ]);

    // The award names the winner by her name here, not her key id.
    let window = Duration::from_secs(4);
    let drafted = Instant::now();
    let cello = posted(
        &cli,
        &bob_bond,
        "cello",
        "a cello",
        "300.00 EUR",
        Some("4s"),
        true,
    );
    cli.ok(&[
        "cpo",
        "bid",
        &cello,
        "--seller",
        "quinn",
        "--price",
        "250.00 EUR",
        "--out",
        "q.receipt",
    ]);
    if let Some(left) =
        (drafted + window + Duration::from_millis(1500)).checked_duration_since(Instant::now())
    {
        std::thread::sleep(left);
    }
    let out = cli.ok(&["cpo", "award", &cello, "--out-dir", "cello-award"]);
    assert!(out.contains("winner quinn ("), "{out}");

    // "My" CPOs: Bob's posted ones, Quinn's binding and bid, each with its
    // state now, and Quinn's session.
    let bob = cli.json(&["cpo", "mine", "--as", "bob"]);
    let mine = |v: &serde_json::Value, id: &str| -> serde_json::Value {
        v["cpos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {v}"))
    };
    assert_eq!(bob["cpos"].as_array().unwrap().len(), 2, "{bob}");
    assert_eq!(mine(&bob, &violin)["role"], "buyer");
    assert_eq!(mine(&bob, &violin)["status"], "bound");
    assert_eq!(mine(&bob, &cello)["mine"], "posted");
    let quinn = cli.json(&["cpo", "mine", "--as", "quinn"]);
    assert_eq!(mine(&quinn, &violin)["mine"], "bound it", "{quinn}");
    assert_eq!(mine(&quinn, &cello)["mine"], "bid 250.00 EUR", "{quinn}");
    assert!(quinn["session"].is_string(), "{quinn}");
    let text = cli.ok(&["cpo", "mine", "--as", "quinn"]);
    assert!(
        text.contains("now bound") && text.contains("browse session"),
        "{text}"
    );

    // SPEED: registering twice pays nothing in again.
    cli.ok(&["speed", "register", "carol", "--deposit", "20.00 EUR"]);
    let account = std::fs::read_to_string(data.join("speed/customers/carol.account")).unwrap();
    let err = line(
        &cli,
        &["speed", "register", "carol", "--deposit", "20.00 EUR"],
    );
    assert_eq!(
        err,
        format!(
            "error: carol is registered already (account {}); nothing was deposited or issued",
            account.trim()
        )
    );
    assert_eq!(cents(&data, account.trim()), 20_00);

    // A product the vendor does not have: what it has, by code; and the
    // code alone buys.
    let out = cli.run(&[
        "speed",
        "buy",
        "--as",
        "carol",
        "--product",
        "DEMO-SONG-2",
        "--out",
        "s.mp3",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no product \"DEMO-SONG-2\" in the vendor's catalogue"),
        "{err}"
    );
    assert!(
        err.contains("DEMO-SONG-1") && err.contains("DEMO-KEY-1"),
        "{err}"
    );
    let out = cli.ok(&[
        "speed",
        "buy",
        "--as",
        "carol",
        "--product",
        "demo-key-1",
        "--aggressive",
        "--price",
        "0.50 EUR",
        "--out",
        "stream.key",
    ]);
    assert!(out.contains("paid 0.50 EUR"), "{out}");
    // A second purchase does not replace the product of the first.
    let err = line(
        &cli,
        &[
            "speed",
            "buy",
            "--as",
            "carol",
            "--product",
            "DEMO-KEY-1",
            "--aggressive",
            "--price",
            "0.50 EUR",
            "--out",
            "stream.key",
        ],
    );
    assert!(err.contains("stream.key exists already"), "{err}");
    assert_eq!(
        cents(&data, account.trim()),
        20_00 - 50,
        "nothing paid for it"
    );
    // Her account and her purchases, as she sees them.
    let balance = cli.ok(&["speed", "balance", "--as", "carol"]);
    assert!(
        balance.starts_with(&format!("carol's account {}: 19.50 EUR", account.trim())),
        "{balance}"
    );
    let bought = cli.ok(&["speed", "purchases", "--as", "carol"]);
    assert!(
        bought.contains("0.50 EUR  paid") && bought.contains("stream.key"),
        "{bought}"
    );

    // A clear sentence has no operating-system text after it.
    let err = line(&cli, &["speed", "pay", &"ab".repeat(48)]);
    assert!(
        err.starts_with("error: no purchase with that id here"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");

    assert_eq!(node.terminate(Duration::from_secs(30)).code(), Some(0));
}

/// `agora speed broker settlement` cut at its page size says so and gives
/// the command for the rest, which lists it.
#[test]
fn a_settlement_cut_short_says_so_and_how_to_page() {
    use agora_speed::ledger::{PayMode, PaymentRecord};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, free_port(), &tmp.path().join("node.log"));
    let cli = Cli::new(&data, &tmp.path().join("work"), None);
    cli.ok(&["key", "new", "carol"]);
    cli.ok(&[
        "--node",
        &node.url(),
        "speed",
        "register",
        "carol",
        "--deposit",
        "20.00 EUR",
    ]);
    assert_eq!(node.terminate(Duration::from_secs(30)).code(), Some(0));
    let account = std::fs::read_to_string(data.join("speed/customers/carol.account")).unwrap();
    let ledger = store(&data).ledger();
    let payer = agora_speed::AccountNumber::new(account.trim()).unwrap();
    let customer = ledger.account(&payer).unwrap().unwrap().owner;
    let n = agora_speed::ledger::MAX_SETTLEMENT_LEN + 75;
    let now = agora_core::Timestamp::now_from_system_clock();
    for i in 0..n {
        let mut id = [0u8; 48];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let r = PaymentRecord {
            id: agora_speed::PaymentOrderId::from_bytes(&id).unwrap(),
            payer: payer.clone(),
            vendor: agora_speed::AccountNumber::new("V-DEMO").unwrap(),
            price: "0.01 EUR".parse().unwrap(),
            mode: PayMode::Account,
            customer,
            bill: vec![1],
            receipt: vec![2],
            key: agora_core::crypto::Secret::new([3; 32]),
            // One a second, ending now.
            paid_at: now.minus_secs((n - i) as u64),
        };
        ledger.pay(&r).unwrap();
    }
    let out = cli.ok(&["speed", "broker", "settlement", "--account", "V-DEMO"]);
    assert!(out.starts_with(&format!("V-DEMO: {n} payments")), "{out}");
    let last = out.lines().last().unwrap();
    let (said, rest) = last.split_once("; the rest: ").expect(last);
    assert_eq!(said, format!("listed the first 1000 of {n} (by time)"));
    let rest: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(
        &rest[..4],
        ["agora", "--data-dir", data.to_str().unwrap(), "speed"]
    );
    let more = cli.ok(&rest[3..]);
    // From the last time listed on: that payment again and the 75 after it.
    assert!(more.starts_with("V-DEMO: 76 payments"), "{more}");
    assert!(!more.contains("listed the first"), "{more}");
}

/// `agora cpo list` lists the newest first, sorts by `--sort`, and a page
/// cut short prints the command for the next one, which lists the rest.
#[test]
fn cpo_list_is_newest_first_sorts_and_pages_with_a_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, free_port(), &tmp.path().join("node.log"));
    let cli = Cli::new(&data, &tmp.path().join("work"), Some(node.url()));
    cli.ok(&["key", "new", "bob"]);
    let bob_bond = bond(&cli, "bob", "500.00 EUR", "buyer");
    for (goods, price) in [
        ("first", "30.00 EUR"),
        ("second", "10.00 EUR"),
        ("third", "20.00 EUR"),
    ] {
        posted(&cli, &bob_bond, goods, goods, price, None, false);
    }
    let goods_of = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with("more: "))
            .map(|l| l.split_whitespace().last().unwrap().to_owned())
            .collect()
    };
    let out = cli.ok(&["cpo", "list", "--limit", "2"]);
    assert_eq!(goods_of(&out), ["third", "second"], "newest first: {out}");
    let more = out
        .lines()
        .find_map(|l| l.strip_prefix("more: "))
        .expect(&out);
    let words: Vec<&str> = more.split_whitespace().collect();
    let cursor = words[words.iter().position(|w| *w == "--cursor").unwrap() + 1];
    let rest = cli.ok(&["cpo", "list", "--limit", "2", "--cursor", cursor]);
    assert_eq!(goods_of(&rest), ["first"], "the rest: {rest}");
    assert!(!rest.contains("more: "), "{rest}");
    // Times in JSON as ISO 8601, the seconds beside them; --active-at
    // takes a date or an RFC 3339 time.
    let json = cli.json(&["cpo", "list"]);
    let first = &json.as_array().unwrap()[0];
    let end = first["end"].as_str().expect("an ISO time");
    assert!(
        end.len() == 20 && end.ends_with('Z') && end.as_bytes()[10] == b'T',
        "{end}"
    );
    assert!(
        first["end_unix"].as_u64().unwrap() > 1_700_000_000,
        "{first}"
    );
    let none = cli.ok(&["cpo", "list", "--active-at", "2000-01-01"]);
    assert_eq!(none.trim(), "no open CPOs match");
    let soon = cli.json(&["cpo", "list", "--active-at", end]);
    assert_eq!(
        soon.as_array().unwrap().len(),
        0,
        "none is active at its end"
    );
    let by_price = cli.ok(&["cpo", "list", "--sort", "price"]);
    assert_eq!(
        goods_of(&by_price),
        ["second", "third", "first"],
        "{by_price}"
    );
    assert_eq!(node.terminate(Duration::from_secs(30)).code(), Some(0));
}
