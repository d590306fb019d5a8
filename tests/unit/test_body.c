/* Unit tests: router/body (extraction, duplicate keys, the model splice) and router/sse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "body.h"
#include "sse.h"

static int parse(const char *s, body_info_t *info)
{
    return body_parse(s, strlen(s), info);
}

static void test_extracts_routing_fields(void **state)
{
    (void)state;
    body_info_t b;
    const char *s = "{\"model\":\"gpt-4.1\",\"stream\":true,\"user\":\"u-1\","
                    "\"stream_options\":{\"include_usage\":true},\"messages\":[]}";
    assert_int_equal(parse(s, &b), BODY_OK);
    assert_string_equal(b.model, "gpt-4.1");
    assert_string_equal(b.user, "u-1");
    assert_true(b.stream);
    assert_true(b.include_usage);
    assert_string_equal(body_string_field(&b, "user"), "u-1");
    assert_null(body_string_field(&b, "messages"));
    assert_int_equal(b.obj_end, strlen(s) - 1);
    body_info_free(&b);

    assert_int_equal(parse("{}", &b), BODY_OK);
    assert_null(b.model);
    assert_false(b.stream);
    assert_int_equal(b.model_len, 0);
    body_info_free(&b);
}

static void test_rejects_bad_bodies(void **state)
{
    (void)state;
    body_info_t b;
    assert_int_equal(parse("", &b), BODY_ERR_JSON);
    assert_int_equal(parse("{", &b), BODY_ERR_JSON);
    assert_int_equal(parse("{\"a\":1} x", &b), BODY_ERR_JSON);
    assert_int_equal(parse("[1]", &b), BODY_ERR_NOT_OBJECT);
    assert_int_equal(parse("\"model\"", &b), BODY_ERR_NOT_OBJECT);
    assert_int_equal(parse("{\"model\":1}", &b), BODY_ERR_TYPE);
    assert_int_equal(parse("{\"stream\":\"yes\"}", &b), BODY_ERR_TYPE);
    /* cJSON takes any byte up to 0x20 as space; the scanner must not see another
     * structure (found by fuzzing: a hidden second "model"). */
    assert_int_equal(parse("{\"model\":\"a\",\"x\":\x01{},\"model\":\"b\"}", &b), BODY_ERR_JSON);
    assert_int_equal(parse("{\"model\":\x0b\"a\"}", &b), BODY_ERR_JSON);
    assert_non_null(b.error);
}

/* Validation is RFC 8259's grammar, in one pass and without a tree. */
static void test_strict_json(void **state)
{
    (void)state;
    body_info_t b;
    static const char *const ok[] = {
        "{}", " {\"a\" : [1, -0, 0.5, 1e9, -1.25E-3, true, false, null, {}, []]} \r\n",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
        "{\"deep\":[[[[[[[[[[{\"x\":[]}]]]]]]]]]]}", "{\"u\":\"\xc3\xa9\xff\"}"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (parse(ok[i], &b) != BODY_OK)
            fail_msg("refused: %s (%s)", ok[i], b.error);
        body_info_free(&b);
    }
    static const char *const bad[] = {
        "{\"a\":01}",  "{\"a\":1.}",    "{\"a\":.5}",     "{\"a\":+1}",     "{\"a\":1e}",
        "{\"a\":-}",   "{\"a\":tru}",   "{\"a\":True}",   "{\"a\":[1,]}",   "{\"a\":1,}",
        "{,}",          "{\"a\" 1}",     "{a:1}",           "{\"a\":'x'}",    "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"tab\there\"}", "{\"a\":[}", "{\"a\":1}}",
        "\xef\xbb\xbf{}", "{\"a\":1}\x0c",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &b) != BODY_ERR_JSON)
            fail_msg("accepted: %s", bad[i]);
    /* Nesting: cJSON's limit of 1000 levels, no more. */
    char deep[2100];
    for (int n = 1000; n <= 1001; n++) {
        size_t o = 0;
        deep[o++] = '{';
        deep[o++] = '"';
        deep[o++] = 'a';
        deep[o++] = '"';
        deep[o++] = ':';
        for (int i = 1; i < n; i++)
            deep[o++] = '[';
        for (int i = 1; i < n; i++)
            deep[o++] = ']';
        deep[o++] = '}';
        deep[o] = '\0';
        assert_int_equal(parse(deep, &b), n == 1000 ? BODY_OK : BODY_ERR_JSON);
        body_info_free(&b);
    }
}

