/*
 * test_rollout.c — unit tests for rollback/rollout.c: the gates on deterministic windows
 * (healthy, failing, slow, few requests, TTFT and cost applicability), every automatic
 * transition (promote, complete, hold, inconclusive pause, rollback, step down, pause on
 * failure), manual actions and their refusals, modes, corrupt and mismatched state,
 * restart through serialize/parse in every phase, strict parsing and audit lines.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "rollout.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define T0 1714564800000LL /* 2024-05-01T12:00:00.000Z */

/* ---- deterministic traffic ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

typedef struct {
    uint64_t n;      /* requests */
    double err;      /* probability of an error */
    double lat;      /* latency factor (1 = 150..250 ms) */
    double ttft;     /* TTFT factor (1 = 40..80 ms) */
    double streams;  /* share of requests that stream */
    double price_1k; /* USD per 1000 tokens; < 0: unpriced */
} side_t;

typedef struct {
    side_t v[2]; /* [WINDOW_ORIGINAL], [WINDOW_NEW] */
} traffic_t;

static void record_side(window_t *w, int variant, const side_t *s, uint64_t *rng)
{
    for (uint64_t i = 0; i < s->n; i++) {
        window_sample_t x;

        x.error = uniform01(rng) < s->err;
        x.latency_ms = (150.0 + 100.0 * uniform01(rng)) * s->lat;
        x.ttft_ms = uniform01(rng) < s->streams ? (40.0 + 40.0 * uniform01(rng)) * s->ttft : -1.0;
        x.tokens_in = 100 + splitmix64(rng) % 400;
        x.tokens_out = 50 + splitmix64(rng) % 200;
        x.cost_usd =
            s->price_1k >= 0.0 ? s->price_1k * (double)(x.tokens_in + x.tokens_out) / 1000.0 : -1;
        window_record(w, variant, &x);
    }
}

/* Original and new interleaved would not change a window (it only counts), so each side is
 * recorded in one go, from one seed: the same call always builds the same window. */
static window_t *fill(window_t *w, long long since, traffic_t t)
{
    uint64_t rng = 0x5eed0000ull + (uint64_t)since;

    window_init(w, since);
    record_side(w, WINDOW_ORIGINAL, &t.v[WINDOW_ORIGINAL], &rng);
    record_side(w, WINDOW_NEW, &t.v[WINDOW_NEW], &rng);
    return w;
}

static const side_t base_side = {2000, 0.0, 1.0, 1.0, 0.5, 0.002};

/* Both 0% errors, same latency and TTFT; new at half the price. */
static traffic_t healthy(void)
{
    traffic_t t = {{base_side, base_side}};

    t.v[WINDOW_NEW].price_1k = 0.001;
    return t;
}

static traffic_t failing(void) /* new 5% errors vs 0% */
{
    traffic_t t = healthy();

    t.v[WINDOW_NEW].err = 0.05;
    return t;
}

static traffic_t slow(void) /* new latency x2 */
{
    traffic_t t = healthy();

    t.v[WINDOW_NEW].lat = 2.0;
    return t;
}

static traffic_t few(void) /* far below min_requests on both sides, and failing */
{
    traffic_t t = failing();

    t.v[WINDOW_ORIGINAL].n = t.v[WINDOW_NEW].n = 100;
    return t;
}

static traffic_t new_only(void) /* what a 100% stage sees */
{
    traffic_t t = healthy();

    t.v[WINDOW_ORIGINAL].n = 0;
    return t;
}

static rollout_policy_t policy(void)
{
    rollout_policy_t p;

    memset(&p, 0, sizeof(p));
    p.mode = ROLLOUT_MODE_AUTO;
    p.n_stages = 3;
    p.stages_bp[0] = 1000;
    p.stages_bp[1] = 5000;
    p.stages_bp[2] = 10000;
    p.stage_min_duration_ms = 30 * MIN;
    p.check_interval_ms = MIN;
    p.max_stage_duration_ms = 72 * HOUR;
    p.min_requests = 500;
    p.failure_threshold = 3;
    p.error_rate_increase = 0.01;
    p.confidence = 0.95;
    p.latency_p95_ratio = 1.25;
    p.ttft_p95_ratio = 1.25;
    p.cost_per_1k_tokens_ratio = 1.0;
    p.on_failure = ROLLOUT_ON_FAILURE_ROLLBACK;
    return p;
}

/* One window per test is enough: static, it is 35 KB. */
static window_t W;

/* A check at `now` on traffic t measured since the stage start. */
static rollout_decision_t tick(rollout_state_t *st, const rollout_policy_t *pol, traffic_t t,
                               long long now, rollout_check_t *chk)
{
    return rollout_check(st, pol, fill(&W, st->stage_started_ms, t), now, chk);
}

/* ---- assertions ------------------------------------------------------------------------- */

static void state_equal(const rollout_state_t *a, const rollout_state_t *b)
{
    assert_int_equal(a->phase, b->phase);
    assert_int_equal(a->stage, b->stage);
    assert_int_equal(a->stage_bp, b->stage_bp);
    assert_true(a->stage_started_ms == b->stage_started_ms);
    assert_int_equal(a->consecutive_failures, b->consecutive_failures);
    assert_int_equal(a->corrupt, b->corrupt);
    assert_true(a->updated_ms == b->updated_ms);
    assert_string_equal(a->reason, b->reason);
    assert_true(a->baseline_requests == b->baseline_requests);
    assert_true(a->baseline_errors == b->baseline_errors);
}

static void decision_equal(const rollout_decision_t *a, const rollout_decision_t *b)
{
    assert_int_equal(a->changed, b->changed);
    assert_int_equal(a->from_phase, b->from_phase);
    assert_int_equal(a->to_phase, b->to_phase);
    assert_int_equal(a->from_stage, b->from_stage);
    assert_int_equal(a->to_stage, b->to_stage);
    assert_int_equal(a->from_bp, b->from_bp);
    assert_int_equal(a->to_bp, b->to_bp);
    assert_int_equal(a->stage_changed, b->stage_changed);
    assert_string_equal(a->reason, b->reason);
}

/* A transition: changed, from/to filled, the state stamped with now and the reason. */
static void changed_to(const rollout_decision_t *d, const rollout_state_t *st,
                       const rollout_policy_t *pol, long long now, rollout_phase_t from_phase,
                       int from_stage, rollout_phase_t to_phase, int to_stage)
{
    assert_int_equal(d->changed, 1);
    assert_int_equal(d->from_phase, from_phase);
    assert_int_equal(d->from_stage, from_stage);
    assert_int_equal(d->to_phase, to_phase);
    assert_int_equal(d->to_stage, to_stage);
    assert_int_equal(st->phase, to_phase);
    assert_int_equal(st->stage, to_stage);
    assert_int_equal(d->to_bp, rollout_percentage_bp(st, pol));
    assert_true(st->updated_ms == now);
    assert_true(d->reason[0] != '\0');
    assert_string_equal(st->reason, d->reason);
}

/* Nothing happened: changed 0, the state untouched, and still a reason (why not). */
static void unchanged(const rollout_decision_t *d, const rollout_state_t *before,
                      const rollout_state_t *after)
{
    assert_int_equal(d->changed, 0);
    assert_int_equal(d->stage_changed, 0);
    assert_int_equal(d->from_phase, d->to_phase);
    assert_int_equal(d->from_stage, d->to_stage);
    assert_int_equal(d->from_bp, d->to_bp);
    assert_true(d->reason[0] != '\0');
    state_equal(before, after);
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- names and policy ---------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(rollout_phase_name(ROLLOUT_PROGRESSING), "progressing");
    assert_string_equal(rollout_phase_name(ROLLOUT_PAUSED), "paused");
    assert_string_equal(rollout_phase_name(ROLLOUT_ROLLED_BACK), "rolled_back");
    assert_string_equal(rollout_phase_name(ROLLOUT_COMPLETED), "completed");
    assert_string_equal(rollout_phase_name((rollout_phase_t)9), "?");
    assert_string_equal(rollout_mode_name(ROLLOUT_MODE_MANUAL), "manual");
    assert_string_equal(rollout_mode_name((rollout_mode_t)-1), "?");
    assert_string_equal(rollout_on_failure_name(ROLLOUT_ON_FAILURE_STEP_DOWN), "step_down");
    assert_string_equal(rollout_gate_name(GATE_TTFT), "ttft");
    assert_string_equal(rollout_gate_name(ROLLOUT_N_GATES), "?");
}

