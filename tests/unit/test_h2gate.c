/* Unit tests: router/h2gate (when an HTTP/2 transfer may start). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "h2gate.h"

static void test_verdicts(void **state)
{
    (void)state;
    h2gate_t g = {0, 0, 0, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START_OPENER); /* nothing yet */
    g = (h2gate_t){0, 1, 1, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_WAIT); /* the first is opening */
    g = (h2gate_t){1, 0, 99, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START); /* room on the one up */
    g = (h2gate_t){1, 0, 100, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START_OPENER); /* full: open one */
    g = (h2gate_t){1, 1, 101, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_WAIT); /* full, one opening */
    g = (h2gate_t){2, 1, 150, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START); /* room while one opens */
    g = (h2gate_t){3, 0, 0, 0};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START); /* idle connections kept */
    g = (h2gate_t){0, 0, 5, 1};
    assert_int_equal(h2gate_admit(&g, 100), H2GATE_START); /* the origin fails: all try */
}

/* n transfers arrive at once; each opener's connection comes up after all of them
 * arrived (the TLS handshake), the waiting ones start as the gate allows. Connections
 * opened: exactly what n streams need. */
static int connections_for(int n, int streams)
{
    h2gate_t g = {0, 0, 0, 0};
    int waiting = 0, openers = 0, opened = 0;
    for (int i = 0; i < n; i++) {
        h2gate_verdict_t v = h2gate_admit(&g, streams);
        if (v == H2GATE_WAIT) {
            waiting++;
            continue;
        }
        if (v == H2GATE_START_OPENER) {
            g.opening++;
            openers++;
        }
        g.running++;
    }
    while (openers > 0) {
        /* The opener's connection is up (on_prereq): it counts as ready, and the line
         * moves as far as the gate lets it. */
        openers--;
        opened++;
        g.opening--;
        g.ready++;
        while (waiting > 0) {
            h2gate_verdict_t v = h2gate_admit(&g, streams);
            if (v == H2GATE_WAIT)
                break;
            if (v == H2GATE_START_OPENER) {
                g.opening++;
                openers++;
            }
            g.running++;
            waiting--;
        }
    }
    assert_int_equal(waiting, 0);
    assert_int_equal(g.running, n);
    return opened;
}

static void test_a_burst_opens_what_it_needs(void **state)
{
    (void)state;
    assert_int_equal(connections_for(1, 100), 1);
    assert_int_equal(connections_for(100, 100), 1);
    assert_int_equal(connections_for(101, 100), 2);
    assert_int_equal(connections_for(300, 100), 3);
    assert_int_equal(connections_for(2000, 100), 20);
    assert_int_equal(connections_for(10000, 100), 100);
    assert_int_equal(connections_for(10001, 128), 79);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_a_burst_opens_what_it_needs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
