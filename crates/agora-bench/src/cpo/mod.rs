//! The CPO scenarios' common ground: the synthetic, bonded buyers and
//! sellers, their protocol runs through agora-client's conversations over
//! a timed transport, and the setup's postings and browse sessions. One
//! module per scenario: [`post`], [`browse`], [`bind`].

pub(crate) mod bind;
pub(crate) mod browse;
pub(crate) mod post;

use crate::report::Setup;
use crate::stats::{says_already_bound, OpError, Tally};
use crate::{now, BenchArgs};
use agora_client::cpo::flow::{self, Approval, Browse, EndSession, Listings};
use agora_client::datadir::names::{ARBITER_KEY, SERVER_KEY};
use agora_client::datadir::{role_keys, DataDir};
use agora_client::transport::{
    AsyncCpoTransport, AsyncNodeClient, ClientError, CpoTransport, NodeClient,
};
use agora_core::crypto::{os_rng, Rng, SigningKey, X25519Secret};
use agora_core::wire::tags;
use agora_core::{Currency, Money, Timestamp};
use agora_cpo::seller::{Listing, SellerSession};
use agora_cpo::{Ccpo, CcpoDraft, FirstCome, Keys, Mode, Peer};
use agora_node::cpo::{BoardQuery, Reply, Role};
use agora_node::pending::StepId;
use agora_pki::{Agency, BondParams, Conditions};
use anyhow::{bail, Context};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most threads posting the setup's CPOs.
const POSTERS: usize = 32;
/// Failed setup operations tolerated (each is retried) before giving up.
const MAX_SETUP_FAILURES: usize = 20;
/// The offer details of every bind.
pub(crate) const OFFER: &str = "agora bench: synthetic offer";
/// Goods of every CPO the bench posts (so that they can be told apart).
const GOODS: &str = "agora bench: synthetic CPO";
/// The price of every CPO, in cents of EUR.
const PRICE_CENTS: u64 = 100;
/// What every bond covers, in cents of EUR.
const BOND_CENTS: u64 = 100_000;

/// A synthetic buyer or seller: keys in memory, a bond of the agency.
pub(crate) struct Party {
    pub(crate) keys: Keys,
    pub(crate) bond: Vec<u8>,
}

/// What every scenario works with.
pub(crate) struct Env {
    pub(crate) url: String,
    pub(crate) client: NodeClient,
    pub(crate) agency: Agency,
    pub(crate) crl_uri: String,
    /// This data directory's CPO server and arbiter, as the node serves them.
    pub(crate) server: Peer,
    pub(crate) arbiter: Peer,
    /// How long bonds, CPOs and sessions last.
    pub(crate) life_secs: u64,
}

pub(crate) fn eur(cents: u64) -> anyhow::Result<Money> {
    Ok(Money::new(cents, Currency::new("EUR")?))
}

