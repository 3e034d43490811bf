#!/usr/bin/env bash
# Load test on loopback against a release build, authentication on (a fresh jti
# per request) and the card history on (SQLite). Prints requests per second,
# p50/p99 latency and peak resident memory for:
#   1. the small request (about 10 resources), RS384 tokens, 50 connections;
#   2. the typical request (about 100 resources), RS384 tokens, 50 connections;
#   3. the small request with ES384 tokens;
#   4. the typical request at 2 connections (one per core): latency without queueing.
# Needs wrk (Debian package `wrk`). Usage: scripts/loadtest.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
CONNECTIONS="${2:-50}"
THREADS=2
PORT="${LOADTEST_PORT:-18089}"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "loadtest needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin cramp-cds --example make_load

BASE="http://127.0.0.1:${PORT}"
AUDIENCE="${BASE}/cds-services/cramp-numbness-patient-view"
# Enough tokens for 25,000 requests a second, each used once per run; every run starts
# the service on a fresh database, so its replay cache is empty.
TOKENS=$(( DURATION * 25000 ))
echo "signing $TOKENS RS384 and $TOKENS ES384 tokens..."
for alg in RS384 ES384; do
  ./target/release/examples/make_load "$WORK" "$TOKENS" "$AUDIENCE" "$alg"
done

write_config() { # database file
cat > "$WORK/config.toml" <<TOML
[server]
bind = "127.0.0.1:${PORT}"
public_base_url = "${BASE}"
[store]
database_url = "sqlite://$1"
[log]
level = "error"
[auth]
max_lifetime_seconds = 3600
[[auth.clients]]
issuer = "https://loadtest.example"
jwks_file = "$(pwd)/tests/keys/jwks.json"
TOML
}

start_server() { # run name
  write_config "$WORK/loadtest-$1.db"
  ./target/release/cramp-cds serve --config "$WORK/config.toml" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "${BASE}/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the service did not start" >&2
  exit 1
}

stop_server() {
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
}

run() { # name body-file alg [connections]
  local name=$1 body=$2 alg=$3 connections=${4:-$CONNECTIONS}
  start_server "$alg-$(basename "$body" .json)"
  local result
  result=$(BODY_FILE="$body" TOKENS_FILE="$WORK/tokens-$alg.txt" THREADS=$THREADS \
    wrk -t"$THREADS" -c"$connections" -d"${DURATION}s" --latency -s scripts/loadtest.lua "$AUDIENCE" | tail -1)
  local rss_kb
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
  printf '%-28s %s peak_rss_mb=%d\n' "$name" "$result" $(( rss_kb / 1024 ))
  stop_server
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); ${DURATION}s per run, ${CONNECTIONS} connections, ${THREADS} wrk threads"
echo "body sizes: small $(wc -c < "$WORK/small.json") bytes, typical $(wc -c < "$WORK/typical.json") bytes"
run "small (10), RS384" "$WORK/small.json" RS384
run "typical (100), RS384" "$WORK/typical.json" RS384
run "small (10), ES384" "$WORK/small.json" ES384
run "typical (100), RS384, c=2" "$WORK/typical.json" RS384 2
