#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against the service's own /openapi.json and the running
# service: it generates requests from the schema and checks that no response is a server
# error and that statuses, content types and bodies conform to the description.
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${1:-30}"
PORT="${SCHEMATHESIS_PORT:-18090}"
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
CRAMP_CDS_STORE__DATABASE_URL="sqlite://$WORK/schemathesis.db" CRAMP_CDS_LOG__LEVEL=error \
  ./target/debug/cramp-cds serve --allow-unauthenticated --bind "127.0.0.1:$PORT" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --no-color
