/* Unit tests: router/slab (fixed-size blocks for libcurl's easy handles). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slab.h"

#define HANDLE 5360 /* libcurl 7.88's easy handle */

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void stamp(void *p, size_t n, unsigned v)
{
    memset(p, (int)(v & 0xff), n);
    memcpy(p, &v, sizeof v);
}

static int stamped(const void *p, size_t n, unsigned v)
{
    unsigned got;
    memcpy(&got, p, sizeof got);
    if (got != v)
        return 0;
    for (size_t i = sizeof v; i < n; i++)
        if (((const unsigned char *)p)[i] != (v & 0xff))
            return 0;
    return 1;
}

static void test_blocks_are_distinct_aligned_and_whole(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, HANDLE, 64 << 20), 0);
    assert_int_equal(a.block, 5360);  /* already a multiple of 16 */
    assert_int_equal(a.per_slab, 12); /* 12 x 5360 + header in 64 KiB */
    slab_pool_t pool;
    slab_pool_init(&pool, &a);
    enum { N = 1000 };
    void *p[N];
    for (unsigned i = 0; i < N; i++) {
        p[i] = slab_alloc(&pool);
        assert_non_null(p[i]);
        assert_true(slab_owns(&a, p[i]));
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        stamp(p[i], HANDLE, i);
    }
    for (unsigned i = 0; i < N; i++)
        assert_true(stamped(p[i], HANDLE, i)); /* no block wrote over another */
    void *s[N];
    memcpy(s, p, sizeof s);
    qsort(s, N, sizeof s[0], cmp_ptr);
    for (unsigned i = 1; i < N; i++)
        assert_true((char *)s[i] - (char *)s[i - 1] >= 5360);
    assert_int_equal(atomic_load(&a.cut), (N + 11) / 12);
    assert_int_equal(pool.in_use, N);
    int outside = 0;
    assert_false(slab_owns(&a, &outside));
    assert_false(slab_owns(&a, a.end));
    for (unsigned i = 0; i < N; i++)
        slab_free(&a, &pool, p[i]);
    assert_int_equal(pool.in_use, 0);
    slab_arena_free(&a);
}

static void test_freed_blocks_are_reused_and_empty_slabs_given_back(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, HANDLE, 64 << 20), 0);
    slab_pool_t pool;
    slab_pool_init(&pool, &a);
    enum { N = 120 }; /* ten slabs */
    void *p[N];
    for (int round = 0; round < 3; round++) {
        for (unsigned i = 0; i < N; i++) {
            p[i] = slab_alloc(&pool);
            assert_non_null(p[i]);
            stamp(p[i], HANDLE, i + 1000u * (unsigned)round);
        }
        for (unsigned i = 0; i < N; i++) {
            assert_true(stamped(p[i], HANDLE, i + 1000u * (unsigned)round));
            slab_free(&a, &pool, p[i]);
        }
        /* Rounds after the first cut nothing new: the same slabs serve again. */
        assert_int_equal(atomic_load(&a.cut), 10);
    }
    /* Each round emptied ten slabs; one is kept, the others gave their pages back. */
    assert_int_equal(atomic_load(&a.released), 3 * 9);
    assert_int_equal(pool.empty_kept, 1);
    assert_int_equal(pool.in_use, 0);
    slab_arena_free(&a);
}

static void test_a_used_up_range_says_null(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, HANDLE, 2 * SLAB_BYTES), 0);
    slab_pool_t pool;
    slab_pool_init(&pool, &a);
    void *p[24];
    for (int i = 0; i < 24; i++)
        assert_non_null(p[i] = slab_alloc(&pool));
    assert_null(slab_alloc(&pool));
    assert_null(slab_alloc(&pool)); /* and stays so */
    slab_free(&a, &pool, p[7]);
    assert_ptr_equal(slab_alloc(&pool), p[7]);
    for (int i = 0; i < 24; i++)
        slab_free(&a, &pool, p[i]);
    slab_arena_free(&a);
}

