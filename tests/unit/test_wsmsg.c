/* Unit tests: router/wsmsg (WebSocket client messages). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "wsmsg.h"

static wsmsg_kind_t parse(const char *s, wsmsg_t *m)
{
    return wsmsg_parse((const uint8_t *)s, strlen(s), m);
}

static void test_kinds(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        wsmsg_kind_t kind;
    } cases[] = {
        {"{\"type\":\"auth\",\"token\":\"k\"}", WSMSG_AUTH},
        {" {\"type\":\"heartbeat\"}\r\n", WSMSG_HEARTBEAT},
        {"{\"type\":\"subscribe\",\"channel\":\"a\"}", WSMSG_SUBSCRIBE},
        {"{\"type\":\"unsubscribe\",\"channel\":\"a\"}", WSMSG_UNSUBSCRIBE},
        {"{\"type\":\"chat\",\"messages\":[]}", WSMSG_CHAT},
        {"{\"stream\":true,\"messages\":[]}", WSMSG_CHAT}, /* an SDK body as is */
        {"{\"stream\":false,\"messages\":[]}", WSMSG_UNKNOWN},
        {"{\"type\":5,\"stream\":true,\"messages\":[]}", WSMSG_UNKNOWN},
        {"{\"type\":\"Chat\"}", WSMSG_UNKNOWN},
        {"{}", WSMSG_UNKNOWN},
        {"[]", WSMSG_BAD_JSON},
        {"\"auth\"", WSMSG_BAD_JSON},
        {"{\"type\":\"heartbeat\"} {}", WSMSG_BAD_JSON}, /* one object, nothing after */
        {"{\"type\":\"heartbeat\"", WSMSG_BAD_JSON},
        {"", WSMSG_BAD_JSON},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wsmsg_t m;
        assert_int_equal(parse(cases[i].text, &m), cases[i].kind);
        assert_int_equal(m.doc == NULL, cases[i].kind == WSMSG_BAD_JSON);
        wsmsg_free(&m);
    }
}

static void test_nul_inside_is_not_the_end(void **state)
{
    (void)state;
    /* A text frame may carry a NUL: what follows it still counts. */
    static const uint8_t msg[] = "{\"type\":\"heartbeat\"}\0{\"x\":1}";
    wsmsg_t m;
    assert_int_equal(wsmsg_parse(msg, sizeof msg - 1, &m), WSMSG_BAD_JSON);
    wsmsg_free(&m);
    /* nor inside a string: the token must not end early */
    static const uint8_t auth[] = "{\"type\":\"auth\",\"token\":\"sk-good\0junk\"}";
    assert_int_equal(wsmsg_parse(auth, sizeof auth - 1, &m), WSMSG_BAD_JSON);
    wsmsg_free(&m);
}

static void test_fields(void **state)
{
    (void)state;
    wsmsg_t m;
    parse("{\"type\":\"auth\",\"token\":\"ck-1\"}", &m);
    assert_string_equal(m.token, "ck-1");
    wsmsg_free(&m);
    parse("{\"type\":\"auth\",\"token\":7}", &m);
    assert_null(m.token);
    wsmsg_free(&m);
    parse("{\"type\":\"subscribe\",\"channel\":\"\"}", &m);
    assert_null(m.channel);
    wsmsg_free(&m);
    char big[300];
    snprintf(big, sizeof big, "{\"type\":\"subscribe\",\"channel\":\"%0128d\"}", 0);
    parse(big, &m);
    assert_null(m.channel); /* 128 bytes: one too many */
    wsmsg_free(&m);
    snprintf(big, sizeof big, "{\"type\":\"subscribe\",\"channel\":\"%0127d\"}", 0);
    parse(big, &m);
    assert_non_null(m.channel);
    assert_int_equal(strlen(m.channel), 127);
    wsmsg_free(&m);
}

static void test_id_cut_at_a_character(void **state)
{
    (void)state;
    /* 'a' then 70 two-byte characters: 141 bytes, cut to at most 127 on a boundary. */
    char text[400] = "{\"type\":\"chat\",\"id\":\"a";
    for (int i = 0; i < 70; i++)
        strcat(text, "\xc3\xa9");
    strcat(text, "\",\"messages\":[]}");
    wsmsg_t m;
    assert_int_equal(parse(text, &m), WSMSG_CHAT);
    assert_int_equal(strlen(m.id), 127); /* 'a' + 63 characters */
    assert_int_equal((unsigned char)m.id[125], 0xc3);
    wsmsg_free(&m);
}

static void test_chat_body(void **state)
{
    (void)state;
    wsmsg_t m;
    parse("{\"type\":\"chat\",\"id\":\"c1\",\"id\":\"c2\",\"model\":\"gpt-4.1\",\"stream\":false,"
          "\"stream\":false,\"stream_options\":{\"include_usage\":false},\"messages\":[]}",
          &m);
    assert_string_equal(m.id, "c1");
    size_t len = 0;
    char *body = wsmsg_chat_body(&m, &len);
    assert_non_null(body);
    assert_int_equal(strlen(body), len);
    assert_string_equal(body, "{\"model\":\"gpt-4.1\",\"messages\":[],\"stream\":true,"
                              "\"stream_options\":{\"include_usage\":true}}");
    free(body);
    wsmsg_free(&m);
    parse("{\"type\":\"heartbeat\"}", &m);
    assert_null(wsmsg_chat_body(&m, &len));
    wsmsg_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_nul_inside_is_not_the_end),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_id_cut_at_a_character),
        cmocka_unit_test(test_chat_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
