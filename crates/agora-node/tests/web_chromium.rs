//! The public web board on a real node, seen as a person sees it.
//!
//! A node runs in-process on 127.0.0.1 with a temporary SQLite store. Its
//! board is seeded by running the real protocols through
//! [`CpoService::handle`]: a buyer's CPOs approved by the node's arbiter
//! (protocols 1 and 5) and posted to its server (2), and one bound by a
//! seller (3 then 4). Then:
//!
//! A SPEED vendor with two products is hosted too, for the store page, and
//! the bidding CPO takes one bid.
//!
//! - `pages_over_http`: the pages' status codes and what they must never
//!   show (the buyer, a bond), the board's orders and its JSON's next-page
//!   cursor, bid counts, the CPOs bound lately, the store, the icon, with a
//!   plain HTTP client;
//! - `board_in_headless_chromium`: headless Chromium at a phone's width,
//!   driven through WebDriver (chromedriver + fantoccini): search, sort,
//!   open a CPO, read what it says and the time it has left, page, see the
//!   CPOs bound lately and the store, check that no command in a how-to box
//!   is broken across lines and that nothing scrolls sideways, and that the
//!   browser asked for no route the node does not have (the icon).
//!   Screenshots go to `target/screenshots/`. Without `/usr/bin/chromium`
//!   and `/usr/bin/chromedriver` it is skipped, unless
//!   `AGORA_REQUIRE_CHROMIUM=1`, which makes it fail instead.
//!
//! Run: `cargo test -p agora-node --test web_chromium -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use agora_core::crypto::{os_rng, SigningKey, X25519Secret};
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::buyer::{self, Acceptance};
use agora_cpo::policy::ArbiterPolicy;
use agora_cpo::{Bidding, BondTrust, Ccpo, CcpoDraft, FirstCome, Keys, Mode, Peer, Variant};
use agora_node::cpo::{CpoService, CpoSpec, Reply, Role, TrustSource};
use agora_node::pending::StepId;
use agora_node::web::WebService;
use agora_node::{Node, NodeConfig, PendingSteps};
use agora_pki::{Agency, BondParams, Conditions, CrlParams, TrustAnchors};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DAY: u64 = 86_400;

// ------------------------------------------------------------ the market

fn eur(cents: u64) -> Money {
    Money::new(cents, Currency::new("EUR").unwrap())
}

fn keys() -> Keys {
    let rng = &mut os_rng();
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

fn clone_keys(k: &Keys) -> Keys {
    Keys {
        sign: SigningKey::from_seed(&k.sign.to_seed()),
        enc: X25519Secret::from_bytes(*k.enc.to_bytes()),
    }
}

/// The agencies and CRLs as they are: one agency, a current CRL.
struct Fixed(BondTrust);

impl TrustSource<BondTrust> for Fixed {
    fn load(&self) -> Result<BondTrust, String> {
        Ok(self.0.clone())
    }
}

const ZEPPELIN: &str = "Scale model of the Graf Zeppelin airship, 1:200";
const BICYCLE: &str = "Red city bicycle, 54 cm steel frame";
const RADIO: &str = "Valve radio <script>alert('pwned')</script> & \"co\"";
const BOAT: &str = "Wooden rowing boat, 4 m, with oars";

/// The node's CPO service with a seeded board, and what the pages must
/// (and must never) show.
struct Seeded {
    cpo: Arc<CpoService>,
    /// CPO ids (hex).
    zeppelin: String,
    bicycle: String,
    radio: String,
    boat: String,
    /// Hex strings of the buyer and of the bonds: on no page, ever.
    secrets: Vec<String>,
    /// The node's CPO server's key id (hex), which the guide shows.
    server_kid: String,
    _dir: tempfile::TempDir,
}

struct Seeder<'a> {
    cpo: &'a CpoService,
    pending: PendingSteps,
    bob: Keys,
    bob_bond: Vec<u8>,
    arbiter: Peer,
    server: Peer,
    now: Timestamp,
}

fn bond(
    agency: &Agency,
    now: Timestamp,
    holder: &Keys,
    amount: Money,
    role: agora_pki::Role,
) -> Vec<u8> {
    agency
        .issue_bond(
            &BondParams {
                holder: holder.sign.verifying_key(),
                holder_x25519: holder.enc.public(),
                amount,
                roles: vec![role],
                conditions: Conditions::default(),
                not_before: now.minus_secs(DAY),
                not_after: now.plus_secs(365 * DAY),
                crl_uri: agency.crl_uri("http://127.0.0.1:7070"),
            },
            &mut os_rng(),
        )
        .unwrap()
        .der
}

