/*
 * server — HTTP side of switchyard-sim. See server.h.
 *
 * Lifetimes (evhttp 2.1.12):
 *  - Every connection carries a close callback from the moment it is accepted
 *    (that is how connections_closed counts them all). Between requests its
 *    argument is the server; while a /v1 request is in flight it is that
 *    request's state, and it goes back to the server when evhttp reports the
 *    response fully written (on_complete). So a close always finds live memory.
 *  - evhttp gives no hook with the connection at accept time, only the
 *    bufferevent factory (bevcb). The connection is found right after, through
 *    the bufferevent's callback argument, which evhttp sets to the connection.
 *    The bufferevent is held by a reference until then.
 *  - A client that leaves mid-response: evhttp detaches the request
 *    (evhttp_request_get_connection() == NULL) unless the reply was already
 *    complete on our side, then frees the connection, which runs the close
 *    callback: the detached request is ours to free, exactly there.
 *  - Before the headers evhttp does not read the socket, so a waiting request
 *    (latency, delay_ms, hang_before_headers) watches it for EOF itself.
 */
#include "server.h"

#include "api.h"
#include "fault.h"
#include "gen.h"
#include "h2.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#define LOG_CAP 50
#define FLUSH_POLL_MAX 2000      /* 1 ms polls before a reset goes ahead anyway */
#define LISTEN_BACKLOG 4096

/* One entry of the /_sim/requests log: a single allocation holding every string. */
typedef struct {
    char *blob;
    const char *method;
    const char *path;
    const char *query;   /* NULL when the URL had none */
    const char *headers; /* n_headers pairs "name\0value\0" */
    size_t n_headers;
    const char *body; /* NUL-terminated; body_len bytes before the NUL */
    size_t body_len;
} log_entry_t;

struct sim_server {
    sim_config_t cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    int port;
    int listener_paused;
    int shutting_down;
    char *name_json;   /* the name, quoted for JSON */
    char *models_body; /* GET /v1/models, formatted once */
    size_t models_len;
    struct evbuffer *scratch; /* staging for stream chunks; always left empty */

    /* accepted connections whose evhttp_connection is not known yet */
    struct event *accept_ev;
    struct bufferevent **pending;
    size_t n_pending, cap_pending;

    /* /_sim/stats */
    uint64_t requests;
    long active;
    uint64_t streams_started, streams_completed, client_aborts;
    long conns_open;
    uint64_t conns_accepted, conns_closed;
    int64_t last_abort_ms;

    log_entry_t log[LOG_CAP];
    size_t log_next, log_count;
    struct sim_h2 *h2; /* the h2c side, for its counts; may be NULL */
};

typedef enum {
    ST_WAIT,      /* timer until the headers */
    ST_HANG,      /* nothing more to send: wait for the client to leave */
    ST_STREAMING, /* headers sent, events pending */
    ST_FLUSH,     /* waiting for the socket to drain before the reset */
    ST_RESETTING, /* we are closing the connection ourselves */
    ST_DONE,      /* whole reply handed to evhttp */
} req_state_t;

