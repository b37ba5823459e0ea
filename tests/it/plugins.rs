//! The WASM plugin adapter driven with the real built components
//! (`scripts/build-plugins.sh`): each real plugin's effect, each hostile
//! fixture contained, the failure policies, tripping, and the manager's
//! install / remove / reload checks.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasync::plugins::wasm::{ManagerOptions, Offload, PluginError};
use wasync::plugins::{ChatDecision, ChatSummary, PluginHost};
use wasync_tests::plugins::{PluginDir, bench_redaction, built, chat, context, message};

fn counters(
    mgr: &wasync::plugins::wasm::PluginManager,
    name: &str,
) -> wasync::plugins::wasm::PluginCounters {
    mgr.counters()
        .into_iter()
        .find(|c| c.plugin == name)
        .unwrap_or_else(|| panic!("no counters for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_pii_masks_phones_and_emails() {
    let mgr = PluginDir::new().with("redact-pii").manager();
    let chain = mgr.chain();
    assert!(!chain.is_empty());
    let mut scope = chain.chat_scope(&context("s1"), &chat("c1", "Ana")).await;
    let msgs = vec![
        message(
            "c1",
            0,
            "call me on +49 151 23456789 or mail ana@example.org",
        ),
        message("c1", 1, "nothing to hide here, meeting at 10:30"),
        message("c1", 2, "office: (030) 1234-5678"),
    ];
    let out = scope.transform(msgs).await;
    assert!(out.quarantined.is_empty());
    assert_eq!(out.keep.len(), 3);
    assert_eq!(out.modified, 2);
    assert_eq!(
        out.keep[0].body.as_deref(),
        Some("call me on [phone] or mail [email]")
    );
    assert_eq!(out.keep[0].tags, vec!["pii-redacted"]);
    assert_eq!(out.keep[0].attributes["pii.redacted"], "2");
    assert_eq!(
        out.keep[1].body.as_deref(),
        Some("nothing to hide here, meeting at 10:30")
    );
    assert!(out.keep[1].tags.is_empty());
    assert_eq!(out.keep[2].body.as_deref(), Some("office: [phone]"));
    // Ids, chat ids and the rest are untouched.
    assert_eq!(out.keep[0].id, "c1-m0");
    assert_eq!(out.keep[0].from, "4915100000001@c.us");
    scope.after_chat_sync(ChatSummary::default()).await;
    let c = counters(&mgr, "redact-pii");
    assert_eq!((c.messages_in, c.replaced, c.kept), (3, 2, 1));
    assert_eq!(c.failures.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_pii_mask_is_configurable_and_long_bodies_never_leak() {
    let mgr = PluginDir::new()
        .with_edited("redact-pii", |m| {
            m.replace("email-mask = \"[email]\"", "email-mask = \"<e>\"")
                .replace("[config]", "[limits]\nmax_body_bytes = 64\n\n[config]")
        })
        .manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ana"))
        .await;
    let long = format!("{} then +49 151 23456789", "x".repeat(100));
    let out = scope
        .transform(vec![
            message("c1", 0, "to bo@example.com"),
            message("c1", 1, &long),
        ])
        .await;
    assert_eq!(out.keep[0].body.as_deref(), Some("to <e>"));
    // The phone number sat past the 64-byte input cap: the plugin never saw
    // it, so it stores the cut prefix, not the raw tail.
    let stored = out.keep[1].body.as_deref().unwrap();
    assert!(!stored.contains("23456789"), "{stored}");
    assert!(stored.ends_with("[truncated]"), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_tagger_adds_tags_from_config() {
    let mgr = PluginDir::new().with("keyword-tagger").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ops"))
        .await;
    let out = scope
        .transform(vec![
            message("c1", 0, "URGENT: the invoice is wrong"),
            message("c1", 1, "an urgently worded note"),
            message("c1", 2, "can we set a due date?"),
        ])
        .await;
    assert_eq!(out.keep[0].tags, vec!["urgent", "billing"]);
    assert!(
        out.keep[1].tags.is_empty(),
        "whole words only: {:?}",
        out.keep[1].tags
    );
    assert_eq!(out.keep[2].tags, vec!["meeting"]);
    assert_eq!(out.modified, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_filter_skips_archived_and_named_chats_and_caps_messages() {
    let mgr = PluginDir::new().with("chat-filter").manager();
    let chain = mgr.chain();
    let ctx = context("s1");
    let mut archived = chat("a", "Family");
    archived.archived = true;
    let decide = |c: wasync::domain::Chat| {
        let chain = chain.clone();
        let ctx = ctx.clone();
        async move {
            let mut s = chain.chat_scope(&ctx, &c).await;
            let d = s.before_chat_sync().await;
            s.after_chat_sync(ChatSummary {
                fetched: 1,
                stored: 1,
                ..Default::default()
            })
            .await;
            d
        }
    };
    assert_eq!(
        decide(archived).await,
        ChatDecision::Skip {
            reason: "chat-filter: archived".into()
        }
    );
    match decide(chat("n", "Weekly Newsletter")).await {
        ChatDecision::Skip { reason } => assert!(reason.contains("newsletter"), "{reason}"),
        other => panic!("newsletter chat: {other:?}"),
    }
    assert_eq!(
        decide(chat("f", "Friends")).await,
        ChatDecision::Proceed {
            max_messages: Some(200),
            since_ms: None
        }
    );
    // A chat-hook plugin leaves messages alone.
    let mut s = chain.chat_scope(&ctx, &chat("f", "Friends")).await;
    let out = s.transform(vec![message("f", 0, "+49 151 23456789")]).await;
    assert_eq!(out.keep[0].body.as_deref(), Some("+49 151 23456789"));
    assert_eq!(counters(&mgr, "chat-filter").chats_skipped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_by_priority_then_name() {
    let mgr = PluginDir::new()
        .with("keyword-tagger")
        .with("redact-pii")
        .with("chat-filter")
        .manager();
    let names: Vec<String> = mgr.list().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["chat-filter", "redact-pii", "keyword-tagger"]);
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "Work"))
        .await;
    assert!(matches!(
        scope.before_chat_sync().await,
        ChatDecision::Proceed { .. }
    ));
    let out = scope
        .transform(vec![message("c", 0, "urgent: call +49 151 23456789")])
        .await;
    assert_eq!(out.keep[0].body.as_deref(), Some("urgent: call [phone]"));
    assert_eq!(out.keep[0].tags, vec!["pii-redacted", "urgent"]);
    assert_eq!(out.modified, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_within_twice_its_deadline_and_quarantined() {
    // fixture-loop's manifest sets deadline_ms = 100 and fail-closed.
    let mgr = PluginDir::new().with("fixture-loop").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let started = Instant::now();
    let out = scope
        .transform(vec![message("c", 0, "a"), message("c", 1, "b")])
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(90),
        "stopped too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(200),
        "deadline 100 ms, took {took:?}"
    );
    assert!(out.keep.is_empty(), "fail-closed stores nothing");
    assert_eq!(out.quarantined.len(), 2);
    let q = &out.quarantined[0];
    assert_eq!(q.plugin, "fixture-loop");
    assert!(q.reason.contains("deadline"), "{}", q.reason);
    assert_eq!(q.sync_id.as_deref(), Some("s1"));
    assert_eq!(counters(&mgr, "fixture-loop").failures.deadline, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_stopped_at_its_cap() {
    // A generous deadline: growing 16 MiB must fail on memory, not time,
    // even on a loaded machine (deadlines are wall-clock time).
    let mgr = PluginDir::new()
        .with_edited("fixture-memory-hog", |m| {
            m.replace("memory_mib = 16", "memory_mib = 16\ndeadline_ms = 5000")
        })
        .manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert!(out.keep.is_empty());
    assert_eq!(out.quarantined.len(), 1);
    assert!(
        out.quarantined[0].reason.contains("memory"),
        "{}",
        out.quarantined[0].reason
    );
    let c = counters(&mgr, "fixture-memory-hog");
    assert_eq!(c.failures.memory, 1, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_discards_the_instance_and_the_next_batch_gets_a_fresh_one() {
    let mgr = PluginDir::new()
        .with_edited("fixture-trap", |m| {
            format!("{m}\n[config]\nwhen-body-contains = \"boom\"\n")
        })
        .manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope
        .transform(vec![message("c", 0, "boom"), message("c", 1, "fine")])
        .await;
    assert!(out.keep.is_empty());
    assert_eq!(out.quarantined.len(), 2);
    assert!(
        out.quarantined[0].reason.contains("trap"),
        "{}",
        out.quarantined[0].reason
    );
    let out = scope.transform(vec![message("c", 2, "fine again")]).await;
    assert_eq!(out.keep.len(), 1);
    assert!(out.quarantined.is_empty());
    let c = counters(&mgr, "fixture-trap");
    assert_eq!((c.failures.trap, c.instantiations), (1, 2), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_reused_across_a_chats_batches_but_not_across_chats() {
    let mgr = PluginDir::new().with("redact-pii").manager();
    let chain = mgr.chain();
    let mut scope = chain.chat_scope(&context("s1"), &chat("c", "x")).await;
    for n in 0..3 {
        scope.transform(vec![message("c", n, "x")]).await;
    }
    scope.after_chat_sync(ChatSummary::default()).await;
    let mut scope = chain.chat_scope(&context("s1"), &chat("d", "y")).await;
    scope.transform(vec![message("d", 0, "y")]).await;
    let c = counters(&mgr, "redact-pii");
    assert_eq!((c.calls, c.instantiations), (4, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_keeps_messages_tagged_with_the_skipped_plugin() {
    // fixture-wrong-length is fail-open: its bad output is refused and the
    // batch passes through unchanged but tagged.
    let mgr = PluginDir::new().with("fixture-wrong-length").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope
        .transform(vec![message("c", 0, "a"), message("c", 1, "b")])
        .await;
    assert!(out.quarantined.is_empty());
    assert_eq!(out.keep.len(), 2);
    assert_eq!(out.keep[0].body.as_deref(), Some("a"));
    assert_eq!(
        out.keep[0].tags,
        vec!["plugin-skipped:fixture-wrong-length"]
    );
    let c = counters(&mgr, "fixture-wrong-length");
    assert_eq!((c.failures.fault, c.skipped_fail_open), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_id_is_refused_and_fail_closed_quarantines_the_originals() {
    let mgr = PluginDir::new().with("fixture-id-rewrite").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert!(out.keep.is_empty());
    assert_eq!(out.quarantined.len(), 1);
    assert_eq!(
        out.quarantined[0].message.id, "c-m0",
        "the original, not the forgery"
    );
    assert!(
        out.quarantined[0]
            .reason
            .contains("replace changed message"),
        "{}",
        out.quarantined[0].reason
    );
    assert_eq!(counters(&mgr, "fixture-id-rewrite").failures.fault, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_trip_the_plugin_for_the_rest_of_the_sync_only() {
    let mgr = PluginDir::new().with("fixture-trap").manager();
    let chain = mgr.chain();
    for n in 0..5 {
        let mut scope = chain
            .chat_scope(&context("s1"), &chat(&format!("c{n}"), "x"))
            .await;
        let out = scope
            .transform(vec![message(&format!("c{n}"), 0, "a")])
            .await;
        // Tripped or not, fail-closed still quarantines.
        assert_eq!(out.quarantined.len(), 1);
        if n >= 3 {
            assert!(
                out.quarantined[0].reason.contains("tripped"),
                "{}",
                out.quarantined[0].reason
            );
        }
    }
    let c = counters(&mgr, "fixture-trap");
    assert_eq!((c.calls, c.failures.trap, c.trips), (3, 3, 1), "{c:?}");
    // The next sync starts with a clean slate.
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s2"), &chat("z", "x"))
        .await;
    scope.transform(vec![message("z", 0, "a")]).await;
    assert_eq!(counters(&mgr, "fixture-trap").calls, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_no_environment_no_arguments_and_a_working_clock() {
    let mgr = PluginDir::new().with("fixture-sandbox-probe").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    let a = &out.keep[0].attributes;
    assert!(a["probe.env"].starts_with("denied"), "{a:?}");
    assert_eq!(a["probe.env-count"], "0");
    assert_eq!(a["probe.args-count"], "0");
    assert_eq!(a["probe.clock"], "ok");
    // Its two stdio lines reached the host log through the budget.
    assert_eq!(counters(&mgr, "fixture-sandbox-probe").log_lines, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_files_or_sockets_is_refused_at_upload() {
    // Neither wasi:filesystem nor wasi:sockets is linked: a plugin that
    // imports them never runs, rather than running with interfaces that
    // only fail.
    let dir = PluginDir::new();
    let mgr = dir.manager();
    let (toml, wasm) = built("fixture-fs-net");
    let err = mgr.install(&toml, wasm).await.unwrap_err();
    match &err {
        PluginError::WorldMismatch { reason, .. } => assert!(
            reason.contains("wasi:filesystem") || reason.contains("wasi:sockets"),
            "{reason}"
        ),
        other => panic!("{other}"),
    }
    assert_eq!(err.http_status(), 422);
    let dir = PluginDir::new().with("fixture-fs-net");
    let err = wasync::plugins::wasm::PluginManager::open(
        wasync_tests::plugins::runtime(),
        dir.path(),
        ManagerOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::WorldMismatch { .. }), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_does_not_hold_a_current_thread_runtime() {
    // One runtime thread only: if the guest ran on it, the ticker could
    // not run until the deadline. Here the call goes to the blocking pool.
    spinning_plugin_leaves_the_runtime_free().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_spinning_plugin_does_not_hold_a_multi_thread_runtime() {
    // One worker: the call turns it into a blocking thread
    // (`block_in_place`), and the ticker must move to a fresh worker.
    spinning_plugin_leaves_the_runtime_free().await;
}

async fn spinning_plugin_leaves_the_runtime_free() {
    let mgr = PluginDir::new()
        .with_edited("fixture-loop", |m| {
            // Deadlines are wall-clock time: on a loaded machine the
            // runtime's 10 ms sleeps take longer, so give it 600 ms for 10.
            m.replace("deadline_ms = 100", "deadline_ms = 600")
        })
        .manager_with(ManagerOptions {
            offload: Offload::BlockingPool,
            ..Default::default()
        });
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert_eq!(out.quarantined.len(), 1);
    let n = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n >= 10,
        "runtime starved while the plugin spun: {n} ticks in 600 ms"
    );
    ticker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_installs_get_typed_errors_and_change_nothing() {
    let dir = PluginDir::new().with("redact-pii");
    let mgr = dir.manager_with(ManagerOptions {
        max_component_bytes: 120_000,
        ..Default::default()
    });
    let before = mgr.list();
    let files = || {
        let mut f: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        f.sort();
        f
    };
    let files_before = files();
    let (tagger_toml, tagger) = built("keyword-tagger");
    let (_, filter_wasm) = built("chat-filter");
    let (_, probe) = built("fixture-fs-net"); // the largest component

    let err = mgr
        .install(&tagger_toml, b"hello, not wasm".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::NotWasm), "{err}");
    assert_eq!(err.http_status(), 400);

    // The smallest valid core module: magic plus version 1.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let err = mgr
        .install(&tagger_toml.replace("sha256", "# sha256"), core)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::CoreModule), "{err}");

    // A chat-hook component under a manifest that promises a transformer.
    let manifest = tagger_toml.replace("sha256", "# sha256");
    let err = mgr.install(&manifest, filter_wasm).await.unwrap_err();
    assert!(matches!(err, PluginError::WorldMismatch { .. }), "{err}");
    assert_eq!(err.http_status(), 422);

    let err = mgr
        .install(&manifest.replace("keyword-tagger", "probe"), probe)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::TooLarge { .. }), "{err}");
    assert_eq!(err.http_status(), 413);

    let mut tampered = tagger.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let err = mgr.install(&tagger_toml, tampered).await.unwrap_err();
    assert!(matches!(err, PluginError::Sha256Mismatch { .. }), "{err}");

    let err = mgr
        .install("name = \"x\"", tagger.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::BadManifest { .. }), "{err}");

    let err = mgr.remove("nope").await.unwrap_err();
    assert_eq!(err.http_status(), 404);
    let err = mgr.remove("../redact-pii").await.unwrap_err();
    assert_eq!(err.http_status(), 404);

    assert_eq!(mgr.list(), before);
    assert_eq!(files(), files_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_remove_and_reload_swap_atomically_under_a_running_sync() {
    let dir = PluginDir::new().with("redact-pii");
    let mgr = dir.manager();
    let running = mgr.chain(); // a sync that started before the changes

    let (toml, wasm) = built("keyword-tagger");
    let info = mgr.install(&toml, wasm.clone()).await.expect("install");
    assert_eq!(info.name, "keyword-tagger");
    assert_eq!(info.sha256, wasync::plugins::wasm::sha256_hex(&wasm));
    assert!(
        dir.path()
            .join(format!("keyword-tagger.{}.wasm", info.sha256))
            .is_file()
    );
    mgr.remove("redact-pii").await.expect("remove");
    assert!(!dir.path().join("redact-pii.toml").exists());

    let body = "urgent: +49 151 23456789";
    let mut old = running.chat_scope(&context("old"), &chat("c", "x")).await;
    let out = old.transform(vec![message("c", 0, body)]).await;
    assert_eq!(
        out.keep[0].body.as_deref(),
        Some("urgent: [phone]"),
        "the running sync keeps its set"
    );
    assert_eq!(out.keep[0].tags, vec!["pii-redacted"]);

    let mut new = mgr
        .chain()
        .chat_scope(&context("new"), &chat("c", "x"))
        .await;
    let out = new.transform(vec![message("c", 0, body)]).await;
    assert_eq!(out.keep[0].body.as_deref(), Some(body));
    assert_eq!(out.keep[0].tags, vec!["urgent"]);

    // An installed manifest without sha256 gets it recorded on disk.
    let text = std::fs::read_to_string(dir.path().join("keyword-tagger.toml")).unwrap();
    assert!(text.contains(&info.sha256));

    // Reload picks up a plugin dropped into the directory by hand; a
    // broken one makes reload fail and keeps the current set.
    let (t, w) = built("chat-filter");
    std::fs::write(dir.path().join("chat-filter.wasm"), w).unwrap();
    std::fs::write(dir.path().join("chat-filter.toml"), t).unwrap();
    let listed: Vec<String> = mgr
        .reload()
        .await
        .expect("reload")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(listed, ["chat-filter", "keyword-tagger"]);
    std::fs::write(
        dir.path().join("broken.toml"),
        "name = \"broken\"\nversion = \"1\"\nworld = \"full\"\n",
    )
    .unwrap();
    assert!(mgr.reload().await.is_err(), "broken.wasm is missing");
    assert_eq!(mgr.list().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_directory_with_a_tampered_plugin() {
    let dir = PluginDir::new().with_edited("redact-pii", |m| {
        let sum = m
            .lines()
            .find(|l| l.starts_with("sha256"))
            .unwrap()
            .to_owned();
        m.replace(&sum, &format!("sha256 = \"{}\"", "0".repeat(64)))
    });
    let err = wasync::plugins::wasm::PluginManager::open(
        wasync_tests::plugins::runtime(),
        dir.path(),
        ManagerOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::Sha256Mismatch { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_render_as_prometheus_text() {
    let mgr = PluginDir::new().with("redact-pii").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    scope.transform(vec![message("c", 0, "a@b.io")]).await;
    let text = mgr.render_prometheus();
    assert!(
        text.contains("wasync_plugin_messages_total{plugin=\"redact-pii\",outcome=\"replace\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_bench_runs_and_reports() {
    for offload in [Offload::BlockingPool, Offload::Inline] {
        let r = bench_redaction(2_000, 50, offload).await;
        eprintln!("{r}");
        assert!(r.plugin_per_message > Duration::ZERO && r.native_per_message > Duration::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_sync_bench_stores_every_message_with_and_without_plugins() {
    let (without, ms0) = wasync_tests::plugins::bench_chain_sync(5, 20, false).await;
    let (with, ms1) = wasync_tests::plugins::bench_chain_sync(5, 20, true).await;
    eprintln!("chain sync: {without} msgs in {ms0} ms without plugins, {with} in {ms1} ms with 3");
    assert_eq!((without, with), (100, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chat_hook_skips_the_chat_when_fail_closed_and_has_no_say_when_fail_open() {
    let broken = |policy: &'static str| {
        move |m: String| {
            m.replace(
                "on_error = \"fail-open\"",
                &format!("on_error = \"{policy}\""),
            )
            .replace("max-messages = \"200\"", "max-messages = \"lots\"")
        }
    };
    let closed = PluginDir::new()
        .with_edited("chat-filter", broken("fail-closed"))
        .manager();
    let mut s = closed
        .chain()
        .chat_scope(&context("s1"), &chat("c", "Friends"))
        .await;
    match s.before_chat_sync().await {
        ChatDecision::Skip { reason } => {
            assert!(
                reason.contains("bad-config") && reason.contains("max-messages"),
                "{reason}"
            )
        }
        other => panic!("fail-closed hook failure must skip: {other:?}"),
    }
    assert_eq!(counters(&closed, "chat-filter").failures.error, 1);

    let open = PluginDir::new()
        .with_edited("chat-filter", broken("fail-open"))
        .manager();
    let mut s = open
        .chain()
        .chat_scope(&context("s1"), &chat("c", "Friends"))
        .await;
    assert_eq!(
        s.before_chat_sync().await,
        ChatDecision::Proceed {
            max_messages: None,
            since_ms: None
        }
    );
}

/// `fixture-sleep` with its manifest's `[limits]` and `[config]` edited.
fn sleeper(limits: &str, config: &str) -> PluginDir {
    let limits = limits.to_owned();
    let config = config.to_owned();
    PluginDir::new().with_edited("fixture-sleep", move |m| {
        format!(
            "{}\n{limits}\n\n[config]\n{config}\n",
            m.replace("deadline_ms = 50", "")
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sleeping_in_a_host_call_fails_with_deadline_within_a_tick() {
    // Epoch interruption cannot stop a guest waiting in `poll`: this one
    // sleeps 30 s against a 50 ms deadline.
    let dir = sleeper("deadline_ms = 50", "sleep-ms = 30000");
    let mgr = dir.manager();
    let tick = mgr.runtime().tick();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let started = Instant::now();
    let out = scope
        .transform(vec![message("c", 0, "a"), message("c", 1, "b")])
        .await;
    let took = started.elapsed();
    eprintln!("sleeping plugin, 50 ms deadline: failed after {took:?}");
    assert!(took >= Duration::from_millis(50), "too early: {took:?}");
    // One tick, plus room for a loaded machine's scheduling (a timer's
    // wake-up on a 2-core machine running builds).
    assert!(
        took < Duration::from_millis(50) + tick + Duration::from_millis(60),
        "deadline 50 ms, took {took:?}"
    );
    assert_eq!(out.quarantined.len(), 2);
    assert!(
        out.quarantined[0].reason.contains("deadline"),
        "{}",
        out.quarantined[0].reason
    );
    let c = counters(&mgr, "fixture-sleep");
    assert_eq!(c.failures.deadline, 1, "{c:?}");
    // The store went with the call; the next batch gets a fresh instance
    // (and the same deadline).
    let started = Instant::now();
    scope.transform(vec![message("c", 2, "c")]).await;
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(counters(&mgr, "fixture-sleep").instantiations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_sync_ends_a_running_call_at_once_and_makes_no_more() {
    // Long deadlines: only the stop can end these calls early, whether the
    // plugin waits in a host call or spins in its own code.
    for (plugin, dir) in [
        (
            "fixture-sleep",
            sleeper("deadline_ms = 10000", "sleep-ms = 30000"),
        ),
        (
            "fixture-loop",
            PluginDir::new().with_edited("fixture-loop", |m| {
                m.replace("deadline_ms = 100", "deadline_ms = 10000")
            }),
        ),
    ] {
        let mgr = dir.manager();
        let stop = CancellationToken::new();
        let chain = mgr.chain_until(stop.clone());
        let mut scope = chain.chat_scope(&context("s1"), &chat("c", "x")).await;
        let cancel = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                stop.cancel();
                Instant::now()
            })
        };
        let out = scope.transform(vec![message("c", 0, "a")]).await;
        let returned = Instant::now();
        let took = returned - cancel.await.unwrap();
        eprintln!("stopped during a call ({plugin}): returned {took:?} after the stop");
        // One tick, plus room for a loaded machine's scheduling.
        assert!(
            took < mgr.runtime().tick() + Duration::from_millis(60),
            "{plugin}: returned {took:?} after the stop"
        );
        // Fail-closed: what the plugin did not vouch for is quarantined.
        assert_eq!(out.quarantined.len(), 1);
        assert!(
            out.quarantined[0].reason.contains("cancelled"),
            "{}",
            out.quarantined[0].reason
        );
        let calls = counters(&mgr, plugin).calls;
        let out = scope.transform(vec![message("c", 1, "b")]).await;
        scope.after_chat_sync(ChatSummary::default()).await;
        assert_eq!(out.quarantined.len(), 1);
        let c = counters(&mgr, plugin);
        assert_eq!(c.calls, calls, "{plugin}: no call after the stop");
        assert_eq!(
            c.failures.total(),
            0,
            "a stop is not the plugin's failure: {c:?}"
        );
        assert_eq!((c.trips, c.cancelled_calls), (0, 2), "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_floods_are_charged_per_line_capped_per_call_and_counted() {
    // Each way around the budget: empty lines (free by length), tiny lines,
    // long lines, stdout and stderr instead of `log`.
    const LINES: u64 = 20_000;
    for (mode, written) in [
        ("empty", 256),
        ("tiny", 256),
        ("long", 64 * 1024 / (1024 + 64)),
        ("stdout", 256),
        ("stderr", 256),
    ] {
        let mgr = PluginDir::new()
            .with_edited("fixture-log-flood", |m| {
                format!("{m}\n[limits]\ndeadline_ms = 5000\n\n[config]\nmode = \"{mode}\"\nlines = \"{LINES}\"\n")
            })
            .manager();
        let mut scope = mgr
            .chain()
            .chat_scope(&context("s1"), &chat("c", "x"))
            .await;
        for n in 0..2 {
            let out = scope.transform(vec![message("c", n, "a")]).await;
            assert_eq!(out.keep.len(), 1, "{mode}: {:?}", out.quarantined);
        }
        let c = counters(&mgr, "fixture-log-flood");
        assert_eq!(
            (c.log_lines, c.logs_dropped),
            (2 * written, 2 * (LINES - written)),
            "{mode}: two calls, each capped"
        );
    }
}

/// Collects what the host logs on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_plugin_cannot_write_a_line_that_reads_like_the_hosts_own() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // Inline on this (only) runtime thread, so this thread's subscriber
    // sees the plugin's lines.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mgr = PluginDir::new()
        .with_edited("fixture-log-flood", |m| {
            format!("{m}\n[config]\nmode = \"inject\"\n")
        })
        .manager_with(ManagerOptions {
            offload: Offload::Inline,
            ..Default::default()
        });
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    // Other tests' threads may have cached their callsites' interest
    // before this thread's subscriber existed.
    tracing::callsite::rebuild_interest_cache();
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert_eq!(out.quarantined.len(), 1);
    // Written (and counted): the `log` line, and stdout's two lines (a
    // stream's newline ends a line; the next is still tagged as stdout).
    assert_eq!(counters(&mgr, "fixture-log-flood").log_lines, 3);
    // The quarantine reason (stored, shown in the API) is escaped too.
    assert!(!out.quarantined[0].reason.contains('\n'));
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let forged: Vec<&str> = text.lines().filter(|l| l.contains("FORGED")).collect();
    // The log line, the stdout line and the failure's reason.
    assert!(forged.len() >= 3, "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01"),
            "a forged line of its own: {line:?}\n{text}"
        );
        assert!(!line.contains('\u{1b}') && !line.contains('\r'), "{line:?}");
    }
    for line in forged {
        assert!(line.contains("fixture-log-flood"), "untagged: {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_handles_a_10000_message_chat_in_sub_batches() {
    // 100 µs a message: 1 s for the chat, its whole deadline in one call,
    // 26 ms per sub-batch of 256 (the margin a loaded test machine needs;
    // the docs' 20 µs against 200 ms is the same ratio).
    let chat_of = |n: usize| -> Vec<wasync::domain::Message> {
        (0..n).map(|i| message("big", i, "hello there")).collect()
    };
    let dir = sleeper("deadline_ms = 1000", "busy-us-per-message = 100");
    let mgr = dir.manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("big", "x"))
        .await;
    let started = Instant::now();
    let out = scope.transform(chat_of(10_000)).await;
    eprintln!(
        "10,000 messages at 100 µs each, in sub-batches: {:?}",
        started.elapsed()
    );
    assert!(out.quarantined.is_empty(), "{}", out.quarantined[0].reason);
    assert_eq!(out.keep.len(), 10_000);
    let c = counters(&mgr, "fixture-sleep");
    assert_eq!(c.calls, 10_000u64.div_ceil(256), "{c:?}");
    assert_eq!((c.failures.total(), c.instantiations), (0, 1));

    // The same chat in one call (the old behaviour) misses the deadline
    // and is quarantined whole.
    let dir = sleeper(
        "deadline_ms = 1000\nmax_batch_messages = 10000",
        "busy-us-per-message = 100",
    );
    let mgr = dir.manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("big", "x"))
        .await;
    let out = scope.transform(chat_of(10_000)).await;
    assert_eq!(out.quarantined.len(), 10_000);
    assert_eq!(counters(&mgr, "fixture-sleep").failures.deadline, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_bodies_are_split_by_bytes_so_the_memory_cap_is_per_call() {
    // 200 bodies of 60 KiB: 12 MiB in one call, over an 8 MiB instance.
    let body = "x".repeat(60 * 1024);
    let msgs: Vec<wasync::domain::Message> = (0..200).map(|i| message("c", i, &body)).collect();
    let dir = sleeper("memory_mib = 8", "busy-us-per-message = 0");
    let mgr = dir.manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(msgs.clone()).await;
    assert!(out.quarantined.is_empty(), "{}", out.quarantined[0].reason);
    assert_eq!(out.keep.len(), 200);
    let c = counters(&mgr, "fixture-sleep");
    assert!(c.calls >= 12, "1 MiB sub-batches: {c:?}");

    let dir = sleeper(
        "memory_mib = 8\nmax_batch_messages = 10000\nmax_batch_bytes = 16777216",
        "busy-us-per-message = 0",
    );
    let mgr = dir.manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(msgs).await;
    assert_eq!(
        out.quarantined.len(),
        200,
        "one 12 MiB call runs out of memory"
    );
    assert_eq!(counters(&mgr, "fixture-sleep").failures.memory, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_hoarding_host_resources_traps_at_the_table_cap() {
    // Each pollable the guest forgets is an entry in the host's resource
    // table: host memory outside the plugin's memory_mib. A million would
    // be wasmtime's default cap; the host's is MAX_RESOURCES per instance.
    let mgr = PluginDir::new().with("fixture-resource-hog").manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let started = Instant::now();
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    let took = started.elapsed();
    assert_eq!(out.quarantined.len(), 1, "fail-closed: {out:?}");
    let reason = &out.quarantined[0].reason;
    assert!(
        reason.contains("(trap)") && reason.contains("resource table"),
        "{reason}"
    );
    // Stopped at the cap, not by its 2 s deadline.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(counters(&mgr, "fixture-resource-hog").failures.trap, 1);

    // A plugin within the cap runs.
    let mgr = PluginDir::new()
        .with_edited("fixture-resource-hog", |m| {
            m.replace(
                "count = \"1000000\"",
                &format!(
                    "count = \"{}\"",
                    wasync::plugins::wasm::runtime::MAX_RESOURCES / 2
                ),
            )
        })
        .manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c", "x"))
        .await;
    let out = scope.transform(vec![message("c", 0, "a")]).await;
    assert_eq!(out.keep.len(), 1, "{out:?}");
}
