/* metrics — shards and Prometheus rendering. See metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_bounds[METRICS_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,  1,     2.5,  5,
                                                       10,    30,   60,    120,  300};
static const double ovh_bounds[METRICS_OVH_BUCKETS] = {10e-6,  25e-6,  50e-6, 100e-6,
                                                       250e-6, 500e-6, 1e-3,  2.5e-3,
                                                       5e-3,   10e-3,  25e-3, 100e-3};
static const char *const outcome_names[OUTCOME_N] = {"ok",        "fallback",      "error",
                                                     "truncated", "client_closed", "rejected"};
static const char *const direction_names[3] = {"input", "output", "cached_input"};
static const char *const status_names[METRICS_STATUS_CLASSES] = {"none", "1xx", "2xx",
                                                                 "3xx",  "4xx", "5xx"};

/* Single writer: a relaxed load and store, no read-modify-write needed. */
static inline void inc(mcount_t *c, uint64_t by)
{
    atomic_store_explicit(&c->v, atomic_load_explicit(&c->v, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

static inline void addf(mgauge_t *g, double by)
{
    atomic_store_explicit(&g->v, atomic_load_explicit(&g->v, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

static inline uint64_t get(const mcount_t *c)
{
    return atomic_load_explicit(&c->v, memory_order_relaxed);
}

static inline double getf(const mgauge_t *g)
{
    return atomic_load_explicit(&g->v, memory_order_relaxed);
}

metrics_shard_t *metrics_shard_new(void)
{
    metrics_shard_t *m = calloc(1, sizeof(*m));
    if (m)
        strcpy(m->models[METRICS_MAX_MODELS].name, "other");
    return m;
}

void metrics_shard_free(metrics_shard_t *m)
{
    free(m);
}

static metrics_model_t *model_slot(metrics_shard_t *m, const char *model)
{
    const char *name = model ? model : "";
    int n = atomic_load_explicit(&m->n_models, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (strcmp(m->models[i].name, name) == 0)
            return &m->models[i];
    if (n >= METRICS_MAX_MODELS || strlen(name) > METRICS_MODEL_LEN)
        return &m->models[METRICS_MAX_MODELS];
    strcpy(m->models[n].name, name);
    atomic_store_explicit(&m->n_models, n + 1, memory_order_release);
    return &m->models[n];
}

static void observe_lat(mhist_lat_t *h, double v)
{
    int i = 0;
    while (i < METRICS_LAT_BUCKETS && v > lat_bounds[i])
        i++;
    inc(&h->buckets[i], 1);
    addf(&h->sum, v);
}

void metrics_end_inferred(metrics_shard_t *m, int role)
{
    if (m && role >= 0 && role < CONFIG_N_ROLES)
        inc(&m->ends_inferred[role], 1);
}

void metrics_connection_wait(metrics_shard_t *m, int role)
{
    if (m && role >= 0 && role < CONFIG_N_ROLES)
        inc(&m->connection_waits[role], 1);
}

void metrics_record(metrics_shard_t *m, const metrics_request_t *r)
{
    metrics_model_t *mm = model_slot(m, r->model);
    int prov = r->provider >= 0 ? r->provider : METRICS_PROVIDER_NONE;
    int sc = r->status > 0 && r->status < 600 ? r->status / 100 : 0;
    inc(&mm->requests[prov][r->variant ? 1 : 0][sc][r->outcome], 1);
    if (r->provider >= 0) {
        inc(&mm->tokens[r->provider][0], (uint64_t)(r->tokens_in > 0 ? r->tokens_in : 0));
        inc(&mm->tokens[r->provider][1], (uint64_t)(r->tokens_out > 0 ? r->tokens_out : 0));
        inc(&mm->tokens[r->provider][2], (uint64_t)(r->tokens_cached > 0 ? r->tokens_cached : 0));
        if (r->cost_usd >= 0) {
            addf(&mm->cost[r->provider], r->cost_usd);
            inc(&mm->cost_known[r->provider][0], 1);
        }
        if (r->cost_if_original_usd >= 0) {
            addf(&mm->cost_if_original[r->provider], r->cost_if_original_usd);
            inc(&mm->cost_known[r->provider][1], 1);
        }
        /* Nothing served has no cost to know (failed attempts are in wasted). */
        if (r->served && r->cost_usd < 0)
            inc(&mm->cost_unknown[r->provider][0], 1);
        if (r->served && r->cost_if_original_usd < 0)
            inc(&mm->cost_unknown[r->provider][1], 1);
    }
    for (int i = 0; i < CONFIG_N_ROLES; i++)
        if (r->wasted_usd[i] > 0)
            addf(&mm->wasted[i], r->wasted_usd[i]);
    for (int i = 0; i < r->n_attempts; i++)
        inc(&m->attempts[r->attempt_role[i]][r->attempt_class[i]], 1);
    if (r->fallback_from >= 0 && r->fallback_to >= 0)
        inc(&m->fallbacks[r->fallback_from][r->fallback_to][r->fallback_class], 1);
    observe_lat(&m->duration[prov], r->duration_s);
    if (r->first_token_s >= 0)
        observe_lat(&m->first_token[prov], r->first_token_s);
    if (r->overhead_s >= 0) {
        int i = 0;
        while (i < METRICS_OVH_BUCKETS && r->overhead_s > ovh_bounds[i])
            i++;
        inc(&m->overhead.buckets[i], 1);
        addf(&m->overhead.sum, r->overhead_s);
    }
}

/* ---- rendering ------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    if (o->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

/* Label value escaping: backslash, double quote and newline. */
static const char *esc(const char *s, char *buf, size_t cap)
{
    size_t j = 0;
    for (; *s && j + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[j++] = '\\';
            buf[j++] = *s;
        } else if (*s == '\n') {
            buf[j++] = '\\';
            buf[j++] = 'n';
        } else {
            buf[j++] = *s;
        }
    }
    buf[j] = '\0';
    return buf;
}

/* All shards' entries for one model name, merged. */
typedef struct {
    const char *name;
    uint64_t requests[METRICS_PROVIDERS][2][METRICS_STATUS_CLASSES][OUTCOME_N];
    uint64_t tokens[CONFIG_N_ROLES][3];
    double cost[CONFIG_N_ROLES], cost_if_original[CONFIG_N_ROLES], wasted[CONFIG_N_ROLES];
    uint64_t cost_known[CONFIG_N_ROLES][2], cost_unknown[CONFIG_N_ROLES][2];
} merged_model_t;

static void merge_model(merged_model_t *d, const metrics_model_t *s)
{
    for (int p = 0; p < METRICS_PROVIDERS; p++)
        for (int v = 0; v < 2; v++)
            for (int c = 0; c < METRICS_STATUS_CLASSES; c++)
                for (int o = 0; o < OUTCOME_N; o++)
                    d->requests[p][v][c][o] += get(&s->requests[p][v][c][o]);
    for (int p = 0; p < CONFIG_N_ROLES; p++) {
        for (int k = 0; k < 3; k++)
            d->tokens[p][k] += get(&s->tokens[p][k]);
        d->cost[p] += getf(&s->cost[p]);
        d->cost_if_original[p] += getf(&s->cost_if_original[p]);
        d->wasted[p] += getf(&s->wasted[p]);
        for (int k = 0; k < 2; k++) {
            d->cost_known[p][k] += get(&s->cost_known[p][k]);
            d->cost_unknown[p][k] += get(&s->cost_unknown[p][k]);
        }
    }
}

static void render_lat(out_t *o, const char *name, const char *help, metrics_shard_t *const *sh,
                       size_t n, int which, const char *const *prov_names)
{
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int p = 0; p < METRICS_PROVIDERS; p++) {
        uint64_t b[METRICS_LAT_BUCKETS + 1] = {0};
        double sum = 0;
        for (size_t s = 0; s < n; s++) {
            const mhist_lat_t *h = which ? &sh[s]->first_token[p] : &sh[s]->duration[p];
            for (int i = 0; i <= METRICS_LAT_BUCKETS; i++)
                b[i] += get(&h->buckets[i]);
            sum += getf(&h->sum);
        }
        uint64_t cum = 0;
        for (int i = 0; i <= METRICS_LAT_BUCKETS; i++) {
            cum += b[i];
            if (i < METRICS_LAT_BUCKETS)
                put(o, "%s_bucket{provider=\"%s\",le=\"%g\"} %llu\n", name, prov_names[p],
                    lat_bounds[i], (unsigned long long)cum);
            else
                put(o, "%s_bucket{provider=\"%s\",le=\"+Inf\"} %llu\n", name, prov_names[p],
                    (unsigned long long)cum);
        }
        put(o, "%s_sum{provider=\"%s\"} %.17g\n", name, prov_names[p], sum);
        put(o, "%s_count{provider=\"%s\"} %llu\n", name, prov_names[p], (unsigned long long)cum);
    }
}

/* A counter by provider role: the mcount_t[CONFIG_N_ROLES] at `off` in every shard. */
static void role_counter(out_t *o, metrics_shard_t *const *shards, size_t n,
                         const char *const *prov, size_t off, const char *name, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int p = 0; p < CONFIG_N_ROLES; p++) {
        uint64_t v = 0;
        for (size_t s = 0; s < n; s++)
            v += get((const mcount_t *)((const char *)shards[s] + off) + p);
        put(o, "%s{provider=\"%s\"} %llu\n", name, prov[p], (unsigned long long)v);
    }
}

char *metrics_render(metrics_shard_t *const *shards, size_t n, const config_t *cfg,
                     double rollout_stage_percentage)
{
    out_t o = {malloc(1 << 16), 0, 1 << 16, 0};
    if (!o.buf)
        return NULL;
    o.buf[0] = '\0';
    char e1[256], e2[256];
    const char *prov[METRICS_PROVIDERS] = {cfg->providers[0].name, cfg->providers[1].name, "none"};
    char pesc[METRICS_PROVIDERS][256];
    for (int p = 0; p < METRICS_PROVIDERS; p++)
        prov[p] = esc(prov[p], pesc[p], sizeof(pesc[p]));

    /* Merge models by name across shards. */
    size_t cap = n * (METRICS_MAX_MODELS + 1) + 1, nm = 0;
    merged_model_t *mm = calloc(cap, sizeof(*mm));
    if (!mm) {
        free(o.buf);
        return NULL;
    }
    for (size_t s = 0; s < n; s++) {
        int count = atomic_load_explicit(&shards[s]->n_models, memory_order_acquire);
        for (int i = 0; i <= METRICS_MAX_MODELS; i++) {
            if (i >= count && i != METRICS_MAX_MODELS)
                continue;
            const metrics_model_t *src = &shards[s]->models[i];
            size_t k = 0;
            while (k < nm && strcmp(mm[k].name, src->name) != 0)
                k++;
            if (k == nm)
                mm[nm++].name = src->name;
            merge_model(&mm[k], src);
        }
    }

    put(&o, "# HELP switchyard_requests_total Client requests by serving provider, model, "
            "variant, status class and outcome.\n# TYPE switchyard_requests_total counter\n");
    for (size_t k = 0; k < nm; k++)
        for (int p = 0; p < METRICS_PROVIDERS; p++)
            for (int v = 0; v < 2; v++)
                for (int c = 0; c < METRICS_STATUS_CLASSES; c++)
                    for (int oc = 0; oc < OUTCOME_N; oc++)
                        if (mm[k].requests[p][v][c][oc])
                            put(&o,
                                "switchyard_requests_total{provider=\"%s\",model=\"%s\","
                                "variant=\"%s\",status_class=\"%s\",outcome=\"%s\"} %llu\n",
                                prov[p], esc(mm[k].name, e1, sizeof(e1)),
                                v ? "new" : "original", status_names[c], outcome_names[oc],
                                (unsigned long long)mm[k].requests[p][v][c][oc]);

    put(&o, "# HELP switchyard_attempts_total Upstream attempts by provider and result class.\n"
            "# TYPE switchyard_attempts_total counter\n");
    for (int p = 0; p < CONFIG_N_ROLES; p++)
        for (int c = 0; c < FAIL_N_CLASSES; c++) {
            uint64_t v = 0;
            for (size_t s = 0; s < n; s++)
                v += get(&shards[s]->attempts[p][c]);
            if (v)
                put(&o, "switchyard_attempts_total{provider=\"%s\",class=\"%s\"} %llu\n", prov[p],
                    failure_name((fail_class_t)c), (unsigned long long)v);
        }

    role_counter(&o, shards, n, prov, offsetof(metrics_shard_t, ends_inferred),
                 "switchyard_upstream_ends_inferred_total",
                 "HTTP/2 answers ended on their content because libcurl held their end.");
    role_counter(&o, shards, n, prov, offsetof(metrics_shard_t, connection_waits),
                 "switchyard_upstream_connection_waits_total",
                 "Attempts that waited in line for an HTTP/2 connection being opened (no "
                 "open one had room).");

    put(&o, "# HELP switchyard_fallbacks_total Requests moved to the other provider, by the "
            "class that moved them.\n# TYPE switchyard_fallbacks_total counter\n");
    for (int f = 0; f < CONFIG_N_ROLES; f++)
        for (int t = 0; t < CONFIG_N_ROLES; t++)
            for (int c = 0; c <= FAIL_N_CLASSES; c++) {
                uint64_t v = 0;
                for (size_t s = 0; s < n; s++)
                    v += get(&shards[s]->fallbacks[f][t][c]);
                if (v)
                    put(&o, "switchyard_fallbacks_total{from=\"%s\",to=\"%s\",class=\"%s\"} %llu\n",
                        prov[f], prov[t],
                        c == FAIL_N_CLASSES ? "ejected" : failure_name((fail_class_t)c),
                        (unsigned long long)v);
            }

    render_lat(&o, "switchyard_request_duration_seconds",
               "Client request duration, received to response complete.", shards, n, 0, prov);
    render_lat(&o, "switchyard_first_token_seconds",
               "Request received to the first byte of a streamed answer.", shards, n, 1, prov);

    put(&o, "# HELP switchyard_overhead_seconds Time spent in switchyard itself (before the first "
            "attempt and after the upstream answered).\n"
            "# TYPE switchyard_overhead_seconds histogram\n");
    {
        uint64_t b[METRICS_OVH_BUCKETS + 1] = {0}, cum = 0;
        double sum = 0;
        for (size_t s = 0; s < n; s++) {
            for (int i = 0; i <= METRICS_OVH_BUCKETS; i++)
                b[i] += get(&shards[s]->overhead.buckets[i]);
            sum += getf(&shards[s]->overhead.sum);
        }
        for (int i = 0; i <= METRICS_OVH_BUCKETS; i++) {
            cum += b[i];
            if (i < METRICS_OVH_BUCKETS)
                put(&o, "switchyard_overhead_seconds_bucket{le=\"%g\"} %llu\n", ovh_bounds[i],
                    (unsigned long long)cum);
            else
                put(&o, "switchyard_overhead_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
        }
        put(&o, "switchyard_overhead_seconds_sum %.17g\n", sum);
        put(&o, "switchyard_overhead_seconds_count %llu\n", (unsigned long long)cum);
    }

    put(&o, "# HELP switchyard_tokens_total Tokens billed by the serving provider.\n"
            "# TYPE switchyard_tokens_total counter\n");
    for (size_t k = 0; k < nm; k++)
        for (int p = 0; p < CONFIG_N_ROLES; p++)
            for (int d = 0; d < 3; d++)
                if (mm[k].tokens[p][d])
                    put(&o,
                        "switchyard_tokens_total{provider=\"%s\",model=\"%s\",direction=\"%s\"} "
                        "%llu\n",
                        prov[p], esc(mm[k].name, e1, sizeof(e1)), direction_names[d],
                        (unsigned long long)mm[k].tokens[p][d]);

    static const struct {
        const char *name, *help;
        int field;
    } money[] = {
        {"switchyard_cost_usd_total", "Cost at the serving provider's prices (known prices only).",
         0},
        {"switchyard_cost_if_original_usd_total",
         "What the original provider would have charged for the same tokens.", 1},
        {"switchyard_wasted_cost_usd_total", "Billed usage of attempts that failed.", 2},
    };
    for (size_t i = 0; i < sizeof(money) / sizeof(money[0]); i++) {
        put(&o, "# HELP %s %s\n# TYPE %s counter\n", money[i].name, money[i].help,
            money[i].name);
        for (size_t k = 0; k < nm; k++)
            for (int p = 0; p < CONFIG_N_ROLES; p++) {
                int f = money[i].field;
                double v = f == 0   ? mm[k].cost[p]
                           : f == 1 ? mm[k].cost_if_original[p]
                                    : mm[k].wasted[p];
                /* A cost is shown once one request had it known (0 included); unknown
                 * costs are never added, so without one the series would be a false 0. */
                if (f == 2 ? v != 0 : mm[k].cost_known[p][f] != 0)
                    put(&o, "%s{provider=\"%s\",model=\"%s\"} %.17g\n", money[i].name, prov[p],
                        esc(mm[k].name, e1, sizeof(e1)), v);
            }
    }

    static const struct {
        const char *name, *help;
    } unknown[2] = {
        {"switchyard_requests_cost_unknown_total",
         "Served requests whose cost is unknown: no price for the model at the serving "
         "provider (left out of switchyard_cost_usd_total)."},
        {"switchyard_requests_cost_if_original_unknown_total",
         "Served requests whose cost at the original provider's prices is unknown: no price "
         "for the model there (left out of switchyard_cost_if_original_usd_total)."},
    };
    for (int f = 0; f < 2; f++) {
        put(&o, "# HELP %s %s\n# TYPE %s counter\n", unknown[f].name, unknown[f].help,
            unknown[f].name);
        for (size_t k = 0; k < nm; k++)
            for (int p = 0; p < CONFIG_N_ROLES; p++)
                if (mm[k].cost_unknown[p][f])
                    put(&o, "%s{provider=\"%s\",model=\"%s\"} %llu\n", unknown[f].name, prov[p],
                        esc(mm[k].name, e1, sizeof(e1)),
                        (unsigned long long)mm[k].cost_unknown[p][f]);
    }

    put(&o, "# HELP switchyard_flag_percentage Share of sticky keys routed to the new provider.\n"
            "# TYPE switchyard_flag_percentage gauge\n");
    for (size_t i = 0; i < cfg->n_flags; i++)
        put(&o, "switchyard_flag_percentage{flag=\"%s\"} %g\n",
            esc(cfg->flags[i]->key, e2, sizeof(e2)),
            /* the routing flag as it routes (the caller's effective value) */
            strcmp(cfg->flags[i]->key, "use_new_provider") == 0 ? rollout_stage_percentage
            : cfg->flags[i]->disabled                           ? 0.0
                                      : cfg->flags[i]->percentage_bp / 100.0);
    put(&o, "# HELP switchyard_rollout_stage_percentage Percentage of the current rollout "
            "stage.\n# TYPE switchyard_rollout_stage_percentage gauge\n"
            "switchyard_rollout_stage_percentage %g\n",
        rollout_stage_percentage);
    free(mm);
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