impl Seeder<'_> {
    fn call(&self, role: Role, step: Option<StepId>, body: &[u8]) -> Reply {
        self.cpo
            .handle(&self.pending, role, step, body, self.now)
            .unwrap_or_else(|p| panic!("{} refused: {p:?}", role.path()))
    }

    /// Protocols 1 (or 5) and 2: the arbiter approves, the server posts.
    fn post<V: Variant>(&self, goods: &str, price: Money, terms: &str) -> Ccpo {
        let rng = &mut os_rng();
        let ccpo = Ccpo::new(
            CcpoDraft {
                arbiter: self.arbiter.id(),
                server: self.server.id(),
                goods: goods.into(),
                price,
                start: self.now.minus_secs(60),
                // Half a day past 30 days: the time left reads "30 days"
                // for the next twelve hours, whenever the pages are read.
                end: self.now.plus_secs(30 * DAY + DAY / 2),
                terms: terms.into(),
                bond: self.bob_bond.clone(),
            },
            rng,
        )
        .unwrap();
        let (m0, b) =
            buyer::request_approval::<V>(&self.bob, rng, ccpo.clone(), "", &self.arbiter).unwrap();
        let r1 = self.call(Role::Arbiter, None, &m0);
        let (m2, b) = b.handle(&self.bob, rng, &r1.body).unwrap();
        let r3 = self.call(Role::Arbiter, r1.step, &m2);
        let acceptance: Acceptance = b.handle(&self.bob, self.now, &r3.body).unwrap();

        let (m0, b) = buyer::request_post(&self.bob, rng, &acceptance, &self.server).unwrap();
        let r1 = self.call(Role::Server, None, &m0);
        let (m2, b) = b.handle(&self.bob, rng, &r1.body).unwrap();
        let r3 = self.call(Role::Server, r1.step, &m2);
        let receipt = b.handle(&self.bob, &r3.body).unwrap();
        assert_eq!(receipt.cpo.ccpo.id, ccpo.id);
        ccpo
    }

    /// Protocol 3: a seller's browse session.
    fn session(&self, seller: &Keys, bond: &[u8]) -> agora_cpo::seller::SellerSession {
        let rng = &mut os_rng();
        let (m0, p) = agora_cpo::seller::request_session(
            seller,
            rng,
            bond.to_vec(),
            self.now.minus_secs(60),
            self.now.plus_secs(DAY),
            &self.server,
        )
        .unwrap();
        let r1 = self.call(Role::Server, None, &m0);
        let (m2, p) = p.handle(seller, rng, &r1.body).unwrap();
        let r3 = self.call(Role::Server, r1.step, &m2);
        p.handle(seller, &r3.body).unwrap()
    }

    /// Protocol 6: a seller bids `price` on bidding CPO `cpo`.
    fn bid(&self, seller: &Keys, bond: &[u8], cpo: &Ccpo, price: Money) {
        let rng = &mut os_rng();
        let session = self.session(seller, bond);
        let ask = session.request_listing(rng, cpo.id, Mode::Bidding);
        let listing = session
            .open_bid_listing(&self.call(Role::Server, None, &ask).body)
            .unwrap();
        let (m1, expect) = session.bid(rng, &listing, price, "").unwrap();
        let r = self.call(Role::Server, None, &m1);
        expect.handle(&session, &r.body).unwrap();
    }

    /// Protocols 3 and 4: a seller opens a browse session and binds `cpo`.
    fn bind(&self, seller: &Keys, bond: &[u8], cpo: &Ccpo) {
        let rng = &mut os_rng();
        let (m0, p) = agora_cpo::seller::request_session(
            seller,
            rng,
            bond.to_vec(),
            self.now.minus_secs(60),
            self.now.plus_secs(DAY),
            &self.server,
        )
        .unwrap();
        let r1 = self.call(Role::Server, None, &m0);
        let (m2, p) = p.handle(seller, rng, &r1.body).unwrap();
        let r3 = self.call(Role::Server, r1.step, &m2);
        let session = p.handle(seller, &r3.body).unwrap();

        let ask = session.request_listing(rng, cpo.id, Mode::FirstCome);
        let listing = session
            .open_listing(&self.call(Role::Server, None, &ask).body)
            .unwrap();
        let (offer, expect) = session.offer(rng, &listing, "Ships tomorrow").unwrap();
        let bound = self.call(Role::Server, None, &offer);
        let receipt = expect.handle(&session, &bound.body).unwrap();
        assert_eq!(receipt.message.ccpo.id, cpo.id);
    }
}

