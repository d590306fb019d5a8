/*
 * stats — the statistics the rollout gates are built on: a one-sided error-rate
 * comparison of two proportions, a one-sided Mann-Whitney U test on two loghist
 * distributions, a p95-ratio latency gate, and the standard normal CDF / quantile.
 *
 * Conventions (Flagger / Kayenta): `new` is always compared with `original`
 * measured over the same window; too little data is INCONCLUSIVE, never FAIL.
 *
 * Ownership: everything is passed and returned by value or through caller-owned
 * pointers; nothing allocates, does I/O or keeps state.
 *
 * Errors: none reported as codes. Invalid inputs (err > n, confidence outside [0.5, 1),
 * NaN tolerance / ratio) give STATS_INCONCLUSIVE and NaN in the numbers that cannot
 * be computed; an empty histogram gives NaN in the Mann-Whitney result.
 */
#ifndef SWITCHYARD_STATS_H
#define SWITCHYARD_STATS_H

#include <stdint.h>

#include "loghist.h"

typedef enum { STATS_INCONCLUSIVE = 0, STATS_PASS, STATS_FAIL } stats_verdict_t;

/* "INCONCLUSIVE", "PASS", "FAIL" (static strings; "?" for anything else). */
const char *stats_verdict_name(stats_verdict_t v);

/* Standard normal CDF, Phi(z) = erfc(-z / sqrt 2) / 2 (full double accuracy, also in
 * the tails). Phi(-inf) = 0, Phi(+inf) = 1, NaN -> NaN. */
double stats_normal_cdf(double z);

/* Inverse of stats_normal_cdf (Wichura, AS 241 PPND16; relative error ~1e-16).
 * p <= 0 -> -INFINITY, p >= 1 -> +INFINITY, NaN -> NaN. */
double stats_normal_quantile(double p);

typedef struct {
    double p_new, p_orig; /* observed error rates; NaN when n is 0 */
    double diff;          /* p_new - p_orig */
    double lower;         /* one-sided lower confidence bound of diff at `confidence` */
    double upper;         /* one-sided upper confidence bound of diff at `confidence` */
    double z;             /* the critical value used: stats_normal_quantile(confidence) */
    stats_verdict_t verdict;
} stats_prop_result_t;

/*
 * Is the new error rate worse than the original's by more than `tolerance` (absolute,
 * e.g. 0.01) at one-sided confidence `confidence` (e.g. 0.95)?
 *
 * Interval: Newcombe's hybrid score interval for a difference of two independent
 * proportions (Newcombe 1998, method 10), built from the two Wilson score intervals
 * at the same z. Chosen over Wald because Wald collapses to zero width when a sample
 * has 0 (or all) errors, which is exactly the common case for a healthy provider
 * with few requests: 0/30 vs 0/30 would "prove" equality. Wilson bounds stay inside
 * [0, 1] and are wide when counts are small, so small samples are conservative.
 *   lower = diff - sqrt((p_new - lo_new)^2 + (hi_orig - p_orig)^2)
 *   upper = diff + sqrt((hi_new - p_new)^2 + (p_orig - lo_orig)^2)
 * Each one-sided bound has confidence `confidence` on its own.
 *
 * verdict: FAIL when lower > tolerance (worse beyond the tolerance);
 *          PASS when upper <= tolerance (the whole interval lies within it);
 *          INCONCLUSIVE otherwise, when n_new < min_n or n_orig < min_n (the numbers
 *          are still filled in for logging), or on invalid input.
 * min_n = 0 still needs at least one request on each side.
 */
stats_prop_result_t stats_error_rate_gate(uint64_t err_new, uint64_t n_new, uint64_t err_orig,
                                          uint64_t n_orig, double tolerance, double confidence,
                                          uint64_t min_n);

/*
 * The same question against a known rate p_ref instead of a second sample (e.g. a stage
 * at 100% that has no concurrent baseline): only new's Wilson interval at `confidence`,
 *   lower = lo_new - p_ref,  upper = hi_new - p_ref,
 * p_orig = p_ref, diff = p_new - p_ref, and the same verdicts (min_n on new only).
 * p_ref outside [0, 1] or NaN: INCONCLUSIVE.
 */
stats_prop_result_t stats_error_rate_vs_rate(uint64_t err_new, uint64_t n_new, double p_ref,
                                             double tolerance, double confidence, uint64_t min_n);

typedef struct {
    double u;       /* U of `new`: #pairs (new, orig) with new > orig, + 1/2 per tie */
    double z;       /* (U - nm/2 - 1/2) / sigma, tie-corrected sigma, continuity 1/2 */
    double p_value; /* one-sided P(U >= observed) under "same distribution" = 1 - Phi(z) */
} stats_mwu_result_t;

/*
 * One-sided Mann-Whitney U test: is `new_` stochastically larger (slower) than `orig`?
 * Samples are compared by bucket: two samples in the same bucket are a tie (counts
 * 1/2), and sigma carries the usual tie correction
 *   sigma^2 = n m / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))),  N = n + m,
 * t = samples of both in one bucket. Normal approximation with continuity correction
 * (as scipy's mannwhitneyu(..., alternative="greater") by default).
 * When every sample of both lies in one bucket sigma is 0: z = 0, p_value = 1 (no
 * evidence of a shift). Either histogram empty: all three are NaN.
 */
stats_mwu_result_t stats_mann_whitney_hist(const loghist_t *new_, const loghist_t *orig);

/*
 * Latency gate on p95 and the whole distribution:
 *   INCONCLUSIVE  either histogram has fewer than max(min_n, 1) samples, or
 *                 max_p95_ratio / confidence are invalid;
 *   PASS          ratio = p95(new) / p95(orig) <= max_p95_ratio;
 *   FAIL          ratio > max_p95_ratio AND the one-sided Mann-Whitney p-value is
 *                 < 1 - confidence (new is slower as a whole, not a noisy tail);
 *   INCONCLUSIVE  ratio > max_p95_ratio but Mann-Whitney does not confirm a shift.
 * When p95(orig) is 0 the ratio is 1 if p95(new) is 0 too, else +INFINITY.
 * *ratio_out (may be NULL) gets the ratio (NaN when a histogram is empty);
 * *mwu_out (may be NULL) gets the Mann-Whitney result whenever both are non-empty
 * (NaN otherwise), also on PASS, for logging.
 */
stats_verdict_t stats_latency_gate(const loghist_t *new_, const loghist_t *orig,
                                   double max_p95_ratio, double confidence, uint64_t min_n,
                                   double *ratio_out, stats_mwu_result_t *mwu_out);

/* The same, and PASS whenever p95(new) - p95(orig) <= min_diff_ms (a difference too
 * small to matter, whatever the ratio). */
stats_verdict_t stats_latency_gate_floor(const loghist_t *new_, const loghist_t *orig,
                                         double max_p95_ratio, double min_diff_ms,
                                         double confidence, uint64_t min_n, double *ratio_out,
                                         stats_mwu_result_t *mwu_out);

#endif
