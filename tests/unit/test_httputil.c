/*
 * test_httputil.c — unit tests for the pure helpers of router/httputil.c: which header
 * values may be forwarded (no control byte but tab, no DEL), and the constant-time
 * secret comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "httputil.h"

static void test_value_unsafe(void **state)
{
    (void)state;
    assert_int_equal(http_value_unsafe(""), 0);
    assert_int_equal(http_value_unsafe("application/json; charset=utf-8"), 0);
    assert_int_equal(http_value_unsafe("a\tb"), 0); /* tab is allowed in a value */
    assert_int_equal(http_value_unsafe("caf\xc3\xa9 \x80\xff"), 0); /* bytes >= 0x80 pass */
    assert_int_equal(http_value_unsafe("a\rb"), 1);
    assert_int_equal(http_value_unsafe("a\nb"), 1);
    assert_int_equal(http_value_unsafe("a\x7f"), 1);
    assert_int_equal(http_value_unsafe("\x01"), 1);
    assert_int_equal(http_value_unsafe("x\x1f"), 1);
    /* Every byte value, alone and at the end of a long value. */
    char buf[80];
    for (int c = 1; c < 256; c++) {
        int want = (c < 0x20 && c != '\t') || c == 0x7f;
        buf[0] = (char)c;
        buf[1] = '\0';
        assert_int_equal(http_value_unsafe(buf), want);
        for (int i = 0; i < 70; i++)
            buf[i] = 'v';
        buf[70] = (char)c;
        buf[71] = '\0';
        assert_int_equal(http_value_unsafe(buf), want);
    }
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(http_secret_equal("sk-abc", "sk-abc"));
    assert_false(http_secret_equal("sk-abc", "sk-abd"));
    assert_false(http_secret_equal("sk-ab", "sk-abc"));
    assert_false(http_secret_equal("sk-abcd", "sk-abc"));
    assert_false(http_secret_equal("", "x"));
    assert_true(http_secret_equal("", ""));
}

/* http_header must answer exactly as evhttp_find_header does. */
static void test_header_lookup_matches_evhttp(void **state)
{
    (void)state;
    static const char *const keys[] = {"Content-Type", "content-length", "X-User-Id", "Host",
                                       "x-user-id", "Accept", "A", "", "Content", "\xc3\x84rger",
                                       "retry-after-ms", "Retry-After"};
    static const char *const names[] = {"Content-Type", "CONTENT-TYPE", "content-type",
                                        "Content", "Content-Type2", "x-USER-id", "host", "a",
                                        "", "B", "\xc3\xa4rger", "\xc3\x84RGER", "retry-after",
                                        "Retry-After-Ms", "Accept", "Accepts", "Missing"};
    const size_t nk = sizeof(keys) / sizeof(keys[0]), nn = sizeof(names) / sizeof(names[0]);
    /* Every prefix of the key list, so absent, first, last and duplicate entries all occur. */
    for (size_t upto = 0; upto <= nk; upto++) {
        struct evkeyvalq h;
        TAILQ_INIT(&h);
        for (size_t i = 0; i < upto; i++) {
            struct evkeyval *kv = calloc(1, sizeof(*kv));
            char val[16];
            snprintf(val, sizeof val, "v%zu", i);
            kv->key = strdup(keys[i]);
            kv->value = strdup(val);
            TAILQ_INSERT_TAIL(&h, kv, next);
        }
        for (size_t j = 0; j < nn; j++) {
            const char *want = evhttp_find_header(&h, names[j]);
            const char *got = http_header(&h, names[j]);
            if (want != got)
                fail_msg("%zu headers, name \"%s\": evhttp %s, http_header %s", upto, names[j],
                         want ? want : "NULL", got ? got : "NULL");
        }
        evhttp_clear_headers(&h);
    }
    struct evkeyvalq empty;
    TAILQ_INIT(&empty);
    assert_null(http_header(&empty, "Host"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_unsafe),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_header_lookup_matches_evhttp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