fn seed() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now_from_system_clock();
    let rng = &mut os_rng();
    let agency = Agency::create(
        "Web Test Bonding Agency",
        SigningKey::generate(rng),
        now.minus_secs(30 * DAY),
        now.plus_secs(3650 * DAY),
        rng,
    )
    .unwrap();
    let mut agencies = TrustAnchors::new();
    agencies.add_der(agency.certificate_der()).unwrap();
    let crl = agency
        .issue_crl(&CrlParams {
            this_update: now.minus_secs(60),
            next_update: now.plus_secs(7 * DAY),
            crl_number: 1,
            revoked: vec![],
        })
        .unwrap();
    let trust = BondTrust {
        agencies,
        crls: vec![crl],
    };

    let arbiter_keys = keys();
    let server_keys = keys();
    let (arbiter, server) = (arbiter_keys.peer(), server_keys.peer());
    let cpo = Arc::new(
        CpoService::new(CpoSpec {
            store: agora_store::Stores::in_data_dir(
                dir.path(),
                agora_store::AtRestKey::generate(&mut agora_core::crypto::os_rng()),
            )
            .unwrap(),
            server: Some((clone_keys(&server_keys), vec![arbiter])),
            arbiter: Some((
                clone_keys(&arbiter_keys),
                ArbiterPolicy::default(),
                vec![server],
            )),
            trust: Box::new(Fixed(trust)),
        })
        .unwrap(),
    );

    let bob = keys();
    let bob_bond = bond(&agency, now, &bob, eur(100_000), agora_pki::Role::Buyer);
    let pam = keys();
    let pam_bond = bond(&agency, now, &pam, eur(50_000), agora_pki::Role::Seller);
    let s = Seeder {
        cpo: &cpo,
        pending: PendingSteps::new(64, Duration::from_secs(60)),
        bob,
        bob_bond,
        arbiter,
        server,
        now,
    };

    let zeppelin = s.post::<FirstCome>(
        ZEPPELIN,
        eur(8_500),
        "Boxed, all parts present. Deliver within 7 days.",
    );
    let bicycle = s.post::<FirstCome>(BICYCLE, eur(15_000), "Collected in person in Utrecht.");
    let radio = s.post::<FirstCome>(
        RADIO,
        eur(4_250),
        "Must <b>work</b>; tested before sending.",
    );
    let boat = s.post::<Bidding>(BOAT, eur(30_000), "Delivered to the lake shore.");
    s.bind(&pam, &pam_bond, &bicycle);
    s.bid(&pam, &pam_bond, &boat, eur(29_000));

    let mut secrets = Vec::new();
    for k in [&s.bob, &pam] {
        let p = k.peer();
        secrets.push(p.id().to_string());
        secrets.push(hex::encode(p.sign.to_bytes()));
        secrets.push(hex::encode(p.enc.to_bytes()));
    }
    for bond in [&s.bob_bond, &pam_bond] {
        // Its signature, the last 64 bytes: in any hex dump of the bond.
        secrets.push(hex::encode(&bond[bond.len() - 64..]));
    }
    let id = |c: &Ccpo| hex::encode(c.id);
    let seeded = Seeded {
        zeppelin: id(&zeppelin),
        bicycle: id(&bicycle),
        radio: id(&radio),
        boat: id(&boat),
        secrets,
        server_kid: server.id().to_string(),
        cpo: cpo.clone(),
        _dir: dir,
    };
    drop(s);
    seeded
}

// ------------------------------------------------------------ the node

/// SPEED CAs for a vendor that only shows its catalogue: none needed.
struct NoCas;

impl agora_node::speed::SpeedTrustSource<agora_speed::SpeedTrust> for NoCas {
    fn load(&self) -> Result<agora_speed::SpeedTrust, String> {
        Ok(agora_speed::SpeedTrust::new(TrustAnchors::new(), vec![]))
    }
}

struct Products(Vec<agora_node::speed::Product>);

impl agora_node::speed::CatalogueSource for Products {
    fn products(&self) -> Result<Vec<agora_node::speed::Product>, String> {
        Ok(self.0.clone())
    }
}

/// The store's products: ProductID and list price.
const SONG: &str = "DEMO-SONG-1: Loopback Blues, 3 MB (demo bytes)";
const STREAM_KEY: &str = "DEMO-KEY-1: a 16-byte key to a stream";

/// A SPEED vendor (no broker) selling two products from files in `dir`.
fn speed(dir: &Path) -> Arc<agora_node::speed::SpeedService> {
    use agora_node::speed::{Product, SpeedService, SpeedSpec, VendorSpec};
    use agora_speed::strategy::PriceRule;
    std::fs::write(dir.join("song.mp3"), vec![7u8; 3 * 1024 * 1024]).unwrap();
    std::fs::write(dir.join("stream.key"), [9u8; 16]).unwrap();
    let store = agora_store::Stores::open(
        &agora_store::StoreUrl::Sqlite(dir.join("speed.db")),
        agora_store::AtRestKey::generate(&mut os_rng()),
    )
    .unwrap();
    let vendor = keys();
    Arc::new(
        SpeedService::new(SpeedSpec {
            store,
            broker: None,
            vendor: Some(VendorSpec {
                broker: keys().peer(),
                keys: vendor,
                account: agora_speed::AccountNumber::new("V-DEMO").unwrap(),
                catalogue: Box::new(Products(vec![
                    Product {
                        id: SONG.into(),
                        path: dir.join("song.mp3"),
                        rule: PriceRule {
                            list: eur(150),
                            floor: eur(100),
                            step: 20,
                        },
                    },
                    Product {
                        id: STREAM_KEY.into(),
                        path: dir.join("stream.key"),
                        rule: PriceRule::fixed(eur(50)),
                    },
                ])),
                max_aggressive_len: 1_000_000,
            }),
            trust: Box::new(NoCas),
        })
        .unwrap(),
    )
}

struct Running {
    rt: tokio::runtime::Runtime,
    url: String,
    node: Arc<agora_node::Core>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    board: Seeded,
}

impl Running {
    fn start() -> Running {
        let board = seed();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let node = Node::new(NodeConfig {
            public_url: url.clone(),
            ..Default::default()
        })
        .with(board.cpo.clone())
        .with(Arc::new(WebService::new(board.cpo.clone())))
        .with(speed(board._dir.path()));
        let core = node.core().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = rt.spawn(node.serve(listener, async {
            let _ = stopped.await;
        }));
        Running {
            rt,
            url,
            node: core,
            stop: Some(stop),
            served: Some(served),
            board,
        }
    }

