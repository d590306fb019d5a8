/*
 * sse — incremental scanner for text/event-stream framing.
 *
 * The router forwards a stream event by event: bytes are held only until the
 * event they belong to is complete (a blank line), so the commit point can wait
 * for the first whole event and a single event can be inspected (usage) or
 * withheld without touching the others. Pure, no allocation.
 *
 * Line ends are "\r\n", "\n" or "\r" as the SSE spec allows. A blank line that
 * closes a block with no field lines (e.g. a leading newline) is not an event.
 */
#ifndef SWITCHYARD_SSE_H
#define SWITCHYARD_SSE_H

#include <stddef.h>

typedef struct {
    int at_line_start; /* the previous byte ended a line (or nothing seen yet) */
    int prev_cr;       /* the previous byte was '\r' (a following '\n' is the same EOL) */
    int has_content;   /* the current block has at least one non-EOL byte */
    size_t events;     /* complete events seen so far */
} sse_scanner_t;

void sse_scanner_init(sse_scanner_t *s);

/*
 * Scans len more bytes of the stream. Returns how many events completed in
 * them; when at least one did, *last_end is the offset in data just past the
 * last complete event's terminating blank line.
 */
size_t sse_scan(sse_scanner_t *s, const char *data, size_t len, size_t *last_end);

/* Length of the first complete event at the start of data (with its blank line), or 0. */
size_t sse_event_end(const char *data, size_t len);

/*
 * Finds the value of the first "data:" field of one raw event (the bytes of a
 * complete event block). Returns 0 and sets *out and *out_len (pointing into raw,
 * the single leading space removed), or -1 when the event has no data field.
 */
int sse_event_data(const char *raw, size_t len, const char **out, size_t *out_len);

/* The same for any field name ("event", "id", ...): its first line's value. */
int sse_event_field(const char *raw, size_t len, const char *name, const char **out,
                    size_t *out_len);

/* 1 when one raw event is the last of its stream: chat's `data: [DONE]`, or a
 * Responses API stream's terminal event (response.completed, .failed, .incomplete),
 * which names itself on its first line. */
int sse_event_is_last(const char *raw, size_t len);

#endif
