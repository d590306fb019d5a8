/*
 * fuzz_body — request-body extraction and the model / stream_options splices
 * (router/body.c: a strict one-pass validator, no tree), as router/proxy.c uses them.
 *
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - differential against cJSON (what body.c used before): whatever body.c takes,
 *     cJSON takes too and reads the same model, user, stream, include_usage and
 *     string fields; a body refused for its type or a duplicate key is valid JSON to
 *     cJSON. body.c may refuse JSON that cJSON took (leading zeros, "1.");
 *   - body_json_complete agrees: whole only where cJSON parses one object or array.
 *   - a parsed body's model span lies inside the buffer and is a quoted token;
 *   - the model rewrite gives a body that parses again, with the new model and
 *     the same stream/user fields;
 *   - the usage edit gives a body that parses again with include_usage true and
 *     the same model; both edits applied together (the proxy's order) too.
 */
#include "body.h"

#include "fuzz_common.h"

#include <cjson/cJSON.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A model name that needs escaping (quote, backslash, control, non-ASCII). */
static const char NEW_MODEL[] = "fuzz-\"model\"\\\x01\xc3\xa9";

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Parses out (NUL-terminated at out_len) and checks it against the original info. */
static void reparse(const char *out, size_t out_len, const body_info_t *orig, const char *model,
                    int want_usage)
{
    body_info_t again;
    FUZZ_CHECK(out[out_len] == '\0');
    int rc = body_parse(out, out_len, &again);
    FUZZ_CHECK(rc == BODY_OK);
    FUZZ_CHECK(same_str(again.model, model));
    FUZZ_CHECK(same_str(again.user, orig->user));
    FUZZ_CHECK(again.stream == orig->stream);
    if (want_usage)
        FUZZ_CHECK(again.include_usage == 1);
    else
        FUZZ_CHECK(again.include_usage == orig->include_usage);
    body_info_free(&again);
}

/* cJSON on the same bytes as body.c read them before: any byte below 0x20 but JSON's
 * whitespace refused first (cJSON takes them as space), nothing after the value. */
static cJSON *reference(const char *buf, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (root && (size_t)(end - buf) != size) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static const char *ref_string(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_cstr(data, size);
    body_info_t info;
    int rc = body_parse(buf, size, &info);
    FUZZ_CHECK(rc <= BODY_OK && rc >= BODY_ERR_NOMEM);
    cJSON *ref = reference(buf, size);
    /* body_json_complete (an answer body is whole): what it calls one whole object or
     * array, cJSON parses whole as one too; a body body_parse takes is whole. */
    int whole = body_json_complete(buf, size);
    if (whole)
        FUZZ_CHECK(ref != NULL && (cJSON_IsObject(ref) || cJSON_IsArray(ref)));
    if (rc == BODY_OK)
        FUZZ_CHECK(whole);
    /* cJSON cuts a decoded \u0000 (in keys too); body.c refuses or skips such strings. */
    int has_nul_escape = strstr(buf, "\\u0000") != NULL;
    if (rc == BODY_ERR_NOT_OBJECT || rc == BODY_ERR_TYPE || rc == BODY_ERR_DUPLICATE)
        FUZZ_CHECK(ref != NULL);
    if (rc != BODY_OK) {
        FUZZ_CHECK(info.error != NULL);
        FUZZ_CHECK(info.n_owned == 0);
        body_info_free(&info);
        cJSON_Delete(ref);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(ref != NULL && cJSON_IsObject(ref));
    if (!has_nul_escape) {
        FUZZ_CHECK(same_str(info.model, ref_string(ref, "model")));
        FUZZ_CHECK(same_str(info.user, ref_string(ref, "user")));
        FUZZ_CHECK(info.stream == cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ref, "stream")));
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(ref, "stream_options");
        FUZZ_CHECK(info.has_stream_options == cJSON_IsObject(so));
        if (cJSON_IsObject(so))
            FUZZ_CHECK(info.include_usage ==
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage")));
        FUZZ_CHECK(same_str(body_string_field(&info, "metadata"), ref_string(ref, "metadata")));
        FUZZ_CHECK(same_str(body_string_field(&info, "user"), ref_string(ref, "user")));
    }
    cJSON_Delete(ref);
    FUZZ_CHECK(info.obj_end < size && buf[info.obj_end] == '}');
    if (info.model_len > 0) {
        FUZZ_CHECK(info.model != NULL);
        FUZZ_CHECK(info.model_off + info.model_len <= size && info.model_len >= 2);
        FUZZ_CHECK(buf[info.model_off] == '"' && buf[info.model_off + info.model_len - 1] == '"');
    }
    if (info.has_stream_options)
        FUZZ_CHECK(info.so_len >= 2 && info.so_off + info.so_len <= size &&
                   buf[info.so_off] == '{');
    (void)body_string_field(&info, "model");

    char *model = info.model ? strdup(info.model) : NULL;

    /* 1. the model splice alone */
    size_t out_len = 0;
    char *out = body_rewrite_model(buf, size, &info, NEW_MODEL, &out_len);
    if (info.model_len > 0) {
        FUZZ_CHECK(out != NULL);
        reparse(out, out_len, &info, NEW_MODEL, 0);
    } else {
        FUZZ_CHECK(out == NULL);
    }
    free(out);

    /* 2. the usage edit alone, then 3. both, sorted by offset as proxy.c does */
    body_edit_t ue;
    if (body_usage_edit(&info, &ue)) {
        FUZZ_CHECK(info.stream && !info.include_usage);
        FUZZ_CHECK(ue.off <= size && ue.del == 0 && ue.ins != NULL);
        out = body_apply(buf, size, &ue, 1, &out_len);
        FUZZ_CHECK(out != NULL && out_len == size + ue.ins_len);
        reparse(out, out_len, &info, model, 1);
        free(out);
        if (info.model_len > 0) {
            char *quoted = body_json_string(NEW_MODEL);
            FUZZ_CHECK(quoted != NULL);
            body_edit_t edits[2] = {{info.model_off, info.model_len, quoted, strlen(quoted)}, ue};
            if (edits[0].off > edits[1].off) {
                body_edit_t t = edits[0];
                edits[0] = edits[1];
                edits[1] = t;
            }
            /* not overlapping: the insertion point is never inside the model token */
            FUZZ_CHECK(edits[0].off + edits[0].del <= edits[1].off);
            out = body_apply(buf, size, edits, 2, &out_len);
            FUZZ_CHECK(out != NULL);
            reparse(out, out_len, &info, NEW_MODEL, 1);
            free(out);
            free(quoted);
        }
    }
    free(model);
    body_info_free(&info);
    FUZZ_CHECK(info.n_owned == 0 && info.model == NULL && info.user == NULL);
    free(buf);
    return 0;
}
