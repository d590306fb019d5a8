/*
 * test_stats.c — unit tests for rollback/stats.c: normal CDF / quantile against known
 * values and each other, the error-rate gate (Newcombe's published examples and the
 * pass / fail / inconclusive cases), Mann-Whitney U on histograms against a direct
 * pairwise and a mid-rank computation, its power and its null behaviour, and the
 * latency gate's verdict table.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

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

static double std_normal(uint64_t *state)
{
    double u1 = 1.0 - uniform01(state), u2 = uniform01(state);

    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* A latency-like sample: lognormal around median ms. */
static double lognormal(uint64_t *state, double median, double sigma)
{
    return median * exp(sigma * std_normal(state));
}

static void near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.15g, want %.15g (tol %g)", got, want, tol);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* ---- normal distribution ---- */

static void test_normal_quantile_known(void **state)
{
    (void)state;
    near(stats_normal_quantile(0.975), 1.959963984540054, 1e-9);
    near(stats_normal_quantile(0.95), 1.644853626951472, 1e-9);
    near(stats_normal_quantile(0.5), 0.0, 1e-15);
    near(stats_normal_quantile(0.025), -1.959963984540054, 1e-9);
    near(stats_normal_quantile(0.99), 2.326347874040841, 1e-9);
    near(stats_normal_quantile(0.999), 3.090232306167814, 1e-9);
    near(stats_normal_quantile(0.8413447460685429), 1.0, 1e-9);
    near(stats_normal_quantile(1e-10), -6.361340902404056, 1e-9);
    assert_true(isinf(stats_normal_quantile(0.0)) && stats_normal_quantile(0.0) < 0);
    assert_true(isinf(stats_normal_quantile(1.0)) && stats_normal_quantile(1.0) > 0);
    assert_true(isinf(stats_normal_quantile(-0.1)) && isinf(stats_normal_quantile(1.5)));
    assert_true(isnan(stats_normal_quantile(NAN)));
}

static void test_normal_cdf_known(void **state)
{
    (void)state;
    near(stats_normal_cdf(0.0), 0.5, 1e-16);
    near(stats_normal_cdf(1.959963984540054), 0.975, 1e-12);
    near(stats_normal_cdf(-1.644853626951472), 0.05, 1e-12);
    near(stats_normal_cdf(1.0), 0.8413447460685429, 1e-12);
    /* The lower tail keeps relative accuracy. */
    near(stats_normal_cdf(-8.0) / 6.220960574271784e-16, 1.0, 1e-9);
    near(stats_normal_cdf(-20.0) / 2.7536241186062337e-89, 1.0, 1e-9);
    assert_true(stats_normal_cdf(-INFINITY) == 0.0);
    assert_true(stats_normal_cdf(INFINITY) == 1.0);
    assert_true(isnan(stats_normal_cdf(NAN)));
}

/* Round trip through all three regions of AS 241 (central, r <= 5, r > 5). */
static void test_normal_round_trip(void **state)
{
    (void)state;
    for (double p = 1e-300; p < 0.5; p *= 1.37) {
        double x = stats_normal_quantile(p);

        near(stats_normal_cdf(x) / p, 1.0, 1e-12);
        /* symmetry: the upper tail mirrors the lower one (1 - c is exact for c >= 0.5,
         * so compare against the complement actually represented) */
        {
            double c = 1.0 - p, pc = 1.0 - c;

            if (pc > 0.0)
                near(stats_normal_quantile(c), -stats_normal_quantile(pc),
                     1e-12 * fabs(stats_normal_quantile(pc)) + 1e-15);
        }
        assert_true(stats_normal_quantile(p * 1.37) > x);
    }
    for (double p = 0.5; p < 1.0 - 1e-12; p += 0.0137)
        near(stats_normal_cdf(stats_normal_quantile(p)), p, 1e-14);
}

/* ---- error-rate gate ---- */

