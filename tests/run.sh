#!/bin/sh
# Runs the whole suite (unit, integration, e2e) against the binaries in $BUILD and
# prints one closing line `N passed, N failed`. The counts also go to
# $BUILD/test-results.txt so `make test` can add up its two runs.
# Exit status: non-zero when anything failed or did not run.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
passed=0
failed=0
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

add() { passed=$((passed + $1)); failed=$((failed + $2)); }

echo "== unit ($BUILD)"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$("$t" 2>&1)
    rc=$?
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed or sanitizer report: count the binary as a failure
    fi
    add "$p" "$f"
    printf '%s\n' "$out" >"$log_dir/$name.log"
    if [ "$f" -ne 0 ]; then
        printf '%s\n' "$out" | tail -40
    fi
    echo "$name: $p passed, $f failed"
done

echo "== integration ($BUILD)"
python3 tests/integration/run.py --build "$BUILD" >"$log_dir/integration.log" 2>&1
rc=$?
grep -E '^(ok|FAIL|SKIP) ' "$log_dir/integration.log" | sed 's/^/  /'
line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$log_dir/integration.log" | tail -1)
if [ -n "$line" ]; then
    p=$(echo "$line" | sed 's/^integration: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/')
    f=$(echo "$line" | sed 's/^integration: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/')
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
else
    p=0
    f=1
    tail -40 "$log_dir/integration.log"
fi
add "$p" "$f"
[ "$f" -ne 0 ] && grep -A30 '^FAIL ' "$log_dir/integration.log" | head -120
echo "integration: $p passed, $f failed"

echo "== e2e ($BUILD)"
if [ -d tests/e2e/node_modules ]; then
    (cd tests/e2e && node --test --test-reporter=tap --test-concurrency=1 ./*.test.mjs) \
        >"$log_dir/e2e.log" 2>&1
    rc=$?
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log_dir/e2e.log" | tail -1)
    f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log_dir/e2e.log" | tail -1)
    p=${p:-0}
    f=${f:-1}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -ne 0 ] && grep -B2 -A25 '^not ok' "$log_dir/e2e.log" | head -120
else
    echo "tests/e2e/node_modules is missing (make deps runs npm ci)"
    p=0
    f=1
fi
add "$p" "$f"
echo "e2e: $p passed, $f failed"

echo "$passed $failed" >"$BUILD/test-results.txt"
echo "$BUILD: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
