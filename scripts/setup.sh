#!/usr/bin/env bash
# Installs what the test suites need. Idempotent; safe on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# RabbitMQ for the events suite.
scripts/rabbitmq.sh install

# Node clients for the Socket.IO test (socket.io-client from npm).
if [ ! -d tests/node/node_modules/socket.io-client ]; then
    (cd tests/node && npm ci --no-audit --no-fund)
fi
