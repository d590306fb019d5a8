/* Unit tests: router/fmt (printf-free appends), checked against snprintf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "fmt.h"

static const char *run_i64(char *buf, size_t cap, int64_t v)
{
    fmtbuf_t b;
    fmt_init(&b, buf, cap);
    fmt_i64(&b, v);
    return fmt_cstr(&b) ? buf : NULL;
}

static void test_integers_match_printf(void **state)
{
    (void)state;
    const int64_t edge[] = {0, 1, -1, 9, 10, 99, 100, 12345, -987654321, INT64_MAX, INT64_MIN};
    char got[32], want[32];
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
        snprintf(want, sizeof want, "%lld", (long long)edge[i]);
        assert_string_equal(run_i64(got, sizeof got, edge[i]), want);
    }
    srand(7);
    for (int i = 0; i < 100000; i++) {
        int64_t v = (int64_t)(((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 2) ^ (uint64_t)rand());
        if ((i & 1) && v != INT64_MIN)
            v = -v;
        snprintf(want, sizeof want, "%lld", (long long)v);
        assert_string_equal(run_i64(got, sizeof got, v), want);
    }
}

/* %.3f rounds the exact binary value; fmt_fixed rounds v*1000 in double. They may differ
 * only when v lies within a hair of a rounding tie. */
static void test_fixed_matches_printf_off_ties(void **state)
{
    (void)state;
    char got[64], want[64];
    srand(11);
    for (int i = 0; i < 200000; i++) {
        double v = (double)rand() / RAND_MAX * pow(10, rand() % 8) * (i % 3 == 0 ? -1 : 1);
        for (int d = 0; d <= 6; d += 3) {
            fmtbuf_t b;
            fmt_init(&b, got, sizeof got);
            fmt_fixed(&b, v, d);
            assert_true(fmt_cstr(&b));
            snprintf(want, sizeof want, "%.*f", d, v);
            /* printf keeps the sign of a negative value that rounds to zero ("-0.000");
             * fmt_fixed does not, on purpose. */
            if (want[0] == '-' && strcmp(got, want + 1) == 0 && strspn(got, "0.") == strlen(got))
                continue;
            if (strcmp(got, want) != 0) {
                double scaled = fabs(v) * pow(10, d);
                double frac = scaled - floor(scaled);
                if (fabs(frac - 0.5) >= 1e-6)
                    fail_msg("%.17g at %d decimals: got %s, printf %s", v, d, got, want);
            }
        }
    }
    fmtbuf_t b;
    fmt_init(&b, got, sizeof got);
    fmt_fixed(&b, 0.0004, 3); /* rounds to zero: no minus sign */
    fmt_lit(&b, " ");
    fmt_fixed(&b, -0.0004, 3);
    fmt_lit(&b, " ");
    fmt_fixed(&b, 1e12, 3); /* the printf path */
    fmt_lit(&b, " ");
    fmt_fixed(&b, NAN, 3);
    assert_true(fmt_cstr(&b));
    assert_string_equal(got, "0.000 0.000 1000000000000.000 null");
}

static void test_g17_and_time(void **state)
{
    (void)state;
    char got[64];
    fmtbuf_t b;
    fmt_init(&b, got, sizeof got);
    fmt_g17(&b, 0.000168);
    fmt_lit(&b, " ");
    fmt_iso_ms(&b, 1795786460, 922999999); /* 2026-11-27T13:34:20.922Z */
    assert_true(fmt_cstr(&b));
    assert_string_equal(got, "0.00016799999999999999 2026-11-27T13:34:20.922Z");
}

static void expect_g17(double v)
{
    char want[64], got[64];
    snprintf(want, sizeof want, "%.17g", v);
    fmtbuf_t b;
    fmt_init(&b, got, sizeof got);
    fmt_g17(&b, v);
    assert_true(fmt_cstr(&b));
    if (strcmp(got, want) != 0)
        fail_msg("%a: fmt_g17 %s, printf %s", v, got, want);
}

/* The fast path must be printf, digit for digit: costs are summed from the log. */
static void test_g17_matches_printf(void **state)
{
    (void)state;
    static const double fixed[] = {0.0,    -0.0,   1.0,    0.5,    0.125,  1e-11,  1e-5,
                                   1e-4,   0.0001, 9.999999999999999e-5, 1e15, 9.999999999999998e15,
                                   1e16,   0.1,    0.3,    2.5e-7, 123456.789, 0.00054,
                                   1e-12,  5e-324, 1e308, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        expect_g17(fixed[i]);
        expect_g17(-fixed[i]);
    }
    /* Every power of ten and its neighbours, where the decimal exponent is decided. */
    for (int p = -13; p <= 17; p++) {
        double x = pow(10, p);
        expect_g17(x);
        expect_g17(nextafter(x, 0));
        expect_g17(nextafter(x, INFINITY));
    }
    /* Costs as the router computes them: tokens x price per million. */
    uint64_t r = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 300000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        long tokens = (long)(r % 2000000);
        double price = (double)((r >> 24) % 20000) / 100.0;
        expect_g17((double)tokens * price / 1e6);
        expect_g17((double)tokens * price / 1e6 + (double)(r % 977) * 8.0 / 1e6);
    }
    /* Any double of the fast path's range, by its bits. */
    for (int i = 0; i < 1000000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        uint64_t bits = (r & 0x800fffffffffffffULL) | ((uint64_t)(985 + r % 90) << 52);
        double x;
        memcpy(&x, &bits, sizeof x);
        expect_g17(x);
    }
}

static void test_overflow_is_sticky(void **state)
{
    (void)state;
    char buf[8];
    fmtbuf_t b;
    fmt_init(&b, buf, sizeof buf);
    fmt_lit(&b, "abcdef");
    assert_false(b.over);
    fmt_lit(&b, "ghi"); /* does not fit: nothing written, over set */
    assert_true(b.over);
    assert_int_equal(b.n, 6);
    fmt_lit(&b, "x"); /* would fit, but the line is already lost */
    assert_int_equal(b.n, 6);
    assert_false(fmt_cstr(&b));
    fmt_init(&b, buf, 6);
    fmt_lit(&b, "abcdef");
    assert_false(fmt_cstr(&b)); /* no room for the NUL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers_match_printf),
        cmocka_unit_test(test_fixed_matches_printf_off_ties),
        cmocka_unit_test(test_g17_and_time),
        cmocka_unit_test(test_g17_matches_printf),
        cmocka_unit_test(test_overflow_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
