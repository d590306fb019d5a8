#!/bin/sh
# Installs what the fuzz drivers need, only when missing (the way tools/deps.sh does):
# clang, libFuzzer's runtime (Debian ships it in libclang-rt-<major>-dev), and the
# headers of the libraries the fuzzed modules use (libcjson, libyaml).
# Probes by linking a trivial -fsanitize=fuzzer program; apt-get runs at most once.
set -eu
cd "$(dirname "$0")/../.."

FUZZ_CC=${FUZZ_CC:-clang}
missing=""
need() { case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac; }
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pc() { have_cmd pkg-config && pkg-config --exists "$1" 2>/dev/null; }

links_fuzzer() {
    dir=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$dir/t.c"
    ok=0
    "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$dir/t.c" -o "$dir/t" >/dev/null 2>&1 && ok=1
    rm -rf "$dir"
    [ "$ok" -eq 1 ]
}

have_cmd pkg-config || need pkg-config
have_pc libcjson || need libcjson-dev
have_pc yaml-0.1 || need libyaml-dev
have_pc libcrypto || need libssl-dev
if ! have_cmd "$FUZZ_CC"; then
    need clang
    need libclang-rt-dev
elif ! links_fuzzer; then
    major=$("$FUZZ_CC" --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
    if [ -n "$major" ]; then need "libclang-rt-$major-dev"; else need libclang-rt-dev; fi
fi

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "fuzz-deps: missing:$missing; run 'make fuzz-deps' as root (or install them)" >&2
        exit 1
    fi
    echo "fuzz-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
    links_fuzzer || { echo "fuzz-deps: $FUZZ_CC still cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi
