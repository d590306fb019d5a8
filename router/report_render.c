/*
 * report_render — a report_t as text: an aligned table for a terminal, GitHub
 * markdown, JSON (cJSON, full precision) or CSV (one table per section, each
 * after a `# section` line, sections separated by a blank line, RFC 4180
 * quoting). Pure: builds a string, does no I/O.
 *
 * table / markdown / csv share one table model per section (columns with a
 * human header, a CSV key and an alignment; some columns only in CSV), so the
 * three always show the same figures with the same rounding: money with 6
 * decimals under $1 and 2 otherwise, percentages with one decimal, null as "-"
 * (empty in CSV).
 */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* ---------------------------------------------------------------- string buffer */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sb_t;

static void sb_putn(sb_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_puts(sb_t *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_pad(sb_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_putn(b, " ", 1);
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sb_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sb_putn(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)n);
    free(big);
}

/* A footnote paragraph: as is in markdown, wrapped at 100 columns in plain text. */
static void sb_note(sb_t *b, int markdown, const char *text)
{
    enum { WRAP = 100 };
    sb_puts(b, "\n");
    if (markdown) {
        sb_puts(b, text);
        sb_puts(b, "\n");
        return;
    }
    const char *p = text;
    while (*p) {
        size_t n = strlen(p);
        if (n <= WRAP) {
            sb_puts(b, p);
            break;
        }
        size_t cut = WRAP;
        while (cut > 0 && p[cut] != ' ')
            cut--;
        if (cut == 0) /* one word longer than a line */
            cut = strcspn(p, " ");
        sb_putn(b, p, cut);
        sb_puts(b, "\n");
        p += cut;
        while (*p == ' ')
            p++;
    }
    sb_puts(b, "\n");
}

/* ---------------------------------------------------------------- cell formats */

enum { CELL = 64 };

/* Inserts ',' between groups of three digits of the run of digits starting at
 * b[start] (table and markdown only: CSV stays machine readable). */
static void group_digits(char *b, size_t start)
{
    size_t nd = strspn(b + start, "0123456789");
    size_t commas = nd > 3 ? (nd - 1) / 3 : 0;
    if (commas == 0 || strlen(b) + commas >= CELL)
        return;
    memmove(b + start + nd + commas, b + start + nd, strlen(b + start + nd) + 1);
    size_t src = start + nd, dst = start + nd + commas;
    for (size_t k = 0; k < nd; k++) {
        b[--dst] = b[--src];
        if (k % 3 == 2 && k + 1 < nd)
            b[--dst] = ',';
    }
}

static const char *fmt_count(char *b, report_format_t f, uint64_t n)
{
    snprintf(b, CELL, "%llu", (unsigned long long)n);
    if (f != REPORT_CSV)
        group_digits(b, 0);
    return b;
}

/* $ with 6 decimals under 1, 2 otherwise; "$" only outside CSV. */
static const char *fmt_money(char *b, report_format_t f, double x)
{
    if (fabs(x) < 5e-7)
        x = 0; /* no "-$0.000000" */
    const char *sign = x < 0 ? "-" : "";
    double ax = fabs(x);
    if (!isfinite(ax) || ax >= 1e15) { /* absurd, but never a truncated cell */
        snprintf(b, CELL, "%s%s%.6g", sign, f == REPORT_CSV ? "" : "$", ax);
        return b;
    }
    snprintf(b, CELL, ax < 1 ? "%s%s%.6f" : "%s%s%.2f", sign, f == REPORT_CSV ? "" : "$", ax);
    if (f != REPORT_CSV)
        group_digits(b, strlen(sign) + 1);
    return b;
}

static const char *fmt_pct(char *b, report_format_t f, double x)
{
    if (fabs(x) < 0.05)
        x = 0;
    snprintf(b, CELL, isfinite(x) && fabs(x) < 1e15 ? "%.1f%s" : "%.6g%s", x,
             f == REPORT_CSV ? "" : "%");
    return b;
}

/* Milliseconds: whole numbers as is, else one decimal. */
static const char *fmt_ms(char *b, double x)
{
    if (!isfinite(x) || fabs(x) >= 1e15)
        snprintf(b, CELL, "%.6g", x);
    else
        snprintf(b, CELL, x == floor(x) ? "%.0f" : "%.1f", x);
    return b;
}

/* A price per million tokens: at least 2 decimals, up to 6, no trailing zeros. */
static const char *fmt_price(char *b, report_format_t f, double x)
{
    char t[32];
    snprintf(t, sizeof t, "%.6f", x);
    size_t n = strlen(t), dot = strcspn(t, ".");
    while (n > dot + 3 && t[n - 1] == '0')
        t[--n] = '\0';
    snprintf(b, CELL, "%s%s", f == REPORT_CSV ? "" : "$", t);
    return b;
}

/* A flag percentage: 10, 12.5, 0.01. */
static const char *fmt_stage(char *b, report_format_t f, double x)
{
    char t[32];
    snprintf(t, sizeof t, "%.2f", x);
    size_t n = strlen(t);
    while (t[n - 1] == '0')
        t[--n] = '\0';
    if (t[n - 1] == '.')
        t[--n] = '\0';
    snprintf(b, CELL, "%s%s", t, f == REPORT_CSV ? "" : "%");
    return b;
}

static const char *fmt_time(char *b, int64_t us)
{
    report_format_time(us, b);
    return b;
}

/* "45.2s", "12m 05s", "3h 07m", "2d 05h". */
static const char *fmt_duration(char *b, double s)
{
    long t = (long)s;
    if (s < 60)
        snprintf(b, CELL, "%.1fs", s);
    else if (t < 3600)
        snprintf(b, CELL, "%ldm %02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(b, CELL, "%ldh %02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(b, CELL, "%ldd %02ldh", t / 86400, t / 3600 % 24);
    return b;
}

/* ---------------------------------------------------------------- tables */

typedef struct {
    const char *head; /* table / markdown */
    const char *key;  /* csv */
    char align;       /* 'l' / 'r' */
    int csv_only;
} col_t;

typedef struct {
    const col_t *cols;
    size_t ncols;
    char **cells; /* row-major, NULL = null */
    size_t n, cap;
    int oom;
} tbl_t;

static void tbl_add(tbl_t *t, const char *s)
{
    if (t->oom)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **c = realloc(t->cells, cap * sizeof *c);
        if (c == NULL) {
            t->oom = 1;
            return;
        }
        t->cells = c;
        t->cap = cap;
    }
    char *copy = NULL;
    if (s != NULL && (copy = strdup(s)) == NULL) {
        t->oom = 1;
        return;
    }
    t->cells[t->n++] = copy;
}

static void tbl_free(tbl_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
}

/* Text for a terminal or markdown: control characters become '?', and in
 * markdown '|' is escaped. */
static char *clean(const char *s, int markdown)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1);
    if (o == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            o[k++] = '?';
        } else {
            if (markdown && (c == '|' || c == '\\'))
                o[k++] = '\\';
            o[k++] = (char)c;
        }
    }
    o[k] = '\0';
    return o;
}