typedef struct {
    sim_server_t *srv;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    struct event *watch;
    req_state_t state;
    int userdone;       /* evhttp_send_reply / _end called: evhttp frees req */
    int stream_started; /* counted in streams_started */
    sim_plan_t plan; /* status, stream or not, Retry-After, the stream's events */
    sim_fault_t fault;
    struct evbuffer *body; /* the whole body, or the whole stream */
    long next_event;
    size_t sent;
    int flush_polls;
} sim_req_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tv_ms(struct timeval *tv, long ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* ---- connection accounting ------------------------------------------------ */

static void conn_closed(sim_server_t *srv)
{
    srv->conns_closed++;
    srv->conns_open--;
    if (srv->listener_paused && srv->conns_open < srv->cfg.max_conns && !srv->shutting_down) {
        evconnlistener_enable(srv->listener);
        srv->listener_paused = 0;
    }
}

static void on_close_idle(struct evhttp_connection *evcon, void *arg)
{
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    conn_closed(arg);
}

/* Gives every connection accepted since the last call its close callback. */
static void accepts_flush(sim_server_t *srv)
{
    for (size_t i = 0; i < srv->n_pending; i++) {
        struct bufferevent *bev = srv->pending[i];
        void *evcon = NULL;
        bufferevent_getcb(bev, NULL, NULL, NULL, &evcon);
        /* evhttp clears the callbacks when it frees the connection. */
        if (evcon)
            evhttp_connection_set_closecb(evcon, on_close_idle, srv);
        else
            conn_closed(srv);
        bufferevent_decref(bev);
    }
    srv->n_pending = 0;
}

static void on_accepts(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    accepts_flush(arg);
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg)
{
    sim_server_t *srv = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    if (srv->n_pending == srv->cap_pending) {
        size_t cap = srv->cap_pending ? srv->cap_pending * 2 : 64;
        struct bufferevent **p = realloc(srv->pending, cap * sizeof(*p));
        if (!p)
            return bev; /* untracked, but served */
        srv->pending = p;
        srv->cap_pending = cap;
    }
    bufferevent_incref(bev);
    srv->pending[srv->n_pending++] = bev;
    /* Runs in this same loop pass, before the new socket can be read. */
    event_active(srv->accept_ev, EV_READ, 0);
    srv->conns_accepted++;
    srv->conns_open++;
    if (srv->cfg.max_conns > 0 && srv->conns_open >= srv->cfg.max_conns && !srv->listener_paused) {
        evconnlistener_disable(srv->listener);
        srv->listener_paused = 1;
    }
    return bev;
}

/* ---- request log ----------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    default:
        return "OTHER";
    }
}

static void log_entry_clear(log_entry_t *e)
{
    free(e->blob);
    memset(e, 0, sizeof(*e));
}

/*
 * Records a /v1 request and returns its entry, whose body is also the
 * NUL-terminated copy the JSON parser reads. NULL on allocation failure.
 */
static log_entry_t *log_append(sim_server_t *srv, struct evhttp_request *req, const char *path,
                               const char *query)
{
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(in);
    size_t plen = strlen(path) + 1, qlen = query ? strlen(query) + 1 : 0, hlen = 0, n = 0;
    struct evkeyval *h;
    log_entry_t *e;
    char *p;

    TAILQ_FOREACH(h, hdrs, next)
    {
        hlen += strlen(h->key) + strlen(h->value) + 2;
        n++;
    }
    p = malloc(plen + qlen + hlen + body_len + 1);
    if (!p)
        return NULL;
    e = &srv->log[srv->log_next];
    log_entry_clear(e);
    srv->log_next = (srv->log_next + 1) % LOG_CAP;
    if (srv->log_count < LOG_CAP)
        srv->log_count++;

    e->blob = p;
    e->method = method_name(evhttp_request_get_command(req));
    e->path = p;
    memcpy(p, path, plen);
    p += plen;
    if (query) {
        e->query = p;
        memcpy(p, query, qlen);
        p += qlen;
    }
    e->headers = p;
    e->n_headers = n;
    TAILQ_FOREACH(h, hdrs, next)
    {
        size_t kl = strlen(h->key) + 1, vl = strlen(h->value) + 1;
        memcpy(p, h->key, kl);
        memcpy(p + kl, h->value, vl);
        p += kl + vl;
    }
    e->body = p;
    e->body_len = body_len;
    evbuffer_copyout(in, p, body_len);
    p[body_len] = '\0';
    return e;
}

static void log_clear(sim_server_t *srv)
{
    for (size_t i = 0; i < LOG_CAP; i++)
        log_entry_clear(&srv->log[i]);
    srv->log_next = 0;
    srv->log_count = 0;
}

static char *log_json(const sim_server_t *srv)
{
    cJSON *arr = cJSON_CreateArray();
    char *out = NULL;
    size_t start = (srv->log_next + LOG_CAP - srv->log_count) % LOG_CAP;
    if (!arr)
        return NULL;
    for (size_t i = 0; i < srv->log_count; i++) {
        const log_entry_t *e = &srv->log[(start + i) % LOG_CAP];
        cJSON *o = cJSON_CreateObject(), *h;
        const char *p = e->headers;
        if (!o || !cJSON_AddItemToArray(arr, o))
            goto fail;
        if (!cJSON_AddStringToObject(o, "method", e->method) ||
            !cJSON_AddStringToObject(o, "path", e->path) ||
            !(e->query ? cJSON_AddStringToObject(o, "query", e->query)
                       : cJSON_AddNullToObject(o, "query")) ||
            !(h = cJSON_AddObjectToObject(o, "headers")))
            goto fail;
        for (size_t k = 0; k < e->n_headers; k++) {
            const char *key = p, *val = p + strlen(p) + 1;
            p = val + strlen(val) + 1;
            if (!cJSON_AddStringToObject(h, key, val))
                goto fail;
        }
        /* A body with a NUL in it shows up to the NUL; bodies here are JSON text. */
        if (!cJSON_AddStringToObject(o, "body", e->body))
            goto fail;
    }
    out = cJSON_PrintUnformatted(arr);
fail:
    cJSON_Delete(arr);
    return out;
}

/* ---- replies --------------------------------------------------------------- */

static void add_common_headers(sim_server_t *srv, struct evhttp_request *req, uint64_t n)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
    evhttp_add_header(out, "x-sim-provider", srv->cfg.name);
    evhttp_add_header(out, "x-sim-request-count", num);
}

