/*
 * window.c — per-variant rollout windows; see window.h for what each sample
 * contributes and the merge rule.
 */
#include "window.h"

#include <math.h>
#include <string.h>

static void variant_init(window_variant_t *v)
{
    memset(v, 0, sizeof(*v));
    loghist_init(&v->latency);
    loghist_init(&v->ttft);
}

void window_init(window_t *w, long long since_ms)
{
    w->since_ms = since_ms;
    variant_init(&w->v[WINDOW_ORIGINAL]);
    variant_init(&w->v[WINDOW_NEW]);
}

void window_record(window_t *w, int variant, const window_sample_t *s)
{
    window_variant_t *v;

    if (!w || !s || (variant != WINDOW_ORIGINAL && variant != WINDOW_NEW))
        return;
    v = &w->v[variant];
    v->requests++;
    v->tokens_in += s->tokens_in;
    v->tokens_out += s->tokens_out;
    if (s->error) {
        v->errors++;
    } else {
        loghist_add(&v->latency, s->latency_ms);
        if (s->ttft_ms >= 0.0)
            loghist_add(&v->ttft, s->ttft_ms);
    }
    /* isfinite: a NaN or infinite price is as unknown as a negative one. */
    if (isfinite(s->cost_usd) && s->cost_usd >= 0.0) {
        v->cost_usd += s->cost_usd;
        v->priced_tokens += s->tokens_in + s->tokens_out;
    }
}

static void variant_merge(window_variant_t *dst, const window_variant_t *src)
{
    dst->requests += src->requests;
    dst->errors += src->errors;
    dst->tokens_in += src->tokens_in;
    dst->tokens_out += src->tokens_out;
    dst->priced_tokens += src->priced_tokens;
    dst->cost_usd += src->cost_usd;
    loghist_merge(&dst->latency, &src->latency);
    loghist_merge(&dst->ttft, &src->ttft);
}

void window_merge(window_t *dst, const window_t *src)
{
    long long since = src->since_ms < dst->since_ms ? src->since_ms : dst->since_ms;

    variant_merge(&dst->v[WINDOW_ORIGINAL], &src->v[WINDOW_ORIGINAL]);
    variant_merge(&dst->v[WINDOW_NEW], &src->v[WINDOW_NEW]);
    dst->since_ms = since;
}

void window_summarize(const window_variant_t *v, window_summary_t *out)
{
    out->requests = v->requests;
    out->errors = v->errors;
    out->error_rate = v->requests ? (double)v->errors / (double)v->requests : NAN;
    out->latency_p50 = loghist_quantile(&v->latency, 0.50);
    out->latency_p95 = loghist_quantile(&v->latency, 0.95);
    out->latency_p99 = loghist_quantile(&v->latency, 0.99);
    out->ttft_count = loghist_count(&v->ttft);
    out->ttft_p50 = loghist_quantile(&v->ttft, 0.50);
    out->ttft_p95 = loghist_quantile(&v->ttft, 0.95);
    out->ttft_p99 = loghist_quantile(&v->ttft, 0.99);
    out->cost_per_1k_tokens =
        v->priced_tokens ? v->cost_usd * 1000.0 / (double)v->priced_tokens : NAN;
}
