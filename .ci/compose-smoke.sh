#!/usr/bin/env bash
# End-to-end smoke test of compose.yaml: up, wait for /healthz, score a math item and a code item
# through POST /score, tear down. Stops by itself: every wait is bounded, and the whole run is killed
# after SMOKE_TIMEOUT_S (default 240 s); the teardown runs whatever happened.
#
#   .ci/docker-setup.sh && .ci/build-images.sh && .ci/compose-smoke.sh
#
# Environment: REFEREE_PORT (default: a free port), SMOKE_TIMEOUT_S, SMOKE_CODE=0 to skip the code item.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_TIMEOUT_S="${SMOKE_TIMEOUT_S:-240}"
if [[ -z "${SMOKE_INNER:-}" ]]; then
    # Re-run under `timeout` so that nothing below can hang CI; the EXIT trap still tears down.
    SMOKE_INNER=1 exec timeout --kill-after=20 "$SMOKE_TIMEOUT_S" "$0" "$@"
fi

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    compose=(docker-compose)
fi
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-referee-smoke}"
export DOCKER_GID="${DOCKER_GID:-$(stat -c %g /var/run/docker.sock)}"
export REFEREE_PORT="${REFEREE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
export REFEREE_API_TOKEN="${REFEREE_API_TOKEN:-smoke-$RANDOM$RANDOM}"
base="http://127.0.0.1:$REFEREE_PORT"
t0=$(date +%s)
log() { printf '[compose-smoke +%ss] %s\n' "$(($(date +%s) - t0))" "$*"; }

teardown() {
    local rc=$?
    if ((rc != 0)); then
        log "FAILED (rc=$rc); api logs:"
        "${compose[@]}" logs --no-color --tail=60 api 2>&1 || true
    fi
    # The api removes its sandbox containers when it stops; take away any it could not.
    api_host=$(docker inspect -f '{{.Config.Hostname}}' "$("${compose[@]}" ps -q api 2>/dev/null)" 2>/dev/null || true)
    "${compose[@]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    if [[ -n "$api_host" ]]; then
        leftovers=$(docker ps -aq --filter "label=org.referee.owner=$api_host")
        [[ -z "$leftovers" ]] || docker rm -f $leftovers >/dev/null
    fi
    log "torn down"
    exit "$rc"
}
trap teardown EXIT

log "up (project $COMPOSE_PROJECT_NAME, port $REFEREE_PORT)"
"${compose[@]}" up -d --no-build api redis

log "waiting for /healthz"
for ((i = 0; i < 120; i++)); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fsS "$base/healthz"
echo

auth=(-H "Authorization: Bearer $REFEREE_API_TOKEN")
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/score" -H 'Content-Type: application/json' -d '{"items": []}')
[[ "$status" == 401 ]] || { log "expected 401 without the token, got $status"; exit 1; }

items='{"id": "math-1", "completion": "<think>3*4=12, 2+12=14</think> <answer>14</answer>", "answer": "14"}'
if [[ "${SMOKE_CODE:-1}" != 0 ]]; then
    items+=', {"id": "code-1", "completion": "<think>add</think><answer>```python\nprint(sum(map(int, input().split())))\n```</answer>", "tests": {"language": "python", "cases": [{"stdin": "1 2\n", "stdout": "3\n"}]}}'
fi
check() {
    RESPONSE="$1" python3 - <<'PY'
import json, os, sys
results = {r["id"]: r for r in json.loads(os.environ["RESPONSE"])["results"]}
bad = {i: (r["status"], r["components"], r["details"]) for i, r in results.items() if r["status"] != "ok" or r["components"]["accuracy"] != 1.0}
if bad:
    sys.exit(f"compose smoke: items not scored ok: {bad}")
print("compose smoke: all items ok:", sorted(results))
PY
}
score() {
    curl -fsS --max-time 60 "${auth[@]}" -X POST "$base/score" -H 'Content-Type: application/json' \
        -d "{\"items\": [$items]}"
}
log "POST /score"
response=$(score)
echo "$response"
if ! check "$response"; then
    # Known flake (noted on issue 4): the first code run in a just-created sibling container can report
    # "the program killed the sandbox supervisor". One retry, said loudly; a second failure fails CI.
    log "RETRY: the first /score was not all ok; scoring once more"
    items=${items//<think>add</<think>add again<}  # a new completion: the cache must not answer
    response=$(score)
    echo "$response"
    check "$response"
fi
log "passed"
