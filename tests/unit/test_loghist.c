/*
 * test_loghist.c — unit tests for rollback/loghist.c: bucket layout and the 1/128
 * midpoint bound across the whole range, quantiles of known distributions against
 * exact sorted-sample quantiles (within 1%), merge == adding every sample to one
 * histogram, and the edges (empty, one sample, clamping at both ends, q = 0 / 1).
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loghist.h"

#define NSAMPLES 20000

/* Deterministic PRNG (splitmix64) so every run sees the same samples. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

static double std_normal(uint64_t *state)
{
    double u1 = 1.0 - uniform01(state), u2 = uniform01(state);

    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The definition stated in loghist.h, computed on sorted samples. */
static double exact_quantile(const double *sorted, size_t n, double q)
{
    double t = ceil(q * (double)n * (1.0 - 4 * DBL_EPSILON));
    size_t k = t < 1.0 ? 1 : (t >= (double)n ? n : (size_t)t);

    return sorted[k - 1];
}

static const double qs[] = {0.0,  0.001, 0.01, 0.05, 0.1,   0.25,   0.5,
                            0.75, 0.9,   0.95, 0.99, 0.999, 0.9999, 1.0};

/* Adds samples to a fresh histogram and checks every q in qs within 1%. */
static void check_against_exact(double *samples, size_t n)
{
    static loghist_t h;

    loghist_init(&h);
    for (size_t i = 0; i < n; i++)
        loghist_add(&h, samples[i]);
    assert_int_equal(loghist_count(&h), n);
    qsort(samples, n, sizeof(*samples), cmp_double);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double want = exact_quantile(samples, n, qs[i]);
        double got = loghist_quantile(&h, qs[i]);

        if (!(fabs(got - want) <= 0.01 * want)) {
            fail_msg("q=%g: got %.9g, exact %.9g (rel err %.3g)", qs[i], got, want,
                     fabs(got - want) / want);
        }
    }
    assert_true(loghist_quantile(&h, 0.0) == samples[0]);
    assert_true(loghist_quantile(&h, 1.0) == samples[n - 1]);
}

static void test_struct_is_fixed_and_small(void **state)
{
    (void)state;
    /* Embedded per worker and per variant: keep it a few KB. */
    assert_true(sizeof(loghist_t) < 10 * 1024);
    assert_true(loghist_bucket_upper(LOGHIST_BUCKETS - 1) > LOGHIST_MAX);
}

static void test_bucket_layout(void **state)
{
    (void)state;
    assert_int_equal(loghist_bucket_index(LOGHIST_MIN), 0);
    assert_true(fabs(loghist_bucket_lower(0) - LOGHIST_MIN) < 1e-18);
    for (int i = 0; i < LOGHIST_BUCKETS; i++) {
        double lo = loghist_bucket_lower(i), hi = loghist_bucket_upper(i);
        double mid = 0.5 * (lo + hi);

        /* Width / lower bound <= 1/64 is what makes the midpoint good to 1/128. */
        assert_true(hi > lo);
        assert_true((hi - lo) / lo <= 1.0 / 64 + 1e-12);
        if (i + 1 < LOGHIST_BUCKETS)
            assert_true(fabs(loghist_bucket_lower(i + 1) - hi) <= hi * 1e-15);
        if (mid < LOGHIST_MAX)
            assert_int_equal(loghist_bucket_index(mid), i);
    }
    assert_true(isnan(loghist_bucket_lower(-1)));
    assert_true(isnan(loghist_bucket_upper(LOGHIST_BUCKETS)));
}

static void test_index_monotonic(void **state)
{
    int prev = 0;

    (void)state;
    for (double v = 1e-5; v < 1e9; v *= 1.001) {
        int idx = loghist_bucket_index(v);

        assert_true(idx >= prev);
        assert_true(idx >= 0 && idx < LOGHIST_BUCKETS);
        prev = idx;
    }
    assert_int_equal(prev, LOGHIST_BUCKETS - 1);
}

/* {tiny, v, huge}: the median is v's bucket midpoint, so this checks the 1/128 bound
 * (not masked by the min/max clamp) across every octave. */
static void test_midpoint_error_bound_sweep(void **state)
{
    static loghist_t h;
    double worst = 0.0;

    (void)state;
    for (double v = LOGHIST_MIN; v < LOGHIST_MAX; v *= 1.0007) {
        double got, err;

        loghist_init(&h);
        loghist_add(&h, 0.0);
        loghist_add(&h, v);
        loghist_add(&h, 1e9);
        got = loghist_quantile(&h, 0.5);
        err = fabs(got - v) / v;
        if (err > worst)
            worst = err;
    }
    assert_true(worst <= 1.0 / 128 + 1e-12);
    assert_true(worst > 1.0 / 200); /* the sweep really hit bucket edges */
}

static void test_uniform(void **state)
{
    static double s[NSAMPLES];
    uint64_t rng = 1;

    (void)state;
    for (size_t i = 0; i < NSAMPLES; i++)
        s[i] = 1.0 + 999.0 * uniform01(&rng);
    check_against_exact(s, NSAMPLES);
}

