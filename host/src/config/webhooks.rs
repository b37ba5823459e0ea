//! The `[webhooks]` settings (`WASYNC_WEBHOOK_*`, `WASYNC_MAX_WEBHOOKS`).

use std::time::Duration;

use super::source::{FileWebhooks, Source};
use super::*;
use crate::webhooks::target::Net;

/// Signed HTTP webhooks (see docs/webhooks.md).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhooksConfig {
    /// Endpoints at most (`WASYNC_MAX_WEBHOOKS`, default 100, 1 to 10000).
    pub max_webhooks: usize,
    /// Private, loopback and link-local networks deliveries may reach
    /// (`WASYNC_WEBHOOK_ALLOW_PRIVATE`, comma-separated CIDRs or addresses;
    /// default none). Off by default: a webhook URL is chosen by an API
    /// client, and without this check it could make the server probe its
    /// own network (SSRF).
    pub allow_private: Vec<Net>,
    /// How long a delivery is retried before it is dead
    /// (`WASYNC_WEBHOOK_MAX_AGE_SECS`, default 86400 = 1 day, 1 to 2592000).
    pub max_age: Duration,
    /// First retry delay, doubled per attempt (`WASYNC_WEBHOOK_RETRY_MIN_MS`,
    /// default 1000, 10 to 600000).
    pub retry_min: Duration,
    /// Longest retry delay (`WASYNC_WEBHOOK_RETRY_MAX_MS`, default 600000 =
    /// 10 min, at least the minimum, at most 86400000).
    pub retry_max: Duration,
    /// One attempt's time limit, connect to answer
    /// (`WASYNC_WEBHOOK_TIMEOUT_MS`, default 10000, 100 to 120000).
    pub timeout: Duration,
    /// Deliveries in flight per endpoint (`WASYNC_WEBHOOK_CONCURRENCY`,
    /// default 4, 1 to 256); one session's deliveries go one at a time.
    pub concurrency: usize,
    /// Delivered and dead deliveries are deleted after this
    /// (`WASYNC_WEBHOOK_RETENTION_HOURS`, default 168, 1 to 87600).
    pub retention: Duration,
}

pub(super) fn webhooks(s: &mut Source<'_>, f: &FileWebhooks) -> WebhooksConfig {
    let allow_private = s
        .list(WASYNC_WEBHOOK_ALLOW_PRIVATE, &f.allow_private, |v| {
            Net::parse(v).is_some()
        })
        .iter()
        .filter_map(|v| Net::parse(v))
        .collect();
    let retry_min = s.parse(
        WASYNC_WEBHOOK_RETRY_MIN_MS,
        &f.retry_min_ms,
        1_000u64,
        "milliseconds between 10 and 600000",
        |v| (10..=600_000).contains(v),
    );
    let retry_max = s.parse(
        WASYNC_WEBHOOK_RETRY_MAX_MS,
        &f.retry_max_ms,
        600_000u64.max(retry_min),
        &format!("milliseconds between {WASYNC_WEBHOOK_RETRY_MIN_MS} ({retry_min}) and 86400000"),
        |v| (retry_min..=86_400_000).contains(v),
    );
    WebhooksConfig {
        max_webhooks: s.parse(
            WASYNC_MAX_WEBHOOKS,
            &f.max_webhooks,
            100,
            "a count between 1 and 10000",
            |v| (1..=10_000).contains(v),
        ),
        allow_private,
        max_age: Duration::from_secs(s.parse(
            WASYNC_WEBHOOK_MAX_AGE_SECS,
            &f.max_age_secs,
            86_400u64,
            "seconds between 1 and 2592000",
            |v| (1..=2_592_000).contains(v),
        )),
        retry_min: Duration::from_millis(retry_min),
        retry_max: Duration::from_millis(retry_max),
        timeout: Duration::from_millis(s.parse(
            WASYNC_WEBHOOK_TIMEOUT_MS,
            &f.timeout_ms,
            10_000u64,
            "milliseconds between 100 and 120000",
            |v| (100..=120_000).contains(v),
        )),
        concurrency: s.parse(
            WASYNC_WEBHOOK_CONCURRENCY,
            &f.concurrency,
            4,
            "a count between 1 and 256",
            |v| (1..=256).contains(v),
        ),
        retention: Duration::from_secs(
            3_600
                * s.parse(
                    WASYNC_WEBHOOK_RETENTION_HOURS,
                    &f.retention_hours,
                    168u64,
                    "hours between 1 and 87600",
                    |v| (1..=87_600).contains(v),
                ),
        ),
    }
}