/* evhttp's phrase table stops at 417 for 4xx; name the ones tests are likely to script. */
static const char *reason(int status)
{
    switch (status) {
    case 418:
        return "I'm a teapot";
    case 422:
        return "Unprocessable Entity";
    case 425:
        return "Too Early";
    case 429:
        return "Too Many Requests";
    case 451:
        return "Unavailable For Legal Reasons";
    default:
        return NULL;
    }
}

/* A complete JSON reply outside the /v1 lifecycle (/_sim, unknown paths). */
static void reply_json(struct evhttp_request *req, int status, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (b)
        evbuffer_add(b, body, len);
    evhttp_send_reply(req, status, NULL, b);
    if (b)
        evbuffer_free(b);
}

static void reply_error_now(struct evhttp_request *req, const sim_error_t *e)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (b)
        sim_api_error(b, e);
    evhttp_send_reply(req, e->status, reason(e->status), b);
    if (b)
        evbuffer_free(b);
}

/* ---- /v1 request lifecycle ------------------------------------------------- */

static void sreq_free(sim_req_t *s)
{
    if (s->timer)
        event_free(s->timer);
    if (s->watch)
        event_free(s->watch);
    if (s->body)
        evbuffer_free(s->body);
    free(s->plan.events);
    s->srv->active--;
    free(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_watch(evutil_socket_t fd, short what, void *arg);

static int timer_arm(sim_req_t *s, long ms)
{
    struct timeval tv;
    if (!s->timer && !(s->timer = evtimer_new(s->srv->base, on_timer, s)))
        return -1;
    tv_ms(&tv, ms);
    return evtimer_add(s->timer, &tv);
}

static evutil_socket_t sreq_fd(sim_req_t *s)
{
    return bufferevent_getfd(evhttp_connection_get_bufferevent(s->evcon));
}

/* Before the headers evhttp is not reading, so watch for the client leaving. */
static void watch_start(sim_req_t *s)
{
    if (!s->watch &&
        !(s->watch = event_new(s->srv->base, sreq_fd(s), EV_READ | EV_CLOSED, on_watch, s)))
        return;
    event_add(s->watch, NULL);
}

static void watch_stop(sim_req_t *s)
{
    if (s->watch)
        event_del(s->watch);
}

/*
 * Our own teardown of the connection (a reset fault, or a client found gone).
 * The close callback runs inside and frees s.
 */
static void sreq_close_connection(sim_req_t *s)
{
    evhttp_connection_free(s->evcon);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    sim_req_t *s = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 && !(what & EV_CLOSED))
        return; /* a pipelined request: no further detection until our reply is out */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
        !(what & EV_CLOSED)) {
        event_add(s->watch, NULL);
        return;
    }
    sreq_close_connection(s);
}

