#!/usr/bin/env bash
# Runs the test suite over and over to catch flaky tests: builds the tests once, then runs
# `swift test --skip-build` N times (default 30) and stops at the first run that fails or crashes,
# naming the run and its log. Every run's log is kept in a temporary directory.
#
#   scripts/soak-tests.sh [N] [swift test arguments...]
#   scripts/soak-tests.sh 30
#   SCRATCH=.build-soak scripts/soak-tests.sh 10 --filter ShopTests
#
# SCRATCH, when set, is passed to every swift command as --scratch-path, so that the soak does not
# share the default .build folder (and its lock) with an editor or another build.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=30
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    runs=$1
    shift
fi
if [ "$runs" -lt 1 ]; then
    echo "usage: $0 [N] [swift test arguments...]   (N >= 1, default 30)" >&2
    exit 2
fi

scratch=()
if [ -n "${SCRATCH:-}" ]; then
    scratch=(--scratch-path "$SCRATCH")
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/sagakit-soak.XXXXXX")
echo "soak: $runs runs of swift test --skip-build $*; logs in $logs"

echo "== build the tests once =="
if ! swift build ${scratch[@]+"${scratch[@]}"} --build-tests >"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log" >&2
    echo "soak: the build failed; its log: $logs/build.log" >&2
    exit 1
fi

for ((run = 1; run <= runs; run++)); do
    log="$logs/run-$run.log"
    started=$SECONDS
    if swift test ${scratch[@]+"${scratch[@]}"} --skip-build "$@" >"$log" 2>&1; then
        echo "run $run/$runs passed ($((SECONDS - started))s)"
        continue
    else
        status=$?
    fi
    what=failed
    if grep -q -e "Program crashed" -e "unexpected signal" "$log"; then
        what=crashed
    fi
    echo "run $run/$runs $what (exit status $status) after $((SECONDS - started))s" >&2
    # The crash signature, or the failed expectations, as a first look; the log has the rest.
    grep -e "Program crashed" -e " crashed:" -A 2 -e "✘" -e "error:" "$log" | head -n 40 >&2 || true
    echo "run $run's log: $log" >&2
    echo "$((run - 1)) passed, 1 failed (stopped at run $run of $runs)"
    exit 1
done

echo "$runs passed, 0 failed (logs in $logs)"
