/*
 * ofrep.c — the OpenFeature Remote Evaluation Protocol view of the flags (see ofrep.h).
 *
 * Request bodies are parsed with cJSON from a NUL-terminated copy (1.7.15 can over-read
 * unterminated input). Precedence follows flagd's OFREP handler: the body is validated first
 * (400 PARSE_ERROR / INVALID_CONTEXT), then the flag is looked up (404), then the targeting key
 * is required (400 TARGETING_KEY_MISSING): every evaluation here is keyed, so the unkeyed random
 * policy of flags_eval is never used.
 */
#include "ofrep.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFREP_OK 200
#define OFREP_BAD_REQUEST 400
#define OFREP_NOT_FOUND 404
#define OFREP_INTERNAL 500

typedef enum { CTX_OK = 0, CTX_PARSE_ERROR, CTX_INVALID, CTX_KEY_MISSING, CTX_NOMEM } ctx_status_t;

/* What a request body says; the strings point into `root` and live until ctx_free. */
typedef struct {
    cJSON *root;
    const char *targeting_key;
    const char *model;
    const char *error_details;
} ofrep_ctx_t;

static void ctx_free(ofrep_ctx_t *ctx)
{
    cJSON_Delete(ctx->root);
    ctx->root = NULL;
}

/* Structural checks only; the targeting key is checked separately so that an unknown flag
 * still answers 404 for a well-formed body. */
static ctx_status_t ctx_parse(const char *body, size_t body_len, ofrep_ctx_t *ctx)
{
    const cJSON *context, *item;
    char *copy;

    memset(ctx, 0, sizeof *ctx);
    /* OFREP makes the body optional; flagd treats an empty one as an empty context. */
    if (body == NULL || body_len == 0)
        return CTX_OK;
    /* A NUL inside would hide the rest of the body from the parser. */
    if (memchr(body, '\0', body_len) != NULL) {
        ctx->error_details = "request body is not valid JSON";
        return CTX_PARSE_ERROR;
    }
    copy = malloc(body_len + 1);
    if (copy == NULL)
        return CTX_NOMEM;
    memcpy(copy, body, body_len);
    copy[body_len] = '\0';
    /* require_null_terminated rejects trailing garbage such as `{} x`. */
    ctx->root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (ctx->root == NULL) {
        ctx->error_details = "request body is not valid JSON";
        return CTX_PARSE_ERROR;
    }
    if (!cJSON_IsObject(ctx->root)) {
        ctx->error_details = "request body must be a JSON object";
        return CTX_INVALID;
    }
    context = cJSON_GetObjectItemCaseSensitive(ctx->root, "context");
    if (context == NULL)
        return CTX_OK;
    if (!cJSON_IsObject(context)) {
        ctx->error_details = "`context` must be a JSON object";
        return CTX_INVALID;
    }
    item = cJSON_GetObjectItemCaseSensitive(context, "model");
    if (item != NULL && !cJSON_IsNull(item)) {
        if (!cJSON_IsString(item)) {
            ctx->error_details = "`context.model` must be a string";
            return CTX_INVALID;
        }
        ctx->model = item->valuestring;
    }
    item = cJSON_GetObjectItemCaseSensitive(context, "targetingKey");
    if (cJSON_IsString(item) && item->valuestring[0] != '\0')
        ctx->targeting_key = item->valuestring;
    return CTX_OK;
}

static const char *ctx_error_code(ctx_status_t st)
{
    switch (st) {
    case CTX_PARSE_ERROR:
        return "PARSE_ERROR";
    case CTX_INVALID:
        return "INVALID_CONTEXT";
    case CTX_KEY_MISSING:
        return "TARGETING_KEY_MISSING";
    case CTX_OK:
    case CTX_NOMEM:
        break;
    }
    return "GENERAL";
}

static const char *const key_missing_details = "`context.targetingKey` must be a non-empty string";

/* Prints and deletes doc; returns status, or 500 with *out = NULL when anything failed. */
static int finish(cJSON *doc, int ok, int status, char **out)
{
    *out = NULL;
    if (doc != NULL && ok)
        *out = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return *out != NULL ? status : OFREP_INTERNAL;
}

/* {["key":K,]"errorCode":C,"errorDetails":D}; key NULL for bulk failures. */
static int reply_error(int status, const char *key, const char *code, const char *details,
                       char **out)
{
    cJSON *doc = cJSON_CreateObject();
    int ok = doc != NULL;

    if (ok && key != NULL)
        ok = cJSON_AddStringToObject(doc, "key", key) != NULL;
    ok = ok && cJSON_AddStringToObject(doc, "errorCode", code) != NULL;
    ok = ok && cJSON_AddStringToObject(doc, "errorDetails", details) != NULL;
    return finish(doc, ok, status, out);
}

