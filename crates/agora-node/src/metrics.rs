//! `/metrics`: request counts and latencies by route and status, requests in
//! flight, protocol steps pending, housekeeping runs, the cryptographic
//! operations the process performed by kind (`agora_crypto_operations`,
//! `agora_crypto_bytes`: what the load tool prices its crypto bound from),
//! and the business done ([`Business`]: CPOs posted, bound, awarded and
//! taken down, SPEED purchases and their volume by currency, refusals by
//! problem code), in the Prometheus text format (prometheus-client, the
//! Prometheus project's own Rust crate).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Job {
    service: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CurrencyLabel {
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// The process's counts of cryptographic operations, read at each scrape.
#[derive(Debug)]
struct CryptoOps;

impl Collector for CryptoOps {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let counts = agora_core::crypto::ops::this_process();
        for (name, help, bytes) in [
            (
                "crypto_operations",
                "Cryptographic operations this process performed, by kind",
                false,
            ),
            (
                "crypto_bytes",
                "Bytes the cryptographic operations of each kind processed",
                true,
            ),
        ] {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for (op, calls, n) in counts.iter() {
                let label = OpLabel { op: op.name() };
                let value = if bytes { n } else { calls };
                ConstCounter::new(value).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// The business the node did: each count is taken where its step commits,
/// after the durable write (a step refused, or failing before its commit,
/// counts nothing; one answered again from the store counts once). Cheap
/// to clone: clones share the counts. A service takes the node's
/// (`core.metrics.business`) when the node asks for its routes
/// ([`crate::Service::router`]).
#[derive(Clone, Debug, Default)]
pub struct Business {
    cpos_posted: Counter,
    cpos_bound: Counter,
    cpos_awarded: Counter,
    cpos_taken_down: Counter,
    purchases: Family<CurrencyLabel, Counter>,
    volume_cents: Family<CurrencyLabel, Counter>,
    refusals: Family<CodeLabel, Counter>,
}

impl Business {
    /// A CPO was posted (protocol 2's unit committed).
    pub fn cpo_posted(&self) {
        self.cpos_posted.inc();
    }

    /// A CPO was bound first-come (protocol 4's unit committed).
    pub fn cpo_bound(&self) {
        self.cpos_bound.inc();
    }

    /// A bidding CPO was awarded (the award's unit committed).
    pub fn cpo_awarded(&self) {
        self.cpos_awarded.inc();
    }

    /// `n` CPOs were taken down (their buyers' bonds revoked).
    pub fn cpos_taken_down(&self, n: u64) {
        self.cpos_taken_down.inc_by(n);
    }

    /// A SPEED purchase was paid (its payment recorded in the ledger).
    pub fn purchase(&self, price: agora_core::Money) {
        let label = CurrencyLabel {
            currency: price.currency.as_str().to_owned(),
        };
        self.purchases.get_or_create(&label).inc();
        self.volume_cents.get_or_create(&label).inc_by(price.cents);
    }

    /// A request was refused with a problem document of `code`.
    pub fn refused(&self, code: &str) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cpos_posted",
            "CPOs posted (counted once their posting committed)",
            self.cpos_posted.clone(),
        );
        registry.register(
            "cpos_bound",
            "First-come CPOs bound (counted once the binding committed)",
            self.cpos_bound.clone(),
        );
        registry.register(
            "cpos_awarded",
            "Bidding CPOs awarded (counted once the award committed)",
            self.cpos_awarded.clone(),
        );
        registry.register(
            "cpos_taken_down",
            "CPOs taken down because their buyer's bond was revoked",
            self.cpos_taken_down.clone(),
        );
        registry.register(
            "speed_purchases",
            "SPEED purchases paid, by currency (counted once the payment committed)",
            self.purchases.clone(),
        );
        registry.register(
            "speed_volume_cents",
            "Money paid for SPEED purchases, in cents, by currency",
            self.volume_cents.clone(),
        );
        registry.register(
            "refusals",
            "Requests answered with a problem document, by its code",
            self.refusals.clone(),
        );
    }
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<Route, Histogram>,
    /// Requests being served now.
    pub in_flight: Gauge,
    /// Protocol steps waiting for the client's next message.
    pub pending_steps: Gauge,
    /// Requests refused before routing because the node was full.
    pub shed: Counter,
    /// Requests refused by a client's rate limit.
    pub rate_limited: Counter,
    /// Connections open now.
    pub connections: Gauge,
    /// Connections closed at once because the node or their client had as
    /// many as it may.
    pub connections_refused: Counter,
    /// Request bodies being received now (counted apart from the work).
    pub receiving: Gauge,
    /// Requests ended by a time bound (head, body, upload or work).
    pub timed_out: Counter,
    housekeeping: Family<Job, Counter>,
    /// The business done.
    pub business: Business,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 17,
    ))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("agora");
        let requests = Family::<RouteStatus, Counter>::default();
        let latency =
            Family::<Route, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let in_flight = Gauge::default();
        let pending_steps = Gauge::default();
        let shed = Counter::default();
        let rate_limited = Counter::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let receiving = Gauge::default();
        let timed_out = Counter::default();
        let housekeeping = Family::<Job, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "http_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        registry.register(
            "pending_steps",
            "Protocol steps waiting for the client's next message",
            pending_steps.clone(),
        );
        registry.register(
            "http_shed",
            "Requests answered 503 because the node was full",
            shed.clone(),
        );
        registry.register(
            "http_rate_limited",
            "Requests answered 429 by a client's rate limit",
            rate_limited.clone(),
        );
        registry.register("connections", "TCP connections open", connections.clone());
        registry.register(
            "connections_refused",
            "Connections closed at once: the node's or their client's limit reached",
            connections_refused.clone(),
        );
        registry.register(
            "http_receiving",
            "Request bodies being received (not yet holding a work slot)",
            receiving.clone(),
        );
        registry.register(
            "http_timed_out",
            "Requests ended by a time bound (body, upload or work)",
            timed_out.clone(),
        );
        registry.register(
            "housekeeping_runs",
            "Housekeeping runs by service and outcome",
            housekeeping.clone(),
        );
        let business = Business::default();
        business.register(&mut registry);
        registry.register_collector(Box::new(CryptoOps));
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            pending_steps,
            shed,
            rate_limited,
            connections,
            connections_refused,
            receiving,
            timed_out,
            housekeeping,
            business,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, route: &str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                route: route.to_owned(),
            })
            .observe(secs);
    }

    /// Counts one housekeeping run.
    pub fn housekeeping_ran(&self, service: &str, ok: bool) {
        self.housekeeping
            .get_or_create(&Job {
                service: service.to_owned(),
                outcome: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_observed() {
        let m = Metrics::new();
        m.observe("/v1/cpo/server", 200, 0.002);
        m.observe("/v1/cpo/server", 409, 0.001);
        m.in_flight.set(3);
        let text = m.render();
        assert!(
            text.contains(r#"agora_http_requests_total{route="/v1/cpo/server",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"status="409"} 1"#));
        assert!(text.contains("agora_http_in_flight 3"));
        assert!(text.contains("agora_http_request_duration_seconds_bucket"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn business_is_counted_by_kind_currency_and_code() {
        let m = Metrics::new();
        let text = m.render();
        for zero in [
            "agora_cpos_posted_total 0",
            "agora_cpos_bound_total 0",
            "agora_cpos_awarded_total 0",
            "agora_cpos_taken_down_total 0",
        ] {
            assert!(text.contains(zero), "{zero} before any business: {text}");
        }
        let b = m.business.clone();
        b.cpo_posted();
        b.cpo_posted();
        b.cpos_taken_down(3);
        let eur = agora_core::Currency::new("EUR").expect("EUR");
        b.purchase(agora_core::Money::new(110, eur));
        b.purchase(agora_core::Money::new(50, eur));
        b.refused("replayed");
        let text = m.render();
        assert!(text.contains("agora_cpos_posted_total 2"), "{text}");
        assert!(text.contains("agora_cpos_taken_down_total 3"), "{text}");
        assert!(
            text.contains(r#"agora_speed_purchases_total{currency="EUR"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"agora_speed_volume_cents_total{currency="EUR"} 160"#),
            "{text}"
        );
        assert!(
            text.contains(r#"agora_refusals_total{code="replayed"} 1"#),
            "{text}"
        );
    }
}
