//! Prometheus metrics through the `metrics` crate's types and its Prometheus exporter.
//!
//! Each server owns its recorder (no global one), so several servers in one process (tests,
//! the benchmark) keep separate counts. Served at `GET /metrics`.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What each metric means, for the `# HELP` lines.
const DESCRIPTIONS: [(&str, &str); 14] = [
    (
        "smartpkg_http_requests_total",
        "HTTP requests answered, by route, method and status.",
    ),
    (
        "smartpkg_http_request_duration_seconds",
        "Time to answer an HTTP request, by route.",
    ),
    (
        "smartpkg_jobs_total",
        "Jobs run, by kind and outcome (done, obsolete, retry).",
    ),
    ("smartpkg_push_attempts_total", "Push attempts made."),
    (
        "smartpkg_push_delivered_total",
        "Pushes acknowledged with success.",
    ),
    (
        "smartpkg_push_failed_attempts_total",
        "Push attempts that failed.",
    ),
    (
        "smartpkg_push_gave_up_total",
        "Deliveries marked failed after the last attempt.",
    ),
    (
        "smartpkg_push_target_holds_total",
        "Times a failing push target was put on hold.",
    ),
    ("smartpkg_push_targets_on_hold", "Push targets on hold now."),
    (
        "smartpkg_push_latency_seconds",
        "Time from sending a push to its answer.",
    ),
    (
        "smartpkg_rate_limited_total",
        "Write calls refused by a rate limit, by scope (app, tp).",
    ),
    (
        "smartpkg_janitor_removed_total",
        "Rows the janitor deleted or trimmed, by what.",
    ),
    (
        "smartpkg_owner_credential_failures_total",
        "Wrong owner credentials on the authorization page.",
    ),
    (
        "smartpkg_admin_token_failures_total",
        "Wrong admin tokens presented to the admin API.",
    ),
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        {
            Ok(b) => b,
            // Only an empty bucket list is refused; ours is not empty.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        for (name, help) in DESCRIPTIONS {
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            recorder.describe_counter(KeyName::from(name), unit, help.into());
        }
        let handle = recorder.handle();
        Metrics { recorder, handle }
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&key(name, labels), &META)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &META)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder.register_histogram(&key(name, labels), &META)
    }

    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], d: Duration) {
        self.histogram(name, labels).record(d.as_secs_f64());
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. The exporter keeps raw samples
    /// until then, so without it a server that is never scraped grows without end.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_registries_count_apart_and_render_prometheus_text() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.counter("smartpkg_push_attempts_total", &[]).increment(2);
        b.counter("smartpkg_push_attempts_total", &[]).increment(5);
        a.counter("smartpkg_rate_limited_total", &[("scope", "app")])
            .increment(1);
        a.observe(
            "smartpkg_push_latency_seconds",
            &[],
            Duration::from_millis(3),
        );
        let text = a.render();
        assert!(
            text.lines().any(|l| l == "smartpkg_push_attempts_total 2"),
            "{text}"
        );
        assert!(
            text.contains("smartpkg_rate_limited_total{scope=\"app\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("smartpkg_push_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# HELP smartpkg_push_attempts_total Push attempts made."),
            "{text}"
        );
        assert!(b
            .render()
            .lines()
            .any(|l| l == "smartpkg_push_attempts_total 5"));
    }
}
