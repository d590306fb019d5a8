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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_unsafe),
        cmocka_unit_test(test_secret_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
