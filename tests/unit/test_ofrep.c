/*
 * test_ofrep.c — unit tests for flags/ofrep.c: every status / errorCode path of the single and
 * bulk endpoints, the exact response shapes, and agreement of variant/value/reason/bucket with
 * flags_eval for many keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "ofrep.h"

typedef struct {
    flag_def_t *split;    /* use_new_provider at 37.5% */
    flag_def_t *disabled; /* kill_switch, disabled */
    flag_def_t *scoped;   /* cheap_models: 100%, only for gpt-4o-mini* and allow vip-* */
    const flag_def_t *all[3];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);

    if (f == NULL)
        return -1;
    f->split = flags_def_new("use_new_provider");
    f->disabled = flags_def_new("kill_switch");
    f->scoped = flags_def_new("cheap_models");
    if (f->split == NULL || f->disabled == NULL || f->scoped == NULL)
        return -1;
    f->split->percentage_bp = 3750;
    f->disabled->percentage_bp = 10000;
    f->disabled->disabled = 1;
    f->scoped->percentage_bp = 0;
    if (flags_def_add_match(&f->scoped->models, &f->scoped->n_models, "gpt-4o-mini*") != 0 ||
        flags_def_add_match(&f->scoped->allow, &f->scoped->n_allow, "vip-*") != 0 ||
        flags_def_add_match(&f->split->deny, &f->split->n_deny, "blocked") != 0)
        return -1;
    f->all[0] = f->split;
    f->all[1] = f->disabled;
    f->all[2] = f->scoped;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    flags_def_free(f->split);
    flags_def_free(f->disabled);
    flags_def_free(f->scoped);
    free(f);
    return 0;
}

static int one(const fixture_t *f, const char *key, const char *body, char **out)
{
    return ofrep_evaluate_one(f->all, 3, key, body, body ? strlen(body) : 0, out);
}

static int bulk(const fixture_t *f, const char *body, char **out)
{
    return ofrep_evaluate_bulk(f->all, 3, body, body ? strlen(body) : 0, out);
}

/* Asserts status and the error document's fields; key NULL means "no key field". Takes the
 * address of the output so that it is read after the call that fills it. */
static void expect_error(int status, char **outp, int want_status, const char *key,
                         const char *code)
{
    char *out = *outp;
    cJSON *doc;
    const cJSON *item;

    assert_int_equal(status, want_status);
    assert_non_null(out);
    doc = cJSON_Parse(out);
    assert_non_null(doc);
    item = cJSON_GetObjectItemCaseSensitive(doc, "key");
    if (key == NULL) {
        assert_null(item);
    } else {
        assert_true(cJSON_IsString(item));
        assert_string_equal(item->valuestring, key);
    }
    item = cJSON_GetObjectItemCaseSensitive(doc, "errorCode");
    assert_true(cJSON_IsString(item));
    assert_string_equal(item->valuestring, code);
    item = cJSON_GetObjectItemCaseSensitive(doc, "errorDetails");
    assert_true(cJSON_IsString(item));
    assert_true(item->valuestring[0] != '\0');
    assert_null(cJSON_GetObjectItemCaseSensitive(doc, "value"));
    cJSON_Delete(doc);
    free(out);
    *outp = NULL;
}

/* Checks one success entry against what flags_eval says for the same inputs. */
static void check_entry(const cJSON *entry, const flag_def_t *def, const char *tkey,
                        const char *model)
{
    flag_result_t r = flags_eval(def, tkey, strlen(tkey), model, 0);
    const cJSON *item, *metadata, *bucket;

    assert_true(cJSON_IsObject(entry));
    item = cJSON_GetObjectItemCaseSensitive(entry, "key");
    assert_true(cJSON_IsString(item));
    assert_string_equal(item->valuestring, def->key);
    item = cJSON_GetObjectItemCaseSensitive(entry, "reason");
    assert_true(cJSON_IsString(item));
    assert_string_equal(item->valuestring, flags_reason_name(r.reason));
    item = cJSON_GetObjectItemCaseSensitive(entry, "variant");
    assert_true(cJSON_IsString(item));
    assert_string_equal(item->valuestring, flags_variant_name(r.variant));
    item = cJSON_GetObjectItemCaseSensitive(entry, "value");
    assert_true(cJSON_IsBool(item));
    assert_int_equal(cJSON_IsTrue(item), r.variant == FLAG_VARIANT_NEW);
    metadata = cJSON_GetObjectItemCaseSensitive(entry, "metadata");
    assert_true(cJSON_IsObject(metadata));
    bucket = cJSON_GetObjectItemCaseSensitive(metadata, "bucket");
    if (r.reason == FLAG_REASON_SPLIT) {
        assert_true(cJSON_IsNumber(bucket));
        assert_int_equal(bucket->valueint, r.bucket);
    } else {
        assert_null(bucket);
    }
    assert_null(cJSON_GetObjectItemCaseSensitive(entry, "errorCode"));
}

