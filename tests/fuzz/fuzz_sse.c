/*
 * fuzz_sse — the incremental event-stream scanner (router/sse.c) and what the
 * proxy does with each complete event (router/usage.c: usage_event_has_usage,
 * usage_from_json on the data field, usage_strip_event).
 *
 * The first byte of the input picks the chunk boundaries (a seed for a small
 * PRNG); the rest is the stream. Invariants:
 *   - an incremental scan over any split counts exactly the events of a
 *     one-shot scan (the brief's invariant), and its last event end is the
 *     one-shot end, or one byte short when a CRLF terminator was split;
 *   - every reported end lies inside the chunk;
 *   - sse_scan and sse_event_end (line-wise, memchr) agree with the byte-wise
 *     definition (sse_scan_reference) in count, end and state, on every split;
 *   - walking the stream with sse_event_end (as forward() in proxy.c does)
 *     yields exactly as many events, each at most the rest of the buffer;
 *   - sse_event_data points inside its event; usage_strip_event never grows an
 *     event.
 */
#include "sse.h"
#include "usage.h"

#include "fuzz_common.h"

#include <sanitizer/asan_interface.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t sse_event_end_reference(const char *data, size_t len); /* sse.c */
size_t sse_scan_reference(sse_scanner_t *s, const char *data, size_t len, size_t *last_end);

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* One scan in chunks; returns the events and the absolute end of the last one.
 * buf is one exact-size heap block: the bytes after the current chunk are
 * poisoned while it is scanned, so ASan reports any read past the chunk's end
 * (without one allocation per chunk). */
static size_t scan_split(char *buf, size_t len, uint32_t seed, int mode, size_t *abs_end)
{
    sse_scanner_t s, ref;
    sse_scanner_init(&s);
    sse_scanner_init(&ref);
    size_t total = 0, off = 0;
    *abs_end = 0;
    while (off < len) {
        size_t n;
        if (mode == 0)
            n = 1; /* byte by byte */
        else
            n = 1 + next_rand(&seed) % (mode == 1 ? 7 : 64); /* short or longer chunks */
        if (n > len - off)
            n = len - off;
        size_t last_end = (size_t)-1;
        ASAN_POISON_MEMORY_REGION(buf + off + n, len - off - n);
        size_t found = sse_scan(&s, buf + off, n, &last_end);
        ASAN_UNPOISON_MEMORY_REGION(buf + off + n, len - off - n);
        /* differential: the line-wise scanner agrees with the byte-wise definition,
         * count, end and state, on every split */
        size_t ref_end = (size_t)-1;
        size_t ref_found = sse_scan_reference(&ref, buf + off, n, &ref_end);
        FUZZ_CHECK(ref_found == found && ref_end == last_end);
        FUZZ_CHECK(ref.prev_cr == s.prev_cr && ref.at_line_start == s.at_line_start &&
                   ref.has_content == s.has_content && ref.events == s.events);
        if (found > 0) {
            FUZZ_CHECK(last_end >= 1 && last_end <= n);
            *abs_end = off + last_end;
        } else {
            FUZZ_CHECK(last_end == (size_t)-1); /* untouched when nothing completed */
        }
        total += found;
        off += n;
    }
    FUZZ_CHECK(s.events == total);
    return total;
}

static void inspect_event(char *ev, size_t len)
{
    const char *d;
    size_t dlen;
    if (sse_event_data(ev, len, &d, &dlen) == 0) {
        FUZZ_CHECK(d >= ev && d + dlen <= ev + len);
        usage_t u = {0};
        if (usage_event_has_usage(d, dlen) && usage_from_json(d, dlen, &u) == 0)
            FUZZ_CHECK(u.prompt >= 0 && u.completion >= 0 && u.cached >= 0 &&
                       u.cached <= u.prompt && u.source == USAGE_UPSTREAM);
    }
    (void)usage_event_has_usage(ev, len);
    long kept = usage_strip_event(ev, len);
    FUZZ_CHECK(kept == -1 || (kept >= 0 && (size_t)kept <= len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0];
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;

    /* one-shot: the whole stream in one call */
    size_t one_end = 0, one;
    {
        sse_scanner_t s;
        sse_scanner_init(&s);
        char *all = fuzz_dup((const uint8_t *)stream, len);
        size_t last_end = 0;
        one = sse_scan(&s, all, len, &last_end);
        FUZZ_CHECK(s.events == one);
        one_end = one ? last_end : 0;
        free(all);
    }
    char *chunks = fuzz_dup((const uint8_t *)stream, len);
    for (int mode = 0; mode < 3; mode++) {
        size_t end = 0;
        size_t inc = scan_split(chunks, len, seed + (uint32_t)mode * 7919u, mode, &end);
        FUZZ_CHECK(inc == one);
        if (one > 0)
            FUZZ_CHECK(end == one_end ||
                       (end + 1 == one_end && stream[end] == '\n' && stream[end - 1] == '\r'));
    }
    free(chunks);

    /* forward(): event by event with sse_event_end (one exact-size copy, so the
     * end of the buffer is where ASan expects it) */
    char *copy = fuzz_dup((const uint8_t *)stream, len);
    size_t off = 0, events = 0;
    while (off < len) {
        size_t n = sse_event_end(copy + off, len - off);
        FUZZ_CHECK(n <= len - off);
        /* differential: the line-wise scan agrees with the byte-wise definition */
        FUZZ_CHECK(n == sse_event_end_reference(copy + off, len - off));
        if (n == 0) {
            /* a tail without its blank line: inspected the same way */
            char *tail = fuzz_dup((const uint8_t *)stream + off, len - off);
            inspect_event(tail, len - off);
            free(tail);
            break;
        }
        events++;
        char *ev = fuzz_dup((const uint8_t *)stream + off, n);
        inspect_event(ev, n);
        free(ev);
        off += n;
    }
    FUZZ_CHECK(events == one);
    free(copy);
    return 0;
}
