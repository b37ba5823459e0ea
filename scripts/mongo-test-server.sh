#!/usr/bin/env bash
# Starts a private SecantusDB (a single-node server speaking the MongoDB wire
# protocol, installed by scripts/setup.sh into .venv) for the test suites.
#
#   source scripts/mongo-test-server.sh; mongo_test_server_start
#
# exports WASYNC_TEST_MONGODB_URI (what the mongo tests connect to) and
# WASYNC_SECANTUSD (the server binary, for tests that start, kill and restart
# a server of their own). mongo_test_server_stop stops it and removes its data.

mongo_test_server_start() {
    local root bin
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    bin="$root/.venv/bin/secantusd-py"
    if [ ! -x "$bin" ]; then
        echo "mongo-test-server: $bin is missing; run scripts/setup.sh (just setup)" >&2
        return 1
    fi
    MONGO_TEST_DIR="$(mktemp -d -t wasync-secantus.XXXXXX)"
    MONGO_TEST_PORT="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$bin" --host 127.0.0.1 --port "$MONGO_TEST_PORT" --storage-path "$MONGO_TEST_DIR/data" \
        --enable-test-commands --log-level WARNING >"$MONGO_TEST_DIR/server.log" 2>&1 &
    MONGO_TEST_PID=$!
    local uri="mongodb://127.0.0.1:$MONGO_TEST_PORT"
    local i
    for i in $(seq 1 120); do
        if "$root/.venv/bin/python" - "$uri" >/dev/null 2>&1 <<'PY'
import sys, pymongo
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500).admin.command("ping")
PY
        then
            export WASYNC_TEST_MONGODB_URI="$uri"
            export WASYNC_SECANTUSD="$bin"
            echo "mongo-test-server: SecantusDB on $uri (pid $MONGO_TEST_PID)"
            return 0
        fi
        if ! kill -0 "$MONGO_TEST_PID" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "mongo-test-server: SecantusDB did not come up; its log:" >&2
    cat "$MONGO_TEST_DIR/server.log" >&2 || true
    mongo_test_server_stop
    return 1
}

mongo_test_server_stop() {
    if [ -n "${MONGO_TEST_PID:-}" ]; then
        kill "$MONGO_TEST_PID" 2>/dev/null || true
        wait "$MONGO_TEST_PID" 2>/dev/null || true
        MONGO_TEST_PID=""
    fi
    if [ -n "${MONGO_TEST_DIR:-}" ]; then
        rm -rf "$MONGO_TEST_DIR"
        MONGO_TEST_DIR=""
    fi
}