static void test_policy_validate(void **state)
{
    rollout_policy_t p = policy(), q;
    char err[128];

    (void)state;
    assert_int_equal(rollout_policy_validate(&p, err, sizeof(err)), 0);
    q = p;
    q.cost_per_1k_tokens_ratio = INFINITY; /* a gate turned off */
    q.max_stage_duration_ms = 0;           /* never pause on inconclusive */
    assert_int_equal(rollout_policy_validate(&q, NULL, 0), 0);

    q = p;
    q.n_stages = 0;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    contains(err, "stages");
    q = p;
    q.stages_bp[1] = 1000;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    contains(err, "increase");
    q = p;
    q.stages_bp[2] = 10001;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.max_stage_duration_ms = 10 * MIN;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.check_interval_ms = 0;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.failure_threshold = 0;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.confidence = 1.0;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.latency_p95_ratio = NAN;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    q = p;
    q.on_failure = (rollout_on_failure_t)7;
    assert_int_equal(rollout_policy_validate(&q, err, sizeof(err)), -1);
    assert_int_equal(rollout_policy_validate(NULL, err, sizeof(err)), -1);
}

static void test_init_and_percentage(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;

    (void)state;
    memset(&st, 0x5a, sizeof(st));
    rollout_state_init(&st, &p, T0);
    assert_int_equal(st.phase, ROLLOUT_PROGRESSING);
    assert_int_equal(st.stage, 0);
    assert_int_equal(st.stage_bp, 1000);
    assert_true(st.stage_started_ms == T0 && st.updated_ms == T0);
    assert_int_equal(st.consecutive_failures, 0);
    assert_int_equal(st.corrupt, 0);
    contains(st.reason, "stage 0 (10%)");
    assert_int_equal(rollout_percentage_bp(&st, &p), 1000);

    /* Paused and completed keep their stage's percentage. */
    st.phase = ROLLOUT_PAUSED;
    assert_int_equal(rollout_percentage_bp(&st, &p), 1000);
    st.phase = ROLLOUT_COMPLETED;
    st.stage = 2;
    st.stage_bp = 10000;
    assert_int_equal(rollout_percentage_bp(&st, &p), 10000);
    /* Mode rollback: 0 whatever the state. */
    p.mode = ROLLOUT_MODE_ROLLBACK;
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
    p.mode = ROLLOUT_MODE_MANUAL;
    assert_int_equal(rollout_percentage_bp(&st, &p), 10000);
    st.corrupt = 1;
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
    st.corrupt = 0;
    st.phase = ROLLOUT_ROLLED_BACK;
    st.stage = -1;
    st.stage_bp = 0;
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
    /* A policy with no stages: 0%, and init says why. */
    p.n_stages = 0;
    rollout_state_init(&st, &p, T0);
    assert_int_equal(st.stage, -1);
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
}

/* ---- gates ----------------------------------------------------------------------------------- */

static void test_evaluate_healthy(void **state)
{
    rollout_policy_t p = policy();
    rollout_check_t c;

    (void)state;
    rollout_evaluate(&p, fill(&W, T0, healthy()), T0 + 5 * MIN, &c);
    for (int g = 0; g < ROLLOUT_N_GATES; g++)
        assert_int_equal(c.verdict[g], STATS_PASS);
    assert_int_equal(c.overall, STATS_PASS);
    assert_true(c.at_ms == T0 + 5 * MIN);
    assert_int_equal(c.summary[WINDOW_ORIGINAL].requests, 2000);
    assert_int_equal(c.summary[WINDOW_NEW].requests, 2000);
    assert_int_equal(c.summary[WINDOW_NEW].errors, 0);
    assert_true(c.latency_ratio > 0.9 && c.latency_ratio < 1.1);
    assert_true(c.ttft_ratio > 0.9 && c.ttft_ratio < 1.1);
    assert_true(c.cost_ratio > 0.45 && c.cost_ratio < 0.55);
    assert_true(c.error_rate.upper <= 0.01);
    assert_true(isfinite(c.latency_mwu.p_value) && isfinite(c.ttft_mwu.p_value));
}

static void test_evaluate_failing_and_slow(void **state)
{
    rollout_policy_t p = policy();
    traffic_t t;
    rollout_check_t c;

    (void)state;
    rollout_evaluate(&p, fill(&W, T0, failing()), T0, &c);
    assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_FAIL);
    assert_int_equal(c.overall, STATS_FAIL);
    assert_true(c.error_rate.lower > 0.01);
    assert_true(c.summary[WINDOW_NEW].error_rate > 0.03);

    rollout_evaluate(&p, fill(&W, T0, slow()), T0, &c);
    assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_PASS);
    assert_int_equal(c.verdict[GATE_LATENCY], STATS_FAIL);
    assert_int_equal(c.verdict[GATE_TTFT], STATS_PASS);
    assert_int_equal(c.overall, STATS_FAIL);
    assert_true(c.latency_ratio > 1.8);
    assert_true(c.latency_mwu.p_value < 0.001);

    t = healthy();
    t.v[WINDOW_NEW].ttft = 2.0;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_LATENCY], STATS_PASS);
    assert_int_equal(c.verdict[GATE_TTFT], STATS_FAIL);
    assert_int_equal(c.overall, STATS_FAIL);
}

static void test_evaluate_few_requests(void **state)
{
    rollout_policy_t p = policy();
    traffic_t t = few();
    rollout_check_t c;

    (void)state;
    /* Failing and slow, but 100 < min_requests on both sides: never a failure. */
    t.v[WINDOW_NEW].lat = 3.0;
    t.v[WINDOW_NEW].price_1k = 1.0;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    for (int g = 0; g < ROLLOUT_N_GATES; g++)
        assert_int_equal(c.verdict[g], STATS_INCONCLUSIVE);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);
    assert_true(c.latency_ratio > 2.5); /* the numbers are still there for the log */

    /* One side with enough, the other without: the same. */
    t = failing();
    t.v[WINDOW_NEW].n = 499;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    for (int g = 0; g < ROLLOUT_N_GATES; g++)
        assert_int_equal(c.verdict[g], STATS_INCONCLUSIVE);
    t = healthy();
    t.v[WINDOW_ORIGINAL].n = 10;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);

    /* No window at all. */
    rollout_evaluate(&p, NULL, T0, &c);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);
    assert_int_equal(c.summary[WINDOW_NEW].requests, 0);
    assert_true(isnan(c.summary[WINDOW_NEW].latency_p95));
    assert_true(isnan(c.latency_ratio) && isnan(c.cost_ratio) && isnan(c.error_rate.diff));
}

static void test_evaluate_ttft_applicability(void **state)
{
    rollout_policy_t p = policy();
    traffic_t t;
    rollout_check_t c;

    (void)state;
    /* No streams anywhere: TTFT does not apply. */
    t = healthy();
    t.v[WINDOW_ORIGINAL].streams = t.v[WINDOW_NEW].streams = 0.0;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_TTFT], STATS_PASS);
    assert_true(isnan(c.ttft_ratio));
    assert_int_equal(c.overall, STATS_PASS);

    /* Streams on one side only: cannot be judged. */
    t.v[WINDOW_ORIGINAL].streams = 0.5;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_TTFT], STATS_INCONCLUSIVE);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);

    /* Streams on both sides but fewer first tokens than min_requests (~100 each). */
    t.v[WINDOW_NEW].streams = t.v[WINDOW_ORIGINAL].streams = 0.05;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_TTFT], STATS_INCONCLUSIVE);
    assert_int_equal(c.verdict[GATE_LATENCY], STATS_PASS);
}

