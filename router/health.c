/* health — provider outlier ejection. See health.h. */
#include "health.h"

health_state_t health_route(health_t *h, long long now_ms)
{
    long long until = atomic_load_explicit(&h->ejected_until, memory_order_acquire);
    if (until == 0)
        return HEALTH_UP;
    if (now_ms < until)
        return HEALTH_EJECTED;
    int expected = 0;
    if (atomic_compare_exchange_strong(&h->probing, &expected, 1))
        return HEALTH_PROBE;
    return HEALTH_EJECTED;
}

static long long backoff(int ejections, long base_ms, long max_ms)
{
    long long d = base_ms;
    for (int i = 1; i < ejections && d < max_ms; i++)
        d *= 2;
    return d > max_ms ? max_ms : d;
}

int health_report(health_t *h, long long now_ms, int failed, int probe, long threshold,
                  long base_ms, long max_ms)
{
    if (!failed) {
        atomic_store(&h->consecutive, 0);
        if (probe) {
            atomic_store(&h->ejections, 0);
            atomic_store_explicit(&h->ejected_until, 0, memory_order_release);
            atomic_store(&h->probing, 0);
        }
        return 0;
    }
    if (threshold <= 0) {
        if (probe)
            atomic_store(&h->probing, 0);
        return 0;
    }
    if (probe) {
        int n = atomic_fetch_add(&h->ejections, 1) + 1;
        atomic_store_explicit(&h->ejected_until, now_ms + backoff(n, base_ms, max_ms),
                              memory_order_release);
        atomic_fetch_add(&h->ejections_total, 1);
        atomic_store(&h->probing, 0);
        return 1;
    }
    int run = atomic_fetch_add(&h->consecutive, 1) + 1;
    if (run < threshold)
        return 0;
    long long zero = 0;
    /* Only the report that finds it in service ejects it (others race to the same end). */
    long long until = now_ms + backoff(atomic_load(&h->ejections) + 1, base_ms, max_ms);
    if (!atomic_compare_exchange_strong(&h->ejected_until, &zero, until))
        return 0;
    atomic_fetch_add(&h->ejections, 1);
    atomic_fetch_add(&h->ejections_total, 1);
    atomic_store(&h->consecutive, 0);
    return 1;
}

void health_release_probe(health_t *h)
{
    atomic_store(&h->probing, 0);
}
