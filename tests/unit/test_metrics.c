/*
 * test_metrics.c — unit tests for router/metrics.c, cost series and unknown costs:
 * a cost series is rendered only when one request of its provider x model had a
 * known cost (a known 0 included), served requests without a price are counted in
 * switchyard_requests_cost_unknown_total (and the cost_if_original analogue), a
 * request nothing served counts in neither, and the counters merge across shards,
 * escape their labels and fold models past the limit into "other".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "metrics.h"

#define COST "switchyard_cost_usd_total"
#define ORIG "switchyard_cost_if_original_usd_total"
#define UNKNOWN "switchyard_requests_cost_unknown_total"
#define UNKNOWN_ORIG "switchyard_requests_cost_if_original_unknown_total"

static config_t cfg;

static int setup(void **state)
{
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.providers[CONFIG_ROLE_ORIGINAL].name = "openai";
    cfg.providers[CONFIG_ROLE_NEW].name = "relay";
    return 0;
}

/* One finished request: 10 tokens in, 20 out, served unless `served` is 0. */
static void record(metrics_shard_t *m, const char *model, int provider, int served, double cost,
                   double cost_orig)
{
    metrics_request_t r = {
        .model = model,
        .provider = provider,
        .status = served ? 200 : 502,
        .outcome = served ? OUTCOME_OK : OUTCOME_ERROR,
        .duration_s = 0.1,
        .first_token_s = -1,
        .overhead_s = -1,
        .tokens_in = served ? 10 : 0,
        .tokens_out = served ? 20 : 0,
        .served = served,
        .cost_usd = cost,
        .cost_if_original_usd = cost_orig,
        .fallback_from = -1,
        .fallback_to = -1,
    };
    metrics_record(m, &r);
}

static char *render(metrics_shard_t **shards, size_t n)
{
    char *text = metrics_render(shards, n, &cfg, 10);
    assert_non_null(text);
    return text;
}

/* The sample `name{provider="provider",model="model"}`: 1 and its value, or 0. */
static int sample(const char *text, const char *name, const char *provider, const char *model,
                  double *value)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s{provider=\"%s\",model=\"%s\"} ", name, provider, model);
    const char *at = strstr(text, want);
    if (!at)
        return 0;
    *value = strtod(at + strlen(want), NULL);
    return 1;
}

/* Samples of family `name` (lines starting with `name{`) that mention `model`. */
static int samples_of_model(const char *text, const char *name, const char *model)
{
    char head[256], label[256];
    snprintf(head, sizeof(head), "\n%s{", name);
    snprintf(label, sizeof(label), "model=\"%s\"", model);
    int n = 0;
    for (const char *at = strstr(text, head); at; at = strstr(at + 1, head)) {
        const char *end = strchr(at + 1, '\n');
        const char *hit = strstr(at, label);
        if (hit && (!end || hit < end))
            n++;
    }
    return n;
}

static void test_unpriced_has_no_cost_series(void **state)
{
    (void)state;
    metrics_shard_t *m = metrics_shard_new();
    assert_non_null(m);
    record(m, "no-price", CONFIG_ROLE_NEW, 1, -1, -1);
    char *text = render(&m, 1);
    double v = -1;
    assert_int_equal(samples_of_model(text, COST, "no-price"), 0);
    assert_int_equal(samples_of_model(text, ORIG, "no-price"), 0);
    /* its tokens are still there */
    assert_non_null(strstr(text, "switchyard_tokens_total{provider=\"relay\",model=\"no-price\","
                                 "direction=\"output\"} 20\n"));
    assert_true(sample(text, UNKNOWN, "relay", "no-price", &v));
    assert_true(v == 1);
    assert_true(sample(text, UNKNOWN_ORIG, "relay", "no-price", &v));
    assert_true(v == 1);
    assert_non_null(strstr(text, "# TYPE " UNKNOWN " counter\n"));
    assert_non_null(strstr(text, "# TYPE " UNKNOWN_ORIG " counter\n"));
    assert_non_null(strstr(text, "# HELP " UNKNOWN " "));
    assert_non_null(strstr(text, "# HELP " UNKNOWN_ORIG " "));
    free(text);
    metrics_shard_free(m);
}

static void test_known_zero_cost_is_shown(void **state)
{
    (void)state;
    metrics_shard_t *m = metrics_shard_new();
    assert_non_null(m);
    record(m, "free", CONFIG_ROLE_ORIGINAL, 1, 0, 0);
    char *text = render(&m, 1);
    double v = -1;
    assert_true(sample(text, COST, "openai", "free", &v));
    assert_true(v == 0);
    assert_true(sample(text, ORIG, "openai", "free", &v));
    assert_true(v == 0);
    assert_int_equal(samples_of_model(text, UNKNOWN, "free"), 0);
    assert_int_equal(samples_of_model(text, UNKNOWN_ORIG, "free"), 0);
    free(text);
    metrics_shard_free(m);
}

/* Priced at the new provider only: a cost, no cost_if_original. Then a second request
 * of the same pair with no price: the cost stays the known sum. */
