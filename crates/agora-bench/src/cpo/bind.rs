//! `cpo-bind`: setup posts M CPOs (in parallel) and opens N sessions;
//! then the N sellers race over the M CPOs (listing request + offer), each
//! walking the board round from her own starting place and skipping CPOs
//! she has seen bound, as a seller reading the live board would, until
//! every CPO is bound (or the limits stop them); throughput = binds
//! (BOUND_CPO) per second. The bench counts the BOUND_CPOs of every CPO:
//! more than one is a broken invariant, reported loudly with a non-zero
//! exit.
//!
//! The sellers are futures, [`LOOPS`] event loops driving their share each
//! ([`race_loops`]): a thread per seller slept while the node answered and
//! was woken for every reply, a quarter of the load tool's CPU taken, over
//! loopback, from the node under test.

use super::{board_and_sellers, end_sessions, refusal, Env, Timed, OFFER};
use crate::bound::Window;
use crate::race::{race_loops, Limits, LOOPS};
use crate::report::{Outcome, Setup};
use crate::stats::{merge_all, OpError, Tally};
use crate::{now, Scenario};
use agora_client::cpo::flow::{Bind, Conversation, Listings, Next};
use agora_client::cpo::{role_of, run_async};
use agora_client::transport::{AsyncCpoTransport, AsyncNodeClient};
use agora_core::crypto::{os_rng, Rng};
use agora_cpo::seller::SellerSession;
use agora_cpo::Mode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

fn violations(counts: &[u32]) -> Vec<(usize, u32)> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 1)
        .map(|(i, c)| (i, *c))
        .collect()
}

/// What `cpo-bind` checks at the end.
#[derive(Debug)]
pub(crate) struct Invariant {
    /// CPOs bound by exactly one seller of the bench.
    pub(crate) bound_once: usize,
    /// CPOs nobody of the bench bound (the run stopped first).
    pub(crate) unbound: usize,
    /// CPOs some seller was told "already bound" although no seller of
    /// the bench holds a BOUND_CPO for it (a reply lost after the commit,
    /// or someone else bound it).
    pub(crate) refused_without_binder: usize,
    /// CPO ids (hex) with more than one BOUND_CPO, and how many.
    pub(crate) violations: Vec<(String, u32)>,
}

impl Invariant {
    pub(crate) fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "rule": "each CPO bound by at most one seller (BOUND_CPOs counted per CPO)",
            "cpos_bound_once": self.bound_once,
            "cpos_unbound": self.unbound,
            "cpos_already_bound_without_binder": self.refused_without_binder,
            "violations": self.violations.iter()
                .map(|(id, n)| serde_json::json!({ "id": id, "bound_cpos": n }))
                .collect::<Vec<_>>(),
        })
    }
}

/// A bind's listing as it came, not yet opened: the bind opens and checks
/// it when (and if) she makes her offer.
type Listed = (Bind, Vec<u8>);

/// The listing of `cpo`, on an event loop.
async fn listing_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    cpo: [u8; 32],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Listed, OpError> {
    let (m, c) = Bind::start(session, rng, cpo, OFFER)?;
    let r = Timed::new(client, t)
        .call(role_of(m.to), &m.body, None)
        .await?;
    Ok((c, r.body))
}

/// The listings of a page of CPOs, on an event loop: per CPO, in the order
/// asked, the bind of her listing with its offer, or the node's refusal.
async fn listings_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    cpos: &[[u8; 32]],
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<Vec<Result<Listed, OpError>>, OpError> {
    let (m, c) = Listings::start(session, rng, cpos, Mode::FirstCome)?;
    let page = run_async(&Timed::new(client, t), session, m, c, rng, now).await?;
    Ok(page
        .into_iter()
        .map(|(cpo, entry)| {
            entry
                .map_err(refusal)
                .map(|sealed| (Bind::awaiting(session, cpo, OFFER), sealed))
        })
        .collect())
}

/// Opens and checks a listing (of the CPO asked for, in this session),
/// offers, and checks BOUND_CPO (signed by the server, answering this
/// offer), on an event loop.
async fn offer_async(
    session: &SellerSession,
    client: &AsyncNodeClient,
    (bind, sealed): Listed,
    rng: &mut impl Rng,
    t: &mut Tally,
) -> Result<(), OpError> {
    let (offer, bind) = match bind.on_reply(session, rng, now(), &sealed)? {
        Next::Send(offer, bind) => (offer, bind),
        Next::Done(_) => return Err(agora_core::Error::ApiMisuse("a listing ended a bind").into()),
    };
    run_async(&Timed::new(client, t), session, offer, bind, rng, now).await?;
    Ok(())
}

