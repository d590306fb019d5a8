/*
 * test_report.c — unit tests for `switchyard report` (router/report.c,
 * report_render.c, report_cli.c).
 *
 * The fixture tests/fixtures/report/access.jsonl holds 13 lines: 12 requests
 * over two providers (openai = original, relay = new) and three models, one
 * fallback, one truncated stream, one 502, one client that left, one model
 * without a price (`acme,large-v1`, also the CSV quoting case), two rollout
 * stages (10% and 50%), and one malformed line (line 7). Every figure checked
 * below is computed by hand in the comments, from that file and the prices in
 * tests/fixtures/report/config.yaml:
 *
 *   openai  gpt-4.1      in 2.00  out 8.00  cached 0.50   (USD per million tokens)
 *   relay   gpt-4.1      in 1.00  out 3.00  cached 0.25
 *   openai  gpt-4o-mini  in 0.15  out 0.60
 *   relay   gpt-4o-mini  in 0.10  out 0.40
 *
 *   #  ts     variant   stage provider model          status lat   fb    in/out/cached    cost
 * cost_if_orig 1  10:00  original  10    openai   gpt-4.1        200    1200  300   1000/500/200
 * 0.0057    0.0057 2  10:01  new       10    relay    gpt-4.1        200     800  200   2000/1000/0
 * 0.005     0.012 3  10:02  original  10    openai   gpt-4o-mini    200     400  100   500/100/0
 * 0.000135  0.000135 4  10:03  new       10    openai   gpt-4.1        200    2500  1500 1000/200/0
 * 0.0036    0.0036 (fallback from relay; wasted 0.00025) 5  10:04  original  10    openai   gpt-4.1
 * 502    3000  null  0/0/0            0         0 6  10:05  new       10    relay    gpt-4.1 200
 * 5000  250   300/400/0        0.0015    0.0038 (truncated stream) 7  malformed 8  10:06  original
 * 10    openai   acme,large-v1  200     600  150   100/50/0         null      null 9  10:07  new 10
 * relay    gpt-4o-mini    0       900  120   200/30/0         0.000032  0.000048 10  10:10  new 50
 * relay    gpt-4.1        200     700  180   4000/2000/1000   0.00925   0.0225 11  10:12  new 50
 * relay    gpt-4o-mini    200     350  90    1000/500/0       0.0003    0.00045 12  10:15  original
 * 50    openai   gpt-4.1        200    1500  400   1500/600/0       0.0078    0.0078 13  10:20  new
 * 50    relay    gpt-4.1        200     650  160   1000/1000/0      0.004     0.01
 *
 * Run from the repository root (fixtures and configs are read by relative path).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "report.h"

#define FIX_LOG "tests/fixtures/report/access.jsonl"
#define FIX_CONFIG "tests/fixtures/report/config.yaml"
#define PRICE_TABLE "configs/examples/price-table.yaml"
#define T(s) parse_ts(s)
#define run(out, err, ...) run_args(out, err, __VA_ARGS__, (char *)NULL)

#define assert_money(got, want)                                                                    \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        if (!(fabs(g_ - w_) < 1e-9))                                                               \
            fail_msg("%s = %.17g, want %.17g", #got, g_, w_);                                      \
    } while (0)

#define assert_num(got, want)                                                                      \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        if (!(fabs(g_ - w_) < 1e-9 * (1 + fabs(w_))))                                              \
            fail_msg("%s = %.17g, want %.17g", #got, g_, w_);                                      \
    } while (0)

static int64_t parse_ts(const char *s)
{
    int64_t us = 0;
    if (report_parse_time(s, &us) != 0)
        fail_msg("bad time in test: %s", s);
    return us;
}

static config_t *load_config(const char *path)
{
    config_errors_t errs = {0};
    config_t *c = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    %s\n", errs.lines[i]);
    config_errors_free(&errs);
    if (c == NULL)
        fail_msg("config %s does not load", path);
    return c;
}

/* The fixture through the aggregator, as the CLI feeds it. */
static report_t *fixture_report(int64_t since, int64_t until)
{
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, since, until);
    config_unref(cfg);
    assert_non_null(a);
    FILE *f = fopen(FIX_LOG, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        int rc = report_agg_add_line(a, line, (size_t)n, NULL, 0);
        assert_true(rc != REPORT_ERR_NOMEM);
    }
    free(line);
    fclose(f);
    report_t *r = report_agg_finish(a);
    report_agg_free(a);
    assert_non_null(r);
    return r;
}

static const report_group_t *group(const report_t *r, const char *provider, const char *model)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (r->groups[i].provider && r->groups[i].model &&
            strcmp(r->groups[i].provider, provider) == 0 && strcmp(r->groups[i].model, model) == 0)
            return &r->groups[i];
    fail_msg("no group %s / %s", provider, model);
    return NULL;
}

static const report_migration_t *migration(const report_t *r, const char *model)
{
    for (size_t i = 0; i < r->n_migration; i++)
        if (strcmp(r->migration[i].model, model) == 0)
            return &r->migration[i];
    fail_msg("no migration row for %s", model);
    return NULL;
}

/* Runs the command with the arguments after `report` (NULL-terminated); its stdout
 * and stderr come back as strings (free them). */
static int run_args(char **out, char **err, ...)
{
    char *argv[32];
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    argv[0] = "report";
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    FILE *fo = tmpfile(), *fe = tmpfile();
    assert_non_null(fo);
    assert_non_null(fe);
    int rc = report_run(argc, argv, fo, fe);
    FILE *fs[2] = {fo, fe};
    char **dst[2] = {out, err};
    for (int k = 0; k < 2; k++) {
        long len = ftell(fs[k]);
        rewind(fs[k]);
        char *s = malloc((size_t)len + 1);
        assert_non_null(s);
        assert_int_equal(fread(s, 1, (size_t)len, fs[k]), (size_t)len);
        s[len] = '\0';
        fclose(fs[k]);
        if (dst[k] != NULL)
            *dst[k] = s;
        else
            free(s);
    }
    return rc;
}

static const cJSON *jget(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (it == NULL)
        fail_msg("JSON has no `%s`", key);
    return it;
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *it = jget(o, key);
    if (!cJSON_IsNumber(it))
        fail_msg("JSON `%s` is not a number", key);
    return it->valuedouble;
}

/* ---------------------------------------------------------------- time */

