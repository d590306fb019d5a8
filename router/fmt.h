/* fmt: appending text and numbers to a fixed buffer without printf, for lines built
 * on every request (the access log). printf's format parsing cost more than the rest
 * of the line together (callgrind: ~19 snprintf calls, ~28k instructions a line).
 *
 * A fmtbuf_t writes into caller-owned memory and never past cap; once something does
 * not fit, `over` is set and later appends do nothing, so a caller checks once at the
 * end. The text is not NUL-terminated (fmt_cstr does that when there is room). */
#ifndef SWITCHYARD_FMT_H
#define SWITCHYARD_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t n, cap;
    int over;
} fmtbuf_t;

static inline void fmt_init(fmtbuf_t *b, char *p, size_t cap)
{
    b->p = p;
    b->n = 0;
    b->cap = cap;
    b->over = 0;
}

void fmt_mem(fmtbuf_t *b, const char *s, size_t len);
#define fmt_lit(b, s) fmt_mem((b), "" s, sizeof(s) - 1)
void fmt_str(fmtbuf_t *b, const char *s);
void fmt_i64(fmtbuf_t *b, int64_t v);
/* v with exactly `decimals` (0..6) digits after the point, rounded half away from
 * zero; what printf("%.*f") prints for the values we log (latencies in ms), without
 * its exact-decimal rounding of ties. Non-finite values print as null. */
void fmt_fixed(fmtbuf_t *b, double v, int decimals);
/* Exactly what printf("%.17g") prints: every bit of a double, so sums over the log equal
 * the metrics. Computed without printf for 1e-11 <= |v| < 1e16, printf otherwise. */
void fmt_g17(fmtbuf_t *b, double v);
/* ISO-8601 UTC with milliseconds, e.g. 2026-11-27T13:24:20.922Z. */
void fmt_iso_ms(fmtbuf_t *b, int64_t sec, long nsec);
/* NUL-terminates; 0 when there was no room (or an earlier append overflowed). */
int fmt_cstr(fmtbuf_t *b);

#endif
