/*
 * test_window.c — unit tests for rollback/window.c: what a sample contributes
 * (errors excluded from latency, ttft only when known, unpriced requests excluded
 * from cost per 1k tokens), merging worker windows, summaries and NaN on no data.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "window.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

static window_sample_t ok_sample(double latency, double ttft, uint64_t in, uint64_t out,
                                 double cost)
{
    window_sample_t s = {latency, ttft, 0, in, out, cost};

    return s;
}

static void close_to(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want)))
        fail_msg("got %.12g, want %.12g", got, want);
}

static void test_init_empty(void **state)
{
    static window_t w;
    window_summary_t s;

    (void)state;
    memset(&w, 0xab, sizeof(w));
    window_init(&w, 1234567890123LL);
    assert_true(w.since_ms == 1234567890123LL);
    for (int v = WINDOW_ORIGINAL; v <= WINDOW_NEW; v++) {
        assert_int_equal(w.v[v].requests, 0);
        assert_int_equal(w.v[v].errors, 0);
        assert_int_equal(w.v[v].tokens_in, 0);
        assert_int_equal(w.v[v].tokens_out, 0);
        assert_int_equal(w.v[v].priced_tokens, 0);
        assert_true(w.v[v].cost_usd == 0.0);
        assert_int_equal(loghist_count(&w.v[v].latency), 0);
        assert_int_equal(loghist_count(&w.v[v].ttft), 0);
        window_summarize(&w.v[v], &s);
        assert_int_equal(s.requests, 0);
        assert_int_equal(s.errors, 0);
        assert_int_equal(s.ttft_count, 0);
        assert_true(isnan(s.error_rate));
        assert_true(isnan(s.latency_p50) && isnan(s.latency_p95) && isnan(s.latency_p99));
        assert_true(isnan(s.ttft_p50) && isnan(s.ttft_p95) && isnan(s.ttft_p99));
        assert_true(isnan(s.cost_per_1k_tokens));
    }
}

static void test_record_counts(void **state)
{
    static window_t w;
    window_sample_t s;

    (void)state;
    window_init(&w, 0);
    s = ok_sample(120.0, 30.0, 100, 50, 0.0015);
    window_record(&w, WINDOW_NEW, &s);
    s = ok_sample(80.0, -1.0, 10, 5, -1.0); /* not a stream, unpriced */
    window_record(&w, WINDOW_NEW, &s);
    s = ok_sample(3.0, -1.0, 7, 0, 0.0001);
    s.error = 1; /* a fast 5xx: counted, but kept out of the latency distribution */
    window_record(&w, WINDOW_NEW, &s);
    s = ok_sample(200.0, 50.0, 1, 1, 0.5);
    window_record(&w, WINDOW_ORIGINAL, &s);

    assert_int_equal(w.v[WINDOW_NEW].requests, 3);
    assert_int_equal(w.v[WINDOW_NEW].errors, 1);
    assert_int_equal(w.v[WINDOW_NEW].tokens_in, 117);
    assert_int_equal(w.v[WINDOW_NEW].tokens_out, 55);
    assert_int_equal(w.v[WINDOW_NEW].priced_tokens, 150 + 7);
    close_to(w.v[WINDOW_NEW].cost_usd, 0.0016, 1e-12);
    assert_int_equal(loghist_count(&w.v[WINDOW_NEW].latency), 2);
    assert_true(loghist_min(&w.v[WINDOW_NEW].latency) == 80.0);
    assert_int_equal(loghist_count(&w.v[WINDOW_NEW].ttft), 1);
    assert_true(loghist_max(&w.v[WINDOW_NEW].ttft) == 30.0);

    assert_int_equal(w.v[WINDOW_ORIGINAL].requests, 1);
    assert_int_equal(w.v[WINDOW_ORIGINAL].errors, 0);
    assert_int_equal(loghist_count(&w.v[WINDOW_ORIGINAL].latency), 1);
}