static void test_parse_time(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(report_parse_time("1970-01-01T00:00:00Z", &us), 0);
    assert_true(us == 0);
    assert_int_equal(report_parse_time("2026-11-27T10:00:00Z", &us), 0);
    assert_true(us == 1795773600LL * 1000000);
    assert_int_equal(report_parse_time("2026-11-27T10:00:00.123Z", &us), 0);
    assert_true(us == 1795773600LL * 1000000 + 123000);
    assert_int_equal(report_parse_time("2026-11-27T10:00:00.1234567Z", &us), 0);
    assert_true(us == 1795773600LL * 1000000 + 123456); /* digits past 6 truncated */
    assert_int_equal(report_parse_time("2026-11-27", &us), 0);
    assert_true(us == 1795737600LL * 1000000);
    assert_int_equal(report_parse_time("2026-11-27T12:00:00+02:00", &us), 0);
    assert_true(us == 1795773600LL * 1000000);
    assert_int_equal(report_parse_time("2026-11-27T10:00", &us), 0); /* no seconds, UTC */
    assert_true(us == 1795773600LL * 1000000);
    assert_int_equal(report_parse_time("2024-02-29T00:00:00Z", &us), 0);

    const char *bad[] = {"",
                         "2026",
                         "2026-11",
                         "2026-13-01",
                         "2026-02-29",
                         "2026-11-31",
                         "2026-11-27T24:00:00Z",
                         "2026-11-27T10:60:00Z",
                         "2026-11-27T10:00:00.Z",
                         "2026-11-27T10:00:00Zjunk",
                         "2026-11-27X10:00:00Z",
                         "27/11/2026",
                         "2026-11-27T10:00:00+2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (report_parse_time(bad[i], &us) == 0)
            fail_msg("accepted `%s`", bad[i]);

    char b[REPORT_TIME_BUF];
    report_format_time(T("2026-11-27T10:00:00Z"), b);
    assert_string_equal(b, "2026-11-27T10:00:00Z");
    report_format_time(T("2026-11-27T10:00:00.5Z"), b);
    assert_string_equal(b, "2026-11-27T10:00:00.500Z");
    report_format_time(T("2026-11-27T23:59:59.000001Z"), b);
    assert_string_equal(b, "2026-11-27T23:59:59.000001Z");
    report_format_time(T("1969-12-31T23:59:59.5Z"), b);
    assert_string_equal(b, "1969-12-31T23:59:59.500Z");
}

/* ---------------------------------------------------------------- pure figures */

static report_record_t plain(int64_t ts, double latency)
{
    report_record_t r = {.ts_us = ts,
                         .model = "m",
                         .provider = "relay",
                         .variant = REPORT_NEW,
                         .flag_percentage = 100,
                         .status = 200,
                         .latency_ms = latency,
                         .has_cost = 1};
    return r;
}

/* Nearest rank: p-th percentile of N sorted values = value at rank ceil(p*N/100). */
static void test_quantiles_nearest_rank(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    /* 1..100 in a shuffled order: p50 = 50, p95 = 95, p99 = 99 */
    for (int i = 0; i < 100; i++) {
        report_record_t r = plain(i, (double)((i * 37) % 100 + 1));
        assert_int_equal(report_agg_add(a, &r), REPORT_LINE_USED);
    }
    report_t *r = report_agg_finish(a);
    assert_int_equal(r->n_groups, 1);
    assert_int_equal(r->groups[0].latency_ms.n, 100);
    assert_num(r->groups[0].latency_ms.p50, 50);
    assert_num(r->groups[0].latency_ms.p95, 95);
    assert_num(r->groups[0].latency_ms.p99, 99);
    assert_int_equal(r->groups[0].first_byte_ms.n, 0); /* none had a first byte */
    report_free(r);

    /* one more value (101 of them): ranks 51, 96, 100 */
    report_record_t x = plain(100, 1000);
    report_agg_add(a, &x);
    r = report_agg_finish(a);
    assert_num(r->groups[0].latency_ms.p50, 51);
    assert_num(r->groups[0].latency_ms.p95, 96);
    assert_num(r->groups[0].latency_ms.p99, 100);
    report_free(r);
    report_agg_free(a);

    /* a single value is every quantile */
    a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    report_record_t one = plain(0, 42.5);
    report_agg_add(a, &one);
    r = report_agg_finish(a);
    assert_num(r->groups[0].latency_ms.p50, 42.5);
    assert_num(r->groups[0].latency_ms.p99, 42.5);
    assert_true(r->duration_s == 0);
    /* under one second of traffic: no projection */
    const report_migration_t *m = migration(r, "gpt-4.1");
    assert_false(m->has_projected);
    assert_false(m->has_projected_100);
    report_free(r);
    report_agg_free(a);
    config_unref(cfg);
}

static void test_fixture_totals(void **state)
{
    (void)state;
    report_t *r = fixture_report(REPORT_TIME_NONE, REPORT_TIME_NONE);
    assert_int_equal(r->lines.read, 13); /* the trailing blank line is not counted */
    assert_int_equal(r->lines.used, 12);
    assert_int_equal(r->lines.malformed, 1);
    assert_int_equal(r->lines.filtered, 0);
    assert_true(r->first_ts == T("2026-11-27T10:00:00Z"));
    assert_true(r->last_ts == T("2026-11-27T10:20:00Z"));
    assert_num(r->duration_s, 1200);
    assert_string_equal(r->original_name, "openai");
    assert_string_equal(r->new_name, "relay");

    const report_counts_t *t = &r->totals;
    assert_int_equal(t->requests, 12);
    assert_int_equal(t->errors, 2);        /* #5 (502), #6 (truncated) */
    assert_int_equal(t->client_closed, 1); /* #9 */
    assert_int_equal(t->fallbacks, 1);     /* #4 */
    /* 1000+2000+500+1000+0+300+100+200+4000+1000+1500+1000 */
    assert_int_equal(t->tokens_in, 12600);
    /* 500+1000+100+200+0+400+50+30+2000+500+600+1000 */
    assert_int_equal(t->tokens_out, 6380);
    assert_int_equal(t->tokens_cached, 1200); /* 200 + 1000 */
    /* all known costs: #8 is unknown */
    assert_money(t->cost_usd, 0.0057 + 0.005 + 0.000135 + 0.0036 + 0 + 0.0015 + 0.000032 + 0.00925 +
                                  0.0003 + 0.0078 + 0.004); /* 0.037317 */
    assert_money(t->cost_usd, 0.037317);
    assert_int_equal(t->requests_cost_unknown, 1);
    assert_money(t->cost_if_original_usd, 0.066033);
    assert_money(t->wasted_cost_usd, 0.00025);
    report_free(r);
}

static void test_fixture_by_provider_model(void **state)
{
    (void)state;
    report_t *r = fixture_report(REPORT_TIME_NONE, REPORT_TIME_NONE);
    assert_int_equal(r->n_groups, 5);
    /* order: by model, original before new */
    const char *order[5][2] = {{"openai", "acme,large-v1"},
                               {"openai", "gpt-4.1"},
                               {"relay", "gpt-4.1"},
                               {"openai", "gpt-4o-mini"},
                               {"relay", "gpt-4o-mini"}};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(r->groups[i].provider, order[i][0]);
        assert_string_equal(r->groups[i].model, order[i][1]);
    }

    /* openai gpt-4.1: #1 #4 #5 #12; latency 1200 1500 2500 3000 (n=4: ranks 2, 4, 4);
     * first byte 300 400 1500 (#5 has none; n=3: ranks 2, 3, 3) */
    const report_group_t *g = group(r, "openai", "gpt-4.1");
    assert_int_equal(g->role, CONFIG_ROLE_ORIGINAL);
    assert_int_equal(g->c.requests, 4);
    assert_int_equal(g->c.errors, 1);
    assert_int_equal(g->c.fallbacks, 1);
    assert_num(g->latency_ms.p50, 1500);
    assert_num(g->latency_ms.p95, 3000);
    assert_num(g->latency_ms.p99, 3000);
    assert_int_equal(g->first_byte_ms.n, 3);
    assert_num(g->first_byte_ms.p50, 400);
    assert_num(g->first_byte_ms.p95, 1500);
    assert_num(g->first_byte_ms.p99, 1500);
    assert_int_equal(g->c.tokens_in, 3500);
    assert_int_equal(g->c.tokens_out, 1300);
    assert_int_equal(g->c.tokens_cached, 200);
    assert_money(g->c.cost_usd, 0.0057 + 0.0036 + 0 + 0.0078); /* 0.0171 */
    assert_int_equal(g->c.requests_cost_unknown, 0);

    /* relay gpt-4.1: #2 #6 #10 #13; latency 650 700 800 5000; first byte 160 180 200 250 */
    g = group(r, "relay", "gpt-4.1");
    assert_int_equal(g->role, CONFIG_ROLE_NEW);
    assert_int_equal(g->c.requests, 4);
    assert_int_equal(g->c.errors, 1); /* #6 truncated */
    assert_int_equal(g->c.fallbacks, 0);
    assert_num(g->latency_ms.p50, 700);
    assert_num(g->latency_ms.p95, 5000);
    assert_num(g->latency_ms.p99, 5000);
    assert_num(g->first_byte_ms.p50, 180);
    assert_num(g->first_byte_ms.p95, 250);
    assert_int_equal(g->c.tokens_in, 7300);
    assert_int_equal(g->c.tokens_out, 4400);
    assert_int_equal(g->c.tokens_cached, 1000);
    assert_money(g->c.cost_usd, 0.005 + 0.0015 + 0.00925 + 0.004); /* 0.01975 */

    /* relay gpt-4o-mini: #9 (client left) #11; latency 350 900 (n=2: ranks 1, 2, 2) */
    g = group(r, "relay", "gpt-4o-mini");
    assert_int_equal(g->c.requests, 2);
    assert_int_equal(g->c.errors, 0);
    assert_int_equal(g->c.client_closed, 1);
    assert_num(g->latency_ms.p50, 350);
    assert_num(g->latency_ms.p95, 900);
    assert_num(g->first_byte_ms.p50, 90);
    assert_num(g->first_byte_ms.p99, 120);
    assert_money(g->c.cost_usd, 0.000032 + 0.0003);

    g = group(r, "openai", "acme,large-v1");
    assert_int_equal(g->c.requests, 1);
    assert_int_equal(g->c.requests_cost_unknown, 1); /* all unknown: null in JSON */
    assert_num(g->latency_ms.p50, 600);
    report_free(r);
}

