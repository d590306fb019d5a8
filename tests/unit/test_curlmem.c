/* Unit tests: router/curlmem (libcurl's allocations, easy handles from slabs). Real
 * transfers from file:// URLs, so libcurl's receive buffers are allocated too. The
 * source is included, so its callbacks can be called as libcurl calls them. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "curlmem.c"

#define BUF 1024 /* a receive buffer of 1024: libcurl 7.88 allocates 1025 */

static char url[256];
static char *content;
static size_t content_len;

typedef struct {
    char *p;
    size_t n, cap;
} sink_t;

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    sink_t *s = ud;
    size_t n = size * nmemb;
    if (s->n + n > s->cap)
        return 0;
    memcpy(s->p + s->n, ptr, n);
    s->n += n;
    return n;
}

/* One transfer of the test file on a fresh handle; the handle is returned open. */
static CURL *fetch(void)
{
    CURL *e = curl_easy_init();
    assert_non_null(e);
    assert_true(curlmem_owns(e));
    sink_t s = {malloc(content_len), 0, content_len};
    curl_easy_setopt(e, CURLOPT_URL, url);
    assert_int_equal(curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)BUF), CURLE_OK);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    assert_int_equal(s.n, content_len);
    assert_memory_equal(s.p, content, content_len);
    free(s.p);
    return e;
}

static int setup(void **state)
{
    (void)state;
    /* min_waste 0: slabs whatever the allocator (unit tests link glibc's malloc). */
    size_t exact[] = {BUF + 1};
    if (curlmem_setup(CURL_GLOBAL_DEFAULT, exact, 1, 0) != CURLE_OK)
        return -1;
    curlmem_thread_attach(); /* the test's main thread runs transfers, as a worker */
    content_len = 100000;
    content = malloc(content_len);
    for (size_t i = 0; i < content_len; i++)
        content[i] = (char)('a' + (i * 7 + i / 13) % 26);
    snprintf(url, sizeof url, "file:///tmp/switchyard-curlmem-%d", (int)getpid());
    FILE *f = fopen(url + strlen("file://"), "wb");
    if (!f || fwrite(content, 1, content_len, f) != content_len || fclose(f) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(url + strlen("file://"));
    free(content);
    curl_global_cleanup();
    return 0;
}

static void test_the_probe_found_the_handle_and_the_buffer(void **state)
{
    (void)state;
    /* The handle first: some kilobytes in any libcurl 7.x/8.x; then the size asked. */
    assert_true(curlmem_slab_size(0) > 2000);
    assert_int_equal(curlmem_slab_size(1), BUF + 1);
    assert_int_equal(curlmem_slab_size(2), 0);
    int here = 0;
    assert_false(curlmem_owns(&here));
    void *m = malloc(64);
    assert_false(curlmem_owns(m));
    free(m);
    assert_false(curlmem_owns(NULL));
}

static void test_transfers_run_on_slab_handles(void **state)
{
    (void)state;
    enum { N = 40 };
    CURL *e[N];
    for (int i = 0; i < N; i++)
        e[i] = fetch(); /* all open at once: forty handles in slabs */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_ptr_not_equal(e[i], e[j]);
    for (int i = 0; i < N; i++) {
        curl_easy_reset(e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_easy_cleanup(fetch()); /* and after they are all back */
}

static void test_calloc_zeroes_and_realloc_keeps_the_bytes(void **state)
{
    (void)state;
    size_t hs = curlmem_slab_size(0);
    unsigned char *p = cm_calloc(1, hs);
    assert_true(curlmem_owns(p));
    memset(p, 0xa5, hs);
    cm_free(p);
    unsigned char *q = cm_calloc(hs, 1); /* the same block again, zeroed */
    assert_ptr_equal(q, p);
    for (size_t i = 0; i < hs; i++)
        assert_int_equal(q[i], 0);
    for (size_t i = 0; i < hs; i++)
        q[i] = (unsigned char)i;
    assert_ptr_equal(cm_realloc(q, hs / 2), q); /* shrinking stays */
    unsigned char *r = cm_realloc(q, hs * 3);   /* growing leaves the slab, bytes and all */
    assert_non_null(r);
    assert_false(curlmem_owns(r));
    for (size_t i = 0; i < hs; i++)
        assert_int_equal(r[i], (unsigned char)i);
    cm_free(r);
    assert_ptr_equal(cm_malloc(hs), q); /* the block came back to its slab */
    cm_free(q);
    void *m = cm_realloc(NULL, 100);
    assert_non_null(m);
    assert_false(curlmem_owns(m));
    cm_free(m);
    cm_free(NULL);
    assert_null(cm_calloc(SIZE_MAX / 2, 4)); /* overflow */
    void *b = cm_malloc(BUF + 1);
    assert_true(curlmem_owns(b));
    cm_free(b);
}

#define PER_THREAD 60

typedef struct {
    pthread_barrier_t made, freed;
    CURL *handles[PER_THREAD];
    size_t cut_before, cut_after;
    int owned;
} worker_t;

/* A worker that stays up: its handles are freed by the main thread meanwhile, and
 * its next handles must come from the blocks it got back, not from new slabs. */
static void *worker(void *arg)
{
    worker_t *w = arg;
    curlmem_thread_attach();
    for (int i = 0; i < PER_THREAD; i++) {
        w->handles[i] = curl_easy_init();
        w->owned += curlmem_owns(w->handles[i]);
    }
    pthread_barrier_wait(&w->made);
    pthread_barrier_wait(&w->freed); /* the main thread freed them all */
    w->cut_before = curlmem_slabs_cut();
    for (int i = 0; i < PER_THREAD; i++) {
        w->handles[i] = curl_easy_init();
        w->owned += curlmem_owns(w->handles[i]);
    }
    w->cut_after = curlmem_slabs_cut();
    for (int i = 0; i < PER_THREAD; i++)
        curl_easy_cleanup(w->handles[i]);
    return NULL;
}

static void test_handles_freed_by_another_thread_are_reused(void **state)
{
    (void)state;
    worker_t w = {.owned = 0};
    pthread_barrier_init(&w.made, NULL, 2);
    pthread_barrier_init(&w.freed, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, worker, &w), 0);
    pthread_barrier_wait(&w.made);
    for (int i = 0; i < PER_THREAD; i++)
        curl_easy_cleanup(w.handles[i]); /* from this thread, not the owner */
    pthread_barrier_wait(&w.freed);
    pthread_join(t, NULL);
    assert_int_equal(w.owned, 2 * PER_THREAD);
    assert_true(w.cut_before > 0);
    assert_int_equal(w.cut_after, w.cut_before);
    pthread_barrier_destroy(&w.made);
    pthread_barrier_destroy(&w.freed);
}

static void *unattached(void *arg)
{
    CURL *e = curl_easy_init();
    *(int *)arg = e && !curlmem_owns(e);
    curl_easy_cleanup(e);
    return NULL;
}

static void test_threads_not_attached_use_malloc(void **state)
{
    (void)state;
    int ok = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, unattached, &ok), 0);
    pthread_join(t, NULL);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_probe_found_the_handle_and_the_buffer),
        cmocka_unit_test(test_transfers_run_on_slab_handles),
        cmocka_unit_test(test_calloc_zeroes_and_realloc_keeps_the_bytes),
        cmocka_unit_test(test_handles_freed_by_another_thread_are_reused),
        cmocka_unit_test(test_threads_not_attached_use_malloc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