    /// Stops the node gracefully; it must return cleanly.
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.served.take() {
            self.rt.block_on(h).unwrap().unwrap();
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET `path`: status, content type, body.
fn get(c: &reqwest::blocking::Client, base: &str, path: &str) -> (u16, String, String) {
    let r = c.get(format!("{base}{path}")).send().unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().unwrap())
}

/// How many CPOs a board page lists.
fn listed(body: &str) -> usize {
    body.matches("<li class=\"cpo\">").count()
}

#[test]
fn pages_over_http() {
    let node = Running::start();
    let (base, b) = (node.url.clone(), &node.board);
    let c = http();
    let mut pages = Vec::new();

    let (s, ct, body) = get(&c, &base, "/");
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert_eq!(
        listed(&body),
        3,
        "open: zeppelin, radio, boat; not the bound bicycle"
    );
    for id in [&b.zeppelin, &b.radio, &b.boat] {
        assert!(body.contains(&format!("href=\"/cpo/{id}\"")));
    }
    assert!(!body.contains(&b.bicycle));
    pages.push(body);

    let (s, _, body) = get(&c, &base, "/?q=zeppelin");
    assert_eq!(s, 200);
    assert_eq!(listed(&body), 1);
    assert!(body.contains(ZEPPELIN) && body.contains("85.00 EUR"));
    pages.push(body);

    let (s, _, body) = get(&c, &base, "/?mode=bidding");
    assert_eq!((s, listed(&body)), (200, 1));
    assert!(body.contains(BOAT));

    let (s, _, body) = get(&c, &base, "/?q=unicorn");
    assert_eq!((s, listed(&body)), (200, 0));
    assert!(body.contains("No open CPOs match your search."));

    let (s, ct, body) = get(&c, &base, "/?min_price=abc");
    assert_eq!((s, ct.as_str()), (400, "text/html; charset=utf-8"));
    assert!(
        body.contains("Minimum price: “abc” is not an amount of money"),
        "{body}"
    );
    let (s, _, _) = get(&c, &base, "/?min_price=10+EUR&currency=USD");
    assert_eq!(s, 400);
    let (s, _, _) = get(&c, &base, "/?after=nothex");
    assert_eq!(s, 400);

    // Paging: two, then the third.
    let (s, _, body) = get(&c, &base, "/?limit=2");
    assert_eq!((s, listed(&body)), (200, 2));
    let next = body
        .split("<a rel=\"next\" id=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a Next page link")
        .replace("&amp;", "&");
    assert!(
        next.contains("cursor=newest.") && next.contains("limit=2"),
        "{next}"
    );
    let (s, _, body) = get(&c, &base, &next);
    assert_eq!((s, listed(&body)), (200, 1));
    assert!(!body.contains("Next page"));

    let (s, _, body) = get(&c, &base, &format!("/cpo/{}", b.zeppelin));
    assert_eq!(s, 200);
    assert!(body.contains("<span id=\"status\" class=\"status status-open\">open</span>"));
    assert!(body.contains(&format!(
        "agora cpo bind {} --seller &lt;you&gt; --out bound.cose --node {base}",
        b.zeppelin
    )));
    pages.push(body);

    let (s, _, body) = get(&c, &base, &format!("/cpo/{}", b.bicycle));
    assert_eq!(s, 200);
    assert!(body.contains("class=\"status status-bound\">bound</span>"));
    pages.push(body);

    let (s, _, body) = get(&c, &base, &format!("/cpo/{}", b.radio));
    assert_eq!(s, 200);
    assert!(!body.contains("<script"), "the goods are text, not markup");
    assert!(!body.contains("<b>work"), "so are the terms");
    assert!(body.contains("Valve radio &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    pages.push(body);

    let (s, _, body) = get(&c, &base, &format!("/cpo/{}", b.boat));
    assert_eq!(s, 200);
    assert!(body.contains("agora cpo bid "));
    pages.push(body);

    let (s, _, body) = get(&c, &base, &format!("/cpo/{}", "00".repeat(32)));
    assert_eq!(s, 404);
    assert!(body.contains("No such CPO"));
    let (s, _, body) = get(&c, &base, "/cpo/xyz");
    assert_eq!(s, 400);
    assert!(body.contains("is not a CPO id"));

    let (s, _, body) = get(&c, &base, "/how-to-bind");
    assert_eq!(s, 200);
    assert!(body.contains(&format!("id=\"server-key\">{}<", b.server_kid)));
    pages.push(body);
    let (s, ct, _) = get(&c, &base, "/style.css");
    assert_eq!((s, ct.as_str()), (200, "text/css; charset=utf-8"));

    for page in &pages {
        assert!(page.contains("name=\"viewport\""));
        for secret in &b.secrets {
            assert!(!page.contains(secret.as_str()), "a page shows {secret}");
        }
    }
    // The JSON board is still there beside the pages.
    let (s, _, body) = get(&c, &base, "/v1/cpo/board?q=zeppelin");
    assert_eq!(s, 200);
    assert!(body.contains(&b.zeppelin));

    // Orders: the same three open CPOs, sorted as asked.
    let order = |body: &str| -> Vec<String> {
        body.split("<li class=\"cpo\"><a class=\"goods\" href=\"/cpo/")
            .skip(1)
            .map(|r| r[..64].to_owned())
            .collect()
    };
    let (z, r, bo) = (b.zeppelin.clone(), b.radio.clone(), b.boat.clone());
    for (query, expect) in [
        ("/", vec![bo.clone(), r.clone(), z.clone()]),
        ("/?sort=price", vec![r.clone(), z.clone(), bo.clone()]),
        ("/?sort=price-desc", vec![bo.clone(), z.clone(), r.clone()]),
    ] {
        let (s, _, body) = get(&c, &base, query);
        assert_eq!(s, 200, "{query}");
        assert_eq!(order(&body), expect, "{query}: newest first by default");
        assert!(body.contains("<nav class=\"sort\""), "{query}");
    }
    // Paging a sorted board: two, then the third, by the cursor.
    let (_, _, body) = get(&c, &base, "/?sort=price&limit=2");
    assert_eq!(order(&body), vec![r.clone(), z.clone()]);
    let next = body
        .split("<a rel=\"next\" id=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a Next page link")
        .replace("&amp;", "&");
    assert!(
        next.contains("sort=price") && next.contains("cursor=price."),
        "{next}"
    );
    let (_, _, body) = get(&c, &base, &next);
    assert_eq!(order(&body), vec![bo.clone()]);

    // Time left and bid counts.
    let (_, _, body) = get(&c, &base, "/");
    assert_eq!(
        body.matches("<dt>Time left</dt><dd class=\"left\">30 days left</dd>")
            .count(),
        3,
        "{body}"
    );
    assert!(
        body.contains("<dt>Bids</dt><dd class=\"bids\">1</dd>"),
        "the boat's bid"
    );
    let (_, _, body) = get(&c, &base, &format!("/cpo/{}", b.boat));
    assert!(body.contains("<dd id=\"bids\">1</dd>") && body.contains("id=\"time-left\""));

    // The JSON's next-page cursor: Link and agora-next-cursor, in any order.
    let mut seen = Vec::new();
    let mut path = "/v1/cpo/board?sort=price&limit=1".to_owned();
    loop {
        let r = c.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let cursor = r
            .headers()
            .get("agora-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: serde_json::Value = r.json().unwrap();
        for e in page.as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_owned());
            if e["id"] == b.boat.as_str() {
                assert_eq!(e["bids"], 1, "a bidding CPO's bids: {e}");
            } else {
                assert!(e.get("bids").is_none(), "{e}");
            }
        }
        match (link, cursor) {
            (Some(link), Some(cursor)) => {
                let next = link
                    .strip_prefix('<')
                    .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("a Link header: {link}"));
                assert!(
                    next.contains("cursor=") && next.contains("sort=price"),
                    "{next}"
                );
                assert!(cursor.starts_with("price."), "{cursor}");
                path = next.to_owned();
            }
            (None, None) => break,
            other => panic!("a Link without its cursor or the reverse: {other:?}"),
        }
    }
    assert_eq!(seen, vec![r.clone(), z.clone(), bo.clone()]);
    // Without a sort, the id order as before; a cursor of another order is refused.
    let (s, _, body) = get(&c, &base, "/v1/cpo/board");
    assert_eq!(s, 200);
    let mut ids = vec![z.clone(), r.clone(), bo.clone()];
    ids.sort();
    let listed: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    let (s, ct, _) = get(
        &c,
        &base,
        &format!("/v1/cpo/board?sort=ending&cursor=price.0.{z}"),
    );
    assert_eq!((s, ct.as_str()), (400, "application/problem+json"));

    // The CPOs bound lately: the bicycle, gone from the board.
    let (s, _, body) = get(&c, &base, "/recent");
    assert_eq!(s, 200);
    assert!(body.contains(&format!("href=\"/cpo/{}\"", b.bicycle)) && body.contains(BICYCLE));
    assert!(body.contains("<span class=\"status status-bound\">bound</span>"));
    for secret in &b.secrets {
        assert!(
            !body.contains(secret.as_str()),
            "the recent page shows {secret}"
        );
    }

    // The store.
    let (s, _, body) = get(&c, &base, "/store");
    assert_eq!(s, 200);
    assert!(body.contains("2 products on sale"), "{body}");
    assert!(
        body.contains(&format!(
        "agora speed buy --as &lt;you&gt; --product &#39;{SONG}&#39; --limit &#39;1.50 EUR&#39; \
         --out demo-song-1.bin --node {base}</code>"
    )),
        "{body}"
    );

    // The icon, and no unmatched route asked for.
    let (s, ct, body) = get(&c, &base, "/favicon.ico");
    assert_eq!((s, ct.as_str()), (200, "image/svg+xml"));
    assert!(body.starts_with("<svg"));
    node.stop();
}

// ------------------------------------------------------------ the browser

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_chromedriver() -> (Driver, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let c = http();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = c.get(format!("{url}/status")).send() {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start on {url}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, url)
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("failure.png"));
    dir
}

