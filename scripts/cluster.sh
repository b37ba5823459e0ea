#!/usr/bin/env bash
# `just cluster`: three wasync hosts on one machine, sharing one MongoDB-wire
# server (SecantusDB, started here) and the local RabbitMQ. Each host has its
# own port (3001-3003), data directory (data/cluster/hN) and host id.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
# shellcheck source=scripts/mongo-test-server.sh
source scripts/mongo-test-server.sh
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    mongo_test_server_stop
    scripts/rabbitmq.sh stop
}
trap cleanup EXIT INT TERM

mongo_test_server_start
scripts/rabbitmq.sh start
cargo build --release -p wasync --bin wasync
bin="$(scripts/cargo-target-dir.sh)/release/wasync"

for n in 1 2 3; do
    mkdir -p "data/cluster/h$n"
    WASYNC_HOST_ID="h$n" \
    WASYNC_LISTEN="127.0.0.1:300$n" \
    WASYNC_DATA_DIR="data/cluster/h$n" \
    MONGODB_URI="$WASYNC_TEST_MONGODB_URI" \
    MONGODB_DB="wasync_cluster" \
    AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" \
        "$bin" >"data/cluster/h$n.log" 2>&1 &
    pids+=("$!")
done
for n in 1 2 3; do
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:300$n/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:300$n/healthz" >/dev/null || { echo "host h$n did not start; see data/cluster/h$n.log" >&2; exit 1; }
done
cat <<MSG
three hosts up (logs in data/cluster/hN.log):
  h1 http://127.0.0.1:3001/   h2 http://127.0.0.1:3002/   h3 http://127.0.0.1:3003/
try:
  curl -s -X POST localhost:3002/whatsapp-web/session/demo -H 'content-type: application/json' -d '{"simulator":{"scanAfterMs":1000}}'
  curl -s localhost:3003/cluster
Ctrl-C stops the hosts and the servers this script started.
MSG
wait