static void test_one_not_found(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;
    int status = one(f, "nope", "{\"context\":{\"targetingKey\":\"u1\"}}", &out);

    assert_int_equal(status, 404);
    assert_string_equal(out, "{\"key\":\"nope\",\"errorCode\":\"FLAG_NOT_FOUND\","
                             "\"errorDetails\":\"flag `nope` is not defined\"}");
    free(out);
    /* still 404 without a targeting key: existence is decided before the key is required */
    expect_error(one(f, "nope", "{}", &out), &out, 404, "nope", "FLAG_NOT_FOUND");
    expect_error(one(f, "nope", NULL, &out), &out, 404, "nope", "FLAG_NOT_FOUND");
    /* a key needing escapes still yields valid JSON that echoes it */
    expect_error(one(f, "we\"ird\\key", "{}", &out), &out, 404, "we\"ird\\key", "FLAG_NOT_FOUND");
    expect_error(one(f, "", "{}", &out), &out, 404, "", "FLAG_NOT_FOUND");
    expect_error(ofrep_evaluate_one(f->all, 3, NULL, "{}", 2, &out), &out, 404, "",
                 "FLAG_NOT_FOUND");
    /* flag keys match exactly */
    expect_error(one(f, "use_new_provide", "{}", &out), &out, 404, "use_new_provide",
                 "FLAG_NOT_FOUND");
}

static void test_one_parse_error(void **state)
{
    static const char *const bodies[] = {
        "not json", "{", "{\"context\":", "{\"context\":{}} trailing", "{} {}", "{'a':1}", " ",
    };
    fixture_t *f = *state;
    char *out = NULL;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        expect_error(one(f, "use_new_provider", bodies[i], &out), &out, 400, "use_new_provider",
                     "PARSE_ERROR");
    /* an embedded NUL must not hide trailing garbage */
    expect_error(ofrep_evaluate_one(f->all, 3, "use_new_provider", "{}\0xx", 5, &out), &out, 400,
                 "use_new_provider", "PARSE_ERROR");
    /* body errors win over an unknown flag, as in flagd */
    expect_error(one(f, "nope", "not json", &out), &out, 400, "nope", "PARSE_ERROR");
}

static void test_one_invalid_context(void **state)
{
    static const char *const bodies[] = {
        "[1,2]",
        "\"str\"",
        "42",
        "null",
        "{\"context\":[]}",
        "{\"context\":\"u1\"}",
        "{\"context\":null}",
        "{\"context\":7}",
        "{\"context\":{\"targetingKey\":\"u1\",\"model\":5}}",
        "{\"context\":{\"targetingKey\":\"u1\",\"model\":{}}}",
    };
    fixture_t *f = *state;
    char *out = NULL;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        expect_error(one(f, "use_new_provider", bodies[i], &out), &out, 400, "use_new_provider",
                     "INVALID_CONTEXT");
}

static void test_one_targeting_key_missing(void **state)
{
    static const char *const bodies[] = {
        NULL,
        "{}",
        "{\"context\":{}}",
        "{\"context\":{\"targetingKey\":\"\"}}",
        "{\"context\":{\"targetingKey\":42}}",
        "{\"context\":{\"targetingKey\":null}}",
        "{\"context\":{\"targetingKey\":true}}",
        "{\"context\":{\"targetingKey\":[\"u1\"]}}",
        "{\"context\":{\"TargetingKey\":\"u1\"}}",
        "{\"targetingKey\":\"u1\"}",
    };
    fixture_t *f = *state;
    char *out = NULL;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        expect_error(one(f, "use_new_provider", bodies[i], &out), &out, 400, "use_new_provider",
                     "TARGETING_KEY_MISSING");
    /* the key is required even where the result would not depend on it */
    expect_error(one(f, "kill_switch", "{}", &out), &out, 400, "kill_switch",
                 "TARGETING_KEY_MISSING");
}