/* Display width: UTF-8 code points. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void render_csv_field(sb_t *b, const char *s)
{
    if (s == NULL)
        return;
    if (strpbrk(s, ",\"\r\n") == NULL && s[0] != '#') {
        sb_puts(b, s);
        return;
    }
    sb_putn(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            sb_putn(b, "\"", 1);
        sb_putn(b, p, 1);
    }
    sb_putn(b, "\"", 1);
}

static void render_tbl(sb_t *b, tbl_t *t, report_format_t f, const char *csv_section)
{
    if (t->oom) {
        b->oom = 1;
        return;
    }
    size_t nrows = t->n / t->ncols;
    if (f == REPORT_CSV) {
        sb_printf(b, "# %s\n", csv_section);
        for (size_t c = 0; c < t->ncols; c++) {
            if (c > 0)
                sb_putn(b, ",", 1);
            render_csv_field(b, t->cols[c].key);
        }
        sb_putn(b, "\n", 1);
        for (size_t r = 0; r < nrows; r++) {
            for (size_t c = 0; c < t->ncols; c++) {
                if (c > 0)
                    sb_putn(b, ",", 1);
                render_csv_field(b, t->cells[r * t->ncols + c]);
            }
            sb_putn(b, "\n", 1);
        }
        return;
    }
    int md = f == REPORT_MARKDOWN;
    size_t total = (nrows + 1) * t->ncols;
    char **txt = calloc(total, sizeof *txt);
    size_t *w = calloc(t->ncols, sizeof *w);
    if (txt == NULL || w == NULL) {
        free(txt);
        free(w);
        b->oom = 1;
        return;
    }
    for (size_t i = 0; i < total; i++) {
        size_t c = i % t->ncols;
        const char *src = i < t->ncols ? t->cols[c].head : t->cells[i - t->ncols];
        txt[i] = clean(src ? src : "-", md);
        if (txt[i] == NULL) {
            b->oom = 1;
            continue;
        }
        if (!t->cols[c].csv_only && width(txt[i]) > w[c])
            w[c] = width(txt[i]);
    }
    /* the last visible column is not padded on the right in plain text */
    size_t last = 0;
    for (size_t c = 0; c < t->ncols; c++)
        if (!t->cols[c].csv_only)
            last = c;
    for (size_t r = 0; r <= nrows && !b->oom; r++) {
        int first = 1;
        for (size_t c = 0; c < t->ncols; c++) {
            if (t->cols[c].csv_only)
                continue;
            const char *s = txt[r * t->ncols + c];
            size_t pad = w[c] - width(s);
            sb_puts(b, md ? (first ? "| " : " | ") : (first ? "" : "  "));
            first = 0;
            if (t->cols[c].align == 'r')
                sb_pad(b, pad);
            sb_puts(b, s);
            if (t->cols[c].align != 'r' && (md || c != last))
                sb_pad(b, pad);
        }
        sb_puts(b, md ? " |\n" : "\n");
        if (r == 0) { /* the header's underline */
            first = 1;
            for (size_t c = 0; c < t->ncols; c++) {
                if (t->cols[c].csv_only)
                    continue;
                sb_puts(b, md ? (first ? "| " : " | ") : (first ? "" : "  "));
                first = 0;
                size_t dashes = w[c] < 3 ? 3 : w[c];
                for (size_t k = 0; k < dashes; k++)
                    sb_putn(b, k == dashes - 1 && md && t->cols[c].align == 'r' ? ":" : "-", 1);
            }
            sb_puts(b, md ? " |\n" : "\n");
        }
    }
    for (size_t i = 0; i < total; i++)
        free(txt[i]);
    free(txt);
    free(w);
}

