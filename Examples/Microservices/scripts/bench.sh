#!/usr/bin/env bash
# The networked shop's benchmark beside the in-process full shop, in one run: builds saga-bench (the
# root package) and the services in release, runs saga-bench's throughput section for the in-process
# full shop (synchronous=FULL) at the same concurrencies, then `shop bench` over HTTP and gRPC on
# loopback, which prints the table with the ratio of the two.
#
#   Examples/Microservices/scripts/bench.sh            # concurrencies 1,16,64,256
#   CONCURRENCIES=64 SECONDS_PER_LOAD=10 REPEATS=5 Examples/Microservices/scripts/bench.sh
#
# SCRATCH and ROOT_SCRATCH name the build directories (default .build-release in each package);
# OUT (default a new temporary directory) keeps both JSON reports and the services' data.
set -euo pipefail

package=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$package/../.." && pwd)
concurrencies=${CONCURRENCIES:-1,16,64,256}
seconds=${SECONDS_PER_LOAD:-5}
repeats=${REPEATS:-3}
scratch=${SCRATCH:-$package/.build-release}
root_scratch=${ROOT_SCRATCH:-$root/.build-release}
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/shop-bench.XXXXXX")}
mkdir -p "$out"

swift build -c release --package-path "$root" --scratch-path "$root_scratch" --product saga-bench
swift build -c release --package-path "$package" --scratch-path "$scratch"

"$root_scratch/release/saga-bench" --sections throughput --modes full-shop --synchronous full \
    --concurrencies "$concurrencies" --seconds "$seconds" --repeats "$repeats" \
    --dir "$out/in-process" --json "$out/in-process.json"
echo
"$scratch/release/shop" bench --concurrencies "$concurrencies" --seconds "$seconds" --repeats "$repeats" \
    --beside "$out/in-process.json" --json "$out/networked.json" --data-dir "$out/networked"
echo "reports: $out"