static void test_decoded_fields(void **state)
{
    (void)state;
    body_info_t b;
    assert_int_equal(parse("{\"model\":\"gpt-\\u0034o\",\"user\":\"caf\\u00e9 \\ud83d\\ude00\","
                           "\"stream\":null,\"team\":\"a\\\"b\"}",
                           &b),
                     BODY_OK);
    assert_string_equal(b.model, "gpt-4o");
    assert_string_equal(b.user, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_false(b.stream);
    assert_string_equal(body_string_field(&b, "team"), "a\"b");
    assert_null(body_string_field(&b, "stream"));
    assert_null(body_string_field(&b, "absent"));
    body_info_free(&b);
    /* A NUL cannot ride in a C string: refused for routing fields, absent as a sticky key. */
    assert_int_equal(parse("{\"model\":\"gpt\\u0000x\"}", &b), BODY_ERR_TYPE);
    assert_int_equal(parse("{\"user\":\"u\\u0000\"}", &b), BODY_ERR_TYPE);
    assert_int_equal(parse("{\"team\":\"t\\u0000\"}", &b), BODY_OK);
    assert_null(body_string_field(&b, "team"));
    body_info_free(&b);
    assert_int_equal(parse("{\"user\":null,\"stream\":false}", &b), BODY_OK);
    assert_null(b.user);
    body_info_free(&b);
    assert_int_equal(parse("{\"user\":7}", &b), BODY_ERR_TYPE);
    /* stream_options: first include_usage wins, as a JSON object lookup would. */
    assert_int_equal(parse("{\"stream\":true,\"stream_options\":{\"x\":1,\"include_\\u0075sage\":"
                           "true,\"include_usage\":false}}",
                           &b),
                     BODY_OK);
    assert_true(b.include_usage);
    assert_false(b.so_empty);
    body_info_free(&b);
    assert_int_equal(parse("{\"stream\":true,\"stream_options\":{ }}", &b), BODY_OK);
    assert_true(b.has_stream_options);
    assert_true(b.so_empty);
    assert_false(b.include_usage);
    body_info_free(&b);
}

static void test_duplicate_routing_keys(void **state)
{
    (void)state;
    body_info_t b;
    assert_int_equal(parse("{\"model\":\"a\",\"model\":\"b\"}", &b), BODY_ERR_DUPLICATE);
    /* The same key spelt with an escape is still the same key. */
    assert_int_equal(parse("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", &b), BODY_ERR_DUPLICATE);
    assert_int_equal(parse("{\"stream\":true,\"stream\":false}", &b), BODY_ERR_DUPLICATE);
    /* Nested duplicates are not routing keys. */
    assert_int_equal(parse("{\"model\":\"a\",\"x\":{\"model\":\"b\",\"model\":\"c\"}}", &b),
                     BODY_OK);
    assert_string_equal(b.model, "a");
    body_info_free(&b);
}

static void test_splice_keeps_every_other_byte(void **state)
{
    (void)state;
    body_info_t b;
    const char *s = "{ \"seed\" : 12345678901234567890, \"model\" :\t\"claude-sonnet-4.5\" ,"
                    "\"t\":0.70,\"s\":\"x}\\\"y\"}";
    assert_int_equal(parse(s, &b), BODY_OK);
    size_t n = 0;
    char *out = body_rewrite_model(s, strlen(s), &b, "claude-sonnet-4-5", &n);
    assert_non_null(out);
    assert_string_equal(out, "{ \"seed\" : 12345678901234567890, \"model\" :\t\"claude-sonnet-4-5\" ,"
                             "\"t\":0.70,\"s\":\"x}\\\"y\"}");
    assert_int_equal(n, strlen(out));
    free(out);
    /* A name that needs escaping is escaped. */
    out = body_rewrite_model(s, strlen(s), &b, "a\"b", &n);
    assert_non_null(strstr(out, "\"model\" :\t\"a\\\"b\" ,"));
    free(out);
    body_info_free(&b);

    assert_int_equal(parse("{\"messages\":[]}", &b), BODY_OK);
    assert_null(body_rewrite_model("{\"messages\":[]}", 15, &b, "x", &n));
    body_info_free(&b);
}

static size_t scan_all(const char *s, size_t *last_end)
{
    sse_scanner_t sc;
    sse_scanner_init(&sc);
    *last_end = 0;
    return sse_scan(&sc, s, strlen(s), last_end);
}

static void test_sse_event_boundaries(void **state)
{
    (void)state;
    size_t end;
    assert_int_equal(scan_all("data: a\n\ndata: b\n\n", &end), 2);
    assert_int_equal(end, 18);
    assert_int_equal(scan_all("data: a\r\n\r\ndata: b", &end), 1);
    assert_int_equal(end, 11);
    assert_int_equal(scan_all("data: a\r\rdata: b\r\r", &end), 2);
    assert_int_equal(scan_all("\n\n\n", &end), 0); /* blank lines alone are no event */
    assert_int_equal(scan_all(": comment\n\n", &end), 1);
    assert_int_equal(scan_all("data: a\n", &end), 0);
}

static void test_sse_split_anywhere(void **state)
{
    (void)state;
    const char *s = "event: x\r\ndata: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n";
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++) {
        sse_scanner_t sc;
        sse_scanner_init(&sc);
        size_t e1 = 0, e2 = 0;
        size_t n = sse_scan(&sc, s, cut, &e1) + sse_scan(&sc, s + cut, len - cut, &e2);
        assert_int_equal(n, 2);
        assert_int_equal(sc.events, 2);
    }
}