type Checked<T> = Result<T, String>;

fn wd<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e:?}")
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

struct Browser<'a> {
    c: &'a Client,
    base: &'a str,
    shots: PathBuf,
    /// The phone's width, in CSS pixels.
    width: u64,
}

impl Browser<'_> {
    async fn open(&self, path: &str) -> Checked<()> {
        self.c
            .goto(&format!("{}{path}", self.base))
            .await
            .map_err(wd("goto"))
    }

    async fn text(&self, css: &str) -> Checked<String> {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.map_err(wd("text")),
            Err(e) => Err(format!("no {css} on {}: {e:?}", self.url().await)),
        }
    }

    /// Clicks the element `at` (`what`, for the message if it is missing).
    async fn click(&self, at: Locator<'_>, what: &str) -> Checked<()> {
        let e = self
            .c
            .find(at)
            .await
            .map_err(|e| format!("{what}: {e:?}"))?;
        e.click()
            .await
            .map(|_| ())
            .map_err(|e| format!("clicking {what}: {e:?}"))
    }

    async fn url(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Waits (at most 10 s) for the browser to reach an address `ok` accepts.
    async fn wait_for_url(&self, what: &str, ok: impl Fn(&str) -> bool) -> Checked<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = self.url().await;
            if ok(&u) {
                return Ok(u);
            }
            ensure!(Instant::now() < deadline, "never reached {what}; at {u}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Nothing wider than the phone: no sideways scrolling. (A phone's
    /// browser widens its layout viewport to content that does not fit, so
    /// an overflow shows as a window wider than the phone, too.)
    async fn fits(&self, page: &str) -> Checked<()> {
        let v = self
            .c
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .map_err(wd("execute"))?;
        // Both are whole CSS pixels.
        let (scroll, inner) = (
            v[0].as_u64().unwrap_or(u64::MAX),
            v[1].as_u64().unwrap_or(0),
        );
        let phone = self.width;
        ensure!(
            scroll <= inner && inner == phone,
            "{page} does not fit a {phone}px phone: {scroll}px of content, a {inner}px window"
        );
        Ok(())
    }

    async fn shot(&self, name: &str) -> Checked<()> {
        let png = self.c.screenshot().await.map_err(wd("screenshot"))?;
        std::fs::write(self.shots.join(name), png).map_err(wd("writing a screenshot"))
    }

    /// Every command box on the page shows each of its lines whole: as many
    /// line boxes as lines of text (a line broken in the middle of a flag
    /// makes two), its lines kept as written (`white-space: pre`), and what
    /// does not fit scrolled inside the box, not the page.
    async fn whole_lines(&self, what: &str) -> Checked<()> {
        let v = self
            .c
            .execute(
                "return Array.from(document.querySelectorAll('pre code')).map(function (c) {
                   var r = document.createRange(); r.selectNodeContents(c);
                   var tops = {};
                   Array.from(r.getClientRects()).forEach(function (x) { tops[Math.round(x.top)] = 1; });
                   return [c.textContent.split('\\n').length, Object.keys(tops).length,
                           getComputedStyle(c.parentElement).whiteSpace, c.textContent];
                 });",
                vec![],
            )
            .await
            .map_err(wd("execute"))?;
        let boxes = v.as_array().cloned().unwrap_or_default();
        ensure!(!boxes.is_empty(), "{what}: no command box");
        for b in boxes {
            let (lines, shown, ws) = (b[0].as_u64(), b[1].as_u64(), b[2].as_str());
            ensure!(
                lines == shown && ws == Some("pre"),
                "{what}: {lines:?} lines shown on {shown:?} ({ws:?}): {}",
                b[3]
            );
        }
        Ok(())
    }

    async fn scripts(&self) -> Checked<u64> {
        let v = self
            .c
            .execute("return document.querySelectorAll('script').length;", vec![])
            .await
            .map_err(wd("execute"))?;
        Ok(v.as_u64().unwrap_or(u64::MAX))
    }
}

