#!/bin/sh
# make bench-deps: what building the binaries needs (the project's installer, as `make
# deps`), then Debian's nginx and wrk and the small tools the driver uses (openssl makes
# the certificate of the sim's HTTP/2 port), only when missing: one apt-get update at
# most per call, no service started (the benchmark runs its own nginx in the foreground
# with a generated config). So `make bench` works on a fresh machine on its own.
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh
exec sh tools/deps.sh nginx:nginx wrk:wrk taskset:util-linux curl:curl python3:python3 \
    openssl:openssl