static void test_bad_sizes_are_refused(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, 0, 1 << 20), -1);
    assert_int_equal(slab_arena_init(&a, SLAB_BYTES, 1 << 20), -1);
    assert_int_equal(slab_arena_init(&a, 64, SLAB_BYTES - 1), -1);
    assert_int_equal(slab_arena_init(&a, 1025, SLAB_BYTES), 0);
    assert_int_equal(a.block, 1040);
    slab_arena_free(&a);
}

typedef struct {
    slab_arena_t *a;
    void **blocks;
    int n;
    int bad; /* counted here, asserted by the main thread (cmocka is not thread-safe) */
} job_t;

static void *free_elsewhere(void *arg)
{
    job_t *j = arg;
    slab_pool_t mine; /* outlives nothing of its own: it cuts no slab */
    slab_pool_init(&mine, j->a);
    for (int i = 0; i < j->n; i++) {
        j->bad += !stamped(j->blocks[i], HANDLE, (unsigned)i);
        slab_free(j->a, i % 2 ? &mine : NULL, j->blocks[i]);
    }
    return NULL;
}

static void test_blocks_freed_by_another_thread_come_back(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, HANDLE, 64 << 20), 0);
    slab_pool_t pool;
    slab_pool_init(&pool, &a);
    enum { N = 600 };
    void **p = calloc(N, sizeof(*p));
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = slab_alloc(&pool);
            assert_non_null(p[i]);
            stamp(p[i], HANDLE, (unsigned)i);
        }
        job_t j = {&a, p, N, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, free_elsewhere, &j), 0);
        pthread_join(t, NULL);
        assert_int_equal(j.bad, 0);
        assert_int_equal(atomic_load(&pool.remote_waiting), N);
    }
    /* Every round found the blocks the other thread freed: no slab past the first 50. */
    assert_int_equal(atomic_load(&a.cut), 50);
    assert_int_equal(pool.in_use, N);
    free(p);
    slab_arena_free(&a);
}

/* Allocations and frees in a random order, each block checked whole when freed. */
static void test_random_churn_keeps_every_block_whole(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, 1025, 64 << 20), 0);
    slab_pool_t pool;
    slab_pool_init(&pool, &a);
    enum { SLOTS = 3000 };
    void **p = calloc(SLOTS, sizeof(*p));
    unsigned *tag = calloc(SLOTS, sizeof(*tag));
    srand(11);
    size_t live = 0, peak = 0;
    for (unsigned step = 1; step < 200000; step++) {
        int i = rand() % SLOTS;
        if (p[i]) {
            assert_true(stamped(p[i], 1025, tag[i]));
            slab_free(&a, &pool, p[i]);
            p[i] = NULL;
            live--;
        } else {
            assert_non_null(p[i] = slab_alloc(&pool));
            tag[i] = step;
            stamp(p[i], 1025, step);
            live++;
        }
        peak = live > peak ? live : peak;
    }
    assert_int_equal(pool.in_use, live);
    /* Blocks freed are used again before slabs are cut: no more slabs than the peak
     * needs, give or take the partly used ones. */
    assert_true(atomic_load(&a.cut) * a.per_slab <= peak + 40 * a.per_slab);
    for (int i = 0; i < SLOTS; i++)
        if (p[i]) {
            assert_true(stamped(p[i], 1025, tag[i]));
            slab_free(&a, &pool, p[i]);
        }
    assert_int_equal(pool.in_use, 0);
    free(p);
    free(tag);
    slab_arena_free(&a);
}

/* Threads allocate and free at once, each block often freed by a thread other than
 * the one that took it, while its owner keeps allocating: a block handed out twice,
 * or a live block zeroed by a release, shows as a broken stamp or a taken slot. */
#define STRESS_THREADS 4
#define STRESS_SLOTS 512
#define STRESS_OPS 150000
#define STRESS_BLOCK 1025

