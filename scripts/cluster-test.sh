#!/usr/bin/env bash
# The deployment model, proved on this machine: three replicas of a release build behind
# HAProxy (from the distribution's packages), one PostgreSQL behind them (127.0.0.1:5432, a
# fresh database), authenticated hook calls and feedback from a load generator that retries a
# failed call as an EHR would (examples/cluster_load.rs). During the load: one replica is
# killed with SIGKILL and restarted, then all three are restarted one after another with
# SIGTERM (a rolling restart). Afterwards: a token replayed across replicas, and an override
# on one replica seen by the next call on the others. Prints the counts and exits non-zero
# when a target is missed:
#   failed hook calls during the rolling restart (first attempt): 0
#   failed hook calls during the SIGKILL: only the first attempts in flight on the killed
#     replica; none left failed after the generator's retries
#   acknowledged feedback rows missing from the database: 0
#   replayed tokens accepted across replicas: 0
#   replicas still showing a card after an override on another: 0
# Usage: [CLUSTER_TEST_PROFILE=debug] scripts/cluster-test.sh [LOAD_SECONDS]
# (needs root for apt-get when HAProxy is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_OF_LOAD="${1:-45}"
PG="${CLUSTER_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
LB_PORT=18190
PORTS=(18191 18192 18193)
WORK="$(mktemp -d)"
DB="cramp_cluster_$$"
PIDS=("" "" "")
HAPROXY_PID=""
LOAD_PID=""

