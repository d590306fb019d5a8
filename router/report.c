/*
 * report — access-log lines -> report_t (see report.h for the definitions).
 *
 * Pure: no I/O and no clock. Each line is parsed once with cJSON into a
 * report_record_t and folded into running aggregates; the values the quantiles
 * need (latency and first byte per provider x model, latency per stage and
 * variant) are kept, everything else is a counter or a compensated sum.
 * report_agg_finish sorts those values and builds the result.
 */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define SECONDS_30D (30.0 * 86400.0)
#define MAX_EXACT_INT 9007199254740992.0 /* 2^53 */

/* ---------------------------------------------------------------- time */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Exactly n digits at s[*i]; advances *i. */
static int take_digits(const char *s, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        char c = s[*i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
        (*i)++;
    }
    *out = v;
    return 0;
}

int report_parse_time(const char *s, int64_t *us)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || us == NULL)
        return -1;
    size_t i = 0;
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
    int64_t frac_us = 0;
    if (take_digits(s, &i, 4, &y) || s[i++] != '-' || take_digits(s, &i, 2, &mo) || s[i++] != '-' ||
        take_digits(s, &i, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -1;
    if (s[i] == 'T' || s[i] == 't' || s[i] == ' ') {
        i++;
        if (take_digits(s, &i, 2, &h) || s[i++] != ':' || take_digits(s, &i, 2, &mi))
            return -1;
        if (s[i] == ':') {
            i++;
            if (take_digits(s, &i, 2, &sec))
                return -1;
            if (s[i] == '.' || s[i] == ',') {
                i++;
                int nd = 0;
                while (s[i] >= '0' && s[i] <= '9') {
                    if (nd < 6)
                        frac_us = frac_us * 10 + (s[i] - '0');
                    nd++;
                    i++;
                }
                if (nd == 0)
                    return -1;
                for (; nd < 6; nd++)
                    frac_us *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return -1;
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            sign = s[i++] == '+' ? 1 : -1;
            if (take_digits(s, &i, 2, &oh))
                return -1;
            if (s[i] == ':')
                i++;
            if (take_digits(s, &i, 2, &om) || oh > 23 || om > 59)
                return -1;
        }
    }
    if (s[i] != '\0')
        return -1;
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
                   sec - sign * (oh * 3600 + om * 60);
    *us = secs * 1000000 + frac_us;
    return 0;
}

void report_format_time(int64_t us, char out[REPORT_TIME_BUF])
{
    if (us == REPORT_TIME_NONE) {
        snprintf(out, REPORT_TIME_BUF, "-");
        return;
    }
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char fs[16] = "";
    if (frac % 1000 == 0 && frac != 0)
        snprintf(fs, sizeof fs, ".%03d", (int)(frac / 1000));
    else if (frac != 0)
        snprintf(fs, sizeof fs, ".%06d", (int)frac);
    snprintf(out, REPORT_TIME_BUF, "%04lld-%02u-%02uT%02d:%02d:%02d%sZ", (long long)y, m, d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), fs);
}

int report_parse_format(const char *s)
{
    static const char *const names[] = {"table", "markdown", "json", "csv"};
    for (int i = 0; s != NULL && i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* ---------------------------------------------------------------- aggregates */

/* Neumaier's compensated sum: money sums stay exact to far below 1e-9 USD. */
typedef struct {
    double s, c;
} ksum_t;

static void ksum_add(ksum_t *k, double x)
{
    double t = k->s + x;
    if (fabs(k->s) >= fabs(x))
        k->c += (k->s - t) + x;
    else
        k->c += (x - t) + k->s;
    k->s = t;
}

static double ksum_get(const ksum_t *k)
{
    return k->s + k->c;
}

typedef struct {
    double *v;
    size_t n, cap;
} dvec_t;

static int dvec_push(dvec_t *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        double *v = realloc(d->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return 0;
}

typedef struct {
    uint64_t requests, errors, client_closed, fallbacks;
    uint64_t tokens_in, tokens_out, tokens_cached, requests_cost_unknown;
    ksum_t cost, cost_if_original, wasted;
} acc_t;

static void acc_add(acc_t *c, const report_record_t *r)
{
    c->requests++;
    if (r->status == 0 || r->client_left)
        c->client_closed++;
    else if (r->status >= 500 || r->truncated)
        c->errors++;
    if (r->fallback)
        c->fallbacks++;
    c->tokens_in += r->tokens_in;
    c->tokens_out += r->tokens_out;
    c->tokens_cached += r->tokens_cached;
    if (r->has_cost)
        ksum_add(&c->cost, r->cost_usd);
    else
        c->requests_cost_unknown++;
    if (r->has_cost_if_original)
        ksum_add(&c->cost_if_original, r->cost_if_original_usd);
    ksum_add(&c->wasted, r->wasted_cost_usd);
}

static report_counts_t acc_counts(const acc_t *c)
{
    report_counts_t o = {
        .requests = c->requests,
        .errors = c->errors,
        .client_closed = c->client_closed,
        .fallbacks = c->fallbacks,
        .tokens_in = c->tokens_in,
        .tokens_out = c->tokens_out,
        .tokens_cached = c->tokens_cached,
        .cost_usd = ksum_get(&c->cost),
        .requests_cost_unknown = c->requests_cost_unknown,
        .cost_if_original_usd = ksum_get(&c->cost_if_original),
        .wasted_cost_usd = ksum_get(&c->wasted),
    };
    return o;
}

typedef struct {
    size_t model, provider; /* indexes; 0 = null */
    acc_t acc;
    dvec_t lat, fb;
} group_t;

typedef struct {
    char *name; /* NULL for index 0 (null model) */
    uint64_t requests, requests_new, tokens_in, tokens_out, tokens_cached;
    ksum_t measured;
    size_t *groups; /* group indexes of this model, one per provider */
    size_t n_groups, cap_groups;
} model_t;

typedef struct {
    char *name; /* NULL for index 0 (no provider) */
    int role;
} provider_t;

typedef struct {
    double pct;
    int64_t first, last;
    size_t seq;
    acc_t acc[2];
    dvec_t lat[2];
} stage_t;

typedef struct {
    char *model;
    report_price_t p;
} price_entry_t;

struct report_agg {
    int64_t since, until;
    char *names[2];
    price_entry_t *prices[2];
    size_t n_prices[2];
    uint64_t read, used, malformed, filtered;
    int64_t first, last;
    acc_t totals;
    model_t *models;
    size_t n_models, cap_models;
    size_t *model_slots; /* open addressing: model index, 0 = empty */
    size_t cap_slots;
    provider_t *provs;
    size_t n_provs, cap_provs;
    group_t *groups;
    size_t n_groups, cap_groups;
    stage_t *stages;
    size_t n_stages, cap_stages, last_stage;
};

/* Grows *arr (elements of size sz) so that one more fits. */
static int grow(void *arr, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*(void **)arr, nc * sz);
    if (p == NULL)
        return -1;
    memset((char *)p + *cap * sz, 0, (nc - *cap) * sz);
    *(void **)arr = p;
    *cap = nc;
    return 0;
}

/* A copy of s with invalid UTF-8 bytes replaced by '?', so every output format
 * stays valid text. */
static char *dup_utf8(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (o == NULL)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = 0;
        unsigned c = u[i];
        if (c < 0x80)
            len = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            len = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            len = 4;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len == 3) {
            ok = !(c == 0xE0 && u[i + 1] < 0xA0) && !(c == 0xED && u[i + 1] >= 0xA0);
        } else if (ok && len == 4) {
            ok = !(c == 0xF0 && u[i + 1] < 0x90) && !(c == 0xF4 && u[i + 1] >= 0x90);
        }
        if (!ok) {
            o[i++] = '?';
            continue;
        }
        memcpy(o + i, s + i, len);
        i += len;
    }
    o[n] = '\0';
    return o;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t *slot_for(size_t *slots, size_t cap, const model_t *models, const char *name)
{
    size_t i = (size_t)hash_str(name) & (cap - 1);
    while (slots[i] != 0 && strcmp(models[slots[i]].name, name) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* The index of model `name` (0 for NULL), added when new; (size_t)-1 on OOM.
 * Names are stored cleaned of invalid UTF-8 and looked up the same way, so one
 * odd name is one group, not one per line. */
static size_t model_index_clean(report_agg_t *a, const char *name);

static size_t model_index(report_agg_t *a, const char *raw)
{
    if (raw == NULL)
        return 0;
    char *name = dup_utf8(raw);
    if (name == NULL)
        return (size_t)-1;
    size_t i = model_index_clean(a, name);
    free(name);
    return i;
}

static size_t model_index_clean(report_agg_t *a, const char *name)
{
    if ((a->n_models + 1) * 2 > a->cap_slots) {
        size_t nc = a->cap_slots ? a->cap_slots * 2 : 64;
        size_t *ns = calloc(nc, sizeof *ns);
        if (ns == NULL)
            return (size_t)-1;
        for (size_t i = 1; i < a->n_models; i++)
            *slot_for(ns, nc, a->models, a->models[i].name) = i;
        free(a->model_slots);
        a->model_slots = ns;
        a->cap_slots = nc;
    }
    size_t *slot = slot_for(a->model_slots, a->cap_slots, a->models, name);
    if (*slot != 0)
        return *slot;
    if (grow(&a->models, &a->cap_models, a->n_models, sizeof *a->models) != 0)
        return (size_t)-1;
    char *copy = dup_utf8(name);
    if (copy == NULL)
        return (size_t)-1;
    a->models[a->n_models].name = copy;
    *slot = a->n_models;
    return a->n_models++;
}

static size_t provider_index(report_agg_t *a, const char *raw)
{
    if (raw == NULL)
        return 0;
    char *copy = dup_utf8(raw);
    if (copy == NULL)
        return (size_t)-1;
    const char *name = copy;
    for (size_t i = 1; i < a->n_provs; i++)
        if (strcmp(a->provs[i].name, name) == 0) {
            free(copy);
            return i;
        }
    if (grow(&a->provs, &a->cap_provs, a->n_provs, sizeof *a->provs) != 0) {
        free(copy);
        return (size_t)-1;
    }
    provider_t *p = &a->provs[a->n_provs];
    p->name = copy;
    p->role = -1;
    for (int r = 0; r < 2; r++)
        if (a->names[r] != NULL && strcmp(a->names[r], name) == 0)
            p->role = r;
    return a->n_provs++;
}

static size_t group_index(report_agg_t *a, size_t model, size_t prov)
{
    model_t *m = &a->models[model];
    for (size_t i = 0; i < m->n_groups; i++)
        if (a->groups[m->groups[i]].provider == prov)
            return m->groups[i];
    if (grow(&m->groups, &m->cap_groups, m->n_groups, sizeof *m->groups) != 0 ||
        grow(&a->groups, &a->cap_groups, a->n_groups, sizeof *a->groups) != 0)
        return (size_t)-1;
    group_t *g = &a->groups[a->n_groups];
    g->model = model;
    g->provider = prov;
    m->groups[m->n_groups++] = a->n_groups;
    return a->n_groups++;
}

static size_t stage_index(report_agg_t *a, double pct, int64_t ts)
{
    if (a->last_stage < a->n_stages && a->stages[a->last_stage].pct == pct)
        return a->last_stage;
    for (size_t i = 0; i < a->n_stages; i++)
        if (a->stages[i].pct == pct)
            return a->last_stage = i;
    if (grow(&a->stages, &a->cap_stages, a->n_stages, sizeof *a->stages) != 0)
        return (size_t)-1;
    stage_t *s = &a->stages[a->n_stages];
    s->pct = pct;
    s->first = s->last = ts;
    s->seq = a->n_stages;
    return a->last_stage = a->n_stages++;
}

static int copy_prices(report_agg_t *a, int role, const config_provider_t *p)
{
    if (p == NULL)
        return 0;
    if (p->name != NULL && (a->names[role] = strdup(p->name)) == NULL)
        return -1;
    if (p->n_pricing == 0)
        return 0;
    a->prices[role] = calloc(p->n_pricing, sizeof *a->prices[role]);
    if (a->prices[role] == NULL)
        return -1;
    for (size_t i = 0; i < p->n_pricing; i++) {
        price_entry_t *e = &a->prices[role][a->n_prices[role]];
        if ((e->model = strdup(p->pricing[i].model)) == NULL)
            return -1;
        e->p.input = p->pricing[i].input;
        e->p.output = p->pricing[i].output;
        e->p.cached_input = p->pricing[i].cached_input;
        a->n_prices[role]++;
    }
    return 0;
}

report_agg_t *report_agg_new(const config_t *cfg, int64_t since, int64_t until)
{
    report_agg_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->since = since;
    a->until = until;
    a->first = a->last = REPORT_TIME_NONE;
    /* index 0 of models and providers stands for null */
    if (grow(&a->models, &a->cap_models, 0, sizeof *a->models) != 0 ||
        grow(&a->provs, &a->cap_provs, 0, sizeof *a->provs) != 0) {
        report_agg_free(a);
        return NULL;
    }
    a->n_models = a->n_provs = 1;
    a->provs[0].role = -1;
    for (int r = 0; r < 2; r++) {
        if (copy_prices(a, r, config_provider(cfg, r)) != 0) {
            report_agg_free(a);
            return NULL;
        }
    }
    return a;
}

void report_agg_free(report_agg_t *a)
{
    if (a == NULL)
        return;
    for (int r = 0; r < 2; r++) {
        free(a->names[r]);
        for (size_t i = 0; i < a->n_prices[r]; i++)
            free(a->prices[r][i].model);
        free(a->prices[r]);
    }
    for (size_t i = 0; i < a->n_models; i++) {
        free(a->models[i].name);
        free(a->models[i].groups);
    }
    free(a->models);
    free(a->model_slots);
    for (size_t i = 0; i < a->n_provs; i++)
        free(a->provs[i].name);
    free(a->provs);
    for (size_t i = 0; i < a->n_groups; i++) {
        free(a->groups[i].lat.v);
        free(a->groups[i].fb.v);
    }
    free(a->groups);
    for (size_t i = 0; i < a->n_stages; i++) {
        free(a->stages[i].lat[0].v);
        free(a->stages[i].lat[1].v);
    }
    free(a->stages);
    free(a);
}

int report_agg_add(report_agg_t *a, const report_record_t *r)
{
    if ((a->since != REPORT_TIME_NONE && r->ts_us < a->since) ||
        (a->until != REPORT_TIME_NONE && r->ts_us >= a->until)) {
        a->filtered++;
        return REPORT_LINE_FILTERED;
    }
    int v = r->variant == REPORT_NEW ? REPORT_NEW : REPORT_ORIGINAL;
    size_t mi = model_index(a, r->model);
    size_t pi = mi == (size_t)-1 ? mi : provider_index(a, r->provider);
    size_t gi = pi == (size_t)-1 ? pi : group_index(a, mi, pi);
    size_t si = gi == (size_t)-1 ? gi : stage_index(a, r->flag_percentage, r->ts_us);
    if (si == (size_t)-1)
        return REPORT_ERR_NOMEM;
    group_t *g = &a->groups[gi];
    stage_t *s = &a->stages[si];
    if (dvec_push(&g->lat, r->latency_ms) != 0 ||
        (r->has_first_byte && dvec_push(&g->fb, r->first_byte_ms) != 0)) {
        return REPORT_ERR_NOMEM;
    }
    if (dvec_push(&s->lat[v], r->latency_ms) != 0) {
        /* keep the group's values consistent with its counters */
        g->lat.n--;
        if (r->has_first_byte)
            g->fb.n--;
        return REPORT_ERR_NOMEM;
    }
    a->used++;
    acc_add(&a->totals, r);
    acc_add(&g->acc, r);
    acc_add(&s->acc[v], r);
    if (r->ts_us < s->first)
        s->first = r->ts_us;
    if (r->ts_us > s->last)
        s->last = r->ts_us;
    if (a->first == REPORT_TIME_NONE || r->ts_us < a->first)
        a->first = r->ts_us;
    if (a->last == REPORT_TIME_NONE || r->ts_us > a->last)
        a->last = r->ts_us;
    model_t *m = &a->models[mi];
    m->requests++;
    m->tokens_in += r->tokens_in;
    m->tokens_out += r->tokens_out;
    m->tokens_cached += r->tokens_cached;
    if (a->provs[pi].role == CONFIG_ROLE_NEW) {
        m->requests_new++;
        if (r->has_cost && r->has_cost_if_original)
            ksum_add(&m->measured, r->cost_if_original_usd - r->cost_usd);
    }
    return REPORT_LINE_USED;
}

/* ---------------------------------------------------------------- line parsing */

typedef struct {
    const cJSON *obj;
    char *why;
    size_t why_cap;
} lp_t;

static int lp_fail(lp_t *lp, const char *fmt, ...)
{
    if (lp->why != NULL && lp->why_cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lp->why, lp->why_cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* want: 's' string, 'n' number, 'b' bool. Absent -> *item NULL; null allowed when
 * nullable. 0, or -1 with the reason. */
static int lp_get(lp_t *lp, const char *key, char want, int required, int nullable,
                  const cJSON **item)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(lp->obj, key);
    *item = NULL;
    if (it == NULL) {
        if (required)
            return lp_fail(lp, "missing `%s`", key);
        return 0;
    }
    if (cJSON_IsNull(it)) {
        if (!nullable)
            return lp_fail(lp, "`%s` is null", key);
        return 0;
    }
    int ok = want == 's'   ? cJSON_IsString(it) && it->valuestring != NULL
             : want == 'n' ? cJSON_IsNumber(it) && isfinite(it->valuedouble)
                           : cJSON_IsBool(it);
    if (!ok)
        return lp_fail(lp, "`%s` is not a %s", key,
                       want == 's'   ? "string"
                       : want == 'n' ? "number"
                                     : "boolean");
    *item = it;
    return 0;
}

static int lp_nonneg(lp_t *lp, const char *key, int required, int nullable, int *has, double *out)
{
    const cJSON *it;
    if (lp_get(lp, key, 'n', required, nullable, &it) != 0)
        return -1;
    if (has != NULL)
        *has = it != NULL;
    *out = 0;
    if (it == NULL)
        return 0;
    if (it->valuedouble < 0)
        return lp_fail(lp, "`%s` is negative", key);
    *out = it->valuedouble;
    return 0;
}

static int lp_tokens(lp_t *lp, const char *key, uint64_t *out)
{
    double d;
    if (lp_nonneg(lp, key, 0, 0, NULL, &d) != 0)
        return -1;
    if (d != floor(d) || d > MAX_EXACT_INT)
        return lp_fail(lp, "`%s` is not a whole number of tokens", key);
    *out = (uint64_t)d;
    return 0;
}

static int lp_string(lp_t *lp, const char *key, int required, const char **out)
{
    const cJSON *it;
    if (lp_get(lp, key, 's', required, 1, &it) != 0)
        return -1;
    *out = it ? it->valuestring : NULL;
    return 0;
}

static int parse_record(lp_t *lp, report_record_t *r)
{
    const cJSON *it;
    const char *s;
    memset(r, 0, sizeof *r);
    if (lp_get(lp, "ts", 's', 1, 0, &it) != 0)
        return -1;
    if (report_parse_time(it->valuestring, &r->ts_us) != 0)
        return lp_fail(lp, "`ts` is not an ISO-8601 time");
    if (lp_get(lp, "variant", 's', 1, 0, &it) != 0)
        return -1;
    if (strcmp(it->valuestring, "new") == 0)
        r->variant = REPORT_NEW;
    else if (strcmp(it->valuestring, "original") == 0)
        r->variant = REPORT_ORIGINAL;
    else
        return lp_fail(lp, "`variant` is neither \"new\" nor \"original\"");
    if (lp_get(lp, "flag_percentage", 'n', 1, 0, &it) != 0)
        return -1;
    r->flag_percentage = it->valuedouble;
    if (r->flag_percentage < 0 || r->flag_percentage > 100)
        return lp_fail(lp, "`flag_percentage` is outside 0..100");
    if (lp_get(lp, "status", 'n', 1, 0, &it) != 0)
        return -1;
    if (it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 || it->valuedouble > 999)
        return lp_fail(lp, "`status` is not an HTTP status");
    r->status = (int)it->valuedouble;
    if (lp_nonneg(lp, "latency_ms", 1, 0, NULL, &r->latency_ms) != 0 ||
        lp_nonneg(lp, "first_byte_ms", 0, 1, &r->has_first_byte, &r->first_byte_ms) != 0 ||
        lp_string(lp, "model", 0, &r->model) != 0 ||
        lp_string(lp, "provider", 0, &r->provider) != 0 ||
        lp_tokens(lp, "tokens_in", &r->tokens_in) != 0 ||
        lp_tokens(lp, "tokens_out", &r->tokens_out) != 0 ||
        lp_tokens(lp, "tokens_cached", &r->tokens_cached) != 0 ||
        lp_nonneg(lp, "cost_usd", 0, 1, &r->has_cost, &r->cost_usd) != 0 ||
        lp_nonneg(lp, "cost_if_original_usd", 0, 1, &r->has_cost_if_original,
                  &r->cost_if_original_usd) != 0 ||
        lp_nonneg(lp, "wasted_cost_usd", 0, 1, NULL, &r->wasted_cost_usd) != 0 ||
        lp_string(lp, "fallback", 0, &s) != 0 || lp_get(lp, "truncated", 'b', 0, 1, &it) != 0)
        return -1;
    r->fallback = s != NULL;
    r->truncated = it != NULL && cJSON_IsTrue(it);
    /* A client that left during its answer had status 200 sent already: the last
     * attempt says it left. */
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(lp->obj, "attempts");
    int n = cJSON_IsArray(attempts) ? cJSON_GetArraySize(attempts) : 0;
    const cJSON *last = n > 0 ? cJSON_GetArrayItem(attempts, n - 1) : NULL;
    const cJSON *cls = last ? cJSON_GetObjectItemCaseSensitive(last, "class") : NULL;
    r->client_left = cJSON_IsString(cls) && strcmp(cls->valuestring, "client_closed") == 0;
    return 0;
}

int report_agg_add_line(report_agg_t *a, const char *line, size_t len, char *why, size_t why_cap)
{
    if (why != NULL && why_cap > 0)
        why[0] = '\0';
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    size_t k = 0;
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (k == len)
        return REPORT_LINE_BLANK;
    a->read++;
    lp_t lp = {.why = why, .why_cap = why_cap};
    if (memchr(line, '\0', len) != NULL) {
        a->malformed++;
        lp_fail(&lp, "contains a NUL byte");
        return REPORT_ERR_MALFORMED;
    }
    /* cJSON wants a NUL-terminated copy (see DESIGN.md §6) */
    char stackbuf[2048];
    char *buf = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
    if (buf == NULL)
        return REPORT_ERR_NOMEM;
    memcpy(buf, line, len);
    buf[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    int rc;
    report_record_t rec;
    if (root == NULL) {
        lp_fail(&lp, "not valid JSON (at byte %zu)", end ? (size_t)(end - buf) + 1 : (size_t)1);
        rc = REPORT_ERR_MALFORMED;
    } else if (!cJSON_IsObject(root)) {
        lp_fail(&lp, "not a JSON object");
        rc = REPORT_ERR_MALFORMED;
    } else {
        lp.obj = root;
        rc = parse_record(&lp, &rec) == 0 ? report_agg_add(a, &rec) : REPORT_ERR_MALFORMED;
    }
    if (rc == REPORT_ERR_MALFORMED)
        a->malformed++;
    cJSON_Delete(root);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

/* ---------------------------------------------------------------- the result */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static report_quantiles_t quantiles(dvec_t *d)
{
    report_quantiles_t q = {.n = d->n};
    if (d->n == 0)
        return q;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    /* nearest rank: 1-based rank ceil(p * n / 100) */
    q.p50 = d->v[(50 * d->n + 99) / 100 - 1];
    q.p95 = d->v[(95 * d->n + 99) / 100 - 1];
    q.p99 = d->v[(99 * d->n + 99) / 100 - 1];
    return q;
}

static int provider_rank(const report_group_t *g)
{
    if (g->provider == NULL)
        return 3;
    return g->role >= 0 ? g->role : 2;
}

static int cmp_group(const void *x, const void *y)
{
    const report_group_t *a = x, *b = y;
    if ((a->model == NULL) != (b->model == NULL))
        return a->model == NULL ? 1 : -1;
    int c = a->model ? strcmp(a->model, b->model) : 0;
    if (c != 0)
        return c;
    int ra = provider_rank(a), rb = provider_rank(b);
    if (ra != rb)
        return ra - rb;
    return ra == 2 ? strcmp(a->provider, b->provider) : 0;
}

static int cmp_stage(const void *x, const void *y)
{
    const stage_t *a = *(stage_t *const *)x, *b = *(stage_t *const *)y;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static const report_price_t *find_price(const report_agg_t *a, int role, const char *model)
{
    for (size_t i = 0; i < a->n_prices[role]; i++)
        if (strcmp(a->prices[role][i].model, model) == 0)
            return &a->prices[role][i].p;
    return NULL;
}

/* USD for a token mix at a price (USD per million tokens): the formula of
 * docs/ACCESS_LOG.md and pricing_cost (cached tokens are part of the input ones). */
static double cost_at(const report_price_t *p, double in, double cached, double out)
{
    if (cached > in)
        cached = in;
    return ((in - cached) * p->input + cached * p->cached_input + out * p->output) / 1e6;
}

static size_t find_model(const report_agg_t *a, const char *name)
{
    if (a->cap_slots == 0)
        return 0;
    return *slot_for(a->model_slots, a->cap_slots, a->models, name);
}

static int fill_migration(const report_agg_t *a, report_migration_t *row, const char *name,
                          double duration_s)
{
    if ((row->model = strdup(name)) == NULL)
        return -1;
    const report_price_t *po = find_price(a, REPORT_ORIGINAL, name);
    const report_price_t *pn = find_price(a, REPORT_NEW, name);
    if (po != NULL) {
        row->has_original = 1;
        row->original = *po;
    }
    if (pn != NULL) {
        row->has_new = 1;
        row->new_price = *pn;
    }
    size_t mi = find_model(a, name);
    if (mi != 0) {
        const model_t *m = &a->models[mi];
        row->requests = m->requests;
        row->requests_new = m->requests_new;
        row->tokens_in = m->tokens_in;
        row->tokens_out = m->tokens_out;
        row->tokens_cached = m->tokens_cached;
        row->measured_saving_usd = ksum_get(&m->measured);
    }
    int have_duration = duration_s >= 1.0;
    if (have_duration) {
        row->has_projected = 1;
        row->projected_30d_saving_usd = row->measured_saving_usd / duration_s * SECONDS_30D;
    }
    if (po != NULL && pn != NULL) {
        double in = (double)row->tokens_in, cached = (double)row->tokens_cached,
               out = (double)row->tokens_out;
        double co_obs = cost_at(po, in, cached, out), cn_obs = cost_at(pn, in, cached, out);
        double co = co_obs, cn = cn_obs;
        if (row->tokens_in + row->tokens_out == 0) {
            co = po->input + po->output; /* 1M input + 1M output tokens */
            cn = pn->input + pn->output;
        }
        if (co > 0) {
            row->has_saving = 1;
            row->saving_pct = 100.0 * (1.0 - cn / co);
        }
        if (have_duration) {
            row->has_projected_100 = 1;
            row->projected_30d_saving_at_100pct_usd = (co_obs - cn_obs) / duration_s * SECONDS_30D;
        }
    }
    return 0;
}

static int build_migration(const report_agg_t *a, report_t *r)
{
    size_t cap = a->n_prices[REPORT_ORIGINAL] + a->n_models;
    r->migration = calloc(cap ? cap : 1, sizeof *r->migration);
    char **rest = calloc(a->n_models ? a->n_models : 1, sizeof *rest);
    if (r->migration == NULL || rest == NULL) {
        free(rest);
        return -1;
    }
    for (size_t i = 0; i < a->n_prices[REPORT_ORIGINAL]; i++) {
        const char *name = a->prices[REPORT_ORIGINAL][i].model;
        if (find_price(a, REPORT_NEW, name) == NULL)
            continue;
        if (fill_migration(a, &r->migration[r->n_migration++], name, r->duration_s) != 0)
            goto fail;
    }
    size_t n_rest = 0;
    for (size_t i = 1; i < a->n_models; i++) {
        const char *name = a->models[i].name;
        if (find_price(a, REPORT_ORIGINAL, name) == NULL || find_price(a, REPORT_NEW, name) == NULL)
            rest[n_rest++] = a->models[i].name;
    }
    qsort(rest, n_rest, sizeof *rest, cmp_str);
    for (size_t i = 0; i < n_rest; i++)
        if (fill_migration(a, &r->migration[r->n_migration++], rest[i], r->duration_s) != 0)
            goto fail;
    free(rest);
    return 0;
fail:
    free(rest);
    return -1;
}

report_t *report_agg_finish(report_agg_t *a)
{
    report_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->since = a->since;
    r->until = a->until;
    r->first_ts = a->first;
    r->last_ts = a->last;
    r->duration_s = a->first == REPORT_TIME_NONE ? 0 : (double)(a->last - a->first) / 1e6;
    r->lines.read = a->read;
    r->lines.used = a->used;
    r->lines.malformed = a->malformed;
    r->lines.filtered = a->filtered;
    r->totals = acc_counts(&a->totals);
    if ((a->names[REPORT_ORIGINAL] != NULL &&
         (r->original_name = strdup(a->names[REPORT_ORIGINAL])) == NULL) ||
        (a->names[REPORT_NEW] != NULL && (r->new_name = strdup(a->names[REPORT_NEW])) == NULL))
        goto fail;

    r->groups = calloc(a->n_groups ? a->n_groups : 1, sizeof *r->groups);
    if (r->groups == NULL)
        goto fail;
    for (size_t i = 0; i < a->n_groups; i++) {
        group_t *g = &a->groups[i];
        report_group_t *o = &r->groups[r->n_groups++];
        const char *model = a->models[g->model].name, *prov = a->provs[g->provider].name;
        if ((model != NULL && (o->model = strdup(model)) == NULL) ||
            (prov != NULL && (o->provider = strdup(prov)) == NULL))
            goto fail;
        o->role = a->provs[g->provider].role;
        o->c = acc_counts(&g->acc);
        o->latency_ms = quantiles(&g->lat);
        o->first_byte_ms = quantiles(&g->fb);
    }
    qsort(r->groups, r->n_groups, sizeof *r->groups, cmp_group);

    stage_t **order = calloc(a->n_stages ? a->n_stages : 1, sizeof *order);
    r->stages = calloc(a->n_stages ? a->n_stages : 1, sizeof *r->stages);
    if (order == NULL || r->stages == NULL) {
        free(order);
        goto fail;
    }
    for (size_t i = 0; i < a->n_stages; i++)
        order[i] = &a->stages[i];
    qsort(order, a->n_stages, sizeof *order, cmp_stage);
    for (size_t i = 0; i < a->n_stages; i++) {
        report_stage_t *o = &r->stages[r->n_stages++];
        o->flag_percentage = order[i]->pct;
        o->first_ts = order[i]->first;
        o->last_ts = order[i]->last;
        for (int v = 0; v < 2; v++) {
            o->variant[v].c = acc_counts(&order[i]->acc[v]);
            o->variant[v].latency_ms = quantiles(&order[i]->lat[v]);
        }
    }
    free(order);

    if (build_migration(a, r) != 0)
        goto fail;
    return r;
fail:
    report_free(r);
    return NULL;
}

void report_free(report_t *r)
{
    if (r == NULL)
        return;
    free(r->original_name);
    free(r->new_name);
    for (size_t i = 0; i < r->n_groups; i++) {
        free(r->groups[i].provider);
        free(r->groups[i].model);
    }
    free(r->groups);
    free(r->stages);
    for (size_t i = 0; i < r->n_migration; i++)
        free(r->migration[i].model);
    free(r->migration);
    free(r);
}
