/*
 * server — worker threads, listeners, config snapshot. See server.h.
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <openssl/sha.h>

#include "curlmem.h"
#include "headguard.h"
#include "log.h"
#include "proxy.h"
#include "ws.h"

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const flag_def_t *server_routing_flag(server_t *srv, const flag_def_t *def, flag_def_t *scratch)
{
    int bp = atomic_load_explicit(&srv->pct_override, memory_order_acquire);
    if (bp < 0 || !def)
        return def;
    *scratch = *def;
    scratch->percentage_bp = (uint32_t)bp;
    return scratch;
}

window_t *worker_window(worker_t *w)
{
    /* since_ms is stored before the epoch is bumped (release): a new epoch seen here comes
     * with its start. */
    unsigned epoch = atomic_load_explicit(&w->srv->window_epoch, memory_order_acquire);
    if (epoch != w->window_epoch) {
        window_init(&w->window, atomic_load(&w->srv->window_since_ms));
        w->window_epoch = epoch;
    }
    return &w->window;
}

void worker_snapshot(worker_t *w)
{
    /* A worker that served nothing since the stage started still holds the previous
     * stage's samples: restart before copying, or they would be judged as this stage's. */
    w->snapshot = *worker_window(w);
    w->snapshot_epoch = w->window_epoch;
}

static void on_snapshot(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    unsigned gen = atomic_load_explicit(&w->srv->snapshot_gen, memory_order_acquire);
    worker_snapshot(w);
    atomic_store_explicit(&w->snapshot_done, gen, memory_order_release);
}

unsigned server_request_snapshots(server_t *srv)
{
    unsigned gen = atomic_fetch_add(&srv->snapshot_gen, 1) + 1;
    for (int i = 0; i < srv->n_workers; i++)
        event_active(srv->workers[i].snapshot_ev, EV_TIMEOUT, 0);
    return gen;
}

int server_snapshots_ready(server_t *srv, unsigned gen)
{
    for (int i = 0; i < srv->n_workers; i++)
        if (atomic_load_explicit(&srv->workers[i].snapshot_done, memory_order_acquire) != gen)
            return 0;
    return 1;
}

int server_merge_snapshots(server_t *srv, window_t *out)
{
    unsigned epoch = atomic_load_explicit(&srv->window_epoch, memory_order_acquire);
    window_init(out, atomic_load(&srv->window_since_ms));
    for (int i = 0; i < srv->n_workers; i++) {
        if (srv->workers[i].snapshot_epoch != epoch)
            return -1;
        window_merge(out, &srv->workers[i].snapshot);
    }
    return 0;
}

void server_restart_windows(server_t *srv, long long since_ms)
{
    atomic_store(&srv->window_since_ms, since_ms);
    atomic_fetch_add_explicit(&srv->window_epoch, 1, memory_order_release);
}

/* ---- config snapshot ------------------------------------------------------------- */

void server_set_config(server_t *srv, config_t *cfg)
{
    config_ref(cfg);
    pthread_mutex_lock(&srv->cfg_lock);
    config_t *old = srv->cfg;
    srv->cfg = cfg;
    atomic_fetch_add(&srv->cfg_gen, 1);
    pthread_mutex_unlock(&srv->cfg_lock);
    config_unref(old);
}

config_t *server_config_get(server_t *srv)
{
    pthread_mutex_lock(&srv->cfg_lock);
    config_t *c = config_ref(srv->cfg);
    pthread_mutex_unlock(&srv->cfg_lock);
    return c;
}

config_t *worker_config(worker_t *w)
{
    unsigned gen = atomic_load_explicit(&w->srv->cfg_gen, memory_order_acquire);
    if (gen != w->cfg_gen) {
        config_t *fresh = server_config_get(w->srv);
        config_unref(w->cfg);
        w->cfg = fresh;
        w->cfg_gen = gen;
    }
    return w->cfg;
}

