/*
 * budget — caps retries and fallbacks as a share of live traffic (Envoy's retry
 * budget), so that a failing provider cannot double the load on the other one.
 *
 * One budget_t per worker, touched only by that worker's thread. Counts live in
 * one-second windows; the previous window is weighted by how much of it still
 * overlaps the last second, which gives a sliding rate without a ring buffer.
 * Pure: time is a parameter (milliseconds, monotonic).
 */
#ifndef SWITCHYARD_BUDGET_H
#define SWITCHYARD_BUDGET_H

typedef struct {
    long long window_start_ms;
    double cur_requests, prev_requests;
    double cur_retries, prev_retries;
    int started;
} budget_t;

/* A client request arrived. */
void budget_note_request(budget_t *b, long long now_ms);

/*
 * May one more retry or fallback start now? Allowed while the retries of the
 * last second stay within max(min_per_second, percent% of its requests). Counts
 * the retry when it answers 1.
 */
int budget_try_retry(budget_t *b, long long now_ms, long percent, long min_per_second);

#endif