static void test_evaluate_cost(void **state)
{
    rollout_policy_t p = policy();
    traffic_t t;
    rollout_check_t c;

    (void)state;
    t = healthy();
    t.v[WINDOW_ORIGINAL].price_1k = t.v[WINDOW_NEW].price_1k = -1.0; /* no prices at all */
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_COST], STATS_PASS);
    assert_true(isnan(c.cost_ratio));
    assert_int_equal(c.overall, STATS_PASS);

    t.v[WINDOW_NEW].price_1k = 0.001; /* only one side priced */
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_COST], STATS_INCONCLUSIVE);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);

    t = healthy();
    t.v[WINDOW_NEW].price_1k = 0.004; /* new twice as expensive */
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_COST], STATS_FAIL);
    assert_true(c.cost_ratio > 1.9 && c.cost_ratio < 2.1);
    assert_int_equal(c.overall, STATS_FAIL);

    p.cost_per_1k_tokens_ratio = INFINITY; /* gate off */
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_int_equal(c.verdict[GATE_COST], STATS_PASS);

    t.v[WINDOW_ORIGINAL].price_1k = 0.0; /* original free, new not: infinitely worse */
    p.cost_per_1k_tokens_ratio = 1.0;
    rollout_evaluate(&p, fill(&W, T0, t), T0, &c);
    assert_true(isinf(c.cost_ratio));
    assert_int_equal(c.verdict[GATE_COST], STATS_FAIL);
}

/* ---- automatic transitions ---------------------------------------------------------------- */

static void test_promote_through_stages(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    rollout_check_t c;
    long long now = T0;

    (void)state;
    rollout_state_init(&st, &p, T0);
    for (int s = 0; s < 2; s++) {
        /* Holding until the minimum duration, then promoted with a window restart. */
        before = st;
        d = tick(&st, &p, healthy(), now + 30 * MIN - 1, &c);
        assert_int_equal(c.overall, STATS_PASS);
        unchanged(&d, &before, &st);
        contains(d.reason, "hold");
        now += 30 * MIN;
        d = tick(&st, &p, healthy(), now, &c);
        changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, s, ROLLOUT_PROGRESSING, s + 1);
        assert_int_equal(d.stage_changed, 1);
        assert_int_equal(d.from_bp, p.stages_bp[s]);
        assert_int_equal(d.to_bp, p.stages_bp[s + 1]);
        assert_true(st.stage_started_ms == now);
        contains(d.reason, "promoted");
    }
    assert_int_equal(rollout_percentage_bp(&st, &p), 10000);

    /* 100%: no baseline, a soak that completes after the minimum duration. */
    before = st;
    d = tick(&st, &p, new_only(), now + 29 * MIN, &c);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);
    unchanged(&d, &before, &st);
    now += 30 * MIN;
    d = tick(&st, &p, new_only(), now, &c);
    changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 2, ROLLOUT_COMPLETED, 2);
    assert_int_equal(d.stage_changed, 0);
    assert_int_equal(d.to_bp, 10000);
    contains(d.reason, "completed");
    assert_int_equal(rollout_percentage_bp(&st, &p), 10000);

    /* Completed stays completed, whatever the gates say. */
    before = st;
    d = tick(&st, &p, failing(), now + HOUR, &c);
    assert_int_equal(c.overall, STATS_FAIL);
    unchanged(&d, &before, &st);
}

static void test_complete_on_pass_and_soak_rules(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    traffic_t t;

    (void)state;
    /* Stages ending below 100%: the last stage completes on a passing check. */
    p.n_stages = 2;
    rollout_state_init(&st, &p, T0);
    d = rollout_promote(&st, &p, T0, "alice");
    assert_int_equal(d.changed, 1);
    d = tick(&st, &p, healthy(), T0 + 30 * MIN, NULL);
    changed_to(&d, &st, &p, T0 + 30 * MIN, ROLLOUT_PROGRESSING, 1, ROLLOUT_COMPLETED, 1);
    assert_int_equal(rollout_percentage_bp(&st, &p), 5000);

    /* At 100% the soak needs min_requests on new ... */
    p = policy();
    rollout_state_init(&st, &p, T0);
    st.stage = 2;
    st.stage_bp = 10000;
    t = new_only();
    t.v[WINDOW_NEW].n = 499;
    before = st;
    d = tick(&st, &p, t, T0 + 31 * MIN, NULL);
    unchanged(&d, &before, &st);
    /* ... and a failing comparison still acts when the original has traffic (deny list). */
    d = tick(&st, &p, failing(), T0 + 31 * MIN, NULL);
    assert_int_equal(d.changed, 1);
    assert_int_equal(st.consecutive_failures, 1);
    assert_int_equal(st.phase, ROLLOUT_PROGRESSING);
}

static void test_inconclusive_holds_then_pauses(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    rollout_check_t c;

    (void)state;
    rollout_state_init(&st, &p, T0);
    for (long long at = T0 + HOUR; at < T0 + 72 * HOUR; at += 12 * HOUR) {
        before = st;
        d = tick(&st, &p, few(), at, &c);
        assert_int_equal(c.overall, STATS_INCONCLUSIVE);
        unchanged(&d, &before, &st);
        contains(d.reason, "inconclusive");
    }
    before = st;
    d = tick(&st, &p, few(), T0 + 72 * HOUR - 1, &c);
    unchanged(&d, &before, &st);
    d = tick(&st, &p, few(), T0 + 72 * HOUR, &c);
    changed_to(&d, &st, &p, T0 + 72 * HOUR, ROLLOUT_PROGRESSING, 0, ROLLOUT_PAUSED, 0);
    contains(d.reason, "inconclusive for 72h");
    contains(d.reason, "needs a human");
    assert_int_equal(d.stage_changed, 0);
    assert_int_equal(rollout_percentage_bp(&st, &p), 1000);

    /* Paused: no automatic transition, even on passing data. */
    before = st;
    d = tick(&st, &p, healthy(), T0 + 100 * HOUR, &c);
    assert_int_equal(c.overall, STATS_PASS);
    unchanged(&d, &before, &st);

    /* max_stage_duration 0: never pauses. */
    p.max_stage_duration_ms = 0;
    rollout_state_init(&st, &p, T0);
    before = st;
    d = tick(&st, &p, few(), T0 + 1000 * HOUR, &c);
    unchanged(&d, &before, &st);
}

static void test_rollback_after_threshold(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    long long now = T0 + MIN;

    (void)state;
    rollout_state_init(&st, &p, T0);
    for (int i = 1; i <= 2; i++, now += MIN) {
        /* A failing check below the threshold changes only the streak: persisted, audited. */
        d = tick(&st, &p, failing(), now, NULL);
        changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 0, ROLLOUT_PROGRESSING, 0);
        assert_int_equal(d.stage_changed, 0);
        assert_int_equal(st.consecutive_failures, i);
        assert_int_equal(d.to_bp, 1000);
        contains(d.reason, "error_rate");
    }
    d = tick(&st, &p, failing(), now, NULL);
    changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 0, ROLLOUT_ROLLED_BACK, -1);
    assert_int_equal(d.stage_changed, 1);
    assert_int_equal(d.from_bp, 1000);
    assert_int_equal(d.to_bp, 0);
    assert_int_equal(st.consecutive_failures, 0);
    contains(d.reason, "3 consecutive failing checks (error_rate)");

    /* Rolled back stays rolled back, whatever the data. */
    before = st;
    d = tick(&st, &p, healthy(), now + 10 * HOUR, NULL);
    unchanged(&d, &before, &st);
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
}

