#!/usr/bin/env bash
# Load test over loopback: requests/s and latency of /health (no auth) and /me (JWT) on the
# quickstart server, and on the same routes behind jwt-authorizer (peers/src/bin). Numbers go to
# BENCHMARKS.md. Needs wrk (apt-get install wrk), curl, jq. Bounded: each run is $DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
export JWT_SECRET=loadtest-secret-that-is-long-enough-0123456789

# The jwt-authorizer server is in the peers/ workspace member. Two commands, not one, so that
# neither package's features leak into the other's build.
cargo build --release --example quickstart >/dev/null 2>&1
cargo build --release -p tower-jwt-auth-peers --bin compare_jwt_authorizer >/dev/null 2>&1

wait_listening() { # log file
  for _ in $(seq 300); do grep -q "listening on" "$1" && return 0; sleep 0.1; done
  cat "$1"; return 1
}

run() { # name url [token]
  local name=$1 url=$2 token=${3:-}
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
  [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
  local out
  out=$(wrk "${args[@]}" "$url")
  local rps p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  printf '| %-28s | %10s | %8s | %s |\n' "$name" "$rps" "$p99" "${errors:-0 errors}"
}

log1=$(mktemp); log2=$(mktemp)
BIND_ADDR=127.0.0.1:38200 target/release/examples/quickstart >"$log1" 2>&1 & q=$!
BIND_ADDR=127.0.0.1:38201 target/release/compare_jwt_authorizer >"$log2" 2>&1 & j=$!
trap 'kill $q $j 2>/dev/null || true; rm -f "$log1" "$log2"' EXIT
wait_listening "$log1"; wait_listening "$log2"

token=$(curl -sf -X POST http://127.0.0.1:38200/login -H 'content-type: application/json' \
  -d '{"username":"alice","password":"wonderland"}' | jq -r .access_token)

echo "| route | requests/s | p99 | errors |"
echo "|---|---|---|---|"
run "quickstart /health"          http://127.0.0.1:38200/health
run "quickstart /me (ours)"       http://127.0.0.1:38200/me "$token"
run "compare /health (axum 0.7)"  http://127.0.0.1:38201/health
run "compare /me (jwt-authorizer)" http://127.0.0.1:38201/me "$token"
