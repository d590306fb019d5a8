/*
 * upstream — libcurl multi on libevent. See upstream.h.
 *
 * libcurl tells us which sockets to watch (socket callback) and when to wake
 * it (timer callback); libevent tells libcurl what happened through
 * curl_multi_socket_action. Finished transfers are collected after every
 * action, outside libcurl's callbacks.
 */
#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "h2gate.h"

#define POOL_MAX 256
#define URL_CACHE_MAX 32
/* Streams libcurl puts on one HTTP/2 connection (its default, set so h2gate counts
 * with the same number). */
#define H2_STREAMS 100
/* HTTP/2 origins with a gate at once, per worker. */
#define GATES_MAX 1024

/* An HTTP/2 origin's gate (h2gate.h): its counts and the transfers waiting there. */
typedef struct {
    char *origin; /* "https://host:port", as the provider URL begins */
    size_t origin_len;
    h2gate_t n;
    upstream_xfer_t *held_head, *held_tail;
} gate_t;

/* A parsed URL for CURLOPT_CURLU: libcurl parses a string URL again on every
 * transfer (and re-assembles it); the few provider URLs a worker uses are parsed
 * once. Entries live as long as the worker: a transfer may still point at one. */
typedef struct {
    char *text;
    CURLU *url;
} url_entry_t;

/* libevent's view of one socket libcurl uses. Indexed by descriptor in the
 * worker's table, not by curl_multi_assign: a connection socket keeps its read
 * registration between the transfers that reuse it (see socket_cb). */
typedef struct {
    struct event ev;
    upstream_t *u;
    short kind;        /* EV_READ | EV_WRITE of the pending event; 0 = not pending */
    gate_t *gate;      /* an HTTP/2 connection counted in this gate's ready */
    unsigned ours : 1;      /* opened by open_socket */
    unsigned confirmed : 1; /* ... and connected: its close reaches close_socket */
    unsigned idle : 1; /* libcurl stopped watching; the read registration stays */
} sock_watch_t;

struct upstream {
    struct event_base *base;
    int no_proxy_env; /* no proxy variable in the environment at start */
    CURLM *multi;
    CURLSH *share; /* TLS sessions and DNS answers, for this worker's handles */
    struct event *timer;
    struct event *recheck_ev; /* runs the re-check list, after the current callback */
    upstream_xfer_t *recheck_head;
    int nudge_all; /* read every connection once more (see nudge_later) */
    int in_callback;
    CURL *pool[POOL_MAX];
    int n_pool;
    url_entry_t urls[URL_CACHE_MAX];
    int n_urls;
    sock_watch_t **watch; /* by descriptor */
    size_t n_watch;
    gate_t **gates; /* each allocated alone: sockets and transfers point at them */
    int n_gates, cap_gates;
    struct event *release_ev; /* starts waiting transfers, after the current callback */
};

static sock_watch_t *watch_get(upstream_t *u, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < u->n_watch ? u->watch[fd] : NULL;
}

/* The watch for fd, created (not pending, not ours) when missing. NULL on ENOMEM. */
static sock_watch_t *watch_make(upstream_t *u, curl_socket_t fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= u->n_watch) {
        size_t n = u->n_watch ? u->n_watch : 64;
        while (n <= (size_t)fd)
            n *= 2;
        sock_watch_t **t = realloc(u->watch, n * sizeof(*t));
        if (!t)
            return NULL;
        memset(t + u->n_watch, 0, (n - u->n_watch) * sizeof(*t));
        u->watch = t;
        u->n_watch = n;
    }
    if (!u->watch[fd]) {
        sock_watch_t *w = calloc(1, sizeof(*w));
        if (!w)
            return NULL;
        w->u = u;
        u->watch[fd] = w;
    }
    return u->watch[fd];
}

static void watch_drop(upstream_t *u, curl_socket_t fd)
{
    sock_watch_t *w = watch_get(u, fd);
    if (!w)
        return;
    if (w->gate)
        w->gate->n.ready--; /* an HTTP/2 connection went away */
    if (w->kind)
        event_del(&w->ev);
    free(w);
    u->watch[fd] = NULL;
}