static void test_non_failing_check_resets_count(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;
    rollout_decision_t d;
    long long now = T0 + MIN;

    (void)state;
    rollout_state_init(&st, &p, T0);
    tick(&st, &p, slow(), now, NULL);
    tick(&st, &p, slow(), now + MIN, NULL);
    assert_int_equal(st.consecutive_failures, 2);
    /* A pass (before the minimum duration: no promotion) clears the streak. */
    d = tick(&st, &p, healthy(), now + 2 * MIN, NULL);
    changed_to(&d, &st, &p, now + 2 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_PROGRESSING, 0);
    assert_int_equal(st.consecutive_failures, 0);
    contains(d.reason, "cleared");
    tick(&st, &p, slow(), now + 3 * MIN, NULL);
    tick(&st, &p, slow(), now + 4 * MIN, NULL);
    /* An inconclusive check breaks the streak too. */
    d = tick(&st, &p, few(), now + 5 * MIN, NULL);
    assert_int_equal(d.changed, 1);
    assert_int_equal(st.consecutive_failures, 0);
    tick(&st, &p, slow(), now + 6 * MIN, NULL);
    tick(&st, &p, slow(), now + 7 * MIN, NULL);
    assert_int_equal(st.phase, ROLLOUT_PROGRESSING);
    d = tick(&st, &p, slow(), now + 8 * MIN, NULL);
    changed_to(&d, &st, &p, now + 8 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_ROLLED_BACK, -1);
    contains(d.reason, "latency");
}

static void test_step_down(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;
    rollout_decision_t d;
    long long now = T0 + 30 * MIN;

    (void)state;
    p.on_failure = ROLLOUT_ON_FAILURE_STEP_DOWN;
    rollout_state_init(&st, &p, T0);
    d = tick(&st, &p, healthy(), now, NULL);
    assert_int_equal(st.stage, 1);
    for (int i = 1; i < 3; i++)
        tick(&st, &p, failing(), now + i * MIN, NULL);
    d = tick(&st, &p, failing(), now + 3 * MIN, NULL);
    changed_to(&d, &st, &p, now + 3 * MIN, ROLLOUT_PROGRESSING, 1, ROLLOUT_PROGRESSING, 0);
    assert_int_equal(d.stage_changed, 1);
    assert_int_equal(d.from_bp, 5000);
    assert_int_equal(d.to_bp, 1000);
    assert_true(st.stage_started_ms == now + 3 * MIN);
    assert_int_equal(st.consecutive_failures, 0);
    contains(d.reason, "stepped down from 50% to 10%");

    /* From stage 0 there is nothing below: rolled back. */
    now = st.stage_started_ms;
    for (int i = 1; i < 3; i++)
        tick(&st, &p, failing(), now + i * MIN, NULL);
    d = tick(&st, &p, failing(), now + 3 * MIN, NULL);
    changed_to(&d, &st, &p, now + 3 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_ROLLED_BACK, -1);
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
}

static void test_pause_on_failure(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    p.on_failure = ROLLOUT_ON_FAILURE_PAUSE;
    rollout_state_init(&st, &p, T0);
    for (int i = 1; i < 3; i++)
        tick(&st, &p, failing(), T0 + i * MIN, NULL);
    d = tick(&st, &p, failing(), T0 + 3 * MIN, NULL);
    changed_to(&d, &st, &p, T0 + 3 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_PAUSED, 0);
    assert_int_equal(d.stage_changed, 0);
    assert_int_equal(rollout_percentage_bp(&st, &p), 1000);
    contains(d.reason, "paused");
    before = st;
    d = tick(&st, &p, failing(), T0 + 4 * MIN, NULL);
    unchanged(&d, &before, &st);
}

static void test_failing_below_threshold_at_max_duration_pauses(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;
    rollout_decision_t d;

    (void)state;
    p.failure_threshold = 5;
    rollout_state_init(&st, &p, T0);
    d = tick(&st, &p, failing(), T0 + 72 * HOUR, NULL);
    changed_to(&d, &st, &p, T0 + 72 * HOUR, ROLLOUT_PROGRESSING, 0, ROLLOUT_PAUSED, 0);
    contains(d.reason, "needs a human");
}

static void test_stale_window_holds(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    rollout_check_t c;

    (void)state;
    rollout_state_init(&st, &p, T0);
    /* Data from before the stage start (the driver has not restarted the window yet). */
    before = st;
    d = rollout_check(&st, &p, fill(&W, T0 - 1, failing()), T0 + HOUR, &c);
    unchanged(&d, &before, &st);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);
    assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_INCONCLUSIVE);
    contains(d.reason, "before the stage start");
    d = rollout_check(&st, &p, fill(&W, T0 - 1, healthy()), T0 + HOUR, &c);
    unchanged(&d, &before, &st);
}

/* Two workers after a promotion: one served the new stage, the other nothing since the
 * stage started and still holds stage-0 samples. Their merge must not be judged (neither
 * promoted on the old samples nor diluted by them), whatever stamp the driver gives it. */
static void test_merge_with_a_stale_worker_window_holds(void **state)
{
    static window_t fresh, stale, merged;
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    rollout_check_t c;
    traffic_t t = failing();
    long long start = T0 + 30 * MIN;

    (void)state;
    rollout_state_init(&st, &p, T0);
    d = rollout_promote(&st, &p, start, "alice");
    assert_true(st.stage_started_ms == start);
    t.v[WINDOW_NEW].n = t.v[WINDOW_ORIGINAL].n = 50;
    fill(&fresh, start, t);
    fill(&stale, T0, healthy());
    for (int order = 0; order < 2; order++) {
        window_init(&merged, start); /* what the driver stamps: the current window start */
        window_merge(&merged, order ? &stale : &fresh);
        window_merge(&merged, order ? &fresh : &stale);
        assert_true(merged.since_ms == T0);
        before = st;
        d = rollout_check(&st, &p, &merged, start + HOUR, &c);
        unchanged(&d, &before, &st);
        assert_int_equal(c.overall, STATS_INCONCLUSIVE);
        contains(d.reason, "before the stage start");
    }
}

/* A state file whose stage starts in the future (clock stepped back): the windows, stamped
 * with the restart time, are older than the stage and every check held, even failing ones.
 * Clamped to now, the failing checks count again. */
static void test_stage_start_in_the_future_is_clamped(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    long long now = T0 + HOUR;

    (void)state;
    rollout_state_init(&st, &p, now + 2 * HOUR);
    before = st;
    d = rollout_check(&st, &p, fill(&W, now, failing()), now + MIN, NULL);
    unchanged(&d, &before, &st);
    contains(d.reason, "before the stage start");

    assert_int_equal(rollout_state_clamp_clock(&st, now), 1);
    assert_true(st.stage_started_ms == now);
    assert_true(st.updated_ms == now + 2 * HOUR); /* only the stage start moves */
    assert_int_equal(rollout_state_clamp_clock(&st, now), 0);
    assert_int_equal(rollout_state_clamp_clock(&st, now + 1), 0);
    assert_true(st.stage_started_ms == now);
    for (int i = 1; i <= 3; i++)
        d = rollout_check(&st, &p, fill(&W, now, failing()), now + i * MIN, NULL);
    changed_to(&d, &st, &p, now + 3 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_ROLLED_BACK, -1);
}

static void test_promotion_needs_a_full_window_after_restart(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    rollout_state_init(&st, &p, T0);
    /* The process restarted at T0 + 20m: its windows measure from then. */
    before = st;
    d = rollout_check(&st, &p, fill(&W, T0 + 20 * MIN, healthy()), T0 + 30 * MIN, NULL);
    unchanged(&d, &before, &st);
    contains(d.reason, "10m observed of 30m needed");
    d = rollout_check(&st, &p, fill(&W, T0 + 20 * MIN, healthy()), T0 + 50 * MIN, NULL);
    changed_to(&d, &st, &p, T0 + 50 * MIN, ROLLOUT_PROGRESSING, 0, ROLLOUT_PROGRESSING, 1);
}

/* ---- manual actions and modes ------------------------------------------------------------- */

