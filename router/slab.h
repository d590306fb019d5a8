/* slab: blocks of one size, cut from 64 KiB slabs in an address range reserved up
 * front, for an object that is live once per request in flight and that the process
 * allocator would round up badly (curlmem.c says which and why).
 *
 * Ownership: the caller owns the arena and one slab_pool_t per thread (threads must
 * not share a pool); a pool must outlive every block cut from its slabs, since a free
 * from another thread reaches it. A slab belongs to the pool that cut it: only that
 * pool takes blocks from it. A block may be freed from any thread: by the owner it
 * goes straight back, by another thread onto the slab's atomic list, which the owner
 * takes back when it runs out of slabs it knows to have room. No locks.
 *
 * Memory: a slab's pages are committed (mprotect) when it is cut; when every block of
 * a slab is back with its owner and the pool already keeps one empty slab, its pages
 * but the first are given back (MADV_DONTNEED) and the slab is reused later. The
 * reserved range itself is never unmapped while the arena lives.
 *
 * Errors: slab_arena_init returns -1 if the range cannot be reserved; slab_alloc
 * returns NULL once the range is used up or a commit failed (from then on, for good),
 * and the caller falls back to its usual allocator. slab_owns tells the two apart at
 * free. */
#ifndef SWITCHYARD_SLAB_H
#define SWITCHYARD_SLAB_H

#include <stdatomic.h>
#include <stddef.h>

#define SLAB_BYTES ((size_t)64 * 1024)

typedef struct slab_pool slab_pool_t;

typedef struct {
    char *map; /* what mmap returned, for munmap */
    size_t map_len;
    char *base, *end;            /* SLAB_BYTES-aligned range of slabs */
    atomic_size_t next;          /* offset of the next slab to cut */
    atomic_int exhausted;        /* the range is used up or a commit failed */
    size_t keep;                 /* bytes at a slab's start never given back (its header) */
    size_t block;                /* block size, a multiple of 16 */
    unsigned per_slab;           /* blocks in one slab */
    atomic_size_t cut, released; /* counters: slabs cut, slab releases */
} slab_arena_t;

struct slab_pool {
    slab_arena_t *arena;
    struct slab *avail;           /* slabs that may have a block free */
    struct slab *all;             /* every slab this pool cut */
    unsigned empty_kept;          /* empty slabs whose pages are kept */
    size_t in_use;                /* blocks out of this pool's slabs, not yet back with it */
    atomic_size_t remote_waiting; /* blocks other threads freed into its slabs */
};

/* block: the size to serve (rounded up to 16); range: bytes of address space to
 * reserve (rounded down to whole slabs). */
int slab_arena_init(slab_arena_t *a, size_t block, size_t range);
/* Unmaps the range: every block must be free already. */
void slab_arena_free(slab_arena_t *a);

void slab_pool_init(slab_pool_t *pool, slab_arena_t *a);

/* A block of a->block bytes, 16-byte aligned, contents undefined; NULL if none. */
void *slab_alloc(slab_pool_t *pool);
/* Takes back every block other threads freed into the pool's slabs; its own thread
 * only (slab_alloc does this by itself when it runs out of slabs with room). */
void slab_pool_collect(slab_pool_t *pool);
/* p must be a block of this arena (slab_owns) not already free; any thread. */
void slab_free(slab_arena_t *a, slab_pool_t *mine, void *p);

static inline int slab_owns(const slab_arena_t *a, const void *p)
{
    return (const char *)p >= a->base && (const char *)p < a->end;
}

#endif
