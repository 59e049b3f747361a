//! What a run did and found, as text for a person and JSON for tools.

use crate::bound::CryptoBound;
use crate::cpo::bind::Invariant;
use crate::speed::{SpeedOutcome, SPEED_PRODUCT};
use crate::stats::{per_sec, ratio, Percentiles, Tally};
use crate::stp::StpOutcome;
use crate::Scenario;
use std::time::Duration;

/// What the setup did (not measured).
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub(crate) secs: f64,
    /// CPOs posted, and in how long.
    pub(crate) cpos: Option<(usize, f64)>,
    /// Browse sessions opened, and in how long.
    pub(crate) sessions: Option<(usize, f64)>,
    /// SPEED customers registered, and in how long.
    pub(crate) customers: Option<(usize, f64)>,
    /// STP parties registered, and in how long.
    pub(crate) parties: Option<(usize, f64)>,
}

/// What the measured phase gave.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    pub(crate) wall: Duration,
    /// cpo-bind: CPOs tried (listing requests), and how many of them were
    /// already bound (at the listing or at the offer).
    pub(crate) attempts: Option<(u64, u64)>,
    /// cpo-bind: from the start to the last BOUND_CPO (the wall time adds
    /// the requests in flight then, or, when the limits stop the race
    /// first, nothing).
    pub(crate) to_last_bind: Option<Duration>,
    pub(crate) invariant: Option<Invariant>,
    /// speed-*: the product, the deposits and the money check.
    pub(crate) speed: Option<SpeedOutcome>,
    /// stp-*: the transactions prepared and the outcomes' check.
    pub(crate) stp: Option<StpOutcome>,
}

impl Outcome {
    /// What `tally` counted in `wall`, nothing scenario-specific.
    pub(crate) fn new(tally: Tally, wall: Duration) -> Outcome {
        Outcome {
            tally,
            wall,
            attempts: None,
            to_last_bind: None,
            invariant: None,
            speed: None,
            stp: None,
        }
    }
}

/// Everything a run prints: [`Report::text`] for a person,
/// [`Report::json`] for tools, and [`Report::alarms`], the broken rules
/// (a CPO bound twice, money unaccounted for) that must fail the run.
#[derive(Debug)]
pub struct Report {
    pub(crate) scenario: Scenario,
    pub(crate) url: String,
    pub(crate) concurrency: usize,
    pub(crate) cpos: usize,
    /// CPOs per listings request (cpo-browse, cpo-bind; 0 elsewhere).
    pub(crate) page: usize,
    pub(crate) requests_limit: u64,
    pub(crate) duration_limit: u64,
    pub(crate) stopped_by: &'static str,
    pub(crate) setup: Setup,
    pub(crate) outcome: Outcome,
    pub(crate) crypto: CryptoBound,
    pub(crate) crypto_what: String,
}

impl Report {
    pub(crate) fn wall_secs(&self) -> f64 {
        self.outcome.wall.as_secs_f64()
    }

    pub(crate) fn throughput(&self) -> f64 {
        per_sec(self.outcome.tally.successes, self.wall_secs())
    }

    pub(crate) fn unit_per_sec(&self) -> String {
        match self.scenario {
            Scenario::Post => "posted CPOs/s".into(),
            Scenario::Browse => "listings/s".into(),
            Scenario::Bind => "binds/s".into(),
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchases/s".into(),
            Scenario::StpCa | Scenario::StpE2e => "committed transactions/s".into(),
        }
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let t = &self.outcome.tally;
        let wall = self.wall_secs();
        let latency: serde_json::Map<String, serde_json::Value> = t
            .steps
            .iter()
            .map(|(k, h)| (k.clone(), Percentiles::of(h).json()))
            .collect();
        let mut setup = serde_json::json!({ "secs": self.setup.secs });
        if let Some((n, secs)) = self.setup.cpos {
            setup["cpos_posted"] = n.into();
            setup["cpos_secs"] = secs.into();
            setup["cpos_per_sec"] = per_sec(n as u64, secs).into();
        }
        if let Some((n, secs)) = self.setup.sessions {
            setup["sessions_opened"] = n.into();
            setup["sessions_secs"] = secs.into();
            setup["sessions_per_sec"] = per_sec(n as u64, secs).into();
        }
        if let Some((n, secs)) = self.setup.customers {
            setup["customers_registered"] = n.into();
            setup["customers_secs"] = secs.into();
        }
        if let Some((n, secs)) = self.setup.parties {
            setup["parties_registered"] = n.into();
            setup["parties_secs"] = secs.into();
        }
        if let Some((n, secs)) = self.outcome.stp.as_ref().and_then(|o| o.prepared) {
            setup["transactions_prepared"] = n.into();
            setup["transactions_secs"] = secs.into();
        }
        let mut v = serde_json::json!({
            "scenario": self.scenario.name(),
            "node": self.url,
            "concurrency": self.concurrency,
            "cpos": self.cpos,
            "page": self.page,
            "limits": { "requests": self.requests_limit, "duration_secs": self.duration_limit },
            "stopped_by": self.stopped_by,
            "setup": setup,
            "wall_secs": wall,
            "requests": t.requests,
            "requests_per_sec": per_sec(t.requests, wall),
            "successes": t.successes,
            "unit": self.scenario.unit(),
            "throughput": self.throughput(),
            "throughput_unit": self.unit_per_sec(),
            "errors": t.errors,
            "errors_total": t.error_count(),
            "latency": latency,
            "crypto_bound": self.crypto.json(self.throughput(), &self.crypto_what),
            "invariant": self.outcome.invariant.as_ref().map(Invariant::json),
        });
        if let Some((attempts, already)) = self.outcome.attempts {
            v["attempts"] = attempts.into();
            v["attempts_per_sec"] = per_sec(attempts, wall).into();
            v["already_bound"] = already.into();
        }
        if let Some(d) = self.outcome.to_last_bind {
            let secs = d.as_secs_f64();
            v["to_last_bind_secs"] = secs.into();
            v["binds_per_sec_to_last_bind"] = per_sec(t.successes, secs).into();
        }
        if let Some(sp) = &self.outcome.speed {
            v["speed"] = serde_json::json!({
                "mode": sp.mode.name(),
                "payment": "account",
                "product_id": SPEED_PRODUCT,
                "product_bytes": sp.product_bytes,
                "price": sp.price.to_string(),
                "deposit_per_customer_cents": sp.deposit_cents,
                "products_checked": t.successes,
            });
            v["money"] = sp.money.json();
        }
        if let Some(o) = &self.outcome.stp {
            v["stp"] = o.json(t.successes);
        }
        v
    }