static void test_fixture_stages(void **state)
{
    (void)state;
    report_t *r = fixture_report(REPORT_TIME_NONE, REPORT_TIME_NONE);
    assert_int_equal(r->n_stages, 2);
    const report_stage_t *s = &r->stages[0];
    assert_num(s->flag_percentage, 10);
    assert_true(s->first_ts == T("2026-11-27T10:00:00Z"));
    assert_true(s->last_ts == T("2026-11-27T10:07:00Z"));
    /* new at 10%: #2 #4 #6 #9; errors #6; latency 800 900 2500 5000 -> p95 rank 4 */
    const report_variant_t *v = &s->variant[REPORT_NEW];
    assert_int_equal(v->c.requests, 4);
    assert_int_equal(v->c.errors, 1);
    assert_num(v->latency_ms.p95, 5000);
    assert_money(v->c.cost_usd, 0.005 + 0.0036 + 0.0015 + 0.000032); /* 0.010132 */
    /* original at 10%: #1 #3 #5 #8; errors #5; latency 400 600 1200 3000 */
    v = &s->variant[REPORT_ORIGINAL];
    assert_int_equal(v->c.requests, 4);
    assert_int_equal(v->c.errors, 1);
    assert_num(v->latency_ms.p95, 3000);
    assert_money(v->c.cost_usd, 0.0057 + 0.000135 + 0); /* #8 unknown */
    assert_int_equal(v->c.requests_cost_unknown, 1);

    s = &r->stages[1];
    assert_num(s->flag_percentage, 50);
    assert_true(s->first_ts == T("2026-11-27T10:10:00Z"));
    assert_true(s->last_ts == T("2026-11-27T10:20:00Z"));
    /* new at 50%: #10 #11 #13; latency 350 650 700 -> p95 rank 3 */
    v = &s->variant[REPORT_NEW];
    assert_int_equal(v->c.requests, 3);
    assert_int_equal(v->c.errors, 0);
    assert_num(v->latency_ms.p95, 700);
    assert_money(v->c.cost_usd, 0.00925 + 0.0003 + 0.004); /* 0.01355 */
    v = &s->variant[REPORT_ORIGINAL];
    assert_int_equal(v->c.requests, 1);
    assert_num(v->latency_ms.p95, 1500);
    assert_money(v->c.cost_usd, 0.0078);
    report_free(r);
}

