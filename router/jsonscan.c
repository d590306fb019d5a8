/* jsonscan: one member of a JSON object, without a tree (see jsonscan.h). */
#include "jsonscan.h"

#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (unsigned char)s[i] <= 32)
        i++;
    return i;
}

/* s[i] is '"': returns the index after the closing quote, or (size_t)-1 when there is
 * none.
 * *escaped is set when the string holds a backslash. */
static size_t skip_string(const char *s, size_t len, size_t i, int *escaped)
{
    for (i++; i < len;) {
        const char *q = memchr(s + i, '"', len - i);
        if (!q)
            return (size_t)-1;
        size_t qi = (size_t)(q - s);
        const char *bs = memchr(s + i, '\\', qi - i);
        if (!bs)
            return qi + 1; /* the common case: no escape before the quote */
        *escaped = 1;
        i = (size_t)(bs - s) + 2; /* past the backslash and the byte it escapes */
    }
    return (size_t)-1;
}

/* Skips the value at s[i]; returns the index after it, or (size_t)-1 when the
 * structure is broken or too deep. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return (size_t)-1;
    int esc = 0;
    if (s[i] == '"')
        return skip_string(s, len, i, &esc);
    if (s[i] == '{' || s[i] == '[') {
        uint64_t kinds = 0; /* bit d: 1 = object at depth d */
        int depth = 0;
        while (i < len) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, len, i, &esc);
                if (i == (size_t)-1)
                    return i;
                continue;
            }
            if (c == '{' || c == '[') {
                if (depth == MAX_DEPTH)
                    return (size_t)-1;
                kinds = c == '{' ? kinds | ((uint64_t)1 << depth) : kinds & ~((uint64_t)1 << depth);
                depth++;
            } else if (c == '}' || c == ']') {
                if (depth == 0)
                    return (size_t)-1;
                depth--;
                int is_obj = (int)((kinds >> depth) & 1);
                if (is_obj != (c == '}'))
                    return (size_t)-1;
                if (depth == 0)
                    return i + 1;
            }
            i++;
        }
        return (size_t)-1;
    }
    /* A number or a literal: up to the next delimiter. */
    size_t start = i;
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && (unsigned char)s[i] > 32)
        i++;
    return i > start ? i : (size_t)-1;
}

int jsonscan_member(const char *s, size_t len, const char *key, size_t *off, size_t *vlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    i = skip_ws(s, len, i);
    if (i >= len || s[i] != '{')
        return JSONSCAN_UNSURE;
    i = skip_ws(s, len, i + 1);
    if (i < len && s[i] == '}')
        return JSONSCAN_ABSENT;
    for (;;) {
        if (i >= len || s[i] != '"')
            return JSONSCAN_UNSURE;
        int esc = 0;
        size_t kend = skip_string(s, len, i, &esc);
        if (kend == (size_t)-1 || esc)
            return JSONSCAN_UNSURE;
        size_t kstart = i + 1, kl = kend - 1 - kstart;
        if (memchr(s + kstart, '\0', kl))
            return JSONSCAN_UNSURE; /* cJSON's key ends at the NUL: let it decide */
        i = skip_ws(s, len, kend);
        if (i >= len || s[i] != ':')
            return JSONSCAN_UNSURE;
        i = skip_ws(s, len, i + 1);
        size_t vend = skip_value(s, len, i);
        if (vend == (size_t)-1)
            return JSONSCAN_UNSURE;
        if (kl == klen && memcmp(s + kstart, key, klen) == 0) {
            *off = i;
            *vlen = vend - i;
            return JSONSCAN_FOUND;
        }
        i = skip_ws(s, len, vend);
        if (i >= len)
            return JSONSCAN_UNSURE;
        if (s[i] == '}')
            return JSONSCAN_ABSENT;
        if (s[i] != ',')
            return JSONSCAN_UNSURE;
        i = skip_ws(s, len, i + 1);
    }
}
