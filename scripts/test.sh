#!/usr/bin/env bash
# Starts the services the suites need, runs every suite, stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."

# Services are stopped on any exit, also when a suite fails.
source scripts/mongo-test-server.sh
cleanup() {
    mongo_test_server_stop
    scripts/rabbitmq.sh stop
}
trap cleanup EXIT

# MongoDB-wire server: exports WASYNC_TEST_MONGODB_URI and WASYNC_SECANTUSD.
mongo_test_server_start
# RabbitMQ for the events suite (stopped afterwards only if started here).
scripts/rabbitmq.sh start
export WASYNC_TEST_AMQP_URL="${WASYNC_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

# The plugin tests load the components scripts/build-plugins.sh built.
export WASYNC_TEST_PLUGINS_DIR="$PWD/plugins/dist"

# One build of every target (the CLI test and the bench's P7 run the real
# `wasync` binary): building the binary on its own would build the host
# library a second time, with other features unified.
cargo build --workspace --all-targets
# The plugin kit: native tests of the SDK and the plugins, and a plugin from
# plugin-new (in a throwaway copy) built and accepted by `wasync plugin check`.
scripts/plugin-kit-check.sh
cargo test --workspace --no-fail-fast
# The JavaScript plugins' own logic tests, in Node (npm test: node --test).
for js in plugins/js/*/; do
    (cd "$js" && npm test --silent)
done
# The benchmarks' smoke mode keeps the bench code working (no figures kept),
# run from where cargo built it (CARGO_TARGET_DIR may point elsewhere).
target_dir="$(scripts/cargo-target-dir.sh)"
"$target_dir/debug/bench" --quick --out "$target_dir/bench-quick.md"
