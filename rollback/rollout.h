/*
 * rollout — the pure rollout state machine: stages, gates, transitions, persisted state
 * and audit lines. The driver (router/controller.c) owns the clock, the files and the
 * percentage it publishes; this module only decides.
 *
 * A migration walks stages (e.g. 10 -> 50 -> 100 percent of sticky keys on `new`).
 * Every check compares `new` with `original` measured since the same instant, the stage
 * start, never against history (Flagger / Argo Rollouts / Kayenta): too little data is
 * INCONCLUSIVE, never a failure.
 *
 * Time: every function takes now_ms, wall-clock milliseconds since the epoch (the state
 * outlives the process). Nothing here reads a clock, does I/O or keeps global state.
 *
 * The driver's loop, every check_interval_ms:
 *   1. merge the workers' windows (all of the current epoch, stamped with the same since_ms)
 *      into one window_t; a window left from an earlier stage makes the merge older than the
 *      stage start (window_merge keeps the earlier since_ms), and the check then holds;
 *   2. d = rollout_check(&st, &pol, &merged, now, &chk);
 *   3. if d.changed: persist rollout_state_serialize(&st) (write, fsync, rename) and append
 *      rollout_audit_line(&d, &chk, "controller", now); if d.stage_changed: restart every
 *      worker's window with window_init(w, st.stage_started_ms);
 *   4. publish rollout_percentage_bp(&st, &pol) (it may change without a transition, e.g.
 *      on a mode switch or a reload that changes the stage list).
 * Manual actions (POST /admin/rollout/...) return a decision the same way: persist and
 * audit when changed, answer 409 with d.reason when not.
 *
 * Choices the driver relies on (see rollout.c for the reasoning):
 *   - changed = 1 whenever the persisted state changed, including a failing check that
 *     only bumps consecutive_failures (from/to phase and stage then equal) and the first
 *     non-failing check after one that clears it: persisting them keeps the failure
 *     streak across restarts, auditing them shows the checks that led to a rollback.
 *   - A window whose since_ms is older than st->stage_started_ms still holds data from
 *     before the stage: the check holds (no counting, no transition) until it is fresh.
 *   - Promotion needs stage_min_duration_ms both since the stage start and since the
 *     window's since_ms: after a restart, stamp the fresh windows with the restart time
 *     (not stage_started_ms), so a stage is promoted only on a full window of data.
 *     max_stage_duration_ms counts from the stage start (a restart does not extend it).
 *   - A stage at 100% has no concurrent baseline (original gets only deny-listed traffic):
 *     the comparisons stay INCONCLUSIVE, so it is a soak, but new's own error rate is still
 *     judged. While the original has fewer than min_requests, the error-rate gate compares
 *     new with st->baseline_* (the original's counts in the check that last promoted
 *     automatically; stats_error_rate_gate) or, when none is known, with a rate of 0
 *     (stats_error_rate_vs_rate), both with error_rate_increase and confidence. Its FAIL
 *     is a failing check like any other; the stage COMPLETES once stage_min_duration_ms
 *     has passed, `new` has served min_requests and that gate PASSes. With min_requests
 *     on the original (deny list) the four gates compare as at any other stage.
 *   - st->stage_bp remembers stages_bp[stage] when the state was made. A policy whose
 *     stage list no longer agrees (hot reload, restart with a new config) would move
 *     traffic without a gate: the effective percentage is then 0 and rollout_check (or
 *     rollout_state_reconcile) marks the state corrupt until an operator resets.
 *   - MANUAL mode: rollout_check computes the gates but never acts, neither promotion nor
 *     rollback nor pause, and leaves the failure counter alone; humans decide (the
 *     driver should log failing gates). ROLLBACK mode: 0% whatever the state, no
 *     automatic transition; the driver records the switch with
 *     rollout_rollback(..., "config", "mode: rollback"). Resume and promote are refused
 *     in ROLLBACK mode; reset clears `corrupt` but lands in rolled_back there.
 *   - Corrupt: 0%, no automatic transition; promote, pause and resume are refused
 *     ("state file unreadable; POST /admin/rollout/reset first"); rollback is accepted
 *     (it only records the operator's decision, corrupt stays); reset clears it.
 *   - The failure counter counts consecutive FAILing checks in PROGRESSING; any other
 *     verdict resets it. The driver must tick at check_interval_ms: this module does not
 *     rate-limit (GET /admin/rollout uses rollout_evaluate, which changes nothing).
 *
 * Ownership: every type is a plain value; decisions and checks are returned or written
 * into caller-owned memory. Serialization and audit lines use cJSON internally and free
 * what they allocate.
 *
 * Errors: functions that produce text return the bytes written (without the NUL) or -1
 * (buffer too small, allocation failure, invalid input); rollout_state_parse returns 0 or
 * -1 and then leaves *st untouched. Manual actions never fail: a refusal is a decision
 * with changed = 0 and the reason. NULL state / policy pointers are programming errors
 * (not checked) except where a comment says otherwise.
 */
#ifndef SWITCHYARD_ROLLOUT_H
#define SWITCHYARD_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"
#include "window.h"

