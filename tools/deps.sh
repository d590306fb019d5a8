#!/bin/sh
# Installs what the build and the tests need, and nothing that is already there.
# Probes pkg-config names, headers and tools; runs `apt-get update` at most once and
# a single `apt-get install -y` with the missing Debian packages; `npm ci` in
# tests/e2e when its node_modules is missing or older than package-lock.json.
# Arguments COMMAND:PACKAGE add tools to check (bench/deps.sh: nginx:nginx wrk:wrk);
# with arguments only those are checked and npm is left alone.
set -eu
cd "$(dirname "$0")/.."

missing=""
need() { # need DEBIAN_PACKAGE: add it to the install list once
    case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac
}
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pc() { have_cmd pkg-config && pkg-config --exists "$1" 2>/dev/null; }

if [ $# -gt 0 ]; then
    for pair in "$@"; do
        cmd=${pair%%:*}
        have_cmd "$cmd" || [ -x "/usr/sbin/$cmd" ] || need "${pair#*:}"
    done
    only_extra=1
else
    only_extra=0
fi

[ "$only_extra" = 1 ] || have_cmd pkg-config || need pkg-config
if [ "$only_extra" = 0 ]; then
have_cmd cc || need gcc
have_cmd make || need make
have_cmd python3 || need python3
have_cmd curl || need curl
# openssl makes the test certificate for the sim's HTTP/2 (TLS) port.
have_cmd openssl || need openssl
have_cmd node || need nodejs
have_cmd npm || need npm
have_pc libevent || need libevent-dev
have_pc libevent_pthreads || need libevent-dev
have_pc libcurl || need libcurl4-openssl-dev
have_pc libcjson || need libcjson-dev
have_pc yaml-0.1 || need libyaml-dev
have_pc cmocka || need libcmocka-dev
have_pc libnghttp2 || need libnghttp2-dev
have_pc libcrypto || need libssl-dev
[ -f /usr/include/wslay/wslay.h ] || need libwslay-dev
[ -f /usr/include/mimalloc.h ] || need libmimalloc-dev
# The browser test drives Debian's chromium (playwright-core, no browser download).
[ -x /usr/bin/chromium ] || need chromium
# promtool validates the /metrics exposition in the tests; Debian ships it with prometheus.
have_cmd promtool || need prometheus
fi
# ASan/UBSan runtimes come with gcc on Debian (libasan8, libubsan1).
[ -n "$(ls /usr/lib/gcc/*/*/libasan.so 2>/dev/null)" ] || need libasan8

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing:$missing; run 'make deps' as root (or install them)" >&2
        exit 1
    fi
    echo "deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Packages such as prometheus would start their daemon (on port 9090, the admin
    # listener's default): install without starting services, unless a policy exists.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    rc=0
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing || rc=$?
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || exit "$rc"
fi

if [ "$only_extra" = 0 ] && [ -f tests/e2e/package-lock.json ]; then
    if [ ! -d tests/e2e/node_modules ] ||
       [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
        echo "deps: npm ci in tests/e2e"
        (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
