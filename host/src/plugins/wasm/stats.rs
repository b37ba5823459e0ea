//! Per-plugin counters. They live in the manager, keyed by plugin name, so
//! they survive reloads and upgrades; every sync's chain adds to them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Ran past its deadline.
    Deadline,
    /// Tried to grow memory past its cap.
    Memory,
    /// Trapped (panic, unreachable, out-of-bounds access, ...).
    Trap,
    /// Returned output the host refuses (wrong length, changed id, too big).
    Fault,
    /// Returned its own `plugin-error`.
    Error,
    /// Could not be instantiated (e.g. the instance pool is exhausted).
    Instantiate,
    /// Stopped because its sync stopped (cancelled or the host shutting
    /// down): not the plugin's fault, so it never counts towards tripping.
    Cancelled,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::Fault => "fault",
            FailureKind::Error => "error",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    calls: AtomicU64,
    call_ns: AtomicU64,
    instantiations: AtomicU64,
    instantiate_ns: AtomicU64,
    messages_in: AtomicU64,
    kept: AtomicU64,
    replaced: AtomicU64,
    dropped: AtomicU64,
    quarantined: AtomicU64,
    skipped_open: AtomicU64,
    chats_skipped: AtomicU64,
    trips: AtomicU64,
    deadline: AtomicU64,
    memory: AtomicU64,
    trap: AtomicU64,
    fault: AtomicU64,
    error: AtomicU64,
    instantiate: AtomicU64,
    cancelled: AtomicU64,
    log_lines: AtomicU64,
    logs_dropped: AtomicU64,
}

impl PluginStats {
    pub fn call(&self, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.call_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }
    pub fn instantiated(&self, took: Duration) {
        self.instantiations.fetch_add(1, Relaxed);
        self.instantiate_ns
            .fetch_add(took.as_nanos() as u64, Relaxed);
    }
    pub fn outcomes(&self, messages_in: u64, kept: u64, replaced: u64, dropped: u64) {
        self.messages_in.fetch_add(messages_in, Relaxed);
        self.kept.fetch_add(kept, Relaxed);
        self.replaced.fetch_add(replaced, Relaxed);
        self.dropped.fetch_add(dropped, Relaxed);
    }
    pub fn quarantined(&self, n: u64) {
        self.quarantined.fetch_add(n, Relaxed);
    }
    pub fn skipped_open(&self, n: u64) {
        self.skipped_open.fetch_add(n, Relaxed);
    }
    pub fn chat_skipped(&self) {
        self.chats_skipped.fetch_add(1, Relaxed);
    }
    pub fn tripped(&self) {
        self.trips.fetch_add(1, Relaxed);
    }
    pub fn failed(&self, kind: FailureKind) {
        let c = match kind {
            FailureKind::Deadline => &self.deadline,
            FailureKind::Memory => &self.memory,
            FailureKind::Trap => &self.trap,
            FailureKind::Fault => &self.fault,
            FailureKind::Error => &self.error,
            FailureKind::Instantiate => &self.instantiate,
            FailureKind::Cancelled => &self.cancelled,
        };
        c.fetch_add(1, Relaxed);
    }
    pub fn log_line(&self) {
        self.log_lines.fetch_add(1, Relaxed);
    }
    pub fn logs_dropped(&self, n: u64) {
        self.logs_dropped.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self, name: &str) -> PluginCounters {
        let l = |a: &AtomicU64| a.load(Relaxed);
        PluginCounters {
            plugin: name.to_owned(),
            calls: l(&self.calls),
            call_seconds: l(&self.call_ns) as f64 / 1e9,
            instantiations: l(&self.instantiations),
            instantiate_seconds: l(&self.instantiate_ns) as f64 / 1e9,
            messages_in: l(&self.messages_in),
            kept: l(&self.kept),
            replaced: l(&self.replaced),
            dropped: l(&self.dropped),
            quarantined: l(&self.quarantined),
            skipped_fail_open: l(&self.skipped_open),
            chats_skipped: l(&self.chats_skipped),
            trips: l(&self.trips),
            cancelled_calls: l(&self.cancelled),
            log_lines: l(&self.log_lines),
            logs_dropped: l(&self.logs_dropped),
            failures: Failures {
                deadline: l(&self.deadline),
                memory: l(&self.memory),
                trap: l(&self.trap),
                fault: l(&self.fault),
                error: l(&self.error),
                instantiate: l(&self.instantiate),
            },
        }
    }
}

/// Failures of one plugin by kind (see [`FailureKind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Failures {
    pub deadline: u64,
    pub memory: u64,
    pub trap: u64,
    pub fault: u64,
    pub error: u64,
    pub instantiate: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.deadline + self.memory + self.trap + self.fault + self.error + self.instantiate
    }
}

