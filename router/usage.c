/* usage — token accounting helpers. See usage.h. */
#include "usage.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"

const char *usage_source_name(usage_source_t s)
{
    return s == USAGE_UPSTREAM ? "upstream" : s == USAGE_ESTIMATED ? "estimated" : "none";
}

static cJSON *parse_copy(const char *json, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, json, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLength(copy, len + 1);
    free(copy);
    return root;
}

static long num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    /* A provider's number is untrusted: out of range (or infinite) is no number. */
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9.0e15
               ? (long)v->valuedouble
               : -1;
}

static int read_usage(const cJSON *usage, usage_t *u)
{
    if (!cJSON_IsObject(usage))
        return -1;
    long in = num(usage, "prompt_tokens"), out = num(usage, "completion_tokens");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
    if (in < 0) { /* Responses API names */
        in = num(usage, "input_tokens");
        out = num(usage, "output_tokens");
        details = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens_details");
    }
    if (in < 0)
        return -1;
    long cached = cJSON_IsObject(details) ? num(details, "cached_tokens") : -1;
    u->prompt = in;
    u->completion = out < 0 ? 0 : out;
    u->cached = cached < 0 ? 0 : (cached > in ? in : cached);
    u->source = USAGE_UPSTREAM;
    return 0;
}

/* The whole body as a tree: the reference, and the way when the scan is unsure. */
static int usage_from_tree(const char *json, size_t len, usage_t *u)
{
    cJSON *root = parse_copy(json, len);
    if (!root)
        return -1;
    int rc = read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), u);
    if (rc < 0) {
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(root, "response");
        if (cJSON_IsObject(resp))
            rc = read_usage(cJSON_GetObjectItemCaseSensitive(resp, "usage"), u);
    }
    cJSON_Delete(root);
    return rc;
}

/* A member that is a plain non-negative integer (what providers send): 1 with *v set
 * (-1 when absent), 0 when unsure (a fraction, an exponent, a sign, another type, an
 * escaped key): then cJSON decides, with num()'s rules. */
static int fast_num(const char *o, size_t n, const char *key, long *v)
{
    size_t off, len;
    int r = jsonscan_member(o, n, key, &off, &len);
    if (r == JSONSCAN_UNSURE)
        return 0;
    if (r == JSONSCAN_ABSENT) {
        *v = -1;
        return 1;
    }
    if (len == 0 || len > 15) /* 15 digits stay below num()'s 9e15 bound */
        return 0;
    long x = 0;
    for (size_t i = 0; i < len; i++) {
        char c = o[off + i];
        if (c < '0' || c > '9')
            return 0;
        x = x * 10 + (c - '0');
    }
    *v = x;
    return 1;
}

/* cached_tokens of the details member named `key`: 1 with *v set, 0 when unsure. */
static int fast_cached(const char *o, size_t n, const char *key, long *v)
{
    size_t off, len;
    int r = jsonscan_member(o, n, key, &off, &len);
    if (r == JSONSCAN_UNSURE)
        return 0;
    if (r == JSONSCAN_ABSENT || o[off] != '{') {
        /* absent, or not an object: no cached count (an object that is not well formed
         * is caught by the scan below returning unsure) */
        if (r == JSONSCAN_FOUND && (o[off] == '[' || o[off] == '"'))
            return 0;
        *v = -1;
        return 1;
    }
    return fast_num(o + off, len, "cached_tokens", v);
}

/* read_usage on the text of a usage value, without a tree: 1 = done (*rc set), 0 =
 * unsure. */
static int read_usage_fast(const char *o, size_t n, usage_t *u, int *rc)
{
    if (n == 0 || o[0] != '{')
        return 0;
    long in, out, cached;
    const char *details = "prompt_tokens_details";
    if (!fast_num(o, n, "prompt_tokens", &in) || !fast_num(o, n, "completion_tokens", &out))
        return 0;
    if (in < 0) { /* Responses API names */
        if (!fast_num(o, n, "input_tokens", &in) || !fast_num(o, n, "output_tokens", &out))
            return 0;
        details = "input_tokens_details";
    }
    if (in < 0) {
        *rc = -1;
        return 1;
    }
    if (!fast_cached(o, n, details, &cached))
        return 0;
    u->prompt = in;
    u->completion = out < 0 ? 0 : out;
    u->cached = cached < 0 ? 0 : (cached > in ? in : cached);
    u->source = USAGE_UPSTREAM;
    *rc = 0;
    return 1;
}