/// What a person does and sees.
async fn walk(b: &Browser<'_>, board: &Seeded) -> Checked<()> {
    // The board.
    b.open("/").await?;
    ensure!(
        b.text("h1").await? == "Open purchase orders",
        "the board's heading"
    );
    let items =
        b.c.find_all(Locator::Css("li.cpo"))
            .await
            .map_err(wd("find_all"))?;
    ensure!(
        items.len() == 3,
        "the board lists {} CPOs, not 3",
        items.len()
    );
    b.fits("the board").await?;
    b.shot("board.png").await?;

    // Search for the distinctive word, as typed in the box.
    let q =
        b.c.find(Locator::Css("input[name=q]"))
            .await
            .map_err(wd("the search box"))?;
    q.send_keys("zeppelin").await.map_err(wd("typing"))?;
    b.click(
        Locator::Css("form.search button[type=submit]"),
        "the Search button",
    )
    .await?;
    b.wait_for_url("the search results", |u| u.contains("q=zeppelin"))
        .await?;
    let items =
        b.c.find_all(Locator::Css("li.cpo"))
            .await
            .map_err(wd("find_all"))?;
    ensure!(
        items.len() == 1,
        "the search found {} CPOs, not 1",
        items.len()
    );
    let shown = items[0].text().await.map_err(wd("text"))?;
    ensure!(
        shown.contains(ZEPPELIN) && shown.contains("85.00 EUR") && shown.contains("first come"),
        "the search result reads {shown:?}"
    );
    ensure!(
        b.text("#count").await? == "1 open CPO matches",
        "the count line"
    );
    b.fits("the search results").await?;
    b.shot("search.png").await?;

    // Open it.
    b.click(Locator::Css("li.cpo a.goods"), "the result's link")
        .await?;
    let path = format!("/cpo/{}", board.zeppelin);
    b.wait_for_url("the CPO's page", |u| u.ends_with(&path))
        .await?;
    ensure!(b.text("#goods").await? == ZEPPELIN, "the goods");
    ensure!(b.text("#price").await? == "85.00 EUR", "the price");
    ensure!(b.text("#status").await? == "open", "the status");
    ensure!(b.text("#mode").await? == "first come", "the mode");
    let ends = b.text("#end").await?;
    ensure!(ends.ends_with(" UTC"), "the end date reads {ends:?}");
    let commands = b.text("#commands").await?;
    let bind = format!(
        "agora cpo bind {} --seller <you> --out bound.cose --node {}",
        board.zeppelin, b.base
    );
    ensure!(
        commands.contains("agora cpo session --seller <you> --bond <your-bond.pem>")
            && commands.contains(&bind),
        "the commands read {commands:?}"
    );
    b.fits("the CPO's page").await?;
    b.shot("cpo.png").await?;
    b.c.execute(
        "document.getElementById('how-to-bind').scrollIntoView();",
        vec![],
    )
    .await
    .map_err(wd("scrolling"))?;
    b.shot("cpo-how-to-bind.png").await?;

    // The bound one.
    b.open(&format!("/cpo/{}", board.bicycle)).await?;
    ensure!(b.text("#goods").await? == BICYCLE, "the bound CPO's goods");
    ensure!(
        b.text("#status").await? == "bound",
        "the bound CPO's status"
    );
    b.fits("the bound CPO's page").await?;
    b.shot("bound.png").await?;

    // Markup in a CPO is text on the page; no script runs.
    b.open(&format!("/cpo/{}", board.radio)).await?;
    ensure!(
        b.text("#goods").await? == RADIO,
        "the radio's goods, as written"
    );
    ensure!(b.scripts().await? == 0, "a script element on the page");
    ensure!(
        b.text("#terms").await? == "Must <b>work</b>; tested before sending.",
        "the radio's terms, as written"
    );

    // The bidding one.
    b.open(&format!("/cpo/{}", board.boat)).await?;
    ensure!(b.text("#mode").await? == "bidding", "the boat's mode");
    ensure!(
        b.text("#how-to-bind h2").await? == "How to bid on this CPO",
        "the boat's box"
    );

    // Bad input: a readable error on the page.
    b.open("/?min_price=abc").await?;
    let error = b.text("#error").await?;
    ensure!(
        error.contains("Minimum price: “abc” is not an amount of money"),
        "the error reads {error:?}"
    );
    b.fits("the error page").await?;
    b.shot("error.png").await?;

    // Paging.
    b.open("/?limit=2").await?;
    let n =
        b.c.find_all(Locator::Css("li.cpo"))
            .await
            .map_err(wd("find_all"))?
            .len();
    ensure!(n == 2, "the first page lists {n} CPOs");
    b.click(Locator::LinkText("Next page"), "the Next page link")
        .await?;
    b.wait_for_url("the next page", |u| u.contains("cursor="))
        .await?;
    let n =
        b.c.find_all(Locator::Css("li.cpo"))
            .await
            .map_err(wd("find_all"))?
            .len();
    ensure!(n == 1, "the second page lists {n} CPOs");
    ensure!(
        b.c.find(Locator::Css("#next")).await.is_err(),
        "a Next page link on the last page"
    );

    // The sellers' guide.
    b.click(Locator::LinkText("How to bind"), "the guide's link")
        .await?;
    b.wait_for_url("the guide", |u| u.ends_with("/how-to-bind"))
        .await?;
    let guide = b.text("main").await?;
    ensure!(
        guide.contains(&format!(
            "agora cpo end-session --seller <you> --node {}",
            b.base
        )),
        "the guide reads {guide:?}"
    );
    b.fits("the guide").await?;
    b.shot("how-to-bind.png").await?;

    // Unknown CPO.
    b.open(&format!("/cpo/{}", "00".repeat(32))).await?;
    ensure!(b.text("h1").await? == "No such CPO", "the 404 page");

    // Sorting: the cheapest first, chosen by its link.
    b.open("/").await?;
    ensure!(
        b.text("nav.sort a[aria-current]").await? == "Newest",
        "newest first by default"
    );
    b.click(
        Locator::LinkText("Price: low to high"),
        "the price order's link",
    )
    .await?;
    b.wait_for_url("the board by price", |u| u.contains("sort=price"))
        .await?;
    let first = b.text("li.cpo a.goods").await?;
    ensure!(first == RADIO, "the cheapest is the radio, not {first:?}");
    ensure!(
        b.text("nav.sort a[aria-current]").await? == "Price: low to high",
        "the current order is marked"
    );
    let left = b.text("li.cpo .left").await?;
    ensure!(left == "30 days left", "the time left reads {left:?}");
    b.fits("the board by price").await?;
    b.shot("board-by-price.png").await?;
    // The boat's bid count.
    b.open("/?mode=bidding").await?;
    ensure!(b.text("li.cpo .bids").await? == "1", "the boat's bids");

    // Time left on a CPO's page, and its commands on whole lines.
    b.open(&format!("/cpo/{}", board.zeppelin)).await?;
    ensure!(
        b.text("#time-left").await? == "30 days left",
        "the CPO's time left"
    );
    b.whole_lines("the CPO's commands").await?;

    // The CPOs bound lately.
    b.click(
        Locator::LinkText("Recently bound"),
        "the recent page's link",
    )
    .await?;
    b.wait_for_url("the recent page", |u| u.ends_with("/recent"))
        .await?;
    ensure!(
        b.text("#recent li.cpo a.goods").await? == BICYCLE,
        "the bound bicycle is listed"
    );
    ensure!(
        b.text("#recent li.cpo .status").await? == "bound",
        "and says it is bound"
    );
    b.fits("the recent page").await?;
    b.shot("recent.png").await?;

    // The store: each product with its price and its command.
    b.click(Locator::LinkText("Store"), "the store's link")
        .await?;
    b.wait_for_url("the store", |u| u.ends_with("/store"))
        .await?;
    let products =
        b.c.find_all(Locator::Css("li.product"))
            .await
            .map_err(wd("find_all"))?;
    ensure!(
        products.len() == 2,
        "the store lists {} products",
        products.len()
    );
    let mut song = None;
    for p in &products {
        if p.text().await.map_err(wd("text"))?.contains(SONG) {
            song = Some(p.clone());
        }
    }
    let song = song.ok_or("the song is not in the store")?;
    let shown = song.text().await.map_err(wd("text"))?;
    ensure!(
        shown.contains("1.50 EUR") && shown.contains("3.0 MB"),
        "the song reads {shown:?}"
    );
    let buy = song
        .find(Locator::Css("pre.buy"))
        .await
        .map_err(wd("the song's command"))?
        .text()
        .await
        .map_err(wd("text"))?;
    ensure!(
        buy == format!(
            "agora speed buy --as <you> --product '{SONG}' --limit '1.50 EUR' --out demo-song-1.bin --node {}",
            b.base
        ),
        "the song's command reads {buy:?}"
    );
    b.whole_lines("the store's commands").await?;
    b.fits("the store").await?;
    b.shot("store.png").await?;
    b.c.execute(
        "document.getElementById('products').scrollIntoView();",
        vec![],
    )
    .await
    .map_err(wd("scrolling"))?;
    b.shot("store-products.png").await?;

    // The guide's commands, on whole lines too.
    b.open("/how-to-bind").await?;
    b.whole_lines("the guide's commands").await?;
    // Every page names its icon.
    let icon =
        b.c.find(Locator::Css("link[rel=icon]"))
            .await
            .map_err(wd("the icon's link"))?
            .attr("href")
            .await
            .map_err(wd("href"))?;
    ensure!(
        icon.as_deref() == Some("/favicon.svg"),
        "the icon is {icon:?}"
    );
    Ok(())
}

