/*
 * health — outlier ejection of a provider, shared by all workers through atomics.
 *
 * After `consecutive` failures in a row a provider is ejected for base_ms, then
 * twice as long after each failed probe, up to max_ms. When the time is up one
 * request (the probe) is let through; its success puts the provider back in
 * service, its failure ejects it again. No lock: the request path reads one
 * atomic when the provider is in service.
 * Pure apart from the atomics: time is a parameter (milliseconds, monotonic).
 */
#ifndef SWITCHYARD_HEALTH_H
#define SWITCHYARD_HEALTH_H

#include <stdatomic.h>

typedef struct {
    atomic_int consecutive;       /* failures in a row */
    atomic_llong ejected_until;   /* 0 = in service */
    atomic_int ejections;         /* ejections since it was last healthy */
    atomic_int probing;           /* a probe is in flight */
    atomic_llong ejections_total; /* for metrics and tests */
} health_t;

typedef enum {
    HEALTH_UP = 0,  /* in service */
    HEALTH_EJECTED, /* do not send traffic */
    HEALTH_PROBE    /* ejection over: the caller holds the single probe slot */
} health_state_t;

health_state_t health_route(health_t *h, long long now_ms);

/*
 * The outcome of an attempt on this provider. probe: the attempt held the probe
 * slot. threshold 0 disables ejection. Returns 1 when this report ejected it.
 */
int health_report(health_t *h, long long now_ms, int failed, int probe, long threshold,
                  long base_ms, long max_ms);

/* A probe that ended without a verdict (the client left): let another one go. */
void health_release_probe(health_t *h);

#endif
