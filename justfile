# wasync task list. CI calls only `just ci` (through .ci/run).

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the server on the embedded defaults (embedded store, local events, simulator).
run *ARGS:
    cargo run --release -p wasync -- {{ARGS}}

# Three hosts on one MongoDB-wire server and the local RabbitMQ (ports 3001-3003).
cluster:
    scripts/cluster.sh

# Install what the tests need, start the services, run every suite.
test: setup
    scripts/test.sh

# Install test prerequisites (idempotent).
setup:
    scripts/setup.sh

# The README's `cargo run --release` as written: start, sync a simulated account, SIGTERM.
smoke:
    scripts/smoke.sh

# Format check, lints, the README's two commands: the smoke run, then the full test suite.
ci: fmt-check clippy smoke test

fmt:
    cargo fmt --all

fmt-check:
    cargo fmt --all --check

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# Build the guest plugins into plugins/dist/ (Rust for wasm32-wasip2; JavaScript with ComponentizeJS from npm).
plugins:
    scripts/build-plugins.sh

# Create a working plugin on the SDK from the template: plugins/NAME, built, with a test.
plugin-new NAME:
    scripts/plugin-new.sh {{NAME}}

# The plugin kit end to end: SDK and plugin tests; a plugin-new plugin built and checked (part of `test`).
plugin-kit-check:
    cargo build --workspace --all-targets
    scripts/plugin-kit-check.sh

# Benchmarks; `--quick` is the mode CI runs (scripts/test.sh, from the debug build).
bench *ARGS:
    cargo build --release -p wasync -p wasync-tests --bins
    "$(scripts/cargo-target-dir.sh)/release/bench" {{ARGS}}
