//! `cpo-post`: N buyers each run approval (protocol 1, two round trips to
//! the arbiter) and posting (protocol 2, two round trips to the server)
//! over and over; throughput = CPOs posted per second.

use super::{post_once, Env, Party};
use crate::bound::Window;
use crate::race::{race, Limits};
use crate::report::{Outcome, Setup};
use crate::stats::{merge_all, Tally};
use crate::{warm_clients_at, Scenario};
use agora_client::transport::NodeClient;
use agora_core::crypto::os_rng;
use std::time::Instant;

pub(crate) fn run_post(
    env: &Env,
    n: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let buyers = env.parties(agora_pki::Role::Buyer, n)?;
    let clients = warm_clients_at(&env.client, &env.url, n)?;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} buyers approving and posting CPOs..."
    ));
    let per_op = Scenario::Post.requests_per_op();
    let workers: Vec<(Party, NodeClient)> = buyers.into_iter().zip(clients).collect();
    let (tallies, wall) = race(workers, limits, window, |_, (bob, client)| {
        let mut rng = os_rng();
        let mut t = Tally::default();
        while limits.reserve(per_op) {
            let before = t.requests;
            match post_once(env, &client, &bob, &mut rng, &mut t) {
                Ok(_) => t.successes += 1,
                Err(e) => t.error(e.kind()),
            }
            limits.release(per_op - (t.requests - before).min(per_op));
        }
        t
    });
    Ok((setup, Outcome::new(merge_all(tallies), wall)))
}
