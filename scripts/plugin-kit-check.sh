#!/usr/bin/env bash
# Checks the plugin developer kit the way a plugin author uses it, without
# changing the repository:
#   1. the native tests of the SDK and of every plugin (`cargo test` on the
#      plugins workspace: no wasm, no host);
#   2. `plugin-new` in a throwaway copy of the plugins workspace (sdk,
#      template, Cargo.toml, Cargo.lock, .cargo/config.toml, wit): the new
#      plugin builds for wasm32-wasip2, its own test passes natively,
#      `wasync plugin check` accepts the component with its manifest, as an
#      upload would, and `wasync plugin run` shows it built with the
#      workspace's settings (its 2 MiB of initial memory, not grown).
# Needs the debug `wasync` binary: scripts/test.sh builds it first.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

wasync="$(scripts/cargo-target-dir.sh)/debug/wasync"
if [[ ! -x "$wasync" ]]; then
    echo "plugin-kit-check: $wasync not found (cargo build -p wasync)" >&2
    exit 1
fi
# Guest builds use the plugins workspace's target dir, where
# scripts/build-plugins.sh already built the dependencies.
export CARGO_TARGET_DIR="$repo/plugins/target"
unchanged_before=$(git status --porcelain 2>/dev/null || true)

echo "plugin-kit-check: native tests of the SDK and the plugins"
cargo test --manifest-path plugins/Cargo.toml --workspace

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
cp -r wit "$tmp/wit"
cp -r plugins/sdk plugins/template plugins/Cargo.lock plugins/.cargo "$tmp/plugins/"
# The workspace manifest, with the SDK as its only member.
sed '/^members = \[/,/^\]/c\members = [\n    "sdk",\n]' plugins/Cargo.toml >"$tmp/plugins/Cargo.toml"

name=plugin-kit-check
echo "plugin-kit-check: plugin-new $name in a copy of the plugins workspace"
scripts/plugin-new.sh --workspace "$tmp/plugins" "$name"
cargo test --manifest-path "$tmp/plugins/Cargo.toml" -p "$name"

wasm="$CARGO_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm"
# The manifest as scripts/build-plugins.sh lays it out: with the sha256.
{
    echo "sha256 = \"$(sha256sum "$wasm" | cut -d' ' -f1)\""
    cat "$tmp/plugins/$name/plugin.toml"
} >"$tmp/$name.toml"
echo "plugin-kit-check: wasync plugin check"
"$wasync" plugin check "$wasm" --manifest "$tmp/$name.toml"

echo "plugin-kit-check: wasync plugin run on one message"
cat >"$tmp/chat.json" <<'JSON'
[{"sessionId": "s1", "id": "m1", "chatId": "c1@c.us", "from": "a@c.us", "to": "b@c.us",
  "author": null, "body": "hello", "type": "chat", "timestamp": 1700000000000,
  "fromMe": false, "hasMedia": false, "ack": 3, "quotedId": null, "tags": [], "attributes": {}}]
JSON
"$wasync" plugin run "$wasm" --manifest "$tmp/$name.toml" --input "$tmp/chat.json" >"$tmp/run.json"
memory=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chats"][0]["calls"][0]["memoryBytes"])' "$tmp/run.json")
if [[ "$memory" != 2097152 ]]; then
    echo "plugin-kit-check: the new plugin's memory is $memory bytes, not the workspace's 2 MiB" \
        "(plugins/.cargo/config.toml not applied?)" >&2
    exit 1
fi

if [[ "$(git status --porcelain 2>/dev/null || true)" != "$unchanged_before" ]]; then
    echo "plugin-kit-check: the repository changed:" >&2
    git status --short >&2
    exit 1
fi
echo "plugin-kit-check: ok"