/* A zero timeout, not event_active: a transfer re-checked round after round (a
 * long burst) must leave the loop its epoll_wait and timers between rounds. */
static void recheck_soon(upstream_t *u)
{
    static const struct timeval now = {0, 0};
    evtimer_add(u->recheck_ev, &now);
}

static void recheck_add(upstream_t *u, upstream_xfer_t *x)
{
    x->recheck = 1;
    x->recheck_prev = NULL;
    x->recheck_next = u->recheck_head;
    if (u->recheck_head)
        u->recheck_head->recheck_prev = x;
    u->recheck_head = x;
    recheck_soon(u);
}

static void recheck_drop(upstream_t *u, upstream_xfer_t *x)
{
    if (!x->recheck)
        return;
    if (x->recheck_prev)
        x->recheck_prev->recheck_next = x->recheck_next;
    else
        u->recheck_head = x->recheck_next;
    if (x->recheck_next)
        x->recheck_next->recheck_prev = x->recheck_prev;
    x->recheck = 0;
    x->recheck_next = x->recheck_prev = NULL;
}

/* ---- HTTP/2 connection gates (h2gate.h) ----------------------------------------- */

static size_t origin_len(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return strlen(url);
    p += 3;
    return (size_t)(p + strcspn(p, "/?#") - url);
}

/* The gate of url's origin, made on first use. A gate with nothing running, waiting
 * or connected carries no state: a new origin takes it over before the table grows
 * (config reloads naming new origins). Gates are allocated one by one because
 * sockets and transfers point at them. Past GATES_MAX origins at once, NULL: that
 * origin's transfers start as they come, under libcurl's PIPEWAIT as without a gate. */
static gate_t *gate_for(upstream_t *u, const char *url)
{
    size_t n = origin_len(url);
    gate_t *empty = NULL;
    for (int i = 0; i < u->n_gates; i++) {
        gate_t *c = u->gates[i];
        if (c->origin_len == n && memcmp(c->origin, url, n) == 0)
            return c;
        /* ready == 0: no counted socket points at it any more. */
        if (!empty && c->n.running == 0 && c->n.opening == 0 && c->n.ready == 0 &&
            !c->held_head)
            empty = c;
    }
    char *origin = strndup(url, n);
    if (!origin)
        return NULL;
    gate_t *g = empty;
    if (g) {
        free(g->origin);
    } else {
        if (u->n_gates == u->cap_gates) {
            int cap = u->cap_gates ? 2 * u->cap_gates : 4;
            gate_t **t = cap <= GATES_MAX ? realloc(u->gates, (size_t)cap * sizeof(*t)) : NULL;
            if (!t) {
                free(origin);
                return NULL;
            }
            u->gates = t;
            u->cap_gates = cap;
        }
        if (!(g = malloc(sizeof(*g)))) {
            free(origin);
            return NULL;
        }
        u->gates[u->n_gates++] = g;
    }
    memset(g, 0, sizeof(*g));
    g->origin = origin;
    g->origin_len = n;
    return g;
}

/* The gate's line: first in, first out; a client that leaves takes its request out
 * wherever it stands. */
static void held_append(gate_t *g, upstream_xfer_t *x)
{
    x->held = 1;
    x->held_next = NULL;
    if (g->held_tail)
        g->held_tail->held_next = x;
    else
        g->held_head = x;
    g->held_tail = x;
}

static void held_remove(gate_t *g, upstream_xfer_t *x)
{
    upstream_xfer_t **pp = &g->held_head, *prev = NULL;
    while (*pp && *pp != x) {
        prev = *pp;
        pp = &(*pp)->held_next;
    }
    if (*pp)
        *pp = x->held_next;
    if (g->held_tail == x)
        g->held_tail = prev;
    x->held_next = NULL;
    x->held = 0;
}

static void release_soon(upstream_t *u)
{
    event_active(u->release_ev, EV_TIMEOUT, 1);
}

static uint32_t now_ms32(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)((uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u);
}

/* x leaves the multi (done, failed or cancelled): its gate's counts, and a turn for
 * whoever waits there. failed: it ended with an error of its own. */
