/*
 * report — `switchyard report`: reads access-log lines (docs/ACCESS_LOG.md) and
 * summarises a migration: totals, per provider x model (errors, latency and
 * first-byte quantiles, tokens, cost), per rollout stage (per variant), and the
 * per-model price comparison with the measured and projected savings.
 *
 * Three parts:
 *   report.c         line parsing and aggregation. Pure: no I/O, no clock; time
 *                    only comes from the records (`ts`).
 *   report_render.c  a finished report as table / markdown / json / csv, into a
 *                    string.
 *   report_cli.c     the command: arguments, config, files, stdout / stderr.
 *
 * Definitions (also printed as footnotes by the renderers):
 *   - client_closed: status 0 (the client left first), or the last attempt's class is
 *     `client_closed` (it left during the answer). Not an error.
 *   - error: not client_closed, and status >= 500 or `truncated` is true.
 *   - fallback: `fallback` is not null.
 *   - quantiles are exact, nearest rank: the p-th percentile of N sorted values
 *     is the value at 1-based rank ceil(p * N / 100). Latency over every request
 *     of the group, first byte over the requests that have one; null when there
 *     are none.
 *   - money comes from the log (`cost_usd`, `cost_if_original_usd`,
 *     `wasted_cost_usd`): sums of the known values (Neumaier summation), a null
 *     cost counts in requests_cost_unknown. Prices from the config are only used
 *     for the migration table (saving_pct and the projection at 100%).
 *   - a request is "served by the new provider" when its `provider` is the name
 *     of the config's `new` provider.
 *   - duration = last ts - first ts of the records in the window; projections are
 *     null when it is under one second.
 *
 * Ownership: report_agg_new / report_agg_finish return objects owned by the
 * caller (report_agg_free, report_free). A report_t does not point into the
 * config or the aggregator. Strings in report_record_t are copied.
 * Errors: constructors return NULL on allocation failure; other functions return
 * 0 or a negative value (see each one).
 */
#ifndef SWITCHYARD_REPORT_H
#define SWITCHYARD_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Times are microseconds since 1970-01-01T00:00:00Z; REPORT_TIME_NONE = absent. */
#define REPORT_TIME_NONE INT64_MIN
enum { REPORT_TIME_BUF = 40 };

/* Parses ISO-8601: "2026-11-27", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123Z",
 * "2026-11-27T10:00:00+02:00" (seconds optional, up to 6 fractional digits kept,
 * more are truncated; no offset = UTC). 0, or -1 when s is not such a time. */
int report_parse_time(const char *s, int64_t *us);

/* "2026-11-27T10:00:00Z", with ".123" or ".123456" when there is a fraction. */
void report_format_time(int64_t us, char out[REPORT_TIME_BUF]);

typedef enum { REPORT_TABLE = 0, REPORT_MARKDOWN, REPORT_JSON, REPORT_CSV } report_format_t;

/* "table" / "markdown" / "json" / "csv" -> format, or -1. */
int report_parse_format(const char *s);

/* Variants, indexed like the config's roles. */
enum { REPORT_ORIGINAL = CONFIG_ROLE_ORIGINAL, REPORT_NEW = CONFIG_ROLE_NEW };

/* One access-log line, as far as the report uses it. NULL strings are JSON null. */
typedef struct {
    int64_t ts_us;
    const char *model;
    const char *provider;
    int variant; /* REPORT_ORIGINAL / REPORT_NEW */
    double flag_percentage;
    int status;
    double latency_ms;
    int has_first_byte;
    double first_byte_ms;
    uint64_t tokens_in, tokens_out, tokens_cached;
    int has_cost;
    double cost_usd;
    int has_cost_if_original;
    double cost_if_original_usd;
    double wasted_cost_usd;
    int fallback; /* `fallback` was not null */
    int truncated;
    int client_left; /* the last attempt's class is "client_closed" */
} report_record_t;

typedef struct report_agg report_agg_t;

/* Exact nearest-rank quantiles; all meaningless when n == 0 (rendered null). */
typedef struct {
    size_t n;
    double p50, p95, p99;
} report_quantiles_t;

typedef struct {
    uint64_t requests, errors, client_closed, fallbacks;
    uint64_t tokens_in, tokens_out, tokens_cached;
    double cost_usd; /* sum of the known costs */
    uint64_t requests_cost_unknown;
    double cost_if_original_usd; /* sum of the known values */
    double wasted_cost_usd;
} report_counts_t;