static void test_manual_actions(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    long long now = T0;

    (void)state;
    rollout_state_init(&st, &p, T0);

    d = rollout_promote(&st, &p, ++now, "alice");
    changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 0, ROLLOUT_PROGRESSING, 1);
    assert_int_equal(d.stage_changed, 1);
    assert_true(st.stage_started_ms == now);
    contains(d.reason, "promoted by alice from 10% to 50%");

    d = rollout_pause(&st, &p, ++now, "bob");
    changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 1, ROLLOUT_PAUSED, 1);
    assert_int_equal(d.stage_changed, 0);
    contains(d.reason, "paused by bob at 50%");
    before = st;
    d = rollout_pause(&st, &p, ++now, "bob");
    unchanged(&d, &before, &st);
    contains(d.reason, "refused");

    d = rollout_resume(&st, &p, ++now, NULL);
    changed_to(&d, &st, &p, now, ROLLOUT_PAUSED, 1, ROLLOUT_PROGRESSING, 1);
    assert_int_equal(d.stage_changed, 1); /* the paused window is not trusted */
    assert_true(st.stage_started_ms == now);
    contains(d.reason, "resumed by operator");
    before = st;
    d = rollout_resume(&st, &p, ++now, NULL);
    unchanged(&d, &before, &st);

    /* A paused rollout can be promoted: it continues at the next stage. */
    rollout_pause(&st, &p, ++now, "bob");
    d = rollout_promote(&st, &p, ++now, "alice");
    changed_to(&d, &st, &p, now, ROLLOUT_PAUSED, 1, ROLLOUT_PROGRESSING, 2);
    before = st;
    d = rollout_promote(&st, &p, ++now, "alice");
    unchanged(&d, &before, &st);
    contains(d.reason, "last stage");

    d = rollout_rollback(&st, &p, ++now, "carol", "p99 looks bad");
    changed_to(&d, &st, &p, now, ROLLOUT_PROGRESSING, 2, ROLLOUT_ROLLED_BACK, -1);
    assert_int_equal(d.stage_changed, 1);
    assert_int_equal(d.from_bp, 10000);
    assert_int_equal(d.to_bp, 0);
    contains(d.reason, "rolled back by carol: p99 looks bad");
    before = st;
    d = rollout_rollback(&st, &p, ++now, "carol", NULL);
    unchanged(&d, &before, &st);
    d = rollout_promote(&st, &p, ++now, "alice");
    unchanged(&d, &before, &st);
    contains(d.reason, "resume");
    d = rollout_pause(&st, &p, ++now, "bob");
    unchanged(&d, &before, &st);

    d = rollout_resume(&st, &p, ++now, "dave");
    changed_to(&d, &st, &p, now, ROLLOUT_ROLLED_BACK, -1, ROLLOUT_PROGRESSING, 0);
    assert_int_equal(d.stage_changed, 1);
    assert_int_equal(d.to_bp, 1000);

    /* Completed: promote, pause and resume refused; rollback and reset accepted. */
    st.phase = ROLLOUT_COMPLETED;
    st.stage = 2;
    st.stage_bp = 10000;
    before = st;
    unchanged((d = rollout_promote(&st, &p, ++now, "a"), &d), &before, &st);
    unchanged((d = rollout_pause(&st, &p, ++now, "a"), &d), &before, &st);
    unchanged((d = rollout_resume(&st, &p, ++now, "a"), &d), &before, &st);
    d = rollout_reset(&st, &p, ++now, "erin");
    changed_to(&d, &st, &p, now, ROLLOUT_COMPLETED, 2, ROLLOUT_PROGRESSING, 0);
    assert_int_equal(d.stage_changed, 1);
    assert_true(st.stage_started_ms == now);
    contains(d.reason, "reset by erin");
}

static void test_mode_manual(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    p.mode = ROLLOUT_MODE_MANUAL;
    rollout_state_init(&st, &p, T0);
    before = st;
    for (int i = 1; i <= 5; i++) {
        d = tick(&st, &p, failing(), T0 + i * MIN, NULL);
        unchanged(&d, &before, &st);
        contains(d.reason, "manual");
        contains(d.reason, "error_rate");
    }
    d = tick(&st, &p, healthy(), T0 + 10 * HOUR, NULL);
    unchanged(&d, &before, &st);
    d = tick(&st, &p, few(), T0 + 100 * HOUR, NULL);
    unchanged(&d, &before, &st);
    assert_int_equal(rollout_percentage_bp(&st, &p), 1000);

    d = rollout_promote(&st, &p, T0 + 100 * HOUR, "alice");
    changed_to(&d, &st, &p, T0 + 100 * HOUR, ROLLOUT_PROGRESSING, 0, ROLLOUT_PROGRESSING, 1);
    d = rollout_rollback(&st, &p, T0 + 101 * HOUR, "alice", "done testing");
    changed_to(&d, &st, &p, T0 + 101 * HOUR, ROLLOUT_PROGRESSING, 1, ROLLOUT_ROLLED_BACK, -1);
}

static void test_mode_rollback(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    rollout_state_init(&st, &p, T0);
    rollout_promote(&st, &p, T0, "alice");
    p.mode = ROLLOUT_MODE_ROLLBACK;
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);
    before = st;
    d = tick(&st, &p, healthy(), T0 + 10 * HOUR, NULL);
    unchanged(&d, &before, &st);
    contains(d.reason, "mode rollback");
    assert_int_equal(d.from_bp, 0);
    d = tick(&st, &p, failing(), T0 + 10 * HOUR, NULL);
    unchanged(&d, &before, &st);
    d = rollout_promote(&st, &p, T0 + 10 * HOUR, "alice");
    unchanged(&d, &before, &st);
    contains(d.reason, "mode is rollback");

    /* The driver records the config switch itself. */
    d = rollout_rollback(&st, &p, T0 + 11 * HOUR, "config", "mode: rollback");
    changed_to(&d, &st, &p, T0 + 11 * HOUR, ROLLOUT_PROGRESSING, 1, ROLLOUT_ROLLED_BACK, -1);
    contains(d.reason, "config: mode: rollback");
    assert_int_equal(d.from_bp, 0); /* effective: the mode had already cut traffic */
    before = st;
    d = rollout_resume(&st, &p, T0 + 12 * HOUR, "alice");
    unchanged(&d, &before, &st);
    /* Reset in mode rollback does not start stage 0 behind anyone's back. */
    st.corrupt = 1;
    d = rollout_reset(&st, &p, T0 + 13 * HOUR, "alice");
    changed_to(&d, &st, &p, T0 + 13 * HOUR, ROLLOUT_ROLLED_BACK, -1, ROLLOUT_ROLLED_BACK, -1);
    assert_int_equal(st.corrupt, 0);

    /* Back to auto: rolled back until an operator resumes. */
    p.mode = ROLLOUT_MODE_AUTO;
    before = st;
    d = tick(&st, &p, healthy(), T0 + 14 * HOUR, NULL);
    unchanged(&d, &before, &st);
    d = rollout_resume(&st, &p, T0 + 15 * HOUR, "alice");
    changed_to(&d, &st, &p, T0 + 15 * HOUR, ROLLOUT_ROLLED_BACK, -1, ROLLOUT_PROGRESSING, 0);
}

static void test_corrupt_state(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    rollout_state_corrupt(&st, T0, "unexpected key \"x\"");
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(st.phase, ROLLOUT_ROLLED_BACK);
    assert_int_equal(st.stage, -1);
    contains(st.reason, "unexpected key");
    assert_int_equal(rollout_percentage_bp(&st, &p), 0);

    before = st;
    d = tick(&st, &p, healthy(), T0 + 100 * HOUR, NULL);
    unchanged(&d, &before, &st);
    contains(d.reason, "POST /admin/rollout/reset first");
    d = rollout_promote(&st, &p, T0 + 1, "alice");
    unchanged(&d, &before, &st);
    assert_string_equal(d.reason,
                        "promote refused: state file unreadable; POST /admin/rollout/reset first");
    unchanged((d = rollout_resume(&st, &p, T0 + 1, "a"), &d), &before, &st);
    contains(d.reason, "state file unreadable");
    unchanged((d = rollout_pause(&st, &p, T0 + 1, "a"), &d), &before, &st);
    unchanged((d = rollout_rollback(&st, &p, T0 + 1, "a", "x"), &d), &before, &st);

    d = rollout_reset(&st, &p, T0 + 2, "alice");
    changed_to(&d, &st, &p, T0 + 2, ROLLOUT_ROLLED_BACK, -1, ROLLOUT_PROGRESSING, 0);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(d.from_bp, 0);
    assert_int_equal(d.to_bp, 1000);
    d = rollout_promote(&st, &p, T0 + 3, "alice");
    assert_int_equal(d.changed, 1);
}