impl Env {
    pub(crate) fn load(dir: &DataDir, a: &BenchArgs, url: String) -> anyhow::Result<Env> {
        let ks = dir.load_keystore()?;
        let server = role_keys(&ks, SERVER_KEY)
            .context("this data directory has no CPO server (run `agora up` on it)")?
            .peer();
        let arbiter = role_keys(&ks, ARBITER_KEY)
            .context("this data directory has no CPO arbiter (run `agora up` on it)")?
            .peer();
        drop(ks);
        let agency = dir.agency(&a.agency).with_context(|| {
            format!(
                "the bench bonds its buyers and sellers with agency {:?} of this data directory",
                a.agency
            )
        })?;
        let base = std::fs::read_to_string(dir.agency_dir(&a.agency).join("crl-base"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| url.clone());
        let crl_uri = agency.crl_uri(&base);
        // The node must be the one of this data directory: its roles are
        // the ones whose keys are here.
        let client = NodeClient::new(&url)?;
        let node: serde_json::Value = client
            .get_json("/v1/node")
            .with_context(|| format!("is a node running at {url}? (agora up)"))?;
        let cpo = &node["services"]["cpo"];
        let served = |role: &str| cpo[role]["key_id"].as_str().map(str::to_owned);
        if served("server") != Some(server.id().to_string())
            || served("arbiter") != Some(arbiter.id().to_string())
        {
            bail!(
                "the node at {url} does not serve the CPO roles of data directory {} \
                 (start it with `agora up` on the same --data-dir)",
                dir.dir().display()
            );
        }
        Ok(Env {
            url,
            client,
            agency,
            crl_uri,
            server,
            arbiter,
            life_secs: a.duration + 3600,
        })
    }

    /// A handle on the one HTTP client of the run: clones share its
    /// connection pool and its one I/O thread, where a client per worker
    /// would add a runtime thread per worker to the CPUs the node runs on.
    pub(crate) fn client(&self) -> anyhow::Result<NodeClient> {
        Ok(self.client.clone())
    }

    /// Progress, on stderr (also with `--json`, whose object is on stdout):
    /// the lines that start with `measuring:` and `measuring the crypto
    /// bound` mark the measured phase for tools that sample the node meanwhile.
    pub(crate) fn say(&self, what: &str) {
        eprintln!("{what}");
    }

    /// A fresh party bonded as `role`.
    pub(crate) fn party(&self, role: agora_pki::Role, rng: &mut impl Rng) -> anyhow::Result<Party> {
        let keys = fresh_keys(rng);
        let now = Timestamp::now_from_system_clock();
        let bond = self
            .agency
            .issue_bond(
                &BondParams {
                    holder: keys.sign.verifying_key(),
                    holder_x25519: keys.enc.public(),
                    amount: eur(BOND_CENTS)?,
                    roles: vec![role],
                    conditions: Conditions::default(),
                    not_before: now.minus_secs(300),
                    not_after: now.plus_secs(self.life_secs),
                    crl_uri: self.crl_uri.clone(),
                },
                rng,
            )?
            .der;
        Ok(Party { keys, bond })
    }

    pub(crate) fn parties(&self, role: agora_pki::Role, n: usize) -> anyhow::Result<Vec<Party>> {
        let mut rng = os_rng();
        (0..n).map(|_| self.party(role, &mut rng)).collect()
    }

    /// A first-come CPO of `bond`'s holder for `server` and `arbiter`.
    pub(crate) fn draft(
        &self,
        bond: &[u8],
        server: &Peer,
        arbiter: &Peer,
    ) -> anyhow::Result<CcpoDraft> {
        let now = Timestamp::now_from_system_clock();
        Ok(CcpoDraft {
            arbiter: arbiter.id(),
            server: server.id(),
            goods: GOODS.into(),
            price: eur(PRICE_CENTS)?,
            start: now.minus_secs(60),
            end: now.plus_secs(self.life_secs),
            terms: String::new(),
            bond: bond.to_vec(),
        })
    }
}

/// Protocols 1 and 2 over the node: one CPO approved and posted.
pub(crate) fn post_once(
    env: &Env,
    client: &NodeClient,
    bob: &Party,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<[u8; 32], OpError> {
    let draft = env
        .draft(&bob.bond, &env.server, &env.arbiter)
        .map_err(|_| OpError::Client(agora_core::Error::ApiMisuse("bad CPO draft")))?;
    let ccpo = Ccpo::new(draft, rng)?;
    let node = Timed::new(client, t);
    let (m0, c) = Approval::<FirstCome>::start(&bob.keys, rng, ccpo, "", &env.arbiter)?;
    let acceptance = agora_client::cpo::run(&node, &bob.keys, m0, c, rng, now)?;
    let (m0, c) = flow::Posting::start(&bob.keys, rng, &acceptance, &env.server)?;
    Ok(agora_client::cpo::run(&node, &bob.keys, m0, c, rng, now)?
        .cpo
        .ccpo
        .id)
}

/// Protocol 3 over the node: a browse session with K_p.
fn open_session(
    env: &Env,
    client: &NodeClient,
    pam: &Party,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<SellerSession, OpError> {
    let now = Timestamp::now_from_system_clock();
    let (m0, c) = Browse::start(
        &pam.keys,
        rng,
        pam.bond.clone(),
        now.minus_secs(60),
        now.plus_secs(env.life_secs),
        &env.server,
    )?;
    Ok(agora_client::cpo::run(
        &Timed::new(client, t),
        &pam.keys,
        m0,
        c,
        rng,
        self::now,
    )?)
}

/// The listing of `cpo` under the session (one round trip), opened and
/// checked to be of `cpo` (what `cpo-browse` measures: no offer is made).
pub(crate) fn listing(
    session: &SellerSession,
    client: &NodeClient,
    cpo: [u8; 32],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Listing, OpError> {
    let m = session.request_listing(rng, cpo, Mode::FirstCome);
    let r = Timed::new(client, t).call(Role::Server, &m, None)?;
    open_listing_of(session, &r.body, cpo)
}

/// Opens a sealed listing and checks it is of `cpo`.
fn open_listing_of(
    session: &SellerSession,
    sealed: &[u8],
    cpo: [u8; 32],
) -> Result<Listing, OpError> {
    let l = session.open_listing(sealed)?;
    if l.ccpo().id != cpo {
        return Err(agora_core::Error::PeerMisbehaved("the listing is of another CPO").into());
    }
    Ok(l)
}

/// The listings of a page of CPOs under the session (one round trip): per
/// CPO, in the order asked, its listing opened and checked, or the node's
/// refusal to list it.
pub(crate) fn listings(
    session: &SellerSession,
    client: &NodeClient,
    cpos: &[[u8; 32]],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Vec<Result<Listing, OpError>>, OpError> {
    let (m, c) = Listings::start(session, rng, cpos, Mode::FirstCome)?;
    let page = agora_client::cpo::run(&Timed::new(client, t), session, m, c, rng, now)?;
    Ok(page
        .into_iter()
        .map(|(cpo, entry)| {
            entry
                .map_err(refusal)
                .and_then(|s| open_listing_of(session, &s, cpo))
        })
        .collect())
}

/// Why the node did not list a CPO of a page.
pub(crate) fn refusal(why: String) -> OpError {
    if says_already_bound(&why) {
        OpError::Check {
            kind: "already-bound",
            what: "the node refused to list a bound CPO",
        }
    } else {
        OpError::Check {
            kind: "refused",
            what: "the node refused to list the CPO",
        }
    }
}

/// Posts `m` CPOs through the node, in parallel (setup, not measured).
fn post_many(env: &Env, m: usize) -> anyhow::Result<(Vec<[u8; 32]>, Duration)> {
    let posters = m.clamp(1, POSTERS);
    env.say(&format!(
        "setup: posting {m} CPOs through the node ({posters} buyers in parallel)..."
    ));
    let buyers = env.parties(agora_pki::Role::Buyer, posters)?;
    let clients = (0..posters)
        .map(|_| env.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let t0 = Instant::now();
    // A progress bar on a terminal (indicatif draws nothing otherwise):
    // posting thousands of CPOs takes seconds.
    let bar = indicatif::ProgressBar::new(m as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "setup: {bar:40} {pos}/{len} CPOs posted ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let bar = &bar;
    let results: Vec<anyhow::Result<Vec<[u8; 32]>>> = std::thread::scope(|s| {
        let hs: Vec<_> = buyers
            .iter()
            .zip(&clients)
            .map(|(bob, client)| {
                let (next, failures) = (&next, &failures);
                s.spawn(move || {
                    let mut rng = os_rng();
                    let mut ids = Vec::new();
                    let mut scratch = Tally::default();
                    while next.fetch_add(1, Ordering::Relaxed) < m {
                        loop {
                            match post_once(env, client, bob, &mut rng, &mut scratch) {
                                Ok(id) => {
                                    ids.push(id);
                                    bar.inc(1);
                                    break;
                                }
                                Err(e) => {
                                    if failures.fetch_add(1, Ordering::Relaxed)
                                        >= MAX_SETUP_FAILURES
                                    {
                                        bail!("setup: posting a CPO failed: {e}");
                                    }
                                }
                            }
                        }
                    }
                    Ok(ids)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut ids = Vec::with_capacity(m);
    for r in results {
        ids.extend(r?);
    }
    Ok((ids, t0.elapsed()))
}

/// Opens a browse session for each of `n` fresh sellers, in parallel
/// (setup, not measured); each keeps the client it opened it with.
fn open_sessions(env: &Env, n: usize) -> anyhow::Result<(Vec<Seller>, Duration)> {
    env.say(&format!(
        "setup: opening {n} browse sessions (protocol 3)..."
    ));
    let pams = env.parties(agora_pki::Role::Seller, n)?;
    let t0 = Instant::now();
    let results: Vec<anyhow::Result<Seller>> = std::thread::scope(|s| {
        let hs: Vec<_> = pams
            .into_iter()
            .map(|pam| {
                s.spawn(move || {
                    let client = env.client()?;
                    let mut rng = os_rng();
                    let mut scratch = Tally::default();
                    let mut last = None;
                    for _ in 0..3 {
                        match open_session(env, &client, &pam, &mut rng, &mut scratch) {
                            Ok(session) => return Ok(Seller { client, session }),
                            Err(e) => last = Some(e),
                        }
                    }
                    match last {
                        Some(e) => bail!("setup: opening a browse session failed: {e}"),
                        None => bail!("setup: opening a browse session failed"),
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let sellers = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((sellers, t0.elapsed()))
}

/// The setup of `cpo-browse` and `cpo-bind`: `m` CPOs posted and `n`
/// sellers with a browse session each (not measured).
pub(crate) fn board_and_sellers(
    env: &Env,
    n: usize,
    m: usize,
) -> anyhow::Result<(Vec<[u8; 32]>, Vec<Seller>, Setup)> {
    let t0 = Instant::now();
    let (cpos, post_time) = post_many(env, m)?;
    let (sellers, session_time) = open_sessions(env, n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        cpos: Some((cpos.len(), post_time.as_secs_f64())),
        sessions: Some((sellers.len(), session_time.as_secs_f64())),
        ..Setup::default()
    };
    Ok((cpos, sellers, setup))
}

/// A seller with a live session and her own connection to the node.
pub(crate) struct Seller {
    pub(crate) client: NodeClient,
    pub(crate) session: SellerSession,
}

/// Ends the sessions (best effort, after the measured phase).
pub(crate) fn end_sessions(sellers: &[Seller]) {
    std::thread::scope(|s| {
        for seller in sellers {
            s.spawn(move || {
                let rng = &mut os_rng();
                let (m, c) = EndSession::start(&seller.session, rng);
                let _ = agora_client::cpo::run(&seller.client, &seller.session, m, c, rng, now);
            });
        }
    });
}
pub(crate) fn fresh_keys(rng: &mut impl Rng) -> Keys {
    Keys {
        sign: SigningKey::generate(rng),
        enc: X25519Secret::generate(rng),
    }
}

/// The report's name of the protocol step a CPO message starts.
fn step_name(body: &[u8]) -> &'static str {
    let tag = agora_core::wire::envelope::peek_tag(body)
        .or_else(|_| agora_cpo::session::peek(body).map(|(t, _)| t));
    match tag {
        Ok(t) if t == tags::CPO_ARBITER_REQUEST => "approval-1",
        Ok(t) if t == tags::CPO_ARBITER_RESPONSE => "approval-2",
        Ok(t) if t == tags::CPO_POST_REQUEST => "post-1",
        Ok(t) if t == tags::CPO_POST_RESPONSE => "post-2",
        Ok(t) if t == tags::CPO_BROWSE_REQUEST => "session-1",
        Ok(t) if t == tags::CPO_BROWSE_RESPONSE => "session-2",
        Ok(t) if t == tags::CPO_LISTING_REQUEST => "listing",
        Ok(t) if t == tags::CPO_LISTINGS_REQUEST => "listings",
        Ok(t) if t == tags::CPO_BIND_OFFER => "offer",
        Ok(t) if t == tags::CPO_BROWSE_END => "end-session",
        _ => "other",
    }
}

/// A CPO transport whose every protocol message is timed into a tally,
/// under the name of its step ([`step_name`]): the client flows of
/// agora-client run over it unchanged.
pub(crate) struct Timed<'a, C> {
    pub(crate) client: &'a C,
    pub(crate) tally: std::cell::RefCell<&'a mut Tally>,
}

impl<'a, C> Timed<'a, C> {
    pub(crate) fn new(client: &'a C, tally: &'a mut Tally) -> Self {
        Timed {
            client,
            tally: std::cell::RefCell::new(tally),
        }
    }
}

impl CpoTransport for Timed<'_, NodeClient> {
    fn call(&self, role: Role, body: &[u8], step: Option<StepId>) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.call(role, body, step);
        self.tally
            .borrow_mut()
            .took(step_name(body), t.elapsed(), &r);
        r
    }
    fn board(&self, q: &BoardQuery) -> Result<agora_node::cpo::BoardPage, ClientError> {
        self.client.board(q)
    }
    fn cpo(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.client.cpo(id)
    }
    fn notice(&self, id: &[u8; 32], receipt: &[u8; 32]) -> Result<Vec<u8>, ClientError> {
        self.client.notice(id, receipt)
    }
    fn award(&self, id: &[u8; 32]) -> Result<serde_json::Value, ClientError> {
        self.client.award(id)
    }
}

impl AsyncCpoTransport for Timed<'_, AsyncNodeClient> {
    async fn call(
        &self,
        role: Role,
        body: &[u8],
        step: Option<StepId>,
    ) -> Result<Reply, ClientError> {
        let t = Instant::now();
        let r = self.client.call(role, body, step).await;
        self.tally
            .borrow_mut()
            .took(step_name(body), t.elapsed(), &r);
        r
    }
}
