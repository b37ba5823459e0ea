#!/usr/bin/env bash
# Installs what the test suites need. Idempotent; safe on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node clients for the Socket.IO test (socket.io-client from npm).
if [ ! -d tests/node/node_modules/socket.io-client ]; then
    (cd tests/node && npm ci --no-audit --no-fund)
fi

# The webdriver provider's tests drive real headless Chromium through
# Debian's chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
fi
