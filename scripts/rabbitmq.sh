#!/usr/bin/env bash
# RabbitMQ for the events suite (tests/it/amqp.rs): the tests need a real
# broker at amqp://guest:guest@127.0.0.1:5672.
#
#   scripts/rabbitmq.sh install   install Debian's rabbitmq-server if no broker answers and none is installed
#   scripts/rabbitmq.sh start     start it detached unless something already listens; wait until it accepts connections
#   scripts/rabbitmq.sh stop      stop it, only if `start` was the one that started it
set -euo pipefail
cd "$(dirname "$0")/.."

HOST=127.0.0.1
PORT=5672
MARKER=target/.rabbitmq-started-by-tests

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

case "${1:-}" in
install)
    if listening || command -v rabbitmq-server >/dev/null 2>&1; then
        exit 0
    fi
    echo "rabbitmq: installing rabbitmq-server (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq rabbitmq-server >/dev/null
    ;;
start)
    if listening; then
        exit 0
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "rabbitmq: nothing on $HOST:$PORT and rabbitmq-server is not installed; run scripts/setup.sh" >&2
        exit 1
    fi
    echo "rabbitmq: starting rabbitmq-server -detached"
    as_root rabbitmq-server -detached
    mkdir -p target && touch "$MARKER"
    for _ in $(seq 1 120); do
        if listening; then
            # The port opens late in boot; let the node finish starting.
            as_root rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 || true
            echo "rabbitmq: up on $HOST:$PORT"
            exit 0
        fi
        sleep 1
    done
    echo "rabbitmq: did not accept connections on $HOST:$PORT within 120s" >&2
    exit 1
    ;;
stop)
    if [ -f "$MARKER" ]; then
        rm -f "$MARKER"
        echo "rabbitmq: stopping the broker the tests started"
        as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