static void test_rate_fails_when_worse(void **state)
{
    stats_prop_result_t r;

    (void)state;
    /* new 50/1000 errors, original 0/1000, tolerance 1 point */
    r = stats_error_rate_gate(50, 1000, 0, 1000, 0.01, 0.95, 100);
    assert_int_equal(r.verdict, STATS_FAIL);
    near(r.p_new, 0.05, 1e-15);
    assert_true(r.p_orig == 0.0);
    near(r.diff, 0.05, 1e-15);
    assert_true(r.lower > 0.01 && r.lower < r.diff && r.diff < r.upper);
    near(r.z, 1.644853626951472, 1e-9);
    assert_string_equal(stats_verdict_name(r.verdict), "FAIL");

    /* The same numbers the other way round: new is better, comfortably within. */
    r = stats_error_rate_gate(0, 1000, 50, 1000, 0.01, 0.95, 100);
    assert_int_equal(r.verdict, STATS_PASS);
    assert_true(r.upper <= 0.01);
}

static void test_rate_passes_when_equal(void **state)
{
    stats_prop_result_t r;

    (void)state;
    r = stats_error_rate_gate(10, 1000, 10, 1000, 0.02, 0.95, 500);
    assert_int_equal(r.verdict, STATS_PASS);
    assert_true(r.diff == 0.0 && r.lower < 0.0 && r.upper > 0.0 && r.upper <= 0.02);
    r = stats_error_rate_gate(10, 5000, 10, 5000, 0.02, 0.95, 5000);
    assert_int_equal(r.verdict, STATS_PASS);
    r = stats_error_rate_gate(50, 5000, 50, 5000, 0.02, 0.95, 5000);
    assert_int_equal(r.verdict, STATS_PASS);
    /* A larger sample narrows the interval. */
    assert_true(r.upper < stats_error_rate_gate(10, 1000, 10, 1000, 0.02, 0.95, 0).upper);
    assert_string_equal(stats_verdict_name(r.verdict), "PASS");
}

