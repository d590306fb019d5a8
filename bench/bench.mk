# bench/bench.mk — the side-by-side benchmark (issue 7), included by the root Makefile
# with `-include`, so this file only adds targets; BUILD comes from the Makefile.
#
#   make bench          direct vs nginx vs switchyard (6 cases), then 10,000 slow streams
#   make bench-streams  only the 10,000 slow streams through switchyard
#   make bench-smoke    the same driver with tiny durations and pass/fail checks (< 60 s);
#                       writes $(BUILD)/bench-smoke-results.txt ("P F")
#   make bench-profile  perf record on switchyard under a 50-connection load
#   make bench-deps     installs what is missing: the build's libraries (make deps), nginx, wrk, openssl
#
# Knobs (environment): BENCH_SECONDS, BENCH_ROUNDS, BENCH_WARMUP, BENCH_CASES,
# BENCH_STREAMS, BENCH_STREAM_SECONDS, BENCH_SY_NOFILE, BENCH_PERF_SECONDS; see
# bench/run.py and docs/PERFORMANCE.md.

BENCH_PYTHON ?= python3

.PHONY: bench bench-proxy bench-streams bench-smoke bench-profile bench-deps

bench-deps:
	@sh bench/deps.sh

bench: bench-deps $(BUILD)/switchyard $(BUILD)/switchyard-sim
	@BUILD=$(BUILD) $(BENCH_PYTHON) bench/run.py

bench-proxy: bench-deps $(BUILD)/switchyard $(BUILD)/switchyard-sim
	@BUILD=$(BUILD) $(BENCH_PYTHON) bench/run.py --proxy

bench-streams: bench-deps $(BUILD)/switchyard $(BUILD)/switchyard-sim
	@BUILD=$(BUILD) $(BENCH_PYTHON) bench/run.py --streams

bench-smoke: bench-deps $(BUILD)/switchyard $(BUILD)/switchyard-sim
	@BUILD=$(BUILD) $(BENCH_PYTHON) bench/run.py --smoke

bench-profile: bench-deps $(BUILD)/switchyard $(BUILD)/switchyard-sim
	@BUILD=$(BUILD) $(BENCH_PYTHON) bench/run.py --profile
