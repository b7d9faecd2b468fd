#!/usr/bin/env bash
# Builds the DocC documentation of SQLiteGroupCommit, SagaKit, SagaKitSQLite and SagaKitTesting with the
# toolchain's `docc`, treating every DocC warning (an unresolved symbol or <doc:…> link, a documented parameter
# that does not exist, …) as an error.
#
# For each target it builds the target with compiler-emitted symbol graphs, keeps only that module's
# own graphs (`X.symbols.json` and its cross-module extension graphs `X@*.symbols.json`, not those of
# swift-log and the other dependencies), and runs `docc convert --analyze --warnings-as-errors` on the
# target's catalog. The package does not depend on the swift-docc-plugin: users' dependency graphs
# stay lean.
#
#   scripts/build-docs.sh                        # scratch path .build-docs
#   SCRATCH=.build-mine scripts/build-docs.sh    # another scratch path
#   DOCC=/path/to/docc scripts/build-docs.sh     # another docc
#
# The archives go to <scratch>/docs/<Target>.doccarchive. The four builds share the same compiler
# flags, so they share one set of build products: after the first target, the others build only what
# they add. Use a scratch path of its own (the default does): the symbol-graph flags differ from a
# plain `swift build`, which would otherwise rebuild everything after this script, and vice versa.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${SCRATCH:-.build-docs}
targets=(SQLiteGroupCommit SagaKit SagaKitSQLite SagaKitTesting)

fail() {
    printf 'build-docs: %s\n' "$*" >&2
    exit 1
}

# The toolchain's docc: next to `swift` on Linux, through xcrun on macOS.
docc=${DOCC:-}
if [ -z "$docc" ]; then
    swift_bin=$(command -v swift) || fail "swift is not on the PATH"
    toolchain_bin=$(dirname "$(readlink -f "$swift_bin" 2>/dev/null || echo "$swift_bin")")
    if [ -x "$toolchain_bin/docc" ]; then
        docc=$toolchain_bin/docc
    elif command -v xcrun >/dev/null 2>&1 && xcrun --find docc >/dev/null 2>&1; then
        docc=$(xcrun --find docc)
    elif command -v docc >/dev/null 2>&1; then
        docc=$(command -v docc)
    else
        fail "cannot find docc next to swift ($toolchain_bin) or on the PATH; set DOCC"
    fi
fi

mkdir -p "$scratch"
scratch_abs=$(cd "$scratch" && pwd)
# One directory for every build's graphs, so that the compiler flags are the same for all targets.
# The compiler rewrites a module's graphs whenever it rebuilds the module; delete this directory if a
# module stops extending another one's types (its old X@Y.symbols.json would otherwise stay).
graphs=$scratch_abs/symbol-graphs
docs=$scratch_abs/docs
mkdir -p "$graphs" "$docs"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

for target in "${targets[@]}"; do
    catalog=Sources/$target/$target.docc
    [ -d "$catalog" ] || fail "$target: no catalog at $catalog"

    printf '== docs: %s ==\n' "$target"
    # -emit-extension-block-symbols: extensions of another module's types (`SagaStep.local` in
    # SagaKitSQLite) get pages and can be linked, as with the DocC plugin. The build's output is
    # shown only when it fails: CI's build step already reports the code's warnings.
    build_log=$logs/$target.build.log
    if ! swift build --scratch-path "$scratch" --target "$target" \
        -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs" \
        -Xswiftc -emit-extension-block-symbols >"$build_log" 2>&1; then
        cat "$build_log" >&2
        fail "$target: the build failed (above)"
    fi

    # The module's own graphs only; the build also wrote its dependencies'.
    own=$docs/$target.symbol-graphs
    rm -rf "$own"
    mkdir -p "$own"
    [ -f "$graphs/$target.symbols.json" ] || fail "$target: the build wrote no $graphs/$target.symbols.json"
    cp "$graphs/$target.symbols.json" "$own/"
    for extension in "$graphs/$target@"*.symbols.json; do
        if [ -f "$extension" ]; then cp "$extension" "$own/"; fi
    done

    archive=$docs/$target.doccarchive
    log=$logs/$target.log
    status=0
    "$docc" convert "$catalog" \
        --additional-symbol-graph-dir "$own" \
        --output-path "$archive" \
        --analyze \
        --warnings-as-errors \
        >"$log" 2>&1 || status=$?
    # A clean conversion prints nothing but blank lines.
    if grep -q '[^[:space:]]' "$log"; then cat "$log"; fi
    if [ "$status" -ne 0 ] || grep -qE '(^|[[:space:]])(warning|error):' "$log"; then
        fail "$target: DocC reported warnings or errors (above), exit status $status; fix them in $catalog or in the /// comments of Sources/$target"
    fi
    printf 'build-docs: %s: %s\n' "$target" "$archive"
done

printf 'build-docs: documentation built without warnings in %s\n' "$docs"
