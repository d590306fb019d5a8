/* Unit tests: router/jsonscan (one member of an object, no tree) and its use for usage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonscan.h"
#include "usage.h"

static int find(const char *s, const char *key, char *out, size_t cap)
{
    size_t off = 0, len = 0;
    int r = jsonscan_member(s, strlen(s), key, &off, &len);
    if (r == JSONSCAN_FOUND) {
        assert_true(len < cap);
        memcpy(out, s + off, len);
        out[len] = '\0';
    }
    return r;
}

static void test_members(void **state)
{
    (void)state;
    char v[256];
    const char *doc = "\xEF\xBB\xBF {\"id\":\"a\\\"}{[\",\"n\":-1.5e3,\"deep\":{\"x\":[1,{\"usage\":2}]},"
                      "\"usage\" : {\"prompt_tokens\":3} , \"usage\":null}";
    assert_int_equal(find(doc, "usage", v, sizeof v), JSONSCAN_FOUND);
    assert_string_equal(v, "{\"prompt_tokens\":3}"); /* the first, top level only */
    assert_int_equal(find(doc, "n", v, sizeof v), JSONSCAN_FOUND);
    assert_string_equal(v, "-1.5e3");
    assert_int_equal(find(doc, "missing", v, sizeof v), JSONSCAN_ABSENT);
    assert_int_equal(find("{}", "usage", v, sizeof v), JSONSCAN_ABSENT);
    assert_int_equal(find("[]", "usage", v, sizeof v), JSONSCAN_UNSURE);
    assert_int_equal(find("{\"a\":[1,2}", "usage", v, sizeof v), JSONSCAN_UNSURE); /* ] vs } */
    assert_int_equal(find("{\"a\":\"unterminated", "usage", v, sizeof v), JSONSCAN_UNSURE);
    assert_int_equal(find("{\"us\\u0061ge\":1}", "usage", v, sizeof v), JSONSCAN_UNSURE);
    assert_int_equal(find("{\"a\":1", "usage", v, sizeof v), JSONSCAN_UNSURE);
    assert_int_equal(find("{\"a\" 1}", "usage", v, sizeof v), JSONSCAN_UNSURE);
    /* deeper than the scan follows */
    char deep[300] = "{\"a\":";
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    assert_int_equal(find(deep, "usage", v, sizeof v), JSONSCAN_UNSURE);
}

static void test_usage_through_the_scan(void **state)
{
    (void)state;
    usage_t u = {0};
    const char *c = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":4,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":12}}}";
    assert_int_equal(usage_from_json(c, strlen(c), &u), 0);
    assert_int_equal(u.prompt, 10);
    assert_int_equal(u.completion, 4);
    assert_int_equal(u.cached, 10); /* capped at prompt */
    const char *r = "{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,"
                    "\"output_tokens\":2}}}";
    memset(&u, 0, sizeof u);
    assert_int_equal(usage_from_json(r, strlen(r), &u), 0);
    assert_int_equal(u.prompt, 7);
    assert_int_equal(u.completion, 2);
    const char *none = "{\"usage\":null,\"choices\":[]}";
    assert_int_equal(usage_from_json(none, strlen(none), &u), -1);
    /* numbers the integer path does not take: cJSON's rules (truncation, exponent) */
    const char *odd = "{\"usage\":{\"prompt_tokens\":12.9,\"completion_tokens\":2e1,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":-3}}}";
    memset(&u, 0, sizeof u);
    assert_int_equal(usage_from_json(odd, strlen(odd), &u), 0);
    assert_int_equal(u.prompt, 12);
    assert_int_equal(u.completion, 20);
    assert_int_equal(u.cached, 0);
    /* an escaped key: the scan steps aside and the whole-body parse decides */
    const char *esc = "{\"\\u0075sage\":{\"prompt_tokens\":5}}";
    memset(&u, 0, sizeof u);
    assert_int_equal(usage_from_json(esc, strlen(esc), &u), 0);
    assert_int_equal(u.prompt, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_usage_through_the_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