/* The TCP reset of reset_after_chunks: RST right away, not after a FIN (close_after_chunks:
 * the FIN, a clean close). */
static void sreq_reset(sim_req_t *s)
{
    evutil_socket_t fd = sreq_fd(s);
    struct linger lg = {1, 0};
    struct sockaddr sa;
    s->state = ST_RESETTING;
    if (fd >= 0 && !s->fault.close_clean) {
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        /*
         * evhttp shuts the socket down for writing before closing it, which
         * would send a FIN first and the client would see a clean EOF.
         * Disconnecting (connect AF_UNSPEC) sends the RST now; the later
         * shutdown and close then have nothing left to send.
         */
        memset(&sa, 0, sizeof(sa));
        sa.sa_family = AF_UNSPEC;
        connect(fd, &sa, sizeof(sa));
    }
    sreq_close_connection(s);
}

/* Resets once what was sent has left evhttp's buffer and been acknowledged by the peer. */
static void sreq_flush_check(sim_req_t *s)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    int outq = 0;
    if (pending == 0 && ioctl(bufferevent_getfd(bev), TIOCOUTQ, &outq) < 0)
        outq = 0;
    if ((pending == 0 && outq == 0) || ++s->flush_polls > FLUSH_POLL_MAX) {
        sreq_reset(s);
        return;
    }
    if (timer_arm(s, 1) < 0)
        sreq_reset(s);
}

static void sreq_begin_flush(sim_req_t *s)
{
    s->state = ST_FLUSH;
    s->flush_polls = 0;
    if (timer_arm(s, 1) < 0)
        sreq_reset(s);
}

/* Sends the events that are due; arms the timer for the next paced one. */
static void sreq_pump(sim_req_t *s, int due)
{
    sim_server_t *srv = s->srv;
    long limit = s->plan.n_events;
    int resetting = s->fault.reset_after >= 0;

    if (resetting && s->fault.reset_after < limit)
        limit = s->fault.reset_after;
    if (s->fault.end_after >= 0 && s->fault.end_after < limit)
        limit = s->fault.end_after; /* then the clean end below */
    int stalling = s->fault.stall_after >= 0 && s->fault.stall_after < limit;
    if (stalling)
        limit = s->fault.stall_after;
    while (s->next_event < limit) {
        int kind = s->plan.events[s->next_event].kind;
        long d = kind == SIM_EV_FIRST  ? srv->cfg.ttft_ms
                 : kind == SIM_EV_NEXT ? srv->cfg.chunk_ms
                                       : 0;
        size_t len;
        if (d > 0 && !due) {
            if (evbuffer_get_length(srv->scratch) > 0)
                evhttp_send_reply_chunk(s->req, srv->scratch);
            evbuffer_drain(srv->scratch, evbuffer_get_length(srv->scratch));
            s->state = ST_STREAMING;
            if (timer_arm(s, d) < 0)
                break; /* cannot pace: send the rest now */
            return;
        }
        due = 0;
        len = s->plan.events[s->next_event].end - s->sent;
        evbuffer_remove_buffer(s->body, srv->scratch, len);
        s->sent += len;
        s->next_event++;
    }
    /* Without a timer the rest goes in one piece. */
    while (s->next_event < limit) {
        size_t len = s->plan.events[s->next_event].end - s->sent;
        evbuffer_remove_buffer(s->body, srv->scratch, len);
        s->sent += len;
        s->next_event++;
    }
    if (evbuffer_get_length(srv->scratch) > 0)
        evhttp_send_reply_chunk(s->req, srv->scratch);
    evbuffer_drain(srv->scratch, evbuffer_get_length(srv->scratch));
    if (resetting) {
        sreq_begin_flush(s);
        return;
    }
    if (stalling) {
        s->state = ST_HANG; /* silence until the client gives up */
        return;
    }
    s->state = ST_DONE;
    s->userdone = 1;
    evhttp_send_reply_end(s->req);
}