static void test_sse_event_data(void **state)
{
    (void)state;
    const char *d;
    size_t n;
    const char *ev = "event: message\ndata: {\"x\":1}\n\n";
    assert_int_equal(sse_event_data(ev, strlen(ev), &d, &n), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(d, "{\"x\":1}", 7);
    assert_int_equal(sse_event_data("data:[DONE]\n", 12, &d, &n), 0);
    assert_memory_equal(d, "[DONE]", 6);
    assert_int_equal(sse_event_data(": hi\n", 5, &d, &n), -1);
    /* Other fields by name; a longer name sharing the prefix is not the field. */
    const char *named = "eventual: no\nevent: response.completed\ndata: {}\n\n";
    assert_int_equal(sse_event_field(named, strlen(named), "event", &d, &n), 0);
    assert_int_equal(n, 18);
    assert_memory_equal(d, "response.completed", 18);
    assert_int_equal(sse_event_field("data: x\n", 8, "event", &d, &n), -1);
}

/* The last event of a stream, by its data or its name; nothing else is. */
static void test_sse_event_is_last(void **state)
{
    (void)state;
    static const char *const last[] = {
        "data: [DONE]\n\n",
        "data:[DONE]\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n",
        "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{}}\n\n",
        "event: response.incomplete\ndata: {\"type\":\"response.incomplete\"}\n\n",
    };
    for (size_t i = 0; i < sizeof(last) / sizeof(last[0]); i++)
        assert_true(sse_event_is_last(last[i], strlen(last[i])));
    static const char *const not_last[] = {
        "data: [DONE] \n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"}}]}\n\n",
        "event: response.completed_x\ndata: {\"type\":\"response.completed_x\"}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.completed\"}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\"}}\n\n",
        "",
    };
    for (size_t i = 0; i < sizeof(not_last) / sizeof(not_last[0]); i++)
        assert_false(sse_event_is_last(not_last[i], strlen(not_last[i])));
}

/* An answer body is complete when it is one whole JSON object or array. */
static void test_json_complete(void **state)
{
    (void)state;
    static const char *const whole[] = {"{}", " {\"a\":[1,2]}\n", "[1, {\"b\":\"}\"}]"};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
        assert_true(body_json_complete(whole[i], strlen(whole[i])));
    static const char *const partial[] = {
        "",  "{",        "{\"a\":1",     "{\"a\":\"}\"", "[1,", "{} x", "{}{}",
        "1", "\"text\"", "true", /* scalars: "12" could still become "123" */
    };
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
        assert_false(body_json_complete(partial[i], strlen(partial[i])));
    /* Every proper prefix of a whole body is incomplete. */
    const char *doc = "{\"id\":\"c-1\",\"choices\":[{\"message\":{\"content\":\"hi\"}}]}";
    for (size_t n = 0; n < strlen(doc); n++)
        assert_false(body_json_complete(doc, n));
    assert_true(body_json_complete(doc, strlen(doc)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extracts_routing_fields),
        cmocka_unit_test(test_rejects_bad_bodies),
        cmocka_unit_test(test_strict_json),
        cmocka_unit_test(test_decoded_fields),
        cmocka_unit_test(test_duplicate_routing_keys),
        cmocka_unit_test(test_splice_keeps_every_other_byte),
        cmocka_unit_test(test_sse_event_boundaries),
        cmocka_unit_test(test_sse_split_anywhere),
        cmocka_unit_test(test_sse_event_data),
        cmocka_unit_test(test_sse_event_is_last),
        cmocka_unit_test(test_json_complete),
    };
    return cmocka_run_group_tests_name("body", tests, NULL, NULL);
}
