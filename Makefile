# switchyard — build, test, demo.
#
#   make            build build/switchyard and build/switchyard-sim
#   make deps       install what is missing (Debian 12, as root)
#   make test       deps + build + every test (unit, integration, e2e) + the ASan run
#   make check-asan the same suite against an AddressSanitizer+UBSan build
#   make run        two sims + switchyard in the foreground (Ctrl-C stops all)
#   make demo       run, drive traffic from simulated users, print the split
#
# BUILD selects the output folder, SANITIZE=1 builds with ASan+UBSan.

BUILD    ?= build
SANITIZE ?= 0
CC       ?= cc

PKGS      := libevent libevent_pthreads libcurl libcjson yaml-0.1 libcrypto
TEST_PKGS := cmocka
# The sim's HTTP/2 port (sim/h2.c): nghttp2 (the library libcurl uses) on OpenSSL.
SIM_PKGS  := libnghttp2 libevent_openssl libssl

CFLAGS_COMMON := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -g -I. -Irouter -Iflags -Irollback
ifeq ($(SANITIZE),1)
  CFLAGS_COMMON += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDFLAGS_SAN   := -fsanitize=address,undefined
else
  CFLAGS_COMMON += -O2
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
SIM_LIBS    = $(shell pkg-config --libs $(SIM_PKGS) 2>/dev/null)

CFLAGS  := $(CFLAGS_COMMON) $(PKG_CFLAGS) $(TEST_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lwslay -lpthread -lm
# The router allocates through mimalloc (Debian's libmimalloc, which replaces malloc for
# every library in the process): glibc's malloc/free were ~20% of a worker's
# instructions per request (docs/PERFORMANCE.md). Not with the sanitizers, which bring
# their own allocator; valgrind is pointed at it with --soname-synonyms.
ifeq ($(SANITIZE),1)
  ROUTER_LIBS :=
else
  ROUTER_LIBS := -Wl,--no-as-needed -lmimalloc -Wl,--as-needed
endif
LDFLAGS := $(LDFLAGS_SAN) $(EXTRA_LDFLAGS)

# Everything but main() goes into one static library, so unit tests link
# exactly the objects they exercise.
LIB_SRCS  := $(filter-out router/main.c,$(wildcard router/*.c)) $(wildcard flags/*.c) \
             $(wildcard rollback/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SIM_SRCS  := $(wildcard sim/*.c)
SIM_OBJS  := $(SIM_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps build unit test test-suite check-asan run demo clean fmt bench-metrics soak

# Objects are kept between runs (make would delete them as intermediates).
.SECONDARY:

all: build

build: $(BUILD)/switchyard $(BUILD)/switchyard-sim

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libswitchyard.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/switchyard: $(BUILD)/obj/router/main.o $(BUILD)/libswitchyard.a
	$(CC) $(LDFLAGS) -o $@ $^ $(ROUTER_LIBS) $(LDLIBS)

$(BUILD)/switchyard-sim: $(SIM_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(SIM_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libswitchyard.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

# The slab allocator's threads, once more under ThreadSanitizer: a memory order too
# weak on its cross-thread free list passes every other test. Not in the sanitizer
# build (TSan and ASan do not mix).
ifneq ($(SANITIZE),1)
UNIT_BINS += $(BUILD)/tests/test_slab_tsan
endif
$(BUILD)/tests/test_slab_tsan: tests/unit/test_slab.c router/slab.c router/slab.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -g -O1 -fsanitize=thread -Irouter \
	    -o $@ tests/unit/test_slab.c router/slab.c $(TEST_LIBS) -lpthread

unit: $(UNIT_BINS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libswitchyard.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Cost of the per-request accounting (issue 4: under 2 us per request).
bench-metrics: $(BUILD)/bench/metrics_bench
	@$(BUILD)/bench/metrics_bench

-include $(LIB_OBJS:.o=.d) $(SIM_OBJS:.o=.d) $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d) \
         $(BUILD)/obj/router/main.d

# Installs only what is missing: each pkg-config name and tool is probed first,
# apt-get runs at most once (update + install), npm ci only when node_modules is stale.
deps:
	@sh tools/deps.sh

# The suite itself; BUILD says which binaries it runs against.
test-suite: build unit
	@BUILD=$(BUILD) sh tests/run.sh

check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 test-suite

# Everything: the suite on the normal and the ASan+UBSan build, 10 s of each fuzz
# target, the integration suite under valgrind, and a short benchmark smoke run.
test: deps
	@$(MAKE) --no-print-directory BUILD=build test-suite; rc1=$$?; \
	 $(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 test-suite; rc2=$$?; \
	 $(MAKE) --no-print-directory BUILD=build fuzz-smoke FUZZ_JOBS=2; rc3=$$?; \
	 $(MAKE) --no-print-directory BUILD=build check-valgrind; rc4=$$?; \
	 $(MAKE) --no-print-directory BUILD=build bench-smoke; rc5=$$?; \
	 sh tests/total.sh build/test-results.txt build/asan/test-results.txt \
	    build/fuzz-results.txt build/valgrind-results.txt build/bench-smoke-results.txt; \
	 [ $$rc1 -eq 0 ] && [ $$rc2 -eq 0 ] && [ $$rc3 -eq 0 ] && [ $$rc4 -eq 0 ] && \
	 [ $$rc5 -eq 0 ]

run: deps build
	@sh tools/run.sh

demo: deps build
	@sh tools/demo.sh

# Targets owned by their folders: make bench / bench-smoke (bench/bench.mk),
# make fuzz / fuzz-smoke / check-valgrind (tests/fuzz/fuzz.mk, tests/valgrind.mk).
-include bench/bench.mk
-include tests/fuzz/fuzz.mk
-include tests/valgrind.mk

fmt:
	clang-format -i router/*.[ch] flags/*.[ch] sim/*.[ch] tests/unit/*.c

clean:
	rm -rf build

# A long mixed run with faults, reloads and a rollout (not part of make test).
SOAK_MINUTES ?= 30
soak: deps build
	@SOAK_MINUTES=$(SOAK_MINUTES) BUILD=$(BUILD) node tests/soak/soak.mjs
