#include "slab.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Each slab starts with this header; its blocks follow at SLAB_HDR. */
typedef struct slab {
    struct slab *next_avail; /* owner's list of slabs that may have a free block */
    struct slab *next_all;   /* owner's list of every slab it cut */
    slab_pool_t *owner;
    void *free;              /* blocks freed by the owner (owner only) */
    _Atomic(void *) remote;  /* blocks freed by other threads */
    unsigned used;           /* blocks out and not yet back with the owner */
    unsigned fresh;          /* blocks [fresh, per_slab) were never handed out */
    unsigned listed : 1;     /* on next_avail */
    unsigned kept_empty : 1; /* empty and counted in owner->empty_kept */
} slab_t;

#define SLAB_HDR ((sizeof(slab_t) + 63) & ~(size_t)63)
/* Empty slabs a pool keeps committed, so one request coming and going at a slab's
 * edge does not give pages back and fault them in again each time. */
#define KEEP_EMPTY 1

static inline slab_t *slab_of(const slab_arena_t *a, const void *p)
{
    size_t off = (size_t)((const char *)p - a->base);
    return (slab_t *)(a->base + (off & ~(SLAB_BYTES - 1)));
}

int slab_arena_init(slab_arena_t *a, size_t block, size_t range)
{
    memset(a, 0, sizeof(*a));
    block = (block + 15) & ~(size_t)15;
    range &= ~(SLAB_BYTES - 1);
    if (block == 0 || range == 0 || SLAB_HDR + block > SLAB_BYTES)
        return -1;
    /* Reserved, not committed: PROT_NONE costs no memory and no overcommit charge;
     * a slab is made writable when it is cut. */
    size_t len = range + SLAB_BYTES;
    void *m = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    a->map = m;
    a->map_len = len;
    a->base = (char *)(((uintptr_t)m + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
    a->end = a->base + range;
    /* Huge pages would undo MADV_DONTNEED (khugepaged may merge a range of released
     * slabs back into a 2 MiB page) and make one slab cost 2 MiB. */
    madvise(a->base, range, MADV_NOHUGEPAGE);
    atomic_init(&a->next, 0);
    atomic_init(&a->exhausted, 0);
    a->block = block;
    a->per_slab = (unsigned)((SLAB_BYTES - SLAB_HDR) / block);
    /* An empty slab keeps the pages its header is on and gives back the rest: none on
     * kernels with 64 KiB pages, where release is then never attempted. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    a->keep = ((SLAB_HDR + page - 1) / page) * page;
    atomic_init(&a->cut, 0);
    atomic_init(&a->released, 0);
    return 0;
}

void slab_arena_free(slab_arena_t *a)
{
    if (a->map)
        munmap(a->map, a->map_len);
    memset(a, 0, sizeof(*a));
}

void slab_pool_init(slab_pool_t *pool, slab_arena_t *a)
{
    memset(pool, 0, sizeof(*pool));
    pool->arena = a;
    atomic_init(&pool->remote_waiting, 0);
}

static slab_t *cut_slab(slab_pool_t *pool)
{
    slab_arena_t *a = pool->arena;
    if (atomic_load_explicit(&a->exhausted, memory_order_relaxed))
        return NULL;
    size_t off = atomic_fetch_add(&a->next, SLAB_BYTES);
    if (off >= (size_t)(a->end - a->base)) {
        atomic_store_explicit(&a->exhausted, 1, memory_order_relaxed);
        return NULL;
    }
    char *s = a->base + off;
    if (mprotect(s, SLAB_BYTES, PROT_READ | PROT_WRITE) != 0) {
        /* Out of memory or of mappings: this arena stops here, rather than burning its
         * range one failed slab at a time; the caller's malloc takes over. */
        atomic_store_explicit(&a->exhausted, 1, memory_order_relaxed);
        return NULL;
    }
    slab_t *sl = (slab_t *)s;
    sl->next_avail = NULL;
    sl->owner = pool;
    sl->free = NULL;
    atomic_init(&sl->remote, NULL);
    sl->used = 0;
    sl->fresh = 0;
    sl->listed = 0;
    sl->kept_empty = 0;
    sl->next_all = pool->all;
    pool->all = sl;
    atomic_fetch_add(&a->cut, 1);
    return sl;
}

static void list_avail(slab_pool_t *pool, slab_t *s)
{
    if (!s->listed) {
        s->listed = 1;
        s->next_avail = pool->avail;
        pool->avail = s;
    }
}

/* Every block of s is back with its owner. */
static void on_empty(slab_pool_t *pool, slab_t *s)
{
    slab_arena_t *a = pool->arena;
    if (pool->empty_kept < KEEP_EMPTY || a->keep >= SLAB_BYTES ||
        madvise((char *)s + a->keep, SLAB_BYTES - a->keep, MADV_DONTNEED) != 0) {
        s->kept_empty = 1;
        pool->empty_kept++;
        return;
    }
    /* The header's page stayed; the rest went back to the kernel, and the blocks are
     * handed out afresh from the start. */
    s->free = NULL;
    s->fresh = 0;
    atomic_fetch_add(&a->released, 1);
}

static void give_back(slab_pool_t *pool, slab_t *s, void *p)
{
    *(void **)p = s->free;
    s->free = p;
    pool->in_use--;
    list_avail(pool, s);
    if (--s->used == 0)
        on_empty(pool, s);
}

/* Takes back what other threads freed into s. */
static void collect(slab_pool_t *pool, slab_t *s)
{
    if (!atomic_load_explicit(&s->remote, memory_order_relaxed))
        return; /* no write to a slab that has nothing waiting */
    void *p = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire);
    while (p) {
        void *next = *(void **)p;
        give_back(pool, s, p);
        p = next;
    }
}

void slab_pool_collect(slab_pool_t *pool)
{
    atomic_store_explicit(&pool->remote_waiting, 0, memory_order_relaxed);
    for (slab_t *t = pool->all; t; t = t->next_all)
        collect(pool, t);
}

void *slab_alloc(slab_pool_t *pool)
{
    slab_arena_t *a = pool->arena;
    for (;;) {
        slab_t *s = pool->avail;
        if (!s) {
            if (atomic_load_explicit(&pool->remote_waiting, memory_order_relaxed)) {
                slab_pool_collect(pool);
                if (pool->avail)
                    continue;
            }
            s = cut_slab(pool);
            if (!s)
                return NULL;
            list_avail(pool, s);
        }
        void *p;
        if (s->free) {
            p = s->free;
            s->free = *(void **)p;
        } else if (s->fresh < a->per_slab) {
            p = (char *)s + SLAB_HDR + (size_t)s->fresh++ * a->block;
        } else if (atomic_load_explicit(&s->remote, memory_order_relaxed)) {
            collect(pool, s);
            continue;
        } else {
            pool->avail = s->next_avail;
            s->listed = 0;
            continue;
        }
        if (s->used++ == 0 && s->kept_empty) {
            s->kept_empty = 0;
            pool->empty_kept--;
        }
        pool->in_use++;
        return p;
    }
}

void slab_free(slab_arena_t *a, slab_pool_t *mine, void *p)
{
    slab_t *s = slab_of(a, p);
    if (s->owner == mine) {
        give_back(mine, s, p);
        return;
    }
    /* Another thread's slab: onto its atomic list; the owner takes it back when it
     * next runs out of blocks. */
    void *head = atomic_load_explicit(&s->remote, memory_order_relaxed);
    do {
        *(void **)p = head;
    } while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, p, memory_order_release,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&s->owner->remote_waiting, 1, memory_order_release);
}
