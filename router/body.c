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
        } else if (id == KEY_STREAM_OPTIONS) {
            info->so_off = vstart;
            info->so_len = i - vstart;
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
    /* JSON allows only space, tab, CR and LF between tokens, and no raw control byte in
     * strings; cJSON is laxer (any byte up to 0x20 is space to it). Refusing them keeps
     * cJSON and the scanner below reading the same structure. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            info->error = "The request body contains a control character outside JSON's "
                          "whitespace.";
            return BODY_ERR_JSON;
        }
    }
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
        info->so_empty = cJSON_GetArraySize(so) == 0;
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
        info->include_usage = cJSON_IsTrue(iu);
        info->include_usage_false = iu && !cJSON_IsTrue(iu);
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

char *body_json_string(const char *s)
{
    cJSON *str = cJSON_CreateString(s);
    char *quoted = str ? cJSON_PrintUnformatted(str) : NULL;
    cJSON_Delete(str);
    return quoted;
}

char *body_apply(const char *buf, size_t len, const body_edit_t *edits, size_t n, size_t *out_len)
{
    size_t total = len;
    for (size_t i = 0; i < n; i++)
        total = total - edits[i].del + edits[i].ins_len;
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    size_t from = 0, to = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + to, buf + from, edits[i].off - from);
        to += edits[i].off - from;
        memcpy(out + to, edits[i].ins, edits[i].ins_len);
        to += edits[i].ins_len;
        from = edits[i].off + edits[i].del;
    }
    memcpy(out + to, buf + from, len - from);
    to += len - from;
    out[to] = '\0';
    *out_len = to;
    return out;
}

int body_usage_edit(const body_info_t *info, body_edit_t *edit)
{
    static const char add_key[] = ",\"stream_options\":{\"include_usage\":true}";
    static const char add_first[] = "\"include_usage\":true,";
    static const char add_only[] = "\"include_usage\":true";
    if (!info->stream || info->include_usage || info->include_usage_false)
        return 0;
    if (!info->has_stream_options) {
        if (info->obj_end == 0 || info->so_len > 0) /* stream_options: null stays as sent */
            return 0;
        /* The object has a key at least (stream), so a comma always fits. */
        *edit = (body_edit_t){info->obj_end, 0, add_key, sizeof(add_key) - 1};
        return 1;
    }
    if (info->so_len < 2)
        return 0;
    /* stream_options is an object without include_usage: add it first. */
    size_t inner = info->so_off + 1;
    int empty = info->so_empty;
    *edit = empty ? (body_edit_t){inner, 0, add_only, sizeof(add_only) - 1}
                  : (body_edit_t){inner, 0, add_first, sizeof(add_first) - 1};
    return 1;
}

char *body_rewrite_model(const char *buf, size_t len, const body_info_t *info,
                         const char *new_model, size_t *out_len)
{
    if (info->model_len == 0)
        return NULL;
    char *quoted = body_json_string(new_model);
    if (!quoted)
        return NULL;
    body_edit_t e = {info->model_off, info->model_len, quoted, strlen(quoted)};
    char *out = body_apply(buf, len, &e, 1, out_len);
    free(quoted);
    return out;
}
