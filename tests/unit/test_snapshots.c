/*
 * test_snapshots.c — unit tests for the workers' rollout windows in router/server.c: a
 * worker restarts its window at its next request or snapshot after a stage starts, and
 * the controller refuses copies taken before a stage started (an admin promote between
 * asking for the copies and reading them). No threads, no event loop: the functions are
 * called as the worker and the controller would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server.h"

static server_t *two_workers(long long since_ms)
{
    server_t *srv = calloc(1, sizeof(*srv));
    assert_non_null(srv);
    srv->n_workers = 2;
    srv->workers = calloc(2, sizeof(worker_t));
    assert_non_null(srv->workers);
    atomic_store(&srv->window_since_ms, since_ms);
    for (int i = 0; i < 2; i++) {
        srv->workers[i].srv = srv;
        window_init(&srv->workers[i].window, since_ms);
    }
    return srv;
}

static void free_workers(server_t *srv)
{
    free(srv->workers);
    free(srv);
}

static void record(worker_t *w, int variant, int n)
{
    window_sample_t s = {.latency_ms = 100, .ttft_ms = -1, .cost_usd = -1};
    for (int i = 0; i < n; i++)
        window_record(worker_window(w), variant, &s);
}

/* Stage 0 on both workers, then a promotion; only worker 0 serves stage 1. */
static void test_idle_worker_hands_an_empty_window(void **state)
{
    static window_t merged;
    server_t *srv = two_workers(1000);

    (void)state;
    record(&srv->workers[0], WINDOW_NEW, 40);
    record(&srv->workers[1], WINDOW_NEW, 60);
    server_restart_windows(srv, 5000);
    record(&srv->workers[0], WINDOW_NEW, 3);
    worker_snapshot(&srv->workers[0]);
    worker_snapshot(&srv->workers[1]);
    assert_int_equal(server_merge_snapshots(srv, &merged), 0);
    assert_true(merged.since_ms == 5000);
    assert_int_equal(merged.v[WINDOW_NEW].requests, 3);
    assert_true(srv->workers[1].snapshot.since_ms == 5000);
    assert_int_equal(srv->workers[1].snapshot.v[WINDOW_NEW].requests, 0);
    free_workers(srv);
}

/* Copies taken, then a stage starts before the controller reads them. */
static void test_copies_from_before_a_stage_start_are_refused(void **state)
{
    static window_t merged;
    server_t *srv = two_workers(1000);

    (void)state;
    record(&srv->workers[0], WINDOW_ORIGINAL, 10);
    worker_snapshot(&srv->workers[0]);
    worker_snapshot(&srv->workers[1]);
    assert_int_equal(server_merge_snapshots(srv, &merged), 0);
    server_restart_windows(srv, 2000); /* POST /admin/rollout/promote */
    assert_int_equal(server_merge_snapshots(srv, &merged), -1);
    worker_snapshot(&srv->workers[0]); /* one worker answered after the start ... */
    assert_int_equal(server_merge_snapshots(srv, &merged), -1);
    worker_snapshot(&srv->workers[1]); /* ... and then the other */
    assert_int_equal(server_merge_snapshots(srv, &merged), 0);
    assert_true(merged.since_ms == 2000);
    assert_int_equal(merged.v[WINDOW_ORIGINAL].requests, 0);
    free_workers(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_worker_hands_an_empty_window),
        cmocka_unit_test(test_copies_from_before_a_stage_start_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
