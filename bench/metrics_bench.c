/*
 * metrics_bench — what recording one finished request costs: metrics_record on a
 * worker's shard plus formatting its access-log line into the worker's buffer
 * (written to /dev/null), the work the proxy does once per request for accounting.
 * Prints the median over rounds of nanoseconds per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "metrics.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    enum { ROUNDS = 7 };
    static const char *const models[] = {"gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash",
                                         "deepseek-v3.2"};
    metrics_shard_t *m = metrics_shard_new();
    accesslog_t *log = accesslog_open("/dev/null");
    accesslog_buf_t buf;
    if (!m || !log || accesslog_buf_init(&buf, log) < 0)
        return 1;
    int roles[2] = {1, 0};
    fail_class_t classes[2] = {FAIL_UPSTREAM_5XX, FAIL_NONE};
    double per[ROUNDS], per_metrics[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            metrics_request_t q = {
                .model = models[i & 3], .provider = (int)(i & 1), .variant = (int)(i & 1),
                .status = 200, .outcome = (i % 10 == 0) ? OUTCOME_FALLBACK : OUTCOME_OK,
                .duration_s = 0.001 * (double)(i % 1000), .first_token_s = 0.0005,
                .overhead_s = 40e-6, .tokens_in = 120, .tokens_out = 300, .tokens_cached = 0,
                .cost_usd = 0.00123, .cost_if_original_usd = 0.0098,
                .n_attempts = (i % 10 == 0) ? 2 : 1,
                .attempt_role = (i % 10 == 0) ? roles : roles + 1,
                .attempt_class = (i % 10 == 0) ? classes : classes + 1,
                .fallback_from = (i % 10 == 0) ? 1 : -1, .fallback_to = 0,
                .fallback_class = FAIL_UPSTREAM_5XX};
            metrics_record(m, &q);
        }
        double t1 = now_ns();
        for (long i = 0; i < n; i++) {
            char *o = accesslog_reserve(&buf, 1024);
            int k = snprintf(o, 1024,
                             "{\"ts\":\"2026-11-27T10:00:00.000Z\",\"request_id\":\"sy-%ld\","
                             "\"model\":\"%s\",\"status\":200,\"latency_ms\":%.3f,"
                             "\"cost_usd\":%.17g}\n",
                             i, models[i & 3], 0.001 * (double)(i % 1000), 0.00123);
            accesslog_commit(&buf, (size_t)k);
        }
        double t2 = now_ns();
        per_metrics[r] = (t1 - t0) / (double)n;
        per[r] = (t2 - t0) / (double)n;
    }
    qsort(per, ROUNDS, sizeof(double), cmp);
    qsort(per_metrics, ROUNDS, sizeof(double), cmp);
    printf("metrics_record: median %.1f ns/request (min %.1f, max %.1f) over %d rounds of %ld\n",
           per_metrics[ROUNDS / 2], per_metrics[0], per_metrics[ROUNDS - 1], ROUNDS, n);
    printf("metrics_record + access-log line: median %.1f ns/request\n", per[ROUNDS / 2]);
    accesslog_buf_free(&buf);
    accesslog_close(log);
    metrics_shard_free(m);
    return per[ROUNDS / 2] < 2000.0 ? 0 : 1;
}