static void test_exponential(void **state)
{
    static double s[NSAMPLES];
    uint64_t rng = 2;

    (void)state;
    /* Mean 200 ms; + 0.01 keeps every sample inside the 1% range. */
    for (size_t i = 0; i < NSAMPLES; i++)
        s[i] = 0.01 - 200.0 * log(1.0 - uniform01(&rng));
    check_against_exact(s, NSAMPLES);
}

static void test_lognormal_wide(void **state)
{
    static double s[NSAMPLES];
    uint64_t rng = 3;
    size_t n = 0;

    (void)state;
    /* Spans about 0.01 ms .. 1e6 ms: many octaves at once. */
    while (n < NSAMPLES) {
        double v = 100.0 * exp(2.5 * std_normal(&rng));

        if (v >= LOGHIST_MIN && v < LOGHIST_MAX)
            s[n++] = v;
    }
    check_against_exact(s, NSAMPLES);
}

static void test_constant(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    for (int i = 0; i < 1000; i++)
        loghist_add(&h, 42.0);
    /* min == max == 42 pins every quantile exactly. */
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        assert_true(loghist_quantile(&h, qs[i]) == 42.0);
    assert_true(loghist_sum(&h) == 42000.0);
}

static void test_two_point(void **state)
{
    static double s[1000];

    (void)state;
    for (int i = 0; i < 1000; i++)
        s[i] = i % 10 == 0 ? 1000.0 : 10.0; /* 900 x 10 ms, 100 x 1000 ms */
    check_against_exact(s, 1000);
    {
        static loghist_t h;

        loghist_init(&h);
        for (int i = 0; i < 1000; i++)
            loghist_add(&h, s[i]);
        /* Rank 900 is the last 10 ms sample, rank 901 the first 1000 ms one. */
        assert_true(fabs(loghist_quantile(&h, 0.9) - 10.0) <= 0.1);
        assert_true(loghist_quantile(&h, 0.901) == 1000.0);
    }
}

static void test_rank_rounding(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    for (int i = 1; i <= 100; i++)
        loghist_add(&h, (double)i);
    /* 0.07 * 100 = 7.000000000000001 in double: still rank 7, not 8. */
    assert_true(fabs(loghist_quantile(&h, 0.07) - 7.0) <= 0.07);
    assert_true(fabs(loghist_quantile(&h, 0.5) - 50.0) <= 0.5);
    assert_true(fabs(loghist_quantile(&h, 0.501) - 51.0) <= 0.51);
    assert_true(fabs(loghist_quantile(&h, 0.99) - 99.0) <= 0.99);
}

static void test_empty(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    assert_int_equal(loghist_count(&h), 0);
    assert_true(loghist_sum(&h) == 0.0);
    assert_true(isnan(loghist_quantile(&h, 0.5)));
    assert_true(isnan(loghist_quantile(&h, 0.0)));
    assert_true(isnan(loghist_quantile(&h, 1.0)));
    assert_true(isnan(loghist_min(&h)));
    assert_true(isnan(loghist_max(&h)));
}

static void test_one_sample(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    loghist_add(&h, 123.456);
    assert_int_equal(loghist_count(&h), 1);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        assert_true(loghist_quantile(&h, qs[i]) == 123.456);
    assert_true(loghist_min(&h) == 123.456);
    assert_true(loghist_max(&h) == 123.456);
}

static void test_ignored_values(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    loghist_add(&h, NAN);
    loghist_add(&h, -1.0);
    loghist_add(&h, -1e-300);
    loghist_add(&h, INFINITY);
    loghist_add(&h, -INFINITY);
    assert_int_equal(loghist_count(&h), 0);
    assert_true(loghist_sum(&h) == 0.0);
    assert_int_equal(loghist_bucket_index(NAN), -1);
    assert_int_equal(loghist_bucket_index(-0.5), -1);
    assert_int_equal(loghist_bucket_index(INFINITY), -1);
}

static void test_clamping(void **state)
{
    static loghist_t h;

    (void)state;
    assert_int_equal(loghist_bucket_index(0.0), 0);
    assert_int_equal(loghist_bucket_index(1e-9), 0);
    assert_int_equal(loghist_bucket_index(LOGHIST_MIN), 0);
    assert_int_equal(loghist_bucket_index(LOGHIST_MAX), LOGHIST_BUCKETS - 1);
    assert_int_equal(loghist_bucket_index(1e12), LOGHIST_BUCKETS - 1);
    assert_true(loghist_bucket_index(LOGHIST_MAX * (1 - 1e-9)) < LOGHIST_BUCKETS - 1);

    loghist_init(&h);
    loghist_add(&h, 0.0);
    loghist_add(&h, 1e-6);
    loghist_add(&h, 5e7);
    loghist_add(&h, 1e9);
    assert_int_equal(h.buckets[0], 2);
    assert_int_equal(h.buckets[LOGHIST_BUCKETS - 1], 2);
    assert_int_equal(loghist_count(&h), 4);
    assert_true(loghist_sum(&h) == 0.0 + 1e-6 + 5e7 + 1e9); /* unclamped */
    /* Extremes are exact; the inner ranks are bounded by the observed min / max. */
    assert_true(loghist_quantile(&h, 0.0) == 0.0);
    assert_true(loghist_quantile(&h, 1.0) == 1e9);
    assert_true(loghist_quantile(&h, 0.5) >= 0.0 && loghist_quantile(&h, 0.5) <= 0.0011);
    assert_true(loghist_quantile(&h, 0.75) >= LOGHIST_MAX && loghist_quantile(&h, 0.75) <= 1e9);
}

