/*
 * stats.c — gate statistics; see stats.h for the choice of methods and the exact
 * verdict rules.
 */
#include "stats.h"

#include <math.h>

/* Not M_SQRT1_2: that needs _GNU_SOURCE / _XOPEN_SOURCE under -std=c11. */
#define STATS_SQRT1_2 0.70710678118654752440

const char *stats_verdict_name(stats_verdict_t v)
{
    switch (v) {
    case STATS_INCONCLUSIVE:
        return "INCONCLUSIVE";
    case STATS_PASS:
        return "PASS";
    case STATS_FAIL:
        return "FAIL";
    }
    return "?";
}

double stats_normal_cdf(double z)
{
    /* erfc keeps full relative accuracy in the lower tail, where 1 - erf would cancel. */
    return 0.5 * erfc(-z * STATS_SQRT1_2);
}

/* Evaluates c[0] + c[1] r + ... + c[7] r^7. */
static double poly8(const double *c, double r)
{
    double s = c[7];

    for (int i = 6; i >= 0; i--)
        s = s * r + c[i];
    return s;
}

double stats_normal_quantile(double p)
{
    /* Wichura (1988), Algorithm AS 241, PPND16: rational approximations in three
     * regions, accurate to about 1 part in 1e16. */
    static const double a[8] = {3.3871328727963666080e0,  1.3314166789178437745e+2,
                                1.9715909503065514427e+3, 1.3731693765509461125e+4,
                                4.5921953931549871457e+4, 6.7265770927008700853e+4,
                                3.3430575583588128105e+4, 2.5090809287301226727e+3};
    static const double b[8] = {1.0000000000000000000e0,  4.2313330701600911252e+1,
                                6.8718700749205790830e+2, 5.3941960214247511077e+3,
                                2.1213794301586595867e+4, 3.9307895800092710610e+4,
                                2.8729085735721942674e+4, 5.2264952788528545610e+3};
    static const double c[8] = {1.42343711074968357734e0,  4.63033784615654529590e0,
                                5.76949722146069140550e0,  3.64784832476320460504e0,
                                1.27045825245236838258e0,  2.41780725177450611770e-1,
                                2.27238449892691845833e-2, 7.74545014278341407640e-4};
    static const double d[8] = {1.0000000000000000000e0,   2.05319162663775882187e0,
                                1.67638483018380384940e0,  6.89767334985100004550e-1,
                                1.48103976427480074590e-1, 1.51986665636164571966e-2,
                                5.47593808499534494600e-4, 1.05075007164441684324e-9};
    static const double e[8] = {6.65790464350110377720e0,  5.46378491116411436990e0,
                                1.78482653991729133580e0,  2.96560571828504891230e-1,
                                2.65321895265761230930e-2, 1.24266094738807843860e-3,
                                2.71155556874348757815e-5, 2.01033439929228813265e-7};
    static const double f[8] = {1.0000000000000000000e0,   5.99832206555887937690e-1,
                                1.36929880922735805310e-1, 1.48753612908506148525e-2,
                                7.86869131145613259100e-4, 1.84631831751005468180e-5,
                                1.42151175831644588870e-7, 2.04426310338993978564e-15};
    double q, r, x;

    if (isnan(p))
        return NAN;
    if (p <= 0.0)
        return -INFINITY;
    if (p >= 1.0)
        return INFINITY;
    q = p - 0.5;
    if (fabs(q) <= 0.425) {
        r = 0.180625 - q * q;
        return q * poly8(a, r) / poly8(b, r);
    }
    r = sqrt(-log(q < 0.0 ? p : 1.0 - p));
    if (r <= 5.0) {
        r -= 1.6;
        x = poly8(c, r) / poly8(d, r);
    } else {
        r -= 5.0;
        x = poly8(e, r) / poly8(f, r);
    }
    return q < 0.0 ? -x : x;
}

/* Wilson score interval for k successes out of n at critical value z (n > 0). */
static void wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi)
{
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double denom = 1.0 + z2 / nn;
    double center = (p + z2 / (2.0 * nn)) / denom;
    double half = z / denom * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));

    /* Mathematically inside [p's side]; clamp away rounding so 0/n gives exactly 0. */
    *lo = k == 0 ? 0.0 : fmax(0.0, fmin(p, center - half));
    *hi = k == n ? 1.0 : fmin(1.0, fmax(p, center + half));
}

static int valid_confidence(double c)
{
    return c >= 0.5 && c < 1.0;
}

/* The gate's verdict from the interval of the difference: above the tolerance for sure
 * fails, within it for sure passes, anything else is not known yet. */
static stats_verdict_t interval_verdict(const stats_prop_result_t *r, double tolerance)
{
    if (r->lower > tolerance)
        return STATS_FAIL;
    return r->upper <= tolerance ? STATS_PASS : STATS_INCONCLUSIVE;
}

