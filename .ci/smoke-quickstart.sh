#!/usr/bin/env bash
# Smoke check of the quickstart example as a black box (../shared/EXAMPLES.md):
# start it, wait for "listening on", log in, call /me and /admin, stop it.
set -euo pipefail
bin=${1:?usage: smoke-quickstart.sh path/to/quickstart}
port=${SMOKE_PORT:-38117}
log=$(mktemp)
BIND_ADDR=127.0.0.1:$port JWT_SECRET=smoke-test-secret-that-is-long-enough "$bin" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

# Wait for the line the example prints once it accepts connections (bounded: 30 s).
for _ in $(seq 300); do
  grep -q "listening on" "$log" && break
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "quickstart exited early"; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$log" || { cat "$log"; echo "quickstart never listened"; exit 1; }

base=http://127.0.0.1:$port
expect() { # expect STATUS DESCRIPTION curl-args...
  local want=$1 what=$2; shift 2
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  [ "$got" = "$want" ] || { echo "FAIL $what: got $got, want $want"; exit 1; }
  ok "$what ($got)"
}
passed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
login() { curl -sf -X POST "$base/login" -H 'content-type: application/json' -d "$1"; }
json() { jq -r "$1"; }
expect 200 "GET /health" "$base/health"
expect 401 "GET /me without token" "$base/me"
expect 401 "POST /login bad password" -X POST "$base/login" -H 'content-type: application/json' \
  -d '{"username":"alice","password":"nope"}'
pair=$(login '{"username":"alice","password":"wonderland"}')
token=$(echo "$pair" | json .access_token); refresh=$(echo "$pair" | json .refresh_token)
[ "$(echo "$pair" | json .token_type)" = Bearer ] || { echo "FAIL token_type"; exit 1; }
[ -n "$token" ] && [ "$token" != null ] || { echo "FAIL login returned no token"; exit 1; }
ok "POST /login"
expect 200 "GET /me with token" "$base/me" -H "authorization: Bearer $token"
expect 200 "GET /me with the access_token cookie" "$base/me" -H "cookie: access_token=$token"
expect 200 "GET /admin as alice" "$base/admin" -H "authorization: Bearer $token"
bob=$(login '{"username":"bob","password":"builder"}' | json .access_token)
expect 403 "GET /admin as bob" "$base/admin" -H "authorization: Bearer $bob"
curl -s -o /dev/null -D - "$base/admin" -H "authorization: Bearer $bob" | grep -qi 'error="insufficient_scope"' \
  || { echo "FAIL 403 without insufficient_scope"; exit 1; }
ok "403 carries error=\"insufficient_scope\""
# Change the first signature character to a different one.
sig=${token##*.}; first=${sig:0:1}; [ "$first" = A ] && repl=B || repl=A
expect 401 "GET /me with tampered token" "$base/me" -H "authorization: Bearer ${token%.*}.$repl${sig:1}"
expect 400 "two different tokens" "$base/me" -H "authorization: Bearer $token" -H "cookie: access_token=$bob"
expect 401 "refresh token used as access token" "$base/me" -H "authorization: Bearer $refresh"
new=$(curl -sf -X POST "$base/refresh" -H 'content-type: application/json' -d "{\"refresh_token\":\"$refresh\"}")
new_token=$(echo "$new" | json .access_token)
expect 200 "GET /me with the refreshed token" "$base/me" -H "authorization: Bearer $new_token"
expect 401 "reuse of a rotated refresh token" -X POST "$base/refresh" -H 'content-type: application/json' \
  -d "{\"refresh_token\":\"$refresh\"}"
expect 204 "POST /logout" -X POST "$base/logout" -H "authorization: Bearer $token"
expect 401 "GET /me after logout" "$base/me" -H "authorization: Bearer $token"
# GET /metrics: built with the default `metrics` feature, the decisions above are counted there, in the
# Prometheus text format; without the feature there is no such route (404).
code=$(curl -s -o "$log.metrics" -w '%{http_code}' "$base/metrics")
case $code in
  200)
    grep -q '^tower_jwt_auth_requests_total{outcome="accepted",reason="verified"} [1-9]' "$log.metrics" \
      && grep -q '^tower_jwt_auth_requests_total{outcome="rejected",reason="missing_token"} [1-9]' "$log.metrics" \
      && grep -q '^tower_jwt_auth_requests_total{outcome="rejected",reason="revoked"} [1-9]' "$log.metrics" \
      || { cat "$log.metrics"; rm -f "$log.metrics"; echo "FAIL /metrics lacks the request counts"; exit 1; }
    ok "GET /metrics counts accepted and rejected requests" ;;
  404) ok "GET /metrics: 404 (built without the metrics feature)" ;;
  *) echo "FAIL GET /metrics: got $code"; rm -f "$log.metrics"; exit 1 ;;
esac
rm -f "$log.metrics"
echo "smoke: $passed passed, 0 failed"