static void gate_leave(upstream_t *u, upstream_xfer_t *x, int failed)
{
    gate_t *g = x->gate;
    if (!g)
        return;
    g->n.running--;
    if (x->opener) {
        g->n.opening--;
        if (failed) /* it never got its connection: let the others try theirs */
            g->n.failing = 1;
    }
    x->opener = 0;
    x->opened_socket = 0;
    x->gate = NULL;
    if (g->held_head)
        release_soon(u);
}

/* x opened the connection it now has (conn_fd): the connection counts as up. */
static void conn_counted(gate_t *g, upstream_xfer_t *x)
{
    x->opened_socket = 0;
    sock_watch_t *w = watch_get(x->u, x->conn_fd);
    if (w && w->ours && !w->gate) {
        w->gate = g;
        g->n.ready++;
        g->n.failing = 0;
    }
}

/* libcurl, right before it sends a request: the transfer has its connection. One
 * that opened the connection makes it count as up; an opener no longer opens. Only
 * counts change here (a libcurl callback): waiting transfers start from release_ev. */
static int on_prereq(void *clientp, char *ip, char *local_ip, int port, int local_port)
{
    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    upstream_xfer_t *x = clientp;
    gate_t *g = x->gate;
    if (!g)
        return CURL_PREREQFUNC_OK;
    x->prereq_seen = 1;
    /* CURLINFO_ACTIVESOCKET says nothing here (libcurl 7.88 answers it only for a
     * connection idle again): socket_cb notes the socket at libcurl's first read of
     * it. A handshake that finished within one pass of libcurl's was never waited
     * for: then the connection counts at that first read, right after this, when
     * libcurl waits for the answer (conn_counted). */
    if (x->opened_socket && x->conn_fd != CURL_SOCKET_BAD)
        conn_counted(g, x);
    if (x->opener) {
        x->opener = 0;
        g->n.opening--;
    }
    if (g->held_head)
        release_soon(x->u);
    return CURL_PREREQFUNC_OK;
}

static int add_now(upstream_t *u, upstream_xfer_t *x)
{
    x->conn_fd = CURL_SOCKET_BAD;
    if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK)
        return -1;
    x->active = 1;
    return 0;
}

/* Counts x in its gate as h2gate_admit said: 0 when it may start, -1 to wait. */
static int gate_enter(gate_t *g, upstream_xfer_t *x)
{
    switch (h2gate_admit(&g->n, H2_STREAMS)) {
    case H2GATE_START:
        break;
    case H2GATE_START_OPENER:
        x->opener = 1;
        g->n.opening++;
        break;
    case H2GATE_WAIT:
        return -1;
    }
    g->n.running++;
    return 0;
}

static void on_release(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_t *u = arg;
    for (int i = 0; i < u->n_gates; i++) {
        gate_t *g = u->gates[i];
        while (g->held_head && gate_enter(g, g->held_head) == 0) {
            upstream_xfer_t *x = g->held_head;
            held_remove(g, x);
            x->held_ms = now_ms32() - x->held_ms;
            if (add_now(u, x) < 0) {
                gate_leave(u, x, 0); /* our own failure, not the origin's */
                x->active = 0;
                if (x->on_done)
                    x->on_done(x, CURLE_OUT_OF_MEMORY); /* may start or cancel others */
            }
        }
    }
}

/* A transfer leaving a multiplexed connection early (cancelled, failed, or while
 * re-checked) may leave libcurl 7.88 with frames it read for the other streams there
 * and has not processed: it stopped on the leaving stream's full buffer (see
 * on_recheck) and only a read on that connection goes on. Which socket is not known:
 * CURLINFO_ACTIVESOCKET answers only once a connection is idle again. So every
 * connection socket libcurl is reading gets one read, after the current callback. */
static void nudge_later(upstream_t *u, const upstream_xfer_t *x)
{
    if (!x->multiplexed)
        return;
    u->nudge_all = 1;
    recheck_soon(u);
}

static void collect_done(upstream_t *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        upstream_xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (x && (rc != CURLE_OK || x->recheck))
            nudge_later(u, x);
        curl_multi_remove_handle(u->multi, easy);
        if (x) {
            recheck_drop(u, x);
            gate_leave(u, x, rc != CURLE_OK);
            x->active = 0;
            if (x->on_done)
                x->on_done(x, rc);
        }
    }
}