static void test_fixture_migration(void **state)
{
    (void)state;
    report_t *r = fixture_report(REPORT_TIME_NONE, REPORT_TIME_NONE);
    /* priced at both providers in config order, then the log's other models */
    assert_int_equal(r->n_migration, 3);
    assert_string_equal(r->migration[0].model, "gpt-4.1");
    assert_string_equal(r->migration[1].model, "gpt-4o-mini");
    assert_string_equal(r->migration[2].model, "acme,large-v1");

    /* gpt-4.1, all 8 requests (#1 #2 #4 #5 #6 #10 #12 #13): in 10800, out 5700, cached 1200
     * at original: (9600*2 + 1200*0.5 + 5700*8) / 1e6 = 65400 / 1e6 = 0.0654
     * at new:      (9600*1 + 1200*0.25 + 5700*3) / 1e6 = 27000 / 1e6 = 0.027
     * saving = 1 - 0.027 / 0.0654 = 58.7155...%
     * measured (served by relay: #2 #6 #10 #13):
     *   (0.012-0.005) + (0.0038-0.0015) + (0.0225-0.00925) + (0.01-0.004) = 0.02855
     * duration 1200 s: 30 days = 2592000 s = 2160 x the window
     *   projected = 0.02855 * 2160 = 61.668; at 100% = (0.0654 - 0.027) * 2160 = 82.944 */
    const report_migration_t *m = migration(r, "gpt-4.1");
    assert_true(m->has_original && m->has_new);
    assert_num(m->original.input, 2.0);
    assert_num(m->original.output, 8.0);
    assert_num(m->original.cached_input, 0.5);
    assert_num(m->new_price.output, 3.0);
    assert_int_equal(m->requests, 8);
    assert_int_equal(m->requests_new, 4);
    assert_int_equal(m->tokens_in, 10800);
    assert_int_equal(m->tokens_out, 5700);
    assert_int_equal(m->tokens_cached, 1200);
    assert_true(m->has_saving);
    assert_num(m->saving_pct, 100.0 * (1.0 - 0.027 / 0.0654));
    assert_money(m->measured_saving_usd, 0.02855);
    assert_true(m->has_projected);
    assert_money(m->projected_30d_saving_usd, 61.668);
    assert_true(m->has_projected_100);
    assert_money(m->projected_30d_saving_at_100pct_usd, 82.944);

    /* gpt-4o-mini, #3 #9 #11: in 1700, out 630
     * at original: (1700*0.15 + 630*0.60) / 1e6 = 0.000633; at new: (170 + 252) / 1e6 = 0.000422
     * saving = 1 - 0.000422 / 0.000633 = 33.33...%
     * measured (#9 #11): (0.000048-0.000032) + (0.00045-0.0003) = 0.000166
     * projected = 0.000166 * 2160 = 0.35856; at 100% = 0.000211 * 2160 = 0.45576 */
    m = migration(r, "gpt-4o-mini");
    assert_int_equal(m->requests, 3);
    assert_int_equal(m->requests_new, 2);
    assert_num(m->saving_pct, 100.0 / 3.0);
    assert_money(m->measured_saving_usd, 0.000166);
    assert_money(m->projected_30d_saving_usd, 0.35856);
    assert_money(m->projected_30d_saving_at_100pct_usd, 0.45576);

    /* no price anywhere: what is known */
    m = migration(r, "acme,large-v1");
    assert_false(m->has_original);
    assert_false(m->has_new);
    assert_false(m->has_saving);
    assert_money(m->measured_saving_usd, 0);
    assert_false(m->has_projected_100);
    assert_int_equal(m->requests, 1);
    report_free(r);
}