/* ---------------------------------------------------------------- sections */

static double pct_of(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0;
}

static const col_t totals_cols[] = {
    {"Metric", "metric", 'l', 0},
    {"Value", "value", 'r', 0},
};

static void section_totals(sb_t *b, const report_t *r, report_format_t f)
{
    const report_counts_t *t = &r->totals;
    char c[CELL];
    tbl_t tb = {.cols = totals_cols, .ncols = 2};
#define ROW(label, key, val)                                                                       \
    do {                                                                                           \
        tbl_add(&tb, f == REPORT_CSV ? key : label);                                               \
        tbl_add(&tb, val);                                                                         \
    } while (0)
    ROW("Requests", "requests", fmt_count(c, f, t->requests));
    ROW("Errors", "errors", fmt_count(c, f, t->errors));
    ROW("Error rate", "error_pct",
        t->requests ? fmt_pct(c, f, pct_of(t->errors, t->requests)) : NULL);
    ROW("Client closed", "client_closed", fmt_count(c, f, t->client_closed));
    ROW("Fallbacks", "fallbacks", fmt_count(c, f, t->fallbacks));
    ROW("Tokens in", "tokens_in", fmt_count(c, f, t->tokens_in));
    ROW("Tokens out", "tokens_out", fmt_count(c, f, t->tokens_out));
    ROW("Tokens cached", "tokens_cached", fmt_count(c, f, t->tokens_cached));
    ROW("Cost", "cost_usd", fmt_money(c, f, t->cost_usd));
    ROW("Requests with unknown cost", "requests_cost_unknown",
        fmt_count(c, f, t->requests_cost_unknown));
    ROW("Cost at original prices", "cost_if_original_usd",
        fmt_money(c, f, t->cost_if_original_usd));
    ROW("Wasted on failed attempts", "wasted_cost_usd", fmt_money(c, f, t->wasted_cost_usd));
#undef ROW
    render_tbl(b, &tb, f, "totals");
    tbl_free(&tb);
}

static const col_t group_cols[] = {
    {"Provider", "provider", 'l', 0},
    {"Model", "model", 'l', 0},
    {"Role", "role", 'l', 1},
    {"Reqs", "requests", 'r', 0},
    {"Errors", "errors", 'r', 0},
    {"Err %", "error_pct", 'r', 0},
    {"Closed", "client_closed", 'r', 1},
    {"Fallbk", "fallbacks", 'r', 0},
    {"p50 ms", "latency_p50_ms", 'r', 0},
    {"p95 ms", "latency_p95_ms", 'r', 0},
    {"p99 ms", "latency_p99_ms", 'r', 0},
    {"TTFB p50", "first_byte_p50_ms", 'r', 0},
    {"TTFB p95", "first_byte_p95_ms", 'r', 0},
    {"TTFB p99", "first_byte_p99_ms", 'r', 0},
    {"Tok in", "tokens_in", 'r', 0},
    {"Tok out", "tokens_out", 'r', 0},
    {"Cached", "tokens_cached", 'r', 0},
    {"Cost", "cost_usd", 'r', 0},
    {"Unknown cost", "requests_cost_unknown", 'r', 1},
};

static const char *role_name(int role)
{
    return role == CONFIG_ROLE_ORIGINAL ? "original" : role == CONFIG_ROLE_NEW ? "new" : NULL;
}