/* `usage` (or `response.usage`) of the object at json, parsing only that value.
 * 1 = unsure (the caller parses the whole body). */
static int usage_by_scan(const char *json, size_t len, usage_t *u, int nested)
{
    size_t off, vlen;
    int r = jsonscan_member(json, len, "usage", &off, &vlen);
    if (r == JSONSCAN_UNSURE)
        return 1;
    int rc = -1;
    if (r == JSONSCAN_FOUND && !read_usage_fast(json + off, vlen, u, &rc)) {
        cJSON *v = parse_copy(json + off, vlen);
        rc = read_usage(v, u);
        cJSON_Delete(v);
    }
    if (rc == 0 || nested)
        return rc;
    r = jsonscan_member(json, len, "response", &off, &vlen);
    if (r == JSONSCAN_UNSURE)
        return 1;
    if (r == JSONSCAN_ABSENT || json[off] != '{')
        return -1;
    return usage_by_scan(json + off, vlen, u, 1);
}

int usage_from_json(const char *json, size_t len, usage_t *u)
{
    int rc = usage_by_scan(json, len, u, 0);
    return rc == 1 ? usage_from_tree(json, len, u) : rc;
}

#ifdef SWITCHYARD_FUZZ
int usage_from_json_reference(const char *json, size_t len, usage_t *u)
{
    return usage_from_tree(json, len, u);
}
#endif

/* From the first `"usage":` at or after p: 1 when one of them opens an object. */
static int usage_object_from(const char *p, const char *end)
{
    static const char key[] = "\"usage\":";
    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1))) {
        p += sizeof(key) - 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p == '{')
            return 1;
    }
    return 0;
}

int usage_event_has_usage(const char *data, size_t len)
{
    return usage_object_from(data, data + len);
}

/* The walk usage_strip_event must agree with (usage.h). */
long usage_strip_event_reference(char *event, size_t len)
{
    static const char key[] = "\"usage\":";
    static const char member[] = ",\"usage\":null";
    /* One search finds both: no `"usage":` at all (most events of most streams) means no
     * usage object and nothing to strip. */
    char *first = memmem(event, len, key, sizeof(key) - 1);
    if (!first)
        return (long)len;
    if (usage_object_from(first, event + len))
        return -1;
    size_t n = len;
    char *p = first > event ? first - 1 : event; /* a member starts at its comma */
    while ((p = memmem(p, n - (size_t)(p - event), member, sizeof(member) - 1))) {
        size_t tail = n - (size_t)(p - event) - (sizeof(member) - 1);
        memmove(p, p + sizeof(member) - 1, tail);
        n -= sizeof(member) - 1;
    }
    return (long)n;
}

/* `,"usage":null` cannot overlap itself (its only comma is its first byte), so the
 * members to take out are exactly the `"usage":` keys with a comma before and `null`
 * right after: one walk over the keys finds them and any usage object. */
long usage_strip_event(char *event, size_t len)
{
    static const char key[] = "\"usage\":";
    enum { KEY = sizeof(key) - 1, MEMBER = KEY + 5, AT_MOST = 8 };
    char *end = event + len;
    char *members[AT_MOST]; /* where each member's comma is */
    size_t n_members = 0;
    int many = 0;
    for (char *k = memmem(event, len, key, KEY); k;
         k = memmem(k + KEY, (size_t)(end - (k + KEY)), key, KEY)) {
        const char *v = k + KEY;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v < end && *v == '{')
            return -1; /* the usage chunk: withheld whole */
        if (k > event && k[-1] == ',' && end - (k + KEY) >= 4 && memcmp(k + KEY, "null", 4) == 0) {
            if (n_members < AT_MOST)
                members[n_members++] = k - 1;
            else
                many = 1;
        }
    }
    if (many) /* more than a chunk ever has: the general walk */
        return usage_strip_event_reference(event, len);
    /* Close the gaps left to right, each run of kept bytes moved once. */
    char *out = n_members ? members[0] : end;
    for (size_t i = 0; i < n_members; i++) {
        char *from = members[i] + MEMBER;
        char *to = i + 1 < n_members ? members[i + 1] : end;
        memmove(out, from, (size_t)(to - from));
        out += to - from;
    }
    return (long)(n_members ? (size_t)(out - event) : len);
}

