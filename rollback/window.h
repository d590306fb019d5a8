/*
 * window — live per-variant measurement windows for the rollout controller.
 *
 * The controller compares the `new` variant against the `original` variant measured
 * since the same instant (the stage start), never against history. Each worker owns
 * one window_t and records every finished client request into it; the controller
 * merges all workers' windows (same since_ms) and summarises each variant.
 *
 * What a sample contributes:
 *   requests        +1 always
 *   errors          +1 when s->error != 0 (the caller decides what a failure is)
 *   latency, ttft   ONLY for successful requests (error == 0): failed requests are
 *                   judged by the error-rate gate, and their durations (a 5xx in 3 ms,
 *                   a 60 s timeout) would pull the latency distribution either way.
 *                   ttft only when ttft_ms >= 0 (a stream with a known first token).
 *   tokens_in/out   always (a failed stream may still have been billed)
 *   cost_usd, priced_tokens
 *                   only when cost_usd is finite and >= 0: unpriced requests are left
 *                   out of cost per 1k tokens entirely (their tokens too), so a model
 *                   without a price does not make a variant look cheaper.
 *
 * Ownership: window_t is a plain value (about 35 KB, four loghist_t, no pointers);
 * embed it in the worker struct. Nothing here allocates, does I/O, reads a clock
 * (since_ms is given) or keeps global state. Not thread-safe: a window has one
 * writer; the controller must merge a snapshot (copy taken under the worker's lock
 * or handed over by message), never a window a worker is writing.
 *
 * Errors: none reported. A NULL pointer or a variant other than WINDOW_ORIGINAL /
 * WINDOW_NEW is ignored by window_record; summaries use NaN where there is no data.
 */
#ifndef SWITCHYARD_WINDOW_H
#define SWITCHYARD_WINDOW_H

#include <stdint.h>

#include "loghist.h"

enum { WINDOW_ORIGINAL = 0, WINDOW_NEW = 1 };

typedef struct {
    double latency_ms; /* whole request */
    double ttft_ms;    /* first token; < 0 when not a stream / unknown */
    int error;         /* counted as a failure for the error-rate gate (the caller decides:
                          5xx sent to the client, truncated stream, ...) */
    uint64_t tokens_in, tokens_out;
    double cost_usd; /* < 0 when unknown (no price): excluded from cost per 1k tokens */
} window_sample_t;

typedef struct {
    uint64_t requests, errors, tokens_in, tokens_out;
    uint64_t priced_tokens; /* tokens_in + tokens_out of the priced requests */
    double cost_usd;        /* sum over the priced requests */
    loghist_t latency, ttft;
} window_variant_t;

typedef struct {
    long long since_ms; /* stage start (ms, the caller's clock) */
    window_variant_t v[2];
} window_t;

/* Empties w and stamps it with the instant it measures from. */
void window_init(window_t *w, long long since_ms);

/* Adds one finished request to variant WINDOW_ORIGINAL or WINDOW_NEW. */
void window_record(window_t *w, int variant, const window_sample_t *s);

/* dst += src, variant by variant. dst->since_ms becomes the EARLIER of the two: the merged
 * data may hold samples from that instant on, so a contributor left over from before a
 * stage start makes the whole merge older than the stage and rollout_check holds instead
 * of judging the previous stage's samples. The controller only merges windows of the same
 * epoch, where both are equal. */
void window_merge(window_t *dst, const window_t *src);

typedef struct {
    uint64_t requests, errors;
    double error_rate;                            /* errors / requests; NaN when requests == 0 */
    double latency_p50, latency_p95, latency_p99; /* ms, successful requests; NaN if none */
    double ttft_p50, ttft_p95, ttft_p99;          /* ms; NaN when ttft_count == 0 */
    uint64_t ttft_count;
    double cost_per_1k_tokens; /* USD per 1000 priced tokens; NaN when none is priced */
} window_summary_t;

/* Summarises one variant (e.g. &w->v[WINDOW_NEW]); quantiles as loghist_quantile. */
void window_summarize(const window_variant_t *v, window_summary_t *out);

#endif