static void add_quantiles(tbl_t *tb, const report_quantiles_t *q)
{
    char c[CELL];
    tbl_add(tb, q->n ? fmt_ms(c, q->p50) : NULL);
    tbl_add(tb, q->n ? fmt_ms(c, q->p95) : NULL);
    tbl_add(tb, q->n ? fmt_ms(c, q->p99) : NULL);
}

/* A group's cost: null when all unknown; in table/markdown a '*' when some are. */
static const char *fmt_group_cost(char *c, report_format_t f, const report_counts_t *k)
{
    if (k->requests_cost_unknown >= k->requests && k->requests > 0)
        return NULL;
    fmt_money(c, f, k->cost_usd);
    size_t n = strlen(c);
    if (k->requests_cost_unknown > 0 && f != REPORT_CSV && n + 3 <= CELL)
        memcpy(c + n, " *", 3);
    return c;
}

static void section_groups(sb_t *b, const report_t *r, report_format_t f)
{
    char c[CELL];
    tbl_t tb = {.cols = group_cols, .ncols = sizeof group_cols / sizeof group_cols[0]};
    int partial = 0;
    for (size_t i = 0; i < r->n_groups; i++) {
        const report_group_t *g = &r->groups[i];
        const report_counts_t *k = &g->c;
        tbl_add(&tb, g->provider);
        tbl_add(&tb, g->model);
        tbl_add(&tb, role_name(g->role));
        tbl_add(&tb, fmt_count(c, f, k->requests));
        tbl_add(&tb, fmt_count(c, f, k->errors));
        tbl_add(&tb, fmt_pct(c, f, pct_of(k->errors, k->requests)));
        tbl_add(&tb, fmt_count(c, f, k->client_closed));
        tbl_add(&tb, fmt_count(c, f, k->fallbacks));
        add_quantiles(&tb, &g->latency_ms);
        add_quantiles(&tb, &g->first_byte_ms);
        tbl_add(&tb, fmt_count(c, f, k->tokens_in));
        tbl_add(&tb, fmt_count(c, f, k->tokens_out));
        tbl_add(&tb, fmt_count(c, f, k->tokens_cached));
        tbl_add(&tb, fmt_group_cost(c, f, k));
        tbl_add(&tb, fmt_count(c, f, k->requests_cost_unknown));
        if (k->requests_cost_unknown > 0 && k->requests_cost_unknown < k->requests)
            partial = 1;
    }
    render_tbl(b, &tb, f, "by_provider_model");
    tbl_free(&tb);
    if (f == REPORT_CSV)
        return;
    sb_note(b, f == REPORT_MARKDOWN,
            "Latency and TTFB (first byte sent to the client) in ms, exact nearest-rank "
            "quantiles. Errors: status >= 500 or a truncated stream; requests the client left "
            "(status 0, or gone during the answer) are not errors. Cost \"-\": no price for the model at that provider.");
    if (partial)
        sb_note(b, f == REPORT_MARKDOWN,
                "* cost unknown for some of the requests; the figure sums the known ones.");
}

static const col_t stage_cols[] = {
    {"Stage", "flag_percentage", 'r', 0},
    {"From", "first_ts", 'l', 0},
    {"To", "last_ts", 'l', 0},
    {"Variant", "variant", 'l', 0},
    {"Reqs", "requests", 'r', 0},
    {"Errors", "errors", 'r', 0},
    {"Err %", "error_pct", 'r', 0},
    {"Closed", "client_closed", 'r', 1},
    {"Fallbk", "fallbacks", 'r', 1},
    {"p95 ms", "latency_p95_ms", 'r', 0},
    {"Cost", "cost_usd", 'r', 0},
    {"Unknown cost", "requests_cost_unknown", 'r', 1},
};

