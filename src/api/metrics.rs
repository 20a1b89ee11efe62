//! Prometheus metrics in text exposition format, kept in process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    bucket_counts: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    consent_events: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// `route` is the matched pattern (`/v1/patients/{patient_ref}/…`), never
    /// the raw path, so identifiers never become label values.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let stats = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.count += 1;
        stats.sum_seconds += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                stats.bucket_counts[i] += 1;
            }
        }
    }

    pub fn consent_event_recorded(&self, kind: &'static str) {
        if let Ok(mut counts) = self.consent_events.lock() {
            *counts.entry(kind).or_default() += 1;
        }
    }

    pub fn render(&self, now: &Gauges) -> String {
        let (pool_connections, pool_idle) = (now.pool_connections, now.pool_idle);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP genomegate_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE genomegate_http_requests_total counter");
        let routes = self.routes.lock().map(|r| {
            r.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.by_status.clone(),
                        v.bucket_counts,
                        v.count,
                        v.sum_seconds,
                    )
                })
                .collect::<Vec<_>>()
        });
        let routes = routes.unwrap_or_default();
        for ((method, route), by_status, _, _, _) in &routes {
            for (status, n) in by_status {
                let _ = writeln!(out, "genomegate_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP genomegate_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE genomegate_http_request_duration_seconds histogram"
        );
        for ((method, route), _, buckets, count, sum) in &routes {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, n) in BUCKETS.iter().zip(buckets) {
                let _ = writeln!(out, "genomegate_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "genomegate_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "genomegate_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "genomegate_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP genomegate_consent_events_total Consent events recorded by this instance."
        );
        let _ = writeln!(out, "# TYPE genomegate_consent_events_total counter");
        if let Ok(counts) = self.consent_events.lock() {
            for (kind, n) in counts.iter() {
                let _ = writeln!(
                    out,
                    "genomegate_consent_events_total{{kind=\"{kind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP genomegate_db_pool_connections Open database connections."
        );
        let _ = writeln!(out, "# TYPE genomegate_db_pool_connections gauge");
        let _ = writeln!(out, "genomegate_db_pool_connections {pool_connections}");
        let _ = writeln!(
            out,
            "# HELP genomegate_db_pool_idle_connections Idle database connections."
        );
        let _ = writeln!(out, "# TYPE genomegate_db_pool_idle_connections gauge");
        let _ = writeln!(out, "genomegate_db_pool_idle_connections {pool_idle}");
        render_notification_health(&mut out, now);
        out
    }
}

/// Figures read at scrape time, beside the counters kept in process.
pub struct Gauges {
    pub pool_connections: u32,
    pub pool_idle: u32,
    /// `None` when the database could not be read; those gauges are left
    /// out rather than reported as zero.
    pub backlog: Option<crate::db::notify::Backlog>,
    pub worker_panics: Vec<(String, u64)>,
    pub dead_lettered: u64,
}

/// Whether notification keeps its promise: what waits for a receipt, what
/// waits for delivery and for how long, and what failed for good.
fn render_notification_health(out: &mut String, now: &Gauges) {
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(out, "{name}{line}");
        }
    };
    if let Some(b) = now.backlog {
        metric(
            "genomegate_log_entries_awaiting_integration",
            "gauge",
            "Access-log entries appended but not yet given a tree position (no receipt yet).",
            vec![format!(" {}", b.awaiting_integration)],
        );
        metric(
            "genomegate_notification_deliveries_pending",
            "gauge",
            "Webhook and NATS deliveries neither delivered nor dead-lettered.",
            vec![format!(" {}", b.pending_deliveries)],
        );
        metric(
            "genomegate_notification_overdue_seconds",
            "gauge",
            "How long the most overdue pending delivery has been due; grows while no dispatcher runs.",
            vec![format!(" {}", b.overdue_seconds)],
        );
    }
    metric(
        "genomegate_notification_dead_lettered_total",
        "counter",
        "Deliveries this process dead-lettered after notify.max_attempts.",
        vec![format!(" {}", now.dead_lettered)],
    );
    metric(
        "genomegate_worker_panics_total",
        "counter",
        "Background worker panics in this process; each worker is restarted.",
        now.worker_panics
            .iter()
            .map(|(worker, n)| format!("{{worker=\"{worker}\"}} {n}"))
            .collect(),
    );
}
