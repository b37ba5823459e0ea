//! `wasync plugin check` and `wasync plugin run`: the real binary on the
//! real built plugins, each refusal code, and the run report's figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use wasync_tests::plugins::dist_dir;

fn wasync(args: &[&str]) -> Output {
    Command::new(wasync_tests::wasync_binary())
        .args(args)
        .env_remove("WASYNC_MAX_PLUGIN_BYTES")
        .env("RUST_LOG", "info")
        .output()
        .expect("run the wasync binary")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn built(name: &str) -> (PathBuf, PathBuf) {
    let dir = dist_dir();
    (
        dir.join(format!("{name}.wasm")),
        dir.join(format!("{name}.toml")),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch directory with files in it.
fn scratch(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn check_accepts_every_example_plugin_with_the_manifest_beside_it() {
    for name in ["redact-pii", "keyword-tagger", "chat-filter"] {
        let (wasm, toml) = built(name);
        let out = wasync(&["plugin", "check", s(&wasm)]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let report = stdout_json(&out);
        assert_eq!(report["ok"], true);
        assert_eq!(report["plugin"]["name"], name);
        let sha = wasync::plugins::wasm::sha256_hex(&std::fs::read(&wasm).unwrap());
        assert_eq!(report["plugin"]["sha256"], sha.as_str());
        assert!(
            report["imports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i.as_str().unwrap().starts_with("wasync:plugin/host@")),
            "{report}"
        );
        // An explicit --manifest works the same.
        let out = wasync(&["plugin", "check", s(&wasm), "--manifest", s(&toml)]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

#[test]
fn check_refuses_with_the_uploads_codes_and_exit_1() {
    let (wasm, toml) = built("keyword-tagger");
    let wasm_bytes = std::fs::read(&wasm).unwrap();
    let manifest = std::fs::read_to_string(&toml).unwrap();
    let unsigned: String = manifest
        .lines()
        .filter(|l| !l.starts_with("sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (fs_wasm, fs_toml) = built("fixture-fs-net");
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    let dir = scratch(&[
        ("broken.toml", b"name = [unclosed"),
        ("plain.toml", unsigned.as_bytes()),
        ("plain.wasm", &wasm_bytes),
        ("text.wasm", b"hello, not wasm"),
        ("core.wasm", b"\0asm\x01\0\0\0"),
        ("garbage.wasm", &garbage),
        (
            "full.toml",
            unsigned
                .replace("world = \"transformer\"", "world = \"full\"")
                .as_bytes(),
        ),
        (
            "wrong-sha.toml",
            format!("sha256 = \"{}\"\n{unsigned}", "0".repeat(64)).as_bytes(),
        ),
        (
            "memory.toml",
            unsigned
                .replace("[config]", "[limits]\nmemory_mib = 4096\n\n[config]")
                .as_bytes(),
        ),
    ]);
    let d = |f: &str| dir.path().join(f);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                s(&d("plain.wasm")).into(),
                "--manifest".into(),
                s(&d("broken.toml")).into(),
            ],
            "bad_manifest",
        ),
        (
            vec![
                s(&d("text.wasm")).into(),
                "--manifest".into(),
                s(&d("plain.toml")).into(),
            ],
            "not_wasm",
        ),
        (
            vec![
                s(&d("core.wasm")).into(),
                "--manifest".into(),
                s(&d("plain.toml")).into(),
            ],
            "core_module",
        ),
        (
            vec![
                s(&d("garbage.wasm")).into(),
                "--manifest".into(),
                s(&d("plain.toml")).into(),
            ],
            "invalid_component",
        ),
        (
            vec![
                s(&d("plain.wasm")).into(),
                "--manifest".into(),
                s(&d("full.toml")).into(),
            ],
            "world_mismatch",
        ),
        (
            vec![s(&fs_wasm).into(), "--manifest".into(), s(&fs_toml).into()],
            "world_mismatch",
        ),
        (
            vec![
                s(&d("plain.wasm")).into(),
                "--manifest".into(),
                s(&d("wrong-sha.toml")).into(),
            ],
            "sha256_mismatch",
        ),
        (
            vec![
                s(&d("plain.wasm")).into(),
                "--manifest".into(),
                s(&d("memory.toml")).into(),
            ],
            "bad_manifest",
        ),
        (
            vec![
                s(&d("plain.wasm")).into(),
                "--manifest".into(),
                s(&d("plain.toml")).into(),
                "--max-bytes".into(),
                "1024".into(),
            ],
            "component_too_large",
        ),
    ];
    for (args, code) in cases {
        let mut all = vec!["plugin", "check"];
        all.extend(args.iter().map(String::as_str));
        let out = wasync(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("({code})")),
            "{args:?}: want {code}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: a refusal prints no report"
        );
        assert!(!err.contains("panicked"), "{err}");
    }

    // Not a refusal but a command that cannot run: exit 2.
    let out = wasync(&["plugin", "check", s(&d("missing.wasm"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("(unreadable_file)"),
        "{}",
        stderr(&out)
    );
    // The default manifest is the .toml beside the component: none here.
    let out = wasync(&["plugin", "check", s(&d("text.wasm"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("text.toml"), "{}", stderr(&out));
    // Out-of-range size caps are refused by the parser.
    let out = wasync(&["plugin", "check", s(&wasm), "--max-bytes", "12"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn batch_file(dir: &Path) -> PathBuf {
    // A page as `GET .../messages` returns it: newest first, with sessionId.
    let page = serde_json::json!({
        "messages": [
            {"sessionId": "s1", "id": "m3", "chatId": "c1@c.us", "from": "a@c.us", "to": "b@c.us",
             "author": null, "body": "write to jane@example.com", "type": "chat", "timestamp": 1700000003000i64,
             "fromMe": false, "hasMedia": false, "ack": 3, "quotedId": null, "tags": [], "attributes": {}},
            {"sessionId": "s1", "id": "m2", "chatId": "c1@c.us", "from": "a@c.us", "to": "b@c.us",
             "author": null, "body": "nothing to see", "type": "chat", "timestamp": 1700000002000i64,
             "fromMe": false, "hasMedia": false, "ack": 3, "quotedId": null, "tags": [], "attributes": {}},
            {"sessionId": "s1", "id": "m1", "chatId": "c2@c.us", "from": "a@c.us", "to": "b@c.us",
             "author": null, "body": "call +49 151 23456789", "type": "chat", "timestamp": 1700000001000i64,
             "fromMe": false, "hasMedia": false, "ack": 3, "quotedId": null, "tags": [], "attributes": {}}
        ],
        "nextCursor": null
    });
    let path = dir.join("batch.json");
    std::fs::write(&path, page.to_string()).unwrap();
    path
}

#[test]
fn run_reports_outcomes_instructions_and_memory_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch_file(dir.path());
    let (wasm, _) = built("redact-pii");
    let out = wasync(&[
        "plugin",
        "run",
        s(&wasm),
        "--input",
        s(&batch),
        "--repeat",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = stdout_json(&out);
    assert_eq!(r["failed"], false);
    assert!(
        r["onFailure"].as_str().unwrap().starts_with("fail-closed"),
        "{r}"
    );
    let chats = r["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 2, "one report per chat: {r}");
    let c1 = &chats[0];
    assert_eq!(c1["chatId"], "c1@c.us");
    // Oldest first, as a sync hands a chat over.
    let ids: Vec<&str> = c1["stored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m2", "m3"]);
    assert_eq!(c1["stored"][1]["body"], "write to [email]");
    let call = &c1["calls"][0];
    assert_eq!(call["call"], "transform-batch");
    assert_eq!(call["result"], "ok");
    assert_eq!(call["messages"], 2);
    assert!(call["instructions"].as_u64().unwrap() > 1000, "{call}");
    assert!(call["memoryBytes"].as_u64().unwrap() >= 64 * 1024, "{call}");
    assert!(
        call["instantiateMs"].as_f64().is_some(),
        "the chat's first call instantiates"
    );
    let outcomes: Vec<(&str, &str)> = call["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("m2", "keep"), ("m3", "replace")]);
    assert_eq!(chats[1]["stored"][0]["body"], "call [phone]");
    let repeat = &r["repeat"];
    assert_eq!(repeat["runs"], 3);
    assert_eq!(repeat["messages"], 3);
    assert!(
        repeat["usPerMessageMedian"].as_f64().unwrap() > 0.0,
        "{repeat}"
    );
    // Deterministic: the same count per message every run.
    let per = repeat["instructionsPerMessage"].as_f64().unwrap();
    let first: u64 = chats
        .iter()
        .map(|c| c["calls"][0]["instructions"].as_u64().unwrap())
        .sum();
    assert!((per - first as f64 / 3.0).abs() < 1e-6, "{per} vs {first}");

    // The same batch from standard input.
    let mut child = Command::new(wasync_tests::wasync_binary())
        .args(["plugin", "run", s(&wasm), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&batch).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["chats"][0]["stored"][1]["body"],
        "write to [email]"
    );
}

#[test]
fn a_looping_plugin_is_reported_as_deadline_with_its_policy_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch_file(dir.path());
    let (wasm, _) = built("fixture-loop");
    let out = wasync(&["plugin", "run", s(&wasm), "--input", s(&batch)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r = stdout_json(&out);
    assert_eq!(r["failed"], true);
    let call = &r["chats"][0]["calls"][0];
    assert_eq!(call["result"], "deadline", "{call}");
    assert!(
        call["error"].as_str().unwrap().contains("deadline"),
        "{call}"
    );
    // Stopped within a tick or two of its 100 ms deadline.
    let wall = call["wallMs"].as_f64().unwrap();
    assert!((100.0..1000.0).contains(&wall), "{wall}");
    // Guest code was stopped by epoch interruption: its store is still
    // there, so its instructions are counted too.
    assert!(call["instructions"].as_u64().unwrap() > 0, "{call}");
    // Fail-closed: nothing stored, the batch in quarantine, with the reason.
    assert_eq!(r["chats"][0]["stored"].as_array().unwrap().len(), 0);
    let q = r["chats"][0]["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 2);
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("fixture-loop failed (deadline)"),
        "{q:?}"
    );
}

#[test]
fn a_chat_hook_run_shows_each_decision_and_the_limits_applied() {
    let dir = tempfile::tempdir().unwrap();
    let chats = serde_json::json!({"chats": [
        {"id": "news@c.us", "name": "Daily newsletter", "isGroup": false, "unreadCount": 0,
         "archived": false, "pinned": false, "lastMessageAt": null},
        {"id": "old@c.us", "name": "Old", "archived": true},
        {"id": "c1@c.us", "name": "Friend"}
    ]});
    let chat_path = dir.path().join("chats.json");
    std::fs::write(&chat_path, chats.to_string()).unwrap();
    let batch = batch_file(dir.path());
    let (wasm, _) = built("chat-filter");
    let out = wasync(&[
        "plugin",
        "run",
        s(&wasm),
        "--chat",
        s(&chat_path),
        "--input",
        s(&batch),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = stdout_json(&out);
    let by_id = |id: &str| {
        r["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chatId"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {r}"))
            .clone()
    };
    assert!(by_id("news@c.us")["decision"]["skip"].is_string(), "{r}");
    assert!(by_id("old@c.us")["decision"]["skip"].is_string(), "{r}");
    let friend = by_id("c1@c.us");
    assert_eq!(
        friend["decision"]["proceed"]["maxMessages"], 200,
        "{friend}"
    );
    assert_eq!(friend["stored"].as_array().unwrap().len(), 2);
    let calls: Vec<&str> = friend["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call"].as_str().unwrap())
        .collect();
    assert_eq!(calls, ["before-chat-sync", "after-chat-sync"]);
    // A chat of the messages without a chat object still runs.
    assert!(by_id("c2@c.us")["decision"]["proceed"].is_object());
}

#[test]
fn run_says_what_is_wrong_with_its_input() {
    let dir = scratch(&[
        ("not-json.json", b"{"),
        ("object.json", br#"{"id": "m1"}"#),
        ("no-chat.json", br#"[{"id": "m1", "body": "x"}]"#),
    ]);
    let (wasm, _) = built("redact-pii");
    for (file, says) in [
        ("not-json.json", "not JSON"),
        ("object.json", "`messages` array"),
        ("no-chat.json", "message 1: missing field `chatId`"),
        ("missing.json", "cannot read"),
    ] {
        let path = dir.path().join(file);
        let out = wasync(&["plugin", "run", s(&wasm), "--input", s(&path)]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{file}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    // A transformer needs messages.
    let out = wasync(&["plugin", "run", s(&wasm)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("(usage)"), "{}", stderr(&out));
}

#[test]
fn help_lists_the_commands_and_completions_are_printed() {
    let out = wasync(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "plugin", "completions", "--config"] {
        assert!(help.contains(word), "{word} not in: {help}");
    }
    let out = wasync(&["plugin", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("check") && help.contains("run"), "{help}");
    let out = wasync(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("_wasync"));
    let out = wasync(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let out = wasync(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wasync "));
}

/// The examples start with the memory a chat needs (2 MiB of initial
/// memory, `plugins/.cargo/config.toml`): an instance that grows costs the
/// host two `mprotect` calls and TLB shootdowns per chat (docs/plugins.md §3).
#[test]
fn the_examples_handle_a_chat_without_growing_their_memory() {
    let bodies = [
        "call me on +44 7700 900123 tomorrow, urgent",
        "mail bob@example.com the invoice asap",
        "lunch at noon? bring the report and the slides please",
        "ok",
    ];
    let messages: Vec<Value> = (0..200)
        .map(|i| {
            serde_json::json!({
                "sessionId": "s1", "id": format!("m{i}"), "chatId": "c1@c.us", "from": "a@c.us",
                "to": "b@c.us", "author": null, "body": bodies[i % bodies.len()], "type": "chat",
                "timestamp": 1_700_000_000_000i64 + i as i64, "fromMe": false, "hasMedia": false,
                "ack": 3, "quotedId": null, "tags": [], "attributes": {}
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("chat.json");
    std::fs::write(&input, Value::from(messages).to_string()).unwrap();
    for name in ["redact-pii", "keyword-tagger"] {
        let (wasm, _) = built(name);
        let out = wasync(&["plugin", "run", s(&wasm), "--input", s(&input)]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let r = stdout_json(&out);
        let call = &r["chats"][0]["calls"][0];
        assert_eq!(call["messages"], 200, "{name}: one call for the chat");
        assert!(
            call["outcomes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["outcome"] == "replace"),
            "{name} changed messages"
        );
        assert_eq!(
            call["memoryBytes"].as_u64(),
            Some(2 * 1024 * 1024),
            "{name}: its initial 2 MiB, never grown"
        );
    }
}
