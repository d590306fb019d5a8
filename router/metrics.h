/*
 * metrics — per-worker metric shards and their Prometheus text rendering.
 *
 * Each worker owns one shard and is its only writer; the admin thread merges all
 * shards when /metrics is scraped. Counters are C11 atomics written with relaxed
 * load+store by their single writer, so a scrape never reads a torn value and the
 * request path takes no lock and no read-modify-write. A model is published in a
 * shard's table (release) only after its name is written.
 *
 * Model names come from clients: at most METRICS_MAX_MODELS distinct names (of at
 * most METRICS_MODEL_LEN bytes) per shard, the rest are counted as "other".
 * metrics_render returns malloc'd text (NULL on allocation failure).
 */
#ifndef SWITCHYARD_METRICS_H
#define SWITCHYARD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "failure.h"

#define METRICS_MAX_MODELS 64
#define METRICS_MODEL_LEN 96
#define METRICS_PROVIDERS 3 /* original, new, none (no attempt made) */
#define METRICS_PROVIDER_NONE 2
#define METRICS_STATUS_CLASSES 6 /* index = status / 100 (0 = no status) */
#define METRICS_LAT_BUCKETS 15
#define METRICS_OVH_BUCKETS 12

typedef enum {
    OUTCOME_OK = 0,       /* served by the first attempt */
    OUTCOME_FALLBACK,     /* served after a retry, a fallback or an ejection reroute */
    OUTCOME_ERROR,        /* the client got an error from switchyard or an upstream */
    OUTCOME_TRUNCATED,    /* a committed stream ended by an error */
    OUTCOME_CLIENT_CLOSED,
    OUTCOME_REJECTED,     /* refused by switchyard before any attempt (bad input) */
    OUTCOME_N
} metrics_outcome_t;

typedef struct {
    atomic_uint_least64_t v;
} mcount_t;

typedef struct {
    _Atomic double v;
} mgauge_t;

typedef struct {
    mcount_t buckets[METRICS_LAT_BUCKETS + 1]; /* last = +Inf */
    mgauge_t sum;
} mhist_lat_t;

typedef struct {
    mcount_t buckets[METRICS_OVH_BUCKETS + 1];
    mgauge_t sum;
} mhist_ovh_t;

typedef struct {
    char name[METRICS_MODEL_LEN + 1];
    mcount_t requests[METRICS_PROVIDERS][2][METRICS_STATUS_CLASSES][OUTCOME_N];
    mcount_t tokens[CONFIG_N_ROLES][3]; /* input, output, cached_input */
    mgauge_t cost[CONFIG_N_ROLES];
    mgauge_t cost_if_original[CONFIG_N_ROLES];
    mgauge_t wasted[CONFIG_N_ROLES];
    /* Requests whose cost [0] / cost_if_original [1] was known: a cost series is shown
     * only when this is not 0, so an unknown cost never reads as a cost of 0. */
    mcount_t cost_known[CONFIG_N_ROLES][2];
    /* Served requests whose cost [0] / cost_if_original [1] was unknown (no price). */
    mcount_t cost_unknown[CONFIG_N_ROLES][2];
} metrics_model_t;

typedef struct {
    metrics_model_t models[METRICS_MAX_MODELS + 1]; /* last = "other" */
    atomic_int n_models;
    mcount_t attempts[CONFIG_N_ROLES][FAIL_N_CLASSES];
    mcount_t fallbacks[CONFIG_N_ROLES][CONFIG_N_ROLES][FAIL_N_CLASSES + 1]; /* + "ejected" */
    mhist_lat_t duration[METRICS_PROVIDERS];
    mhist_lat_t first_token[METRICS_PROVIDERS];
    mhist_ovh_t overhead;
    /* HTTP/2 answers ended on their content because libcurl 7.88 held their end
     * (proxy.c end_stuck_answer; docs/DECISIONS.md, "HTTP/2 bursts"). */
    mcount_t ends_inferred[CONFIG_N_ROLES];
    mcount_t connection_waits[CONFIG_N_ROLES];
} metrics_shard_t;

/* One finished client request, as the proxy saw it. */
typedef struct {
    const char *model; /* NULL = none */
    int provider;      /* role that served (or last tried), or -1 */
    int variant;       /* flag_variant_t */
    int status;        /* sent to the client, 0 = none */
    metrics_outcome_t outcome;
    double duration_s;
    double first_token_s; /* < 0: none */
    double overhead_s;    /* < 0: not measured */
    long tokens_in, tokens_out, tokens_cached;
    int served;                  /* the provider's answer reached the client: it has a cost */
    double cost_usd;             /* < 0: unknown (counted as such only when served) */
    double cost_if_original_usd; /* < 0: unknown (counted as such only when served) */
    double wasted_usd[CONFIG_N_ROLES];
    int n_attempts;
    const int *attempt_role;
    const fail_class_t *attempt_class;
    int fallback_from, fallback_to; /* -1 = no fallback */
    int fallback_class;             /* fail_class_t, or FAIL_N_CLASSES for "ejected" */
} metrics_request_t;

metrics_shard_t *metrics_shard_new(void);
void metrics_shard_free(metrics_shard_t *m);

void metrics_record(metrics_shard_t *m, const metrics_request_t *r);

/* One answer from provider role ended on its content (by the shard's worker). */
void metrics_end_inferred(metrics_shard_t *m, int role);
/* One attempt on provider role waited in line for an HTTP/2 connection being opened. */
void metrics_connection_wait(metrics_shard_t *m, int role);

/* Prometheus text exposition (version 0.0.4) of all shards merged. */
char *metrics_render(metrics_shard_t *const *shards, size_t n, const config_t *cfg,
                     double rollout_stage_percentage);

#endif