#[test]
fn board_in_headless_chromium() {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        if std::env::var("AGORA_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!(
                "AGORA_REQUIRE_CHROMIUM=1 but {} missing: install them (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
        }
        say("skipped: chromium/chromedriver not installed");
        return;
    }
    let (driver, driver_url) = start_chromedriver();
    let node = Running::start();
    let shots = screenshot_dir();
    let outcome = node.rt.block_on(async {
        // A person's walk on a 390px phone, then every page on a 375px one.
        let c = session(&driver_url, 390, 844).await?;
        let b = Browser {
            c: &c,
            base: &node.url,
            shots: shots.clone(),
            width: 390,
        };
        let mut outcome = walk(&b, &node.board).await;
        if outcome.is_err() {
            let _ = b.shot("failure.png").await;
        }
        let _ = c.close().await;
        if outcome.is_ok() {
            let c = session(&driver_url, 375, 667).await?;
            let b = Browser {
                c: &c,
                base: &node.url,
                shots: shots.clone(),
                width: 375,
            };
            outcome = every_page_fits(&b, &node.board).await;
            if outcome.is_err() {
                let _ = b.shot("failure.png").await;
            }
            let _ = c.close().await;
        }
        outcome
    });
    drop(driver);
    // The browser asked for nothing the node lacks: its icon included
    // (before, /favicon.ico was most of the unmatched routes).
    let metrics = node.node.metrics.render();
    let outcome = outcome.and_then(|()| {
        if metrics.contains(r#"route="unmatched""#) {
            Err(format!(
                "the browser asked for an unmatched route: {metrics}"
            ))
        } else if !metrics.contains(r#"route="/favicon.svg",status="200""#) {
            Err(format!("the browser never fetched the icon: {metrics}"))
        } else {
            Ok(())
        }
    });
    node.stop();
    if let Err(e) = outcome {
        panic!("{e} (screenshots in {})", shots.display());
    }
    say(&format!("screenshots in {}", shots.display()));
}

