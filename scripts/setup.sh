#!/usr/bin/env bash
# Installs what the test suites need. Idempotent; safe on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node.js and npm: the Socket.IO test's client and the JavaScript plugins'
# build (ComponentizeJS, plugins/js/) come from npm.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup: Node.js 18+ and npm are needed (the Socket.IO test client and the" \
         "JavaScript plugins in plugins/js/); install them, e.g. apt-get install nodejs npm" >&2
    exit 1
fi

# Node clients for the Socket.IO test (socket.io-client from npm) and the
# seed's storage path the MongoDB bench row runs (the mongodb driver).
if [ ! -d tests/node/node_modules/socket.io-client ] || [ ! -d tests/node/node_modules/mongodb ]; then
    (cd tests/node && npm ci --no-audit --no-fund)
fi

# MongoDB-wire test server: SecantusDB from PyPI in a private venv (.venv/,
# gitignored). No mongod is installable here; the driver code is the same.
SECANTUS_VERSION="0.7.0b3"
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('SecantusDB') == '$SECANTUS_VERSION'" 2>/dev/null; then
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1 \
        || ! python3 -c "import ensurepip" 2>/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
    fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "SecantusDB==$SECANTUS_VERSION"
fi

# Schemathesis (PyPI) in the same venv: tests/it/api_fuzz.rs fuzzes the
# server against its /openapi.json with it.
SCHEMATHESIS_VERSION="4.32.5"
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# RabbitMQ for the events suite.
scripts/rabbitmq.sh install
# Guest plugins for the plugin tests: plugins/dist/ (Rust for wasm32-wasip2;
# JavaScript through ComponentizeJS, its npm packages installed on the way).
scripts/build-plugins.sh

# The webdriver provider's tests drive real headless Chromium through
# Debian's chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
fi