static void test_one_success_shape(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;
    char want[256];
    flag_result_t r = flags_eval(f->split, "user-1", 6, NULL, 0);

    assert_int_equal(r.reason, FLAG_REASON_SPLIT);
    assert_int_equal(
        one(f, "use_new_provider", "{\"context\":{\"targetingKey\":\"user-1\"}}", &out), 200);
    snprintf(want, sizeof want,
             "{\"key\":\"use_new_provider\",\"reason\":\"SPLIT\",\"variant\":\"%s\","
             "\"value\":%s,\"metadata\":{\"bucket\":%u}}",
             flags_variant_name(r.variant), r.variant == FLAG_VARIANT_NEW ? "true" : "false",
             r.bucket);
    assert_string_equal(out, want);
    free(out);

    assert_int_equal(one(f, "kill_switch", "{\"context\":{\"targetingKey\":\"user-1\"}}", &out),
                     200);
    assert_string_equal(out, "{\"key\":\"kill_switch\",\"reason\":\"DISABLED\","
                             "\"variant\":\"original\",\"value\":false,\"metadata\":{}}");
    free(out);

    assert_int_equal(
        one(f, "use_new_provider", "{\"context\":{\"targetingKey\":\"blocked\"}}", &out), 200);
    assert_string_equal(out, "{\"key\":\"use_new_provider\",\"reason\":\"TARGETING_MATCH\","
                             "\"variant\":\"original\",\"value\":false,\"metadata\":{}}");
    free(out);
}

static void test_one_model_scope(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;

    /* in scope, allow-listed */
    assert_int_equal(
        one(f, "cheap_models",
            "{\"context\":{\"targetingKey\":\"vip-9\",\"model\":\"gpt-4o-mini-2024\"}}", &out),
        200);
    assert_string_equal(out, "{\"key\":\"cheap_models\",\"reason\":\"TARGETING_MATCH\","
                             "\"variant\":\"new\",\"value\":true,\"metadata\":{}}");
    free(out);
    /* out of scope, and no model at all: DEFAULT original */
    assert_int_equal(one(f, "cheap_models",
                         "{\"context\":{\"targetingKey\":\"vip-9\",\"model\":\"gpt-4o\"}}", &out),
                     200);
    assert_string_equal(out, "{\"key\":\"cheap_models\",\"reason\":\"DEFAULT\","
                             "\"variant\":\"original\",\"value\":false,\"metadata\":{}}");
    free(out);
    assert_int_equal(one(f, "cheap_models", "{\"context\":{\"targetingKey\":\"vip-9\"}}", &out),
                     200);
    assert_string_equal(out, "{\"key\":\"cheap_models\",\"reason\":\"DEFAULT\","
                             "\"variant\":\"original\",\"value\":false,\"metadata\":{}}");
    free(out);
    /* a null model is no model */
    assert_int_equal(
        one(f, "cheap_models", "{\"context\":{\"targetingKey\":\"vip-9\",\"model\":null}}", &out),
        200);
    assert_non_null(strstr(out, "\"reason\":\"DEFAULT\""));
    free(out);
}

/* The body is length-delimited: bytes after body_len are never read. */
static void test_one_body_not_terminated(void **state)
{
    fixture_t *f = *state;
    static const char body[] = "{\"context\":{\"targetingKey\":\"user-1\"}}GARBAGE";
    char *heap = malloc(sizeof body - 1 - 7);
    char *out = NULL;
    char *want = NULL;

    assert_non_null(heap);
    memcpy(heap, body, sizeof body - 1 - 7);
    assert_int_equal(
        ofrep_evaluate_one(f->all, 3, "use_new_provider", heap, sizeof body - 1 - 7, &out), 200);
    assert_int_equal(
        one(f, "use_new_provider", "{\"context\":{\"targetingKey\":\"user-1\"}}", &want), 200);
    assert_string_equal(out, want);
    free(want);
    free(out);
    free(heap);
}