static void test_stage_list_changed(void **state)
{
    rollout_policy_t p = policy(), q;
    rollout_state_t st, before;
    rollout_decision_t d;

    (void)state;
    rollout_state_init(&st, &p, T0);
    rollout_promote(&st, &p, T0, "alice"); /* stage 1 = 50% */

    /* A stage appended after the current one changes nothing. */
    q = p;
    q.stages_bp[2] = 7500;
    q.stages_bp[3] = 10000;
    q.n_stages = 4;
    d = rollout_state_reconcile(&st, &q, T0 + 1);
    assert_int_equal(d.changed, 0);
    assert_int_equal(rollout_percentage_bp(&st, &q), 5000);

    /* 10,50,100 -> 10,100: stage 1 would jump to 100% without a gate. */
    q = p;
    q.stages_bp[1] = 10000;
    q.n_stages = 2;
    assert_int_equal(rollout_percentage_bp(&st, &q), 0);
    before = st;
    unchanged((d = rollout_promote(&st, &q, T0 + 1, "a"), &d), &before, &st);
    contains(d.reason, "stage list changed");
    unchanged((d = rollout_pause(&st, &q, T0 + 1, "a"), &d), &before, &st);
    d = tick(&st, &q, healthy(), T0 + HOUR, NULL);
    changed_to(&d, &st, &q, T0 + HOUR, ROLLOUT_PROGRESSING, 1, ROLLOUT_ROLLED_BACK, -1);
    assert_int_equal(st.corrupt, 1);
    contains(d.reason, "stage 1 was 50%, is now 100%");
    d = rollout_reset(&st, &q, T0 + 2 * HOUR, "alice");
    changed_to(&d, &st, &q, T0 + 2 * HOUR, ROLLOUT_ROLLED_BACK, -1, ROLLOUT_PROGRESSING, 0);

    /* A stage index past the new list: the same. */
    rollout_state_init(&st, &p, T0);
    st.stage = 2;
    st.stage_bp = 10000;
    q.n_stages = 1;
    d = rollout_state_reconcile(&st, &q, T0 + 1);
    assert_int_equal(d.changed, 1);
    assert_int_equal(st.corrupt, 1);
    contains(d.reason, "is now gone");
}

/* ---- persistence ------------------------------------------------------------------------ */

/* Restart = serialize, parse, and both copies decide the same on the same next check. */
static void restart_and_compare(const rollout_state_t *st, const rollout_policy_t *pol,
                                traffic_t next, long long now)
{
    char buf[1024];
    rollout_state_t a = *st, b;
    rollout_decision_t da, db;
    int n = rollout_state_serialize(st, buf, sizeof(buf));

    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    memset(&b, 0x77, sizeof(b));
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &b), 0);
    state_equal(&a, &b);
    assert_int_equal(rollout_percentage_bp(&a, pol), rollout_percentage_bp(&b, pol));
    da = rollout_check(&a, pol, fill(&W, a.stage_started_ms, next), now, NULL);
    db = rollout_check(&b, pol, fill(&W, b.stage_started_ms, next), now, NULL);
    decision_equal(&da, &db);
    state_equal(&a, &b);
    da = rollout_promote(&a, pol, now + 1, "x");
    db = rollout_promote(&b, pol, now + 1, "x");
    decision_equal(&da, &db);
}

static void test_restart_in_each_phase(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;

    (void)state;
    rollout_state_init(&st, &p, T0);
    restart_and_compare(&st, &p, healthy(), T0 + 30 * MIN); /* promotes */
    tick(&st, &p, failing(), T0 + MIN, NULL);
    tick(&st, &p, failing(), T0 + 2 * MIN, NULL);
    restart_and_compare(&st, &p, failing(), T0 + 3 * MIN); /* the streak survives: rolls back */

    rollout_promote(&st, &p, T0 + 4 * MIN, "alice");
    restart_and_compare(&st, &p, healthy(), T0 + 5 * MIN); /* progressing at 50%, holds */
    rollout_pause(&st, &p, T0 + 6 * MIN, "bob");
    restart_and_compare(&st, &p, healthy(), T0 + HOUR); /* paused */
    rollout_rollback(&st, &p, T0 + 7 * MIN, "carol", "why \"not\"\n\\");
    restart_and_compare(&st, &p, healthy(), T0 + HOUR); /* rolled back */

    st.phase = ROLLOUT_COMPLETED;
    st.stage = 2;
    st.stage_bp = 10000;
    restart_and_compare(&st, &p, failing(), T0 + HOUR); /* completed */

    rollout_state_corrupt(&st, T0, "truncated");
    restart_and_compare(&st, &p, healthy(), T0 + HOUR); /* corrupt survives too */

    /* A corrupt state built by hand from init (stage_bp left at 10%) still round-trips. */
    rollout_state_init(&st, &p, T0);
    st.corrupt = 1;
    st.phase = ROLLOUT_ROLLED_BACK;
    st.stage = -1;
    {
        char buf[1024];
        rollout_state_t b;
        int n = rollout_state_serialize(&st, buf, sizeof(buf));

        assert_int_equal(rollout_state_parse(buf, (size_t)n, &b), 0);
        assert_int_equal(b.corrupt, 1);
        assert_int_equal(b.stage, -1);
        assert_int_equal(b.stage_bp, 0);
        assert_int_equal(rollout_percentage_bp(&b, &p), 0);
    }

    p.mode = ROLLOUT_MODE_MANUAL;
    rollout_state_init(&st, &p, -123456); /* before 1970: negative times round-trip */
    restart_and_compare(&st, &p, healthy(), T0);
}

/* 100% with no concurrent baseline: new's own error rate is still judged, against the
 * original's of the last automatic promotion or, when none is known, against 0. A new
 * provider that failed every request used to complete the rollout after the soak. */
