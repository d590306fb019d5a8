/* sse — incremental event-stream scanner. See sse.h. */
#include "sse.h"

#include <string.h>

void sse_scanner_init(sse_scanner_t *s)
{
    memset(s, 0, sizeof(*s));
    s->at_line_start = 1;
}

#ifdef SWITCHYARD_FUZZ
/* One byte at a time: the definition the line-wise sse_scan below must agree with
 * (fuzz_sse checks both on every input and every split). */
size_t sse_scan_reference(sse_scanner_t *s, const char *data, size_t len, size_t *last_end)
{
    size_t found = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (s->prev_cr && c == '\n') {
            s->prev_cr = 0;
            if (found && *last_end == i)
                *last_end = i + 1; /* keep a CRLF terminator with its event */
            continue;
        }
        s->prev_cr = 0;
        if (c == '\r' || c == '\n') {
            if (s->at_line_start && s->has_content) {
                found++;
                s->events++;
                *last_end = i + 1;
                s->has_content = 0;
            }
            s->at_line_start = 1;
            s->prev_cr = (c == '\r');
        } else {
            s->at_line_start = 0;
            s->has_content = 1;
        }
    }
    return found;
}
#endif

/* The first CR or LF at or after i, or len when there is none. */
static size_t next_terminator(const char *data, size_t len, size_t i)
{
    const char *lf = memchr(data + i, '\n', len - i);
    size_t lim = lf ? (size_t)(lf - data) : len;
    const char *cr = memchr(data + i, '\r', lim - i);
    return cr ? (size_t)(cr - data) : lim;
}

/* Line by line: memchr finds each terminator, so a chunk costs a few calls rather than
 * a branch per byte (every byte of every stream passes here). */
size_t sse_scan(sse_scanner_t *s, const char *data, size_t len, size_t *last_end)
{
    size_t found = 0, i = 0;
    while (i < len) {
        if (s->prev_cr) {
            s->prev_cr = 0;
            if (data[i] == '\n') {
                if (found && *last_end == i)
                    *last_end = i + 1; /* keep a CRLF terminator with its event */
                i++;
                continue;
            }
        }
        size_t t = next_terminator(data, len, i);
        if (t > i) {
            s->at_line_start = 0;
            s->has_content = 1;
        }
        if (t == len)
            break;
        if (s->at_line_start && s->has_content) {
            found++;
            s->events++;
            *last_end = t + 1;
            s->has_content = 0;
        }
        s->at_line_start = 1;
        s->prev_cr = (data[t] == '\r');
        i = t + 1;
    }
    return found;
}

#ifdef SWITCHYARD_FUZZ
/* The scanner one byte at a time: the definition sse_event_end must agree with (the
 * fuzz target checks both on every input). */
static size_t event_end_by_scan(const char *data, size_t len)
{
    sse_scanner_t s;
    sse_scanner_init(&s);
    for (size_t i = 0; i < len; i++) {
        size_t end = 0;
        if (sse_scan_reference(&s, data + i, 1, &end) > 0) {
            /* A CRLF terminator: take its LF too. */
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                return i + 2;
            return i + 1;
        }
    }
    return 0;
}
#endif

/* Line by line with memchr: forward() calls this for every event of every stream, and
 * a call per byte was a third of a streaming request's instructions. */
size_t sse_event_end(const char *data, size_t len)
{
    size_t i = 0;
    int has_content = 0;
    while (i < len) {
        size_t t = next_terminator(data, len, i);
        if (t == len)
            return 0;
        if (t > i) {
            has_content = 1; /* a non-empty line */
        } else if (has_content) {
            /* An empty line after content ends the event (with the LF of a CRLF). */
            return data[t] == '\r' && t + 1 < len && data[t + 1] == '\n' ? t + 2 : t + 1;
        }
        if (data[t] == '\r' && t + 1 < len && data[t + 1] == '\n')
            t++; /* CRLF is one terminator */
        i = t + 1;
    }
    return 0;
}

#ifdef SWITCHYARD_FUZZ
size_t sse_event_end_reference(const char *data, size_t len)
{
    return event_end_by_scan(data, len);
}
#endif

int sse_event_field(const char *raw, size_t len, const char *name, const char **out,
                    size_t *out_len)
{
    size_t n = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && raw[eol] != '\n' && raw[eol] != '\r')
            eol++;
        if (eol - i >= n + 1 && memcmp(raw + i, name, n) == 0 && raw[i + n] == ':') {
            size_t v = i + n + 1;
            if (v < eol && raw[v] == ' ')
                v++;
            *out = raw + v;
            *out_len = eol - v;
            return 0;
        }
        i = eol + 1;
    }
    return -1;
}

int sse_event_data(const char *raw, size_t len, const char **out, size_t *out_len)
{
    return sse_event_field(raw, len, "data", out, out_len);
}

static int is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

int sse_event_is_last(const char *raw, size_t len)
{
    const char *v;
    size_t n;
    /* Cheap tests first: this runs on every event of every stream. */
    if (len < 32)
        return sse_event_data(raw, len, &v, &n) == 0 && is(v, n, "[DONE]");
    if (len <= 6 || memcmp(raw, "event:", 6) != 0 || sse_event_field(raw, len, "event", &v, &n) != 0)
        return 0;
    return is(v, n, "response.completed") || is(v, n, "response.failed") ||
           is(v, n, "response.incomplete");
}