static void test_since_until(void **state)
{
    (void)state;
    /* since is inclusive: #10 at 10:10:00 is in */
    report_t *r = fixture_report(T("2026-11-27T10:10:00Z"), REPORT_TIME_NONE);
    assert_int_equal(r->lines.used, 4);
    assert_int_equal(r->lines.filtered, 8);
    assert_int_equal(r->lines.malformed, 1);
    assert_int_equal(r->n_stages, 1);
    assert_num(r->duration_s, 600);
    assert_money(r->totals.cost_usd, 0.00925 + 0.0003 + 0.0078 + 0.004);
    /* gpt-4.1 measured: #10 #13 = 0.01325 + 0.006; over 600 s: x 4320 */
    const report_migration_t *m = migration(r, "gpt-4.1");
    assert_money(m->measured_saving_usd, 0.01925);
    assert_money(m->projected_30d_saving_usd, 0.01925 * 4320);
    assert_true(r->since == T("2026-11-27T10:10:00Z"));
    assert_true(r->until == REPORT_TIME_NONE);
    report_free(r);

    /* until is exclusive: #13 at 10:20:00 is out; fractional seconds count */
    r = fixture_report(T("2026-11-27T10:03:00.000001Z"), T("2026-11-27T10:20:00Z"));
    /* #5 #6 #8 #9 #10 #11 #12 */
    assert_int_equal(r->lines.used, 7);
    assert_int_equal(r->lines.filtered, 5);
    assert_true(r->first_ts == T("2026-11-27T10:04:00Z"));
    assert_true(r->last_ts == T("2026-11-27T10:15:00Z"));
    assert_int_equal(r->totals.errors, 2);
    assert_int_equal(r->totals.fallbacks, 0);
    report_free(r);

    /* a date alone is its midnight: nothing on the 27th is before it */
    r = fixture_report(REPORT_TIME_NONE, T("2026-11-27"));
    assert_int_equal(r->lines.used, 0);
    assert_true(r->first_ts == REPORT_TIME_NONE);
    assert_int_equal(r->n_groups, 0);
    assert_int_equal(r->n_migration, 2); /* the priced models still get their row */
    assert_false(r->migration[0].has_projected);
    char *s = report_render(r, REPORT_JSON);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_true(cJSON_IsNull(jget(jget(j, "window"), "first_ts")));
    cJSON_Delete(j);
    free(s);
    report_free(r);

    /* the CLI: the same window, and the stage table is only printed for 2+ stages */
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--since=2026-11-27T10:10:00Z", "--format",
                         "json", FIX_LOG),
                     0);
    j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(jget(jget(j, "window"), "since")->valuestring, "2026-11-27T10:10:00Z");
    assert_true(cJSON_IsNull(jget(jget(j, "window"), "until")));
    assert_num(jnum(jget(j, "totals"), "requests"), 4);
    assert_int_equal(cJSON_GetArraySize(jget(j, "by_stage")), 1);
    cJSON_Delete(j);
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--since", "2026-11-27T10:10:00Z", FIX_LOG),
                     0);
    assert_null(strstr(out, "ROLLOUT STAGES"));
    assert_non_null(strstr(out, "MIGRATION"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--until=2026-11-27", FIX_LOG), 0);
    assert_non_null(strstr(err, "no requests in the --since / --until window"));
    free(out);
    free(err);
}

/* ---------------------------------------------------------------- formats */

static void test_render_json(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--format", "json", FIX_LOG, FIX_LOG), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    const cJSON *w = jget(j, "window");
    assert_true(cJSON_IsNull(jget(w, "since")));
    assert_string_equal(jget(w, "first_ts")->valuestring, "2026-11-27T10:00:00Z");
    assert_string_equal(jget(w, "last_ts")->valuestring, "2026-11-27T10:20:00Z");
    assert_num(jnum(w, "duration_s"), 1200);
    /* the file twice: everything doubles, the window does not */
    const cJSON *l = jget(j, "lines");
    assert_num(jnum(l, "read"), 26);
    assert_num(jnum(l, "used"), 24);
    assert_num(jnum(l, "malformed"), 2);
    const cJSON *t = jget(j, "totals");
    assert_num(jnum(t, "requests"), 24);
    assert_num(jnum(t, "errors"), 4);
    assert_num(jnum(t, "client_closed"), 2);
    assert_num(jnum(t, "fallbacks"), 2);
    assert_num(jnum(t, "tokens_in"), 25200);
    assert_num(jnum(t, "tokens_out"), 12760);
    assert_num(jnum(t, "tokens_cached"), 2400);
    assert_money(jnum(t, "cost_usd"), 2 * 0.037317);
    assert_num(jnum(t, "requests_cost_unknown"), 2);
    assert_money(jnum(t, "cost_if_original_usd"), 2 * 0.066033);
    assert_money(jnum(t, "wasted_cost_usd"), 2 * 0.00025);

    const cJSON *g = jget(j, "by_provider_model");
    assert_int_equal(cJSON_GetArraySize(g), 5);
    const cJSON *g0 = cJSON_GetArrayItem(g, 0);
    assert_string_equal(jget(g0, "model")->valuestring, "acme,large-v1");
    assert_true(cJSON_IsNull(jget(g0, "cost_usd"))); /* all unknown */
    const cJSON *g1 = cJSON_GetArrayItem(g, 1);
    assert_string_equal(jget(g1, "provider")->valuestring, "openai");
    assert_string_equal(jget(g1, "model")->valuestring, "gpt-4.1");
    assert_num(jnum(g1, "requests"), 8);
    assert_num(jnum(g1, "errors"), 2);
    assert_num(jnum(g1, "error_pct"), 25);
    assert_num(jnum(g1, "fallbacks"), 2);
    /* 1200 1200 1500 1500 2500 2500 3000 3000: ranks 4, 8, 8 */
    assert_num(jnum(jget(g1, "latency_ms"), "p50"), 1500);
    assert_num(jnum(jget(g1, "latency_ms"), "p95"), 3000);
    assert_num(jnum(jget(g1, "first_byte_ms"), "p50"), 400);
    assert_money(jnum(g1, "cost_usd"), 2 * 0.0171);
    assert_num(jnum(g1, "requests_cost_unknown"), 0);

    const cJSON *st = jget(j, "by_stage");
    assert_int_equal(cJSON_GetArraySize(st), 2);
    const cJSON *s0 = cJSON_GetArrayItem(st, 0);
    assert_num(jnum(s0, "flag_percentage"), 10);
    assert_string_equal(jget(s0, "first_ts")->valuestring, "2026-11-27T10:00:00Z");
    assert_string_equal(jget(s0, "last_ts")->valuestring, "2026-11-27T10:07:00Z");
    const cJSON *vn = jget(jget(s0, "variants"), "new");
    assert_num(jnum(vn, "requests"), 8);
    assert_num(jnum(vn, "errors"), 2);
    assert_num(jnum(vn, "error_pct"), 25);
    assert_num(jnum(vn, "latency_p95_ms"), 5000);
    assert_money(jnum(vn, "cost_usd"), 2 * 0.010132);
    assert_num(jnum(jget(jget(s0, "variants"), "original"), "requests"), 8);

    const cJSON *mg = jget(j, "migration");
    assert_int_equal(cJSON_GetArraySize(mg), 3);
    const cJSON *m0 = cJSON_GetArrayItem(mg, 0);
    assert_string_equal(jget(m0, "model")->valuestring, "gpt-4.1");
    assert_num(jnum(jget(m0, "original"), "input"), 2);
    assert_num(jnum(jget(m0, "original"), "output"), 8);
    assert_num(jnum(jget(m0, "new"), "input"), 1);
    assert_num(jnum(jget(m0, "new"), "output"), 3);
    assert_num(jnum(m0, "saving_pct"), 100.0 * (1.0 - 0.027 / 0.0654));
    assert_money(jnum(m0, "measured_saving_usd"), 2 * 0.02855);
    /* twice the saving in the same 1200 s */
    assert_money(jnum(m0, "projected_30d_saving_usd"), 2 * 61.668);
    assert_money(jnum(m0, "projected_30d_saving_at_100pct_usd"), 2 * 82.944);
    const cJSON *m2 = cJSON_GetArrayItem(mg, 2);
    assert_true(cJSON_IsNull(jget(m2, "original")));
    assert_true(cJSON_IsNull(jget(m2, "new")));
    assert_true(cJSON_IsNull(jget(m2, "saving_pct")));
    assert_true(cJSON_IsNull(jget(m2, "projected_30d_saving_at_100pct_usd")));
    cJSON_Delete(j);

    /* the malformed line, with FILE:LINE, once per file */
    assert_non_null(strstr(err, FIX_LOG ":7: malformed line skipped"));
    assert_non_null(strstr(err, "2 malformed lines skipped"));
    free(out);
    free(err);
}

/* Money in JSON is the exact sum (not the rounded figure of the other formats). */
static void test_render_json_precision(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    double want = 0;
    for (int i = 0; i < 1000; i++) {
        report_record_t r = plain(i * 1000000LL, 10);
        r.cost_usd = 0.000000123456789 * (i % 7 + 1);
        want += r.cost_usd;
        report_agg_add(a, &r);
    }
    report_t *r = report_agg_finish(a);
    char *s = report_render(r, REPORT_JSON);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_money(jnum(jget(j, "totals"), "cost_usd"), want);
    assert_true(fabs(jnum(jget(j, "totals"), "cost_usd") - r->totals.cost_usd) <=
                1e-15 * fabs(want));
    cJSON_Delete(j);
    free(s);
    s = report_render(r, REPORT_CSV);
    char line[64];
    snprintf(line, sizeof line, "\ncost_usd,%.6f\n", want);
    assert_non_null(strstr(s, line));
    free(s);
    report_free(r);
    report_agg_free(a);
}

static void test_render_markdown(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--format=markdown", FIX_LOG), 0);
    assert_non_null(strstr(out, "# switchyard migration report\n"));
    assert_non_null(strstr(out, "\n## Totals\n"));
    assert_non_null(strstr(out, "\n## By provider and model\n"));
    assert_non_null(strstr(out, "\n## Rollout stages\n")); /* two stages */
    assert_non_null(strstr(out, "\n## Migration\n"));
    assert_non_null(strstr(out, "| Provider | Model         | Reqs |"));
    assert_non_null(strstr(out, "| -------- | ------------- | ---: |"));
    assert_non_null(strstr(out, "| Model         | Original in | Original out | New in |"));
    /* the figures, rounded: $ under 1 with 6 decimals, over 1 with 2, one-decimal % */
    assert_non_null(strstr(out, "| gpt-4.1       |       $2.00 |        $8.00 |  $1.00 |   "
                                "$3.00 |  58.7% |       $0.028550 |    $61.67 |          "
                                "$82.94 |\n"));
    assert_non_null(strstr(out, "| relay    | gpt-4.1       |    4 |      1 | 25.0% |"));
    assert_non_null(strstr(out, "| Cost                       | $0.037317 |"));
    free(out);
    free(err);
}

static void test_render_csv(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--format=csv", FIX_LOG), 0);
    /* one table per section, after a `# section` line, separated by a blank line */
    assert_int_equal(strncmp(out, "# window\nkey,value\n", 19), 0);
    assert_non_null(strstr(out, "\n\n# totals\nmetric,value\nrequests,12\n"));
    assert_non_null(strstr(out, "\n\n# by_provider_model\nprovider,model,role,requests,"));
    assert_non_null(strstr(out, "\n\n# by_stage\nflag_percentage,first_ts,"));
    assert_non_null(strstr(out, "\n\n# migration\nmodel,original_input,"));
    /* RFC 4180: a field with a comma is quoted; null is empty */
    assert_non_null(strstr(out, "\nopenai,\"acme,large-v1\",original,1,0,0.0,0,0,600,600,600,"
                                "150,150,150,100,50,0,,1\n"));
    assert_non_null(strstr(out, "\n\"acme,large-v1\",,,,,,,,0.000000,0.000000,,1,0\n"));
    assert_non_null(strstr(out, "\ngpt-4.1,2.00,8.00,0.50,1.00,3.00,0.25,58.7,0.028550,61.67,"
                                "82.94,8,4\n"));
    assert_non_null(strstr(out,
                           "\n10,2026-11-27T10:00:00Z,2026-11-27T10:07:00Z,new,4,1,25.0,1,1,5000,"
                           "0.010132,0\n"));
    /* every data line of a section has as many fields as its header (quotes respected) */
    size_t want = 0;
    for (char *p = out; *p;) {
        char *e = strchr(p, '\n');
        assert_non_null(e);
        if (p == e || *p == '#') {
            want = 0;
        } else {
            size_t fields = 1;
            int q = 0;
            for (char *c = p; c < e; c++) {
                if (*c == '"')
                    q = !q;
                else if (*c == ',' && !q)
                    fields++;
            }
            if (want == 0)
                want = fields;
            else
                assert_int_equal(fields, want);
        }
        p = e + 1;
    }
    free(out);
    free(err);

    /* quotes inside a field are doubled, and a leading '#' is quoted */
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    report_record_t r = plain(0, 5);
    r.model = "say \"hi\", ok";
    report_agg_add(a, &r);
    r.model = "#hash";
    report_agg_add(a, &r);
    report_t *rep = report_agg_finish(a);
    char *s = report_render(rep, REPORT_CSV);
    assert_non_null(strstr(s, "\nrelay,\"say \"\"hi\"\", ok\",new,"));
    assert_non_null(strstr(s, "\nrelay,\"#hash\",new,"));
    free(s);
    report_free(rep);
    report_agg_free(a);
}

static void test_render_table(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, FIX_LOG), 0);
    assert_int_equal(strncmp(out, "switchyard report\n", 18), 0);
    assert_non_null(strstr(out, "window: 2026-11-27T10:00:00Z .. 2026-11-27T10:20:00Z (20m 00s)"));
    assert_non_null(strstr(out, "lines: 13 read, 12 used, 1 malformed, 0 outside the window"));
    assert_non_null(strstr(out, "\nTOTALS\n"));
    assert_non_null(strstr(out, "\nBY PROVIDER AND MODEL\n"));
    assert_non_null(strstr(out, "\nROLLOUT STAGES\n"));
    assert_non_null(strstr(out, "\nMIGRATION\n"));
    assert_non_null(strstr(out, "Error rate                      16.7%\n"));
    assert_non_null(strstr(out, "Tokens in                      12,600\n")); /* grouped */
    /* columns line up: every row of a table is as long as its underline or shorter */
    assert_non_null(strstr(out, "  10%  2026-11-27T10:00:00Z  2026-11-27T10:07:00Z  new    "));
    /* no line is longer than a wide terminal needs and none ends in a space */
    for (char *p = out; *p;) {
        char *e = strchr(p, '\n');
        assert_non_null(e);
        if (e > p && e[-1] == ' ')
            fail_msg("trailing space: %.*s", (int)(e - p), p);
        p = e + 1;
    }
    free(out);
    free(err);
}

