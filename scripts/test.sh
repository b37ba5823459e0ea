#!/usr/bin/env bash
# Starts the services the suites need, runs every suite, stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."

# Services are stopped on any exit, also when a suite fails.
source scripts/mongo-test-server.sh
cleanup() {
    mongo_test_server_stop
}
trap cleanup EXIT

mongo_test_server_start

cargo test --workspace --no-fail-fast