static void socket_action(upstream_t *u, curl_socket_t s, int mask)
{
    int running;
    u->in_callback++;
    curl_multi_socket_action(u->multi, s, mask, &running);
    u->in_callback--;
    collect_done(u);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sock_watch_t *w = arg;
    if (w->idle) {
        /* A cached connection spoke (the provider closed it, most likely). libcurl is
         * not watching it and checks it itself before reuse; stop the level-triggered
         * wake-ups. */
        event_del(&w->ev);
        w->kind = 0;
        return;
    }
    int mask = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    socket_action(w->u, fd, mask); /* may close the socket and free w */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* libcurl 7.88's HTTP/2 reader (http2.c) copies a stream's DATA into that transfer's
 * receive buffer. When the buffer fills it stops the connection's frame processing
 * on that stream ("pause data") and runs the transfer again for the rest; but once
 * the rest is handed over it does not run it again for what is still in its
 * connection buffer (the next frames, an end-of-stream frame), and its "data
 * pending" test never counts that buffer. With the socket drained nothing wakes the
 * stream: it hangs with its last bytes inside libcurl. Any answer arriving faster
 * than one buffer per read does this; with a 1.3 KB buffer an 8-event burst did,
 * every time (test_http2.case_burst_answers_end_on_either_framing).
 *
 * So a transfer that was handed a full buffer is run again here until a run hands it
 * nothing. Pausing and resuming is the public way to make libcurl run one transfer
 * soon and read its connection (easy.c marks the connection readable: the first
 * transfer run there takes the mark, a later one reads when libcurl owes it bytes);
 * these transfers are never paused otherwise (proxy.c holds instead of pausing on a
 * multiplexed connection), so no pause state is lost.
 *
 * One case is beyond this: when the end-of-stream flag is on the frame libcurl
 * stopped in, nghttp2 acts on it only at its next input, and libcurl feeds it none
 * until more bytes reach the connection. The owner hears of it (on_stuck) and may
 * end an answer that is complete by its own terms. */
static void on_recheck(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_t *u = arg;
    if (u->nudge_all) {
        u->nudge_all = 0;
        /* socket_action may open or close sockets: the table is read afresh. */
        for (size_t s = 0; s < u->n_watch; s++) {
            sock_watch_t *w = u->watch[s];
            if (w && w->ours && (w->kind & EV_READ) && !w->idle)
                socket_action(u, (curl_socket_t)s, CURL_CSELECT_IN);
        }
    }
    if (!u->recheck_head)
        return;
    u->in_callback++;
    for (upstream_xfer_t *x = u->recheck_head; x; x = x->recheck_next) {
        x->delivered = 0;
        curl_easy_pause(x->easy, CURLPAUSE_RECV);
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
    u->in_callback--;
    socket_action(u, CURL_SOCKET_TIMEOUT, 0); /* finished transfers leave the list */
    /* on_stuck may cancel or start transfers: look for the next one from the head. */
    for (;;) {
        upstream_xfer_t *x = u->recheck_head;
        while (x && x->delivered)
            x = x->recheck_next;
        if (!x)
            break;
        recheck_drop(u, x);
        if (x->on_stuck)
            x->on_stuck(x);
    }
    if (u->recheck_head)
        recheck_soon(u);
}

void upstream_delivered(upstream_xfer_t *x, size_t len)
{
    x->delivered = 1;
    if (!x->recheck && (long)len >= x->bufsize && x->u)
        recheck_add(x->u, x);
}

/* libcurl: only (re)arm our timer here, never call back into libcurl. A 0 ms timeout
 * becomes a zero timeval: libevent runs it on its next loop iteration, outside this
 * callback, which is what the "never call libcurl from here" rule needs. Rounding it
 * up to 1 ms (DESIGN.md's hiperfifo note) cost every request 2-3 ms of sleep, since
 * libcurl asks for 0 ms at each add and several state changes (docs/PERFORMANCE.md). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    upstream_t *u = userp;
    if (timeout_ms < 0) {
        evtimer_del(u->timer);
        return 0;
    }
    if (timeout_ms == 0 && u->in_callback == 0) {
        /* Asked from our own call (an add or a cancel), not from inside an action:
         * run it once the current libevent callback returns, in this same loop pass,
         * instead of a zero timeout that costs another epoll_wait per request. From
         * inside an action it stays a timer, so I/O is polled between repeated asks. */
        evtimer_del(u->timer);
        event_active(u->timer, EV_TIMEOUT, 1);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(u->timer, &tv);
    return 0;
}

/* libcurl stops watching a connection socket after every transfer and watches it
 * again when the next transfer reuses it: an epoll_ctl DEL and ADD per request.
 * A connection's socket keeps its read registration while idle instead; its close is
 * seen by close_socket, so the registration never outlives the descriptor. libcurl
 * 7.88 closes a socket that never connected (a happy-eyeballs loser, a connect given
 * up) without that callback, and asks to read a socket only once it is connected
 * (cf-socket.c): so "ours and asked to read" is the test. Every other socket (those,
 * the resolver's) is forgotten at its REMOVE. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    upstream_t *u = userp;
    sock_watch_t *w = watch_get(u, s);
    if (what == CURL_POLL_REMOVE) {
        if (!w)
            return 0;
        if (w->ours && w->confirmed && w->kind == EV_READ) {
            w->idle = 1;
            return 0;
        }
        if (w->ours && w->confirmed && w->gate) {
            /* A counted HTTP/2 connection stays counted until close_socket. */
            if (w->kind)
                event_del(&w->ev);
            w->kind = 0;
            w->idle = 1;
            return 0;
        }
        /* Anything else may be closed without close_socket: forget it entirely. */
        watch_drop(u, s);
        return 0;
    }
    if (!w && !(w = watch_make(u, s)))
        return -1;
    if (what & CURL_POLL_IN) {
        if (w->ours && !w->confirmed) {
            /* libcurl reads a socket only once it is connected: this is the one it
             * connected for this transfer (a happy-eyeballs loser never gets here). */
            upstream_xfer_t *x = NULL;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
            if (x && x->gate && x->opened_socket) {
                x->conn_fd = s;
                if (x->prereq_seen) { /* its handshake was never waited for */
                    conn_counted(x->gate, x);
                    if (((gate_t *)x->gate)->held_head)
                        release_soon(u);
                }
            }
        }
        w->confirmed = w->ours;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    w->idle = 0;
    if (w->kind == kind)
        return 0;
    if (w->kind)
        event_del(&w->ev);
    event_assign(&w->ev, u->base, s, kind | EV_PERSIST, on_socket_event, w);
    if (event_add(&w->ev, NULL) < 0) {
        w->kind = 0;
        return -1;
    }
    w->kind = kind;
    return 0;
}

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    upstream_xfer_t *x = arg;
    curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
    /* The last socket() of the attempt decides: a later address may still connect, or
     * be refused for the provider's own reasons. */
    x->open_errno = fd == CURL_SOCKET_BAD ? errno : 0;
    if (fd == CURL_SOCKET_BAD)
        return fd;
    x->opened_socket = 1;
    x->prereq_seen = 0; /* a new connection: its PREREQ is still to come */
    /* A watch left on this number was for a socket closed behind our back: drop it
     * before the number means a new socket. */
    watch_drop(x->u, fd);
    sock_watch_t *w = watch_make(x->u, fd);
    if (w)
        w->ours = 1;
    return fd;
}