/// A line on the test's stderr that the test harness does not capture
/// (`eprintln!` output is captured, and shown only for failing tests).
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A WebDriver session with headless Chromium showing pages as a phone
/// `width` x `height` CSS pixels does.
async fn session(driver_url: &str, width: u32, height: u32) -> Checked<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
            ],
            // Headless Chromium keeps windows at least 500px wide: the
            // phone's viewport comes from mobile emulation, which also
            // honours the viewport meta tag (as a phone's browser does).
            "mobileEmulation": {
                "deviceMetrics": {
                    "width": width,
                    "height": height,
                    "pixelRatio": 3.0,
                    "mobile": true,
                    "touch": true,
                },
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver_url)
        .await
        .map_err(|e| format!("no WebDriver session with headless Chromium: {e:?}"))
}

/// No page scrolls sideways on a 375px phone.
async fn every_page_fits(b: &Browser<'_>, board: &Seeded) -> Checked<()> {
    let mut pages = vec![
        "/".to_owned(),
        "/?q=zeppelin".to_owned(),
        "/?min_price=abc&max_price=xyz&currency=euros&mode=auction".to_owned(),
        "/?limit=1".to_owned(),
        "/how-to-bind".to_owned(),
        "/recent".to_owned(),
        "/store".to_owned(),
        "/?sort=ending".to_owned(),
        format!("/cpo/{}", "00".repeat(32)),
        "/cpo/not-a-cpo-id".to_owned(),
    ];
    for id in [&board.zeppelin, &board.bicycle, &board.radio, &board.boat] {
        pages.push(format!("/cpo/{id}"));
    }
    for p in &pages {
        b.open(p).await?;
        b.fits(p).await?;
    }
    b.open(&format!("/cpo/{}", board.boat)).await?;
    b.shot("cpo-375.png").await
}