static void section_stages(sb_t *b, const report_t *r, report_format_t f)
{
    static const int order[2] = {REPORT_NEW, REPORT_ORIGINAL};
    char c[CELL];
    tbl_t tb = {.cols = stage_cols, .ncols = sizeof stage_cols / sizeof stage_cols[0]};
    for (size_t i = 0; i < r->n_stages; i++) {
        const report_stage_t *s = &r->stages[i];
        for (int j = 0; j < 2; j++) {
            const report_variant_t *v = &s->variant[order[j]];
            const report_counts_t *k = &v->c;
            int repeat = j == 0 || f == REPORT_CSV;
            tbl_add(&tb, repeat ? fmt_stage(c, f, s->flag_percentage) : "");
            tbl_add(&tb, repeat ? fmt_time(c, s->first_ts) : "");
            tbl_add(&tb, repeat ? fmt_time(c, s->last_ts) : "");
            tbl_add(&tb, order[j] == REPORT_NEW ? "new" : "original");
            tbl_add(&tb, fmt_count(c, f, k->requests));
            tbl_add(&tb, fmt_count(c, f, k->errors));
            tbl_add(&tb, k->requests ? fmt_pct(c, f, pct_of(k->errors, k->requests)) : NULL);
            tbl_add(&tb, fmt_count(c, f, k->client_closed));
            tbl_add(&tb, fmt_count(c, f, k->fallbacks));
            tbl_add(&tb, v->latency_ms.n ? fmt_ms(c, v->latency_ms.p95) : NULL);
            tbl_add(&tb, fmt_money(c, f, k->cost_usd));
            tbl_add(&tb, fmt_count(c, f, k->requests_cost_unknown));
        }
    }
    render_tbl(b, &tb, f, "by_stage");
    tbl_free(&tb);
    if (f != REPORT_CSV)
        sb_note(b, f == REPORT_MARKDOWN,
                "Stage: the flag percentage requests were routed at. Variant: the flag's "
                "decision (a request that fell back counts under the variant it started in).");
}

static const col_t migration_cols[] = {
    {"Model", "model", 'l', 0},
    {"Original in", "original_input", 'r', 0},
    {"Original out", "original_output", 'r', 0},
    {"Orig cached", "original_cached_input", 'r', 1},
    {"New in", "new_input", 'r', 0},
    {"New out", "new_output", 'r', 0},
    {"New cached", "new_cached_input", 'r', 1},
    {"Saving", "saving_pct", 'r', 0},
    {"Measured saving", "measured_saving_usd", 'r', 0},
    {"30 days", "projected_30d_saving_usd", 'r', 0},
    {"30 days at 100%", "projected_30d_saving_at_100pct_usd", 'r', 0},
    {"Requests", "requests", 'r', 1},
    {"On new", "requests_new", 'r', 1},
};

static void section_migration(sb_t *b, const report_t *r, report_format_t f)
{
    char c[CELL];
    tbl_t tb = {.cols = migration_cols, .ncols = sizeof migration_cols / sizeof migration_cols[0]};
    for (size_t i = 0; i < r->n_migration; i++) {
        const report_migration_t *m = &r->migration[i];
        tbl_add(&tb, m->model);
        tbl_add(&tb, m->has_original ? fmt_price(c, f, m->original.input) : NULL);
        tbl_add(&tb, m->has_original ? fmt_price(c, f, m->original.output) : NULL);
        tbl_add(&tb, m->has_original ? fmt_price(c, f, m->original.cached_input) : NULL);
        tbl_add(&tb, m->has_new ? fmt_price(c, f, m->new_price.input) : NULL);
        tbl_add(&tb, m->has_new ? fmt_price(c, f, m->new_price.output) : NULL);
        tbl_add(&tb, m->has_new ? fmt_price(c, f, m->new_price.cached_input) : NULL);
        tbl_add(&tb, m->has_saving ? fmt_pct(c, f, m->saving_pct) : NULL);
        tbl_add(&tb, fmt_money(c, f, m->measured_saving_usd));
        tbl_add(&tb, m->has_projected ? fmt_money(c, f, m->projected_30d_saving_usd) : NULL);
        tbl_add(&tb, m->has_projected_100 ? fmt_money(c, f, m->projected_30d_saving_at_100pct_usd)
                                          : NULL);
        tbl_add(&tb, fmt_count(c, f, m->requests));
        tbl_add(&tb, fmt_count(c, f, m->requests_new));
    }
    render_tbl(b, &tb, f, "migration");
    tbl_free(&tb);
    if (f == REPORT_CSV)
        return;
    char d[CELL], note[1024];
    char *name = clean(r->new_name ? r->new_name : "new", f == REPORT_MARKDOWN);
    if (name == NULL) {
        b->oom = 1;
        return;
    }
    snprintf(note, sizeof note,
             "Prices in USD per million tokens. Saving: 1 - cost at new / cost at original "
             "prices over the model's observed token mix (1M input + 1M output tokens when none "
             "was observed). Measured saving: cost at original prices - cost, over the requests "
             "served by `%.64s`. 30 days: the measured saving scaled from the observed %s to 30 "
             "days; at 100%%: every request of the model at new prices.%s",
             name, fmt_duration(d, r->duration_s),
             r->duration_s < 1 ? " Projections need at least one second of traffic." : "");
    free(name);
    sb_note(b, f == REPORT_MARKDOWN, note);
}

