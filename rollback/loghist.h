/*
 * loghist — a fixed-size, mergeable log-linear histogram for latencies and
 * time-to-first-token in milliseconds, with <= 1% relative error on quantiles.
 *
 * Layout: the range [LOGHIST_MIN, LOGHIST_MIN * 2^LOGHIST_OCTAVES) is cut into
 * octaves (powers of two above LOGHIST_MIN) and each octave into LOGHIST_SUB equal
 * linear sub-buckets, so a bucket's width is at most 1/64 of its lower bound. A
 * quantile is reported as the midpoint of the bucket holding it (error <= 1/128),
 * clamped to the exact smallest / largest sample seen; the extreme ranks (q = 0,
 * q = 1) are reported exactly.
 *
 * Quantile definition: for n samples sorted ascending x_1 <= ... <= x_n,
 * quantile(q) is x_k with k = max(1, ceil(q * n)), i.e. the smallest sample whose
 * 1-based rank is >= q * n. (ceil is taken with a few ulps of slack so that, say,
 * q = 0.07, n = 100 gives k = 7 despite 0.07 * 100 = 7.000000000000001 in double.)
 * For samples inside [LOGHIST_MIN, LOGHIST_MAX) the returned value is within 1% of
 * x_k. Samples <= LOGHIST_MIN share the lowest bucket and samples >= LOGHIST_MAX
 * the highest: their quantiles are bounded by the observed min / max, not 1%.
 *
 * Ownership: loghist_t is a plain value (about 8.7 KB, no pointers): embed it or
 * copy it with memcpy / assignment. Nothing here allocates, does I/O or keeps
 * global state; a histogram is not thread-safe — one writer, or external locking.
 *
 * Errors: none reported. NaN, negative and infinite samples are ignored (they are
 * not measurements); queries on an empty histogram return NaN (count 0, sum 0).
 * Bucket counters are uint32_t and saturate at UINT32_MAX (about 4.3e9 samples in
 * ONE bucket) rather than wrap; the total count is uint64_t.
 */
#ifndef SWITCHYARD_LOGHIST_H
#define SWITCHYARD_LOGHIST_H

#include <stddef.h>
#include <stdint.h>

#define LOGHIST_MIN 0.001  /* ms; lower edge of bucket 0 */
#define LOGHIST_MAX 1e7    /* ms; samples at or above go to the highest bucket */
#define LOGHIST_SUB 64     /* linear sub-buckets per octave */
#define LOGHIST_OCTAVES 34 /* LOGHIST_MIN * 2^34 ~= 1.7e7 > LOGHIST_MAX */
#define LOGHIST_BUCKETS (LOGHIST_SUB * LOGHIST_OCTAVES)

typedef struct loghist {
    uint64_t count; /* samples recorded (ignored ones excluded) */
    double sum;     /* sum of the recorded samples, unclamped */
    double min;     /* smallest recorded sample; +INFINITY when empty */
    double max;     /* largest recorded sample; -INFINITY when empty */
    uint32_t buckets[LOGHIST_BUCKETS];
} loghist_t;

/* Empties h. Every loghist_t must be initialised before use (all-zero is NOT valid). */
void loghist_init(loghist_t *h);

/* Records one sample v (ms). NaN, negative and infinite values are ignored. */
void loghist_add(loghist_t *h, double v);

/* dst += src, exactly as if every sample of src had been added to dst (the sum may
 * differ in the last bits because floating-point addition is not associative).
 * dst == src is allowed (doubles every count). */
void loghist_merge(loghist_t *dst, const loghist_t *src);

uint64_t loghist_count(const loghist_t *h);
double loghist_sum(const loghist_t *h);
double loghist_min(const loghist_t *h); /* NaN when empty */
double loghist_max(const loghist_t *h); /* NaN when empty */

/* The sample quantile defined above; q outside [0,1] is clamped, NaN q or an
 * empty histogram gives NaN. */
double loghist_quantile(const loghist_t *h, double q);

/* Bucket a value would be recorded in, or -1 when it would be ignored. Buckets are
 * ordered: a < b implies index(a) <= index(b). */
int loghist_bucket_index(double v);

/* Bounds [lower, upper) of bucket i (0 <= i < LOGHIST_BUCKETS); NaN otherwise. The
 * lowest bucket also holds everything below LOGHIST_MIN and the highest everything
 * at or above LOGHIST_MAX, whatever these nominal bounds say. */
double loghist_bucket_lower(int i);
double loghist_bucket_upper(int i);

#endif
