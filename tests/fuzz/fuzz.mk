# Fuzzing (issue 8): libFuzzer drivers with ASan+UBSan, one per pure module.
# Included by the root Makefile.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="config body"] [FUZZ_JOBS=1]
#       builds build/fuzz/fuzz_<target> and runs each for FUZZ_SECONDS on a scratch
#       copy of tests/fuzz/corpus/<target> (build/fuzz/work/<target>) plus
#       tests/fuzz/regressions/<target>; crash inputs land in build/fuzz/crashes/.
#   make fuzz-smoke   the same for 10 s each (what `make test` runs); writes
#       $(BUILD)/fuzz-results.txt ("P F") and prints `fuzz: P passed, F failed`.
#   make fuzz-build   the drivers only.    make fuzz-deps   clang + libFuzzer if missing.
#
# Every file under tests/fuzz/regressions/<target>/ (and every seed) is run once
# before fuzzing and must not crash. See tests/fuzz/README.md.

FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_CC      ?= clang
FUZZ_OUT     ?= build/fuzz
FUZZ_TARGETS ?= config body sse ofrep report usage chunk ws

# libcurl for config.c's base_url check (curl_url: parsing only, no transfers).
FUZZ_PKGS   := libcjson yaml-0.1 libcrypto libcurl
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=c11 -Wall -Wextra -D_GNU_SOURCE -DSWITCHYARD_FUZZ -I. -Irouter -Iflags -Irollback \
               -Itests/fuzz $(FUZZ_SAN) $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null)
FUZZ_LIBS    = $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null) -lwslay -lm

# The module sources each driver links (no libevent; libcurl only for its URL parser).
FUZZ_CONFIG_SRCS        := router/config.c router/config_yaml.c flags/flags.c router/failure.c
FUZZ_SRCS_config        := $(FUZZ_CONFIG_SRCS)
FUZZ_SRCS_body          := router/body.c
FUZZ_SRCS_sse           := router/sse.c router/usage.c router/jsonscan.c
FUZZ_SRCS_ofrep         := flags/ofrep.c flags/flags.c
FUZZ_SRCS_report        := router/report.c router/report_render.c $(FUZZ_CONFIG_SRCS)
FUZZ_SRCS_usage         := router/usage.c router/jsonscan.c
FUZZ_SRCS_chunk         := router/chunk.c
FUZZ_SRCS_ws            := router/wsmsg.c router/body.c

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz_%)
FUZZ_ALL_SRCS := $(sort $(foreach t,$(FUZZ_TARGETS),$(FUZZ_SRCS_$(t)) tests/fuzz/fuzz_$(t).c))

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-deps

fuzz-deps:
	@sh tests/fuzz/deps.sh

# Module objects: coverage instrumentation, no libFuzzer main.
$(FUZZ_OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

# $(1) = target: fuzz_<target> from its driver and module objects.
define FUZZ_LINK_RULE
$(FUZZ_OUT)/fuzz_$(1): $(FUZZ_OUT)/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_SRCS_$(1):%.c=$(FUZZ_OUT)/obj/%.o)
	$$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $$@ $$^ $$(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_LINK_RULE,$(t))))

-include $(FUZZ_ALL_SRCS:%.c=$(FUZZ_OUT)/obj/%.d)

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_OUT=$(FUZZ_OUT) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_RESULTS=$(FUZZ_OUT)/results.txt \
	 sh tests/fuzz/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The results file goes first, so a failed build leaves none (tests/total.sh counts a
# missing file as a failure) rather than a stale one.
fuzz-smoke:
	@mkdir -p $(BUILD); rm -f $(BUILD)/fuzz-results.txt
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_OUT=$(FUZZ_OUT) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_RESULTS=$(BUILD)/fuzz-results.txt \
	 sh tests/fuzz/fuzz.sh 10 $(FUZZ_TARGETS)