typedef struct {
    slab_arena_t *a;
    _Atomic(void *) *slots; /* blocks in flight between threads */
    atomic_uchar *live;     /* one flag per block the range can hold */
    unsigned seed;
    atomic_int *bad;
    slab_pool_t *pool;      /* outlives the thread: blocks of its slabs may still be out */
} stress_t;

static size_t block_index(const slab_arena_t *a, const void *p)
{
    size_t off = (size_t)((const char *)p - a->base);
    return off / SLAB_BYTES * a->per_slab + off % SLAB_BYTES / a->block;
}

static void stress_free(stress_t *t, void *p)
{
    unsigned tag;
    memcpy(&tag, p, sizeof tag);
    if (!stamped(p, STRESS_BLOCK, tag) ||
        !atomic_exchange(&t->live[block_index(t->a, p)], 0))
        atomic_fetch_add(t->bad, 1);
    slab_free(t->a, t->pool, p);
}

static void *stress_thread(void *arg)
{
    stress_t *t = arg;
    for (unsigned op = 0; op < STRESS_OPS; op++) {
        t->seed = t->seed * 1103515245u + 12345u;
        unsigned i = (t->seed >> 8) % STRESS_SLOTS;
        void *p = atomic_exchange(&t->slots[i], NULL);
        if (p) {
            stress_free(t, p);
            continue;
        }
        p = slab_alloc(t->pool);
        if (!p) {
            atomic_fetch_add(t->bad, 1);
            break;
        }
        if (atomic_exchange(&t->live[block_index(t->a, p)], 1))
            atomic_fetch_add(t->bad, 1); /* handed out while still live */
        stamp(p, STRESS_BLOCK, t->seed | 1u);
        void *was = atomic_exchange(&t->slots[i], p);
        if (was)
            stress_free(t, was);
    }
    return NULL;
}

static void test_threads_allocating_and_freeing_each_others_blocks(void **state)
{
    (void)state;
    slab_arena_t a;
    assert_int_equal(slab_arena_init(&a, STRESS_BLOCK, 256 << 20), 0);
    size_t n_blocks = (size_t)(a.end - a.base) / SLAB_BYTES * a.per_slab;
    atomic_uchar *live = calloc(n_blocks, sizeof(*live));
    _Atomic(void *) *slots = calloc(STRESS_SLOTS, sizeof(*slots));
    slab_pool_t pools[STRESS_THREADS];
    stress_t st[STRESS_THREADS];
    pthread_t th[STRESS_THREADS];
    atomic_int bad = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        slab_pool_init(&pools[i], &a);
        st[i] = (stress_t){&a, slots, live, 17u * (unsigned)i + 1u, &bad, &pools[i]};
        assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &st[i]), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad), 0);
    /* What is left in flight is whole; the slabs cut stay near what was live at once. */
    slab_pool_t mine;
    slab_pool_init(&mine, &a);
    stress_t last = {&a, slots, live, 0, &bad, &mine};
    for (int i = 0; i < STRESS_SLOTS; i++) {
        void *p = atomic_exchange(&slots[i], NULL);
        if (p)
            stress_free(&last, p);
    }
    assert_int_equal(atomic_load(&bad), 0);
    /* Every block came back: none lost on the way between threads. */
    for (int i = 0; i < STRESS_THREADS; i++) {
        slab_pool_collect(&pools[i]);
        assert_int_equal(pools[i].in_use, 0);
    }
    assert_true(atomic_load(&a.cut) * a.per_slab < 8 * STRESS_SLOTS);
    free(live);
    free(slots);
    slab_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_are_distinct_aligned_and_whole),
        cmocka_unit_test(test_freed_blocks_are_reused_and_empty_slabs_given_back),
        cmocka_unit_test(test_a_used_up_range_says_null),
        cmocka_unit_test(test_bad_sizes_are_refused),
        cmocka_unit_test(test_blocks_freed_by_another_thread_come_back),
        cmocka_unit_test(test_random_churn_keeps_every_block_whole),
        cmocka_unit_test(test_threads_allocating_and_freeing_each_others_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
