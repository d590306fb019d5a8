/*
 * body — request body extraction and the model splice. See body.h.
 *
 * One strict validating pass (RFC 8259, no tree: a cJSON tree of every request
 * body was ~6% of a worker's instructions), then a small scanner walks the
 * top-level object of the same bytes to find where the model value sits and to refuse duplicate
 * routing keys (cJSON would take the first, most upstream servers the last:
 * the flag and the upstream must never disagree on the model).
 */
#include "body.h"

#include <cjson/cJSON.h> /* body_json_string only */
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

static char *decode_string(const char *tok, size_t len, int *has_nul);

/* Identifies a raw key token (with quotes), escapes decoded: "mod\u0065l" is model. */
static int classify_key(const char *tok, size_t len)
{
    if (!memchr(tok, '\\', len))
        return key_id(tok + 1, len - 2);
    int nul;
    char *k = decode_string(tok, len, &nul);
    int id = k && !nul ? key_id(k, strlen(k)) : KEY_OTHER;
    free(k);
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
        } else if (id == KEY_USER) {
            info->user_off = vstart;
            info->user_len = i - vstart;
        } else if (id == KEY_STREAM) {
            info->stream_off = vstart;
            info->stream_len = i - vstart;
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

/* ---- validation: RFC 8259, one pass, no tree ------------------------------------ */

#define MAX_DEPTH 1000 /* cJSON's nesting limit, so nothing it took is refused for depth */

static int hex4(const unsigned char *s, size_t i, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (i + 4 > n)
        return 0;
    for (size_t k = i; k < i + 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* s[*i] == '"'. No raw control byte; escapes as JSON has them; a \u surrogate must be
 * a high one followed by a low one (cJSON refuses a lone one, and so do we). */
static int valid_string(const unsigned char *s, size_t *i, size_t n)
{
    size_t j = *i + 1;
    while (j < n) {
        unsigned char c = s[j];
        if (c == '"') {
            *i = j + 1;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c != '\\') {
            j++;
            continue;
        }
        if (j + 1 >= n)
            return 0;
        c = s[j + 1];
        if (c != 'u') {
            if (!strchr("\"\\/bfnrt", c) || c == '\0')
                return 0;
            j += 2;
            continue;
        }
        unsigned u;
        if (!hex4(s, j + 2, n, &u))
            return 0;
        j += 6;
        if (u >= 0xdc00 && u <= 0xdfff)
            return 0;
        if (u >= 0xd800 && u <= 0xdbff) {
            unsigned lo;
            if (j + 1 >= n || s[j] != '\\' || s[j + 1] != 'u' || !hex4(s, j + 2, n, &lo) ||
                lo < 0xdc00 || lo > 0xdfff)
                return 0;
            j += 6;
        }
    }
    return 0;
}

static int valid_number(const unsigned char *s, size_t *i, size_t n)
{
    size_t j = *i;
    if (j < n && s[j] == '-')
        j++;
    if (j >= n)
        return 0;
    if (s[j] == '0') {
        j++;
    } else if (s[j] >= '1' && s[j] <= '9') {
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
    } else {
        return 0;
    }
    if (j < n && s[j] == '.') {
        size_t d = ++j;
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
        if (j == d)
            return 0;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t d = j;
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
        if (j == d)
            return 0;
    }
    *i = j;
    return 1;
}

/* A member's key and its ':' at s[*i] (after whitespace); leaves *i at the value. */
static int valid_key(const unsigned char *s, size_t *i, size_t n)
{
    if (*i >= n || s[*i] != '"' || !valid_string(s, i, n))
        return 0;
    *i = skip_ws((const char *)s, *i, n);
    if (*i >= n || s[*i] != ':')
        return 0;
    *i = skip_ws((const char *)s, *i + 1, n);
    return 1;
}

/* The whole of s[0..n) is one JSON value with optional whitespace around it. */
static int json_valid(const unsigned char *s, size_t n)
{
    unsigned char stack[MAX_DEPTH]; /* '{' or '[' per open level */
    size_t depth = 0;
    size_t i = skip_ws((const char *)s, 0, n);
    for (;;) {
        if (i >= n)
            return 0;
        unsigned char c = s[i];
        int closed = 0; /* a value ended at i */
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return 0;
            stack[depth++] = c;
            i = skip_ws((const char *)s, i + 1, n);
            if (i < n && s[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                closed = 1;
            } else if (c == '{' && !valid_key(s, &i, n)) {
                return 0;
            }
            if (!closed)
                continue;
        } else if (c == '"') {
            if (!valid_string(s, &i, n))
                return 0;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (!valid_number(s, &i, n))
                return 0;
        } else if (n - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            i += 4;
        } else if (n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            i += 5;
        } else if (n - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            i += 4;
        } else {
            return 0;
        }
        /* After a value: the end, a comma, or closing brackets. */
        for (;;) {
            i = skip_ws((const char *)s, i, n);
            if (depth == 0)
                return i == n;
            if (i >= n)
                return 0;
            unsigned char open = stack[depth - 1];
            if (s[i] == ',') {
                i = skip_ws((const char *)s, i + 1, n);
                if (open == '{' && !valid_key(s, &i, n))
                    return 0;
                break;
            }
            if (s[i] != (open == '{' ? '}' : ']'))
                return 0;
            depth--;
            i++;
        }
    }
}

/* ---- decoding one string token ------------------------------------------------ */

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The value of a validated string token tok[0..len) (with its quotes), malloc'd and
 * NUL-terminated. *has_nul: it decodes to a NUL somewhere (\u0000), which a C string
 * cannot carry. NULL on allocation failure. */
static char *decode_string(const char *tok, size_t len, int *has_nul)
{
    const unsigned char *s = (const unsigned char *)tok;
    char *out = malloc(len); /* decoding never grows: "\u00e9" (6) -> 2 bytes */
    size_t o = 0;
    *has_nul = 0;
    if (!out)
        return NULL;
    for (size_t i = 1; i + 1 < len;) {
        if (s[i] != '\\') {
            out[o++] = (char)s[i++];
            continue;
        }
        unsigned char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0, lo = 0;
            hex4(s, i, len, &cp);
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                hex4(s, i + 2, len, &lo);
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                *has_nul = 1;
            o += put_utf8(out + o, cp);
            break;
        }
        default: out[o++] = (char)e; break; /* " \ / */
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- members ------------------------------------------------------------------ */

/* Whether the key token tok[0..len) (with quotes) decodes to name. */
static int key_is(const char *tok, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (!memchr(tok, '\\', len))
        return len == nl + 2 && memcmp(tok + 1, name, nl) == 0;
    int nul;
    char *k = decode_string(tok, len, &nul);
    int same = k && !nul && strcmp(k, name) == 0;
    free(k);
    return same;
}

/* The first member `name` of the (validated) object at s[off..off+len): its value span. */
static int find_member(const char *s, size_t off, size_t len, const char *name, size_t *voff,
                       size_t *vlen)
{
    size_t n = off + len, i = skip_ws(s, off + 1, n);
    while (i < n && s[i] == '"') {
        size_t k = i;
        if (skip_string(s, &i, n) < 0)
            return 0;
        size_t klen = i - k;
        i = skip_ws(s, i, n) + 1; /* ':' */
        i = skip_ws(s, i, n);
        size_t v = i;
        if (skip_value(s, &i, n) < 0)
            return 0;
        if (key_is(s + k, klen, name)) {
            *voff = v;
            *vlen = i - v;
            return 1;
        }
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',')
            i = skip_ws(s, i + 1, n);
    }
    return 0;
}

static int token_is(const char *s, size_t off, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s + off, lit, len) == 0;
}

/* Decodes a string value into an owned slot; NULL (and *bad) for a string with a NUL. */
static const char *own_string(body_info_t *info, const char *s, size_t off, size_t len, int *bad)
{
    int nul;
    *bad = 0;
    if (info->n_owned == BODY_MAX_OWNED)
        return NULL;
    char *v = decode_string(s + off, len, &nul);
    if (!v) {
        *bad = -1;
        return NULL;
    }
    if (nul) {
        free(v);
        *bad = 1;
        return NULL;
    }
    info->owned[info->n_owned++] = v;
    return v;
}

int body_json_complete(const char *buf, size_t len)
{
    size_t i = skip_ws(buf, 0, len);
    return i < len && (buf[i] == '{' || buf[i] == '[') &&
           json_valid((const unsigned char *)buf, len);
}

int body_parse(const char *buf, size_t len, body_info_t *info)
{
    memset(info, 0, sizeof(*info));
    /* Strict JSON: only space, tab, CR and LF between tokens, no raw control byte in a
     * string, numbers and escapes as RFC 8259 writes them. */
    if (!json_valid((const unsigned char *)buf, len)) {
        info->error = "We could not parse the JSON body of your request. The OpenAI API expects "
                      "a JSON payload.";
        return BODY_ERR_JSON;
    }
    int rc = scan_top_level(buf, len, info);
    if (rc != BODY_OK) {
        if (rc == BODY_ERR_NOT_OBJECT)
            info->error = "The request body must be a JSON object.";
        else if (!info->error)
            info->error = "We could not parse the JSON body of your request.";
        body_info_free(info);
        return rc;
    }
    info->buf = buf;
    info->len = len;

    const char *type_error = "Invalid type for `model`, `stream` or `user`.";
    int bad = 0;
    if (info->model_len > 0) {
        if (buf[info->model_off] != '"') {
            info->error = type_error;
            body_info_free(info);
            return BODY_ERR_TYPE;
        }
        info->model = own_string(info, buf, info->model_off, info->model_len, &bad);
    }
    if (!bad && info->user_len > 0) {
        if (buf[info->user_off] == '"')
            info->user = own_string(info, buf, info->user_off, info->user_len, &bad);
        else if (!token_is(buf, info->user_off, info->user_len, "null"))
            bad = 2;
    }
    if (bad < 0) {
        info->error = "out of memory";
        body_info_free(info);
        return BODY_ERR_NOMEM;
    }
    if (bad > 0) {
        info->error = bad == 1 ? "`model` and `user` must not contain a NUL character (\\u0000)."
                               : type_error;
        body_info_free(info);
        return BODY_ERR_TYPE;
    }
    if (info->stream_len > 0) {
        if (token_is(buf, info->stream_off, info->stream_len, "true"))
            info->stream = 1;
        else if (!token_is(buf, info->stream_off, info->stream_len, "false") &&
                 !token_is(buf, info->stream_off, info->stream_len, "null")) {
            info->error = type_error;
            body_info_free(info);
            return BODY_ERR_TYPE;
        }
    }
    if (info->so_len > 0 && buf[info->so_off] == '{') {
        info->has_stream_options = 1;
        info->so_empty = buf[skip_ws(buf, info->so_off + 1, len)] == '}';
        size_t iu_off, iu_len;
        if (find_member(buf, info->so_off, info->so_len, "include_usage", &iu_off, &iu_len)) {
            info->include_usage = token_is(buf, iu_off, iu_len, "true");
            info->include_usage_false = !info->include_usage;
        }
    }
    return BODY_OK;
}

const char *body_string_field(body_info_t *info, const char *name)
{
    size_t off, len;
    if (!info->buf)
        return NULL;
    size_t start = skip_ws(info->buf, 0, info->len);
    if (!find_member(info->buf, start, info->obj_end + 1 - start, name, &off, &len) ||
        info->buf[off] != '"')
        return NULL;
    int bad;
    return own_string(info, info->buf, off, len, &bad);
}

void body_info_free(body_info_t *info)
{
    for (size_t i = 0; i < info->n_owned; i++)
        free(info->owned[i]);
    info->n_owned = 0;
    info->model = NULL;
    info->user = NULL;
    info->buf = NULL;
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