static void test_record_ignores_bad_input(void **state)
{
    static window_t w, before;
    window_sample_t s = ok_sample(10.0, 5.0, 1, 1, 0.01);

    (void)state;
    window_init(&w, 7);
    memcpy(&before, &w, sizeof(w));
    window_record(&w, 2, &s);
    window_record(&w, -1, &s);
    window_record(&w, WINDOW_NEW, NULL);
    window_record(NULL, WINDOW_NEW, &s);
    assert_memory_equal(&w, &before, sizeof(w));

    /* NaN / infinite cost is as unknown as a negative one; NaN latency is not recorded
     * in the histogram but the request still counts. */
    s = ok_sample(NAN, -1.0, 10, 10, NAN);
    window_record(&w, WINDOW_NEW, &s);
    s = ok_sample(5.0, -1.0, 10, 10, INFINITY);
    window_record(&w, WINDOW_NEW, &s);
    assert_int_equal(w.v[WINDOW_NEW].requests, 2);
    assert_int_equal(w.v[WINDOW_NEW].priced_tokens, 0);
    assert_true(w.v[WINDOW_NEW].cost_usd == 0.0);
    assert_int_equal(loghist_count(&w.v[WINDOW_NEW].latency), 1);
}

static void test_summary(void **state)
{
    static window_t w;
    static loghist_t ref;
    window_summary_t s;
    window_sample_t smp;
    uint64_t rng = 11;

    (void)state;
    window_init(&w, 0);
    loghist_init(&ref);
    for (int i = 0; i < 1000; i++) {
        double lat = 50.0 + 950.0 * uniform01(&rng);

        smp = ok_sample(lat, i % 2 ? lat / 4 : -1.0, 100, 300, i % 4 == 3 ? -1.0 : 0.002);
        smp.error = i % 20 == 0; /* 5% */
        window_record(&w, WINDOW_NEW, &smp);
        if (!smp.error)
            loghist_add(&ref, lat);
    }
    window_summarize(&w.v[WINDOW_NEW], &s);
    assert_int_equal(s.requests, 1000);
    assert_int_equal(s.errors, 50);
    close_to(s.error_rate, 0.05, 1e-12);
    assert_true(s.latency_p50 == loghist_quantile(&ref, 0.50));
    assert_true(s.latency_p95 == loghist_quantile(&ref, 0.95));
    assert_true(s.latency_p99 == loghist_quantile(&ref, 0.99));
    assert_true(s.latency_p50 < s.latency_p95 && s.latency_p95 < s.latency_p99);
    /* odd i are streams; i % 20 == 0 are even, so all 500 streams succeeded */
    assert_int_equal(s.ttft_count, 500);
    assert_true(s.ttft_p50 == loghist_quantile(&w.v[WINDOW_NEW].ttft, 0.5));
    assert_true(s.ttft_p99 < s.latency_p99);
    /* 750 priced requests x 400 tokens for 0.002 each: 0.002 / 0.4 = 0.005 per 1k */
    close_to(s.cost_per_1k_tokens, 0.005, 1e-9);
}

static void test_cost_ignores_unpriced(void **state)
{
    static window_t w;
    window_summary_t s;
    window_sample_t smp;

    (void)state;
    window_init(&w, 0);
    smp = ok_sample(10.0, -1.0, 500, 500, 0.002);
    window_record(&w, WINDOW_ORIGINAL, &smp);
    smp = ok_sample(10.0, -1.0, 900, 100, 0.004);
    window_record(&w, WINDOW_ORIGINAL, &smp);
    window_summarize(&w.v[WINDOW_ORIGINAL], &s);
    close_to(s.cost_per_1k_tokens, 0.003, 1e-12);

    /* A large unpriced request changes neither side of the ratio. */
    smp = ok_sample(10.0, -1.0, 50000, 50000, -1.0);
    window_record(&w, WINDOW_ORIGINAL, &smp);
    window_summarize(&w.v[WINDOW_ORIGINAL], &s);
    close_to(s.cost_per_1k_tokens, 0.003, 1e-12);
    assert_int_equal(w.v[WINDOW_ORIGINAL].tokens_in, 51400);

    /* Only unpriced traffic: no cost figure at all. */
    window_init(&w, 0);
    window_record(&w, WINDOW_NEW, &smp);
    window_summarize(&w.v[WINDOW_NEW], &s);
    assert_true(isnan(s.cost_per_1k_tokens));

    /* A free (cost 0) request is priced: it lowers the average. */
    smp = ok_sample(10.0, -1.0, 1000, 0, 0.0);
    window_record(&w, WINDOW_NEW, &smp);
    window_summarize(&w.v[WINDOW_NEW], &s);
    assert_true(s.cost_per_1k_tokens == 0.0);
}

