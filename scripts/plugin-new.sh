#!/usr/bin/env bash
# Creates plugins/NAME from plugins/template, adds it to the plugins
# workspace and builds it, so `plugins/dist/NAME.wasm` + `NAME.toml` are
# ready to copy into WASYNC_PLUGINS_DIR or upload with POST /plugins.
# Usage: scripts/plugin-new.sh NAME   (NAME: a-z, 0-9 and '-')
set -euo pipefail
cd "$(dirname "$0")/../plugins"

name=${1:-}
if [[ ! "$name" =~ ^[a-z0-9][a-z0-9-]{0,63}$ ]]; then
    echo "usage: plugin-new NAME  (1-64 of a-z, 0-9, '-'; starting with a letter or digit)" >&2
    exit 2
fi
if [[ "$name" == template || "$name" == fixtures || "$name" == dist || "$name" == target || "$name" == js ]]; then
    echo "plugin-new: $name is reserved" >&2
    exit 2
fi
if [[ -e "$name" ]]; then
    echo "plugin-new: plugins/$name already exists" >&2
    exit 1
fi

cp -r template "$name"
for f in "$name/Cargo.toml" "$name/plugin.toml" "$name/src/lib.rs"; do
    sed -i "s/__NAME__/$name/g" "$f"
done
# Add it to the workspace members, right after `members = [`.
sed -i "0,/^members = \[/s//members = [\n    \"$name\",/" Cargo.toml

echo "plugin-new: created plugins/$name; building..."
../scripts/build-plugins.sh
echo "plugin-new: ready: plugins/dist/$name.wasm and plugins/dist/$name.toml"