typedef enum {
    ROLLOUT_PROGRESSING = 0,
    ROLLOUT_PAUSED,
    ROLLOUT_ROLLED_BACK,
    ROLLOUT_COMPLETED
} rollout_phase_t;

typedef enum {
    ROLLOUT_ON_FAILURE_ROLLBACK = 0,
    ROLLOUT_ON_FAILURE_STEP_DOWN,
    ROLLOUT_ON_FAILURE_PAUSE
} rollout_on_failure_t;

typedef enum { ROLLOUT_MODE_AUTO = 0, ROLLOUT_MODE_MANUAL, ROLLOUT_MODE_ROLLBACK } rollout_mode_t;

#define ROLLOUT_MAX_STAGES 16
#define ROLLOUT_STATE_VERSION 3 /* 1 (no baseline) and 2 (no manual percentage) are still read */

typedef struct {
    rollout_mode_t mode;
    int n_stages;
    uint32_t stages_bp[ROLLOUT_MAX_STAGES]; /* basis points, strictly increasing, 1..10000 */
    long long stage_min_duration_ms, check_interval_ms, max_stage_duration_ms; /* max: 0 = off */
    uint64_t min_requests; /* per variant per stage */
    int failure_threshold; /* consecutive failing checks */
    double error_rate_increase, confidence, latency_p95_ratio, ttft_p95_ratio,
        cost_per_1k_tokens_ratio;
    /* a ratio of INFINITY turns that gate off (always PASS) */
    double latency_min_diff_ms; /* latency/TTFT p95 differences below this always pass */
    rollout_on_failure_t on_failure;
} rollout_policy_t;

typedef struct {
    rollout_phase_t phase;
    int stage;                  /* index into stages; -1 = 0% (rolled back, or nothing yet) */
    long long stage_started_ms; /* when the current stage began (windows measure from here) */
    int consecutive_failures;
    int corrupt; /* the state file could not be read: 0% new, no promotion until reset */
    long long updated_ms;
    char reason[256];  /* why the last transition happened */
    uint32_t stage_bp; /* stages_bp[stage] when the stage was entered (0 at stage -1) */
    /* The original's requests and errors in the check that last promoted automatically
     * (0/0: none known). A stage at 100% has no concurrent baseline: new's error rate is
     * held against this one instead (see rollout_check). */
    uint64_t baseline_requests, baseline_errors;
    /* Manual mode: the percentage an admin call set (bp), -1 = none (the file's applies),
     * and the file's percentage at that time (-1: none written). A restart keeps the
     * admin's while the file still says the same; a new one in the file replaces it. */
    int manual_bp, manual_file_bp;
} rollout_state_t;

typedef enum {
    GATE_ERROR_RATE = 0,
    GATE_LATENCY,
    GATE_TTFT,
    GATE_COST,
    ROLLOUT_N_GATES
} rollout_gate_t;

typedef struct {
    stats_verdict_t verdict[ROLLOUT_N_GATES];
    stats_prop_result_t error_rate;
    double latency_ratio, ttft_ratio, cost_ratio; /* NaN when not computable */
    stats_mwu_result_t latency_mwu, ttft_mwu;
    window_summary_t summary[2]; /* [WINDOW_ORIGINAL], [WINDOW_NEW] */
    stats_verdict_t overall;     /* FAIL if any gate fails; PASS if all pass; else INCONCLUSIVE */
    long long at_ms;
} rollout_check_t;

typedef struct {
    int changed; /* the persisted state changed: persist + audit */
    rollout_phase_t from_phase, to_phase;
    int from_stage, to_stage;
    uint32_t from_bp, to_bp; /* effective percentages (rollout_percentage_bp) */
    int stage_changed;       /* the windows must restart from st->stage_started_ms */
    char reason[256];        /* why (or why not, when changed == 0) */
} rollout_decision_t;

/* "progressing", "paused", "rolled_back", "completed"; "?" for anything else. */
const char *rollout_phase_name(rollout_phase_t p);
/* "auto", "manual", "rollback"; "rollback", "step_down", "pause"; "?" otherwise. */
const char *rollout_mode_name(rollout_mode_t m);
const char *rollout_on_failure_name(rollout_on_failure_t f);
/* "error_rate", "latency", "ttft", "cost"; "?" otherwise. */
const char *rollout_gate_name(rollout_gate_t g);

/* 0 when pol is usable, else -1 with a one-line explanation in err (may be NULL). The
 * config loader validates the same ranges; this guards other callers (tests, tools). */
int rollout_policy_validate(const rollout_policy_t *pol, char *err, size_t cap);

/* A fresh rollout: stage 0 (stages[0]), progressing, started now. */
void rollout_state_init(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms);

/* A loaded state whose stage_started_ms lies after now_ms (the clock was stepped back, or
 * the file comes from a host whose clock ran ahead): stage_started_ms becomes now_ms.
 * Returns 1 when it clamped (the driver logs and persists it), else 0. Without it the
 * windows, stamped with the restart time, would be older than the stage and every check
 * would hold, automatic rollback included, until the clock caught up. */