/* Thousands are grouped in table and markdown, never in CSV or JSON. */
static void test_render_grouping(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    report_record_t r = plain(0, 5);
    r.cost_usd = 1234567.891;
    r.tokens_in = 1234567;
    report_agg_add(a, &r);
    r.cost_usd = -0.0000001; /* rounds to zero: no "-$0.000000" */
    r.tokens_in = 0;
    report_agg_add(a, &r);
    report_t *rep = report_agg_finish(a);
    char *s = report_render(rep, REPORT_TABLE);
    assert_non_null(strstr(s, "$1,234,567.89"));
    assert_non_null(strstr(s, "1,234,567"));
    free(s);
    s = report_render(rep, REPORT_CSV);
    assert_non_null(strstr(s, "\ncost_usd,1234567.89\n"));
    assert_non_null(strstr(s, "\ntokens_in,1234567\n"));
    free(s);
    report_free(rep);
    report_agg_free(a);

    a = report_agg_new(NULL, REPORT_TIME_NONE, REPORT_TIME_NONE); /* no config: no prices */
    r = plain(0, 5);
    r.cost_usd = -0.0000001;
    report_agg_add(a, &r);
    rep = report_agg_finish(a);
    s = report_render(rep, REPORT_TABLE);
    assert_null(strstr(s, "-$"));
    assert_non_null(strstr(s, "$0.000000"));
    free(s);
    report_free(rep);
    report_agg_free(a);
}

/* Control characters never reach a terminal; '|' never breaks a markdown table. */
static void test_render_escaping(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    static const char line[] = "{\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"new\","
                               "\"flag_percentage\":10,\"status\":200,\"latency_ms\":1,"
                               "\"model\":\"a|b\\u001b[31m\",\"provider\":\"relay\"}";
    assert_int_equal(report_agg_add_line(a, line, sizeof line - 1, NULL, 0), REPORT_LINE_USED);
    report_t *r = report_agg_finish(a);
    char *s = report_render(r, REPORT_TABLE);
    assert_null(strchr(s, '\x1b'));
    assert_non_null(strstr(s, "a|b?[31m"));
    free(s);
    s = report_render(r, REPORT_MARKDOWN);
    assert_non_null(strstr(s, "| a\\|b?[31m |"));
    free(s);
    s = report_render(r, REPORT_JSON);
    cJSON *j = cJSON_Parse(s);
    assert_string_equal(
        jget(cJSON_GetArrayItem(jget(j, "by_provider_model"), 0), "model")->valuestring,
        "a|b\x1b[31m");
    cJSON_Delete(j);
    free(s);
    report_free(r);
    report_agg_free(a);
}

/* ---------------------------------------------------------------- price table */

