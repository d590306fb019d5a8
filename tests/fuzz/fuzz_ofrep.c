/*
 * fuzz_ofrep — the OFREP view of the flags (flags/ofrep.c on cJSON, flags/flags.c).
 *
 * Input: "<flag key>\n<request body>" (no newline: the whole input is the body
 * and the key is "use_new_provider"). The same body is evaluated for the key,
 * for a known flag and in bulk, as POST /ofrep/v1/evaluate/flags[/{key}] would.
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - the status is 200, 400 or 404 and the answer is a JSON object;
 *   - a 200 for a flag names that flag, a variant and a boolean value that agree;
 *   - the split is the documented bucketing: new iff bucket < percentage.
 */
#include "ofrep.h"

#include <cjson/cJSON.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_FLAGS = 4 };
static const flag_def_t *flags[N_FLAGS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* DESIGN.md §5 check values */
    FUZZ_CHECK(flags_murmur3_32("", 0, 0) == 0);
    FUZZ_CHECK(flags_murmur3_32("hello", 5, 0) == 0x248bfa47u);

    flag_def_t *split = flags_def_new("use_new_provider");
    flag_def_t *scoped = flags_def_new("cheap_models");
    flag_def_t *off = flags_def_new("kill_switch");
    FUZZ_CHECK(split && scoped && off);
    split->percentage_bp = 2500;
    FUZZ_CHECK(flags_def_add_sticky(split, "header:x-user-id") == 0);
    FUZZ_CHECK(flags_def_add_sticky(split, "body:user") == 0);
    FUZZ_CHECK(flags_def_add_match(&split->deny, &split->n_deny, "blocked") == 0);
    FUZZ_CHECK(flags_def_add_match(&split->allow, &split->n_allow, "vip-*") == 0);
    scoped->percentage_bp = 10000;
    scoped->unkeyed = FLAG_UNKEYED_NEW;
    FUZZ_CHECK(flags_def_add_match(&scoped->models, &scoped->n_models, "gpt-4o-mini*") == 0);
    FUZZ_CHECK(flags_def_add_match(&scoped->models, &scoped->n_models, "claude-sonnet-4.5") == 0);
    off->percentage_bp = 5000;
    off->disabled = 1;
    flags[0] = split;
    flags[1] = scoped;
    flags[2] = NULL; /* a hole in the table is skipped */
    flags[3] = off;
    return 0;
}

static void check_answer(int status, char *out, const char *key)
{
    FUZZ_CHECK(status == 200 || status == 400 || status == 404);
    FUZZ_CHECK(out != NULL);
    cJSON *doc = cJSON_Parse(out);
    FUZZ_CHECK(cJSON_IsObject(doc));
    if (status != 200) {
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "errorCode")));
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "errorDetails")));
    } else if (key != NULL) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(doc, "key");
        const cJSON *variant = cJSON_GetObjectItemCaseSensitive(doc, "variant");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(doc, "value");
        FUZZ_CHECK(cJSON_IsString(k) && strcmp(k->valuestring, key) == 0);
        FUZZ_CHECK(cJSON_IsString(variant) && cJSON_IsBool(value));
        FUZZ_CHECK((strcmp(variant->valuestring, "new") == 0) == cJSON_IsTrue(value));
    } else {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "flags");
        FUZZ_CHECK(cJSON_IsArray(list) && cJSON_GetArraySize(list) == N_FLAGS - 1);
    }
    cJSON_Delete(doc);
    free(out);
}

static void check_split(const char *tk, size_t len)
{
    /* the bucketing definition on the raw key bytes, monotonic in the percentage */
    if (len == 0)
        return; /* unkeyed: the policy decides, not the bucket */
    flag_def_t d;
    memset(&d, 0, sizeof d);
    d.key = (char *)"use_new_provider";
    uint32_t b = flags_bucket(d.key, tk, len);
    FUZZ_CHECK(b < 10000);
    d.percentage_bp = b;
    flag_result_t r = flags_eval(&d, tk, len, NULL, 0);
    FUZZ_CHECK(r.variant == FLAG_VARIANT_ORIGINAL && r.reason == FLAG_REASON_SPLIT &&
               r.bucket == b);
    d.percentage_bp = b + 1;
    r = flags_eval(&d, tk, len, NULL, 0);
    FUZZ_CHECK(r.variant == FLAG_VARIANT_NEW);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 128 ? size : 128);
    char *key;
    const uint8_t *body = data;
    size_t body_len = size;
    if (nl != NULL) {
        key = fuzz_cstr(data, (size_t)(nl - data)); /* may hold a NUL: a C string then */
        body = nl + 1;
        body_len = size - (size_t)(nl - data) - 1;
    } else {
        key = fuzz_cstr((const uint8_t *)"use_new_provider", 16);
    }
    /* exact-size body: the module copies it before parsing and must not over-read */
    char *b = fuzz_dup(body, body_len);
    char *out = NULL;
    int st = ofrep_evaluate_one(flags, N_FLAGS, key, b, body_len, &out);
    check_answer(st, out, key);
    st = ofrep_evaluate_one(flags, N_FLAGS, "cheap_models", b, body_len, &out);
    check_answer(st, out, "cheap_models");
    st = ofrep_evaluate_one(flags, N_FLAGS, NULL, b, body_len, &out);
    FUZZ_CHECK(st != 200);
    check_answer(st, out, NULL);
    st = ofrep_evaluate_bulk(flags, N_FLAGS, b, body_len, &out);
    check_answer(st, out, NULL);
    check_split(key, strlen(key));
    check_split(b, body_len < 64 ? body_len : 64);
    free(b);
    free(key);
    return 0;
}