stats_prop_result_t stats_error_rate_gate(uint64_t err_new, uint64_t n_new, uint64_t err_orig,
                                          uint64_t n_orig, double tolerance, double confidence,
                                          uint64_t min_n)
{
    stats_prop_result_t r = {NAN, NAN, NAN, NAN, NAN, NAN, STATS_INCONCLUSIVE};
    double lo_n, hi_n, lo_o, hi_o;

    if (err_new > n_new || err_orig > n_orig || !valid_confidence(confidence) || isnan(tolerance))
        return r;
    r.z = stats_normal_quantile(confidence);
    if (n_new)
        r.p_new = (double)err_new / (double)n_new;
    if (n_orig)
        r.p_orig = (double)err_orig / (double)n_orig;
    if (n_new == 0 || n_orig == 0)
        return r;
    r.diff = r.p_new - r.p_orig;
    wilson(err_new, n_new, r.z, &lo_n, &hi_n);
    wilson(err_orig, n_orig, r.z, &lo_o, &hi_o);
    /* Newcombe's hybrid score interval: combine the two Wilson half-widths on the
     * side each one moves the difference. */
    r.lower =
        r.diff - sqrt((r.p_new - lo_n) * (r.p_new - lo_n) + (hi_o - r.p_orig) * (hi_o - r.p_orig));
    r.upper =
        r.diff + sqrt((hi_n - r.p_new) * (hi_n - r.p_new) + (r.p_orig - lo_o) * (r.p_orig - lo_o));
    if (n_new < min_n || n_orig < min_n)
        return r;
    r.verdict = interval_verdict(&r, tolerance);
    return r;
}

stats_prop_result_t stats_error_rate_vs_rate(uint64_t err_new, uint64_t n_new, double p_ref,
                                             double tolerance, double confidence, uint64_t min_n)
{
    stats_prop_result_t r = {NAN, NAN, NAN, NAN, NAN, NAN, STATS_INCONCLUSIVE};
    double lo_n, hi_n;

    if (err_new > n_new || !valid_confidence(confidence) || isnan(tolerance) ||
        !(p_ref >= 0.0 && p_ref <= 1.0))
        return r;
    r.z = stats_normal_quantile(confidence);
    r.p_orig = p_ref;
    if (n_new == 0)
        return r;
    r.p_new = (double)err_new / (double)n_new;
    r.diff = r.p_new - p_ref;
    wilson(err_new, n_new, r.z, &lo_n, &hi_n);
    r.lower = lo_n - p_ref;
    r.upper = hi_n - p_ref;
    if (n_new < min_n)
        return r;
    r.verdict = interval_verdict(&r, tolerance);
    return r;
}

stats_mwu_result_t stats_mann_whitney_hist(const loghist_t *new_, const loghist_t *orig)
{
    stats_mwu_result_t r = {NAN, NAN, NAN};
    double n = 0.0, m = 0.0, below = 0.0, u = 0.0, ties = 0.0, nn, var, num;

    /* One pass in bucket order: each `new` sample beats every `orig` sample in a lower
     * bucket and ties with those in its own bucket. Doubles: n * m overflows 64 bits
     * long before it loses meaningful precision here. */
    for (int i = 0; i < LOGHIST_BUCKETS; i++) {
        double a = new_->buckets[i], b = orig->buckets[i], t = a + b;

        u += a * (below + 0.5 * b);
        below += b;
        n += a;
        m += b;
        ties += t * t * t - t;
    }
    if (n == 0.0 || m == 0.0)
        return r;
    r.u = u;
    nn = n + m;
    var = n * m / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if (!(var > 0.0)) {
        /* Every sample in one bucket: U is nm/2 under every permutation. */
        r.z = 0.0;
        r.p_value = 1.0;
        return r;
    }
    num = u - n * m / 2.0 - 0.5;
    r.z = num / sqrt(var);
    /* Upper tail via the CDF of -z: no cancellation for small p-values. */
    r.p_value = stats_normal_cdf(-r.z);
    return r;
}

stats_verdict_t stats_latency_gate(const loghist_t *new_, const loghist_t *orig,
                                   double max_p95_ratio, double confidence, uint64_t min_n,
                                   double *ratio_out, stats_mwu_result_t *mwu_out)
{
    return stats_latency_gate_floor(new_, orig, max_p95_ratio, 0.0, confidence, min_n,
                                    ratio_out, mwu_out);
}

stats_verdict_t stats_latency_gate_floor(const loghist_t *new_, const loghist_t *orig,
                                         double max_p95_ratio, double min_diff_ms,
                                         double confidence, uint64_t min_n, double *ratio_out,
                                         stats_mwu_result_t *mwu_out)
{
    stats_mwu_result_t mwu = {NAN, NAN, NAN};
    double ratio = NAN, p95_new = NAN, p95_orig = NAN;
    uint64_t need = min_n ? min_n : 1;
    stats_verdict_t v = STATS_INCONCLUSIVE;

    if (loghist_count(new_) && loghist_count(orig)) {
        p95_new = loghist_quantile(new_, 0.95);
        p95_orig = loghist_quantile(orig, 0.95);
        if (p95_orig > 0.0)
            ratio = p95_new / p95_orig;
        else
            ratio = p95_new > 0.0 ? INFINITY : 1.0;
        mwu = stats_mann_whitney_hist(new_, orig);
    }
    if (ratio_out)
        *ratio_out = ratio;
    if (mwu_out)
        *mwu_out = mwu;
    if (loghist_count(new_) < need || loghist_count(orig) < need || !valid_confidence(confidence) ||
        isnan(max_p95_ratio))
        return STATS_INCONCLUSIVE;
    /* A difference too small to matter passes whatever the ratio: at sub-millisecond
     * latencies a few tens of microseconds of noise are a large ratio, and with
     * thousands of samples Mann-Whitney calls even that a shift. */
    if (ratio <= max_p95_ratio || p95_new - p95_orig <= min_diff_ms)
        v = STATS_PASS;
    else if (mwu.p_value < 1.0 - confidence)
        v = STATS_FAIL;
    return v;
}
