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

/* m * 2^e * 10^k for 1 <= k <= 27 as an exact integer part *q and whether rounding it
 * (half to even) goes up: 5^27 fits 64 bits and m has 53, so the product fits 128 bits
 * and every bit shifted out is seen. */
static void scaled(uint64_t m, int e, int k, unsigned __int128 *q, int *up)
{
    static uint64_t pow5[28];
    if (!pow5[27]) {
        uint64_t p = 1;
        for (int i = 0; i < 28; i++, p *= 5)
            pow5[i] = p;
    }
    unsigned __int128 x = (unsigned __int128)m * pow5[k];
    int s = e + k;
    *up = 0;
    if (s >= 0) {
        *q = x << s;
        return;
    }
    int sh = -s;
    if (sh >= 127) {
        *q = 0;
        return;
    }
    unsigned __int128 rem = x & (((unsigned __int128)1 << sh) - 1);
    unsigned __int128 half = (unsigned __int128)1 << (sh - 1);
    *q = x >> sh;
    *up = rem > half || (rem == half && (*q & 1));
}

/* %.17g of v without printf, for 1e-11 <= |v| < 1e16 (every cost and price): its 17
 * significant digits are computed exactly from v's binary value, rounded half to even
 * as glibc rounds, then laid out as %g does (fixed from 1e-4, trailing zeros dropped).
 * 0 when v is outside that range: the caller uses snprintf. test_fmt compares the two
 * on millions of values. */
static int g17_fast(double v, char *out, size_t *len)
{
    double a = fabs(v);
    if (!(a >= 1e-11 && a < 1e16))
        return 0;
    int e2;
    double fr = frexp(a, &e2);
    uint64_t m = (uint64_t)ldexp(fr, 53); /* exact: a = m * 2^(e2 - 53) */
    int e = e2 - 53;
    int d = (int)floor(log10(a)); /* may be one off near powers of ten: checked below */
    const unsigned __int128 lo = (unsigned __int128)10000000000000000ULL, hi = lo * 10;
    unsigned __int128 q = 0;
    int up = 0, found = 0;
    /* d is right when the unrounded digits number 17; rounding may then carry to 10^17. */
    for (int tries = 0; tries < 3 && !found; tries++) {
        int k = 16 - d;
        if (k < 1 || k > 27)
            return 0;
        scaled(m, e, k, &q, &up);
        if (q >= hi)
            d++;
        else if (q < lo)
            d--;
        else
            found = 1;
    }
    if (!found)
        return 0;
    q += (unsigned)up;
    if (q == hi) {
        q = lo;
        d++;
    }
    char dig[17];
    uint64_t u = (uint64_t)q;
    for (int i = 16; i >= 0; i--) {
        dig[i] = (char)('0' + u % 10);
        u /= 10;
    }
    int nd = 17;
    size_t o = 0;
    if (signbit(v))
        out[o++] = '-';
    if (d >= -4) { /* fixed: d is at most 16 here (15 and a carry), below the precision */
        while (nd > d + 1 && dig[nd - 1] == '0')
            nd--;
        if (d >= 0) {
            memcpy(out + o, dig, (size_t)d + 1);
            o += (size_t)d + 1;
            if (nd > d + 1) {
                out[o++] = '.';
                memcpy(out + o, dig + d + 1, (size_t)(nd - d - 1));
                o += (size_t)(nd - d - 1);
            }
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -d - 1; i++)
                out[o++] = '0';
            memcpy(out + o, dig, (size_t)nd);
            o += (size_t)nd;
        }
    } else { /* scientific: d.ddd...e-XX */
        while (nd > 1 && dig[nd - 1] == '0')
            nd--;
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, dig + 1, (size_t)nd - 1);
            o += (size_t)nd - 1;
        }
        out[o++] = 'e';
        out[o++] = '-';
        out[o++] = (char)('0' + (-d) / 10);
        out[o++] = (char)('0' + (-d) % 10);
    }
    *len = o;
    return 1;
}

void fmt_g17(fmtbuf_t *b, double v)
{
    char tmp[40];
    size_t len;
    if (g17_fast(v, tmp, &len)) {
        fmt_mem(b, tmp, len);
        return;
    }
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
