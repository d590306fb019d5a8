/*
 * rollout.c — the rollout state machine; see rollout.h for the contract and the choices
 * the driver relies on. Comments here say why a rule is the way it is.
 */
#include "rollout.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define REFUSE_CORRUPT "state file unreadable; POST /admin/rollout/reset first"

/* ---- names -------------------------------------------------------------------------- */

const char *rollout_phase_name(rollout_phase_t p)
{
    switch (p) {
    case ROLLOUT_PROGRESSING:
        return "progressing";
    case ROLLOUT_PAUSED:
        return "paused";
    case ROLLOUT_ROLLED_BACK:
        return "rolled_back";
    case ROLLOUT_COMPLETED:
        return "completed";
    }
    return "?";
}

const char *rollout_mode_name(rollout_mode_t m)
{
    switch (m) {
    case ROLLOUT_MODE_AUTO:
        return "auto";
    case ROLLOUT_MODE_MANUAL:
        return "manual";
    case ROLLOUT_MODE_ROLLBACK:
        return "rollback";
    }
    return "?";
}

const char *rollout_on_failure_name(rollout_on_failure_t f)
{
    switch (f) {
    case ROLLOUT_ON_FAILURE_ROLLBACK:
        return "rollback";
    case ROLLOUT_ON_FAILURE_STEP_DOWN:
        return "step_down";
    case ROLLOUT_ON_FAILURE_PAUSE:
        return "pause";
    }
    return "?";
}

static const char *const gate_names[ROLLOUT_N_GATES] = {"error_rate", "latency", "ttft", "cost"};

const char *rollout_gate_name(rollout_gate_t g)
{
    return (unsigned)g < ROLLOUT_N_GATES ? gate_names[g] : "?";
}

/* ---- small formatting helpers ------------------------------------------------------- */

/* "10%" or "12.50%": reasons are read by humans, basis points are in the numbers. */
static const char *fmt_pct(char *b, size_t n, uint32_t bp)
{
    if (bp % 100 == 0)
        snprintf(b, n, "%u%%", (unsigned)(bp / 100));
    else
        snprintf(b, n, "%u.%02u%%", (unsigned)(bp / 100), (unsigned)(bp % 100));
    return b;
}

/* "72h", "1h30m", "29m59s", "250ms"; negative durations (a clock step back) read "0s". */
static const char *fmt_dur(char *b, size_t n, long long ms)
{
    long long h, m, s;
    size_t used = 0;

    if (ms <= 0) {
        snprintf(b, n, "0s");
        return b;
    }
    if (ms < 1000) {
        snprintf(b, n, "%lldms", ms);
        return b;
    }
    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    b[0] = '\0';
    if (h && used < n)
        used += (size_t)snprintf(b + used, n - used, "%lldh", h);
    if (m && used < n)
        used += (size_t)snprintf(b + used, n - used, "%lldm", m);
    if (s && used < n)
        snprintf(b + used, n - used, "%llds", s);
    return b;
}

static const char *who_name(const char *who)
{
    return who && *who ? who : "operator";
}

/* Gate names with verdict v, comma-separated ("error_rate, latency"), or "-" when none. */
static const char *gate_list(const rollout_check_t *c, stats_verdict_t v, char *b, size_t n)
{
    size_t used = 0;

    b[0] = '\0';
    for (int g = 0; g < ROLLOUT_N_GATES && used < n; g++)
        if (c->verdict[g] == v)
            used += (size_t)snprintf(b + used, n - used, "%s%s", used ? ", " : "", gate_names[g]);
    if (!b[0])
        snprintf(b, n, "-");
    return b;
}

/* ---- policy and percentage ---------------------------------------------------------- */

