#!/usr/bin/env bash
# Runs schemathesis (PyPI) against Contracts/openapi.yaml and the running services: starts the built
# product-service, user-service and order-service on free loopback ports with temporary data
# directories, registers a user, then fuzzes each service's operations (its tag in the document)
# with positive and negative inputs. Fails on any 5xx and on any response whose status, content
# type, headers or body the document does not allow. Stops the services with SIGTERM.
#
# Needs the executables built first (`swift build --package-path Examples/Microservices`); BIN
# names another directory holding them. SCHEMATHESIS_VENV (default: under XDG_CACHE_HOME or
# ~/.cache) is where schemathesis is installed; MAX_EXAMPLES bounds the cases per operation and
# SCHEMATHESIS_SEED picks the generated inputs (fixed by default, so a run can be repeated);
# SCHEMATHESIS_ARGS adds options (for example `--report junit --report-dir /tmp/reports`).
set -euo pipefail

package=$(cd "$(dirname "$0")/.." && pwd)
document="$package/Contracts/openapi.yaml"
bin=${BIN:-$package/.build/debug}
version=4.32.5
venv=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sagakit/schemathesis-$version}
max_examples=${MAX_EXAMPLES:-500}

for service in product-service user-service order-service; do
    if [ ! -x "$bin/$service" ]; then
        echo "$bin/$service is missing: build first (swift build --package-path Examples/Microservices)" >&2
        exit 1
    fi
done

# schemathesis, in a venv of its own outside the repository.
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi
"$venv/bin/schemathesis" --version

work=$(mktemp -d "${TMPDIR:-/tmp}/schemathesis.XXXXXX")
pids=()
stop_services() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_services
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME ARGS...: runs bin/NAME in the background and sets `port` from its `… listening on
# HOST:PORT` line.
start() {
    local name=$1
    shift
    "$bin/$name" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    local pid=$!
    pids+=("$pid")
    local deadline=$((SECONDS + 60))
    port=
    while [ -z "$port" ]; do
        port=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/$name.out" | head -n 1)
        if [ -n "$port" ]; then break; fi
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "$name did not start:" >&2
            cat "$work/$name.out" "$work/$name.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name listening on 127.0.0.1:$port"
}

start product-service --host 127.0.0.1 --port 0 --data-dir "$work/products"
product_port=$port
start user-service --host 127.0.0.1 --port 0 --data-dir "$work/users"
user_port=$port
start order-service --host 127.0.0.1 --port 0 --data-dir "$work/orders" \
    --product-service "127.0.0.1:$product_port" --user-service "http://127.0.0.1:$user_port"
order_port=$port

# User 1, so that the document's example order (user 1, product 101) is placed.
"$venv/bin/python" - "http://127.0.0.1:$user_port/users" <<'PY'
import json, sys, urllib.request
body = json.dumps({"name": "Ada Lovelace", "email": "ada@example.com"}).encode()
request = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    print(response.status, response.read().decode())
PY

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
status=0
for target in "user-service $user_port" "order-service $order_port"; do
    read -r tag service_port <<<"$target"
    echo
    echo "== schemathesis: $tag on 127.0.0.1:$service_port =="
    # From the temporary directory: schemathesis keeps its cache (.schemathesis/) in the working one.
    (cd "$work" && "$venv/bin/schemathesis" run "$document" \
        --url "http://127.0.0.1:$service_port" \
        --include-tag "$tag" \
        --checks "$checks" \
        --mode all \
        --phases examples,coverage,fuzzing \
        --max-examples "$max_examples" \
        --seed "${SCHEMATHESIS_SEED:-20261201}" \
        --workers 1 \
        --request-timeout 30 \
        --generation-database none \
        --suppress-health-check filter_too_much,too_slow \
        --no-color ${SCHEMATHESIS_ARGS:-}) || status=1
done

stop_services
if [ "$status" -ne 0 ]; then
    for service in product-service user-service order-service; do
        echo "-- the end of $service's log:" >&2
        tail -n 20 "$work/$service.err" >&2
    done
    echo "schemathesis found responses the document does not allow (above)." >&2
fi
exit "$status"