pub(crate) fn run_bind(
    env: &Env,
    n: usize,
    m: usize,
    page: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let (cpos, sellers, setup) = board_and_sellers(env, n, m)?;
    env.say(&format!(
        "measuring: {n} sellers racing to bind {} CPOs...",
        cpos.len()
    ));
    let per_op = Scenario::Bind.requests_per_op();
    let bound: Vec<AtomicU32> = cpos.iter().map(|_| AtomicU32::new(0)).collect();
    let binds = AtomicUsize::new(0);
    let refused: Vec<AtomicBool> = cpos.iter().map(|_| AtomicBool::new(false)).collect();
    let (cpos, bound_ref, refused_ref, binds) = (&cpos, &bound, &refused, &binds);
    let sellers_n = sellers.len().max(1);
    let (results, wall) = race_loops(
        &sellers,
        LOOPS,
        &env.url,
        limits,
        window,
        |k, seller, client| async move {
            let mut rng = os_rng();
            let mut t = Tally::default();
            let (mut attempts, mut already) = (0u64, 0u64);
            let mut last_bind = None;
            // Seller k starts at her own place in the board (k * M / N) and
            // walks it round; like a seller reading the live board, she skips
            // CPOs she has seen bound. Neighbours still collide where one
            // catches up with the next, so CPOs are raced for, but most
            // attempts are binds rather than refusals.
            let m = cpos.len();
            let start = k * m / sellers_n;
            let seen_closed = |i: usize| {
                bound_ref[i].load(Ordering::Relaxed) > 0 || refused_ref[i].load(Ordering::Relaxed)
            };
            // What one attempt on CPO `i` came to: bound, or why not.
            let mut settle = |i: usize, r: Result<(), OpError>, t: &mut Tally| match r {
                Ok(()) => {
                    bound_ref[i].fetch_add(1, Ordering::SeqCst);
                    t.successes += 1;
                    last_bind = Some(Instant::now());
                    // The race is over once every CPO is bound: what is
                    // left is refusals, which would only dilute binds/s.
                    if binds.fetch_add(1, Ordering::SeqCst) + 1 >= cpos.len() {
                        limits.stop("all-bound");
                    }
                }
                Err(e) => {
                    let kind = e.kind();
                    if kind == "already-bound" {
                        already += 1;
                        refused_ref[i].store(true, Ordering::Relaxed);
                    }
                    t.error(kind);
                }
            };
            let mut walk = (0..m).map(|j| (start + j) % m);
            if page == 1 {
                for i in walk {
                    if seen_closed(i) {
                        continue;
                    }
                    if !limits.reserve(per_op) {
                        break;
                    }
                    let before = t.requests;
                    attempts += 1;
                    let r = match listing_async(&seller.session, &client, cpos[i], &mut rng, &mut t)
                        .await
                    {
                        Ok(l) => offer_async(&seller.session, &client, l, &mut rng, &mut t).await,
                        Err(e) => Err(e),
                    };
                    settle(i, r, &mut t);
                    limits.release(per_op - (t.requests - before).min(per_op));
                }
            } else {
                // A page of the CPOs ahead that she has not seen bound, in one
                // request; then an offer on each listed one still not seen
                // bound (a listing she no longer needs just expires).
                'pages: loop {
                    let batch: Vec<usize> = walk
                        .by_ref()
                        .filter(|i| !seen_closed(*i))
                        .take(page)
                        .collect();
                    if batch.is_empty() || !limits.reserve(1) {
                        break;
                    }
                    let ids: Vec<[u8; 32]> = batch.iter().map(|i| cpos[*i]).collect();
                    let entries = match listings_async(
                        &seller.session,
                        &client,
                        &ids,
                        &mut rng,
                        &mut t,
                    )
                    .await
                    {
                        Ok(entries) => entries,
                        Err(e) => {
                            t.error(e.kind());
                            continue;
                        }
                    };
                    for (i, entry) in batch.into_iter().zip(entries) {
                        attempts += 1;
                        let l = match entry {
                            Ok(l) if !seen_closed(i) => l,
                            Ok(_) => continue,
                            Err(e) => {
                                settle(i, Err(e), &mut t);
                                continue;
                            }
                        };
                        if !limits.reserve(1) {
                            break 'pages;
                        }
                        let r = offer_async(&seller.session, &client, l, &mut rng, &mut t).await;
                        settle(i, r, &mut t);
                    }
                }
            }
            (t, attempts, already, last_bind)
        },
    )?;
    end_sessions(&sellers);
    let (mut attempts, mut already, mut last_bind) = (0, 0, None);
    let tally = merge_all(results.into_iter().map(|(t, a, r, l)| {
        attempts += a;
        already += r;
        last_bind = last_bind.max(l);
        t
    }));
    let start = limits.start.get().copied();
    let to_last_bind = match (start, last_bind) {
        (Some(s), Some(l)) => Some(l.saturating_duration_since(s)),
        _ => None,
    };
    let counts: Vec<u32> = bound.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let invariant = Invariant {
        bound_once: counts.iter().filter(|c| **c == 1).count(),
        unbound: counts.iter().filter(|c| **c == 0).count(),
        refused_without_binder: counts
            .iter()
            .zip(&refused)
            .filter(|(c, r)| **c == 0 && r.load(Ordering::Relaxed))
            .count(),
        violations: violations(&counts)
            .into_iter()
            .map(|(i, c)| (hex::encode(cpos[i]), c))
            .collect(),
    };
    Ok((
        setup,
        Outcome {
            attempts: Some((attempts, already)),
            to_last_bind,
            invariant: Some(invariant),
            ..Outcome::new(tally, wall)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpo_bound_twice_is_a_violation() {
        assert!(violations(&[0, 1, 1, 0]).is_empty());
        assert_eq!(violations(&[1, 2, 0, 3]), vec![(1, 2), (3, 3)]);
        let inv = Invariant {
            bound_once: 1,
            unbound: 1,
            refused_without_binder: 0,
            violations: vec![("ab".into(), 2)],
        };
        assert!(!inv.ok());
        assert_eq!(inv.json()["ok"], false);
        assert_eq!(inv.json()["violations"][0]["bound_cpos"], 2);
    }
}