/* Headers (and, unless a fault says otherwise, the body) go out now. */
static void sreq_start_reply(sim_req_t *s)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(s->req);
    char num[24];

    watch_stop(s);
    if (s->fault.garbage) {
        /* Not HTTP at all, then a clean close: the client sees a malformed reply. */
        static const char junk[] = "SIMULATED GARBAGE\r\n\r\n";
        evutil_socket_t fd = sreq_fd(s);
        if (fd >= 0 && send(fd, junk, sizeof(junk) - 1, MSG_NOSIGNAL) < 0)
            (void)0; /* the close below reports it either way */
        sreq_close_connection(s);
        return;
    }
    if (s->fault.hop_header) {
        evhttp_add_header(out, "Connection", "keep-alive, X-Hop");
        evhttp_add_header(out, "X-Hop", "for-the-next-hop-only");
    }
    if (s->plan.retry_after >= 0) {
        snprintf(num, sizeof(num), "%d", s->plan.retry_after);
        evhttp_add_header(out, "Retry-After", num);
    }
    if (s->plan.is_stream) {
        evhttp_add_header(out, "Content-Type", "text/event-stream");
        evhttp_add_header(out, "Cache-Control", "no-cache");
        evhttp_send_reply_start(s->req, 200, NULL);
        s->stream_started = 1;
        s->srv->streams_started++;
        if (s->fault.comment_first) {
            evbuffer_add(s->srv->scratch, ": keep-alive\n\n", 14);
            evhttp_send_reply_chunk(s->req, s->srv->scratch);
        }
        if (s->fault.hang_after) {
            s->state = ST_HANG;
            return;
        }
        sreq_pump(s, 0);
        return;
    }

    evhttp_add_header(out, "Content-Type", "application/json");
    if (s->fault.hang_after || s->fault.reset_after >= 0) {
        size_t len = evbuffer_get_length(s->body);
        /* The full length is announced, so the client knows the body was cut short. */
        snprintf(num, sizeof(num), "%zu", len);
        evhttp_add_header(out, "Content-Length", num);
        evhttp_send_reply_start(s->req, s->plan.status, reason(s->plan.status));
        if (s->fault.hang_after) {
            s->state = ST_HANG;
            return;
        }
        evbuffer_remove_buffer(s->body, s->srv->scratch, len / 2);
        if (evbuffer_get_length(s->srv->scratch) > 0)
            evhttp_send_reply_chunk(s->req, s->srv->scratch);
        evbuffer_drain(s->srv->scratch, evbuffer_get_length(s->srv->scratch));
        sreq_begin_flush(s);
        return;
    }
    if (s->fault.cut_json) {
        /* The first half with a Content-Length to match: a clean end, a broken document. */
        evbuffer_remove_buffer(s->body, s->srv->scratch, evbuffer_get_length(s->body) / 2);
        evbuffer_drain(s->body, evbuffer_get_length(s->body));
        evbuffer_add_buffer(s->body, s->srv->scratch);
    }
    s->state = ST_DONE;
    s->userdone = 1;
    evhttp_send_reply(s->req, s->plan.status, reason(s->plan.status), s->body);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sim_req_t *s = arg;
    (void)fd;
    (void)what;
    switch (s->state) {
    case ST_WAIT:
        sreq_start_reply(s);
        break;
    case ST_STREAMING:
        sreq_pump(s, 1);
        break;
    case ST_FLUSH:
        sreq_flush_check(s);
        break;
    default:
        break;
    }
}