static int bad(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (err && cap) {
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A ratio gate threshold: positive, INFINITY allowed (gate off), NaN not. */
static int ratio_ok(double r)
{
    return r > 0.0;
}

int rollout_policy_validate(const rollout_policy_t *pol, char *err, size_t cap)
{
    if (!pol)
        return bad(err, cap, "no policy");
    if ((unsigned)pol->mode > ROLLOUT_MODE_ROLLBACK)
        return bad(err, cap, "mode %d is unknown", (int)pol->mode);
    if (pol->n_stages < 1 || pol->n_stages > ROLLOUT_MAX_STAGES)
        return bad(err, cap, "stages: 1 to %d needed, got %d", ROLLOUT_MAX_STAGES, pol->n_stages);
    for (int i = 0; i < pol->n_stages; i++) {
        if (pol->stages_bp[i] < 1 || pol->stages_bp[i] > 10000)
            return bad(err, cap, "stages[%d] = %u bp is outside 1..10000", i,
                       (unsigned)pol->stages_bp[i]);
        if (i > 0 && pol->stages_bp[i] <= pol->stages_bp[i - 1])
            return bad(err, cap, "stages must increase: stages[%d] = %u bp after %u bp", i,
                       (unsigned)pol->stages_bp[i], (unsigned)pol->stages_bp[i - 1]);
    }
    if (pol->stage_min_duration_ms < 0)
        return bad(err, cap, "stage_min_duration is negative");
    if (pol->check_interval_ms <= 0)
        return bad(err, cap, "check_interval must be positive");
    if (pol->max_stage_duration_ms < 0 ||
        (pol->max_stage_duration_ms > 0 && pol->max_stage_duration_ms < pol->stage_min_duration_ms))
        return bad(err, cap, "max_stage_duration must be 0 (off) or at least stage_min_duration");
    if (pol->failure_threshold < 1)
        return bad(err, cap, "failure_threshold must be at least 1");
    if (!(pol->error_rate_increase >= 0.0 && pol->error_rate_increase <= 1.0))
        return bad(err, cap, "error_rate_increase must be within 0..1");
    if (!(pol->confidence >= 0.5 && pol->confidence < 1.0))
        return bad(err, cap, "confidence must be within [0.5, 1)");
    if (!ratio_ok(pol->latency_p95_ratio) || !ratio_ok(pol->ttft_p95_ratio) ||
        !ratio_ok(pol->cost_per_1k_tokens_ratio))
        return bad(err, cap, "gate ratios must be positive (INFINITY turns a gate off)");
    if ((unsigned)pol->on_failure > ROLLOUT_ON_FAILURE_PAUSE)
        return bad(err, cap, "on_failure %d is unknown", (int)pol->on_failure);
    return 0;
}

/* Does the state's stage still mean the percentage it was entered at? A reloaded stage list
 * (10,50,100 -> 10,100) would otherwise move traffic from 50% to 100% without a gate. */
static int stage_agrees(const rollout_state_t *st, const rollout_policy_t *pol)
{
    if (st->stage < 0)
        return st->stage == -1;
    return st->stage < pol->n_stages && st->stage < ROLLOUT_MAX_STAGES &&
           pol->stages_bp[st->stage] == st->stage_bp;
}

uint32_t rollout_percentage_bp(const rollout_state_t *st, const rollout_policy_t *pol)
{
    if (st->corrupt || pol->mode == ROLLOUT_MODE_ROLLBACK || st->phase == ROLLOUT_ROLLED_BACK ||
        st->stage < 0 || !stage_agrees(st, pol))
        return 0;
    return pol->stages_bp[st->stage];
}

/* ---- transitions -------------------------------------------------------------------- */

static void set_reason(char *dst, const char *src)
{
    snprintf(dst, 256, "%s", src);
}

/* A decision that records the current state as both ends; the caller moves `to`. */
static rollout_decision_t decision_begin(const rollout_state_t *st, const rollout_policy_t *pol)
{
    rollout_decision_t d;

    memset(&d, 0, sizeof(d));
    d.from_phase = d.to_phase = st->phase;
    d.from_stage = d.to_stage = st->stage;
    d.from_bp = d.to_bp = rollout_percentage_bp(st, pol);
    return d;
}

/* Explains a non-transition (nothing in the state changes). */
static void hold(rollout_decision_t *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

static void finish(rollout_decision_t *d, rollout_state_t *st, const rollout_policy_t *pol,
                   long long now_ms)
{
    st->updated_ms = now_ms;
    set_reason(st->reason, d->reason);
    d->changed = 1;
    d->to_phase = st->phase;
    d->to_stage = st->stage;
    d->to_bp = rollout_percentage_bp(st, pol);
}

/*
 * Moves st to (phase, stage). restart: the stage's windows start over now (a new stage, or
 * the same stage resumed: data from before a pause or from another percentage must not be
 * compared). Every phase or stage change clears the failure streak: it belonged to the
 * stage that was left.
 */
static void transition(rollout_decision_t *d, rollout_state_t *st, const rollout_policy_t *pol,
                       long long now_ms, rollout_phase_t phase, int stage, int restart,
                       const char *fmt, ...)
{
    va_list ap;

    st->phase = phase;
    st->stage = stage;
    st->stage_bp = stage >= 0 ? pol->stages_bp[stage] : 0;
    if (restart)
        st->stage_started_ms = now_ms;
    st->consecutive_failures = 0;
    d->stage_changed = restart;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
    finish(d, st, pol, now_ms);
}

void rollout_state_init(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms)
{
    char p[16];

    memset(st, 0, sizeof(*st));
    st->manual_bp = st->manual_file_bp = -1;
    st->stage_started_ms = now_ms;
    st->updated_ms = now_ms;
    if (pol->n_stages < 1) {
        /* Nothing to roll out to: 0%, and say why rather than index stages[0]. */
        st->phase = ROLLOUT_ROLLED_BACK;
        st->stage = -1;
        set_reason(st->reason, "the policy has no stages");
        return;
    }
    st->phase = ROLLOUT_PROGRESSING;
    st->stage = 0;
    st->stage_bp = pol->stages_bp[0];
    snprintf(st->reason, sizeof(st->reason), "rollout started at stage 0 (%s)",
             fmt_pct(p, sizeof(p), st->stage_bp));
}

int rollout_state_clamp_clock(rollout_state_t *st, long long now_ms)
{
    if (st->stage_started_ms <= now_ms)
        return 0;
    /* The stage restarts now: its minimum duration is served again on data from now on,
     * never shortened. */
    st->stage_started_ms = now_ms;
    return 1;
}

void rollout_state_corrupt(rollout_state_t *st, long long now_ms, const char *why)
{
    memset(st, 0, sizeof(*st));
    st->manual_bp = st->manual_file_bp = -1;
    st->phase = ROLLOUT_ROLLED_BACK;
    st->stage = -1;
    st->stage_started_ms = now_ms;
    st->updated_ms = now_ms;
    st->corrupt = 1;
    snprintf(st->reason, sizeof(st->reason), "state file unreadable: %s; 0%% until reset",
             why && *why ? why : "unknown error");
}

rollout_decision_t rollout_state_reconcile(rollout_state_t *st, const rollout_policy_t *pol,
                                           long long now_ms)
{
    rollout_decision_t d = decision_begin(st, pol);
    char was[16], now_p[16];

    if (st->corrupt || stage_agrees(st, pol)) {
        hold(&d, "state agrees with the policy");
        return d;
    }
    if (st->stage >= 0 && st->stage < pol->n_stages && st->stage < ROLLOUT_MAX_STAGES)
        fmt_pct(now_p, sizeof(now_p), pol->stages_bp[st->stage]);
    else
        snprintf(now_p, sizeof(now_p), "gone");
    fmt_pct(was, sizeof(was), st->stage_bp);
    st->corrupt = 1;
    transition(&d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1,
               "stage list changed under the rollout (stage %d was %s, is now %s): 0%% until "
               "POST /admin/rollout/reset",
               d.from_stage, was, now_p);
    return d;
}

/* ---- gates -------------------------------------------------------------------------- */

static void summary_empty(window_summary_t *s)
{
    memset(s, 0, sizeof(*s));
    s->error_rate = s->latency_p50 = s->latency_p95 = s->latency_p99 = NAN;
    s->ttft_p50 = s->ttft_p95 = s->ttft_p99 = s->cost_per_1k_tokens = NAN;
}

/*
 * Cost is not sampled noise but a ratio of sums, so no test: within the ratio passes. NaN
 * on both sides means no prices are configured at all (the gate does not apply); NaN on
 * one side means one provider's prices are missing, and "cheaper" cannot be judged.
 */
static stats_verdict_t cost_gate(double per1k_new, double per1k_orig, double max_ratio,
                                 double *ratio_out)
{
    double ratio;

    *ratio_out = NAN;
    if (isnan(per1k_new) && isnan(per1k_orig))
        return STATS_PASS;
    if (isnan(per1k_new) || isnan(per1k_orig) || isnan(max_ratio))
        return STATS_INCONCLUSIVE;
    if (per1k_orig > 0.0)
        ratio = per1k_new / per1k_orig;
    else
        ratio = per1k_new > 0.0 ? INFINITY : 1.0; /* as the latency gate does with p95 0 */
    *ratio_out = ratio;
    return ratio <= max_ratio ? STATS_PASS : STATS_FAIL;
}

void rollout_evaluate(const rollout_policy_t *pol, const window_t *win, long long now_ms,
                      rollout_check_t *out)
{
    uint64_t need = pol->min_requests ? pol->min_requests : 1;
    const window_variant_t *vn, *vo;

    memset(out, 0, sizeof(*out));
    out->at_ms = now_ms;
    out->latency_ratio = out->ttft_ratio = out->cost_ratio = NAN;
    out->latency_mwu.u = out->latency_mwu.z = out->latency_mwu.p_value = NAN;
    out->ttft_mwu = out->latency_mwu;
    if (!win) {
        summary_empty(&out->summary[WINDOW_ORIGINAL]);
        summary_empty(&out->summary[WINDOW_NEW]);
        out->error_rate = stats_error_rate_gate(0, 0, 0, 0, pol->error_rate_increase,
                                                pol->confidence, pol->min_requests);
        for (int g = 0; g < ROLLOUT_N_GATES; g++)
            out->verdict[g] = STATS_INCONCLUSIVE;
        out->overall = STATS_INCONCLUSIVE;
        return;
    }
    vn = &win->v[WINDOW_NEW];
    vo = &win->v[WINDOW_ORIGINAL];
    window_summarize(vo, &out->summary[WINDOW_ORIGINAL]);
    window_summarize(vn, &out->summary[WINDOW_NEW]);

    out->error_rate =
        stats_error_rate_gate(vn->errors, vn->requests, vo->errors, vo->requests,
                              pol->error_rate_increase, pol->confidence, pol->min_requests);
    out->verdict[GATE_ERROR_RATE] = out->error_rate.verdict;
    out->verdict[GATE_LATENCY] =
        stats_latency_gate_floor(&vn->latency, &vo->latency, pol->latency_p95_ratio,
                                 pol->latency_min_diff_ms, pol->confidence, pol->min_requests,
                                 &out->latency_ratio, &out->latency_mwu);
    /* No stream on either side: clients of this router do not stream, TTFT does not
     * apply. Streams on one side only, or too few, are INCONCLUSIVE (stats_latency_gate
     * needs min_requests first tokens on both sides): a provider that never reports a
     * first token must not pass by default. */
    if (loghist_count(&vn->ttft) == 0 && loghist_count(&vo->ttft) == 0)
        out->verdict[GATE_TTFT] = STATS_PASS;
    else
        out->verdict[GATE_TTFT] =
            stats_latency_gate_floor(&vn->ttft, &vo->ttft, pol->ttft_p95_ratio,
                                     pol->latency_min_diff_ms, pol->confidence,
                                     pol->min_requests, &out->ttft_ratio, &out->ttft_mwu);
    out->verdict[GATE_COST] = cost_gate(out->summary[WINDOW_NEW].cost_per_1k_tokens,
                                        out->summary[WINDOW_ORIGINAL].cost_per_1k_tokens,
                                        pol->cost_per_1k_tokens_ratio, &out->cost_ratio);

    /* Too little traffic on either side decides nothing, whatever the numbers say: the
     * product promise is that a small sample is never a failure (and never a pass). */
    if (vn->requests < need || vo->requests < need)
        for (int g = 0; g < ROLLOUT_N_GATES; g++)
            out->verdict[g] = STATS_INCONCLUSIVE;

    out->overall = STATS_PASS;
    for (int g = 0; g < ROLLOUT_N_GATES; g++) {
        if (out->verdict[g] == STATS_FAIL) {
            out->overall = STATS_FAIL;
            break;
        }
        if (out->verdict[g] != STATS_PASS)
            out->overall = STATS_INCONCLUSIVE;
    }
}

/* ---- the controller tick ------------------------------------------------------------ */

static void on_failure(rollout_decision_t *d, rollout_state_t *st, const rollout_policy_t *pol,
                       long long now_ms, const char *failing)
{
    int n = st->consecutive_failures;
    char from[16], to[16];

    fmt_pct(from, sizeof(from), st->stage_bp);
    switch (pol->on_failure) {
    case ROLLOUT_ON_FAILURE_STEP_DOWN:
        if (st->stage > 0) {
            fmt_pct(to, sizeof(to), pol->stages_bp[st->stage - 1]);
            transition(d, st, pol, now_ms, ROLLOUT_PROGRESSING, st->stage - 1, 1,
                       "%d consecutive failing checks (%s): stepped down from %s to %s", n, failing,
                       from, to);
            return;
        }
        transition(d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1,
                   "%d consecutive failing checks (%s): rolled back to 0%% (no stage below %s)", n,
                   failing, from);
        return;
    case ROLLOUT_ON_FAILURE_PAUSE:
        transition(d, st, pol, now_ms, ROLLOUT_PAUSED, st->stage, 0,
                   "%d consecutive failing checks (%s): paused at %s; needs a human", n, failing,
                   from);
        return;
    case ROLLOUT_ON_FAILURE_ROLLBACK:
    default:
        /* An unknown on_failure takes the safest action. */
        transition(d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1,
                   "%d consecutive failing checks (%s): rolled back from %s to 0%%", n, failing,
                   from);
        return;
    }
}

/* Promotes to the next stage, or completes at the last one (which keeps its percentage).
 * The original's counts of the passing check are kept: a later stage at 100% has no
 * concurrent baseline and holds new's error rate against them. */
static void promote_auto(rollout_decision_t *d, rollout_state_t *st, const rollout_policy_t *pol,
                         long long now_ms, long long observed_ms, const rollout_check_t *chk)
{
    char from[16], to[16], dur[32];

    st->baseline_requests = chk->summary[WINDOW_ORIGINAL].requests;
    st->baseline_errors = chk->summary[WINDOW_ORIGINAL].errors;
    fmt_pct(from, sizeof(from), st->stage_bp);
    fmt_dur(dur, sizeof(dur), observed_ms);
    if (st->stage + 1 < pol->n_stages) {
        fmt_pct(to, sizeof(to), pol->stages_bp[st->stage + 1]);
        transition(d, st, pol, now_ms, ROLLOUT_PROGRESSING, st->stage + 1, 1,
                   "gates passed after %s at %s: promoted to %s", dur, from, to);
        return;
    }
    transition(d, st, pol, now_ms, ROLLOUT_COMPLETED, st->stage, 0,
               "gates passed after %s at %s: rollout completed", dur, from);
}

/* Is this a stage at 100% whose original saw too little traffic to compare with? */
static int without_baseline(const rollout_state_t *st, const rollout_policy_t *pol,
                            const window_t *win)
{
    uint64_t need = pol->min_requests ? pol->min_requests : 1;

    return win && st->stage >= 0 && st->stage_bp == 10000 &&
           win->v[WINDOW_ORIGINAL].requests < need;
}

/*
 * At 100% every comparison is INCONCLUSIVE (no original traffic), and a soak judged on
 * nothing completed while new failed every request. New's own error rate is therefore held
 * against the original's of the last automatic promotion, or against 0 when none is known
 * (a rollout that starts at 100%, a manual promote, a version-1 state file), with the same
 * tolerance and confidence. The baseline's own size is in its interval; min_requests
 * applies to new's side only (a reload may have raised it since).
 */
static void judge_without_baseline(const rollout_state_t *st, const rollout_policy_t *pol,
                                   const window_t *win, rollout_check_t *out)
{
    uint64_t need = pol->min_requests ? pol->min_requests : 1;
    const window_variant_t *vn;

    if (!without_baseline(st, pol, win))
        return;
    vn = &win->v[WINDOW_NEW];
    if (st->baseline_requests > 0)
        out->error_rate = stats_error_rate_gate(vn->errors, vn->requests, st->baseline_errors,
                                                st->baseline_requests, pol->error_rate_increase,
                                                pol->confidence, 1);
    else
        out->error_rate = stats_error_rate_vs_rate(vn->errors, vn->requests, 0.0,
                                                   pol->error_rate_increase, pol->confidence, 1);
    if (vn->requests < need)
        out->error_rate.verdict = STATS_INCONCLUSIVE;
    out->verdict[GATE_ERROR_RATE] = out->error_rate.verdict;
    out->overall = out->error_rate.verdict == STATS_FAIL ? STATS_FAIL : STATS_INCONCLUSIVE;
}

rollout_decision_t rollout_check(rollout_state_t *st, const rollout_policy_t *pol,
                                 const window_t *win, long long now_ms, rollout_check_t *out)
{
    rollout_check_t local;
    rollout_decision_t d;
    uint64_t need = pol->min_requests ? pol->min_requests : 1;
    int threshold = pol->failure_threshold > 0 ? pol->failure_threshold : 1;
    long long age, observed;
    char list[64], dur[32], lim[32], pct[16];

    if (!out)
        out = &local;
    rollout_evaluate(pol, win, now_ms, out);
    judge_without_baseline(st, pol, win, out);
    d = rollout_state_reconcile(st, pol, now_ms);
    if (d.changed)
        return d;
    d = decision_begin(st, pol);

    if (st->corrupt) {
        hold(&d, REFUSE_CORRUPT);
        return d;
    }
    if (pol->mode == ROLLOUT_MODE_ROLLBACK) {
        hold(&d, "mode rollback: 0%% whatever the state, no automatic transition");
        return d;
    }
    if (pol->mode == ROLLOUT_MODE_MANUAL) {
        /* Humans decide in manual mode, in both directions: an automatic rollback would
         * contradict an operator who is deliberately holding a stage. */
        hold(&d, "mode manual: gates %s (failing: %s); no automatic action",
             stats_verdict_name(out->overall), gate_list(out, STATS_FAIL, list, sizeof(list)));
        return d;
    }
    if (st->phase != ROLLOUT_PROGRESSING) {
        hold(&d, "%s: no automatic transition (gates %s)", rollout_phase_name(st->phase),
             stats_verdict_name(out->overall));
        return d;
    }
    if (win && win->since_ms < st->stage_started_ms) {
        /* The window still holds data from before this stage (another percentage, or
         * before a pause): judging it would compare against history. Hold until the
         * driver hands a window restarted at the stage start. */
        for (int g = 0; g < ROLLOUT_N_GATES; g++)
            out->verdict[g] = STATS_INCONCLUSIVE;
        out->overall = STATS_INCONCLUSIVE;
        hold(&d, "hold: the window measures from %lld, before the stage start %lld", win->since_ms,
             st->stage_started_ms);
        return d;
    }

    age = now_ms - st->stage_started_ms;
    /* Data observed in this window: after a restart the window starts later than the stage
     * and promotion waits for a full stage_min_duration of it. */
    observed =
        win ? now_ms - (win->since_ms > st->stage_started_ms ? win->since_ms : st->stage_started_ms)
            : 0;
    fmt_pct(pct, sizeof(pct), st->stage_bp);

    if (out->overall == STATS_FAIL) {
        gate_list(out, STATS_FAIL, list, sizeof(list));
        if (st->consecutive_failures < INT_MAX)
            st->consecutive_failures++;
        if (st->consecutive_failures >= threshold) {
            on_failure(&d, st, pol, now_ms, list);
            return d;
        }
        if (pol->max_stage_duration_ms > 0 && age >= pol->max_stage_duration_ms) {
            transition(&d, st, pol, now_ms, ROLLOUT_PAUSED, st->stage, 0,
                       "no decision after %s at %s (last check failed: %s): paused; needs a "
                       "human",
                       fmt_dur(dur, sizeof(dur), age), pct, list);
            return d;
        }
        /* Not a transition, but the streak must survive a restart: persist and audit. */
        hold(&d, "check failed (%s): %d/%d consecutive failing checks", list,
             st->consecutive_failures, threshold);
        finish(&d, st, pol, now_ms);
        return d;
    }

    if (out->overall == STATS_PASS && age >= pol->stage_min_duration_ms &&
        observed >= pol->stage_min_duration_ms) {
        promote_auto(&d, st, pol, now_ms, observed, out);
        return d;
    }
    /* 100% leaves the original without traffic, so nothing can be compared: the stage is a
     * soak that completes after its minimum duration once `new` carried min_requests with
     * an error rate shown to be within the tolerance of the reference. */
    if (without_baseline(st, pol, win) && out->verdict[GATE_ERROR_RATE] == STATS_PASS &&
        out->summary[WINDOW_NEW].requests >= need && age >= pol->stage_min_duration_ms &&
        observed >= pol->stage_min_duration_ms) {
        transition(&d, st, pol, now_ms, ROLLOUT_COMPLETED, st->stage, 0,
                   "no baseline at %s (original %llu requests): completed after a %s soak, "
                   "%llu requests on new, error rate %.4g against %.4g (%s)",
                   pct, (unsigned long long)out->summary[WINDOW_ORIGINAL].requests,
                   fmt_dur(dur, sizeof(dur), observed),
                   (unsigned long long)out->summary[WINDOW_NEW].requests, out->error_rate.p_new,
                   out->error_rate.p_orig,
                   st->baseline_requests ? "original at the last promotion" : "no known baseline");
        return d;
    }
    if (out->overall == STATS_INCONCLUSIVE && pol->max_stage_duration_ms > 0 &&
        age >= pol->max_stage_duration_ms) {
        transition(&d, st, pol, now_ms, ROLLOUT_PAUSED, st->stage, 0,
                   "inconclusive for %s at %s (%s): paused; needs a human",
                   fmt_dur(dur, sizeof(dur), age), pct,
                   gate_list(out, STATS_INCONCLUSIVE, list, sizeof(list)));
        return d;
    }
    if (st->consecutive_failures) {
        hold(&d, "check %s: failure streak of %d cleared", stats_verdict_name(out->overall),
             st->consecutive_failures);
        st->consecutive_failures = 0;
        finish(&d, st, pol, now_ms);
        return d;
    }
    if (out->overall == STATS_PASS)
        hold(&d, "hold: gates pass at %s, %s observed of %s needed", pct,
             fmt_dur(dur, sizeof(dur), observed),
             fmt_dur(lim, sizeof(lim), pol->stage_min_duration_ms));
    else
        hold(&d, "hold: inconclusive (%s); new %llu / original %llu requests, %llu needed",
             gate_list(out, STATS_INCONCLUSIVE, list, sizeof(list)),
             (unsigned long long)out->summary[WINDOW_NEW].requests,
             (unsigned long long)out->summary[WINDOW_ORIGINAL].requests, (unsigned long long)need);
    return d;
}

/* ---- manual actions ----------------------------------------------------------------- */

/* The refusals shared by the actions that would send more (or continued) traffic to new. */
static int refuse_forward(rollout_decision_t *d, const rollout_state_t *st,
                          const rollout_policy_t *pol, const char *action)
{
    if (st->corrupt) {
        hold(d, "%s refused: " REFUSE_CORRUPT, action);
        return 1;
    }
    if (pol->n_stages < 1) {
        hold(d, "%s refused: the policy has no stages", action);
        return 1;
    }
    if (!stage_agrees(st, pol)) {
        hold(d,
             "%s refused: the stage list changed under the rollout; POST "
             "/admin/rollout/reset first",
             action);
        return 1;
    }
    return 0;
}

rollout_decision_t rollout_promote(rollout_state_t *st, const rollout_policy_t *pol,
                                   long long now_ms, const char *who)
{
    rollout_decision_t d = decision_begin(st, pol);
    char from[16], to[16];

    if (pol->mode == ROLLOUT_MODE_ROLLBACK) {
        hold(&d, "promote refused: mode is rollback in the config");
        return d;
    }
    if (refuse_forward(&d, st, pol, "promote"))
        return d;
    if (st->phase == ROLLOUT_ROLLED_BACK) {
        hold(&d, "promote refused: rolled back; POST /admin/rollout/resume restarts at stage 0");
        return d;
    }
    if (st->phase == ROLLOUT_COMPLETED || st->stage + 1 >= pol->n_stages) {
        hold(&d, "promote refused: already at the last stage (%s, %s)",
             fmt_pct(from, sizeof(from), st->stage_bp), rollout_phase_name(st->phase));
        return d;
    }
    fmt_pct(from, sizeof(from), st->stage_bp);
    fmt_pct(to, sizeof(to), pol->stages_bp[st->stage + 1]);
    transition(&d, st, pol, now_ms, ROLLOUT_PROGRESSING, st->stage + 1, 1,
               "promoted by %s from %s to %s", who_name(who), from, to);
    return d;
}

rollout_decision_t rollout_rollback(rollout_state_t *st, const rollout_policy_t *pol,
                                    long long now_ms, const char *who, const char *why)
{
    rollout_decision_t d = decision_begin(st, pol);

    /* Always allowed (even corrupt, even in mode rollback): it only ever lowers traffic. */
    if (st->phase == ROLLOUT_ROLLED_BACK && st->stage == -1) {
        hold(&d, "rollback refused: already rolled back (0%%)");
        return d;
    }
    transition(&d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1, "rolled back by %s: %s",
               who_name(who), why && *why ? why : "no reason given");
    return d;
}

rollout_decision_t rollout_pause(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms,
                                 const char *who)
{
    rollout_decision_t d = decision_begin(st, pol);
    char pct[16];

    if (refuse_forward(&d, st, pol, "pause"))
        return d;
    if (st->phase != ROLLOUT_PROGRESSING) {
        hold(&d, "pause refused: the rollout is %s, only a progressing one can pause",
             rollout_phase_name(st->phase));
        return d;
    }
    transition(&d, st, pol, now_ms, ROLLOUT_PAUSED, st->stage, 0, "paused by %s at %s",
               who_name(who), fmt_pct(pct, sizeof(pct), st->stage_bp));
    return d;
}

rollout_decision_t rollout_resume(rollout_state_t *st, const rollout_policy_t *pol,
                                  long long now_ms, const char *who)
{
    rollout_decision_t d = decision_begin(st, pol);
    char pct[16];

    if (pol->mode == ROLLOUT_MODE_ROLLBACK) {
        hold(&d, "resume refused: mode is rollback in the config");
        return d;
    }
    if (st->phase == ROLLOUT_ROLLED_BACK) {
        /* stage -1 agrees with any policy; only corrupt and "no stages" can refuse. */
        if (refuse_forward(&d, st, pol, "resume"))
            return d;
        transition(&d, st, pol, now_ms, ROLLOUT_PROGRESSING, 0, 1,
                   "resumed by %s: restarted at stage 0 (%s)", who_name(who),
                   fmt_pct(pct, sizeof(pct), pol->stages_bp[0]));
        return d;
    }
    if (refuse_forward(&d, st, pol, "resume"))
        return d;
    if (st->phase != ROLLOUT_PAUSED) {
        hold(&d, "resume refused: the rollout is %s, not paused or rolled back",
             rollout_phase_name(st->phase));
        return d;
    }
    /* The window restarts: what happened while paused (and why it was paused) must not
     * count toward the promotion. */
    transition(&d, st, pol, now_ms, ROLLOUT_PROGRESSING, st->stage, 1,
               "resumed by %s at %s (window restarted)", who_name(who),
               fmt_pct(pct, sizeof(pct), st->stage_bp));
    return d;
}

rollout_decision_t rollout_reset(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms,
                                 const char *who)
{
    rollout_decision_t d = decision_begin(st, pol);
    char pct[16];

    st->corrupt = 0;
    st->baseline_requests = st->baseline_errors = 0; /* a fresh rollout measures afresh */
    st->manual_bp = st->manual_file_bp = -1;
    if (pol->n_stages < 1) {
        transition(&d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1,
                   "reset by %s: the policy has no stages", who_name(who));
        return d;
    }
    if (pol->mode == ROLLOUT_MODE_ROLLBACK) {
        /* The config says rollback: starting stage 0 now would send 10% the moment the
         * mode changes, without anyone resuming. */
        transition(&d, st, pol, now_ms, ROLLOUT_ROLLED_BACK, -1, 1,
                   "reset by %s (mode rollback): rolled back until resumed", who_name(who));
        return d;
    }
    transition(&d, st, pol, now_ms, ROLLOUT_PROGRESSING, 0, 1,
               "reset by %s: fresh rollout at stage 0 (%s)", who_name(who),
               fmt_pct(pct, sizeof(pct), pol->stages_bp[0]));
    return d;
}

/* ---- persistence -------------------------------------------------------------------- */

/* Doubles hold integers exactly up to 2^53: wider values cannot have been written by us. */
#define EXACT_INT_MAX 9007199254740992.0

static int copy_out(char *text, char *buf, size_t cap)
{
    size_t n;

    if (!text)
        return -1;
    n = strlen(text);
    if (!buf || n >= cap || n > INT_MAX) {
        free(text);
        return -1;
    }
    memcpy(buf, text, n + 1);
    free(text);
    return (int)n;
}

int rollout_state_serialize(const rollout_state_t *st, char *buf, size_t cap)
{
    cJSON *o = cJSON_CreateObject();
    char reason[256];
    int ok;

    if (!o)
        return -1;
    /* reason is a fixed array: never trust it to be terminated. */
    memcpy(reason, st->reason, sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    ok = cJSON_AddNumberToObject(o, "version", ROLLOUT_STATE_VERSION) &&
         cJSON_AddStringToObject(o, "phase", rollout_phase_name(st->phase)) &&
         cJSON_AddNumberToObject(o, "stage", st->stage) &&
         /* stage -1 is 0% whatever stage_bp a hand-built state left there (e.g. init, then
          * stage = -1): write what parse demands, so such a state still round-trips. */
         cJSON_AddNumberToObject(o, "stage_bp", st->stage < 0 ? 0 : st->stage_bp) &&
         cJSON_AddNumberToObject(o, "stage_started_ms", (double)st->stage_started_ms) &&
         cJSON_AddNumberToObject(o, "consecutive_failures", st->consecutive_failures) &&
         cJSON_AddBoolToObject(o, "corrupt", st->corrupt != 0) &&
         cJSON_AddNumberToObject(o, "updated_ms", (double)st->updated_ms) &&
         cJSON_AddStringToObject(o, "reason", reason) &&
         cJSON_AddNumberToObject(o, "baseline_requests", (double)st->baseline_requests) &&
         cJSON_AddNumberToObject(o, "baseline_errors", (double)st->baseline_errors) &&
         cJSON_AddNumberToObject(o, "manual_bp", st->manual_bp) &&
         cJSON_AddNumberToObject(o, "manual_file_bp", st->manual_file_bp);
    if (!ok) {
        cJSON_Delete(o);
        return -1;
    }
    ok = copy_out(cJSON_PrintUnformatted(o), buf, cap);
    cJSON_Delete(o);
    return ok;
}

enum {
    K_VERSION,
    K_PHASE,
    K_STAGE,
    K_STAGE_BP,
    K_STARTED,
    K_FAILURES,
    K_CORRUPT,
    K_UPDATED,
    K_REASON,
    K_BASE_REQUESTS,
    K_BASE_ERRORS,
    K_MANUAL_BP,
    K_MANUAL_FILE_BP,
    K_COUNT
};

/* clang-format off */
static const char *const state_keys[K_COUNT] = {
    "version", "phase", "stage", "stage_bp", "stage_started_ms", "consecutive_failures",
    "corrupt", "updated_ms", "reason", "baseline_requests", "baseline_errors", "manual_bp",
    "manual_file_bp"};
/* clang-format on */

/* Version 1 was written before the baseline existed: every key but those two. */
#define KEYS_V1 ((1u << K_BASE_REQUESTS) - 1)
/* Version 2 before the manual percentage. */
#define KEYS_V2 ((1u << K_MANUAL_BP) - 1)
#define KEYS_V3 ((1u << K_COUNT) - 1)

/* An integral JSON number within [lo, hi]. */
static int want_int(const cJSON *it, double lo, double hi, long long *out)
{
    double v;

    if (!cJSON_IsNumber(it))
        return -1;
    v = it->valuedouble;
    if (!(v >= lo && v <= hi) || v != floor(v))
        return -1;
    *out = (long long)v;
    return 0;
}

static int parse_phase(const char *s, rollout_phase_t *out)
{
    for (int p = ROLLOUT_PROGRESSING; p <= ROLLOUT_COMPLETED; p++)
        if (strcmp(s, rollout_phase_name((rollout_phase_t)p)) == 0) {
            *out = (rollout_phase_t)p;
            return 0;
        }
    return -1;
}

static int parse_fields(const cJSON *root, rollout_state_t *st)
{
    unsigned seen = 0;
    long long v, version = 0;
    const cJSON *it;

    if (!cJSON_IsObject(root))
        return -1;
    cJSON_ArrayForEach(it, root)
    {
        int k = 0;

        while (k < K_COUNT && strcmp(it->string, state_keys[k]) != 0)
            k++;
        if (k == K_COUNT || (seen & (1u << k)))
            return -1; /* unknown or duplicate key: not a file we wrote */
        seen |= 1u << k;
        switch (k) {
        case K_VERSION:
            if (want_int(it, 0, 1e9, &version) || version < 1 || version > ROLLOUT_STATE_VERSION)
                return -1;
            break;
        case K_PHASE:
            if (!cJSON_IsString(it) || parse_phase(it->valuestring, &st->phase))
                return -1;
            break;
        case K_STAGE:
            if (want_int(it, -1, ROLLOUT_MAX_STAGES - 1, &v))
                return -1;
            st->stage = (int)v;
            break;
        case K_STAGE_BP:
            if (want_int(it, 0, 10000, &v))
                return -1;
            st->stage_bp = (uint32_t)v;
            break;
        case K_STARTED:
            if (want_int(it, -EXACT_INT_MAX, EXACT_INT_MAX, &st->stage_started_ms))
                return -1;
            break;
        case K_FAILURES:
            if (want_int(it, 0, INT_MAX, &v))
                return -1;
            st->consecutive_failures = (int)v;
            break;
        case K_CORRUPT:
            if (!cJSON_IsBool(it))
                return -1;
            st->corrupt = cJSON_IsTrue(it);
            break;
        case K_UPDATED:
            if (want_int(it, -EXACT_INT_MAX, EXACT_INT_MAX, &st->updated_ms))
                return -1;
            break;
        case K_REASON:
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof(st->reason))
                return -1;
            memcpy(st->reason, it->valuestring, strlen(it->valuestring) + 1);
            break;
        case K_BASE_REQUESTS:
            if (want_int(it, 0, EXACT_INT_MAX, &v))
                return -1;
            st->baseline_requests = (uint64_t)v;
            break;
        case K_BASE_ERRORS:
            if (want_int(it, 0, EXACT_INT_MAX, &v))
                return -1;
            st->baseline_errors = (uint64_t)v;
            break;
        case K_MANUAL_BP:
        case K_MANUAL_FILE_BP:
            if (want_int(it, -1, 10000, &v))
                return -1;
            *(k == K_MANUAL_BP ? &st->manual_bp : &st->manual_file_bp) = (int)v;
            break;
        }
    }
    if (seen != (version == 1 ? KEYS_V1 : version == 2 ? KEYS_V2 : KEYS_V3))
        return -1;
    if (st->baseline_errors > st->baseline_requests)
        return -1;
    /* Invariants every transition keeps: anything else was not written by this code. */
    if ((st->phase == ROLLOUT_ROLLED_BACK) != (st->stage == -1))
        return -1;
    if (st->stage == -1 ? st->stage_bp != 0 : st->stage_bp < 1)
        return -1;
    if (st->corrupt && st->phase != ROLLOUT_ROLLED_BACK)
        return -1;
    return 0;
}

int rollout_state_parse(const char *text, size_t len, rollout_state_t *st)
{
    rollout_state_t tmp;
    cJSON *root;
    char *copy;
    int rc;

    if (!text || !st || len == 0 || memchr(text, '\0', len))
        return -1;
    /* cJSON 1.7.15 may over-read unterminated input: parse a terminated copy, and require
     * the document to end there (no trailing bytes). */
    copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (!root)
        return -1;
    memset(&tmp, 0, sizeof(tmp));
    tmp.manual_bp = tmp.manual_file_bp = -1; /* versions 1 and 2 have none */
    rc = parse_fields(root, &tmp);
    cJSON_Delete(root);
    if (rc == 0)
        *st = tmp;
    return rc;
}

/* ---- audit -------------------------------------------------------------------------- */

/* ISO-8601 UTC with milliseconds, from ms since the epoch (floor division: before 1970 too). */
static int iso8601(long long ms, char *b, size_t n)
{
    long long sec = ms / 1000, frac = ms % 1000;
    struct tm tm;
    time_t t;

    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    t = (time_t)sec;
    if (!gmtime_r(&t, &tm))
        return -1;
    snprintf(b, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return 0;
}

/* JSON has no NaN or infinity: a number that cannot be computed is null. */
static int add_num(cJSON *o, const char *k, double v)
{
    return isfinite(v) ? cJSON_AddNumberToObject(o, k, v) != NULL
                       : cJSON_AddNullToObject(o, k) != NULL;
}

static int add_verdict(cJSON *o, stats_verdict_t v)
{
    return cJSON_AddStringToObject(o, "verdict", stats_verdict_name(v)) != NULL;
}

static int add_hist_gate(cJSON *gates, const char *name, stats_verdict_t v, double ratio,
                         const stats_mwu_result_t *m)
{
    cJSON *g = cJSON_AddObjectToObject(gates, name);

    return g && add_verdict(g, v) && add_num(g, "p95_ratio", ratio) && add_num(g, "mwu_u", m->u) &&
           add_num(g, "mwu_z", m->z) && add_num(g, "mwu_p", m->p_value);
}

static int add_summary(cJSON *windows, const char *name, const window_summary_t *s)
{
    cJSON *w = cJSON_AddObjectToObject(windows, name);

    return w && add_num(w, "requests", (double)s->requests) &&
           add_num(w, "errors", (double)s->errors) && add_num(w, "error_rate", s->error_rate) &&
           add_num(w, "latency_p50", s->latency_p50) && add_num(w, "latency_p95", s->latency_p95) &&
           add_num(w, "latency_p99", s->latency_p99) &&
           add_num(w, "ttft_count", (double)s->ttft_count) && add_num(w, "ttft_p95", s->ttft_p95) &&
           add_num(w, "cost_per_1k_tokens", s->cost_per_1k_tokens);
}

static int add_check(cJSON *o, const rollout_check_t *c)
{
    cJSON *chk, *gates, *g, *windows;
    const stats_prop_result_t *e;

    if (!c)
        return cJSON_AddNullToObject(o, "check") != NULL;
    e = &c->error_rate;
    chk = cJSON_AddObjectToObject(o, "check");
    if (!chk || !add_num(chk, "at_ms", (double)c->at_ms) ||
        !cJSON_AddStringToObject(chk, "overall", stats_verdict_name(c->overall)))
        return 0;
    gates = cJSON_AddObjectToObject(chk, "gates");
    g = gates ? cJSON_AddObjectToObject(gates, "error_rate") : NULL;
    if (!g || !add_verdict(g, c->verdict[GATE_ERROR_RATE]) || !add_num(g, "p_new", e->p_new) ||
        !add_num(g, "p_orig", e->p_orig) || !add_num(g, "diff", e->diff) ||
        !add_num(g, "lower", e->lower) || !add_num(g, "upper", e->upper) || !add_num(g, "z", e->z))
        return 0;
    if (!add_hist_gate(gates, "latency", c->verdict[GATE_LATENCY], c->latency_ratio,
                       &c->latency_mwu) ||
        !add_hist_gate(gates, "ttft", c->verdict[GATE_TTFT], c->ttft_ratio, &c->ttft_mwu))
        return 0;
    g = cJSON_AddObjectToObject(gates, "cost");
    if (!g || !add_verdict(g, c->verdict[GATE_COST]) || !add_num(g, "ratio", c->cost_ratio))
        return 0;
    windows = cJSON_AddObjectToObject(chk, "windows");
    return windows && add_summary(windows, "original", &c->summary[WINDOW_ORIGINAL]) &&
           add_summary(windows, "new", &c->summary[WINDOW_NEW]);
}

int rollout_audit_line(const rollout_decision_t *d, const rollout_check_t *chk, const char *who,
                       long long now_ms, char *buf, size_t cap)
{
    cJSON *o;
    char when[80], reason[256];
    int ok;

    if (!d || !buf)
        return -1;
    o = cJSON_CreateObject();
    if (!o)
        return -1;
    memcpy(reason, d->reason, sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    ok =
        (iso8601(now_ms, when, sizeof(when)) == 0 ? cJSON_AddStringToObject(o, "time", when) != NULL
                                                  : cJSON_AddNullToObject(o, "time") != NULL) &&
        add_num(o, "time_ms", (double)now_ms) &&
        cJSON_AddStringToObject(o, "who", who ? who : "unknown") &&
        cJSON_AddBoolToObject(o, "changed", d->changed != 0) &&
        cJSON_AddStringToObject(o, "from_phase", rollout_phase_name(d->from_phase)) &&
        cJSON_AddStringToObject(o, "phase", rollout_phase_name(d->to_phase)) &&
        cJSON_AddNumberToObject(o, "from_stage", d->from_stage) &&
        cJSON_AddNumberToObject(o, "stage", d->to_stage) &&
        cJSON_AddNumberToObject(o, "from_bp", d->from_bp) &&
        cJSON_AddNumberToObject(o, "bp", d->to_bp) &&
        cJSON_AddNumberToObject(o, "from_percent", d->from_bp / 100.0) &&
        cJSON_AddNumberToObject(o, "percent", d->to_bp / 100.0) &&
        cJSON_AddBoolToObject(o, "stage_changed", d->stage_changed != 0) &&
        cJSON_AddStringToObject(o, "reason", reason) && add_check(o, chk);
    if (!ok) {
        cJSON_Delete(o);
        return -1;
    }
    ok = copy_out(cJSON_PrintUnformatted(o), buf, cap);
    cJSON_Delete(o);
    return ok;
}