typedef struct {
    char *provider; /* NULL: no attempt was made */
    char *model;    /* NULL: the request had no model */
    int role;       /* CONFIG_ROLE_* when the name is a config provider, else -1 */
    report_counts_t c;
    report_quantiles_t latency_ms, first_byte_ms;
} report_group_t;

typedef struct {
    report_counts_t c;
    report_quantiles_t latency_ms; /* the renderers show p95 */
} report_variant_t;

typedef struct {
    double flag_percentage;
    int64_t first_ts, last_ts;
    report_variant_t variant[2]; /* [REPORT_ORIGINAL], [REPORT_NEW] */
} report_stage_t;

typedef struct {
    double input, output, cached_input; /* USD per million tokens */
} report_price_t;

typedef struct {
    char *model;
    int has_original, has_new;
    report_price_t original, new_price;
    uint64_t requests, requests_new; /* all requests of the model / served by new */
    uint64_t tokens_in, tokens_out, tokens_cached;
    int has_saving;
    double saving_pct; /* 100 * (1 - cost at new / cost at original) */
    double measured_saving_usd;
    int has_projected;
    double projected_30d_saving_usd;
    int has_projected_100;
    double projected_30d_saving_at_100pct_usd;
} report_migration_t;

typedef struct report {
    int64_t since, until;      /* the filter, or REPORT_TIME_NONE */
    int64_t first_ts, last_ts; /* REPORT_TIME_NONE when no record was used */
    double duration_s;         /* (last_ts - first_ts) in seconds, 0 without records */
    struct {
        uint64_t read;      /* non-blank lines */
        uint64_t used;      /* in the window */
        uint64_t malformed; /* not a valid access-log record */
        uint64_t filtered;  /* valid, outside --since / --until */
    } lines;
    char *original_name, *new_name; /* the config's provider names */
    report_counts_t totals;
    report_group_t *groups; /* by model, then original, new, other providers, null */
    size_t n_groups;
    report_stage_t *stages; /* by first ts */
    size_t n_stages;
    report_migration_t *migration; /* priced at both (config order), then the rest */
    size_t n_migration;
} report_t;

/* since/until: REPORT_TIME_NONE for no bound; since inclusive, until exclusive.
 * cfg is only read during this call (names and prices are copied). */
report_agg_t *report_agg_new(const config_t *cfg, int64_t since, int64_t until);
void report_agg_free(report_agg_t *a); /* NULL is a no-op */

enum { REPORT_LINE_USED = 0, REPORT_LINE_FILTERED = 1, REPORT_LINE_BLANK = 2 };
enum { REPORT_ERR_MALFORMED = -1, REPORT_ERR_NOMEM = -2 };

/* One access-log line (len bytes, need not be NUL-terminated, a trailing
 * "\n" / "\r\n" is ignored). Returns REPORT_LINE_USED, _FILTERED or _BLANK;
 * REPORT_ERR_MALFORMED with a reason in why (why_cap bytes, may be 0);
 * REPORT_ERR_NOMEM. Counts the line in lines.*. */
int report_agg_add_line(report_agg_t *a, const char *line, size_t len, char *why, size_t why_cap);

/* A parsed record: REPORT_LINE_USED / _FILTERED, REPORT_ERR_NOMEM. Not counted in
 * lines.read (the caller owns what a line is). */
int report_agg_add(report_agg_t *a, const report_record_t *r);

/* The report over everything added so far; NULL on allocation failure. The
 * aggregator stays usable. */
report_t *report_agg_finish(report_agg_t *a);
void report_free(report_t *r); /* NULL is a no-op */

/* The report in a format: a NUL-terminated string owned by the caller, NULL on
 * allocation failure. JSON money is printed with full precision; the other
 * formats round (6 decimals under $1, 2 otherwise; percentages to one decimal). */
char *report_render(const report_t *r, report_format_t fmt);

/* The command. argv[0] is "report". Writes the report to out, messages to err.
 * Returns the exit status: 0 ok, 1 data or config error, 2 usage error. */
int report_run(int argc, char **argv, FILE *out, FILE *err);

/* report_run on stdout / stderr; what `switchyard report ...` calls. */
int report_main(int argc, char **argv);

#endif