/// A plugin's counters since the process started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginCounters {
    pub plugin: String,
    /// Guest calls (batches and hooks).
    pub calls: u64,
    /// Wall time spent inside guest calls.
    pub call_seconds: f64,
    pub instantiations: u64,
    pub instantiate_seconds: f64,
    /// Messages handed to the plugin.
    pub messages_in: u64,
    pub kept: u64,
    pub replaced: u64,
    pub dropped: u64,
    /// Messages sent to quarantine because of this plugin (fail-closed).
    pub quarantined: u64,
    /// Messages stored unvetted because of this plugin (fail-open).
    pub skipped_fail_open: u64,
    /// Chats this plugin's hook skipped.
    pub chats_skipped: u64,
    /// Syncs in which the plugin was tripped off.
    pub trips: u64,
    /// Calls stopped (or not made) because their sync stopped; not failures.
    pub cancelled_calls: u64,
    /// Lines the plugin wrote to the host log (`log`, stdout, stderr).
    pub log_lines: u64,
    /// Lines over the per-call log budget, counted and not written.
    pub logs_dropped: u64,
    pub failures: Failures,
}

/// Renders counters in the Prometheus text format (`wasync_plugin_*`).
pub fn render_prometheus(counters: &[PluginCounters]) -> String {
    let mut out = String::new();
    let metric = |out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let per = |f: &dyn Fn(&PluginCounters) -> f64| -> Vec<(String, f64)> {
        counters
            .iter()
            .map(|c| (format!("plugin=\"{}\"", c.plugin), f(c)))
            .collect()
    };
    metric(
        &mut out,
        "wasync_plugin_calls_total",
        "counter",
        "Guest calls.",
        &per(&|c| c.calls as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_call_seconds_total",
        "counter",
        "Time inside guest calls.",
        &per(&|c| c.call_seconds),
    );
    metric(
        &mut out,
        "wasync_plugin_instantiations_total",
        "counter",
        "Instances created.",
        &per(&|c| c.instantiations as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_instantiate_seconds_total",
        "counter",
        "Time spent instantiating.",
        &per(&|c| c.instantiate_seconds),
    );
    metric(
        &mut out,
        "wasync_plugin_messages_in_total",
        "counter",
        "Messages handed to the plugin.",
        &per(&|c| c.messages_in as f64),
    );
    let mut outcomes = Vec::new();
    for c in counters {
        for (o, v) in [
            ("keep", c.kept),
            ("replace", c.replaced),
            ("drop", c.dropped),
            ("quarantine", c.quarantined),
            ("skipped_fail_open", c.skipped_fail_open),
        ] {
            outcomes.push((format!("plugin=\"{}\",outcome=\"{o}\"", c.plugin), v as f64));
        }
    }
    metric(
        &mut out,
        "wasync_plugin_messages_total",
        "counter",
        "Messages by outcome.",
        &outcomes,
    );
    let mut failures = Vec::new();
    for c in counters {
        let f = c.failures;
        for (k, v) in [
            ("deadline", f.deadline),
            ("memory", f.memory),
            ("trap", f.trap),
            ("fault", f.fault),
            ("error", f.error),
            ("instantiate", f.instantiate),
        ] {
            failures.push((format!("plugin=\"{}\",kind=\"{k}\"", c.plugin), v as f64));
        }
    }
    metric(
        &mut out,
        "wasync_plugin_failures_total",
        "counter",
        "Failed calls by kind.",
        &failures,
    );
    metric(
        &mut out,
        "wasync_plugin_chats_skipped_total",
        "counter",
        "Chats a hook skipped.",
        &per(&|c| c.chats_skipped as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_log_lines_total",
        "counter",
        "Lines written to the host log (log, stdout, stderr).",
        &per(&|c| c.log_lines as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_logs_dropped_total",
        "counter",
        "Log lines over the per-call budget, not written.",
        &per(&|c| c.logs_dropped as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_cancelled_calls_total",
        "counter",
        "Calls stopped because their sync stopped.",
        &per(&|c| c.cancelled_calls as f64),
    );
    metric(
        &mut out,
        "wasync_plugin_trips_total",
        "counter",
        "Syncs in which the plugin was tripped off.",
        &per(&|c| c.trips as f64),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_labels_per_plugin_and_kind() {
        let s = PluginStats::default();
        s.call(Duration::from_millis(2));
        s.failed(FailureKind::Deadline);
        s.outcomes(3, 1, 1, 1);
        s.logs_dropped(7);
        s.failed(FailureKind::Cancelled);
        let text = render_prometheus(&[s.snapshot("p")]);
        assert!(
            text.contains("wasync_plugin_calls_total{plugin=\"p\"} 1"),
            "{text}"
        );
        assert!(text.contains("wasync_plugin_failures_total{plugin=\"p\",kind=\"deadline\"} 1"));
        assert!(text.contains("wasync_plugin_messages_total{plugin=\"p\",outcome=\"drop\"} 1"));
        assert!(text.contains("wasync_plugin_logs_dropped_total{plugin=\"p\"} 7"));
        assert!(text.contains("wasync_plugin_cancelled_calls_total{plugin=\"p\"} 1"));
        // A cancelled call is not the plugin's failure.
        assert_eq!(s.snapshot("p").failures.total(), 1);
    }
}
