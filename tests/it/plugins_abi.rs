//! The two plugin contracts side by side: the 0.1 builds of the example
//! plugins (`plugins/fixtures/v0.1`, as deployed before 0.2) run unchanged
//! and answer as their 0.2 ports do; 0.2's edits keep 0.1's semantics; and
//! every answer or read 0.2 makes possible that breaks a rule is a plugin
//! failure handled by `on_error`, never a panic.

use std::time::{Duration, Instant};

use wasync::domain::{Chat, Message};
use wasync::plugins::wasm::{PluginCounters, PluginManager, Trial};
use wasync::plugins::{ChatDecision, PluginHost, Transformed};
use wasync_tests::plugins::{PluginDir, built, chat, context, message, runtime};

fn counters(mgr: &PluginManager, name: &str) -> PluginCounters {
    mgr.counters()
        .into_iter()
        .find(|c| c.plugin == name)
        .unwrap_or_else(|| panic!("no counters for {name}"))
}

/// The `wasync:plugin` exports of a built plugin.
fn exports(name: &str) -> Vec<String> {
    let (manifest, wasm) = built(name);
    let trial = Trial::load(runtime(), &manifest, &wasm, 64 << 20).expect("loads");
    let (_, exports) = trial.interfaces();
    exports
        .into_iter()
        .filter(|e| e.starts_with("wasync:plugin/"))
        .collect()
}

/// Runs `msgs` through plugin `name` alone, one chat, sub-batches of
/// `limits` (a `[limits]` table body, may be empty).
async fn through(name: &str, limits: &str, msgs: Vec<Message>) -> Transformed {
    let dir = PluginDir::new().with_edited(name, |m| with_limits(&m, limits));
    let mgr = dir.manager();
    let mut scope = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    scope.transform(msgs).await
}

fn with_limits(manifest: &str, limits: &str) -> String {
    if limits.is_empty() {
        return manifest.to_owned();
    }
    match manifest.contains("\n[config]\n") {
        true => manifest.replacen(
            "\n[config]\n",
            &format!("\n[limits]\n{limits}\n\n[config]\n"),
            1,
        ),
        false => format!("{manifest}\n[limits]\n{limits}\n"),
    }
}

fn with_mode(mode: &str, limits: &str, on_error: &str) -> PluginDir {
    PluginDir::new().with_edited("fixture-abi2", |m| {
        with_limits(
            &m.replace("mode = \"keep\"", &format!("mode = \"{mode}\""))
                .replace(
                    "on_error = \"fail-closed\"",
                    &format!("on_error = \"{on_error}\""),
                ),
            limits,
        )
    })
}