static void header_lines(sb_t *b, const report_t *r, int md)
{
    char t1[REPORT_TIME_BUF], t2[REPORT_TIME_BUF], d[CELL];
    const char *li = md ? "- " : "";
    if (r->first_ts != REPORT_TIME_NONE)
        sb_printf(b, "%s%s: %s .. %s (%s)\n", li, md ? "**Window**" : "window",
                  fmt_time(t1, r->first_ts), fmt_time(t2, r->last_ts),
                  fmt_duration(d, r->duration_s));
    else
        sb_printf(b, "%s%s: no requests\n", li, md ? "**Window**" : "window");
    if (r->since != REPORT_TIME_NONE || r->until != REPORT_TIME_NONE)
        sb_printf(b, "%s%s: since %s, until %s\n", li, md ? "**Filter**" : "filter",
                  r->since != REPORT_TIME_NONE ? fmt_time(t1, r->since) : "-",
                  r->until != REPORT_TIME_NONE ? fmt_time(t2, r->until) : "-");
    sb_printf(b, "%s%s: %llu read, %llu used, %llu malformed, %llu outside the window\n", li,
              md ? "**Lines**" : "lines", (unsigned long long)r->lines.read,
              (unsigned long long)r->lines.used, (unsigned long long)r->lines.malformed,
              (unsigned long long)r->lines.filtered);
    char *o = clean(r->original_name ? r->original_name : "-", 0);
    char *n = clean(r->new_name ? r->new_name : "-", 0);
    if (o == NULL || n == NULL)
        b->oom = 1;
    else if (md)
        sb_printf(b, "- **Providers**: original `%s`, new `%s`\n", o, n);
    else
        sb_printf(b, "providers: original %s, new %s\n", o, n);
    free(o);
    free(n);
}

static void render_text(sb_t *b, const report_t *r, report_format_t f)
{
    int md = f == REPORT_MARKDOWN;
    sb_puts(b, md ? "# switchyard migration report\n\n" : "switchyard report\n");
    header_lines(b, r, md);
    sb_puts(b, md ? "\n## Totals\n\n" : "\nTOTALS\n");
    section_totals(b, r, f);
    sb_puts(b, md ? "\n## By provider and model\n\n" : "\nBY PROVIDER AND MODEL\n");
    section_groups(b, r, f);
    if (r->n_stages > 1) {
        sb_puts(b, md ? "\n## Rollout stages\n\n" : "\nROLLOUT STAGES\n");
        section_stages(b, r, f);
    }
    sb_puts(b, md ? "\n## Migration\n\n" : "\nMIGRATION\n");
    section_migration(b, r, f);
}

static const col_t window_cols[] = {
    {"Key", "key", 'l', 0},
    {"Value", "value", 'l', 0},
};

static void render_csv(sb_t *b, const report_t *r)
{
    char c[CELL];
    tbl_t tb = {.cols = window_cols, .ncols = 2};
    tbl_add(&tb, "since");
    tbl_add(&tb, r->since != REPORT_TIME_NONE ? fmt_time(c, r->since) : NULL);
    tbl_add(&tb, "until");
    tbl_add(&tb, r->until != REPORT_TIME_NONE ? fmt_time(c, r->until) : NULL);
    tbl_add(&tb, "first_ts");
    tbl_add(&tb, r->first_ts != REPORT_TIME_NONE ? fmt_time(c, r->first_ts) : NULL);
    tbl_add(&tb, "last_ts");
    tbl_add(&tb, r->last_ts != REPORT_TIME_NONE ? fmt_time(c, r->last_ts) : NULL);
    tbl_add(&tb, "duration_s");
    snprintf(c, sizeof c, "%.3f", r->duration_s);
    tbl_add(&tb, c);
    tbl_add(&tb, "lines_read");
    tbl_add(&tb, fmt_count(c, REPORT_CSV, r->lines.read));
    tbl_add(&tb, "lines_used");
    tbl_add(&tb, fmt_count(c, REPORT_CSV, r->lines.used));
    tbl_add(&tb, "lines_malformed");
    tbl_add(&tb, fmt_count(c, REPORT_CSV, r->lines.malformed));
    tbl_add(&tb, "lines_filtered");
    tbl_add(&tb, fmt_count(c, REPORT_CSV, r->lines.filtered));
    tbl_add(&tb, "provider_original");
    tbl_add(&tb, r->original_name);
    tbl_add(&tb, "provider_new");
    tbl_add(&tb, r->new_name);
    render_tbl(b, &tb, REPORT_CSV, "window");
    tbl_free(&tb);
    sb_puts(b, "\n");
    section_totals(b, r, REPORT_CSV);
    sb_puts(b, "\n");
    section_groups(b, r, REPORT_CSV);
    sb_puts(b, "\n");
    section_stages(b, r, REPORT_CSV);
    sb_puts(b, "\n");
    section_migration(b, r, REPORT_CSV);
}

/* ---------------------------------------------------------------- json */

typedef struct {
    int oom;
} jctx_t;