/* Against a known rate (no second sample): only new's Wilson interval counts. */
static void test_rate_against_a_known_rate(void **state)
{
    stats_prop_result_t r;

    (void)state;
    r = stats_error_rate_vs_rate(100, 100, 0.0, 0.01, 0.95, 30);
    assert_int_equal(r.verdict, STATS_FAIL);
    assert_true(r.p_new == 1.0 && r.p_orig == 0.0 && r.diff == 1.0 && r.upper == 1.0);
    r = stats_error_rate_vs_rate(0, 1000, 0.0, 0.01, 0.95, 30);
    assert_int_equal(r.verdict, STATS_PASS);
    assert_true(r.lower == 0.0 && r.upper > 0.0 && r.upper <= 0.01);
    /* 3.5% is within 1 point of 3%, but 2.5 points above 0%. */
    r = stats_error_rate_vs_rate(175, 5000, 0.03, 0.01, 0.95, 30);
    assert_int_not_equal(r.verdict, STATS_FAIL);
    near(r.diff, 0.005, 1e-12);
    r = stats_error_rate_vs_rate(175, 5000, 0.0, 0.01, 0.95, 30);
    assert_int_equal(r.verdict, STATS_FAIL);
    /* Too few, none, or an invalid reference decide nothing. */
    assert_int_equal(stats_error_rate_vs_rate(29, 29, 0.0, 0.01, 0.95, 30).verdict,
                     STATS_INCONCLUSIVE);
    r = stats_error_rate_vs_rate(0, 0, 0.0, 0.01, 0.95, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    assert_true(isnan(r.p_new));
    assert_int_equal(stats_error_rate_vs_rate(1, 10, NAN, 0.01, 0.95, 1).verdict,
                     STATS_INCONCLUSIVE);
    assert_int_equal(stats_error_rate_vs_rate(1, 10, 1.5, 0.01, 0.95, 1).verdict,
                     STATS_INCONCLUSIVE);
    assert_int_equal(stats_error_rate_vs_rate(11, 10, 0.0, 0.01, 0.95, 1).verdict,
                     STATS_INCONCLUSIVE);
}

static void test_rate_inconclusive(void **state)
{
    stats_prop_result_t r;

    (void)state;
    /* Below min_n: inconclusive however bad it looks, numbers still filled in. */
    r = stats_error_rate_gate(5, 10, 0, 10, 0.01, 0.95, 100);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    near(r.p_new, 0.5, 1e-15);
    assert_false(isnan(r.lower));
    r = stats_error_rate_gate(50, 1000, 0, 99, 0.01, 0.95, 100);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    /* Enough data, but the interval straddles the tolerance. */
    r = stats_error_rate_gate(20, 1000, 10, 1000, 0.01, 0.95, 100);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    assert_true(r.lower <= 0.01 && r.upper > 0.01);
    /* 0/30 vs 0/30: Wald would give a zero-width interval and pass; Wilson does not. */
    r = stats_error_rate_gate(0, 30, 0, 30, 0.01, 0.95, 30);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    assert_true(r.upper > 0.05);
    assert_string_equal(stats_verdict_name(r.verdict), "INCONCLUSIVE");
    assert_string_equal(stats_verdict_name((stats_verdict_t)42), "?");
}

static void test_rate_invalid_input(void **state)
{
    stats_prop_result_t r;

    (void)state;
    r = stats_error_rate_gate(0, 0, 0, 100, 0.01, 0.95, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    assert_true(isnan(r.p_new) && isnan(r.diff) && isnan(r.lower) && isnan(r.upper));
    assert_true(r.p_orig == 0.0);
    r = stats_error_rate_gate(11, 10, 0, 100, 0.01, 0.95, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    assert_true(isnan(r.p_new));
    r = stats_error_rate_gate(50, 1000, 0, 1000, 0.01, 1.0, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    r = stats_error_rate_gate(50, 1000, 0, 1000, 0.01, 0.3, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    r = stats_error_rate_gate(50, 1000, 0, 1000, NAN, 0.95, 0);
    assert_int_equal(r.verdict, STATS_INCONCLUSIVE);
    /* min_n = 0 still works with data on both sides. */
    r = stats_error_rate_gate(50, 1000, 0, 1000, 0.01, 0.95, 0);
    assert_int_equal(r.verdict, STATS_FAIL);
}

/* Newcombe (1998), Stat. Med. 17:873, Table II, method 10: two-sided 95% intervals,
 * i.e. each one-sided bound at 97.5%. */
static void test_rate_newcombe_examples(void **state)
{
    static const struct {
        uint64_t e1, n1, e2, n2;
        double lo, hi;
    } ex[] = {
        {56, 70, 48, 80, 0.0524, 0.3339}, {9, 10, 3, 10, 0.1705, 0.8090},
        {5, 56, 0, 29, -0.0381, 0.1926},  {0, 10, 0, 20, -0.1611, 0.2775},
        {0, 10, 0, 10, -0.2775, 0.2775},  {10, 10, 0, 20, 0.6791, 1.0000},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
        stats_prop_result_t r =
            stats_error_rate_gate(ex[i].e1, ex[i].n1, ex[i].e2, ex[i].n2, 0.0, 0.975, 0);

        near(r.lower, ex[i].lo, 5e-5 + 1e-12);
        near(r.upper, ex[i].hi, 5e-5 + 1e-12);
    }
}

/* ---- Mann-Whitney U ---- */

/* Values 5% apart always fall into distinct loghist buckets (bucket width <= 1/64). */
static double distinct_value(int k)
{
    return 0.5 * pow(1.05, k);
}

static void fill(loghist_t *h, const double *v, size_t n)
{
    loghist_init(h);
    for (size_t i = 0; i < n; i++)
        loghist_add(h, v[i]);
}

static void test_mwu_matches_pairwise(void **state)
{
    static loghist_t hn, ho;
    uint64_t rng = 21;

    (void)state;
    for (int round = 0; round < 50; round++) {
        int perm[80], n = 3 + (int)(splitmix64(&rng) % 25), m = 3 + (int)(splitmix64(&rng) % 25);
        double xn[40], xo[40], u = 0.0, sigma, z;
        stats_mwu_result_t r;

        /* a random shuffle: first n to new (odd steps), next m to orig (even steps),
         * so no two samples share a bucket; some rounds shift new upwards */
        for (int i = 0; i < 80; i++)
            perm[i] = i;
        for (int i = 79; i > 0; i--) {
            int j = (int)(splitmix64(&rng) % (uint64_t)(i + 1)), t = perm[i];

            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int i = 0; i < n; i++)
            xn[i] = distinct_value(2 * perm[i] + 1 + (round % 3) * 20);
        for (int j = 0; j < m; j++)
            xo[j] = distinct_value(2 * perm[n + j]);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
                u += xn[i] > xo[j] ? 1.0 : (xn[i] == xo[j] ? 0.5 : 0.0);
        fill(&hn, xn, (size_t)n);
        fill(&ho, xo, (size_t)m);
        r = stats_mann_whitney_hist(&hn, &ho);
        sigma = sqrt((double)n * m * (n + m + 1) / 12.0);
        z = (u - (double)n * m / 2.0 - 0.5) / sigma;
        near(r.u, u, 1e-9);
        near(r.z, z, 1e-12);
        near(r.p_value, 0.5 * erfc(z / sqrt(2.0)), 1e-12);
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    return (x > y) - (x < y);
}

/* With ties: U and the tie-corrected z from mid-ranks over bucket indices. */
static void test_mwu_ties_match_midranks(void **state)
{
    static loghist_t hn, ho;
    uint64_t rng = 77;
    int n = 60, m = 45, all[105], bn[60];
    double rank_sum = 0.0, ties = 0.0, u, var, z, nn = n + m;
    stats_mwu_result_t r;

    (void)state;
    loghist_init(&hn);
    loghist_init(&ho);
    for (int i = 0; i < n + m; i++) {
        /* only 8 distinct values: heavy ties */
        double v = distinct_value((int)(splitmix64(&rng) % 8) + (i < n ? 1 : 0));

        all[i] = loghist_bucket_index(v);
        if (i < n) {
            bn[i] = all[i];
            loghist_add(&hn, v);
        } else {
            loghist_add(&ho, v);
        }
    }
    qsort(all, (size_t)(n + m), sizeof(int), cmp_int);
    for (int i = 0; i < n; i++) {
        int below = 0, same = 0;

        for (int k = 0; k < n + m; k++) {
            below += all[k] < bn[i];
            same += all[k] == bn[i];
        }
        rank_sum += below + (same + 1) / 2.0; /* mid-rank */
    }
    for (int k = 0; k < n + m;) {
        int t = 1;

        while (k + t < n + m && all[k + t] == all[k])
            t++;
        ties += (double)t * t * t - t;
        k += t;
    }
    u = rank_sum - n * (n + 1) / 2.0;
    var = n * m / 12.0 * ((nn + 1) - ties / (nn * (nn - 1)));
    z = (u - n * m / 2.0 - 0.5) / sqrt(var);
    r = stats_mann_whitney_hist(&hn, &ho);
    near(r.u, u, 1e-9);
    near(r.z, z, 1e-12);
    near(r.p_value, 0.5 * erfc(z / sqrt(2.0)), 1e-12);
}

static void test_mwu_shift_detected(void **state)
{
    static loghist_t hn, ho;
    uint64_t rng = 31;
    stats_mwu_result_t r;

    (void)state;
    loghist_init(&hn);
    loghist_init(&ho);
    for (int i = 0; i < 500; i++) {
        loghist_add(&ho, lognormal(&rng, 300.0, 0.6));
        loghist_add(&hn, 2.0 * lognormal(&rng, 300.0, 0.6));
    }
    r = stats_mann_whitney_hist(&hn, &ho);
    assert_true(r.p_value < 0.001);
    assert_true(r.z > 3.0);
    assert_true(r.u > 0.7 * 500 * 500);
    /* and the other way round it is nowhere near significant */
    r = stats_mann_whitney_hist(&ho, &hn);
    assert_true(r.p_value > 0.999);
}

static void test_mwu_same_distribution(void **state)
{
    static loghist_t hn, ho;
    uint64_t rng = 41;
    double sum_p = 0.0;
    int rejections = 0, runs = 200;
    stats_mwu_result_t r;

    (void)state;
    /* The very same samples: U = nm/2 exactly; p just above 0.5 (continuity). */
    loghist_init(&ho);
    for (int i = 0; i < 500; i++)
        loghist_add(&ho, lognormal(&rng, 300.0, 0.6));
    r = stats_mann_whitney_hist(&ho, &ho);
    near(r.u, 500.0 * 500.0 / 2.0, 1e-9);
    assert_true(r.p_value > 0.5 && r.p_value < 0.51);

    /* Independent draws: p is uniform under the null; mean ~0.5, ~5% below 0.05. */
    for (int k = 0; k < runs; k++) {
        loghist_init(&hn);
        loghist_init(&ho);
        for (int i = 0; i < 500; i++) {
            loghist_add(&ho, lognormal(&rng, 300.0, 0.6));
            loghist_add(&hn, lognormal(&rng, 300.0, 0.6));
        }
        r = stats_mann_whitney_hist(&hn, &ho);
        sum_p += r.p_value;
        rejections += r.p_value < 0.05;
    }
    near(sum_p / runs, 0.5, 0.06);
    assert_true(rejections <= 20);
}

static void test_mwu_degenerate(void **state)
{
    static loghist_t a, b;
    stats_mwu_result_t r;

    (void)state;
    loghist_init(&a);
    loghist_init(&b);
    r = stats_mann_whitney_hist(&a, &b);
    assert_true(isnan(r.u) && isnan(r.z) && isnan(r.p_value));
    loghist_add(&a, 10.0);
    r = stats_mann_whitney_hist(&a, &b);
    assert_true(isnan(r.u) && isnan(r.z) && isnan(r.p_value));
    r = stats_mann_whitney_hist(&b, &a);
    assert_true(isnan(r.p_value));
    /* Everything in one bucket: no evidence either way. */
    for (int i = 0; i < 20; i++) {
        loghist_add(&a, 10.0);
        loghist_add(&b, 10.0);
    }
    r = stats_mann_whitney_hist(&a, &b);
    near(r.u, 21.0 * 20.0 / 2.0, 1e-12);
    assert_true(r.z == 0.0 && r.p_value == 1.0);
}

/* ---- latency gate ---- */

static void test_latency_gate_verdicts(void **state)
{
    static loghist_t hn, ho;
    static double base[500];
    uint64_t rng = 51;
    double ratio;
    stats_mwu_result_t mwu;
    stats_verdict_t v;

    (void)state;
    for (int i = 0; i < 500; i++)
        base[i] = lognormal(&rng, 300.0, 0.6);

    /* x2 slower everywhere: FAIL */
    loghist_init(&hn);
    loghist_init(&ho);
    for (int i = 0; i < 500; i++) {
        loghist_add(&ho, base[i]);
        loghist_add(&hn, 2.0 * lognormal(&rng, 300.0, 0.6));
    }
    v = stats_latency_gate(&hn, &ho, 1.2, 0.95, 100, &ratio, &mwu);
    assert_int_equal(v, STATS_FAIL);
    assert_true(ratio > 1.5 && ratio < 2.7);
    assert_true(mwu.p_value < 0.001);

    /* Below min_n on either side: INCONCLUSIVE, numbers still reported. */
    v = stats_latency_gate(&hn, &ho, 1.2, 0.95, 501, &ratio, &mwu);
    assert_int_equal(v, STATS_INCONCLUSIVE);
    assert_true(ratio > 1.5 && mwu.p_value < 0.001);

    /* Same samples: ratio 1, PASS (the outputs are optional). */
    v = stats_latency_gate(&ho, &ho, 1.2, 0.95, 100, &ratio, NULL);
    assert_int_equal(v, STATS_PASS);
    near(ratio, 1.0, 1e-15);
    assert_int_equal(stats_latency_gate(&ho, &ho, 1.2, 0.95, 100, NULL, NULL), STATS_PASS);

    /* Only the slowest 6% got 3x slower: p95 is over the bound but the distribution
     * as a whole did not move, so the gate will not fail on it. */
    qsort(base, 500, sizeof(double), cmp_double);
    loghist_init(&hn);
    loghist_init(&ho);
    for (int i = 0; i < 500; i++) {
        loghist_add(&ho, base[i]);
        loghist_add(&hn, i >= 470 ? 3.0 * base[i] : base[i]);
    }
    v = stats_latency_gate(&hn, &ho, 1.2, 0.95, 100, &ratio, &mwu);
    assert_true(ratio > 1.2);
    assert_true(mwu.p_value > 0.05);
    assert_int_equal(v, STATS_INCONCLUSIVE);
    /* ... unless the bound is generous enough. */
    v = stats_latency_gate(&hn, &ho, 3.5, 0.95, 100, &ratio, &mwu);
    assert_int_equal(v, STATS_PASS);
}

static void test_latency_gate_edges(void **state)
{
    static loghist_t a, b;
    double ratio = 0.0;
    stats_mwu_result_t mwu = {0, 0, 0};

    (void)state;
    loghist_init(&a);
    loghist_init(&b);
    /* Empty: INCONCLUSIVE even with min_n = 0, NaN outputs. */
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 0.95, 0, &ratio, &mwu), STATS_INCONCLUSIVE);
    assert_true(isnan(ratio) && isnan(mwu.u) && isnan(mwu.p_value));
    loghist_add(&a, 5.0);
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 0.95, 0, &ratio, &mwu), STATS_INCONCLUSIVE);
    assert_true(isnan(ratio));

    /* p95(orig) == 0: ratio 1 when new is 0 too, +inf otherwise. */
    loghist_init(&a);
    for (int i = 0; i < 50; i++) {
        loghist_add(&a, 0.0);
        loghist_add(&b, 0.0);
    }
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 0.95, 10, &ratio, &mwu), STATS_PASS);
    assert_true(ratio == 1.0);
    loghist_init(&a);
    for (int i = 0; i < 50; i++)
        loghist_add(&a, 100.0);
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 0.95, 10, &ratio, &mwu), STATS_FAIL);
    assert_true(isinf(ratio) && ratio > 0);

    /* Invalid parameters. */
    assert_int_equal(stats_latency_gate(&a, &b, NAN, 0.95, 10, NULL, NULL), STATS_INCONCLUSIVE);
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 1.0, 10, NULL, NULL), STATS_INCONCLUSIVE);
    assert_int_equal(stats_latency_gate(&a, &b, 1.2, 0.2, 10, NULL, NULL), STATS_INCONCLUSIVE);
}