/* evhttp wrote the whole response: the connection goes back to idle. */
static void on_complete(struct evhttp_request *req, void *arg)
{
    sim_req_t *s = arg;
    (void)req;
    evhttp_connection_set_closecb(s->evcon, on_close_idle, s->srv);
    if (s->stream_started)
        s->srv->streams_completed++;
    sreq_free(s);
}

/* The connection is going away with our request still on it. */
static void on_close_req(struct evhttp_connection *evcon, void *arg)
{
    sim_req_t *s = arg;
    sim_server_t *srv = s->srv;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    conn_closed(srv);
    if (s->state != ST_RESETTING && !srv->shutting_down) {
        srv->client_aborts++;
        srv->last_abort_ms = now_ms();
    }
    /* Detached by evhttp (client gone mid-reply): nobody else will free it. */
    if (!s->userdone && evhttp_request_get_connection(s->req) == NULL)
        evhttp_request_free(s->req);
    sreq_free(s);
}

static int auth_ok(const sim_server_t *srv, struct evhttp_request *req)
{
    const char *h;
    if (!srv->cfg.api_key)
        return 1;
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    return strcmp(h + 7, srv->cfg.api_key) == 0;
}

/*
 * Decides the answer: fills s->plan.status and s->body (or the stream), and the
 * faults. Returns 0, or -1 when nothing could be built (out of memory).
 */
static int sreq_plan(sim_req_t *s, uint64_t n, const char *path, const char *body)
{
    sim_server_t *srv = s->srv;
    struct evhttp_request *req = s->req;
    const char *fh = evhttp_find_header(evhttp_request_get_input_headers(req), "x-sim-fault");
    int is_post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    sim_error_t pre = {0};
    char why[480];

    s->body = evbuffer_new();
    if (!s->body)
        return -1;
    if (sim_fault_parse(fh, srv->cfg.name, &s->fault, why, sizeof(why)) < 0) {
        sim_error_set(&pre, 400, "invalid_request_error", NULL, "invalid_sim_fault", "%s", why);
    } else if (s->fault.echo_key) {
        const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
        sim_error_set(&pre, 401, "invalid_request_error", NULL, "invalid_api_key",
                      "Incorrect API key provided: %.200s", a ? a : "(none)");
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-echo-authorization",
                          a ? a : "(none)");
    } else if (!auth_ok(srv, req)) {
        sim_error_set(&pre, 401, "invalid_request_error", NULL, "invalid_api_key",
                      "Incorrect API key provided");
    }
    sim_request_t r = {.ep = sim_api_route(path, is_post),
                       .method = method_name(evhttp_request_get_command(req)),
                       .path = path,
                       .body = body,
                       .n = n,
                       .seed = srv->cfg.seed,
                       .pieces = srv->cfg.chunks,
                       .error_rate = srv->cfg.error_rate,
                       .error_status = srv->cfg.error_status,
                       .name = srv->cfg.name,
                       .name_json = srv->name_json,
                       .models_body = srv->models_body,
                       .models_len = srv->models_len,
                       .pre = &pre,
                       .fault_status = s->fault.status,
                       .fault_retry_after = s->fault.retry_after,
                       .no_usage = s->fault.no_usage,
                       .usage_on_last = s->fault.usage_on_last};
    return sim_api_plan(&r, s->body, &s->plan);
}

