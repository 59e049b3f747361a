//! What a run counts: requests, successes, errors by kind, latency per
//! protocol step, and the rates and percentiles made of them.

use agora_client::cpo::FlowError;
use agora_client::transport::ClientError;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency histograms: 1 µs to 1 hour, 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;

/// `count` per second over `secs` (0 when no time passed).
pub(crate) fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// `a / b`, or `None` when `b` is not positive.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant, valid histogram bounds")
}

/// Count, p50, p99, p99.9 and max of a latency histogram, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_us": self.p50,
            "p99_us": self.p99,
            "p999_us": self.p999,
            "max_us": self.max,
        })
    }
}

/// Whether a refusal's text says the CPO was bound already (the race the
/// cpo-bind scenario expects), rather than something else.
pub(crate) fn says_already_bound(why: &str) -> bool {
    why.contains("already bound")
}

/// The error kind of a node's refusal: its problem code, except that a
/// refusal because the CPO is already bound (the expected loss of a bind
/// race) is `already-bound`.
fn node_error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Problem(p)
            if p.code == "refused" && p.detail.as_deref().is_some_and(says_already_bound) =>
        {
            "already-bound".into()
        }
        ClientError::Problem(p) => p.code.clone(),
        ClientError::Transport(_) => "transport".into(),
    }
}

/// Why an operation failed: the node refused or could not be reached, or
/// the client refused the node's answer, or the bench's own check of a
/// SPEED purchase failed (`kind` is the error's code in the report).
#[derive(Debug)]
pub(crate) enum OpError {
    Node(ClientError),
    Client(agora_core::Error),
    Check {
        kind: &'static str,
        what: &'static str,
    },
}

impl From<ClientError> for OpError {
    fn from(e: ClientError) -> OpError {
        OpError::Node(e)
    }
}

impl From<agora_core::Error> for OpError {
    fn from(e: agora_core::Error) -> OpError {
        OpError::Client(e)
    }
}

impl From<agora_core::DecodeError> for OpError {
    fn from(e: agora_core::DecodeError) -> OpError {
        OpError::Client(e.into())
    }
}

impl OpError {
    pub(crate) fn kind(&self) -> String {
        match self {
            OpError::Node(e) => node_error_kind(e),
            OpError::Client(e) => format!("client-{}", e.code()),
            OpError::Check { kind, .. } => (*kind).to_owned(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Node(e) => write!(f, "the node: {e}"),
            OpError::Client(e) => write!(f, "the client refused the node's answer: {e}"),
            OpError::Check { what, .. } => write!(f, "the bench's check failed: {what}"),
        }
    }
}

/// What one worker saw: requests sent, errors by kind, latency per step.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) successes: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Latency (µs) by step; a failed round trip under `<step>:error`.
    pub(crate) steps: BTreeMap<String, Histogram<u64>>,
}

impl Tally {
    pub(crate) fn record(&mut self, step: &str, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = self.steps.get_mut(step) {
            h.saturating_record(us);
        } else {
            let mut h = new_histogram();
            h.saturating_record(us);
            self.steps.insert(step.to_owned(), h);
        }
    }

    pub(crate) fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// One timed request's outcome, under `step` or `<step>:error`.
    pub(crate) fn took<T, E>(&mut self, step: &str, d: Duration, r: &Result<T, E>) {
        self.requests += 1;
        match r {
            Ok(_) => self.record(step, d),
            Err(_) => self.record(&format!("{step}:error"), d),
        }
    }
}

impl From<FlowError> for OpError {
    fn from(e: FlowError) -> OpError {
        match e {
            FlowError::Node(e) => OpError::Node(e),
            FlowError::Protocol(e) => OpError::Client(e),
        }
    }
}

impl Tally {
    pub(crate) fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.successes += other.successes;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, h) in other.steps {
            match self.steps.get_mut(&k) {
                // Same bounds on both sides: adding cannot fail.
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    self.steps.insert(k, h);
                }
            }
        }
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The cryptography of one operation measured on one core: `ops`
/// operations took `client_secs` of client work and `server_secs` of
/// server work.
pub(crate) fn merge_all(tallies: impl IntoIterator<Item = Tally>) -> Tally {
    let mut all = Tally::default();
    for t in tallies {
        all.merge(t);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_sec(500, 2.0), 250.0);
        assert_eq!(per_sec(500, 0.0), 0.0);
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn percentiles_and_merging() {
        let mut a = Tally::default();
        for us in 1..=1000u64 {
            a.record("listing", Duration::from_micros(us));
        }
        a.requests = 1000;
        a.successes = 990;
        a.error("already-bound".into());
        let mut b = Tally::default();
        b.record("listing", Duration::from_micros(100_000));
        b.record("offer", Duration::from_micros(50));
        b.requests = 2;
        b.error("already-bound".into());
        b.error("replayed".into());
        a.merge(b);
        assert_eq!(a.requests, 1002);
        assert_eq!(a.successes, 990);
        assert_eq!(a.errors["already-bound"], 2);
        assert_eq!(a.error_count(), 3);
        let p = Percentiles::of(&a.steps["listing"]);
        assert_eq!(p.count, 1001);
        // 3 significant digits: within 0.1 %.
        assert!((499..=501).contains(&p.p50), "{p:?}");
        assert!((989..=992).contains(&p.p99), "{p:?}");
        assert!(p.p999 >= 999, "{p:?}");
        assert!((99_900..=100_100).contains(&p.max), "{p:?}");
        assert_eq!(Percentiles::of(&a.steps["offer"]).count, 1);
        // Sub-microsecond round trips count as 1 µs, never as nothing.
        let mut c = Tally::default();
        c.record("x", Duration::from_nanos(10));
        assert_eq!(Percentiles::of(&c.steps["x"]).p50, 1);
    }

    #[test]
    fn errors_are_classified_by_code() {
        use agora_client::transport::ProblemDoc;
        let problem = |code: &str, detail: Option<&str>| {
            ClientError::Problem(ProblemDoc {
                status: 409,
                code: code.into(),
                detail: detail.map(str::to_owned),
            })
        };
        assert_eq!(
            node_error_kind(&problem("refused", Some("this CPO is already bound"))),
            "already-bound"
        );
        assert_eq!(
            node_error_kind(&problem("refused", Some("this CPO was taken down"))),
            "refused"
        );
        assert_eq!(node_error_kind(&problem("replayed", None)), "replayed");
        assert_eq!(
            node_error_kind(&ClientError::Transport("down".into())),
            "transport"
        );
        assert_eq!(
            OpError::Client(agora_core::Error::Crypto).kind(),
            "client-crypto"
        );
    }
}
