/*
 * upstream — libcurl multi on libevent. See upstream.h.
 *
 * libcurl tells us which sockets to watch (socket callback) and when to wake
 * it (timer callback); libevent tells libcurl what happened through
 * curl_multi_socket_action. Finished transfers are collected after every
 * action, outside libcurl's callbacks.
 */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event_struct.h>

#define POOL_MAX 256

typedef struct {
    struct event ev;
    upstream_t *u;
} sock_watch_t;

struct upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int in_callback;
    CURL *pool[POOL_MAX];
    int n_pool;
};

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
        curl_multi_remove_handle(u->multi, easy);
        if (x) {
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
    upstream_t *u = arg;
    int mask = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    socket_action(u, fd, mask);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
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
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(u->timer, &tv);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    upstream_t *u = userp;
    sock_watch_t *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            event_del(&w->ev);
            free(w);
        }
        return 0;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w)
            return -1;
        w->u = u;
        curl_multi_assign(u->multi, s, w);
    } else {
        event_del(&w->ev);
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    event_assign(&w->ev, u->base, s, kind, on_socket_event, u);
    event_add(&w->ev, NULL);
    return 0;
}

upstream_t *upstream_new(struct event_base *base)
{
    upstream_t *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->base = base;
    u->multi = curl_multi_init();
    u->timer = evtimer_new(base, on_timer, u);
    if (!u->multi || !u->timer) {
        upstream_free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    /* Keep-alive connections to providers are the main saving; keep plenty. */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return u;
}

void upstream_free(upstream_t *u)
{
    if (!u)
        return;
    for (int i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]);
    if (u->multi)
        curl_multi_cleanup(u->multi); /* closes cached connections via socket_cb */
    if (u->timer)
        event_free(u->timer);
    free(u);
}

static void set_fixed_options(CURL *e)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* SSE events are far below 4 KiB; libcurl's 16 KiB default per transfer is most of
     * what 10,000 concurrent streams cost in memory. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
}

CURL *upstream_easy_get(upstream_t *u)
{
    CURL *e;
    if (u->n_pool > 0) {
        e = u->pool[--u->n_pool];
        curl_easy_reset(e);
    } else {
        e = curl_easy_init();
        if (!e)
            return NULL;
    }
    set_fixed_options(e);
    return e;
}

void upstream_easy_put(upstream_t *u, CURL *easy)
{
    if (!easy)
        return;
    if (u->n_pool < POOL_MAX)
        u->pool[u->n_pool++] = easy;
    else
        curl_easy_cleanup(easy);
}

int upstream_start(upstream_t *u, upstream_xfer_t *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK)
        return -1;
    x->active = 1;
    return 0;
}

void upstream_cancel(upstream_t *u, upstream_xfer_t *x)
{
    if (!x->active)
        return;
    curl_multi_remove_handle(u->multi, x->easy);
    x->active = 0;
}

void upstream_resume(upstream_t *u, upstream_xfer_t *x)
{
    if (!x->active)
        return;
    u->in_callback++;
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
    u->in_callback--;
    /* Unpausing may have finished the transfer inside libcurl. */
    collect_done(u);
}

int upstream_in_callback(const upstream_t *u)
{
    return u->in_callback > 0;
}