static int close_socket(void *arg, curl_socket_t fd)
{
    watch_drop(arg, fd); /* before close: epoll must not keep a stale registration */
    return close(fd);
}

upstream_t *upstream_new(struct event_base *base)
{
    upstream_t *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->base = base;
    /* libcurl reads up to five proxy variables for every new transfer. With none of
     * them set (as at start), saying "no proxy" spares those lookups; with any set,
     * libcurl keeps doing exactly what it did. */
    static const char *const proxy_vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                             "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                                             "no_proxy", "NO_PROXY"};
    u->no_proxy_env = 1;
    for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++)
        if (getenv(proxy_vars[i]))
            u->no_proxy_env = 0;
    u->multi = curl_multi_init();
    u->timer = evtimer_new(base, on_timer, u);
    u->recheck_ev = evtimer_new(base, on_recheck, u);
    u->release_ev = evtimer_new(base, on_release, u);
    if (!u->multi || !u->timer || !u->recheck_ev || !u->release_ev) {
        upstream_free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    /* Keep-alive connections to providers are the main saving; keep plenty. */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)H2_STREAMS);
    /* One TLS session cache per worker instead of one per handle: a new connection to a
     * provider resumes the session, and each handle saves its own 5-slot cache (~1 KB
     * per concurrent stream). The worker is one thread: no lock callbacks needed. */
    u->share = curl_share_init();
    if (u->share) {
        curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    return u;
}