static void test_only_errors(void **state)
{
    static window_t w;
    window_summary_t s;
    window_sample_t smp = ok_sample(2.0, 1.0, 0, 0, -1.0);

    (void)state;
    smp.error = 1;
    window_init(&w, 0);
    for (int i = 0; i < 10; i++)
        window_record(&w, WINDOW_NEW, &smp);
    window_summarize(&w.v[WINDOW_NEW], &s);
    assert_int_equal(s.requests, 10);
    assert_true(s.error_rate == 1.0);
    assert_true(isnan(s.latency_p50) && isnan(s.latency_p99));
    assert_int_equal(s.ttft_count, 0);
    assert_true(isnan(s.ttft_p95));
}

static void test_merge_workers(void **state)
{
    static window_t workers[4], all, merged;
    window_summary_t a, b;
    uint64_t rng = 5;

    (void)state;
    for (int k = 0; k < 4; k++)
        window_init(&workers[k], 1000);
    window_init(&all, 1000);
    for (int i = 0; i < 4000; i++) {
        int variant = uniform01(&rng) < 0.1 ? WINDOW_NEW : WINDOW_ORIGINAL;
        double lat = 20.0 - 300.0 * log(1.0 - uniform01(&rng));
        window_sample_t smp =
            ok_sample(lat, uniform01(&rng) < 0.5 ? lat / 3 : -1.0, (uint64_t)(i % 97),
                      (uint64_t)(i % 31), i % 7 ? 1e-6 * (i % 13) : -1.0);

        smp.error = uniform01(&rng) < 0.02;
        window_record(&workers[i % 4], variant, &smp);
        window_record(&all, variant, &smp);
    }
    window_init(&merged, 1000);
    for (int k = 0; k < 4; k++)
        window_merge(&merged, &workers[k]);
    assert_true(merged.since_ms == 1000);
    for (int v = WINDOW_ORIGINAL; v <= WINDOW_NEW; v++) {
        const window_variant_t *m = &merged.v[v], *x = &all.v[v];

        assert_int_equal(m->requests, x->requests);
        assert_int_equal(m->errors, x->errors);
        assert_int_equal(m->tokens_in, x->tokens_in);
        assert_int_equal(m->tokens_out, x->tokens_out);
        assert_int_equal(m->priced_tokens, x->priced_tokens);
        close_to(m->cost_usd, x->cost_usd, 1e-9);
        assert_memory_equal(m->latency.buckets, x->latency.buckets, sizeof(m->latency.buckets));
        assert_memory_equal(m->ttft.buckets, x->ttft.buckets, sizeof(m->ttft.buckets));
        window_summarize(m, &a);
        window_summarize(x, &b);
        assert_int_equal(a.requests, b.requests);
        assert_true(a.error_rate == b.error_rate);
        assert_true(a.latency_p50 == b.latency_p50);
        assert_true(a.latency_p95 == b.latency_p95);
        assert_true(a.latency_p99 == b.latency_p99);
        assert_true(a.ttft_p95 == b.ttft_p95);
        assert_int_equal(a.ttft_count, b.ttft_count);
        close_to(a.cost_per_1k_tokens, b.cost_per_1k_tokens, 1e-9);
    }
    assert_true(all.v[WINDOW_NEW].requests > 300 && all.v[WINDOW_NEW].requests < 500);
}

/* A merge is as old as its oldest contributor: a window left over from before a stage
 * start must show in the merge, not hide behind a later stamp. */
static void test_merge_since_is_earlier(void **state)
{
    static window_t a, b;

    (void)state;
    window_init(&a, 500);
    window_init(&b, 900);
    window_merge(&a, &b);
    assert_true(a.since_ms == 500);
    window_init(&b, 100);
    window_merge(&a, &b);
    assert_true(a.since_ms == 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_record_counts),
        cmocka_unit_test(test_record_ignores_bad_input),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_cost_ignores_unpriced),
        cmocka_unit_test(test_only_errors),
        cmocka_unit_test(test_merge_workers),
        cmocka_unit_test(test_merge_since_is_earlier),
    };

    return cmocka_run_group_tests_name("window", tests, NULL, NULL);
}