static int blank(char c)
{
    return (unsigned char)c <= 32; /* what jsonscan and cJSON skip */
}

long usage_strip_object(char *event, size_t len)
{
    /* OpenAI's own usage chunk, compact: no choice, withheld whole without a scan. */
    static const char none[] = "\"choices\":[]";
    const char *c0 = memmem(event, len, none, sizeof(none) - 1);
    if (c0 && c0 > event && c0[-1] != '\\')
        return -1;
    /* The data line: "data:" at the start of a line, the JSON after it, a line end. */
    static const char field[] = "data:";
    char *line = NULL;
    for (char *p = event; p && p < event + len;) {
        if ((size_t)(event + len - p) >= sizeof(field) - 1 &&
            memcmp(p, field, sizeof(field) - 1) == 0) {
            if (line)
                return -1; /* data over several lines: not one chunk to rewrite */
            line = p;
        }
        p = memchr(p, '\n', (size_t)(event + len - p));
        if (p)
            p++;
    }
    if (!line)
        return -1;
    char *data = line + sizeof(field) - 1;
    char *data_end = memchr(data, '\n', (size_t)(event + len - data));
    if (!data_end)
        data_end = event + len;
    size_t dlen = (size_t)(data_end - data);
    size_t coff, clen, uoff, ulen;
    if (jsonscan_member(data, dlen, "choices", &coff, &clen) != JSONSCAN_FOUND ||
        jsonscan_member(data, dlen, "usage", &uoff, &ulen) != JSONSCAN_FOUND)
        return -1;
    const char *c = data + coff, *c_end = c + clen;
    if (*c != '[')
        return -1;
    for (c++; c < c_end && blank(*c); c++)
        ;
    if (c < c_end && *c == ']')
        return -1; /* no choice: the usage chunk itself */
    if (ulen < 2 || data[uoff] != '{')
        return -1;
    /* Back from the value over `"usage"` blank `:` blank to the member's start. */
    char *k = data + uoff;
    for (k--; k > data && blank(*k); k--)
        ;
    if (*k != ':')
        return -1;
    for (k--; k > data && blank(*k); k--)
        ;
    if (k - data < 6 || memcmp(k - 6, "\"usage\"", 7) != 0)
        return -1;
    char *cut = k - 6, *cut_end = data + uoff + ulen;
    char *b = cut - 1;
    while (b > data && blank(*b))
        b--;
    if (*b == ',') {
        cut = b; /* a later member: from its comma */
    } else if (*b == '{') {
        char *a = cut_end; /* the first member: through the comma after it */
        while (a < data_end && blank(*a))
            a++;
        if (a >= data_end || *a != ',')
            return -1; /* the only member: nothing else to pass on */
        for (a++; a < data_end && blank(*a); a++)
            ;
        cut_end = a;
    } else {
        return -1;
    }
    memmove(cut, cut_end, (size_t)(event + len - cut_end));
    return (long)(len - (size_t)(cut_end - cut));
}

static int key_with_text(const char *ev, size_t len, const char *key, size_t klen)
{
    const char *end = ev + len;
    for (const char *k = memmem(ev, len, key, klen); k;
         k = memmem(k + klen, (size_t)(end - (k + klen)), key, klen)) {
        const char *v = k + klen;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v >= end || *v != ':')
            continue;
        for (v++; v < end && (*v == ' ' || *v == '\t');)
            v++;
        if (end - v >= 2 && v[0] == '"' && v[1] != '"')
            return 1;
    }
    return 0;
}

int usage_event_has_content(const char *ev, size_t len, int legacy)
{
    return legacy ? key_with_text(ev, len, "\"text\"", 6)
                  : key_with_text(ev, len, "\"content\"", 9);
}

long usage_content_chars(const char *json, size_t len)
{
    cJSON *root = parse_copy(json, len);
    if (!root)
        return -1;
    long n = -1;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *c;
    cJSON_ArrayForEach(c, choices)
    {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c, "message");
        const cJSON *text = msg ? cJSON_GetObjectItemCaseSensitive(msg, "content")
                                : cJSON_GetObjectItemCaseSensitive(c, "text");
        if (cJSON_IsString(text))
            n = (n < 0 ? 0 : n) + (long)strlen(text->valuestring);
    }
    cJSON_Delete(root);
    return n;
}

long usage_estimate_tokens(size_t bytes)
{
    return bytes == 0 ? 0 : (long)((bytes + 3) / 4);
}