int rollout_state_clamp_clock(rollout_state_t *st, long long now_ms);

/* The state to run with when the state file cannot be read: 0% new (rolled_back, stage -1),
 * corrupt = 1, reason "state file unreadable: <why>". */
void rollout_state_corrupt(rollout_state_t *st, long long now_ms, const char *why);

/* The effective percentage of sticky keys on `new`, in basis points: 0 when rolled back,
 * corrupt, in mode rollback, at stage -1, or when the policy's stage list no longer agrees
 * with the state; stages[stage] otherwise (also when paused or completed). */
uint32_t rollout_percentage_bp(const rollout_state_t *st, const rollout_policy_t *pol);

/* The gates only, no state change (also for GET /admin/rollout). win may be NULL (no
 * data: every gate INCONCLUSIVE). out->at_ms = now_ms. */
void rollout_evaluate(const rollout_policy_t *pol, const window_t *win, long long now_ms,
                      rollout_check_t *out);

/* One controller tick: evaluates the gates into *out (may be NULL) and applies the rules
 * (mode, phase, corrupt, durations, on_failure) to *st. */
rollout_decision_t rollout_check(rollout_state_t *st, const rollout_policy_t *pol,
                                 const window_t *win, long long now_ms, rollout_check_t *out);

/* After loading the state or reloading the policy: marks the state corrupt (changed = 1)
 * when the stage list no longer agrees with it; otherwise changed = 0. rollout_check
 * does the same first, so calling this is only about saying so early. */
rollout_decision_t rollout_state_reconcile(rollout_state_t *st, const rollout_policy_t *pol,
                                           long long now_ms);

/* Manual actions. who (may be NULL) names the operator in the reason. A refusal returns
 * changed = 0 with the reason, e.g. promote while corrupt or at the last stage.
 *   promote:  progressing / paused at stage s < last -> stage s+1, progressing;
 *   rollback: any phase but rolled_back -> rolled_back, stage -1 (why may be NULL);
 *   pause:    progressing -> paused (same stage, the window keeps running);
 *   resume:   paused -> progressing, same stage, its window restarts;
 *             rolled_back -> progressing at stage 0;
 *   reset:    clears corrupt; a fresh rollout at stage 0 (rolled_back in mode rollback). */
rollout_decision_t rollout_promote(rollout_state_t *st, const rollout_policy_t *pol,
                                   long long now_ms, const char *who);
rollout_decision_t rollout_rollback(rollout_state_t *st, const rollout_policy_t *pol,
                                    long long now_ms, const char *who, const char *why);
rollout_decision_t rollout_pause(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms,
                                 const char *who);
rollout_decision_t rollout_resume(rollout_state_t *st, const rollout_policy_t *pol,
                                  long long now_ms, const char *who);
rollout_decision_t rollout_reset(rollout_state_t *st, const rollout_policy_t *pol, long long now_ms,
                                 const char *who);

/* Persistence: one JSON object, no newline,
 *   {"version":3,"phase":"progressing","stage":0,"stage_bp":1000,"stage_started_ms":...,
 *    "consecutive_failures":0,"corrupt":false,"updated_ms":...,"reason":"...",
 *    "baseline_requests":0,"baseline_errors":0,"manual_bp":-1,"manual_file_bp":-1}
 * Parse is strict: every key exactly once, no other key, the right types, integral
 * numbers, version 3, or version 2 without the two manual keys (manual -1/-1), or
 * version 1 without those and the two baseline keys (baseline 0/0), -1 <= manual_bp,
 * manual_file_bp <= 10000, baseline_errors <= baseline_requests, a known phase,
 * -1 <= stage < ROLLOUT_MAX_STAGES, stage -1 exactly when rolled_back with stage_bp 0,
 * stage_bp 1..10000 otherwise, corrupt only when rolled_back, reason < 256 bytes, no
 * trailing bytes and no NUL inside text[0..len). Anything else: -1, *st untouched (the
 * driver then uses rollout_state_corrupt). */
int rollout_state_serialize(const rollout_state_t *st, char *buf, size_t cap);
int rollout_state_parse(const char *text, size_t len, rollout_state_t *st);

/* One audit line (JSON object, no newline) for a decision:
 *   time (ISO-8601 UTC, ms), time_ms, who, changed, from_phase, phase, from_stage, stage,
 *   from_bp, bp, from_percent, percent, stage_changed, reason, and
 *   "check": null, or {"at_ms", "overall", "gates": {"error_rate": {verdict, p_new, p_orig,
 *   diff, lower, upper, z}, "latency"/"ttft": {verdict, p95_ratio, mwu_u, mwu_z, mwu_p},
 *   "cost": {verdict, ratio}}, "windows": {"original"/"new": {requests, errors, error_rate,
 *   latency_p50, latency_p95, latency_p99, ttft_count, ttft_p95, cost_per_1k_tokens}}}.
 * Numbers that are NaN or infinite are written as null. chk and who may be NULL. */
int rollout_audit_line(const rollout_decision_t *d, const rollout_check_t *chk, const char *who,
                       long long now_ms, char *buf, size_t cap);

#endif