void upstream_free(upstream_t *u)
{
    if (!u)
        return;
    for (int i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]);
    for (int i = 0; i < u->n_urls; i++) {
        curl_url_cleanup(u->urls[i].url);
        free(u->urls[i].text);
    }
    if (u->multi)
        curl_multi_cleanup(u->multi); /* closes cached connections via close_socket */
    if (u->share)
        curl_share_cleanup(u->share);
    for (size_t i = 0; i < u->n_watch; i++)
        watch_drop(u, (curl_socket_t)i);
    free(u->watch);
    if (u->timer)
        event_free(u->timer);
    if (u->recheck_ev)
        event_free(u->recheck_ev);
    if (u->release_ev)
        event_free(u->release_ev);
    for (int i = 0; i < u->n_gates; i++) {
        free(u->gates[i]->origin);
        free(u->gates[i]);
    }
    free(u->gates);
    free(u);
}

/* Receive buffer sizes. libcurl allocates one per running transfer (size + 1 bytes).
 * SSE events are far smaller than libcurl's default 16 KiB, so a stream over HTTP/2
 * reads in 1 KiB pieces: 1,025 bytes, which curlmem serves exactly (mimalloc would
 * round it to 1,280); everything else reads in 4 KiB pieces: 4,097 bytes, also served
 * exactly (mimalloc: 5,120). A pooled handle has no buffer (see upstream_easy_put),
 * so it takes either size. */
#define BUFFER_STREAM 1024L
#define BUFFER_BODY 4096L

size_t upstream_stream_buffer_bytes(void)
{
    return (size_t)BUFFER_STREAM + 1;
}

size_t upstream_body_buffer_bytes(void)
{
    return (size_t)BUFFER_BODY + 1;
}

static void set_fixed_options(CURL *e)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
}

int upstream_easy_get(upstream_t *u, upstream_xfer_t *x, int small)
{
    long size = small ? BUFFER_STREAM : BUFFER_BODY;
    CURL *e = NULL;
    if (u->n_pool > 0) {
        e = u->pool[--u->n_pool]; /* reset at upstream_easy_put */
        /* Checked again: a size that does not take must never meet an HTTP/2 stream. */
        if (curl_easy_setopt(e, CURLOPT_BUFFERSIZE, size) != CURLE_OK) {
            curl_easy_cleanup(e);
            e = NULL;
        }
    }
    if (!e) {
        e = curl_easy_init();
        if (!e || curl_easy_setopt(e, CURLOPT_BUFFERSIZE, size) != CURLE_OK) {
            curl_easy_cleanup(e);
            return -1;
        }
        if (u->share)
            curl_easy_setopt(e, CURLOPT_SHARE, u->share);
    }
    set_fixed_options(e);
    if (u->no_proxy_env) {
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    x->easy = e;
    x->bufsize = size;
    return 0;
}

/* libcurl 7.88 frees a transfer's receive buffer in multi_done, except when the
 * transfer leaves an HTTP/2 connection other transfers still use: it returns early
 * ("still in use") with the buffer kept. curl_easy_reset keeps it too but sets the size
 * back to 16 KiB, and CURLOPT_BUFFERSIZE is refused while a buffer exists; the next
 * HTTP/2 transfer on that handle then copied up to 16 KiB into a 1.3 or 4 KiB buffer
 * (a heap overflow ASan caught). A handle whose size does not take is not pooled. */
void upstream_easy_put(upstream_t *u, CURL *easy)
{
    if (!easy)
        return;
    if (u->n_pool < POOL_MAX) {
        curl_easy_reset(easy); /* keeps the share */
        if (curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, BUFFER_BODY) == CURLE_OK) {
            u->pool[u->n_pool++] = easy;
            return;
        }
    }
    curl_easy_cleanup(easy);
}

