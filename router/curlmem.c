#include "curlmem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slab.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Address space per size: 1 GiB holds ~200,000 handles of 5,360 bytes, far past the
 * descriptors a worker can have; past it blocks come from malloc. */
#define RANGE ((size_t)1 << 30)
#define MAX_SIZES 4

typedef struct {
    size_t size; /* exact request size served from this arena */
    slab_arena_t arena;
} sized_t;

static sized_t sized[MAX_SIZES];
static int n_sized; /* set before any thread starts */
/* Lowest and highest address of every arena: libcurl frees through cm_free ~100
 * times a request, and nearly all of them are not slab blocks. */
static uintptr_t lo = UINTPTR_MAX, hi;
/* Smallest and largest size served, for the same reason at malloc. */
static size_t size_min = SIZE_MAX, size_max;
static int probing;      /* main thread, during the probe handle */
static size_t probe_max; /* largest allocation the probe handle made */

struct pool_node {
    slab_pool_t pool[MAX_SIZES];
    struct pool_node *next;
};
/* The calling thread's pools: set by curlmem_thread_attach in the threads that run
 * transfers (the workers). Others, libcurl's resolver threads among them, use malloc,
 * so no slab is ever cut for a thread that then ends. */
static _Thread_local struct pool_node *my_pools;
/* Every pool made, never freed: a block of a pool's slabs may be freed from any thread
 * (slab.h), so each pool lives as long as the process. */
static _Atomic(struct pool_node *) pools;

void curlmem_thread_attach(void)
{
    if (my_pools || n_sized == 0)
        return;
    struct pool_node *n = malloc(sizeof(*n));
    if (!n)
        return; /* this thread uses malloc */
    for (int i = 0; i < MAX_SIZES; i++)
        slab_pool_init(&n->pool[i], &sized[i].arena);
    n->next = atomic_load(&pools);
    while (!atomic_compare_exchange_weak(&pools, &n->next, n))
        ;
    my_pools = n;
}

static void *from_slab(size_t n)
{
    if (n < size_min || n > size_max || !my_pools)
        return NULL;
    for (int i = 0; i < n_sized; i++)
        if (n == sized[i].size)
            return slab_alloc(&my_pools->pool[i]);
    return NULL;
}

/* The arena holding p, or -1. */
static int owner_of(const void *p)
{
    if ((uintptr_t)p - lo >= hi - lo)
        return -1;
    for (int i = 0; i < n_sized; i++)
        if (slab_owns(&sized[i].arena, p))
            return i;
    return -1;
}

static void to_slab(int i, void *p)
{
    slab_free(&sized[i].arena, my_pools ? &my_pools->pool[i] : NULL, p);
}

static void *cm_malloc(size_t n)
{
    if (probing && n > probe_max)
        probe_max = n;
    void *p = from_slab(n);
    return p ? p : malloc(n);
}

static void *cm_calloc(size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    size_t n = nmemb * size;
    if (probing && n > probe_max)
        probe_max = n;
    void *p = from_slab(n);
    if (p) {
        memset(p, 0, n);
        return p;
    }
    return calloc(nmemb, size);
}

static void cm_free(void *p)
{
    if (!p) /* most of them: curl_easy_reset frees every string option, set or not */
        return;
    int i = owner_of(p);
    if (i >= 0)
        to_slab(i, p);
    else
        free(p);
}

static void *cm_realloc(void *p, size_t n)
{
    int i = owner_of(p);
    if (i < 0)
        return realloc(p, n);
    size_t have = sized[i].size;
    if (n > 0 && n <= have)
        return p;
    void *q = malloc(n ? n : 1);
    if (!q)
        return NULL;
    memcpy(q, p, n < have ? n : have);
    to_slab(i, p);
    return q;
}

static char *cm_strdup(const char *s)
{
    return strdup(s);
}

/* Serves n from slabs when malloc would round it up by at least min_waste more than a
 * slab block does. */
static void add_size(size_t n, size_t min_waste)
{
    if (n == 0 || n_sized == MAX_SIZES)
        return;
    for (int i = 0; i < n_sized; i++)
        if (sized[i].size == n)
            return;
    void *t = malloc(n);
    size_t usable = t ? malloc_usable_size(t) : 0;
    free(t);
    size_t block = (n + 15) & ~(size_t)15;
    if (min_waste > 0 && (usable < block || usable - block < min_waste))
        return;
    slab_arena_t *a = &sized[n_sized].arena;
    if (slab_arena_init(a, n, RANGE) != 0)
        return;
    sized[n_sized++].size = n;
    size_min = n < size_min ? n : size_min;
    size_max = n > size_max ? n : size_max;
    lo = (uintptr_t)a->base < lo ? (uintptr_t)a->base : lo;
    hi = (uintptr_t)a->end > hi ? (uintptr_t)a->end : hi;
}

CURLcode curlmem_setup(long flags, const size_t *sizes, int n, size_t min_waste)
{
    CURLcode rc = curl_global_init_mem(flags, cm_malloc, cm_free, cm_realloc, cm_strdup, cm_calloc);
    if (rc != CURLE_OK || n_sized)
        return rc;
    /* The handle is the largest block curl_easy_init asks for (Curl_open's calloc). */
    probing = 1;
    probe_max = 0;
    CURL *probe = curl_easy_init();
    probing = 0;
    if (probe)
        curl_easy_cleanup(probe);
    add_size(probe_max, min_waste);
    for (int i = 0; i < n; i++)
        add_size(sizes[i], min_waste);
    return rc;
}

CURLcode curlmem_init(long flags, const size_t *sizes, int n)
{
    return curlmem_setup(flags, sizes, n, SANITIZED ? SIZE_MAX : 128);
}

size_t curlmem_slab_size(int i)
{
    return i >= 0 && i < n_sized ? sized[i].size : 0;
}

int curlmem_owns(const void *p)
{
    return owner_of(p) >= 0;
}

size_t curlmem_slabs_cut(void)
{
    size_t n = 0;
    for (int i = 0; i < n_sized; i++)
        n += atomic_load(&sized[i].arena.cut);
    return n;
}