static cJSON *success_entry(const flag_def_t *def, const ofrep_ctx_t *ctx)
{
    const char *key = ctx->targeting_key;
    flag_result_t r = flags_eval(def, key, strlen(key), ctx->model, 0);
    cJSON *entry = cJSON_CreateObject();
    cJSON *metadata;
    int ok = entry != NULL;

    ok = ok && cJSON_AddStringToObject(entry, "key", def->key) != NULL;
    ok = ok && cJSON_AddStringToObject(entry, "reason", flags_reason_name(r.reason)) != NULL;
    ok = ok && cJSON_AddStringToObject(entry, "variant", flags_variant_name(r.variant)) != NULL;
    ok = ok && cJSON_AddBoolToObject(entry, "value", r.variant == FLAG_VARIANT_NEW) != NULL;
    metadata = ok ? cJSON_AddObjectToObject(entry, "metadata") : NULL;
    ok = metadata != NULL;
    if (ok && r.reason == FLAG_REASON_SPLIT)
        ok = cJSON_AddNumberToObject(metadata, "bucket", (double)r.bucket) != NULL;
    if (!ok) {
        cJSON_Delete(entry);
        return NULL;
    }
    return entry;
}

static const flag_def_t *find_flag(const flag_def_t *const *flags, size_t n_flags, const char *key)
{
    for (size_t i = 0; i < n_flags; i++) {
        if (flags[i] != NULL && strcmp(flags[i]->key, key) == 0)
            return flags[i];
    }
    return NULL;
}

int ofrep_evaluate_one(const flag_def_t *const *flags, size_t n_flags, const char *key,
                       const char *body, size_t body_len, char **out)
{
    const flag_def_t *def;
    ofrep_ctx_t ctx;
    ctx_status_t st;
    int status;

    *out = NULL;
    if (key == NULL)
        key = "";
    st = ctx_parse(body, body_len, &ctx);
    if (st == CTX_NOMEM) {
        status = OFREP_INTERNAL;
    } else if (st != CTX_OK) {
        status = reply_error(OFREP_BAD_REQUEST, key, ctx_error_code(st), ctx.error_details, out);
    } else if ((def = find_flag(flags, n_flags, key)) == NULL) {
        size_t len = strlen(key) + sizeof "flag `` is not defined";
        char *details = malloc(len);

        if (details == NULL) {
            status = OFREP_INTERNAL;
        } else {
            snprintf(details, len, "flag `%s` is not defined", key);
            status = reply_error(OFREP_NOT_FOUND, key, "FLAG_NOT_FOUND", details, out);
            free(details);
        }
    } else if (ctx.targeting_key == NULL) {
        status = reply_error(OFREP_BAD_REQUEST, key, ctx_error_code(CTX_KEY_MISSING),
                             key_missing_details, out);
    } else {
        cJSON *entry = success_entry(def, &ctx);

        status = finish(entry, entry != NULL, OFREP_OK, out);
    }
    ctx_free(&ctx);
    return status;
}

int ofrep_evaluate_bulk(const flag_def_t *const *flags, size_t n_flags, const char *body,
                        size_t body_len, char **out)
{
    ofrep_ctx_t ctx;
    ctx_status_t st;
    cJSON *doc, *list;
    int ok, status;

    *out = NULL;
    st = ctx_parse(body, body_len, &ctx);
    if (st == CTX_OK && ctx.targeting_key == NULL) {
        st = CTX_KEY_MISSING;
        ctx.error_details = key_missing_details;
    }
    if (st == CTX_NOMEM) {
        ctx_free(&ctx);
        return OFREP_INTERNAL;
    }
    if (st != CTX_OK) {
        status = reply_error(OFREP_BAD_REQUEST, NULL, ctx_error_code(st), ctx.error_details, out);
        ctx_free(&ctx);
        return status;
    }
    doc = cJSON_CreateObject();
    list = doc != NULL ? cJSON_AddArrayToObject(doc, "flags") : NULL;
    ok = list != NULL;
    for (size_t i = 0; ok && i < n_flags; i++) {
        cJSON *entry;

        if (flags[i] == NULL)
            continue;
        entry = success_entry(flags[i], &ctx);
        ok = entry != NULL && cJSON_AddItemToArray(list, entry);
        if (!ok)
            cJSON_Delete(entry);
    }
    status = finish(doc, ok, OFREP_OK, out);
    ctx_free(&ctx);
    return status;
}