static CURLU *cached_url(upstream_t *u, const char *text)
{
    for (int i = 0; i < u->n_urls; i++)
        if (strcmp(u->urls[i].text, text) == 0)
            return u->urls[i].url;
    if (u->n_urls == URL_CACHE_MAX)
        return NULL;
    CURLU *h = curl_url();
    char *copy = strdup(text);
    /* The flags libcurl itself parses CURLOPT_URL with, PATH_AS_IS as set_fixed_options asks. */
    if (!h || !copy ||
        curl_url_set(h, CURLUPART_URL, text, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) !=
            CURLUE_OK) {
        curl_url_cleanup(h);
        free(copy);
        return NULL;
    }
    u->urls[u->n_urls++] = (url_entry_t){copy, h};
    return h;
}

int upstream_set_url(upstream_t *u, CURL *easy, const char *url)
{
    /* Only query-less URLs are kept: a client choosing queries must not fill the cache. */
    CURLU *h = strchr(url, '?') ? NULL : cached_url(u, url);
    if (h)
        return curl_easy_setopt(easy, CURLOPT_CURLU, h) == CURLE_OK ? 0 : -1;
    return curl_easy_setopt(easy, CURLOPT_URL, url) == CURLE_OK ? 0 : -1;
}

int upstream_start(upstream_t *u, upstream_xfer_t *x, const char *h2_url)
{
    x->u = u;
    x->open_errno = 0;
    x->multiplexed = 0;
    x->delivered = 0;
    x->gate = h2_url ? gate_for(u, h2_url) : NULL;
    x->held = x->opener = x->opened_socket = x->prereq_seen = 0;
    x->held_next = NULL;
    x->held_ms = 0;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, x);
    /* The connection may outlive this transfer: its close goes to the worker. */
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, u);
    gate_t *g = x->gate;
    if (!g)
        return add_now(u, x);
    curl_easy_setopt(x->easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(x->easy, CURLOPT_PREREQDATA, x);
    /* The gate does PIPEWAIT's waiting, and more. libcurl's own would also keep
     * transfers pending behind a connection that then fails, each becoming the next
     * opener when the one before fails: against an unreachable origin, n requests
     * one connect timeout after the other. */
    curl_easy_setopt(x->easy, CURLOPT_PIPEWAIT, 0L);
    /* Behind others already in line, whatever the counts say: they go first. */
    if (g->held_head || gate_enter(g, x) < 0) {
        if (g->held_head)
            release_soon(u);
        held_append(g, x);
        x->held_ms = now_ms32();
        x->active = 1;
        return 0;
    }
    if (add_now(u, x) < 0) {
        gate_leave(u, x, 0);
        return -1;
    }
    return 0;
}

void upstream_cancel(upstream_t *u, upstream_xfer_t *x)
{
    if (!x->active)
        return;
    if (x->held) {
        held_remove(x->gate, x);
        x->gate = NULL;
        x->active = 0;
        return;
    }
    recheck_drop(u, x);
    nudge_later(u, x);
    curl_multi_remove_handle(u->multi, x->easy);
    gate_leave(u, x, 0);
    x->active = 0;
}

void upstream_resume(upstream_t *u, upstream_xfer_t *x)
{
    if (!x->active || x->held)
        return;
    u->in_callback++;
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
    u->in_callback--;
    /* Unpausing may have finished the transfer inside libcurl. */
    collect_done(u);
}

int upstream_can_trim_upload(void)
{
    /* Read in 7.88.1's source: CURLOPT_UPLOAD_BUFFERSIZE frees the buffer
     * (setopt.c), and once the body is sent nothing reads it again (http2.c clears
     * its pointer after every send). Other versions keep their buffer. */
    static int ok = -1;
    if (ok < 0) {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        ok = v && v->version_num >= 0x075800 && v->version_num < 0x075900;
    }
    return ok;
}

int upstream_in_callback(const upstream_t *u)
{
    return u->in_callback > 0;
}
