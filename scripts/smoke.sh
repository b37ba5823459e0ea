#!/usr/bin/env bash
# The README's first command, run as written: `cargo run --release` at the
# root must start the server on the embedded defaults, serve /healthz and the
# dashboard, sync a simulated account, and stop cleanly on SIGTERM. Any step
# that does not hold stops the script with a message and a non-zero exit.
#
# The server gets a free port and a data directory of its own, and none of the
# caller's WASYNC_* / MONGODB_* / AMQP_* / webdriver settings: the README
# promises the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { echo "smoke: [$((SECONDS - started))s] $*"; }

tmp="$(mktemp -d -t wasync-smoke.XXXXXX)"
log="$tmp/server.log"
pid=""
fail() {
    echo "smoke: FAILED: $*" >&2
    if [[ -s "$log" ]]; then
        echo "smoke: the server's output:" >&2
        sed 's/^/    /' "$log" >&2
    fi
    exit 1
}
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

for tool in curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
# Prints fields of the JSON on stdin, space-separated: $1 is a Python
# expression list over `d`, the parsed document.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print(*[$1])"; }

# The build `cargo run --release` does, first and on its own, so its time is
# not counted against the server's start-up.
step "cargo build --release"
cargo build --release || fail "cargo build --release failed"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
step "cargo run --release on $base, data in $tmp/data"
while read -r var; do
    unset "$var"
done < <(compgen -e | grep -E '^(WASYNC_|MONGODB_|AMQP_|WEBDRIVER_|CHROMEDRIVER_|CHROMIUM_|WHATSAPP_WEB_)' || true)
# On Unix `cargo run` replaces itself with the server (exec), so $! is the
# server's pid and the signal below reaches it directly.
WASYNC_LISTEN="127.0.0.1:$port" WASYNC_DATA_DIR="$tmp/data" \
    cargo run --release >"$log" 2>&1 &
pid=$!

# GET PATH: prints the body, then the status and the content type on the last
# line; a request that gets no answer at all stops the script.
get() { curl -sS --max-time 5 -w '\n%{http_code} %{content_type}' "$base$1" || fail "GET $1: no answer"; }
status_of() { tail -n 1 <<<"$1" | cut -d' ' -f1; }
body_of() { sed '$d' <<<"$1"; }

deadline=$((SECONDS + 60))
until curl -sf --max-time 2 -o /dev/null "$base/healthz"; do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" && rc=0 || rc=$?; fail "cargo run --release exited ($rc) before /healthz answered"; }
    ((SECONDS < deadline)) || fail "/healthz did not answer 200 within 60s"
    sleep 0.2
done
step "/healthz 200"
grep -q "dashboard at $base/" "$log" || fail "the server did not print 'dashboard at $base/'"

r="$(get /)"
[[ "$(status_of "$r")" == 200 ]] || fail "GET / answered $(tail -n 1 <<<"$r"), not 200"
[[ "$(tail -n 1 <<<"$r")" == *text/html* ]] || fail "GET / is not HTML: $(tail -n 1 <<<"$r")"
grep -qi '<html' <<<"$r" || fail "GET / has no <html> element"
step "dashboard / 200 text/html"

r="$(curl -sS --max-time 5 -w '\n%{http_code}' -X POST "$base/whatsapp-web/session/smoke" \
    -H 'content-type: application/json' \
    -d '{"simulator":{"chats":3,"messagesPerChat":[5,5,5],"scanAfterMs":50}}')" \
    || fail "POST /whatsapp-web/session/smoke: no answer"
[[ "$(status_of "$r")" == 201 ]] || fail "POST /whatsapp-web/session/smoke answered $(status_of "$r"), not 201: $(body_of "$r")"
step "session smoke created (201)"

deadline=$((SECONDS + 30))
while :; do
    r="$(get /whatsapp-web/session/smoke/sync)"
    if [[ "$(status_of "$r")" == 200 ]]; then
        sync_status="$(body_of "$r" | json 'd["status"]')"
        case "$sync_status" in
        completed) break ;;
        running) ;;
        *) fail "the sync ended $sync_status: $(body_of "$r")" ;;
        esac
    elif [[ "$(status_of "$r")" != 404 ]]; then # 404 no_sync: not started yet
        fail "GET .../sync answered $(status_of "$r"): $(body_of "$r")"
    fi
    ((SECONDS < deadline)) || fail "the sync did not complete within 30s: $(body_of "$r")"
    sleep 0.1
done
counts="$(body_of "$r" | json 'd["nChats"], d["totalMessagesSynced"]')"
[[ "$counts" == "3 15" ]] || fail "the sync completed with (chats, messages) = ($counts), not (3, 15)"
step "sync completed: 3 chats, 15 messages"

# What the README's "read what was stored" lines read.
r="$(get /whatsapp-web/session/smoke/chats)"
[[ "$(status_of "$r")" == 200 ]] || fail "GET .../chats answered $(status_of "$r")"
chats="$(body_of "$r" | json 'len(d["chats"]), d["chats"][0]["id"]')"
[[ "${chats%% *}" == 3 ]] || fail "GET .../chats listed ${chats%% *} chats, not 3"
chat_id="${chats#* }"
r="$(get "/whatsapp-web/session/smoke/chats/$chat_id/messages?limit=20")"
[[ "$(status_of "$r")" == 200 ]] || fail "GET .../chats/$chat_id/messages answered $(status_of "$r")"
n="$(body_of "$r" | json 'len(d["messages"])')"
[[ "$n" == 5 ]] || fail "chat $chat_id has $n stored messages, not 5"
step "stored: 3 chats, 5 messages in $chat_id"

kill -TERM "$pid"
deadline=$((SECONDS + 10))
while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "the server did not exit within 10s of SIGTERM"
    sleep 0.1
done
wait "$pid" && rc=0 || rc=$?
pid=""
((rc == 0)) || fail "the server exited $rc on SIGTERM, not 0"
step "SIGTERM: exited 0"
echo "smoke: ok in $((SECONDS - started))s"
