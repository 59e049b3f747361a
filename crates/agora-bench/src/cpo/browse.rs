//! `cpo-browse`: setup posts a few CPOs and opens N browse sessions
//! (protocol 3); then N sellers fetch listings of open CPOs under K_p (one
//! round trip each, or a page of them per request); throughput = listings
//! per second.

use super::{board_and_sellers, end_sessions, listing, listings, Env, Seller};
use crate::bound::Window;
use crate::race::{below, race, Limits};
use crate::report::{Outcome, Setup};
use crate::stats::{merge_all, Tally};
use agora_core::crypto::os_rng;

pub(crate) fn run_browse(
    env: &Env,
    n: usize,
    m: usize,
    page: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let (cpos, sellers, setup) = board_and_sellers(env, n, m)?;
    env.say(&format!(
        "measuring: {n} sellers fetching listings of {} CPOs...",
        cpos.len()
    ));
    let cpos = &cpos;
    let (tallies, wall) = race(
        sellers.iter().collect(),
        limits,
        window,
        |_, seller: &Seller| {
            let mut rng = os_rng();
            let mut t = Tally::default();
            while limits.reserve(1) {
                let before = t.requests;
                if page == 1 {
                    let cpo = cpos[below(&mut rng, cpos.len())];
                    match listing(&seller.session, &seller.client, cpo, &mut rng, &mut t) {
                        Ok(_) => t.successes += 1,
                        Err(e) => t.error(e.kind()),
                    }
                } else {
                    // A page: `page` consecutive CPOs of the board from a random
                    // place (distinct as long as the board has that many).
                    let at = below(&mut rng, cpos.len());
                    let ids: Vec<[u8; 32]> = (0..page.min(cpos.len()))
                        .map(|j| cpos[(at + j) % cpos.len()])
                        .collect();
                    match listings(&seller.session, &seller.client, &ids, &mut rng, &mut t) {
                        Ok(entries) => {
                            for e in entries {
                                match e {
                                    Ok(_) => t.successes += 1,
                                    Err(e) => t.error(e.kind()),
                                }
                            }
                        }
                        Err(e) => t.error(e.kind()),
                    }
                }
                limits.release(1 - (t.requests - before).min(1));
            }
            t
        },
    );
    end_sessions(&sellers);
    Ok((setup, Outcome::new(merge_all(tallies), wall)))
}
