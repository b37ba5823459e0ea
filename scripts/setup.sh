#!/usr/bin/env bash
# Installs what the test suites need. Idempotent; safe on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Guest plugins (wasm32-wasip2) for the plugin tests: plugins/dist/.
scripts/build-plugins.sh