static void test_known_and_unknown_in_one_pair(void **state)
{
    (void)state;
    metrics_shard_t *m = metrics_shard_new();
    assert_non_null(m);
    record(m, "relay-only", CONFIG_ROLE_NEW, 1, 0.25, -1);
    record(m, "relay-only", CONFIG_ROLE_NEW, 1, -1, -1);
    char *text = render(&m, 1);
    double v = -1;
    assert_true(sample(text, COST, "relay", "relay-only", &v));
    assert_true(v == 0.25);
    assert_int_equal(samples_of_model(text, ORIG, "relay-only"), 0);
    assert_true(sample(text, UNKNOWN, "relay", "relay-only", &v));
    assert_true(v == 1);
    assert_true(sample(text, UNKNOWN_ORIG, "relay", "relay-only", &v));
    assert_true(v == 2);
    free(text);
    metrics_shard_free(m);
}

/* A request that failed on a provider has no cost in the log either, but there is
 * nothing to price: it is no unknown cost, and no cost series appears for it. */
static void test_unserved_is_not_unknown(void **state)
{
    (void)state;
    metrics_shard_t *m = metrics_shard_new();
    assert_non_null(m);
    record(m, "gpt-4.1", CONFIG_ROLE_NEW, 0, -1, -1);
    record(m, "gpt-4.1", -1, 0, -1, -1); /* no attempt at all */
    char *text = render(&m, 1);
    assert_int_equal(samples_of_model(text, "switchyard_requests_total", "gpt-4.1"), 2);
    assert_int_equal(samples_of_model(text, COST, "gpt-4.1"), 0);
    assert_int_equal(samples_of_model(text, ORIG, "gpt-4.1"), 0);
    assert_int_equal(samples_of_model(text, UNKNOWN, "gpt-4.1"), 0);
    assert_int_equal(samples_of_model(text, UNKNOWN_ORIG, "gpt-4.1"), 0);
    free(text);
    metrics_shard_free(m);
}

static void test_merged_across_shards(void **state)
{
    (void)state;
    metrics_shard_t *sh[2] = {metrics_shard_new(), metrics_shard_new()};
    assert_non_null(sh[0]);
    assert_non_null(sh[1]);
    record(sh[0], "no-price", CONFIG_ROLE_ORIGINAL, 1, -1, -1);
    record(sh[1], "no-price", CONFIG_ROLE_ORIGINAL, 1, -1, -1);
    record(sh[1], "no-price", CONFIG_ROLE_NEW, 1, -1, -1);
    /* known in one shard only: the merged pair has a known cost */
    record(sh[0], "gpt-4.1", CONFIG_ROLE_NEW, 1, -1, 0.5);
    record(sh[1], "gpt-4.1", CONFIG_ROLE_NEW, 1, 0.125, 0.75);
    char *text = render(sh, 2);
    double v = -1;
    assert_true(sample(text, UNKNOWN, "openai", "no-price", &v));
    assert_true(v == 2);
    assert_true(sample(text, UNKNOWN, "relay", "no-price", &v));
    assert_true(v == 1);
    assert_int_equal(samples_of_model(text, UNKNOWN, "no-price"), 2);
    assert_true(sample(text, COST, "relay", "gpt-4.1", &v));
    assert_true(v == 0.125);
    assert_true(sample(text, ORIG, "relay", "gpt-4.1", &v));
    assert_true(v == 1.25);
    assert_true(sample(text, UNKNOWN, "relay", "gpt-4.1", &v));
    assert_true(v == 1);
    assert_int_equal(samples_of_model(text, UNKNOWN_ORIG, "gpt-4.1"), 0);
    free(text);
    metrics_shard_free(sh[0]);
    metrics_shard_free(sh[1]);
}

/* Model names come from clients: escaped in the label, and past METRICS_MAX_MODELS
 * (or METRICS_MODEL_LEN) counted as "other", like every per-model series. */
static void test_escaping_and_model_limit(void **state)
{
    (void)state;
    metrics_shard_t *m = metrics_shard_new();
    assert_non_null(m);
    record(m, "a\"b\\c\nd", CONFIG_ROLE_NEW, 1, -1, -1);
    char name[32];
    for (int i = 1; i < METRICS_MAX_MODELS; i++) {
        snprintf(name, sizeof(name), "priced-%d", i);
        record(m, name, CONFIG_ROLE_NEW, 1, 0.5, 1);
    }
    record(m, "one-too-many", CONFIG_ROLE_NEW, 1, -1, -1);
    char longname[METRICS_MODEL_LEN + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    record(m, longname, CONFIG_ROLE_ORIGINAL, 1, -1, -1);
    char *text = render(&m, 1);
    double v = -1;
    assert_true(sample(text, UNKNOWN, "relay", "a\\\"b\\\\c\\nd", &v));
    assert_true(v == 1);
    assert_int_equal(samples_of_model(text, UNKNOWN, "one-too-many"), 0);
    assert_true(sample(text, UNKNOWN, "relay", "other", &v));
    assert_true(v == 1);
    assert_true(sample(text, UNKNOWN, "openai", "other", &v));
    assert_true(v == 1);
    assert_int_equal(samples_of_model(text, COST, "other"), 0);
    assert_true(sample(text, COST, "relay", "priced-63", &v));
    assert_true(v == 0.5);
    free(text);
    metrics_shard_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unpriced_has_no_cost_series, setup),
        cmocka_unit_test_setup(test_known_zero_cost_is_shown, setup),
        cmocka_unit_test_setup(test_known_and_unknown_in_one_pair, setup),
        cmocka_unit_test_setup(test_unserved_is_not_unknown, setup),
        cmocka_unit_test_setup(test_merged_across_shards, setup),
        cmocka_unit_test_setup(test_escaping_and_model_limit, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
