/* sse — incremental event-stream scanner. See sse.h. */
#include "sse.h"

#include <string.h>

void sse_scanner_init(sse_scanner_t *s)
{
    memset(s, 0, sizeof(*s));
    s->at_line_start = 1;
}

size_t sse_scan(sse_scanner_t *s, const char *data, size_t len, size_t *last_end)
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

size_t sse_event_end(const char *data, size_t len)
{
    sse_scanner_t s;
    sse_scanner_init(&s);
    for (size_t i = 0; i < len; i++) {
        size_t end = 0;
        if (sse_scan(&s, data + i, 1, &end) > 0) {
            /* A CRLF terminator: take its LF too. */
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                return i + 2;
            return i + 1;
        }
    }
    return 0;
}

int sse_event_data(const char *raw, size_t len, const char **out, size_t *out_len)
{
    size_t i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && raw[eol] != '\n' && raw[eol] != '\r')
            eol++;
        if (eol - i >= 5 && memcmp(raw + i, "data:", 5) == 0) {
            size_t v = i + 5;
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
