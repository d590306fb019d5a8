/* Unit tests: router/curlmem (libcurl's allocations, easy handles from slabs). Real
 * transfers from file:// URLs, so libcurl's receive buffers are allocated too. */
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

#include "curlmem.h"

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

#define THREADS 4
#define PER_THREAD 60

static void *made_here_freed_there(void *arg)
{
    CURL **out = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        CURL *e = fetch();
        if (i % 2)
            curl_easy_cleanup(e); /* freed where it was made */
        else
            out[i / 2] = e; /* freed by the main thread */
    }
    return NULL;
}

static void test_handles_may_be_freed_by_another_thread(void **state)
{
    (void)state;
    static CURL *made[THREADS][PER_THREAD / 2];
    for (int round = 0; round < 3; round++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, made_here_freed_there, made[i]), 0);
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < THREADS; i++)
            for (int j = 0; j < PER_THREAD / 2; j++) {
                assert_true(curlmem_owns(made[i][j]));
                curl_easy_cleanup(made[i][j]);
            }
    }
    curl_easy_cleanup(fetch());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_probe_found_the_handle_and_the_buffer),
        cmocka_unit_test(test_transfers_run_on_slab_handles),
        cmocka_unit_test(test_handles_may_be_freed_by_another_thread),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