    /// The report for a person.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let t = &self.outcome.tally;
        let wall = self.wall_secs();
        let mut s = String::new();
        let who = match self.scenario {
            Scenario::Post => "buyers",
            Scenario::Browse | Scenario::Bind => "sellers",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "customers",
            Scenario::StpCa => "connections",
            Scenario::StpE2e => "pairs of parties",
        };
        let _ = write!(
            s,
            "agora bench {} at {}: {} {who}",
            self.scenario.name(),
            self.url,
            self.concurrency
        );
        if self.cpos > 0 {
            let _ = write!(s, ", {} CPOs", self.cpos);
        }
        if self.page > 1 {
            let _ = write!(s, ", listings {} per request", self.page);
        }
        let mut setup = Vec::new();
        if let Some((n, secs)) = self.setup.cpos {
            setup.push(format!("{n} CPOs posted in {secs:.2} s"));
        }
        if let Some((n, secs)) = self.setup.sessions {
            setup.push(format!(
                "{n} sessions opened in {secs:.2} s ({:.1} sessions/s)",
                per_sec(n as u64, secs)
            ));
        }
        if let Some((n, secs)) = self.setup.customers {
            let each = self
                .outcome
                .speed
                .as_ref()
                .map_or(0.0, |sp| sp.deposit_cents as f64 / 100.0);
            setup.push(format!(
                "{n} customers registered in {secs:.2} s (certificate, account, {each:.2} EUR deposit each)"
            ));
        }
        if let Some((n, secs)) = self.setup.parties {
            setup.push(format!(
                "{n} parties registered in {secs:.2} s (identity certificates)"
            ));
        }
        if let Some((n, secs)) = self.outcome.stp.as_ref().and_then(|o| o.prepared) {
            setup.push(format!(
                "{n} transactions' votes and decisions signed in {secs:.2} s"
            ));
        }
        if setup.is_empty() {
            setup.push("parties bonded, connections opened".into());
        }
        let _ = writeln!(
            s,
            "\n  setup        {}; {:.2} s, not measured",
            setup.join("; "),
            self.setup.secs
        );
        let _ = writeln!(
            s,
            "  wall time    {wall:.3} s (stopped by: {}; limits {} requests, {} s)",
            self.stopped_by, self.requests_limit, self.duration_limit
        );
        let _ = writeln!(
            s,
            "  requests     {} ({:.1}/s)",
            t.requests,
            per_sec(t.requests, wall)
        );
        let _ = writeln!(s, "  successes    {} {}", t.successes, self.scenario.unit());
        let _ = writeln!(
            s,
            "  throughput   {:.1} {}",
            self.throughput(),
            self.unit_per_sec()
        );
        if let Some((attempts, already)) = self.outcome.attempts {
            let _ = writeln!(
                s,
                "  attempts     {attempts} ({:.1}/s); already bound {already}",
                per_sec(attempts, wall)
            );
        }
        if let Some(d) = self.outcome.to_last_bind {
            let _ = writeln!(
                s,
                "  last bind    at {:.3} s ({:.1} binds/s up to it)",
                d.as_secs_f64(),
                per_sec(t.successes, d.as_secs_f64())
            );
        }
        if t.errors.is_empty() {
            let _ = writeln!(s, "  errors       none");
        } else {
            let list: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(s, "  errors       {}", list.join(", "));
        }
        let _ = writeln!(
            s,
            "  latency µs   {:<18} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "step", "count", "p50", "p99", "p99.9", "max"
        );
        for (k, h) in &t.steps {
            let p = Percentiles::of(h);
            let _ = writeln!(
                s,
                "               {k:<18} {:>8} {:>8} {:>8} {:>8} {:>8}",
                p.count, p.p50, p.p99, p.p999, p.max
            );
        }
        let c = &self.crypto;
        let one = match self.scenario {
            Scenario::Post => "CPO",
            Scenario::Browse => "listing",
            Scenario::Bind => "bind",
            Scenario::SpeedNormal | Scenario::SpeedAggressive => "purchase",
            Scenario::StpCa | Scenario::StpE2e => "transaction",
        };
        let fmt_ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.3}"));
        let _ = writeln!(
            s,
            "  crypto bound client+server (the clients share the node's cores): {:.1} µs per {one} \
             (client {:.1}, server {:.1}),\n               {:.0}/s on one core x {} cores = {:.0}/s; \
             throughput / bound = {}",
            c.client_us() + c.server_us(),
            c.client_us(),
            c.server_us(),
            c.per_core(false),
            c.cores,
            c.bound(false),
            fmt_ratio(ratio(self.throughput(), c.bound(false)))
        );
        let _ = writeln!(
            s,
            "               server only: {:.0}/s on one core x {} = {:.0}/s; throughput / bound = {}",
            c.per_core(true),
            c.cores,
            c.bound(true),
            fmt_ratio(ratio(self.throughput(), c.bound(true)))
        );
        let _ = writeln!(s, "               per {one}: {}", c.per_unit_text());
        let _ = writeln!(s, "               ({})", self.crypto_what);
        if let Some(sp) = &self.outcome.speed {
            let m = &sp.money;
            let _ = writeln!(
                s,
                "  product      {SPEED_PRODUCT:?}, {} bytes at {}, {} mode, paid from the account; \
                 {} products decrypted and checked",
                sp.product_bytes,
                sp.price,
                sp.mode.name(),
                t.successes
            );
            let _ = writeln!(
                s,
                "  money        {}: vendor +{:.2} EUR for {} purchases paid at {} (expected +{:.2} EUR; \
                 {} completed, {} paid without completing); customers spent {:.2} EUR;\n               \
                 ledger total {} before, {} after; {:.2} EUR left on the customers' accounts went \
                 back to the cash account",
                if m.ok() { "ok" } else { "VIOLATED" },
                m.vendor_gain() as f64 / 100.0,
                m.completed + m.paid_not_completed,
                sp.price,
                m.expected_gain() as f64 / 100.0,
                m.completed,
                m.paid_not_completed,
                m.customers_spent as f64 / 100.0,
                m.total_before,
                m.total_after,
                m.paid_out as f64 / 100.0
            );
        }
        if let Some(o) = &self.outcome.stp {
            let _ = writeln!(s, "{}", o.text(t.successes));
        }
        if let Some(inv) = &self.outcome.invariant {
            if inv.ok() {
                let _ = write!(
                    s,
                    "  invariant    ok: {} CPOs bound by exactly one seller, {} unbound, none twice",
                    inv.bound_once, inv.unbound
                );
            } else {
                let _ = write!(
                    s,
                    "  invariant    VIOLATED: {} CPOs bound more than once",
                    inv.violations.len()
                );
            }
            if inv.refused_without_binder > 0 {
                let _ = write!(
                    s,
                    "\n               {} CPOs refused as already bound with no BOUND_CPO in the bench \
                     (a reply lost after the commit?)",
                    inv.refused_without_binder
                );
            }
        }
        s.trim_end().to_owned()
    }
}

