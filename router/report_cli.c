/*
 * report_cli — `switchyard report [-c CONFIG] [--since T] [--until T]
 * [--format table|markdown|json|csv] LOG...`: the arguments, the config (for
 * prices and provider names), the access-log files, and where the output goes.
 * The figures are computed in report.c and rendered in report_render.c.
 *
 * Exit status: 0 ok (malformed lines are skipped and reported, not fatal), 1 a
 * config that does not load, a log that cannot be read, a failed write or no
 * memory; 2 a usage error. No global state: the arguments are parsed here, not
 * with getopt.
 */
#include "report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define DEFAULT_CONFIG "configs/switchyard.yaml"
#define PREFIX "switchyard report: "
#define MAX_SHOWN 5 /* malformed lines quoted with FILE:LINE */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: switchyard report [-c CONFIG] [--since T] [--until T]\n"
            "                         [--format table|markdown|json|csv] LOG...\n"
            "\n"
            "Summarises access logs (JSON lines, docs/ACCESS_LOG.md): totals, errors, latency\n"
            "and cost per provider and model, per rollout stage, and the migration saving.\n"
            "\n"
            "  LOG                 access-log file; - reads standard input\n"
            "  -c, --config FILE   prices and provider names (default %s)\n"
            "  --since T           only requests that started at or after T\n"
            "  --until T           only requests that started before T\n"
            "                      T is UTC ISO-8601: 2026-11-27T10:00:00Z, fractions allowed,\n"
            "                      or a date (2026-11-27 = its midnight)\n"
            "  --format F          table (default), markdown, json or csv\n"
            "  -h, --help          this text\n",
            DEFAULT_CONFIG);
}

typedef struct {
    const char *config;
    int64_t since, until;
    report_format_t format;
    char **logs;
    size_t n_logs;
} args_t;

/* The value of option `name` at argv[*i]: "--name=V", "--name V", "-cV", "-c V".
 * NULL (after a message) when it is missing. */
static const char *opt_value(int argc, char **argv, int *i, size_t name_len, FILE *err)
{
    const char *a = argv[*i];
    if (a[name_len] == '=')
        return a + name_len + 1;
    if (a[1] != '-' && a[name_len] != '\0') /* -cFILE */
        return a + name_len;
    if (*i + 1 >= argc) {
        fprintf(err, PREFIX "%.*s needs a value\n", (int)name_len, a);
        return NULL;
    }
    return argv[++*i];
}

/* 1 when argv[i] is the option `name` (exactly, or followed by '=' or, for a
 * short option, its value). */
static int is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    return a[n] == '\0' || a[n] == '=' || (name[1] != '-' && a[n] != '\0');
}

static int parse_time_opt(const char *name, const char *v, int64_t *out, FILE *err)
{
    if (report_parse_time(v, out) != 0) {
        fprintf(err,
                PREFIX "%s: `%s` is not an ISO-8601 UTC time (e.g. 2026-11-27T10:00:00Z or "
                       "2026-11-27)\n",
                name, v);
        return -1;
    }
    return 0;
}

/* 0, 1 for --help, or 2 on a usage error (message written). */
static int parse_args(int argc, char **argv, args_t *a, FILE *err)
{
    a->config = DEFAULT_CONFIG;
    a->since = a->until = REPORT_TIME_NONE;
    a->format = REPORT_TABLE;
    a->logs = calloc(argc > 0 ? (size_t)argc : 1, sizeof *a->logs);
    if (a->logs == NULL) {
        fprintf(err, PREFIX "out of memory\n");
        return 2;
    }
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        if (only_files || s[0] != '-' || strcmp(s, "-") == 0) {
            a->logs[a->n_logs++] = argv[i];
        } else if (strcmp(s, "--") == 0) {
            only_files = 1;
        } else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            return 1;
        } else if (is_opt(s, "-c") || is_opt(s, "--config")) {
            if ((v = opt_value(argc, argv, &i, s[1] == '-' ? 8 : 2, err)) == NULL)
                return 2;
            a->config = v;
        } else if (is_opt(s, "--since") || is_opt(s, "--until")) {
            int since = s[2] == 's';
            if ((v = opt_value(argc, argv, &i, 7, err)) == NULL ||
                parse_time_opt(since ? "--since" : "--until", v, since ? &a->since : &a->until,
                               err) != 0)
                return 2;
        } else if (is_opt(s, "--format")) {
            if ((v = opt_value(argc, argv, &i, 8, err)) == NULL)
                return 2;
            int f = report_parse_format(v);
            if (f < 0) {
                fprintf(err, PREFIX "--format: `%s` is not one of table, markdown, json, csv\n", v);
                return 2;
            }
            a->format = (report_format_t)f;
        } else {
            fprintf(err, PREFIX "unknown option `%s`\n", s);
            return 2;
        }
    }
    if (a->n_logs == 0) {
        fprintf(err, PREFIX "no access log given (a file, or - for standard input)\n");
        return 2;
    }
    if (a->since != REPORT_TIME_NONE && a->until != REPORT_TIME_NONE && a->since >= a->until) {
        fprintf(err, PREFIX "--since must be before --until\n");
        return 2;
    }
    return 0;
}

