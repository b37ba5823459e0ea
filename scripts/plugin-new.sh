#!/usr/bin/env bash
# Creates a plugin from plugins/template: a transformer on the plugin SDK
# (plugins/sdk) with a native test. Adds it to the plugins workspace and
# builds it.
#
# Usage: scripts/plugin-new.sh [--workspace DIR] NAME   (NAME: a-z, 0-9 and '-')
#
# By default the plugin goes to plugins/NAME and every plugin is rebuilt, so
# plugins/dist/NAME.wasm + NAME.toml are ready to copy into
# WASYNC_PLUGINS_DIR or upload with POST /plugins.
#
# --workspace DIR: make it in another plugins workspace instead, a copy of
# plugins/ holding at least Cargo.toml, Cargo.lock, sdk/ and template/, with
# wit/ beside it (scripts/plugin-kit-check.sh tries the kit in a throwaway
# copy this way). Only the new plugin is built, to
# <target dir>/wasm32-wasip2/release/NAME.wasm (with '-' as '_').
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
ws="$scripts/../plugins"
if [[ "${1:-}" == --workspace ]]; then
    [[ -d "${2:-}" ]] || { echo "plugin-new: --workspace needs a directory" >&2; exit 2; }
    ws=$2
    shift 2
fi
ws=$(cd "$ws" && pwd)
in_repo=$([[ "$ws" == "$(cd "$scripts/../plugins" && pwd)" ]] && echo 1 || echo "")
cd "$ws"

name=${1:-}
if [[ "$#" -ne 1 || ! "$name" =~ ^[a-z0-9][a-z0-9-]{0,63}$ ]]; then
    echo "usage: plugin-new [--workspace DIR] NAME  (1-64 of a-z, 0-9, '-'; starting with a letter or digit)" >&2
    exit 2
fi
case "$name" in
    template | fixtures | dist | target | sdk | wasync-plugin-sdk | js)
        echo "plugin-new: $name is reserved" >&2
        exit 2
        ;;
esac
if [[ -e "$name" ]]; then
    echo "plugin-new: $ws/$name already exists" >&2
    exit 1
fi

cp -r template "$name"
for f in "$name/Cargo.toml" "$name/plugin.toml" "$name/src/lib.rs"; do
    sed -i "s/__NAME__/$name/g" "$f"
done
# Add it to the workspace members, right after `members = [`.
sed -i "0,/^members = \[/s//members = [\n    \"$name\",/" Cargo.toml

if [[ -n "$in_repo" ]]; then
    echo "plugin-new: created plugins/$name; building..."
    "$scripts/build-plugins.sh"
    echo "plugin-new: ready: plugins/dist/$name.wasm and plugins/dist/$name.toml"
    echo "plugin-new: test it with: cargo test --manifest-path plugins/Cargo.toml -p $name"
else
    echo "plugin-new: created $ws/$name; building it..."
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2
    fi
    cargo build --release --target wasm32-wasip2 -p "$name"
    echo "plugin-new: built $("$scripts/cargo-target-dir.sh")/wasm32-wasip2/release/${name//-/_}.wasm"
fi
