//! Prometheus metrics: requests by endpoint and status, request latency,
//! cards by rule and indicator, FHIR fallback fetches and failures,
//! authentication failures by reason, the history queue, and knowledge reloads by
//! outcome. Labels are
//! bounded sets (endpoint kinds, rule ids, reasons), never ids or paths.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    /// `cramp_cds_http_requests_total{endpoint,status}`.
    pub requests: IntCounterVec,
    /// `cramp_cds_http_request_duration_seconds{endpoint}`.
    pub latency: HistogramVec,
    /// `cramp_cds_cards_total{rule,indicator}`.
    pub cards: IntCounterVec,
    /// `cramp_cds_fhir_fetches_total{outcome}`.
    pub fhir_fetches: IntCounterVec,
    /// `cramp_cds_auth_failures_total{reason}`.
    pub auth_failures: IntCounterVec,
    /// `cramp_cds_history_queue_depth`.
    pub queue_depth: IntGauge,
    /// `cramp_cds_history_dropped_total` (a counter kept by the queue, exposed as its value).
    pub queue_dropped: IntGauge,
    /// `cramp_cds_history_written_total`.
    pub queue_written: IntGauge,
    /// `cramp_cds_knowledge_reloads_total{outcome}`: `reloaded`, `unchanged`, `refused`,
    /// `built_in`.
    pub knowledge_reloads: IntCounterVec,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "cramp_cds_http_requests_total",
                "HTTP requests by endpoint and status.",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "cramp_cds_http_request_duration_seconds",
                "HTTP request latency by endpoint.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let cards = IntCounterVec::new(
            Opts::new(
                "cramp_cds_cards_total",
                "Cards issued by rule and indicator.",
            ),
            &["rule", "indicator"],
        )
        .expect("valid metric");
        let fhir_fetches = IntCounterVec::new(
            Opts::new(
                "cramp_cds_fhir_fetches_total",
                "Prefetch keys fetched from the EHR's FHIR server, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "cramp_cds_auth_failures_total",
                "Authentication failures by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "cramp_cds_history_queue_depth",
            "Issued cards waiting to be written.",
        )
        .expect("valid metric");
        let queue_dropped = IntGauge::new(
            "cramp_cds_history_dropped_total",
            "Issued cards dropped because the history queue was full.",
        )
        .expect("valid metric");
        let queue_written = IntGauge::new(
            "cramp_cds_history_written_total",
            "Issued cards written to the database.",
        )
        .expect("valid metric");
        let knowledge_reloads = IntCounterVec::new(
            Opts::new(
                "cramp_cds_knowledge_reloads_total",
                "Knowledge reloads (SIGHUP or the admin endpoint) by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(cards.clone()),
            Box::new(fhir_fetches.clone()),
            Box::new(auth_failures.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_dropped.clone()),
            Box::new(queue_written.clone()),
            Box::new(knowledge_reloads.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            requests,
            latency,
            cards,
            fhir_fetches,
            auth_failures,
            queue_depth,
            queue_dropped,
            queue_written,
            knowledge_reloads,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
