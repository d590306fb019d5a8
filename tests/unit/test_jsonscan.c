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


/* usage_strip_event on one event: its result and bytes, and the same from the walk
 * it must agree with. */
static void strip_case(const char *in, long want_len, const char *want)
{
    char a[2048], b[2048];
    size_t n = strlen(in);
    assert_true(n < sizeof a);
    memcpy(a, in, n + 1);
    memcpy(b, in, n + 1);
    long got = usage_strip_event(a, n);
    long ref = usage_strip_event_reference(b, n);
    assert_int_equal(got, want_len);
    assert_int_equal(ref, want_len);
    if (want) {
        assert_memory_equal(a, want, (size_t)got);
        assert_memory_equal(b, want, (size_t)got);
    }
}

static void test_strip_event(void **state)
{
    (void)state;
    const char *plain = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    strip_case(plain, (long)strlen(plain), plain);
    const char *one = "data: {\"id\":\"c\",\"choices\":[],\"usage\":null}\n\n";
    strip_case(one, (long)strlen(one) - 13, "data: {\"id\":\"c\",\"choices\":[]}\n\n");
    /* the usage chunk, with or without blanks before its object */
    strip_case("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n", -1, NULL);
    strip_case("data: {\"usage\":null,\"x\":1,\"usage\": \t{\"a\":1}}\n\n", -1, NULL);
    /* no comma before, or blanks before null: not the member OpenAI adds */
    const char *first = "data: {\"usage\":null,\"a\":1}";
    strip_case(first, (long)strlen(first), first);
    const char *blank = "{\"a\":1,\"usage\": null}";
    strip_case(blank, (long)strlen(blank), blank);
    /* adjacent members, a member right at the end, one cut short */
    strip_case("{\"a\":1,\"usage\":null,\"usage\":null}", 7, "{\"a\":1}");
    strip_case("x,\"usage\":null", 1, "x");
    const char *cut = "x,\"usage\":nul";
    strip_case(cut, (long)strlen(cut), cut);
    /* more members than the fast walk keeps track of: the general walk */
    char many[1024] = "{\"a\":1";
    for (int i = 0; i < 11; i++)
        strcat(many, ",\"usage\":null,\"b\":2");
    strcat(many, "}");
    char want[1024] = "{\"a\":1";
    for (int i = 0; i < 11; i++)
        strcat(want, ",\"b\":2");
    strcat(want, "}");
    strip_case(many, (long)strlen(want), want);
}

static void obj_case(const char *in, const char *want)
{
    char buf[512];
    size_t n = strlen(in);
    memcpy(buf, in, n + 1);
    long kept = usage_strip_object(buf, n);
    if (!want) {
        assert_int_equal(kept, -1);
        assert_string_equal(buf, in); /* untouched */
        return;
    }
    assert_int_equal(kept, (long)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
}

static void test_strip_object(void **state)
{
    (void)state;
    /* usage on the last content chunk (DeepSeek, Mistral): the chunk goes on without it */
    obj_case("data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"END\"},"
             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
             "\"completion_tokens\":{\"n\":\"}\"}}}\n\n",
             "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"END\"},"
             "\"finish_reason\":\"stop\"}]}\n\n");
    /* first member, blanks around, CRLF line ends, an event name before the data */
    obj_case("event: x\r\ndata: { \"usage\" : {\"a\":1} ,\t\"choices\": [ {} ] }\r\n\r\n",
             "event: x\r\ndata: { \"choices\": [ {} ] }\r\n\r\n");
    /* text that quotes an empty choices list is content, not the usage chunk */
    obj_case("data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"choices\\\":[]}\"}}],"
             "\"usage\":{\"a\":1}}\n\n",
             "data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"choices\\\":[]}\"}}]}\n\n");
    /* the usage chunk itself, no choices, usage not an object: withheld whole */
    obj_case("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n", NULL);
    obj_case("data: {\"choices\":[ \n ],\"usage\":{\"prompt_tokens\":1}}\n\n", NULL);
    obj_case("data: {\"usage\":{\"prompt_tokens\":1}}\n\n", NULL);
    obj_case("data: {\"choices\":[{}],\"usage\":null}\n\n", NULL);
    /* a second data line, no data, a broken document: withheld whole */
    obj_case("data: {\"choices\":[{}],\n"
             "data: \"usage\":{\"a\":1}}\n\n",
             NULL);
    obj_case(": comment\n\n", NULL);
    obj_case("data: {\"choices\":[{}],\"usage\":{\"a\":1\n\n", NULL);
}

static void test_event_has_content(void **state)
{
    (void)state;
    assert_true(usage_event_has_content("data: {\"delta\":{\"content\":\"hi\"}}\n\n", 34, 0));
    /* blanks around the colon (Python's json.dumps), legacy completions' "text" */
    const char *spaced = "data: {\"delta\": {\"content\": \"hi\"}}\n\n";
    assert_true(usage_event_has_content(spaced, strlen(spaced), 0));
    const char *legacy = "data: {\"choices\":[{\"text\":\"hi \",\"index\":0}]}\n\n";
    assert_true(usage_event_has_content(legacy, strlen(legacy), 1));
    /* the role chunk's empty content, a null, a key in a value, no content at all */
    const char *role = "data: {\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}\n\n";
    assert_false(usage_event_has_content(role, strlen(role), 0));
    const char *null = "data: {\"delta\":{\"content\":null}}\n\n";
    assert_false(usage_event_has_content(null, strlen(null), 0));
    const char *typed = "data: {\"type\":\"text\",\"x\":\"\\\"content\\\"\"}\n\n";
    assert_false(usage_event_has_content(typed, strlen(typed), 0));
    const char *finish = "data: {\"delta\":{},\"finish_reason\":\"stop\"}\n\n";
    assert_false(usage_event_has_content(finish, strlen(finish), 0));
    assert_false(usage_event_has_content("\"content\":", 10, 0)); /* cut at the colon */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_usage_through_the_scan),
        cmocka_unit_test(test_strip_event),
        cmocka_unit_test(test_strip_object),
        cmocka_unit_test(test_event_has_content),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
