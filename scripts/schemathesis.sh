#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against the service's own /openapi.json and the running
# service: it generates requests from the schema and checks that no response is a server
# error and that statuses, content types and bodies conform to the description.
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${1:-30}"
WORK="$(mktemp -d)"
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/cramp-cds/schemathesis-venv}"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
cargo build --quiet --bin cramp-cds
# Port 0 (or SCHEMATHESIS_PORT): the service says in its start-up log line which port it got.
env -u RUST_LOG CRAMP_CDS_STORE__DATABASE_URL="sqlite://$WORK/schemathesis.db" \
  CRAMP_CDS_LOG__LEVEL=info CRAMP_CDS_LOG__FORMAT=json \
  ./target/debug/cramp-cds serve --allow-unauthenticated --bind "127.0.0.1:${SCHEMATHESIS_PORT:-0}" \
  2>"$WORK/serve.log" &
SERVER_PID=$!
PORT=""
for _ in $(seq 1 300); do
  PORT=$(grep -m1 'listening' "$WORK/serve.log" | grep -o '"port":[0-9]*' | cut -d: -f2 || true)
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the service stopped:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "the service did not say where it listens:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --no-color