static void test_full_stage_judges_new_without_baseline(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st, before;
    rollout_decision_t d;
    rollout_check_t c;
    traffic_t broken = new_only(), worse = new_only(), near = new_only();
    long long now = T0;

    (void)state;
    broken.v[WINDOW_NEW].err = 1.0;
    worse.v[WINDOW_NEW].err = 0.05;
    near.v[WINDOW_NEW].err = 0.035;

    /* No baseline known (e.g. stages [100], or a version-1 state file): against 0. */
    rollout_state_init(&st, &p, T0);
    st.stage = 2;
    st.stage_bp = 10000;
    for (int i = 1; i <= 2; i++) {
        d = tick(&st, &p, broken, T0 + 30 * MIN + i, &c);
        assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_FAIL);
        assert_int_equal(c.overall, STATS_FAIL);
        assert_true(c.error_rate.p_orig == 0.0);
        changed_to(&d, &st, &p, T0 + 30 * MIN + i, ROLLOUT_PROGRESSING, 2, ROLLOUT_PROGRESSING, 2);
        assert_int_equal(st.consecutive_failures, i);
    }
    d = tick(&st, &p, broken, T0 + 31 * MIN, &c);
    changed_to(&d, &st, &p, T0 + 31 * MIN, ROLLOUT_PROGRESSING, 2, ROLLOUT_ROLLED_BACK, -1);
    contains(d.reason, "error_rate");

    /* Too few requests on new: inconclusive, the soak holds. */
    rollout_state_init(&st, &p, T0);
    st.stage = 2;
    st.stage_bp = 10000;
    broken.v[WINDOW_NEW].n = 499;
    before = st;
    d = tick(&st, &p, broken, T0 + 31 * MIN, &c);
    assert_int_equal(c.overall, STATS_INCONCLUSIVE);
    unchanged(&d, &before, &st);

    /* Promoted automatically: the original's counts of the passing check are the baseline. */
    rollout_state_init(&st, &p, T0);
    for (int s = 0; s < 2; s++) {
        now += 30 * MIN;
        d = tick(&st, &p, healthy(), now, &c);
        assert_int_equal(st.stage, s + 1);
        assert_true(st.baseline_requests == 2000 && st.baseline_errors == 0);
    }
    restart_and_compare(&st, &p, worse, now + 30 * MIN); /* survives a restart */
    d = tick(&st, &p, worse, now + 30 * MIN, &c);
    assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_FAIL);
    assert_int_equal(st.consecutive_failures, 1);
    assert_int_equal(st.phase, ROLLOUT_PROGRESSING);

    /* The reference is the baseline, not 0: 3.5% fails against 0%, not against 3%. */
    st.consecutive_failures = 0;
    st.baseline_requests = 5000;
    st.baseline_errors = 150;
    d = tick(&st, &p, near, now + 30 * MIN, &c);
    assert_int_not_equal(c.verdict[GATE_ERROR_RATE], STATS_FAIL);
    assert_true(fabs(c.error_rate.p_orig - 0.03) < 1e-12);
    assert_int_equal(st.consecutive_failures, 0);
    assert_int_not_equal(st.phase, ROLLOUT_COMPLETED); /* not shown within: no completion */
    st.baseline_requests = st.baseline_errors = 0;
    d = tick(&st, &p, near, now + 30 * MIN, &c);
    assert_int_equal(c.verdict[GATE_ERROR_RATE], STATS_FAIL);

    /* A healthy new provider completes the soak, and a reset forgets the baseline. */
    st.consecutive_failures = 0;
    st.baseline_requests = 2000;
    d = tick(&st, &p, new_only(), now + 30 * MIN, &c);
    changed_to(&d, &st, &p, now + 30 * MIN, ROLLOUT_PROGRESSING, 2, ROLLOUT_COMPLETED, 2);
    contains(d.reason, "original at the last promotion");
    rollout_reset(&st, &p, now + HOUR, "alice");
    assert_true(st.baseline_requests == 0 && st.baseline_errors == 0);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "garbage",
        "{}",
        "[]",
        "null",
        "{\"version\":1}",
        /* version 1 with the baseline keys, an unknown version */
        "{\"version\":1,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":0,\"baseline_errors\":0}",
        "{\"version\":3,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":0,\"baseline_errors\":0}",
        /* version 3 with a manual percentage out of range, an unknown version */
        "{\"version\":3,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":0,\"baseline_errors\":0,\"manual_bp\":10001,"
        "\"manual_file_bp\":-1}",
        "{\"version\":4,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":0,\"baseline_errors\":0,\"manual_bp\":-1,"
        "\"manual_file_bp\":-1}",
        /* more baseline errors than requests, a negative count */
        "{\"version\":2,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":5,\"baseline_errors\":6}",
        "{\"version\":2,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":-1,\"baseline_errors\":0}",
        /* version 2 without its baseline keys */
        "{\"version\":2,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":\"1\",\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* stage out of range, both ways */
        "{\"version\":1,\"phase\":\"progressing\",\"stage\":16,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"rolled_back\",\"stage\":-2,\"stage_bp\":0,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* phase and stage disagree */
        "{\"version\":1,\"phase\":\"progressing\",\"stage\":-1,\"stage_bp\":0,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"rolled_back\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* stage_bp out of range or inconsistent */
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":0,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":10001,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* corrupt only ever when rolled back */
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":true,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* wrong types, fractions, unknown phase, case */
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0.5,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":0,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"Paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":-1,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1e300,\"consecutive_failures\":0,\"corrupt\":false,"
        "\"updated_ms\":1,\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":null}",
        /* unknown, missing and duplicate keys */
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"extra\":1}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"reason\":\"\"}",
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,\"stage\":0,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"}",
        /* trailing bytes after a valid document */
        "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\"} x",
    };
    rollout_policy_t p = policy();
    rollout_state_t st, sentinel, ok;
    char buf[1024], big[600];
    int n;

    (void)state;
    rollout_state_init(&sentinel, &p, 42);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        st = sentinel;
        if (rollout_state_parse(bad[i], strlen(bad[i]), &st) != -1)
            fail_msg("accepted bad[%zu]: %s", i, bad[i]);
        state_equal(&st, &sentinel); /* untouched */
    }

    /* Every truncation of a valid file is rejected (a torn write). */
    rollout_state_init(&ok, &p, T0);
    n = rollout_state_serialize(&ok, buf, sizeof(buf));
    assert_true(n > 0);
    for (int len = 0; len < n; len++) {
        st = sentinel;
        assert_int_equal(rollout_state_parse(buf, (size_t)len, &st), -1);
        state_equal(&st, &sentinel);
    }
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &st), 0);
    state_equal(&st, &ok);

    /* A NUL inside the given length, NULL text. */
    buf[n] = '\0';
    assert_int_equal(rollout_state_parse(buf, (size_t)n + 1, &st), -1);
    assert_int_equal(rollout_state_parse(NULL, 10, &st), -1);

    /* A reason that cannot fit in the state. */
    memset(big, 'r', sizeof(big));
    n = snprintf(buf, sizeof(buf),
                 "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
                 "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,"
                 "\"updated_ms\":1,\"reason\":\"%.*s\"}",
                 256, big);
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &st), -1);
    n = snprintf(buf, sizeof(buf),
                 "{\"version\":1,\"phase\":\"paused\",\"stage\":0,\"stage_bp\":1000,"
                 "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,"
                 "\"updated_ms\":1,\"reason\":\"%.*s\"}",
                 255, big);
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &st), 0);
    assert_int_equal(strlen(st.reason), 255);

    /* Whitespace and key order are free: a hand-edited file still loads. */
    {
        const char *edited = "\n { \"reason\" : \"hand\", \"updated_ms\": 5, \"corrupt\": false,"
                             " \"consecutive_failures\": 2, \"stage_started_ms\": 4,"
                             " \"stage_bp\": 5000, \"stage\": 1, \"phase\": \"paused\","
                             " \"version\": 1 }\n";

        assert_int_equal(rollout_state_parse(edited, strlen(edited), &st), 0);
        assert_int_equal(st.phase, ROLLOUT_PAUSED);
        assert_int_equal(st.stage, 1);
        assert_int_equal(st.stage_bp, 5000);
        assert_int_equal(st.consecutive_failures, 2);
        assert_true(st.stage_started_ms == 4 && st.updated_ms == 5);
        assert_string_equal(st.reason, "hand");
        assert_int_equal(rollout_percentage_bp(&st, &p), 5000);
        /* version 1: written before the baseline existed, read as none known */
        assert_true(st.baseline_requests == 0 && st.baseline_errors == 0);
    }
}

static void test_serialize_buffer(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;
    char buf[1024];
    int n;

    (void)state;
    rollout_state_init(&st, &p, T0);
    n = rollout_state_serialize(&st, buf, sizeof(buf));
    assert_true(n > 0);
    contains(buf, "\"version\":3");
    contains(buf, "\"baseline_requests\":0,\"baseline_errors\":0,\"manual_bp\":-1,"
                  "\"manual_file_bp\":-1}");
    contains(buf, "\"stage_started_ms\":1714564800000");
    assert_int_equal(rollout_state_serialize(&st, buf, (size_t)n), -1);
    assert_int_equal(rollout_state_serialize(&st, buf, (size_t)n + 1), n);
    assert_int_equal(rollout_state_serialize(&st, NULL, 0), -1);
    /* the manual percentage round-trips; a version 2 file has none */
    st.manual_bp = 5000;
    st.manual_file_bp = 1000;
    n = rollout_state_serialize(&st, buf, sizeof(buf));
    rollout_state_t back;
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &back), 0);
    assert_int_equal(back.manual_bp, 5000);
    assert_int_equal(back.manual_file_bp, 1000);
    static const char v2[] =
        "{\"version\":2,\"phase\":\"progressing\",\"stage\":0,\"stage_bp\":1000,"
        "\"stage_started_ms\":1,\"consecutive_failures\":0,\"corrupt\":false,\"updated_ms\":1,"
        "\"reason\":\"\",\"baseline_requests\":0,\"baseline_errors\":0}";
    assert_int_equal(rollout_state_parse(v2, sizeof(v2) - 1, &back), 0);
    assert_int_equal(back.manual_bp, -1);
    assert_int_equal(back.manual_file_bp, -1);
    /* An unterminated reason is cut, not over-read. */
    memset(st.reason, 'x', sizeof(st.reason));
    n = rollout_state_serialize(&st, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(rollout_state_parse(buf, (size_t)n, &st), 0);
    assert_int_equal(strlen(st.reason), 255);
}