static config_t *load_config(const char *path, FILE *err)
{
    config_errors_t errs = {0};
    config_t *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.n_warnings; i++)
        fprintf(err, "%s (warning)\n", errs.warnings[i]);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(err, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    if (cfg == NULL)
        fprintf(err,
                PREFIX "the config %s did not load (it gives the prices and provider "
                       "names; -c picks another file)\n",
                path);
    return cfg;
}

/* Feeds one file to the aggregator. 0, or -1 after a message (unreadable, OOM). */
static int read_log(report_agg_t *agg, const char *path, FILE *err, uint64_t *shown)
{
    int is_stdin = strcmp(path, "-") == 0;
    const char *label = is_stdin ? "(stdin)" : path;
    FILE *f = is_stdin ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(err, PREFIX "cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned long long lineno = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (ferror(f) || errno == ENOMEM || errno == EOVERFLOW) {
                fprintf(err, PREFIX "cannot read %s: %s\n", label, strerror(errno ? errno : EIO));
                rc = -1;
            }
            break;
        }
        lineno++;
        char why[192];
        int r = report_agg_add_line(agg, line, (size_t)n, why, sizeof why);
        if (r == REPORT_ERR_NOMEM) {
            fprintf(err, PREFIX "out of memory at %s:%llu\n", label, lineno);
            rc = -1;
            break;
        }
        if (r == REPORT_ERR_MALFORMED && (*shown)++ < MAX_SHOWN)
            fprintf(err, PREFIX "%s:%llu: malformed line skipped: %s\n", label, lineno, why);
    }
    free(line);
    if (is_stdin)
        clearerr(f);
    else
        fclose(f);
    return rc;
}

/* Providers in the log that the config does not name: their requests count
 * everywhere but in the measured saving. */
static void warn_unknown_providers(const report_t *r, const char *config, FILE *err)
{
    for (size_t i = 0; i < r->n_groups; i++) {
        const report_group_t *g = &r->groups[i];
        if (g->provider == NULL || g->role >= 0)
            continue;
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = r->groups[k].provider && strcmp(r->groups[k].provider, g->provider) == 0;
        if (!seen)
            fprintf(err,
                    PREFIX "provider `%s` in the log is neither `%s` nor `%s` of %s; its "
                           "requests are not in the measured saving\n",
                    g->provider, r->original_name ? r->original_name : "original",
                    r->new_name ? r->new_name : "new", config);
    }
}

int report_run(int argc, char **argv, FILE *out, FILE *err)
{
    args_t a = {0};
    int rc = parse_args(argc, argv, &a, err);
    if (rc != 0) {
        free(a.logs);
        usage(rc == 1 ? out : err);
        return rc == 1 ? 0 : 2;
    }
    config_t *cfg = load_config(a.config, err);
    if (cfg == NULL) {
        free(a.logs);
        return 1;
    }
    report_agg_t *agg = report_agg_new(cfg, a.since, a.until);
    config_unref(cfg);
    report_t *r = NULL;
    char *text = NULL;
    uint64_t shown = 0;
    rc = 1;
    if (agg == NULL) {
        fprintf(err, PREFIX "out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < a.n_logs; i++)
        if (read_log(agg, a.logs[i], err, &shown) != 0)
            goto done;
    r = report_agg_finish(agg);
    text = r ? report_render(r, a.format) : NULL;
    if (text == NULL) {
        fprintf(err, PREFIX "out of memory\n");
        goto done;
    }
    if (r->lines.malformed > 0) {
        if (r->lines.malformed > MAX_SHOWN)
            fprintf(err, PREFIX "%llu malformed lines skipped (the first %d shown above)\n",
                    (unsigned long long)r->lines.malformed, MAX_SHOWN);
        else
            fprintf(err, PREFIX "%llu malformed line%s skipped\n",
                    (unsigned long long)r->lines.malformed, r->lines.malformed == 1 ? "" : "s");
    }
    if (r->lines.used == 0)
        fprintf(err, PREFIX "no requests %s\n",
                r->lines.filtered > 0 ? "in the --since / --until window" : "in the logs");
    warn_unknown_providers(r, a.config, err);
    errno = 0;
    if (fputs(text, out) < 0 || fflush(out) != 0 || ferror(out)) {
        fprintf(err, PREFIX "cannot write the report: %s\n", strerror(errno ? errno : EIO));
        goto done;
    }
    rc = 0;
done:
    free(text);
    report_free(r);
    report_agg_free(agg);
    free(a.logs);
    return rc;
}

int report_main(int argc, char **argv)
{
    return report_run(argc, argv, stdout, stderr);
}
