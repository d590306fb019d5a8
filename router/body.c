/*
 * body — request body extraction and the model splice. See body.h.
 *
 * cJSON validates and decodes; a small scanner then walks the top-level object
 * of the same bytes to find where the model value sits and to refuse duplicate
 * routing keys (cJSON would take the first, most upstream servers the last:
 * the flag and the upstream must never disagree on the model).
 */
#include "body.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[*i] is '"'; moves *i past the closing quote. */
static int skip_string(const char *s, size_t *i, size_t n)
{
    size_t j = *i + 1;
    while (j < n) {
        if (s[j] == '\\') {
            j += 2;
            continue;
        }
        if (s[j] == '"') {
            *i = j + 1;
            return 0;
        }
        j++;
    }
    return -1;
}

static int skip_value(const char *s, size_t *i, size_t n)
{
    size_t j = *i;
    if (j >= n)
        return -1;
    if (s[j] == '"')
        return skip_string(s, i, n);
    if (s[j] == '{' || s[j] == '[') {
        size_t depth = 0;
        while (j < n) {
            char c = s[j];
            if (c == '"') {
                if (skip_string(s, &j, n) < 0)
                    return -1;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    *i = j + 1;
                    return 0;
                }
            }
            j++;
        }
        return -1;
    }
    while (j < n && !strchr(",}] \t\r\n", s[j]))
        j++;
    if (j == *i)
        return -1;
    *i = j;
    return 0;
}

enum { KEY_OTHER = -1, KEY_MODEL = 0, KEY_STREAM, KEY_USER, KEY_STREAM_OPTIONS, N_KEYS };
static const char *const routing_keys[N_KEYS] = {"model", "stream", "user", "stream_options"};

static int key_id(const char *k, size_t len)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strlen(routing_keys[i]) == len && memcmp(routing_keys[i], k, len) == 0)
            return i;
    return KEY_OTHER;
}

/* Identifies a raw key token (with quotes); decodes escapes through cJSON. */
static int classify_key(const char *tok, size_t len)
{
    if (!memchr(tok, '\\', len))
        return key_id(tok + 1, len - 2);
    char *copy = malloc(len + 1);
    if (!copy)
        return KEY_OTHER;
    memcpy(copy, tok, len);
    copy[len] = '\0';
    cJSON *str = cJSON_Parse(copy);
    free(copy);
    int id = KEY_OTHER;
    if (cJSON_IsString(str))
        id = key_id(str->valuestring, strlen(str->valuestring));
    cJSON_Delete(str);
    return id;
}

static int scan_top_level(const char *s, size_t n, body_info_t *info)
{
    int seen[N_KEYS] = {0};
    size_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{')
        return BODY_ERR_NOT_OBJECT;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') {
        info->obj_end = i;
        return BODY_OK;
    }
    while (i < n) {
        size_t kstart = i;
        if (s[i] != '"' || skip_string(s, &i, n) < 0)
            return BODY_ERR_JSON;
        int id = classify_key(s + kstart, i - kstart);
        i = skip_ws(s, i, n);
        if (i >= n || s[i] != ':')
            return BODY_ERR_JSON;
        i = skip_ws(s, i + 1, n);
        size_t vstart = i;
        if (skip_value(s, &i, n) < 0)
            return BODY_ERR_JSON;
        if (id != KEY_OTHER && seen[id]++) {
            info->error = "duplicate key in request body (model, stream, user or stream_options)";
            return BODY_ERR_DUPLICATE;
        }
        if (id == KEY_MODEL) {
            info->model_off = vstart;
            info->model_len = i - vstart;
        }
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            continue;
        }
        if (i < n && s[i] == '}') {
            info->obj_end = i;
            return BODY_OK;
        }
        return BODY_ERR_JSON;
    }
    return BODY_ERR_JSON;
}

int body_parse(const char *buf, size_t len, body_info_t *info)
{
    memset(info, 0, sizeof(*info));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (!root || (size_t)(end - buf) != len) {
        cJSON_Delete(root);
        info->error = "We could not parse the JSON body of your request. The OpenAI API expects "
                      "a JSON payload.";
        return BODY_ERR_JSON;
    }
    info->root = root;
    if (!cJSON_IsObject(root)) {
        info->error = "The request body must be a JSON object.";
        body_info_free(info);
        return BODY_ERR_NOT_OBJECT;
    }
    int rc = scan_top_level(buf, len, info);
    if (rc != BODY_OK) {
        if (!info->error)
            info->error = "We could not parse the JSON body of your request.";
        body_info_free(info);
        return rc;
    }

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "user");
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if ((model && !cJSON_IsString(model)) || (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) ||
        (user && !cJSON_IsString(user) && !cJSON_IsNull(user))) {
        info->error = "Invalid type for `model`, `stream` or `user`.";
        body_info_free(info);
        return BODY_ERR_TYPE;
    }
    if (!cJSON_IsString(model))
        info->model_len = 0;
    info->model = model ? model->valuestring : NULL;
    info->user = cJSON_IsString(user) ? user->valuestring : NULL;
    info->stream = cJSON_IsTrue(stream);
    if (cJSON_IsObject(so)) {
        info->has_stream_options = 1;
        info->include_usage =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    }
    return BODY_OK;
}

const char *body_string_field(const body_info_t *info, const char *name)
{
    if (!info->root)
        return NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(info->root, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

void body_info_free(body_info_t *info)
{
    cJSON_Delete(info->root);
    info->root = NULL;
    info->model = NULL;
    info->user = NULL;
}

char *body_rewrite_model(const char *buf, size_t len, const body_info_t *info,
                         const char *new_model, size_t *out_len)
{
    if (info->model_len == 0)
        return NULL;
    cJSON *str = cJSON_CreateString(new_model);
    char *quoted = str ? cJSON_PrintUnformatted(str) : NULL;
    cJSON_Delete(str);
    if (!quoted)
        return NULL;
    size_t qlen = strlen(quoted);
    size_t n = len - info->model_len + qlen;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, buf, info->model_off);
        memcpy(out + info->model_off, quoted, qlen);
        memcpy(out + info->model_off + qlen, buf + info->model_off + info->model_len,
               len - info->model_off - info->model_len);
        out[n] = '\0';
        *out_len = n;
    }
    free(quoted);
    return out;
}
