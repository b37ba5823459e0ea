//! The JavaScript plugin (`plugins/js/link-tagger`, built with ComponentizeJS
//! by `scripts/build-plugins.sh`): the same WIT world as the Rust plugins,
//! through the adapter, through a real host's sync, and uploaded with
//! `POST /plugins`.
//!
//! The simulator never writes links, so the syncs put `fixture-append` first
//! in the chain: it appends known links to bodies holding chosen words, and
//! `link-tagger` then has to find them.

use base64::Engine as _;
use serde_json::{Value, json};
use wasync::domain::{Message, SessionId};
use wasync::plugins::PluginHost;
use wasync_tests::TestHost;
use wasync_tests::plugins::{PluginDir, built, chat, compile_once, context, host_with, message};

const JS: &str = "link-tagger";

/// `fixture-append`'s rules for the syncs: (word, appended text, the domain
/// `link-tagger` must report for it, or none when the text holds no link).
const APPENDED: [(&str, &str, Option<&str>); 4] = [
    (
        "report",
        "https://Docs.Example.com/report?id=1",
        Some("docs.example.com"),
    ),
    ("photo", "(www.photos.example/p/1).", Some("photos.example")),
    (
        "invoice",
        "http://billing.example.org:8080/i,",
        Some("billing.example.org"),
    ),
    ("lunch", "see lunch.example or mailto:x@lunch.example", None),
];

/// A manager with `link-tagger` alone, its manifest edited by `edit`.
fn manager(edit: impl FnOnce(String) -> String) -> wasync::plugins::wasm::PluginManager {
    compile_once(JS);
    PluginDir::new().with_edited(JS, edit).manager()
}

