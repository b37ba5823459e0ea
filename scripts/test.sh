#!/usr/bin/env bash
# Starts the services the suites need, runs every suite, stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."

# The plugin tests load the components scripts/build-plugins.sh built.
export WASYNC_TEST_PLUGINS_DIR="$PWD/plugins/dist"

# The CLI test runs the real binary.
cargo build -p wasync --bin wasync
cargo test --workspace --no-fail-fast
# The benchmarks' smoke mode keeps the bench code working (no figures kept).
cargo run -p wasync-tests --bin bench -- --quick --out target/bench-quick.md
