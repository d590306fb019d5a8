/* fmt: printf-free appends (see fmt.h). */
#include "fmt.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

void fmt_mem(fmtbuf_t *b, const char *s, size_t len)
{
    if (b->over || len > b->cap - b->n) {
        b->over = 1;
        return;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

void fmt_str(fmtbuf_t *b, const char *s)
{
    fmt_mem(b, s, strlen(s));
}

static size_t u64_digits(uint64_t v, char *out /* >= 20 */)
{
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++)
        out[i] = tmp[k - 1 - i];
    return k;
}

void fmt_i64(fmtbuf_t *b, int64_t v)
{
    char d[21];
    size_t k = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        d[k++] = '-';
        u = 0 - u; /* INT64_MIN too */
    }
    k += u64_digits(u, d + k);
    fmt_mem(b, d, k);
}

void fmt_fixed(fmtbuf_t *b, double v, int decimals)
{
    static const double scale[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    if (decimals < 0)
        decimals = 0;
    if (decimals > 6)
        decimals = 6;
    /* Past 2^53 / 10^6 the integer path would lose digits: printf handles those. */
    if (!isfinite(v)) {
        fmt_lit(b, "null");
        return;
    }
    if (fabs(v) >= 9e9) {
        char tmp[64];
        int n = snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
        if (n > 0 && (size_t)n < sizeof tmp)
            fmt_mem(b, tmp, (size_t)n);
        else
            b->over = 1;
        return;
    }
    double scaled = round(fabs(v) * scale[decimals]);
    uint64_t u = (uint64_t)scaled;
    uint64_t pow10 = (uint64_t)scale[decimals];
    uint64_t ip = u / pow10, fp = u % pow10;
    char d[48];
    size_t k = 0;
    if (v < 0 && u != 0)
        d[k++] = '-';
    k += u64_digits(ip, d + k);
    if (decimals > 0) {
        d[k++] = '.';
        for (int i = decimals - 1; i >= 0; i--) {
            d[k + (size_t)i] = (char)('0' + fp % 10);
            fp /= 10;
        }
        k += (size_t)decimals;
    }
    fmt_mem(b, d, k);
}

void fmt_g17(fmtbuf_t *b, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    if (n > 0 && (size_t)n < sizeof tmp)
        fmt_mem(b, tmp, (size_t)n);
    else
        b->over = 1;
}

static void two(char *o, int v)
{
    o[0] = (char)('0' + v / 10 % 10);
    o[1] = (char)('0' + v % 10);
}

void fmt_iso_ms(fmtbuf_t *b, int64_t sec, long nsec)
{
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        b->over = 1;
        return;
    }
    char o[24];
    int y = tm.tm_year + 1900;
    two(o, y / 100);
    two(o + 2, y % 100);
    o[4] = '-';
    two(o + 5, tm.tm_mon + 1);
    o[7] = '-';
    two(o + 8, tm.tm_mday);
    o[10] = 'T';
    two(o + 11, tm.tm_hour);
    o[13] = ':';
    two(o + 14, tm.tm_min);
    o[16] = ':';
    two(o + 17, tm.tm_sec);
    o[19] = '.';
    int ms = (int)(nsec / 1000000) % 1000;
    o[20] = (char)('0' + ms / 100);
    two(o + 21, ms % 100);
    o[23] = 'Z';
    fmt_mem(b, o, 24);
}

int fmt_cstr(fmtbuf_t *b)
{
    if (b->over || b->n >= b->cap) {
        b->over = 1;
        return 0;
    }
    b->p[b->n] = '\0';
    return 1;
}