impl Report {
    /// The rules the run found broken, loudly worded: each CPO bound at
    /// most once, every cent of the SPEED purchases accounted for. Any is
    /// a failed run (the CLI exits non-zero).
    pub fn alarms(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(inv) = self.outcome.invariant.as_ref().filter(|i| !i.ok()) {
            out.push(format!(
                "!!! INVARIANT VIOLATED: {} CPOs were bound by more than one seller \
                 (each CPO must be bound at most once) !!!",
                inv.violations.len()
            ));
            for (id, count) in &inv.violations {
                out.push(format!("!!!   CPO {id}: {count} BOUND_CPOs"));
            }
        }
        if let Some(c) = self
            .outcome
            .stp
            .as_ref()
            .map(|o| &o.check)
            .filter(|c| !c.ok())
        {
            out.push(format!(
                "!!! STP OUTCOME CHECK FAILED: {} outcomes the commit authority answered do not \
                 verify (the pinned CA's signed tree head, the inclusion proof, this \
                 transaction, committed) !!!",
                c.failed
            ));
        }
        if let Some(m) = self
            .outcome
            .speed
            .as_ref()
            .map(|sp| &sp.money)
            .filter(|m| !m.ok())
        {
            out.push(format!(
                "!!! MONEY CHECK FAILED: ledger total {} before and {} after (must be 0); the \
                 vendor gained {} cents for {} purchases paid at {} cents (expected {}); the \
                 customers spent {} cents !!!",
                m.total_before,
                m.total_after,
                m.vendor_gain(),
                m.completed + m.paid_not_completed,
                m.price_cents,
                m.expected_gain(),
                m.customers_spent
            ));
        }
        out
    }
}