static void test_q_bounds(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    for (int i = 1; i <= 10; i++)
        loghist_add(&h, 10.0 * i);
    assert_true(loghist_quantile(&h, 0.0) == 10.0);
    assert_true(loghist_quantile(&h, 1.0) == 100.0);
    assert_true(loghist_quantile(&h, -3.0) == 10.0);
    assert_true(loghist_quantile(&h, 7.0) == 100.0);
    assert_true(isnan(loghist_quantile(&h, NAN)));
    /* rank ceil(0.1 * 10) = 1 -> the minimum; ceil(0.11 * 10) = 2 -> 20 */
    assert_true(loghist_quantile(&h, 0.1) == 10.0);
    assert_true(fabs(loghist_quantile(&h, 0.11) - 20.0) <= 0.2);
}

static void test_merge_equals_add(void **state)
{
    static loghist_t a, b, all, empty;
    uint64_t rng = 4;

    (void)state;
    loghist_init(&a);
    loghist_init(&b);
    loghist_init(&all);
    loghist_init(&empty);
    for (int i = 0; i < 5000; i++) {
        double v = 5.0 * exp(2.0 * std_normal(&rng));

        loghist_add(i % 3 ? &a : &b, v);
        loghist_add(&all, v);
    }
    loghist_add(&b, 1e-7); /* the clamped ends merge too */
    loghist_add(&all, 1e-7);
    loghist_add(&a, 3e9);
    loghist_add(&all, 3e9);

    loghist_merge(&a, &b);
    assert_memory_equal(a.buckets, all.buckets, sizeof(a.buckets));
    assert_int_equal(loghist_count(&a), loghist_count(&all));
    assert_true(loghist_min(&a) == loghist_min(&all));
    assert_true(loghist_max(&a) == loghist_max(&all));
    assert_true(fabs(loghist_sum(&a) - loghist_sum(&all)) <= 1e-9 * loghist_sum(&all));
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        assert_true(loghist_quantile(&a, qs[i]) == loghist_quantile(&all, qs[i]));

    /* Merging an empty histogram changes nothing; merging into one copies. */
    loghist_merge(&a, &empty);
    assert_memory_equal(a.buckets, all.buckets, sizeof(a.buckets));
    assert_true(loghist_min(&a) == loghist_min(&all));
    loghist_merge(&empty, &all);
    assert_memory_equal(empty.buckets, all.buckets, sizeof(all.buckets));
    assert_true(loghist_max(&empty) == loghist_max(&all));
    assert_int_equal(loghist_count(&empty), loghist_count(&all));
}

static void test_merge_self_doubles(void **state)
{
    static loghist_t h;

    (void)state;
    loghist_init(&h);
    loghist_add(&h, 1.0);
    loghist_add(&h, 100.0);
    loghist_merge(&h, &h);
    assert_int_equal(loghist_count(&h), 4);
    assert_true(loghist_sum(&h) == 202.0);
    assert_int_equal(h.buckets[loghist_bucket_index(1.0)], 2);
    assert_int_equal(h.buckets[loghist_bucket_index(100.0)], 2);
}

static void test_bucket_saturates(void **state)
{
    static loghist_t a, b;

    (void)state;
    loghist_init(&a);
    loghist_init(&b);
    a.buckets[100] = UINT32_MAX - 1;
    b.buckets[100] = 5;
    loghist_merge(&a, &b);
    assert_true(a.buckets[100] == UINT32_MAX);
    loghist_add(&a, loghist_bucket_lower(100) * (1 + 1e-9));
    assert_true(a.buckets[100] == UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_struct_is_fixed_and_small),
        cmocka_unit_test(test_bucket_layout),
        cmocka_unit_test(test_index_monotonic),
        cmocka_unit_test(test_midpoint_error_bound_sweep),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_lognormal_wide),
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_two_point),
        cmocka_unit_test(test_rank_rounding),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_one_sample),
        cmocka_unit_test(test_ignored_values),
        cmocka_unit_test(test_clamping),
        cmocka_unit_test(test_q_bounds),
        cmocka_unit_test(test_merge_equals_add),
        cmocka_unit_test(test_merge_self_doubles),
        cmocka_unit_test(test_bucket_saturates),
    };

    return cmocka_run_group_tests_name("loghist", tests, NULL, NULL);
}
