#!/bin/sh
# make bench-deps: installs Debian's nginx and wrk, only when they are missing.
# `apt-get update` runs at most once. nginx's package would start nginx as a system
# service on port 80: unless a policy already exists, a temporary
# /usr/sbin/policy-rc.d (exit 101) keeps every service from starting during the
# install, as tools/deps.sh does. The benchmark starts its own nginx, in the
# foreground, with a generated config.
set -eu

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v taskset >/dev/null 2>&1 || missing="$missing util-linux"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
[ -n "$missing" ] || exit 0

if [ "$(id -u)" != 0 ]; then
    echo "bench-deps: missing:$missing; run 'make bench-deps' as root (or install them)" >&2
    exit 1
fi
echo "bench-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
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
exit "$rc"