uint64_t worker_random(worker_t *w)
{
    /* xorshift64*: fast, and only used for unkeyed draws and request ids. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- listeners ------------------------------------------------------------------- */

static int resolve(const config_addr_t *a, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || !res) {
        log_error("event=listen_failed addr=%s:%d error=\"%s\"", a->host, a->port,
                  gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/* ---- workers --------------------------------------------------------------------- */

/* A reply evhttp still writes while the worker drains: the loop must run until it is
 * out, or the last stream of a worker loses its end at SIGTERM. Freed when the reply is
 * written (on_complete) or its connection goes (closecb, which evhttp calls before it
 * frees the request): whichever comes first unhooks the other. */
struct pending_write {
    struct pending_write *prev, *next;
    worker_t *w;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
};

static void worker_check_exit(worker_t *w)
{
    if (w->draining && w->n_live == 0 && !w->writing && !w->ws_conns)
        event_base_loopexit(w->base, NULL);
}

static void write_done(struct pending_write *pw)
{
    worker_t *w = pw->w;
    if (pw->prev)
        pw->prev->next = pw->next;
    else
        w->writing = pw->next;
    if (pw->next)
        pw->next->prev = pw->prev;
    free(pw);
    worker_check_exit(w);
}

static void on_reply_written(struct evhttp_request *req, void *arg)
{
    (void)req;
    struct pending_write *pw = arg;
    evhttp_connection_set_closecb(pw->evcon, NULL, NULL);
    write_done(pw);
}

static void on_writing_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct pending_write *pw = arg;
    evhttp_request_set_on_complete_cb(pw->req, NULL, NULL);
    write_done(pw);
}

void worker_track_write(worker_t *w, struct evhttp_request *req, struct evhttp_connection *evcon)
{
    struct pending_write *pw = calloc(1, sizeof(*pw));
    if (!pw || !evcon) {
        free(pw); /* untracked: the drain deadline still bounds the wait */
        return;
    }
    pw->w = w;
    pw->req = req;
    pw->evcon = evcon;
    pw->next = w->writing;
    if (w->writing)
        w->writing->prev = pw;
    w->writing = pw;
    evhttp_request_set_on_complete_cb(req, on_reply_written, pw);
    evhttp_connection_set_closecb(evcon, on_writing_conn_closed, pw);
}

void worker_request_ended(worker_t *w)
{
    if (w->draining)
        worker_check_exit(w);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    if (w->n_live)
        log_warn("event=drain_timeout worker=%d abandoned=%zu", w->id, w->n_live);
    event_base_loopexit(w->base, NULL);
}

/* Runs on the worker's thread when server_stop wakes it. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    if (w->draining)
        return;
    w->draining = 1;
    ws_worker_going_away(w); /* WebSockets get 1001, after their chats */
    if (w->bound) {
        evtimer_del(w->accept_resume);
        evhttp_del_accept_socket(w->http, w->bound);
        w->bound = NULL;
    }
    int ms = w->srv->drain_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
    worker_check_exit(w);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    accesslog_flush(&w->alog);
}

char *server_metrics_text(server_t *srv)
{
    metrics_shard_t *shards[256];
    size_t n = 0;
    for (int i = 0; i < srv->n_workers && n < 256; i++)
        shards[n++] = srv->workers[i].metrics;
    config_t *cfg = server_config_get(srv);
    /* What routes now: the rollout's stage or an admin override, not the file's value. */
    flag_def_t scratch;
    const flag_def_t *f = server_routing_flag(srv, config_flag(cfg, "use_new_provider"), &scratch);
    double stage = f ? (f->disabled ? 0 : f->percentage_bp / 100.0) : 0;
    char *text = metrics_render(shards, n, cfg, stage);
    config_unref(cfg);
    return text;
}

/* The worker whose loop runs on this thread (NULL on the main thread). */
static _Thread_local worker_t *tls_worker;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    headguard_attach(w->guard);
    curlmem_thread_attach(); /* this worker's easy handles come from slabs */
    tls_worker = w;
    event_base_dispatch(w->base);
    return NULL;
}

static void on_push(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ws_worker_drain(arg);
}