static void handle_v1(sim_server_t *srv, struct evhttp_request *req, const char *path,
                      const char *query)
{
    uint64_t n = ++srv->requests;
    log_entry_t *e = log_append(srv, req, path, query);
    sim_req_t *s;
    long delay;

    add_common_headers(srv, req, n);
    s = e ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        sim_error_t err;
        sim_error_set(&err, 500, "server_error", NULL, NULL, "switchyard-sim: out of memory");
        reply_error_now(req, &err);
        return;
    }
    s->srv = srv;
    s->req = req;
    s->evcon = evhttp_request_get_connection(req);
    srv->active++;
    evhttp_connection_set_closecb(s->evcon, on_close_req, s);
    evhttp_request_set_on_complete_cb(req, on_complete, s);
    {
        char id[40];
        snprintf(id, sizeof(id), "req-sim-%llu", (unsigned long long)n);
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-request-id", id);
    }

    if (sreq_plan(s, n, path, e->body) < 0) {
        sim_error_t err;
        sim_error_set(&err, 500, "server_error", NULL, NULL, "switchyard-sim: out of memory");
        s->plan.is_stream = 0;
        s->plan.status = 500;
        if (s->body)
            evbuffer_drain(s->body, evbuffer_get_length(s->body));
        if (!s->body || sim_api_error(s->body, &err) < 0) {
            /* Not even an error body: answer empty. */
            s->state = ST_DONE;
            s->userdone = 1;
            evhttp_send_reply(req, 500, NULL, NULL);
            return;
        }
    }

    delay = srv->cfg.latency_ms + s->fault.delay_ms;
    if (s->fault.hang_before) {
        s->state = ST_HANG;
        watch_start(s);
        return;
    }
    if (delay > 0) {
        s->state = ST_WAIT;
        if (timer_arm(s, delay) == 0) {
            watch_start(s);
            return;
        }
    }
    sreq_start_reply(s);
}

/* ---- /_sim ------------------------------------------------------------------ */

static void handle_sim(sim_server_t *srv, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    sim_error_t err;

    add_common_headers(srv, req, srv->requests);
    if (strcmp(path, "/_sim/stats") == 0 && cmd == EVHTTP_REQ_GET) {
        char buf[640];
        unsigned long long h2_streams = 0, h2_conns = 0;
        if (srv->h2)
            sim_h2_counts(srv->h2, &h2_streams, &h2_conns);
        int len = snprintf(
            buf, sizeof(buf),
            "{\"h2_streams\":%llu,\"h2_connections\":%llu,\"requests\":%llu,\"active\":%ld,\"streams_started\":%llu,"
            "\"streams_completed\":%llu,\"client_aborts\":%llu,"
            "\"connections_open\":%ld,\"connections_closed\":%llu,"
            "\"connections_accepted\":%llu,\"last_abort_ms\":%lld,"
            "\"now_ms\":%lld}",
            h2_streams, h2_conns, (unsigned long long)srv->requests, srv->active,
            (unsigned long long)srv->streams_started, (unsigned long long)srv->streams_completed,
            (unsigned long long)srv->client_aborts, srv->conns_open,
            (unsigned long long)srv->conns_closed, (unsigned long long)srv->conns_accepted,
            (long long)srv->last_abort_ms, (long long)now_ms());
        reply_json(req, 200, buf, (size_t)len);
        return;
    }
    if (strcmp(path, "/_sim/requests") == 0 && cmd == EVHTTP_REQ_GET) {
        char *json = log_json(srv);
        if (json) {
            reply_json(req, 200, json, strlen(json));
            free(json);
            return;
        }
        sim_error_set(&err, 500, "server_error", NULL, NULL, "switchyard-sim: out of memory");
        reply_error_now(req, &err);
        return;
    }
    if (strcmp(path, "/_sim/reset") == 0 && cmd == EVHTTP_REQ_POST) {
        /* Gauges (active, connections_open) describe the present and are kept. */
        srv->requests = 0;
        srv->streams_started = srv->streams_completed = srv->client_aborts = 0;
        srv->conns_accepted = srv->conns_closed = 0;
        srv->last_abort_ms = 0;
        log_clear(srv);
        reply_json(req, 200, "{\"ok\":true}", 11);
        return;
    }
    sim_error_set(&err, 404, "invalid_request_error", NULL, "unknown_url",
                  "Invalid URL (%s %.200s); /_sim has GET stats, GET requests, POST reset",
                  method_name(cmd), path);
    reply_error_now(req, &err);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    sim_server_t *srv = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;

    accepts_flush(srv);
    if (!path || !*path)
        path = "/";
    if (strncmp(path, "/_sim/", 6) == 0) {
        handle_sim(srv, req, path);
    } else if (strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0) {
        handle_v1(srv, req, path, query);
    } else {
        sim_error_t err;
        add_common_headers(srv, req, srv->requests);
        sim_error_set(&err, 404, "invalid_request_error", NULL, "unknown_url",
                      "Invalid URL (%s %.200s)", method_name(evhttp_request_get_command(req)),
                      path);
        reply_error_now(req, &err);
    }
}