/* ---- audit ---------------------------------------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *path)
{
    char key[64];
    const char *dot;

    while ((dot = strchr(path, '.'))) {
        snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        path = dot + 1;
    }
    o = cJSON_GetObjectItemCaseSensitive(o, path);
    if (!o)
        fail_msg("missing %s", path);
    return o;
}

static double num(const cJSON *o, const char *path)
{
    const cJSON *it = get(o, path);

    assert_true(cJSON_IsNumber(it));
    return it->valuedouble;
}

static const char *str(const cJSON *o, const char *path)
{
    const cJSON *it = get(o, path);

    assert_true(cJSON_IsString(it));
    return it->valuestring;
}

static void test_audit_line(void **state)
{
    rollout_policy_t p = policy();
    rollout_state_t st;
    rollout_decision_t d;
    rollout_check_t c;
    char buf[4096];
    cJSON *j;
    int n;

    (void)state;
    rollout_state_init(&st, &p, T0);
    tick(&st, &p, failing(), T0 + MIN, NULL);
    tick(&st, &p, failing(), T0 + 2 * MIN, NULL);
    d = tick(&st, &p, failing(), T0 + 3 * MIN, &c);
    assert_int_equal(st.phase, ROLLOUT_ROLLED_BACK);

    n = rollout_audit_line(&d, &c, "controller", T0 + 3 * MIN + 7, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_null(strchr(buf, '\n'));
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(str(j, "time"), "2024-05-01T12:03:00.007Z");
    assert_true(num(j, "time_ms") == (double)(T0 + 3 * MIN + 7));
    assert_string_equal(str(j, "who"), "controller");
    assert_true(cJSON_IsTrue(get(j, "changed")));
    assert_string_equal(str(j, "from_phase"), "progressing");
    assert_string_equal(str(j, "phase"), "rolled_back");
    assert_true(num(j, "from_stage") == 0 && num(j, "stage") == -1);
    assert_true(num(j, "from_bp") == 1000 && num(j, "bp") == 0);
    assert_true(num(j, "from_percent") == 10 && num(j, "percent") == 0);
    assert_true(cJSON_IsTrue(get(j, "stage_changed")));
    assert_string_equal(str(j, "reason"), d.reason);
    assert_string_equal(str(j, "check.overall"), "FAIL");
    assert_true(num(j, "check.at_ms") == (double)(T0 + 3 * MIN));
    assert_string_equal(str(j, "check.gates.error_rate.verdict"), "FAIL");
    assert_true(num(j, "check.gates.error_rate.lower") > 0.01);
    assert_true(num(j, "check.gates.error_rate.p_new") > 0.03);
    assert_true(num(j, "check.gates.error_rate.p_orig") == 0);
    assert_true(num(j, "check.gates.error_rate.z") > 1.6);
    assert_string_equal(str(j, "check.gates.latency.verdict"), "PASS");
    assert_true(num(j, "check.gates.latency.p95_ratio") > 0.5);
    assert_true(cJSON_IsNumber(get(j, "check.gates.latency.mwu_p")));
    assert_string_equal(str(j, "check.gates.ttft.verdict"), "PASS");
    assert_string_equal(str(j, "check.gates.cost.verdict"), "PASS");
    assert_true(num(j, "check.gates.cost.ratio") < 1.0);
    assert_true(num(j, "check.windows.new.requests") == 2000);
    assert_true(num(j, "check.windows.original.errors") == 0);
    assert_true(num(j, "check.windows.new.errors") > 0);
    assert_true(cJSON_IsNumber(get(j, "check.windows.new.latency_p95")));
    assert_true(cJSON_IsNumber(get(j, "check.windows.new.cost_per_1k_tokens")));
    cJSON_Delete(j);

    /* A manual action without a check; NaN statistics are null. */
    d = rollout_resume(&st, &p, 0, "alice \"the admin\"");
    n = rollout_audit_line(&d, NULL, "alice \"the admin\"", 0, buf, sizeof(buf));
    assert_true(n > 0);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(str(j, "time"), "1970-01-01T00:00:00.000Z");
    assert_string_equal(str(j, "who"), "alice \"the admin\"");
    assert_true(cJSON_IsNull(get(j, "check")));
    assert_string_equal(str(j, "phase"), "progressing");
    assert_true(num(j, "percent") == 10);
    cJSON_Delete(j);

    rollout_evaluate(&p, NULL, -1, &c);
    d = rollout_pause(&st, &p, -1, NULL);
    n = rollout_audit_line(&d, &c, NULL, -1, buf, sizeof(buf));
    assert_true(n > 0);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(str(j, "time"), "1969-12-31T23:59:59.999Z");
    assert_string_equal(str(j, "who"), "unknown");
    assert_true(cJSON_IsNull(get(j, "check.gates.latency.p95_ratio")));
    assert_true(cJSON_IsNull(get(j, "check.windows.new.error_rate")));
    assert_true(cJSON_IsNull(get(j, "check.gates.error_rate.diff")));
    cJSON_Delete(j);

    /* Too small a buffer: -1, nothing half-written promised. */
    n = rollout_audit_line(&d, &c, NULL, -1, buf, sizeof(buf));
    assert_int_equal(rollout_audit_line(&d, &c, NULL, -1, buf, (size_t)n), -1);
    assert_int_equal(rollout_audit_line(&d, &c, NULL, -1, buf, (size_t)n + 1), n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_policy_validate),
        cmocka_unit_test(test_init_and_percentage),
        cmocka_unit_test(test_evaluate_healthy),
        cmocka_unit_test(test_evaluate_failing_and_slow),
        cmocka_unit_test(test_evaluate_few_requests),
        cmocka_unit_test(test_evaluate_ttft_applicability),
        cmocka_unit_test(test_evaluate_cost),
        cmocka_unit_test(test_promote_through_stages),
        cmocka_unit_test(test_complete_on_pass_and_soak_rules),
        cmocka_unit_test(test_inconclusive_holds_then_pauses),
        cmocka_unit_test(test_rollback_after_threshold),
        cmocka_unit_test(test_non_failing_check_resets_count),
        cmocka_unit_test(test_step_down),
        cmocka_unit_test(test_pause_on_failure),
        cmocka_unit_test(test_failing_below_threshold_at_max_duration_pauses),
        cmocka_unit_test(test_stale_window_holds),
        cmocka_unit_test(test_merge_with_a_stale_worker_window_holds),
        cmocka_unit_test(test_stage_start_in_the_future_is_clamped),
        cmocka_unit_test(test_promotion_needs_a_full_window_after_restart),
        cmocka_unit_test(test_manual_actions),
        cmocka_unit_test(test_mode_manual),
        cmocka_unit_test(test_mode_rollback),
        cmocka_unit_test(test_corrupt_state),
        cmocka_unit_test(test_stage_list_changed),
        cmocka_unit_test(test_restart_in_each_phase),
        cmocka_unit_test(test_full_stage_judges_new_without_baseline),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_serialize_buffer),
        cmocka_unit_test(test_audit_line),
    };

    return cmocka_run_group_tests_name("rollout", tests, NULL, NULL);
}
