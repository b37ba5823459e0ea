#!/usr/bin/env bash
# Prints the directory cargo builds into for the workspace around the current
# directory: `target/` beside its Cargo.toml unless CARGO_TARGET_DIR (or a
# cargo config's build.target-dir) says otherwise. Scripts find artifacts
# through it instead of assuming `target/`.
set -euo pipefail
meta=$(cargo metadata --format-version 1 --no-deps)
dir=$(sed -n 's/.*"target_directory":"\([^"\\]*\)".*/\1/p' <<<"$meta")
if [[ -z "$dir" ]]; then
    echo "cargo-target-dir: no target_directory in \`cargo metadata\` (a path with '\"' or '\\' is not supported)" >&2
    exit 1
fi
echo "$dir"
