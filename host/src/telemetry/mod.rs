//! Logs and metrics.
//!
//! Logs: `tracing`, human-readable by default, JSON with
//! `WASYNC_LOG_FORMAT=json`; spans are named `subsystem.operation` and carry
//! `session_id` / `sync_id`. Metrics: one [`Metrics`] registry, rendered in
//! the Prometheus text format at `/metrics`. Counters are bumped where things
//! happen; gauges that describe current state (sessions by status, clients,
//! outbox depth) are read at scrape time, so they can never drift.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::LogConfig;

/// Installs the global log subscriber (call once, from `main`).
pub fn init_logging(config: &LogConfig) {
    let filter = config
        .filter
        .clone()
        .unwrap_or_else(|| "info,hyper=warn,tokio_tungstenite=warn,tungstenite=warn,socketioxide=warn,engineioxide=warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("wasync: RUST_LOG={filter:?} is not a valid filter ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// `status` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

/// `transport` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: String,
}

/// `outcome` label: of a webhook delivery attempt (`delivered`, `failed`,
/// `dead`) or of a message write (`inserted`, `updated`, `unchanged`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// `plugin` (+ `kind`) labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    pub plugin: String,
    pub kind: String,
}

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    pub sessions: Family<StatusLabel, Gauge>,
    pub syncs_started: Counter,
    pub syncs_completed: Counter,
    pub syncs_failed: Family<StatusLabel, Counter>,
    pub sync_duration: Histogram,
    pub messages_synced: Counter,
    /// Messages sync commits handed to the store, by what the store did
    /// with each: an unchanged account's incremental re-sync moves none.
    pub sync_message_writes: Family<OutcomeLabel, Counter>,
    /// Message changes after the sync (edits, revokes, acks, reactions),
    /// by what the store did: `applied`, `unchanged` (known already, or
    /// older than what is stored), `pending` (its message not stored yet).
    pub message_changes: Family<OutcomeLabel, Counter>,
    pub live_messages: Counter,
    pub clients: Family<TransportLabel, Gauge>,
    pub outbox_pending: Gauge,
    pub outbox_published: Counter,
    pub outbox_failures: Counter,
    pub http_requests: Family<StatusLabel, Counter>,
    pub plugin_calls: Family<PluginLabel, Counter>,
    pub plugin_failures: Family<PluginLabel, Counter>,
    pub plugin_seconds: Family<PluginLabel, Counter<f64>>,
    /// Live messages kept in the spool while the store was unreachable.
    pub live_messages_spooled: Counter,
    /// Live messages lost: the store unreachable and the spool full.
    pub live_messages_dropped: Counter,
    /// Session actor tasks running on this host (one per running session;
    /// never two for one session).
    pub session_actors: Gauge,
    /// Session leases this host holds.
    pub leases_held: Gauge,
    /// Sessions this host took over from another (dead or cut-off) host.
    pub takeovers: Counter,
    /// Leases this host lost (not renewed in time, or taken over).
    pub leases_lost: Counter,
    /// Requests passed to the session's owner on another host.
    pub forwarded_requests: Counter,
    /// Live session events published to the other hosts.
    pub cluster_events_out: Counter,
    /// Live session events received from other hosts for local clients.
    pub cluster_events_in: Counter,
    /// Webhook delivery attempts by outcome (`delivered`, `failed`: to be
    /// retried, `dead`: retried for the whole window).
    pub webhook_deliveries: Family<OutcomeLabel, Counter>,
    /// Time of one webhook delivery attempt (connect to answer).
    pub webhook_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasync");
        let m = Metrics {
            registry: Registry::default(),
            sessions: Family::default(),
            syncs_started: Counter::default(),
            syncs_completed: Counter::default(),
            syncs_failed: Family::default(),
            sync_duration: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ]),
            messages_synced: Counter::default(),
            sync_message_writes: Family::default(),
            message_changes: Family::default(),
            live_messages: Counter::default(),
            clients: Family::default(),
            outbox_pending: Gauge::default(),
            outbox_published: Counter::default(),
            outbox_failures: Counter::default(),
            http_requests: Family::default(),
            plugin_calls: Family::default(),
            plugin_failures: Family::default(),
            plugin_seconds: Family::default(),
            session_actors: Gauge::default(),
            live_messages_spooled: Counter::default(),
            live_messages_dropped: Counter::default(),
            leases_held: Gauge::default(),
            takeovers: Counter::default(),
            leases_lost: Counter::default(),
            forwarded_requests: Counter::default(),
            cluster_events_out: Counter::default(),
            cluster_events_in: Counter::default(),
            webhook_deliveries: Family::default(),
            webhook_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        };
        registry.register("sessions", "Live sessions by status", m.sessions.clone());
        registry.register(
            "syncs_started",
            "Sync runs started",
            m.syncs_started.clone(),
        );
        registry.register(
            "syncs_completed",
            "Sync runs completed",
            m.syncs_completed.clone(),
        );
        registry.register(
            "syncs_failed",
            "Sync runs that ended without completing, by status (failed, cancelled)",
            m.syncs_failed.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of completed sync runs",
            m.sync_duration.clone(),
        );
        registry.register(
            "messages_synced",
            "Messages written by syncs",
            m.messages_synced.clone(),
        );
        registry.register(
            "sync_message_writes",
            "Messages sync commits wrote, by outcome (inserted, updated, unchanged)",
            m.sync_message_writes.clone(),
        );
        registry.register(
            "message_changes",
            "Message changes after the sync, by outcome (applied, unchanged, pending)",
            m.message_changes.clone(),
        );
        registry.register(
            "live_messages",
            "Live messages stored after a sync",
            m.live_messages.clone(),
        );
        registry.register(
            "clients",
            "Connected event clients by transport",
            m.clients.clone(),
        );
        registry.register(
            "outbox_pending",
            "Events waiting in the outbox",
            m.outbox_pending.clone(),
        );
        registry.register(
            "outbox_published",
            "Events the broker confirmed",
            m.outbox_published.clone(),
        );
        registry.register(
            "outbox_publish_failures",
            "Failed publish attempts of the outbox relay",
            m.outbox_failures.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by status class",
            m.http_requests.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by plugin and hook",
            m.plugin_calls.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin failures by plugin and kind (trap, deadline, memory, fault)",
            m.plugin_failures.clone(),
        );
        registry.register(
            "plugin_seconds",
            "Time spent in plugin calls by plugin and hook",
            m.plugin_seconds.clone(),
        );
        registry.register(
            "session_actors",
            "Session actor tasks running on this host",
            m.session_actors.clone(),
        );
        registry.register(
            "live_messages_spooled",
            "Live messages kept in the spool while the store was unreachable",
            m.live_messages_spooled.clone(),
        );
        registry.register(
            "live_messages_dropped",
            "Live messages lost (store unreachable and spool full)",
            m.live_messages_dropped.clone(),
        );
        registry.register(
            "leases_held",
            "Session leases this host holds",
            m.leases_held.clone(),
        );
        registry.register(
            "takeovers",
            "Sessions taken over from another host",
            m.takeovers.clone(),
        );
        registry.register(
            "leases_lost",
            "Session leases lost (not renewed in time or taken over)",
            m.leases_lost.clone(),
        );
        registry.register(
            "forwarded_requests",
            "Requests forwarded to the owning host",
            m.forwarded_requests.clone(),
        );
        registry.register(
            "cluster_events_out",
            "Live session events published to other hosts",
            m.cluster_events_out.clone(),
        );
        registry.register(
            "cluster_events_in",
            "Live session events received from other hosts",
            m.cluster_events_in.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed, dead)",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "Duration of webhook delivery attempts",
            m.webhook_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.syncs_started.inc();
        m.sessions
            .get_or_create(&StatusLabel {
                status: "ready".into(),
            })
            .set(2);
        let text = m.render();
        assert!(text.contains("wasync_syncs_started_total 1"), "{text}");
        assert!(
            text.contains("wasync_sessions{status=\"ready\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE wasync_sync_duration_seconds histogram"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