/* The comparison users bring: 86.7%, 83.3%, 83.3% and 85.0%. */
static void test_price_table(void **state)
{
    (void)state;
    config_t *cfg = load_config(PRICE_TABLE);
    assert_string_equal(cfg->providers[CONFIG_ROLE_ORIGINAL].name, "openai");
    assert_null(cfg->providers[CONFIG_ROLE_ORIGINAL].api_key_env);
    assert_null(cfg->providers[CONFIG_ROLE_NEW].api_key_env);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    report_t *r = report_agg_finish(a);
    static const struct {
        const char *model;
        double orig, new_, pct;
        const char *shown;
    } want[4] = {
        {"gpt-4.1", 60, 8, 100.0 * (1 - 8.0 / 60), "86.7%"},
        {"claude-sonnet-4.5", 90, 15, 100.0 * (1 - 15.0 / 90), "83.3%"},
        {"gemini-2.5-flash", 15, 2.5, 100.0 * (1 - 2.5 / 15), "83.3%"},
        {"deepseek-v3.2", 2.8, 0.42, 85.0, "85.0%"},
    };
    assert_int_equal(r->n_migration, 4);
    for (int i = 0; i < 4; i++) {
        const report_migration_t *m = &r->migration[i];
        assert_string_equal(m->model, want[i].model);
        assert_num(m->original.input, want[i].orig);
        assert_num(m->original.output, want[i].orig);
        assert_num(m->new_price.input, want[i].new_);
        assert_num(m->new_price.output, want[i].new_);
        assert_true(m->has_saving); /* no tokens observed: over 1M in + 1M out */
        assert_num(m->saving_pct, want[i].pct);
        char b[16];
        snprintf(b, sizeof b, "%.1f%%", m->saving_pct);
        assert_string_equal(b, want[i].shown);
        assert_money(m->measured_saving_usd, 0);
    }
    /* the rendered table shows them in this order */
    char *s = report_render(r, REPORT_TABLE);
    const char *p = s;
    for (int i = 0; i < 4; i++) {
        p = strstr(p, want[i].model);
        assert_non_null(p);
        const char *eol = strchr(p, '\n');
        const char *hit = strstr(p, want[i].shown);
        assert_true(hit != NULL && hit < eol);
        p = eol;
    }
    free(s);
    report_free(r);
    report_agg_free(a);

    /* with traffic, the saving follows the token mix; input = output prices here, so
     * any mix gives the same figure; the measured saving is the log's */
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", PRICE_TABLE, "--format=json", FIX_LOG), 0);
    cJSON *j = cJSON_Parse(out);
    const cJSON *m0 = cJSON_GetArrayItem(jget(j, "migration"), 0);
    assert_string_equal(jget(m0, "model")->valuestring, "gpt-4.1");
    assert_num(jnum(m0, "saving_pct"), 100.0 * (1 - 8.0 / 60));
    /* the log's costs, not recomputed: same measured saving as with the fixture config */
    assert_money(jnum(m0, "measured_saving_usd"), 0.02855);
    /* at 100%: 16500 tokens (10800 in + 5700 out) x (60 - 8) / 1e6 x 2160 */
    assert_money(jnum(m0, "projected_30d_saving_at_100pct_usd"), 16500 * 52.0 / 1e6 * 2160);
    cJSON_Delete(j);
    free(out);
    free(err);
}

/* ---------------------------------------------------------------- lines */

