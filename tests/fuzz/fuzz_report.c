/*
 * fuzz_report — the access-log reader of `switchyard report` (router/report.c:
 * report_agg_add_line; router/report_render.c for the finished report) on
 * arbitrary input fed as lines, as report_cli.c feeds a file.
 *
 * The aggregator is built from a fixed config (two priced providers, like
 * tests/fixtures/report/config.yaml), loaded once. Odd-sized inputs get a time
 * window (--since / --until) so the filter path is exercised too.
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - every non-blank line is counted once: read = used + filtered + malformed;
 *   - a malformed line comes with a reason;
 *   - the JSON rendering is valid JSON; every format renders;
 *   - one group per (model, provider) as the report prints them;
 *   - a line that is an ISO-8601 time alone survives parse -> format -> parse.
 */
#include "config.h"
#include "report.h"

#include <cjson/cJSON.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "listen: \"127.0.0.1:0\"\n"
                             "workers: 1\n"
                             "admin:\n"
                             "  listen: \"127.0.0.1:0\"\n"
                             "providers:\n"
                             "  original:\n"
                             "    name: openai\n"
                             "    base_url: \"http://127.0.0.1:8101/v1\"\n"
                             "    pricing:\n"
                             "      \"gpt-4.1\": { input: 2.00, output: 8.00, cached_input: 0.50 }\n"
                             "      \"gpt-4o-mini\": { input: 0.15, output: 0.60 }\n"
                             "  new:\n"
                             "    name: relay\n"
                             "    base_url: \"http://127.0.0.1:8102/v1\"\n"
                             "    pricing:\n"
                             "      \"gpt-4.1\": { input: 1.00, output: 3.00, cached_input: 0.25 }\n"
                             "      \"gpt-4o-mini\": { input: 0.10, output: 0.40 }\n"
                             "flags:\n"
                             "  use_new_provider:\n"
                             "    percentage: 10\n";

static config_t *cfg;
static int64_t since_us, until_us;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* errs NULL: this target is about the log reader, and the loader's own
     * findings belong to fuzz_config */
    cfg = config_load_buffer("report.yaml", CONFIG, sizeof CONFIG - 1, NULL);
    FUZZ_CHECK(cfg != NULL);
    FUZZ_CHECK(report_parse_time("2026-11-27T10:01:00Z", &since_us) == 0);
    FUZZ_CHECK(report_parse_time("2026-11-27T11:00:00+00:30", &until_us) == 0);
    return 0;
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* 0001-01-01 .. 9999-12-31: what report_format_time prints in four digits */
#define TIME_MIN (-62135596800LL * 1000000LL)
#define TIME_MAX (253402300799LL * 1000000LL + 999999LL)

static void check_time(const char *line, size_t len)
{
    if (len == 0 || len > 64 || memchr(line, '\0', len) != NULL)
        return;
    char s[65];
    memcpy(s, line, len);
    s[len] = '\0';
    int64_t us, again;
    if (report_parse_time(s, &us) != 0)
        return;
    if (us < TIME_MIN || us > TIME_MAX)
        return;
    char out[REPORT_TIME_BUF];
    report_format_time(us, out);
    FUZZ_CHECK(report_parse_time(out, &again) == 0);
    FUZZ_CHECK(again == us);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int windowed = size % 2 == 1;
    report_agg_t *a = report_agg_new(cfg, windowed ? since_us : REPORT_TIME_NONE,
                                     windowed ? until_us : REPORT_TIME_NONE);
    FUZZ_CHECK(a != NULL);
    uint64_t nonblank = 0, used = 0, filtered = 0, malformed = 0;
    size_t off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
        /* each line in an exact-size buffer: the reader must stop at len */
        char *line = fuzz_dup(data + off, len);
        char why[96];
        /* every third line with a tiny reason buffer: truncation must be safe */
        size_t cap = (nonblank % 3 == 2) ? 5 : sizeof why;
        int rc = report_agg_add_line(a, line, len, why, cap);
        FUZZ_CHECK(rc != REPORT_ERR_NOMEM);
        switch (rc) {
        case REPORT_LINE_USED:
            used++;
            nonblank++;
            break;
        case REPORT_LINE_FILTERED:
            FUZZ_CHECK(windowed);
            filtered++;
            nonblank++;
            break;
        case REPORT_LINE_BLANK:
            break;
        case REPORT_ERR_MALFORMED:
            FUZZ_CHECK(memchr(why, '\0', cap) != NULL && why[0] != '\0');
            malformed++;
            nonblank++;
            break;
        default:
            FUZZ_CHECK(!"unexpected return code");
        }
        size_t tl = len;
        while (tl > 0 && (line[tl - 1] == '\n' || line[tl - 1] == '\r'))
            tl--;
        check_time(line, tl);
        free(line);
        off += len;
    }
    report_t *r = report_agg_finish(a);
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(r->lines.read == nonblank && r->lines.used == used &&
               r->lines.filtered == filtered && r->lines.malformed == malformed);
    FUZZ_CHECK(r->totals.requests == used);
    for (size_t i = 0; i < r->n_groups; i++)
        for (size_t j = i + 1; j < r->n_groups && j < i + 64; j++)
            FUZZ_CHECK(!(same_str(r->groups[i].model, r->groups[j].model) &&
                         same_str(r->groups[i].provider, r->groups[j].provider)));
    for (int f = REPORT_TABLE; f <= REPORT_CSV; f++) {
        char *text = report_render(r, (report_format_t)f);
        FUZZ_CHECK(text != NULL);
        if (f == REPORT_JSON) {
            cJSON *doc = cJSON_Parse(text);
            FUZZ_CHECK(cJSON_IsObject(doc));
            cJSON_Delete(doc);
        }
        free(text);
    }
    report_free(r);
    report_agg_free(a);
    return 0;
}