cleanup() {
  for pid in "${PIDS[@]}" "$HAPROXY_PID" "$LOAD_PID"; do
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v haproxy >/dev/null || apt-get install -y -q haproxy >/dev/null
command -v psql >/dev/null || { echo "cluster-test needs psql and PostgreSQL on 127.0.0.1:5432" >&2; exit 1; }
haproxy -v | sed -n 1p
# CLUSTER_TEST_PROFILE=debug reuses the test build (CI); the default is the release build.
PROFILE="${CLUSTER_TEST_PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --locked --bin cramp-cds --example cluster_load
else
  cargo build --quiet --locked --bin cramp-cds --example cluster_load
fi
BIN="./target/$PROFILE/cramp-cds"
LOAD="./target/$PROFILE/examples/cluster_load"

psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
LB="http://127.0.0.1:${LB_PORT}"

for i in 0 1 2; do
cat > "$WORK/replica-$i.toml" <<TOML
[server]
bind = "127.0.0.1:${PORTS[$i]}"
public_base_url = "${LB}"
shutdown_delay_ms = ${CLUSTER_TEST_SHUTDOWN_DELAY_MS:-2000}
[store]
database_url = "${PG}/${DB}"
patient_key = "cluster-test-patient-key-shared-by-every-replica"
[log]
level = "warn"
format = "json"
[[auth.clients]]
issuer = "https://loadtest.example"
jwks_file = "$(pwd)/tests/keys/jwks.json"
TOML
done

start_replica() { # index
  "$BIN" serve --config "$WORK/replica-$1.toml" >>"$WORK/replica-$1.log" 2>&1 &
  PIDS[$1]=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:${PORTS[$1]}/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "replica $1 did not become ready" >&2; cat "$WORK/replica-$1.log" >&2; exit 1
}

cat > "$WORK/haproxy.cfg" <<CFG
global
    maxconn 1024
    tune.bufsize 131072
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend cds
    bind 127.0.0.1:${LB_PORT}
    default_backend replicas
backend replicas
    balance roundrobin
    # Readiness decides: a replica answering /ready 503 (draining after SIGTERM) is taken out
    # before it stops accepting.
    option httpchk GET /ready
    default-server inter 300ms fall 1 rise 2
    server r0 127.0.0.1:${PORTS[0]} check
    server r1 127.0.0.1:${PORTS[1]} check
    server r2 127.0.0.1:${PORTS[2]} check
CFG

for i in 0 1 2; do start_replica "$i"; done
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
sleep 1

now_ms() { date +%s%3N; }
echo "load: ${SECONDS_OF_LOAD} s of hook calls and feedback through HAProxy"
"$LOAD" load "$LB" "$LB" "$SECONDS_OF_LOAD" 16 "$WORK/load" &
LOAD_PID=$!
sleep 5

# SIGKILL one replica mid-load, then bring it back.
KILL_START=$(now_ms)
{ kill -KILL "${PIDS[1]}"; wait "${PIDS[1]}"; } 2>/dev/null || true
sleep 2
start_replica 1
sleep 2
KILL_END=$(now_ms)
echo "SIGKILL of replica 1: $(( (KILL_END - KILL_START) / 1000 )) s until it was back and ready"

# Rolling restart: each replica in turn gets SIGTERM (it turns /ready 503, HAProxy takes it
# out, it drains and stops) and is started again before the next one.
ROLL_START=$(now_ms)
for i in 0 1 2; do
  kill -TERM "${PIDS[$i]}"; wait "${PIDS[$i]}" 2>/dev/null || true
  start_replica "$i"
  sleep 1.5
done
ROLL_END=$(now_ms)
echo "rolling restart: $(( (ROLL_END - ROLL_START) / 1000 )) s"

wait "$LOAD_PID"; LOAD_PID=""

count() { awk -F, -v from="$1" -v to="$2" -v field="$3" -v bad="$4" \
  '$1 >= from && $1 <= to && (bad == "any" ? 1 : ($field != 200)) {n++} END {print n+0}' "$WORK/load/calls.csv"; }
TOTAL=$(wc -l < "$WORK/load/calls.csv")
FAILED_FIRST_ROLL=$(count "$ROLL_START" "$ROLL_END" 2 bad)
FAILED_FINAL_ROLL=$(count "$ROLL_START" "$ROLL_END" 4 bad)
CALLS_ROLL=$(count "$ROLL_START" "$ROLL_END" 2 any)
# Calls in flight when the replica was killed end within the client timeout after it.
FAILED_FIRST_KILL=$(count "$KILL_START" "$KILL_END" 2 bad)
FAILED_FINAL_KILL=$(count "$KILL_START" "$KILL_END" 4 bad)
FAILED_FINAL_ALL=$(awk -F, '$4 != 200 {n++} END {print n+0}' "$WORK/load/calls.csv")
ACKED=$(sort -u "$WORK/load/acked.csv" | wc -l)
sort -u "$WORK/load/acked.csv" > "$WORK/acked-sorted.csv"
psql -q -t -A "$PG/$DB" -c "SELECT DISTINCT card_uuid FROM feedback" | sort -u > "$WORK/stored.csv"
MISSING=$(comm -23 "$WORK/acked-sorted.csv" "$WORK/stored.csv" | wc -l)

REPLICAS=("http://127.0.0.1:${PORTS[0]}" "http://127.0.0.1:${PORTS[1]}" "http://127.0.0.1:${PORTS[2]}")
REPLAY=$("$LOAD" replay "$LB" "${REPLICAS[@]}")
SUPPRESSION=$("$LOAD" suppression "$LB" "${REPLICAS[@]}")
REPLAYED=$(echo "$REPLAY" | sed -n 's/^replayed_tokens_accepted=\([0-9]*\).*/\1/p')
MISSED=$(echo "$SUPPRESSION" | sed -n 's/^suppression_missed_on_other_replicas=\([0-9]*\).*/\1/p')

echo
echo "hook calls: $TOTAL in ${SECONDS_OF_LOAD} s through HAProxy, 3 replicas, one PostgreSQL"
echo "rolling restart (SIGTERM, one after another): $CALLS_ROLL calls, $FAILED_FIRST_ROLL failed at first attempt, $FAILED_FINAL_ROLL failed after retries (target 0)"
echo "SIGKILL of one replica: $FAILED_FIRST_KILL failed at first attempt (those in flight on it), $FAILED_FINAL_KILL failed after retries"
echo "calls failed after retries over the whole run: $FAILED_FINAL_ALL"
echo "acknowledged feedback entries: $ACKED, missing from the database: $MISSING (target 0)"
echo "$REPLAY (target 0)"
echo "$SUPPRESSION (target 0)"

status=0
[ "$FAILED_FIRST_ROLL" -eq 0 ] || { echo "FAIL: calls failed during the rolling restart" >&2; status=1; }
[ "$FAILED_FINAL_ALL" -eq 0 ] || { echo "FAIL: calls still failed after retries" >&2; status=1; }
[ "$MISSING" -eq 0 ] || { echo "FAIL: acknowledged feedback is missing" >&2; status=1; }
[ "$REPLAYED" = 0 ] || { echo "FAIL: a replayed token was accepted" >&2; status=1; }
[ "$MISSED" = 0 ] || { echo "FAIL: an override was not seen on another replica" >&2; status=1; }
[ "$status" -eq 0 ] && echo "cluster test: every target met"
exit "$status"