static void worker_free(worker_t *w)
{
    if (w->base) {
        ws_close_all(w); /* first: their chats are requests too */
        proxy_abort_all(w);
        ws_worker_drain_discard(w);
    }
    if (w->http)
        evhttp_free(w->http);
    headguard_free(w->guard);
    upstream_free(w->up);
    if (w->scratch)
        evbuffer_free(w->scratch);
    if (w->wake)
        event_free(w->wake);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->accept_resume)
        event_free(w->accept_resume);
    if (w->flush_timer)
        event_free(w->flush_timer);
    if (w->snapshot_ev)
        event_free(w->snapshot_ev);
    if (w->push_ev)
        event_free(w->push_ev);
    if (w->srv)
        pthread_mutex_destroy(&w->push_lock);
    accesslog_buf_free(&w->alog);
    metrics_shard_free(w->metrics);
    if (w->base)
        event_base_free(w->base);
    config_unref(w->cfg);
    memset(w, 0, sizeof(*w));
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    if (w->bound) /* not when the server stopped listening meanwhile */
        evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
}

/* accept() failed for want of a descriptor (or memory): the connection stays in the
 * backlog and the listener stays readable, so libevent would retry at once, forever,
 * at 100% CPU. Pause accepting for 100 ms instead; what is in flight goes on. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int e = errno;
    worker_t *w = tls_worker; /* listeners run on their worker's thread */
    if (!w)
        return;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        evconnlistener_disable(l);
        struct timeval tv = {0, 100000};
        evtimer_add(w->accept_resume, &tv);
    }
    long long now = now_ms();
    if (now - w->accept_warned_ms >= 1000) {
        w->accept_warned_ms = now;
        log_warn("event=accept_failed worker=%d error=\"%s\"%s", w->id, strerror(e),
                 e == EMFILE || e == ENFILE ? " hint=\"out of file descriptors: raise the open-files limit\"" : "");
    }
}

static int worker_init(server_t *srv, worker_t *w, int id, config_t *cfg,
                       struct sockaddr_storage *ss, socklen_t sslen)
{
    w->id = id;
    w->srv = srv;
    pthread_mutex_init(&w->push_lock, NULL);
    w->cfg = config_ref(cfg);
    w->cfg_gen = atomic_load(&srv->cfg_gen);
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
        w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)id;
    /* The changelist folds the add/del pairs evhttp makes on a client socket within one
     * loop iteration into at most one epoll_ctl (no descriptor here is ever dup()ed,
     * the changelist's one caveat). */
    struct event_config *ecfg = event_config_new();
    if (!ecfg)
        return -1;
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!w->base)
        return -1;
    w->up = upstream_new(w->base);
    w->scratch = evbuffer_new();
    w->http = evhttp_new(w->base);
    w->guard = headguard_new(cfg->limits.header_timeout_ms);
    w->wake = event_new(w->base, -1, 0, on_wake, w);
    w->drain_timer = evtimer_new(w->base, on_drain_deadline, w);
    w->metrics = metrics_shard_new();
    w->snapshot_ev = event_new(w->base, -1, 0, on_snapshot, w);
    w->push_ev = event_new(w->base, -1, 0, on_push, w);
    window_init(&w->window, atomic_load(&srv->window_since_ms));
    w->window_epoch = atomic_load(&srv->window_epoch);
    if (!w->snapshot_ev || !w->push_ev || !w->up || !w->scratch || !w->http || !w->guard || !w->wake || !w->drain_timer || !w->metrics ||
        accesslog_buf_init(&w->alog, srv->alog) < 0)
        return -1;
    if (srv->alog) {
        struct timeval every = {0, 100000};
        w->flush_timer = event_new(w->base, -1, EV_PERSIST, on_flush_timer, w);
        if (!w->flush_timer || event_add(w->flush_timer, &every) < 0)
            return -1;
    }
    evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->limits.max_body_bytes);
    /* Twice our limit: proxy_handle answers 431 itself for what lies in between. */
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)cfg->limits.max_header_bytes * 2);
    /* Slow-loris: a client that trickles its request is cut off; evhttp never blocks a
     * worker, so the others are served meanwhile. */
    struct timeval client_tv = {cfg->limits.client_timeout_ms / 1000,
                                (cfg->limits.client_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(w->http, &client_tv);
    evhttp_set_default_content_type(w->http, NULL);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(w->http, proxy_handle, w);
    evhttp_set_bevcb(w->http, headguard_bevcb, w->guard);

    struct evconnlistener *l = evconnlistener_new_bind(
        w->base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)ss, (int)sslen);
    if (!l) {
        log_error("event=listen_failed addr=%s:%d error=\"%s\"", cfg->listen.host,
                  port_of(ss), strerror(errno));
        return -1;
    }
    w->bound = evhttp_bind_listener(w->http, l);
    if (!w->bound) {
        evconnlistener_free(l);
        return -1;
    }
    w->accept_resume = evtimer_new(w->base, on_accept_resume, w);
    if (!w->accept_resume)
        return -1;
    evconnlistener_set_error_cb(l, on_accept_error);
    if (port_of(ss) == 0) {
        /* The first worker picks the free port; the others share it. */
        struct sockaddr_storage got;
        socklen_t gl = sizeof(got);
        getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &gl);
        set_port(ss, port_of(&got));
    }
    return 0;
}

