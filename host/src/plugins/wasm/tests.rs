//! The manager: installs, upgrades cut by a crash, the memory ceiling.

use super::*;

/// A plugin built by `scripts/build-plugins.sh` (as the integration
/// tests find them).
fn built(name: &str) -> (String, Vec<u8>) {
    let dist = std::env::var_os("WASYNC_TEST_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    let read = |ext: &str| dist.join(format!("{name}.{ext}"));
    let toml = std::fs::read_to_string(read("toml")).unwrap_or_else(|e| {
        panic!(
            "{} ({e}): run scripts/build-plugins.sh",
            read("toml").display()
        )
    });
    (toml, std::fs::read(read("wasm")).expect("built component"))
}

fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::global(RuntimeOptions {
        cache_dir: Some(std::env::temp_dir().join("wasync-test-plugin-cache")),
        ..RuntimeOptions::default()
    })
    .expect("runtime")
}

fn open(dir: &Path) -> Result<PluginManager, PluginError> {
    PluginManager::open(runtime(), dir, ManagerOptions::default())
}

fn unsigned(toml: &str) -> String {
    toml.lines()
        .filter(|l| !l.starts_with("sha256"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_cut_between_component_and_manifest_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let (toml, v1) = built("keyword-tagger");
    // Version 2: another component under the same name and world.
    let (_, v2) = built("fixture-wrong-length");
    let (sha1, sha2) = (sha256_hex(&v1), sha256_hex(&v2));
    open(dir.path())
        .unwrap()
        .install(&toml, v1.clone())
        .await
        .expect("install v1");

    // The upgrade's first step, then the crash: the manifest on disk
    // still pins v1, and v1 is still there to load.
    stage_component(dir.path(), "keyword-tagger", &sha2, &v2).unwrap();
    let mgr = open(dir.path()).expect("the host starts after the crash");
    assert_eq!(mgr.list()[0].sha256, sha1);

    // The upgrade run again completes and sweeps the old component.
    let info = mgr.install(&unsigned(&toml), v2).await.expect("upgrade");
    assert_eq!(info.sha256, sha2);
    let mgr = open(dir.path()).expect("the host starts after the upgrade");
    assert_eq!(mgr.list()[0].sha256, sha2);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("keyword-tagger.{sha2}.wasm"),
            "keyword-tagger.toml".into()
        ]
    );

    // Removal: the manifest goes first, then every component.
    mgr.remove("keyword-tagger").await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_hand_copied_component_is_found_beside_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest::parse(&format!(
        "sha256 = \"{}\"\nname = \"p\"\nversion = \"1\"\nworld = \"transformer\"\n",
        "a".repeat(64)
    ))
    .unwrap();
    assert_eq!(component_path(dir.path(), &m), dir.path().join("p.wasm"));
    let versioned = stage_component(dir.path(), "p", &"a".repeat(64), b"x").unwrap();
    assert_eq!(component_path(dir.path(), &m), versioned);
    // Sweeping never touches another plugin's files.
    std::fs::write(dir.path().join("p-2.wasm"), b"y").unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"z").unwrap();
    sweep_components(dir.path(), "p", Some(&versioned));
    assert!(versioned.is_file() && dir.path().join("p-2.wasm").is_file());
    assert!(!dir.path().join("p.wasm").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_the_hosts_ceiling_is_refused_at_upload() {
    let dir = tempfile::tempdir().unwrap();
    let mgr = open(dir.path()).unwrap();
    let (toml, wasm) = built("keyword-tagger");
    let ceiling = mgr.runtime().max_memory_mib();
    let with_memory = |mib: u32| {
        toml.replace(
            "[config]",
            &format!("[limits]\nmemory_mib = {mib}\n\n[config]"),
        )
    };
    let err = mgr
        .install(&with_memory(ceiling + 1), wasm.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::BadManifest { reason } if reason.contains("memory_mib")),
        "{err}"
    );
    assert_eq!(err.http_status(), 400);
    assert!(mgr.list().is_empty());
    let info = mgr
        .install(&with_memory(ceiling), wasm.clone())
        .await
        .unwrap();
    assert_eq!(info.limits.memory_mib, ceiling);

    // One already in the directory (an older host took it) still
    // starts, at the ceiling.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keyword-tagger.wasm"), &wasm).unwrap();
    std::fs::write(
        dir.path().join("keyword-tagger.toml"),
        with_memory(ceiling * 2),
    )
    .unwrap();
    let mgr = open(dir.path()).expect("starts");
    assert_eq!(mgr.list()[0].limits.memory_mib, ceiling);
}