static cJSON *jadd(jctx_t *j, cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL || obj == NULL) {
        j->oom = 1;
        cJSON_Delete(item);
        return NULL;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        j->oom = 1;
        return NULL;
    }
    return item;
}

static void jnum(jctx_t *j, cJSON *o, const char *key, double x)
{
    jadd(j, o, key, cJSON_CreateNumber(x));
}

static void jcount(jctx_t *j, cJSON *o, const char *key, uint64_t n)
{
    jadd(j, o, key, cJSON_CreateNumber((double)n));
}

static void jnum_or_null(jctx_t *j, cJSON *o, const char *key, int has, double x)
{
    jadd(j, o, key, has ? cJSON_CreateNumber(x) : cJSON_CreateNull());
}

static void jstr_or_null(jctx_t *j, cJSON *o, const char *key, const char *s)
{
    jadd(j, o, key, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}

static void jtime(jctx_t *j, cJSON *o, const char *key, int64_t us)
{
    char t[REPORT_TIME_BUF];
    jstr_or_null(j, o, key, us != REPORT_TIME_NONE ? fmt_time(t, us) : NULL);
}

static void jquantiles(jctx_t *j, cJSON *o, const char *key, const report_quantiles_t *q)
{
    cJSON *qo = jadd(j, o, key, cJSON_CreateObject());
    jnum_or_null(j, qo, "p50", q->n > 0, q->p50);
    jnum_or_null(j, qo, "p95", q->n > 0, q->p95);
    jnum_or_null(j, qo, "p99", q->n > 0, q->p99);
}

static void jcounts(jctx_t *j, cJSON *o, const report_counts_t *k, int with_tokens)
{
    jcount(j, o, "requests", k->requests);
    jcount(j, o, "errors", k->errors);
    jcount(j, o, "client_closed", k->client_closed);
    jcount(j, o, "fallbacks", k->fallbacks);
    if (with_tokens) {
        jcount(j, o, "tokens_in", k->tokens_in);
        jcount(j, o, "tokens_out", k->tokens_out);
        jcount(j, o, "tokens_cached", k->tokens_cached);
    }
}

static void jprice(jctx_t *j, cJSON *o, const char *key, int has, const report_price_t *p)
{
    if (!has) {
        jadd(j, o, key, cJSON_CreateNull());
        return;
    }
    cJSON *po = jadd(j, o, key, cJSON_CreateObject());
    jnum(j, po, "input", p->input);
    jnum(j, po, "output", p->output);
    jnum(j, po, "cached_input", p->cached_input);
}

static cJSON *render_json_tree(const report_t *r, jctx_t *j)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL) {
        j->oom = 1;
        return NULL;
    }
    cJSON *w = jadd(j, root, "window", cJSON_CreateObject());
    jtime(j, w, "since", r->since);
    jtime(j, w, "until", r->until);
    jtime(j, w, "first_ts", r->first_ts);
    jtime(j, w, "last_ts", r->last_ts);
    jnum(j, w, "duration_s", r->duration_s);

    cJSON *l = jadd(j, root, "lines", cJSON_CreateObject());
    jcount(j, l, "read", r->lines.read);
    jcount(j, l, "used", r->lines.used);
    jcount(j, l, "malformed", r->lines.malformed);
    jcount(j, l, "filtered", r->lines.filtered);

    cJSON *p = jadd(j, root, "providers", cJSON_CreateObject());
    jstr_or_null(j, p, "original", r->original_name);
    jstr_or_null(j, p, "new", r->new_name);

    const report_counts_t *t = &r->totals;
    cJSON *to = jadd(j, root, "totals", cJSON_CreateObject());
    jcounts(j, to, t, 1);
    jnum(j, to, "cost_usd", t->cost_usd);
    jcount(j, to, "requests_cost_unknown", t->requests_cost_unknown);
    jnum(j, to, "cost_if_original_usd", t->cost_if_original_usd);
    jnum(j, to, "wasted_cost_usd", t->wasted_cost_usd);

    cJSON *ga = jadd(j, root, "by_provider_model", cJSON_CreateArray());
    for (size_t i = 0; i < r->n_groups && ga != NULL; i++) {
        const report_group_t *g = &r->groups[i];
        const report_counts_t *k = &g->c;
        cJSON *go = cJSON_CreateObject();
        if (go == NULL || !cJSON_AddItemToArray(ga, go)) {
            cJSON_Delete(go);
            j->oom = 1;
            break;
        }
        jstr_or_null(j, go, "provider", g->provider);
        jstr_or_null(j, go, "model", g->model);
        jstr_or_null(j, go, "role", role_name(g->role));
        jcount(j, go, "requests", k->requests);
        jcount(j, go, "errors", k->errors);
        jnum(j, go, "error_pct", pct_of(k->errors, k->requests));
        jcount(j, go, "client_closed", k->client_closed);
        jcount(j, go, "fallbacks", k->fallbacks);
        jquantiles(j, go, "latency_ms", &g->latency_ms);
        jquantiles(j, go, "first_byte_ms", &g->first_byte_ms);
        jcount(j, go, "tokens_in", k->tokens_in);
        jcount(j, go, "tokens_out", k->tokens_out);
        jcount(j, go, "tokens_cached", k->tokens_cached);
        jnum_or_null(j, go, "cost_usd", k->requests_cost_unknown < k->requests, k->cost_usd);
        jcount(j, go, "requests_cost_unknown", k->requests_cost_unknown);
        jnum(j, go, "cost_if_original_usd", k->cost_if_original_usd);
        jnum(j, go, "wasted_cost_usd", k->wasted_cost_usd);
    }

    cJSON *sa = jadd(j, root, "by_stage", cJSON_CreateArray());
    for (size_t i = 0; i < r->n_stages && sa != NULL; i++) {
        const report_stage_t *s = &r->stages[i];
        cJSON *so = cJSON_CreateObject();
        if (so == NULL || !cJSON_AddItemToArray(sa, so)) {
            cJSON_Delete(so);
            j->oom = 1;
            break;
        }
        jnum(j, so, "flag_percentage", s->flag_percentage);
        jtime(j, so, "first_ts", s->first_ts);
        jtime(j, so, "last_ts", s->last_ts);
        cJSON *vo = jadd(j, so, "variants", cJSON_CreateObject());
        static const int order[2] = {REPORT_NEW, REPORT_ORIGINAL};
        for (int k = 0; k < 2; k++) {
            const report_variant_t *v = &s->variant[order[k]];
            cJSON *x =
                jadd(j, vo, order[k] == REPORT_NEW ? "new" : "original", cJSON_CreateObject());
            jcounts(j, x, &v->c, 0);
            jnum_or_null(j, x, "error_pct", v->c.requests > 0, pct_of(v->c.errors, v->c.requests));
            jnum_or_null(j, x, "latency_p95_ms", v->latency_ms.n > 0, v->latency_ms.p95);
            jnum(j, x, "cost_usd", v->c.cost_usd);
            jcount(j, x, "requests_cost_unknown", v->c.requests_cost_unknown);
        }
    }

    cJSON *ma = jadd(j, root, "migration", cJSON_CreateArray());
    for (size_t i = 0; i < r->n_migration && ma != NULL; i++) {
        const report_migration_t *m = &r->migration[i];
        cJSON *mo = cJSON_CreateObject();
        if (mo == NULL || !cJSON_AddItemToArray(ma, mo)) {
            cJSON_Delete(mo);
            j->oom = 1;
            break;
        }
        jstr_or_null(j, mo, "model", m->model);
        jprice(j, mo, "original", m->has_original, &m->original);
        jprice(j, mo, "new", m->has_new, &m->new_price);
        jnum_or_null(j, mo, "saving_pct", m->has_saving, m->saving_pct);
        jnum(j, mo, "measured_saving_usd", m->measured_saving_usd);
        jnum_or_null(j, mo, "projected_30d_saving_usd", m->has_projected,
                     m->projected_30d_saving_usd);
        jnum_or_null(j, mo, "projected_30d_saving_at_100pct_usd", m->has_projected_100,
                     m->projected_30d_saving_at_100pct_usd);
        jcount(j, mo, "requests", m->requests);
        jcount(j, mo, "requests_new", m->requests_new);
        jcount(j, mo, "tokens_in", m->tokens_in);
        jcount(j, mo, "tokens_out", m->tokens_out);
        jcount(j, mo, "tokens_cached", m->tokens_cached);
    }
    return root;
}

char *report_render(const report_t *r, report_format_t fmt)
{
    if (r == NULL)
        return NULL;
    if (fmt == REPORT_JSON) {
        jctx_t j = {0};
        cJSON *root = render_json_tree(r, &j);
        char *s = (root != NULL && !j.oom) ? cJSON_Print(root) : NULL;
        cJSON_Delete(root);
        if (s == NULL)
            return NULL;
        /* a copy in our allocator, with a final newline */
        size_t n = strlen(s);
        char *o = malloc(n + 2);
        if (o != NULL) {
            memcpy(o, s, n);
            o[n] = '\n';
            o[n + 1] = '\0';
        }
        cJSON_free(s);
        return o;
    }
    sb_t b = {0};
    if (fmt == REPORT_CSV)
        render_csv(&b, r);
    else
        render_text(&b, r, fmt);
    if (b.oom || b.s == NULL) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