/// Bodies that exercise every path of the example transformers: PII of
/// both kinds, keywords, a tag already there, no body, a body longer than
/// a small `max_body_bytes` with PII past the cut.
fn mixed_batch() -> Vec<Message> {
    let mut msgs = vec![
        message("c1", 0, "call +49 151 23456789 or mail ana@example.org"),
        message("c1", 1, "URGENT: the invoice is wrong"),
        message("c1", 2, "nothing here, see you at lunch"),
        message("c1", 3, "can we set a due date? asap"),
        message(
            "c1",
            4,
            &format!("{} mail bo@example.com", "long text ".repeat(20)),
        ),
        message("c1", 5, "urgent again"),
    ];
    msgs[5].tags.push("urgent".into());
    let mut media = message("c1", 6, "");
    media.body = None;
    media.kind = "image".into();
    media.has_media = true;
    msgs.push(media);
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v01_builds_speak_01_and_the_ports_speak_02() {
    for name in ["redact-pii", "keyword-tagger", "chat-filter"] {
        let old = exports(&format!("{name}-v01"));
        let new = exports(name);
        assert!(
            !old.is_empty() && old.iter().all(|e| e.ends_with("@0.1.0")),
            "{name}-v01: {old:?}"
        );
        assert!(
            !new.is_empty() && new.iter().all(|e| e.ends_with("@0.2.0")),
            "{name}: {new:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v01_transformers_run_unchanged_and_answer_as_their_02_ports() {
    for name in ["redact-pii", "keyword-tagger"] {
        // Whole batches, then sub-batches of 2 with bodies cut at 64 bytes.
        for limits in ["", "max_batch_messages = 2\nmax_body_bytes = 64"] {
            let old = through(&format!("{name}-v01"), limits, mixed_batch()).await;
            let new = through(name, limits, mixed_batch()).await;
            assert!(old.quarantined.is_empty(), "{name}: {:?}", old.quarantined);
            assert_eq!(old, new, "{name} with limits {limits:?}");
            assert!(new.modified > 0, "{name} changed nothing");
        }
    }
    // Spot checks that the shared answer is the right one.
    let out = through("redact-pii", "max_body_bytes = 64", mixed_batch()).await;
    assert_eq!(
        out.keep[0].body.as_deref(),
        Some("call [phone] or mail [email]")
    );
    let cut = out.keep[4].body.as_deref().unwrap();
    assert!(
        cut.ends_with(" [truncated]") && !cut.contains("bo@example.com"),
        "{cut}"
    );
    assert_eq!(out.keep[2], mixed_batch()[2], "kept as it came");
    let out = through("keyword-tagger", "", mixed_batch()).await;
    assert_eq!(out.keep[1].tags, ["urgent", "billing"]);
    assert_eq!(out.keep[5].tags, ["urgent"], "already tagged: kept");
    assert_eq!(out.modified, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v01_chat_hook_decides_as_its_02_port() {
    let mut archived = chat("a", "Family");
    archived.archived = true;
    let chats: Vec<Chat> = vec![
        archived,
        chat("n", "Weekly Newsletter"),
        chat("f", "Friends"),
    ];
    let mut decisions = Vec::new();
    for name in ["chat-filter-v01", "chat-filter"] {
        let dir = PluginDir::new().with(name);
        let mgr = dir.manager();
        let chain = mgr.chain();
        let mut mine = Vec::new();
        for c in &chats {
            let mut s = chain.chat_scope(&context("abi"), c).await;
            mine.push(match s.before_chat_sync().await {
                // The reason names the plugin.
                ChatDecision::Skip { reason } => ChatDecision::Skip {
                    reason: reason.replace("chat-filter-v01", "chat-filter"),
                },
                d => d,
            });
            s.after_chat_sync(Default::default()).await;
        }
        decisions.push(mine);
    }
    assert_eq!(decisions[0], decisions[1]);
    assert_eq!(
        decisions[1][2],
        ChatDecision::Proceed {
            max_messages: Some(200),
            since_ms: None
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_mixes_01_and_02_plugins() {
    let dir = PluginDir::new()
        .with("redact-pii-v01")
        .with("keyword-tagger")
        .with("chat-filter-v01");
    let mgr = dir.manager();
    let chain = mgr.chain();
    let mut s = chain
        .chat_scope(&context("abi"), &chat("f", "Friends"))
        .await;
    assert!(matches!(
        s.before_chat_sync().await,
        ChatDecision::Proceed { .. }
    ));
    let out = s.transform(mixed_batch()).await;
    assert!(out.quarantined.is_empty());
    assert_eq!(out.keep[0].tags, ["pii-redacted"]);
    assert_eq!(out.keep[1].tags, ["urgent", "billing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_update_replace_and_drop_and_leave_the_rest_alone() {
    let dir = with_mode("edit", "", "fail-closed");
    let mgr = dir.manager();
    let mut s = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let mut tagged = message("c1", 1, "up and away");
    tagged.tags.push("up".into());
    tagged.attributes.insert("keep".into(), "me".into());
    let mut replaced = message("c1", 2, "replace me");
    replaced.tags.push("old".into());
    let msgs = vec![
        message("c1", 0, "hello"),
        tagged,
        replaced,
        message("c1", 3, "drop me"),
        message("c1", 4, "bye"),
    ];
    let out = s.transform(msgs.clone()).await;
    assert!(out.quarantined.is_empty());
    assert_eq!((out.keep.len(), out.modified, out.dropped), (4, 2, 1));
    assert_eq!(out.keep[0], msgs[0], "no edit: kept as it came");
    let up = &out.keep[1];
    assert_eq!(up.body.as_deref(), Some("UP AND AWAY"));
    assert_eq!(up.tags, ["up"], "a tag already there is not repeated");
    assert_eq!(up.attributes["len"], "11");
    assert_eq!(up.attributes["keep"], "me");
    assert_eq!((up.id.as_str(), up.timestamp), ("c1-m1", msgs[1].timestamp));
    let r = &out.keep[2];
    assert_eq!(r.body.as_deref(), Some("replaced"));
    assert!(r.tags.is_empty());
    assert_eq!((r.id.as_str(), r.chat_id.as_str()), ("c1-m2", "c1"));
    assert_eq!(out.keep[3], msgs[4]);
    let c = counters(&mgr, "fixture-abi2");
    assert_eq!((c.messages_in, c.kept, c.replaced, c.dropped), (5, 2, 2, 1));
    assert_eq!(c.failures.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_body_handed_back_unchanged_keeps_the_full_original() {
    let dir = with_mode("echo-cut", "max_body_bytes = 64", "fail-closed");
    let mgr = dir.manager();
    let mut s = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let long = format!("{}é tail +49 151 23456789", "x".repeat(63));
    let msgs = vec![message("c1", 0, &long), message("c1", 1, "short")];
    let out = s.transform(msgs.clone()).await;
    assert_eq!(out.keep[0].body.as_deref(), Some(long.as_str()));
    assert_eq!(out.keep[0].tags, ["cut"]);
    assert_eq!(out.keep[1], msgs[1]);
    // The 0.2 redaction, which changes a cut body, stores it as written.
    let out = through("redact-pii", "max_body_bytes = 64", msgs).await;
    assert_eq!(
        out.keep[0].body.as_deref(),
        Some(format!("{} [truncated]", "x".repeat(63)).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_quarantines_when_fail_closed_and_tags_when_fail_open() {
    let msgs = || vec![message("c1", 0, "a"), message("c1", 1, "b")];
    let closed = with_mode("error", "", "fail-closed").manager();
    let mut s = closed
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let out = s.transform(msgs()).await;
    assert!(out.keep.is_empty());
    assert_eq!(out.quarantined.len(), 2);
    assert!(out.quarantined[0].reason.contains("asked: mode error"));
    assert_eq!(out.quarantined[1].message, msgs()[1]);
    assert_eq!(counters(&closed, "fixture-abi2").failures.error, 1);

    let open = with_mode("error", "", "fail-open").manager();
    let mut s = open
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let out = s.transform(msgs()).await;
    assert!(out.quarantined.is_empty());
    assert_eq!(out.keep[0].tags, ["plugin-skipped:fixture-abi2"]);
}

/// Runs a hostile mode on a two-batch chat, fail-closed: every message is
/// quarantined (nothing half-applied), the failure is of `kind`, and a
/// fresh instance serves the next batch.
async fn hostile(mode: &str, limits: &str) -> (Transformed, PluginCounters) {
    let dir = with_mode(mode, limits, "fail-closed");
    let mgr = dir.manager();
    let mut s = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let msgs: Vec<Message> = (0..4).map(|n| message("c1", n, "hello")).collect();
    let out = s.transform(msgs.clone()).await;
    s.after_chat_sync(Default::default()).await;
    assert!(out.keep.is_empty(), "{mode}: {:?}", out.keep);
    assert_eq!(out.quarantined.len(), 4, "{mode}");
    for (q, m) in out.quarantined.iter().zip(&msgs) {
        assert_eq!(&q.message, m, "{mode}: the originals are quarantined");
    }
    (out, counters(&mgr, "fixture-abi2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_break_the_rules_are_faults() {
    for (mode, says) in [
        ("out-of-range", "names message 2 of a batch of 2"),
        ("twice", "names message 0 (\"c1-m0\") twice"),
        ("replace-id", "replace changed message \"c1-m0\""),
        ("replace-chat", "(chat \"c1-moved\")"),
        ("too-big", "over the 262144-byte cap"),
    ] {
        let (out, c) = hostile(mode, "max_batch_messages = 2").await;
        assert!(
            out.quarantined[0].reason.contains(says),
            "{mode}: {}",
            out.quarantined[0].reason
        );
        assert_eq!(
            (c.failures.fault, c.failures.total(), c.instantiations),
            (2, 2, 2),
            "{mode}: a fault per batch, each on a fresh instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_break_the_rules_trap_or_hit_the_deadline() {
    let (out, c) = hostile("getter-out-of-range", "").await;
    assert!(
        out.quarantined[0].reason.contains("out of range"),
        "{}",
        out.quarantined[0].reason
    );
    assert_eq!(c.failures.trap, 1);

    // A handle kept from the first batch: the host has taken that batch
    // back, so the second call cannot read it (a trap, or at most the
    // current batch through a recycled handle number, which the fixture
    // reports as an error). Either way the second batch is quarantined.
    let dir = with_mode("stale", "max_batch_messages = 2", "fail-closed");
    let mgr = dir.manager();
    let mut s = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let msgs: Vec<Message> = (0..4).map(|n| message("c1", n, "hello")).collect();
    let out = s.transform(msgs.clone()).await;
    assert_eq!(out.keep, msgs[..2]);
    assert_eq!(out.quarantined.len(), 2);
    assert_eq!(out.quarantined[0].message, msgs[2]);
    let c = counters(&mgr, "fixture-abi2");
    assert_eq!(
        c.failures.trap + c.failures.error,
        1,
        "{:?}: {}",
        c.failures,
        out.quarantined[0].reason
    );

    let started = Instant::now();
    let (_, c) = hostile("getter-flood", "deadline_ms = 50").await;
    assert_eq!(c.failures.deadline, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// An answer whose tags all point at one 64 KiB buffer in the plugin's
/// memory, 1,024 times: the canonical ABI would copy 64 MiB into the host
/// (under wasmtime's own 128 MiB cap) before the output cap could refuse
/// it. The call's lifting budget (for a batch of 2 with the default 256 KiB
/// `max_output_bytes`: 1 MiB + 2 × (256 + 4) KiB) refuses it while it is
/// copied: a fault per batch, nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_strings_sharing_one_buffer_is_refused_while_copied() {
    let dir = PluginDir::new().with_edited("fixture-lift-flood", |m| {
        with_limits(&m, "max_batch_messages = 2")
    });
    let mgr = dir.manager();
    let mut s = mgr
        .chain()
        .chat_scope(&context("abi"), &chat("c1", "Ana"))
        .await;
    let msgs: Vec<Message> = (0..4).map(|n| message("c1", n, "hello")).collect();
    let out = s.transform(msgs.clone()).await;
    assert!(out.keep.is_empty(), "{:?}", out.keep);
    assert_eq!(out.quarantined.len(), 4);
    for (q, m) in out.quarantined.iter().zip(&msgs) {
        assert_eq!(&q.message, m, "the originals are quarantined");
        assert!(
            q.reason
                .contains("copied more than 1581056 bytes to the host in one transfer"),
            "{}",
            q.reason
        );
    }
    let c = counters(&mgr, "fixture-lift-flood");
    assert_eq!(
        (c.failures.fault, c.failures.total(), c.instantiations),
        (2, 2, 2),
        "a fault per batch, each on a fresh instance"
    );
}
