//! `/metrics`: request counts and latencies by route and status, requests in
//! flight, protocol steps pending, housekeeping runs, and the cryptographic
//! operations the process performed by kind (`agora_crypto_operations`,
//! `agora_crypto_bytes`: what the load tool prices its crypto bound from),
//! in the Prometheus text format (prometheus-client, the Prometheus
//! project's own Rust crate).

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
}