/* Frees the workers (their threads joined or never started) and the server. */
static void server_free(server_t *srv)
{
    if (srv->workers)
        for (int i = 0; i < srv->n_workers; i++)
            worker_free(&srv->workers[i]);
    free(srv->workers);
    accesslog_close(srv->alog);
    ws_registry_free(srv->ws_registry);
    config_unref(srv->cfg);
    pthread_mutex_destroy(&srv->cfg_lock);
    free(srv);
}

server_t *server_start(config_t *cfg)
{
    server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    pthread_mutex_init(&srv->cfg_lock, NULL);
    srv->cfg = config_ref(cfg);
    atomic_store(&srv->pct_override, -1);
    srv->ws_registry = ws_registry_new();
    if (cfg->realtime.session_secret) {
        /* A configured secret keeps tokens valid across restarts and replicas. */
        SHA256((const unsigned char *)cfg->realtime.session_secret,
               strlen(cfg->realtime.session_secret), srv->session_secret);
    } else if (getrandom(srv->session_secret, sizeof(srv->session_secret), 0) !=
               (ssize_t)sizeof(srv->session_secret)) {
        log_error("event=random_failed");
        goto fail;
    }
    srv->session_secret_len = sizeof(srv->session_secret);
    if (!srv->ws_registry)
        goto fail;
    atomic_store(&srv->window_since_ms, wall_ms());
    srv->n_workers = cfg->workers > 0 ? cfg->workers : 1;
    if (cfg->access_log.path) {
        srv->alog = accesslog_open(cfg->access_log.path);
        if (!srv->alog) {
            log_error("event=access_log_failed path=%s error=\"%s\"", cfg->access_log.path,
                      strerror(errno));
            goto fail;
        }
    }
    srv->workers = calloc((size_t)srv->n_workers, sizeof(worker_t));
    if (!srv->workers)
        goto fail;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(&cfg->listen, &ss, &sslen) < 0)
        goto fail;
    for (int i = 0; i < srv->n_workers; i++) {
        if (worker_init(srv, &srv->workers[i], i, cfg, &ss, sslen) < 0)
            goto fail;
    }
    srv->listen_port = port_of(&ss);
    for (int i = 0; i < srv->n_workers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            log_error("event=thread_failed worker=%d", i);
            /* Threads already started must be stopped by the caller's exit path. */
            srv->n_workers = i;
            server_stop(srv, 0);
            return NULL;
        }
    }
    return srv;
fail:
    server_free(srv);
    return NULL;
}

void server_stop(server_t *srv, int drain_ms)
{
    if (!srv)
        return;
    srv->drain_ms = drain_ms;
    atomic_store(&srv->stopping, 1);
    for (int i = 0; i < srv->n_workers; i++)
        event_active(srv->workers[i].wake, EV_TIMEOUT, 0);
    for (int i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    server_free(srv);
}
