/* budget — sliding one-second retry budget. See budget.h. */
#include "budget.h"

#define WINDOW_MS 1000

static void roll(budget_t *b, long long now)
{
    if (!b->started) {
        b->started = 1;
        b->window_start_ms = now;
        return;
    }
    long long elapsed = now - b->window_start_ms;
    if (elapsed < WINDOW_MS)
        return;
    if (elapsed < 2 * WINDOW_MS) {
        b->prev_requests = b->cur_requests;
        b->prev_retries = b->cur_retries;
    } else {
        b->prev_requests = b->prev_retries = 0;
    }
    b->cur_requests = b->cur_retries = 0;
    b->window_start_ms = now - elapsed % WINDOW_MS;
}

void budget_note_request(budget_t *b, long long now_ms)
{
    roll(b, now_ms);
    b->cur_requests += 1;
}

int budget_try_retry(budget_t *b, long long now_ms, long percent, long min_per_second)
{
    roll(b, now_ms);
    double overlap = 1.0 - (double)(now_ms - b->window_start_ms) / WINDOW_MS;
    double requests = b->cur_requests + b->prev_requests * overlap;
    double retries = b->cur_retries + b->prev_retries * overlap;
    double allowed = requests * (double)percent / 100.0;
    if (allowed < (double)min_per_second)
        allowed = (double)min_per_second;
    if (retries + 1.0 > allowed + 1e-9)
        return 0;
    b->cur_retries += 1;
    return 1;
}
