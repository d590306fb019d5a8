/*
 * server — the worker threads and the shared config snapshot.
 *
 * Each worker owns one event_base, one evhttp bound to its own SO_REUSEPORT
 * listener (the kernel spreads connections), one upstream_t (CURLM) and its
 * live requests. Workers share nothing but the config snapshot and atomics.
 *
 * The snapshot is swapped under a mutex that is taken only on a swap and by a
 * worker noticing a new generation; the request path reads an atomic generation
 * counter and otherwise uses its worker's own reference (no lock per request).
 * A request keeps a reference to the snapshot it started with until it ends.
 *
 * Errors: server_start returns -1 after logging the reason.
 */
#ifndef SWITCHYARD_SERVER_H
#define SWITCHYARD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "accesslog.h"
#include "budget.h"
#include "config.h"
#include "health.h"
#include "metrics.h"
#include "window.h"
#include "upstream.h"

typedef struct server server_t;
typedef struct proxy_req proxy_req_t;

typedef struct worker {
    int id;
    server_t *srv;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *accept_resume; /* re-enables the listener after EMFILE and the like */
    long long accept_warned_ms;  /* last out-of-descriptors warning (one a second) */
    struct event *wake; /* activated from other threads: drain / stop */
    struct event *drain_timer;
    struct headguard *guard; /* raw request-head checks (headguard.h) */
    upstream_t *up;
    struct evbuffer *scratch; /* stages chunks for evhttp; empty between uses */
    config_t *cfg; /* this worker's reference to the current snapshot */
    unsigned cfg_gen;
    uint64_t rng; /* xorshift state: unkeyed draws, request ids */
    proxy_req_t *live; /* doubly linked list of requests in flight */
    size_t n_live;
    int draining;
    struct pending_write *writing; /* draining: replies handed to evhttp, not yet written */
    budget_t budget; /* retries + fallbacks of this worker */
    metrics_shard_t *metrics;
    accesslog_buf_t alog;
    struct event *flush_timer;
    /* the rollout controller's view of this worker's traffic */
    window_t window;
    unsigned window_epoch;
    window_t snapshot;           /* copied on request, read by the controller */
    unsigned snapshot_epoch;     /* the window epoch the copy belongs to */
    atomic_uint snapshot_done;   /* generation of the last copy (release) */
    struct event *snapshot_ev;
    /* WebSocket connections of this worker, and pushes queued for them */
    struct ws_conn *ws_conns;
    pthread_mutex_t push_lock;
    void *push_head;
    struct event *push_ev;
} worker_t;

struct server {
    pthread_mutex_t cfg_lock;
    config_t *cfg; /* guarded by cfg_lock */
    atomic_uint cfg_gen;
    worker_t *workers;
    int n_workers;
    int listen_port; /* the port actually bound (config port 0 = any) */
    atomic_int stopping;
    int drain_ms;
    health_t health[CONFIG_N_ROLES]; /* outlier ejection per provider role */
    accesslog_t *alog;               /* NULL when access_log is off */
    /* Set by the rollout controller / admin; read by every request. */
    atomic_int pct_override;      /* routing flag's percentage in bp, -1 = the config's */
    atomic_uint window_epoch;     /* bumped when a stage starts: workers restart windows */
    atomic_llong window_since_ms; /* wall-clock ms the current windows measure from */
    atomic_uint snapshot_gen;
    struct ws_registry *ws_registry;
    unsigned char session_secret[32]; /* signs browser session tokens */
    size_t session_secret_len;
};

/* Wall-clock milliseconds (persisted timestamps, window starts). */
long long wall_ms(void);

/* The routing flag as requests see it now: def itself, or *scratch (a shallow copy)
 * with the controller's or an admin's percentage. */
const flag_def_t *server_routing_flag(server_t *srv, const flag_def_t *def, flag_def_t *scratch);

/* Asks every worker for a copy of its window (any thread); ready when all answered. */
unsigned server_request_snapshots(server_t *srv);
int server_snapshots_ready(server_t *srv, unsigned gen);

/* Once ready: merges the copies into *out, stamped with the current window start. -1 (and
 * *out holds nothing to judge) when a copy belongs to an earlier window epoch: a stage
 * started between the request and the answers, so the copy may hold the previous stage's
 * samples. Controller thread only (the thread that restarts windows). */
int server_merge_snapshots(server_t *srv, window_t *out);

/* Restarts every worker's window from since_ms: a worker restarts its own at its next
 * request or snapshot, whichever comes first. */
void server_restart_windows(server_t *srv, long long since_ms);

/* The worker's window for the current epoch, restarted first when a stage started since
 * the worker last used it (worker thread only). */
window_t *worker_window(worker_t *w);

/* Copies worker_window(w) into w->snapshot, tagged with its epoch (worker thread, on the
 * controller's request). */
void worker_snapshot(worker_t *w);

/* /metrics text of all workers' shards (admin thread); malloc'd. */
char *server_metrics_text(server_t *srv);

/* Monotonic milliseconds. */
long long now_ms(void);

/* Binds the listeners and starts cfg->workers threads. Takes a reference to cfg. */
server_t *server_start(config_t *cfg);

/* Stops accepting, lets requests in flight finish for up to drain_ms, joins, frees. */
void server_stop(server_t *srv, int drain_ms);

/* Publishes a new snapshot (takes a reference); workers pick it up before their next request. */
void server_set_config(server_t *srv, config_t *cfg);

/* The current snapshot with a reference the caller must drop (any thread). */
config_t *server_config_get(server_t *srv);

/* The worker's snapshot, refreshed if a newer one was published (worker thread only). */
config_t *worker_config(worker_t *w);

/* Uniform 64-bit draw from the worker's generator. */
uint64_t worker_random(worker_t *w);

/* Called by proxy when a request ends, so a draining worker can exit. */
void worker_request_ended(worker_t *w);
/* While draining: the worker does not stop before this reply is written (or its
 * connection is gone, or the drain deadline passes). Call as the reply is handed to
 * evhttp, before it is sent. */
void worker_track_write(worker_t *w, struct evhttp_request *req, struct evhttp_connection *evcon);

#endif