fn counters(mgr: &wasync::plugins::wasm::PluginManager) -> wasync::plugins::wasm::PluginCounters {
    mgr.counters()
        .into_iter()
        .find(|c| c.plugin == JS)
        .expect("link-tagger counters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_tagger_tags_links_and_lists_their_domains() {
    let mgr = manager(|m| m);
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ana"))
        .await;
    let mut earlier = message("c1", 3, "and https://b.example/x again www.a.example");
    earlier.tags.push("billing".into());
    earlier
        .attributes
        .insert("links".into(), "a.example".into());
    earlier.attributes.insert("pii.redacted".into(), "1".into());
    let mut no_body = message("c1", 4, "");
    no_body.body = None;
    let out = scope
        .transform(vec![
            message(
                "c1",
                0,
                "see https://Example.com/a?b=1, then www.wasync.dev/docs. Also HTTP://www.example.com",
            ),
            message("c1", 1, "no link, just ana@example.com and example.com"),
            message("c1", 2, "http://localhost:3000 and ftp://files.example"),
            earlier,
            no_body,
        ])
        .await;
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    let k = &out.keep;
    assert_eq!(k.len(), 5);
    assert_eq!(k[0].tags, ["link"]);
    assert_eq!(k[0].attributes["links"], "example.com,wasync.dev");
    assert_eq!(
        k[0].body.as_deref(),
        Some(
            "see https://Example.com/a?b=1, then www.wasync.dev/docs. Also HTTP://www.example.com"
        ),
        "the body is handed back as it came"
    );
    for m in &k[1..=2] {
        assert!(m.tags.is_empty() && m.attributes.is_empty(), "{m:?}");
    }
    // Earlier plugins' tags and attributes stay; the domains merge.
    assert_eq!(k[3].tags, ["billing", "link"]);
    assert_eq!(k[3].attributes["links"], "a.example,b.example");
    assert_eq!(k[3].attributes["pii.redacted"], "1");
    assert!(k[4].tags.is_empty() && k[4].body.is_none());
    // Everything else comes back untouched (ids, timestamps as s64, ...).
    let want = message("c1", 0, "");
    assert_eq!(
        (
            &k[0].id,
            &k[0].chat_id,
            &k[0].from,
            k[0].timestamp,
            k[0].from_me,
            k[0].ack
        ),
        (
            &want.id,
            &want.chat_id,
            &want.from,
            want.timestamp,
            want.from_me,
            want.ack
        )
    );
    assert_eq!(out.modified, 2);
    let c = counters(&mgr);
    assert_eq!((c.messages_in, c.replaced, c.kept), (5, 2, 3), "{c:?}");
    assert_eq!(c.failures.total(), 0, "{c:?}");
    // Its config line went through the host's `log` import.
    assert_eq!(c.log_lines, 1, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_tagger_config_comes_from_the_manifest() {
    let mgr = manager(|m| {
        m.replace("tag = \"link\"", "tag = \"has-url\"")
            .replace("attribute = \"links\"", "attribute = \"sites\"")
            .replace("ignore-domains = []", "ignore-domains = [\"example.org\"]")
            .replace("max-domains = \"20\"", "max-domains = \"2\"")
    });
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ana"))
        .await;
    let out = scope
        .transform(vec![
            message("c1", 0, "https://docs.example.org and www.example.org only"),
            message("c1", 1, "www.a.example www.b.example www.c.example"),
        ])
        .await;
    assert!(out.keep[0].tags.is_empty(), "{:?}", out.keep[0]);
    assert_eq!(out.keep[1].tags, ["has-url"]);
    assert_eq!(out.keep[1].attributes["sites"], "a.example,b.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_a_plugin_error_and_fail_open_keeps_the_messages() {
    let mgr = manager(|m| m.replace("max-domains = \"20\"", "max-domains = \"lots\""));
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ana"))
        .await;
    let out = scope
        .transform(vec![message("c1", 0, "see https://example.com")])
        .await;
    assert_eq!(out.keep.len(), 1);
    assert_eq!(out.keep[0].tags, ["plugin-skipped:link-tagger"]);
    let c = counters(&mgr);
    assert_eq!(c.failures.error, 1, "{c:?}");
    assert_eq!(c.failures.trap, 0, "a reported error, not a trap: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_body_handed_back_unchanged_is_stored_whole() {
    // A generous deadline: this is about what is stored, not speed (a debug
    // build's host side is slow with 64 KiB strings).
    let mgr = manager(|m| m.replace("memory_mib = 32", "memory_mib = 32\ndeadline_ms = 5000"));
    let mut scope = mgr
        .chain()
        .chat_scope(&context("s1"), &chat("c1", "Ana"))
        .await;
    let long = format!("www.example.com {}", "é".repeat(40_000));
    let out = scope
        .transform(vec![message("c1", 0, &long), message("c1", 1, "short")])
        .await;
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    assert_eq!(out.keep[0].tags, ["link"]);
    assert_eq!(out.keep[0].attributes["links"], "example.com");
    assert_eq!(
        out.keep[0].body.as_deref().map(str::len),
        Some(long.len()),
        "the host keeps the whole body"
    );
    assert!(out.keep[1].tags.is_empty());
}

fn fast(mut sim: Value) -> Value {
    let o = sim.as_object_mut().unwrap();
    o.entry("qrEveryMs").or_insert(json!(40));
    o.entry("scanAfterMs").or_insert(json!(100));
    o.entry("fetchLatencyMs").or_insert(json!(0));
    sim
}

/// A plugin directory with `fixture-append` set up with [`APPENDED`], plus
/// `link-tagger` unless it is to be uploaded.
fn sync_plugins(with_js: bool) -> PluginDir {
    let rules: Vec<String> = APPENDED
        .iter()
        .map(|(word, text, _)| format!("{word} {text}"))
        .collect();
    let dir = PluginDir::new().with_edited("fixture-append", |m| {
        m.replace("rules = []", &format!("rules = {}", json!(rules)))
    });
    if with_js {
        compile_once(JS);
        dir.with(JS)
    } else {
        dir
    }
}

/// Syncs a simulated account and checks every stored message against what
/// the chain must have decided: `fixture-append`'s links, and exactly the
/// tag and domains `link-tagger` owes them. Returns how many were tagged.
async fn sync_and_check(host: &TestHost, session: &str) -> usize {
    host.create_sim(session, fast(json!({"chats": 8, "messagesPerChat": 40})))
        .await;
    let run = host.wait_sync_done(session).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["quarantined"], json!(0), "{run}");
    let store = host.app().store();
    let sid = SessionId::parse(session).unwrap();
    let chats = store.list_chats(&sid, 100, None).await.unwrap().chats;
    let (mut stored, mut tagged) = (0, 0);
    for c in &chats {
        for m in store
            .list_messages(&sid, &c.chat.id, 100, None)
            .await
            .unwrap()
        {
            stored += 1;
            tagged += usize::from(check_message(&m.message));
        }
    }
    assert_eq!(stored, 8 * 40, "every message stored");
    assert!(tagged > 0, "some simulated bodies hold an appended link");
    assert!(tagged < stored, "some hold none");
    tagged
}

/// Checks one stored message; true when it carries a link.
fn check_message(m: &Message) -> bool {
    let body = m.body.clone().unwrap_or_default();
    assert!(
        !m.tags.iter().any(|t| t.starts_with("plugin-skipped")),
        "{m:?}"
    );
    // What the simulator wrote: the body before the first appended text.
    let original = APPENDED
        .iter()
        .filter_map(|(_, text, _)| body.find(text))
        .min()
        .map_or(body.as_str(), |at| body[..at].trim_end());
    let mut domains = Vec::new();
    for (word, text, domain) in APPENDED {
        // `fixture-append` ran: its text is there iff the word was.
        let appended = body.contains(text);
        assert_eq!(
            original.split(' ').any(|w| w == word),
            appended,
            "{word}: {body:?}"
        );
        if appended && let Some(d) = domain {
            domains.push(d);
        }
    }
    let has_link = !domains.is_empty();
    assert_eq!(
        m.tags.contains(&"link".to_string()),
        has_link,
        "{body:?} {:?}",
        m.tags
    );
    assert_eq!(
        m.attributes.get("links").map(String::as_str),
        has_link.then(|| domains.join(",")).as_deref(),
        "{body:?} {:?}",
        m.attributes
    );
    has_link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_stores_what_the_javascript_plugin_decided() {
    let dir = sync_plugins(true);
    let host = host_with(&dir).await;

    let (status, body) = host.get("/plugins").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fixture-append", JS], "chain order: {body}");
    let js = &body["plugins"][1];
    assert_eq!(js["world"], "transformer", "{js}");
    assert_eq!(js["onError"], "fail-open", "{js}");

    let tagged = sync_and_check(&host, "jsync").await;

    let (_, body) = host.get("/plugins").await;
    let c = body["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["plugin"] == JS)
        .unwrap_or_else(|| panic!("no counters for {JS}: {body}"));
    assert_eq!(c["messagesIn"], json!(8 * 40), "{c}");
    assert_eq!(c["replaced"], json!(tagged), "{c}");
    assert_eq!(c["instantiations"], json!(8), "one instance per chat: {c}");
    assert_eq!(c["failures"]["trap"], json!(0), "{c}");
    assert_eq!(c["failures"]["deadline"], json!(0), "{c}");
    assert_eq!(c["failures"]["error"], json!(0), "{c}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_plugin_uploads_with_post_plugins_and_runs_in_the_next_sync() {
    let dir = sync_plugins(false);
    compile_once(JS);
    let host = host_with(&dir).await;
    let (toml, wasm) = built(JS);
    let component = base64::engine::general_purpose::STANDARD.encode(&wasm);
    let (status, body) = host
        .post(
            "/plugins",
            json!({"manifest": toml, "component": component}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], JS, "{body}");
    assert_eq!(body["sizeBytes"], json!(wasm.len()), "{body}");
    let (status, body) = host.get(&format!("/plugins/{JS}")).await;
    assert_eq!(status, 200, "{body}");

    sync_and_check(&host, "jsup").await;
    host.stop().await;
}