/* ---- setup ------------------------------------------------------------------ */

struct evconnlistener *sim_listen(struct event_base *base, const char *host, int port,
                                  evconnlistener_cb cb, void *arg, char *err, size_t errlen)
{
    struct evutil_addrinfo hints, *ai = NULL;
    struct evconnlistener *l;
    char portstr[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = evutil_getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "cannot resolve --host %s: %s", host, evutil_gai_strerror(rc));
        return NULL;
    }
    l = evconnlistener_new_bind(base, cb, arg,
                                LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    if (!l)
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
    evutil_freeaddrinfo(ai);
    return l;
}

int sim_bound_port(struct evconnlistener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

sim_server_t *sim_server_new(struct event_base *base, const sim_config_t *cfg, char *err,
                             size_t errlen)
{
    sim_server_t *srv = calloc(1, sizeof(*srv));
    struct evbuffer *models = NULL;

    snprintf(err, errlen, "out of memory");
    if (!srv)
        return NULL;
    srv->cfg = *cfg;
    srv->base = base;
    srv->name_json = sim_json_quote_dup(cfg->name);
    srv->scratch = evbuffer_new();
    srv->accept_ev = event_new(base, -1, 0, on_accepts, srv);
    models = evbuffer_new();
    if (!srv->name_json || !srv->scratch || !srv->accept_ev || !models)
        goto fail;
    if (sim_api_models(models, srv->name_json) < 0)
        goto fail;
    srv->models_len = evbuffer_get_length(models);
    srv->models_body = malloc(srv->models_len);
    if (!srv->models_body)
        goto fail;
    evbuffer_remove(models, srv->models_body, srv->models_len);
    evbuffer_free(models);
    models = NULL;

    srv->http = evhttp_new(base);
    if (!srv->http)
        goto fail;
    /* Streams and hung faults may legitimately stay silent for a long time. */
    evhttp_set_timeout(srv->http, 3600);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_default_content_type(srv->http, NULL);
    evhttp_set_max_headers_size(srv->http, 64 * 1024);
    evhttp_set_max_body_size(srv->http, 64 * 1024 * 1024);
    evhttp_set_bevcb(srv->http, on_new_conn, srv);
    evhttp_set_gencb(srv->http, on_request, srv);

    srv->listener = sim_listen(base, cfg->host, cfg->port, NULL, NULL, err, errlen);
    if (!srv->listener)
        goto fail;
    if (!evhttp_bind_listener(srv->http, srv->listener)) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
        snprintf(err, errlen, "cannot attach the listener to evhttp");
        goto fail;
    }
    srv->port = sim_bound_port(srv->listener);
    return srv;
fail:
    if (models)
        evbuffer_free(models);
    sim_server_free(srv);
    return NULL;
}

void sim_server_set_h2(sim_server_t *s, struct sim_h2 *h2)
{
    s->h2 = h2;
}

int sim_server_port(const sim_server_t *s)
{
    return s->port;
}

void sim_server_free(sim_server_t *srv)
{
    if (!srv)
        return;
    srv->shutting_down = 1;
    accepts_flush(srv);
    /* Frees the listener and every connection; their close callbacks free our requests. */
    if (srv->http)
        evhttp_free(srv->http);
    if (srv->accept_ev)
        event_free(srv->accept_ev);
    if (srv->scratch)
        evbuffer_free(srv->scratch);
    log_clear(srv);
    free(srv->pending);
    free(srv->name_json);
    free(srv->models_body);
    free(srv);
}
