# check-valgrind (issue 8): the integration suite with every router it starts
# running under valgrind memcheck. Included by the root Makefile.
#
#   make check-valgrind [VALGRIND_K="test_core test_admin test_accounting test_security
#                       test_http2.case_burst"]
#
# tests/integration/harness.py starts build/switchyard itself; it prefixes the
# command with $SWITCHYARD_WRAPPER (split like a shell would) when that is set.
# This target sets it to valgrind with one log file per router process under
# $(BUILD)/valgrind/, runs tests/integration/run.py once per -k expression in
# VALGRIND_K (run.py's -k is a substring of "module.case"; valgrind makes the
# router ~20x slower, so the default is a subset), then scans the logs: any
# memcheck error or definite leak fails the target, listing the files.
# Writes $(BUILD)/valgrind-results.txt ("P F": P integration cases passed, F cases
# failed, + 1 when valgrind reported anything or no router ran under valgrind)
# and prints `valgrind: P passed, F failed`.
#
# Only errors and definite leaks count: "still reachable" blocks (libcurl,
# OpenSSL, libevent globals) and "possibly lost" ones (thread stacks) are not
# printed. Suppressions for library noise live in VALGRIND_SUPP_TEXT below and
# are written to $(BUILD)/valgrind/switchyard.supp at run time.

VALGRIND     ?= valgrind
VALGRIND_K   ?= test_core test_admin test_accounting test_security test_http2.case_burst
VALGRIND_DIR  = $(BUILD)/valgrind
VALGRIND_SUPP = $(VALGRIND_DIR)/switchyard.supp
# somalloc: the router allocates through mimalloc; memcheck must replace its malloc
# and free (not only libc's) to see every block.
VALGRIND_OPTS = --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                --soname-synonyms=somalloc=libmimalloc.so* \
                --show-leak-kinds=definite --track-fds=no --num-callers=40 --quiet \
                --suppressions=$(VALGRIND_SUPP) --log-file=$(VALGRIND_DIR)/%p.log

# Known library behaviour that memcheck would report although it is not ours:
# one entry per finding, with the log excerpt that required it. Empty today: with
# the options above, a full integration run of the router (libevent, libcurl with
# OpenSSL, cJSON, libyaml) shows no error and no definite leak outside switchyard.
define VALGRIND_SUPP_TEXT
# switchyard memcheck suppressions (generated from tests/valgrind.mk)
endef
export VALGRIND_SUPP_TEXT

.PHONY: check-valgrind valgrind-deps

valgrind-deps:
	@command -v $(VALGRIND) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "valgrind-deps: installing valgrind"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends valgrind; \
	  else echo "valgrind-deps: valgrind is missing; run 'make valgrind-deps' as root" >&2; exit 1; fi; }

# The results file goes first, so a failed build leaves none rather than a stale one.
check-valgrind:
	@mkdir -p $(BUILD); rm -f $(BUILD)/valgrind-results.txt
	@$(MAKE) --no-print-directory valgrind-deps build
	@rm -rf $(VALGRIND_DIR); mkdir -p $(VALGRIND_DIR) $(BUILD)/test-logs; \
	 printf '%s\n' "$$VALGRIND_SUPP_TEXT" >$(VALGRIND_SUPP); \
	 passed=0; failed=0; \
	 for k in $(VALGRIND_K); do \
	   log=$(BUILD)/test-logs/valgrind-$$k.log; \
	   SWITCHYARD_WRAPPER="$(VALGRIND) $(VALGRIND_OPTS)" \
	     python3 tests/integration/run.py --build $(BUILD) -k "$$k" >$$log 2>&1; rc=$$?; \
	   grep -E '^(ok|FAIL|SKIP) ' $$log | sed 's/^/  /'; \
	   line=$$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' $$log | tail -1); \
	   if [ -n "$$line" ]; then \
	     p=$$(echo "$$line" | sed 's/^integration: \([0-9]*\) passed.*/\1/'); \
	     f=$$(echo "$$line" | sed 's/.* passed, \([0-9]*\) failed.*/\1/'); \
	     [ $$rc -ne 0 ] && [ $$f -eq 0 ] && [ $$p -gt 0 ] && f=1; \
	     [ $$p -eq 0 ] && [ $$f -eq 0 ] && echo "  (no case matches -k $$k)"; \
	   else p=0; f=1; tail -20 $$log; fi; \
	   [ $$f -ne 0 ] && grep -A30 '^FAIL ' $$log | head -60; \
	   passed=$$((passed + p)); failed=$$((failed + f)); \
	 done; \
	 logs=$$(ls $(VALGRIND_DIR)/*.log 2>/dev/null); \
	 bad=""; \
	 for l in $$logs; do \
	   if grep -v -E '^==[0-9]+== *$$|^==[0-9]+== Warning: ' $$l | grep -q .; then bad="$$bad $$l"; fi; \
	 done; \
	 n=$$(echo $$logs | wc -w); \
	 if [ $$n -eq 0 ]; then \
	   echo "valgrind: no router ran under valgrind (does tests/integration/harness.py honour SWITCHYARD_WRAPPER?)"; \
	   failed=$$((failed + 1)); \
	 elif [ -n "$$bad" ]; then \
	   echo "valgrind: reports in:$$bad"; \
	   for l in $$bad; do echo "== $$l"; head -40 $$l; done; \
	   failed=$$((failed + 1)); \
	 else \
	   echo "valgrind: $$n router processes, no errors, no definite leaks"; \
	 fi; \
	 echo "$$passed $$failed" >$(BUILD)/valgrind-results.txt; \
	 echo "valgrind: $$passed passed, $$failed failed"; \
	 [ $$failed -eq 0 ]
