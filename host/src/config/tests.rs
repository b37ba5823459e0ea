//! The configuration's unit tests.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_setup() {
    let c = Config::defaults();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:3000");
    assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
    assert!(c.storage.mongodb_uri.is_none());
    assert!(c.events.amqp_url.is_none());
    assert_eq!(c.events.amqp_queue, "wasync.session_ready");
    assert_eq!(c.browser.default_provider, "simulator");
    assert_eq!(c.browser.whatsapp_web_url, "https://web.whatsapp.com/");
    assert_eq!(c.server.max_body_bytes, 1 << 20);
    assert_eq!(c.storage.store_cache_mib, 2);
    assert_eq!(
        c.browser.login_save_every,
        std::time::Duration::from_secs(300)
    );
}

#[test]
fn every_bad_value_is_reported_by_name() {
    let err = Config::load(
        &env(&[
            (WASYNC_LISTEN, "nonsense"),
            (MONGODB_URI, "http://x"),
            (AMQP_URL, "tcp://x"),
            (WASYNC_PROVIDER, "phone"),
            (AMQP_PUBLISH_MESSAGES, "maybe"),
            (AMQP_PUBLISH_UPDATES, "often"),
            (WASYNC_MAX_BODY_BYTES, "12"),
            (WASYNC_LOG_FORMAT, "xml"),
            (WASYNC_STORE_CACHE_MIB, "0"),
            (WASYNC_LOGIN_SAVE_SECS, "0"),
        ]),
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    for var in [
        WASYNC_LISTEN,
        MONGODB_URI,
        AMQP_URL,
        WASYNC_PROVIDER,
        AMQP_PUBLISH_MESSAGES,
        AMQP_PUBLISH_UPDATES,
        WASYNC_MAX_BODY_BYTES,
        WASYNC_LOG_FORMAT,
        WASYNC_STORE_CACHE_MIB,
        WASYNC_LOGIN_SAVE_SECS,
    ] {
        assert!(text.contains(var), "{var} missing from: {text}");
    }
    assert_eq!(err.problems.len(), 10);
}

#[test]
fn non_loopback_needs_a_key() {
    let err = Config::load(&env(&[(WASYNC_LISTEN, "0.0.0.0:3000")]), None).unwrap_err();
    assert!(err.to_string().contains(WASYNC_API_KEY));
    let ok = Config::load(
        &env(&[
            (WASYNC_LISTEN, "0.0.0.0:3000"),
            (WASYNC_API_KEY, "0123456789abcdef"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(ok.server.api_key.as_deref(), Some("0123456789abcdef"));
    let short = Config::load(&env(&[(WASYNC_API_KEY, "short")]), None).unwrap_err();
    assert!(short.to_string().contains("at least 16"));
}

#[test]
fn file_values_apply_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasync.toml");
    std::fs::write(
        &path,
        "[storage]\ndata_dir = \"/tmp/x\"\nmongodb_db = \"filedb\"\ncache_mib = 16\n[events]\namqp_queue = \"q\"\npublish_messages = true\npublish_updates = true\n[server]\nmax_body_bytes = 2048\n",
    )
    .unwrap();
    let c = Config::load(&env(&[(MONGODB_DB, "envdb")]), Some(&path)).unwrap();
    assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.storage.mongodb_db, "envdb");
    assert_eq!(c.events.amqp_queue, "q");
    assert!(c.events.publish_messages);
    assert!(c.events.publish_updates);
    assert_eq!(c.server.max_body_bytes, 2048);
    assert_eq!(c.storage.store_cache_mib, 16);

    std::fs::write(&path, "[storage]\ndatadir = \"/tmp/x\"\n").unwrap();
    let err = Config::load(&HashMap::new(), Some(&path)).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");

    std::fs::write(&path, "[server]\nlisten = \"bad\"\n").unwrap();
    let err = Config::load(&HashMap::new(), Some(&path)).unwrap_err();
    assert!(
        err.to_string()
            .contains("WASYNC_LISTEN (from the config file)"),
        "{err}"
    );
}

#[test]
fn cluster_settings_are_checked_by_name() {
    let c = Config::defaults();
    assert_eq!(c.cluster.max_sessions, 100);
    assert_eq!(c.cluster.lease_ttl, Duration::from_secs(15));
    assert_eq!(c.cluster.lease_renew, Duration::from_secs(5));
    assert_eq!(c.cluster.live_exchange, "wasync.live");
    let c = Config::load(&env(&[(WASYNC_LEASE_TTL_MS, "3000")]), None).unwrap();
    assert_eq!(
        c.cluster.lease_renew,
        Duration::from_secs(1),
        "a third of the TTL"
    );
    let err = Config::load(
        &env(&[
            (WASYNC_HOST_ID, "has space"),
            (WASYNC_ADVERTISE_URL, "ftp://x"),
            (WASYNC_MAX_SESSIONS, "0"),
            (WASYNC_LEASE_RENEW_MS, "9000"),
            (AMQP_LIVE_EXCHANGE, "amq.topic"),
        ]),
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    for var in [
        WASYNC_HOST_ID,
        WASYNC_ADVERTISE_URL,
        WASYNC_MAX_SESSIONS,
        WASYNC_LEASE_RENEW_MS,
        AMQP_LIVE_EXCHANGE,
    ] {
        assert!(text.contains(var), "{var} missing from: {text}");
    }
    let err = Config::load(&env(&[(WASYNC_LEASE_TTL_MS, "10")]), None).unwrap_err();
    assert!(err.to_string().contains(WASYNC_LEASE_TTL_MS), "{err}");
}

#[test]
fn the_simulator_can_be_turned_off_with_another_default() {
    assert!(Config::defaults().browser.simulator);
    let c = Config::load(
        &env(&[(WASYNC_SIMULATOR, "off"), (WASYNC_PROVIDER, "webdriver")]),
        None,
    )
    .unwrap();
    assert!(!c.browser.simulator);
    let err = Config::load(&env(&[(WASYNC_SIMULATOR, "false")]), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(WASYNC_SIMULATOR) && text.contains(WASYNC_PROVIDER),
        "{text}"
    );
    let err = Config::load(&env(&[(WASYNC_SIMULATOR, "maybe")]), None).unwrap_err();
    assert!(err.to_string().contains(WASYNC_SIMULATOR));
}

#[test]
fn retention_is_bounded_and_named() {
    let c = Config::defaults();
    assert_eq!(c.storage.outbox_retention, Duration::from_secs(7 * 86_400));
    assert_eq!(
        c.storage.quarantine_retention,
        Duration::from_secs(30 * 86_400)
    );
    let err = Config::load(
        &env(&[
            (WASYNC_OUTBOX_RETENTION_HOURS, "0"),
            (WASYNC_QUARANTINE_RETENTION_DAYS, "x"),
        ]),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(WASYNC_OUTBOX_RETENTION_HOURS), "{err}");
    assert!(err.contains(WASYNC_QUARANTINE_RETENTION_DAYS), "{err}");
}

#[test]
fn gateway_bounds_have_defaults_and_are_checked_by_name() {
    let c = Config::defaults();
    assert_eq!(c.server.max_clients, 5_000);
    assert_eq!(c.server.max_rooms_per_client, 100);
    assert_eq!(c.server.ws_ping, Duration::from_secs(20));
    assert_eq!(c.server.body_timeout, Duration::from_secs(10));
    let c = Config::load(
        &env(&[
            (WASYNC_MAX_CLIENTS, "2"),
            (WASYNC_MAX_ROOMS_PER_CLIENT, "3"),
            (WASYNC_WS_PING_MS, "250"),
            (WASYNC_BODY_TIMEOUT_MS, "500"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.server.max_clients, 2);
    assert_eq!(c.server.max_rooms_per_client, 3);
    assert_eq!(c.server.ws_ping, Duration::from_millis(250));
    assert_eq!(c.server.body_timeout, Duration::from_millis(500));
    let err = Config::load(
        &env(&[
            (WASYNC_MAX_CLIENTS, "0"),
            (WASYNC_MAX_ROOMS_PER_CLIENT, "many"),
            (WASYNC_WS_PING_MS, "10"),
            (WASYNC_BODY_TIMEOUT_MS, "-1"),
        ]),
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    for var in [
        WASYNC_MAX_CLIENTS,
        WASYNC_MAX_ROOMS_PER_CLIENT,
        WASYNC_WS_PING_MS,
        WASYNC_BODY_TIMEOUT_MS,
    ] {
        assert!(text.contains(var), "{var} missing from: {text}");
    }
    assert_eq!(err.problems.len(), 4, "{text}");
}
