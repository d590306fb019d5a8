/*
 * loghist.c — log-linear histogram; see loghist.h for the layout, the quantile
 * definition and the error bound.
 */
#include "loghist.h"

#include <float.h>
#include <math.h>
#include <string.h>

void loghist_init(loghist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = INFINITY;
    h->max = -INFINITY;
}

/* v is finite and >= 0 here. */
static int bucket_of(double v)
{
    int e;
    double m;
    int idx;

    if (v <= LOGHIST_MIN)
        return 0;
    if (v >= LOGHIST_MAX)
        return LOGHIST_BUCKETS - 1;
    /* v / MIN = m * 2^e with m in [0.5, 1): octave e - 1, and the linear position of
     * 2m in [1, 2) picks one of LOGHIST_SUB sub-buckets. */
    m = frexp(v / LOGHIST_MIN, &e);
    idx = (e - 1) * LOGHIST_SUB + ((int)(m * (2 * LOGHIST_SUB)) - LOGHIST_SUB);
    /* Rounding in v / MIN can only push a value across one bucket edge; clamp so it
     * never leaves the array. */
    if (idx < 0)
        idx = 0;
    if (idx >= LOGHIST_BUCKETS)
        idx = LOGHIST_BUCKETS - 1;
    return idx;
}

static int ignored(double v)
{
    /* !(v >= 0) also catches NaN. */
    return !(v >= 0.0) || isinf(v);
}

int loghist_bucket_index(double v)
{
    return ignored(v) ? -1 : bucket_of(v);
}

double loghist_bucket_lower(int i)
{
    if (i < 0 || i >= LOGHIST_BUCKETS)
        return NAN;
    return LOGHIST_MIN * ldexp(1.0 + (double)(i % LOGHIST_SUB) / LOGHIST_SUB, i / LOGHIST_SUB);
}

double loghist_bucket_upper(int i)
{
    if (i < 0 || i >= LOGHIST_BUCKETS)
        return NAN;
    return LOGHIST_MIN * ldexp(1.0 + (double)(i % LOGHIST_SUB + 1) / LOGHIST_SUB, i / LOGHIST_SUB);
}

static void bucket_add(uint32_t *b, uint64_t n)
{
    /* Saturate instead of wrapping: a wrapped counter would silently move quantiles. */
    uint64_t s = (uint64_t)*b + n;

    *b = s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

void loghist_add(loghist_t *h, double v)
{
    if (ignored(v))
        return;
    bucket_add(&h->buckets[bucket_of(v)], 1);
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void loghist_merge(loghist_t *dst, const loghist_t *src)
{
    /* Read the scalars first: dst may be src. */
    uint64_t count = src->count;
    double sum = src->sum, min = src->min, max = src->max;

    for (int i = 0; i < LOGHIST_BUCKETS; i++)
        bucket_add(&dst->buckets[i], src->buckets[i]);
    dst->count += count;
    dst->sum += sum;
    if (min < dst->min)
        dst->min = min;
    if (max > dst->max)
        dst->max = max;
}

uint64_t loghist_count(const loghist_t *h)
{
    return h->count;
}

double loghist_sum(const loghist_t *h)
{
    return h->sum;
}

double loghist_min(const loghist_t *h)
{
    return h->count ? h->min : NAN;
}

double loghist_max(const loghist_t *h)
{
    return h->count ? h->max : NAN;
}

double loghist_quantile(const loghist_t *h, double q)
{
    uint64_t n = 0, k, cum = 0;
    double t, mid;
    int i;

    if (isnan(q))
        return NAN;
    if (q < 0.0)
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    /* Rank against the bucket total rather than h->count: they differ only once a
     * bucket has saturated, and then the buckets are what we can walk. */
    for (i = 0; i < LOGHIST_BUCKETS; i++)
        n += h->buckets[i];
    if (n == 0)
        return NAN;
    /* k = ceil(q * n) with slack for the rounding of q * n (see loghist.h). */
    t = ceil(q * (double)n * (1.0 - 4 * DBL_EPSILON));
    k = t < 1.0 ? 1 : (t >= (double)n ? n : (uint64_t)t);
    /* The extreme ranks are known exactly. */
    if (k == 1)
        return h->min;
    if (k == n)
        return h->max;
    for (i = 0; i < LOGHIST_BUCKETS; i++) {
        cum += h->buckets[i];
        if (cum >= k)
            break;
    }
    mid = 0.5 * (loghist_bucket_lower(i) + loghist_bucket_upper(i));
    /* The true x_k lies in both the bucket and [min, max]; clamping the midpoint
     * into [min, max] can only move it closer (it also fixes the clamped end
     * buckets, whose nominal bounds say nothing about their samples). */
    if (mid < h->min)
        mid = h->min;
    if (mid > h->max)
        mid = h->max;
    return mid;
}