/* Sub-millisecond latencies: a 1.5x ratio that is 0.15 ms is noise to an LLM client. */
static void test_latency_floor(void **state)
{
    (void)state;
    loghist_t a, b;
    loghist_init(&a);
    loghist_init(&b);
    for (int i = 0; i < 2000; i++) {
        loghist_add(&a, 0.45 + 0.0001 * (i % 50));
        loghist_add(&b, 0.30 + 0.0001 * (i % 50));
    }
    double ratio;
    assert_int_equal(stats_latency_gate(&a, &b, 1.25, 0.95, 100, &ratio, NULL), STATS_FAIL);
    assert_true(ratio > 1.4);
    assert_int_equal(stats_latency_gate_floor(&a, &b, 1.25, 10.0, 0.95, 100, NULL, NULL),
                     STATS_PASS);
    /* a difference above the floor still fails */
    loghist_t c;
    loghist_init(&c);
    for (int i = 0; i < 2000; i++)
        loghist_add(&c, 40.0 + 0.01 * (i % 50));
    loghist_t d;
    loghist_init(&d);
    for (int i = 0; i < 2000; i++)
        loghist_add(&d, 20.0 + 0.01 * (i % 50));
    assert_int_equal(stats_latency_gate_floor(&c, &d, 1.25, 10.0, 0.95, 100, NULL, NULL),
                     STATS_FAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_quantile_known),
        cmocka_unit_test(test_normal_cdf_known),
        cmocka_unit_test(test_normal_round_trip),
        cmocka_unit_test(test_rate_fails_when_worse),
        cmocka_unit_test(test_rate_passes_when_equal),
        cmocka_unit_test(test_rate_against_a_known_rate),
        cmocka_unit_test(test_rate_inconclusive),
        cmocka_unit_test(test_rate_invalid_input),
        cmocka_unit_test(test_rate_newcombe_examples),
        cmocka_unit_test(test_mwu_matches_pairwise),
        cmocka_unit_test(test_mwu_ties_match_midranks),
        cmocka_unit_test(test_mwu_shift_detected),
        cmocka_unit_test(test_mwu_same_distribution),
        cmocka_unit_test(test_mwu_degenerate),
        cmocka_unit_test(test_latency_gate_verdicts),
        cmocka_unit_test(test_latency_gate_edges),
        cmocka_unit_test(test_latency_floor),
    };

    return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
