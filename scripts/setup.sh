#!/usr/bin/env bash
# Installs what the test suites need. Idempotent; safe on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# RabbitMQ for the events suite.
scripts/rabbitmq.sh install