/* variant/value/reason/bucket agree with flags_eval for many keys. */
static void test_one_agrees_with_eval(void **state)
{
    fixture_t *f = *state;
    unsigned n_new = 0;

    for (int i = 0; i < 2000; i++) {
        char body[128], tkey[32];
        char *out = NULL;
        cJSON *doc;

        snprintf(tkey, sizeof tkey, "user-%d", i);
        snprintf(body, sizeof body, "{\"context\":{\"targetingKey\":\"%s\",\"extra\":[1]}}", tkey);
        assert_int_equal(one(f, "use_new_provider", body, &out), 200);
        doc = cJSON_Parse(out);
        assert_non_null(doc);
        check_entry(doc, f->split, tkey, NULL);
        n_new += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "value"));
        cJSON_Delete(doc);
        free(out);
    }
    /* 37.5% of 2000 = 750; loose bound, the exact split is tested in test_flags */
    assert_in_range(n_new, 650, 850);
}

static void test_bulk_success(void **state)
{
    static const char *const keys[] = {"user-1", "vip-3", "blocked", "someone-else"};
    fixture_t *f = *state;

    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char body[160];
        char *out = NULL;
        cJSON *doc;
        const cJSON *list;

        snprintf(body, sizeof body,
                 "{\"context\":{\"targetingKey\":\"%s\",\"model\":\"gpt-4o-mini\"}}", keys[k]);
        assert_int_equal(bulk(f, body, &out), 200);
        doc = cJSON_Parse(out);
        assert_non_null(doc);
        list = cJSON_GetObjectItemCaseSensitive(doc, "flags");
        assert_true(cJSON_IsArray(list));
        assert_int_equal(cJSON_GetArraySize(list), 3);
        for (int i = 0; i < 3; i++) {
            char *single = NULL, *printed;

            check_entry(cJSON_GetArrayItem(list, i), f->all[i], keys[k], "gpt-4o-mini");
            /* each bulk entry is byte-identical to the single evaluation */
            assert_int_equal(one(f, f->all[i]->key, body, &single), 200);
            printed = cJSON_PrintUnformatted(cJSON_GetArrayItem(list, i));
            assert_non_null(printed);
            assert_string_equal(printed, single);
            cJSON_free(printed);
            free(single);
        }
        cJSON_Delete(doc);
        free(out);
    }
}

static void test_bulk_empty_and_errors(void **state)
{
    static const char body[] = "{\"context\":{\"targetingKey\":\"u\"}}";
    fixture_t *f = *state;
    char *out = NULL;

    assert_int_equal(ofrep_evaluate_bulk(NULL, 0, body, sizeof body - 1, &out), 200);
    assert_string_equal(out, "{\"flags\":[]}");
    free(out);

    expect_error(bulk(f, "not json", &out), &out, 400, NULL, "PARSE_ERROR");
    expect_error(bulk(f, "{\"context\":{}} x", &out), &out, 400, NULL, "PARSE_ERROR");
    expect_error(bulk(f, "[]", &out), &out, 400, NULL, "INVALID_CONTEXT");
    expect_error(bulk(f, "{\"context\":\"x\"}", &out), &out, 400, NULL, "INVALID_CONTEXT");
    expect_error(bulk(f, "{\"context\":{\"targetingKey\":\"u\",\"model\":1}}", &out), &out, 400,
                 NULL, "INVALID_CONTEXT");
    expect_error(bulk(f, NULL, &out), &out, 400, NULL, "TARGETING_KEY_MISSING");
    expect_error(bulk(f, "{}", &out), &out, 400, NULL, "TARGETING_KEY_MISSING");
    expect_error(bulk(f, "{\"context\":{\"targetingKey\":\"\"}}", &out), &out, 400, NULL,
                 "TARGETING_KEY_MISSING");
    expect_error(bulk(f, "{\"context\":{\"targetingKey\":1}}", &out), &out, 400, NULL,
                 "TARGETING_KEY_MISSING");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_not_found),
        cmocka_unit_test(test_one_parse_error),
        cmocka_unit_test(test_one_invalid_context),
        cmocka_unit_test(test_one_targeting_key_missing),
        cmocka_unit_test(test_one_success_shape),
        cmocka_unit_test(test_one_model_scope),
        cmocka_unit_test(test_one_body_not_terminated),
        cmocka_unit_test(test_one_agrees_with_eval),
        cmocka_unit_test(test_bulk_success),
        cmocka_unit_test(test_bulk_empty_and_errors),
    };

    return cmocka_run_group_tests_name("ofrep", tests, setup, teardown);
}