static void test_malformed_lines(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
#define OK_HEAD "\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"new\",\"flag_percentage\":10,"
    static const struct {
        const char *line;
        const char *why;
    } bad[] = {
        {"not json", "not valid JSON"},
        {"[1,2]", "not a JSON object"},
        {"{\"ts\":\"2026-11-27T10:00:00Z\"} trailing", "not valid JSON"},
        {"{\"variant\":\"new\",\"flag_percentage\":10,\"status\":200,\"latency_ms\":1}",
         "missing `ts`"},
        {"{\"ts\":\"yesterday\",\"variant\":\"new\",\"flag_percentage\":10,\"status\":200,"
         "\"latency_ms\":1}",
         "`ts` is not an ISO-8601 time"},
        {"{\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"blue\",\"flag_percentage\":10,"
         "\"status\":200,\"latency_ms\":1}",
         "`variant`"},
        {"{" OK_HEAD "\"status\":\"200\",\"latency_ms\":1}", "`status` is not a number"},
        {"{" OK_HEAD "\"status\":200.5,\"latency_ms\":1}", "`status` is not an HTTP status"},
        {"{" OK_HEAD "\"status\":200}", "missing `latency_ms`"},
        {"{" OK_HEAD "\"status\":200,\"latency_ms\":1,\"cost_usd\":-1}", "`cost_usd` is negative"},
        {"{" OK_HEAD "\"status\":200,\"latency_ms\":1,\"tokens_in\":1.5}", "`tokens_in`"},
        {"{" OK_HEAD "\"status\":200,\"latency_ms\":1,\"truncated\":\"yes\"}",
         "`truncated` is not a boolean"},
        {"{" OK_HEAD "\"status\":200,\"latency_ms\":1,\"model\":7}", "`model` is not a string"},
        {"{\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"new\",\"flag_percentage\":101,"
         "\"status\":200,\"latency_ms\":1}",
         "`flag_percentage`"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[128];
        int rc = report_agg_add_line(a, bad[i].line, strlen(bad[i].line), why, sizeof why);
        if (rc != REPORT_ERR_MALFORMED || strstr(why, bad[i].why) == NULL)
            fail_msg("line %zu: rc %d, why `%s`, want `%s`", i, rc, why, bad[i].why);
    }
    char why[64];
    assert_int_equal(report_agg_add_line(a, "{\"a\":\0}", 7, why, sizeof why),
                     REPORT_ERR_MALFORMED);
    assert_non_null(strstr(why, "NUL"));
    /* blank lines are not lines; CRLF endings are fine; the minimal record is enough */
    assert_int_equal(report_agg_add_line(a, " \t\r\n", 4, NULL, 0), REPORT_LINE_BLANK);
    const char *min = "{" OK_HEAD "\"status\":200,\"latency_ms\":12.5}\r\n";
    assert_int_equal(report_agg_add_line(a, min, strlen(min), NULL, 0), REPORT_LINE_USED);
    /* not NUL-terminated: only len bytes are read */
    char buf[256];
    size_t n = strlen(min);
    memcpy(buf, min, n);
    memset(buf + n, 'x', sizeof buf - n);
    assert_int_equal(report_agg_add_line(a, buf, n, NULL, 0), REPORT_LINE_USED);
    report_t *r = report_agg_finish(a);
    assert_int_equal(r->lines.read, sizeof bad / sizeof bad[0] + 1 + 2);
    assert_int_equal(r->lines.malformed, sizeof bad / sizeof bad[0] + 1);
    assert_int_equal(r->lines.used, 2);
    /* absent fields: no model, no provider, unknown cost, no tokens */
    assert_int_equal(r->n_groups, 1);
    assert_null(r->groups[0].model);
    assert_null(r->groups[0].provider);
    assert_int_equal(r->totals.requests_cost_unknown, 2);
    assert_num(r->groups[0].latency_ms.p50, 12.5);
    char *s = report_render(r, REPORT_JSON);
    cJSON *j = cJSON_Parse(s);
    const cJSON *g = cJSON_GetArrayItem(jget(j, "by_provider_model"), 0);
    assert_true(cJSON_IsNull(jget(g, "model")));
    assert_true(cJSON_IsNull(jget(g, "provider")));
    assert_true(cJSON_IsNull(jget(g, "cost_usd")));
    assert_true(cJSON_IsNull(jget(jget(g, "first_byte_ms"), "p50")));
    cJSON_Delete(j);
    free(s);
    report_free(r);
    report_agg_free(a);
#undef OK_HEAD
}

/* A long line (over the parser's stack buffer) is read whole. */
static void test_long_line(void **state)
{
    (void)state;
    config_t *cfg = load_config(FIX_CONFIG);
    report_agg_t *a = report_agg_new(cfg, REPORT_TIME_NONE, REPORT_TIME_NONE);
    config_unref(cfg);
    size_t pad = 100000;
    char *line = malloc(pad + 256);
    int k = snprintf(line, 256,
                     "{\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"original\","
                     "\"flag_percentage\":10,\"status\":200,\"latency_ms\":3,\"path\":\"");
    memset(line + k, 'a', pad);
    strcpy(line + k + pad, "\"}");
    assert_int_equal(report_agg_add_line(a, line, strlen(line), NULL, 0), REPORT_LINE_USED);
    free(line);
    report_t *r = report_agg_finish(a);
    assert_int_equal(r->stages[0].variant[REPORT_ORIGINAL].c.requests, 1);
    report_free(r);
    report_agg_free(a);
}

/* ---------------------------------------------------------------- the command */

static void test_cli_usage_errors(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG), 2);
    assert_non_null(strstr(err, "no access log given"));
    assert_non_null(strstr(err, "usage: switchyard report"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--format", "yaml", "-c", FIX_CONFIG), 2);
    assert_non_null(strstr(err, "--format: `yaml` is not one of table, markdown, json, csv"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--since", "last tuesday", FIX_LOG), 2);
    assert_non_null(strstr(err, "--since: `last tuesday` is not an ISO-8601 UTC time"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--since=2026-11-28", "--until=2026-11-27", FIX_LOG), 2);
    assert_non_null(strstr(err, "--since must be before --until"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--verbose", FIX_LOG), 2);
    assert_non_null(strstr(err, "unknown option `--verbose`"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--until"), 2);
    assert_non_null(strstr(err, "--until needs a value"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "--help"), 0);
    assert_non_null(strstr(out, "usage: switchyard report"));
    assert_string_equal(err, "");
    free(out);
    free(err);
}

static void test_cli_data_errors(void **state)
{
    (void)state;
    char *out, *err;
    /* an unreadable log is fatal, and no report is printed */
    assert_int_equal(
        run(&out, &err, "-c", FIX_CONFIG, FIX_LOG, "tests/fixtures/report/nope", FIX_LOG), 1);
    assert_non_null(strstr(err, "cannot open tests/fixtures/report/nope: "));
    assert_string_equal(out, "");
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "tests/fixtures/report"), 1);
    assert_non_null(strstr(err, "cannot read tests/fixtures/report: "));
    free(out);
    free(err);
    /* a config that does not load: its errors, then exit 1 */
    assert_int_equal(run(&out, &err, "-c", "tests/fixtures/report/none.yaml", FIX_LOG), 1);
    assert_non_null(strstr(err, "tests/fixtures/report/none.yaml:1:1: cannot open"));
    assert_non_null(strstr(err, "did not load"));
    free(out);
    free(err);
    /* the loader's rule: a named key variable must be set, even for a report */
    unsetenv("ORIGINAL_API_KEY");
    unsetenv("NEW_API_KEY");
    unsetenv("SWITCHYARD_ADMIN_TOKEN");
    assert_int_equal(run(&out, &err, "-c", "configs/examples/real-providers.yaml", FIX_LOG), 1);
    assert_non_null(strstr(err, "ORIGINAL_API_KEY"));
    free(out);
    free(err);
}

static void test_cli_stdin_and_warnings(void **state)
{
    (void)state;
    /* `-` reads standard input */
    assert_non_null(freopen(FIX_LOG, "r", stdin));
    char *out, *err;
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--format", "json", "--", "-"), 0);
    cJSON *j = cJSON_Parse(out);
    assert_num(jnum(jget(j, "totals"), "requests"), 12);
    cJSON_Delete(j);
    assert_non_null(strstr(err, "(stdin):7: malformed line skipped"));
    free(out);
    free(err);

    /* only the first 5 malformed lines are quoted; a provider the config does not
     * name is reported */
    char path[] = "/tmp/test_report_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 8; i++)
        fprintf(f, "garbage %d\n", i);
    fprintf(f, "{\"ts\":\"2026-11-27T10:00:00Z\",\"variant\":\"new\",\"flag_percentage\":10,"
               "\"status\":200,\"latency_ms\":1,\"provider\":\"mystery\",\"model\":\"gpt-4.1\","
               "\"cost_usd\":0.001,\"cost_if_original_usd\":0.002}\n");
    fclose(f);
    assert_int_equal(run(&out, &err, "-c", FIX_CONFIG, "--format=json", path), 0);
    assert_non_null(strstr(err, ":5: malformed line skipped"));
    assert_null(strstr(err, ":6: malformed line skipped"));
    assert_non_null(strstr(err, "8 malformed lines skipped (the first 5 shown above)"));
    assert_non_null(strstr(err, "provider `mystery` in the log is neither `openai` nor `relay`"));
    j = cJSON_Parse(out);
    const cJSON *m0 = cJSON_GetArrayItem(jget(j, "migration"), 0);
    assert_money(jnum(m0, "measured_saving_usd"), 0); /* not served by `relay` */
    assert_true(cJSON_IsNull(jget(cJSON_GetArrayItem(jget(j, "by_provider_model"), 0), "role")));
    cJSON_Delete(j);
    free(out);
    free(err);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_quantiles_nearest_rank),
        cmocka_unit_test(test_fixture_totals),
        cmocka_unit_test(test_fixture_by_provider_model),
        cmocka_unit_test(test_fixture_stages),
        cmocka_unit_test(test_fixture_migration),
        cmocka_unit_test(test_since_until),
        cmocka_unit_test(test_render_json),
        cmocka_unit_test(test_render_json_precision),
        cmocka_unit_test(test_render_markdown),
        cmocka_unit_test(test_render_csv),
        cmocka_unit_test(test_render_table),
        cmocka_unit_test(test_render_grouping),
        cmocka_unit_test(test_render_escaping),
        cmocka_unit_test(test_price_table),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_data_errors),
        cmocka_unit_test(test_cli_stdin_and_warnings),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
