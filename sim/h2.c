/*
 * h2 — switchyard-sim over HTTP/2 on TLS. See h2.h.
 *
 * Lifetimes: a connection owns its nghttp2 session and its streams (a list, since
 * nghttp2_session_del runs no close callback). A stream is freed by nghttp2's
 * stream-close callback or with its connection, whichever comes first; its timer
 * goes with it. nghttp2 is only driven from our libevent callbacks (read, timer):
 * its own callbacks queue work (nghttp2_submit_*) and never send.
 */
#include "h2.h"

#include "api.h"
#include "gen.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define MAX_BODY (8 * 1024 * 1024)  /* a request body above this is answered 413 */

typedef struct h2_conn h2_conn_t;

typedef enum { S_READING, S_WAITING, S_SENDING } stream_state_t;

typedef struct h2_stream {
    h2_conn_t *c;
    LIST_ENTRY(h2_stream) link;
    int32_t id;
    stream_state_t state;
    char path[256];
    int is_post;
    int auth_ok;
    int has_fault;
    int cut_json; /* x-sim-fault: cut_json, the one fault served here */
    int too_big;
    struct evbuffer *req_body;
    struct evbuffer *body; /* the answer not yet released to nghttp2 */
    struct evbuffer *out;  /* released: nghttp2 reads it as DATA */
    long next_event;
    size_t released; /* bytes of the answer moved to out */
    int eof;         /* the whole answer is in out */
    sim_plan_t plan; /* status, stream or not, Retry-After, the stream's events */
    uint64_t n;
    struct event *timer;
} h2_stream_t;

struct h2_conn {
    sim_h2_t *h;
    LIST_ENTRY(h2_conn) link;
    struct bufferevent *bev;
    nghttp2_session *ng;
    LIST_HEAD(, h2_stream) streams;
};

struct sim_h2 {
    const sim_config_t *cfg;
    struct event_base *base;
    SSL_CTX *tls;
    struct evconnlistener *listener;
    int port;
    char *name_json;
    LIST_HEAD(, h2_conn) conns;
    unsigned long long requests, conns_accepted;
};

/* ---- streams ------------------------------------------------------------------ */

static void stream_free(h2_stream_t *s)
{
    LIST_REMOVE(s, link);
    if (s->timer)
        event_free(s->timer);
    if (s->req_body)
        evbuffer_free(s->req_body);
    if (s->body)
        evbuffer_free(s->body);
    if (s->out)
        evbuffer_free(s->out);
    free(s->plan.events);
    free(s);
}

static h2_stream_t *stream_new(h2_conn_t *c, int32_t id)
{
    h2_stream_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c = c;
    s->id = id;
    LIST_INSERT_HEAD(&c->streams, s, link);
    s->req_body = evbuffer_new();
    s->body = evbuffer_new();
    s->out = evbuffer_new();
    if (!s->req_body || !s->body || !s->out) {
        stream_free(s);
        return NULL;
    }
    return s;
}

/* nghttp2 pulls DATA from here; DEFERRED until the next event is released. */
static ssize_t read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    h2_stream_t *s = src->ptr;
    int n = evbuffer_remove(s->out, buf, len);
    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    /* --h2-end-frame: the end goes out on a frame of its own, after the data. */
    if (evbuffer_get_length(s->out) == 0 && s->eof && (n == 0 || !s->c->h->cfg->h2_end_frame))
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return n;
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg);

/* Releases events to nghttp2 until one must wait (ttft, chunk interval). due: the
 * timer for the next event has fired. Returns 0, or -1 when pacing failed. */
static int stream_pump(h2_stream_t *s, int due)
{
    const sim_config_t *cfg = s->c->h->cfg;
    while (s->next_event < s->plan.n_events) {
        int kind = s->plan.events[s->next_event].kind;
        long d = kind == SIM_EV_FIRST ? cfg->ttft_ms : kind == SIM_EV_NEXT ? cfg->chunk_ms : 0;
        if (d > 0 && !due) {
            struct timeval tv = {d / 1000, (d % 1000) * 1000};
            if (!s->timer && !(s->timer = evtimer_new(s->c->h->base, on_stream_timer, s)))
                break; /* cannot pace: the rest goes now */
            if (evtimer_add(s->timer, &tv) < 0)
                break;
            return 0;
        }
        due = 0;
        size_t len = s->plan.events[s->next_event].end - s->released;
        evbuffer_remove_buffer(s->body, s->out, len);
        s->released += len;
        s->next_event++;
    }
    evbuffer_add_buffer(s->out, s->body);
    s->eof = 1;
    return 0;
}

static int submit_headers(h2_stream_t *s)
{
    sim_h2_t *h = s->c->h;
    char status[8], count[24], id[40], length[24], retry[16];
    nghttp2_nv nv[8];
    size_t n = 0;
#define NV(k, v)                                                                               \
    nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, strlen(v),           \
                           NGHTTP2_NV_FLAG_NO_COPY_NAME}
    snprintf(status, sizeof(status), "%d", s->plan.status);
    snprintf(count, sizeof(count), "%llu", (unsigned long long)s->n);
    snprintf(id, sizeof(id), "req-sim-%llu", (unsigned long long)s->n);
    NV(":status", status);
    NV("x-sim-provider", h->cfg->name);
    NV("x-sim-request-count", count);
    NV("x-request-id", id);
    if (s->plan.is_stream) {
        NV("content-type", "text/event-stream");
        NV("cache-control", "no-cache");
    } else {
        snprintf(length, sizeof(length), "%zu", evbuffer_get_length(s->body));
        NV("content-type", "application/json");
        NV("content-length", length);
    }
    if (s->plan.retry_after >= 0) {
        snprintf(retry, sizeof(retry), "%d", s->plan.retry_after);
        NV("retry-after", retry);
    }
#undef NV
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_data};
    s->state = S_SENDING;
    return nghttp2_submit_response(s->c->ng, s->id, nv, n, &dp) == 0 ? 0 : -1;
}

/* After submit_headers (which measured the body): the body at once, or the stream paced. */
static int stream_start_reply(h2_stream_t *s)
{
    if (!s->plan.is_stream) {
        evbuffer_add_buffer(s->out, s->body);
        s->eof = 1;
        return 0;
    }
    return stream_pump(s, 0);
}

static int plan_answer(h2_stream_t *s)
{
    sim_h2_t *h = s->c->h;
    const sim_config_t *cfg = h->cfg;
    sim_error_t pre = {0};
    s->n = ++h->requests;
    if (s->has_fault)
        sim_error_set(&pre, 400, "invalid_request_error", NULL, "invalid_sim_fault",
                      "x-sim-fault is served over HTTP/1.1 only, not on the HTTP/2 port "
                      "(but for cut_json)");
    else if (!s->auth_ok)
        sim_error_set(&pre, 401, "invalid_request_error", NULL, "invalid_api_key",
                      "Incorrect API key provided");
    else if (s->too_big)
        sim_error_set(&pre, 413, "invalid_request_error", NULL, "request_too_large",
                      "Request body above %d bytes", MAX_BODY);
    if (evbuffer_add(s->req_body, "", 1) < 0)
        return -1;
    const char *body = (const char *)evbuffer_pullup(s->req_body, -1);
    if (!body)
        return -1;
    sim_request_t r = {.ep = sim_api_route(s->path, s->is_post),
                       .method = s->is_post ? "POST" : "GET",
                       .path = s->path,
                       .body = body,
                       .n = s->n,
                       .seed = cfg->seed,
                       .pieces = cfg->chunks,
                       .error_rate = cfg->error_rate,
                       .error_status = cfg->error_status,
                       .name = cfg->name,
                       .name_json = h->name_json,
                       .pre = &pre,
                       .fault_retry_after = -1};
    if (sim_api_plan(&r, s->body, &s->plan) < 0)
        return -1;
    if (s->cut_json && !s->plan.is_stream) {
        /* The first half, with a content-length to match (see the HTTP/1.1 side). */
        struct evbuffer *half = evbuffer_new();
        if (!half || evbuffer_remove_buffer(s->body, half, evbuffer_get_length(s->body) / 2) < 0) {
            evbuffer_free(half);
            return -1;
        }
        evbuffer_drain(s->body, evbuffer_get_length(s->body));
        evbuffer_add_buffer(s->body, half);
        evbuffer_free(half);
    }
    return 0;
}

/* The request is complete (END_STREAM): decide, then answer now or after --latency-ms.
 * Runs inside nghttp2_session_mem_recv: only submits. */
static void stream_request_done(h2_stream_t *s)
{
    const sim_config_t *cfg = s->c->h->cfg;
    if (plan_answer(s) < 0) {
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (cfg->latency_ms > 0) {
        struct timeval tv = {cfg->latency_ms / 1000, (cfg->latency_ms % 1000) * 1000};
        s->timer = evtimer_new(s->c->h->base, on_stream_timer, s);
        if (s->timer && evtimer_add(s->timer, &tv) == 0) {
            s->state = S_WAITING;
            return;
        }
    }
    if (submit_headers(s) < 0 || stream_start_reply(s) < 0)
        nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

/* ---- connections --------------------------------------------------------------- */

static void conn_free(h2_conn_t *c)
{
    LIST_REMOVE(c, link);
    if (c->ng)
        nghttp2_session_del(c->ng);
    while (!LIST_EMPTY(&c->streams))
        stream_free(LIST_FIRST(&c->streams));
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

/* Hands nghttp2's pending frames to the socket; closes a finished connection.
 * Returns -1 when c was freed. */
static int conn_flush(h2_conn_t *c)
{
    if (nghttp2_session_send(c->ng) != 0) {
        conn_free(c);
        return -1;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return -1;
    }
    return 0;
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h2_stream_t *s = arg;
    h2_conn_t *c = s->c;
    int ok;
    if (s->state == S_WAITING)
        ok = submit_headers(s) == 0 && stream_start_reply(s) == 0;
    else {
        /* INVALID_ARGUMENT: the data was not deferred but is waiting for flow control;
         * nghttp2 sends it when the window opens. */
        int rv = stream_pump(s, 1) == 0 ? nghttp2_session_resume_data(c->ng, s->id) : -1;
        ok = rv == 0 || rv == NGHTTP2_ERR_INVALID_ARGUMENT;
    }
    if (!ok)
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    conn_flush(c);
}

static ssize_t ng_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ng;
    (void)flags;
    h2_conn_t *c = user;
    if (bufferevent_write(c->bev, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int ng_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    h2_conn_t *c = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream_t *s = stream_new(c, frame->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->auth_ok = c->h->cfg->api_key == NULL;
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s);
    return 0;
}

static int ng_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!s)
        return 0;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        /* An over-long path is cut: it routes nowhere and gets its 404. */
        size_t n = valuelen < sizeof(s->path) - 1 ? valuelen : sizeof(s->path) - 1;
        memcpy(s->path, value, n);
        s->path[n] = '\0';
        char *q = strchr(s->path, '?');
        if (q)
            *q = '\0';
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        s->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (namelen == 13 && memcmp(name, "authorization", 13) == 0) {
        const char *key = s->c->h->cfg->api_key;
        size_t kl = key ? strlen(key) : 0;
        s->auth_ok = !key || (valuelen == 7 + kl &&
                              strncasecmp((const char *)value, "Bearer ", 7) == 0 &&
                              memcmp(value + 7, key, kl) == 0);
    } else if (namelen == 11 && memcmp(name, "x-sim-fault", 11) == 0) {
        s->cut_json = valuelen == 8 && memcmp(value, "cut_json", 8) == 0;
        s->has_fault = valuelen > 0 && !s->cut_json;
    }
    return 0;
}

static int ng_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s || s->too_big)
        return 0;
    if (evbuffer_get_length(s->req_body) + len > MAX_BODY) {
        s->too_big = 1;
        evbuffer_drain(s->req_body, evbuffer_get_length(s->req_body));
        return 0;
    }
    return evbuffer_add(s->req_body, data, len) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int ng_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    (void)user;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (s && s->state == S_READING)
        stream_request_done(s);
    return 0;
}

static int ng_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code;
    (void)user;
    h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s) {
        nghttp2_session_set_stream_user_data(ng, id, NULL);
        stream_free(s);
    }
    return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    h2_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    unsigned char *data = evbuffer_pullup(in, -1);
    ssize_t used = data ? nghttp2_session_mem_recv(c->ng, data, len) : -1;
    if (used < 0) {
        conn_free(c);
        return;
    }
    evbuffer_drain(in, (size_t)used);
    conn_flush(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    sim_h2_t *h = arg;
    h2_conn_t *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cb = NULL;
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->h = h;
    LIST_INIT(&c->streams);
    LIST_INSERT_HEAD(&h->conns, c, link);
    h->conns_accepted++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL *ssl = SSL_new(h->tls);
    c->bev = ssl ? bufferevent_openssl_socket_new(h->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : NULL;
    if (!c->bev) {
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        conn_free(c);
        return;
    }
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        conn_free(c);
        return;
    }
    nghttp2_session_callbacks_set_send_callback(cb, ng_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, ng_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, ng_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, ng_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, ng_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, ng_stream_close);
    int rc = nghttp2_session_server_new(&c->ng, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        c->ng = NULL;
        conn_free(c);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)c->h->cfg->h2_max_streams}};
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 1) != 0) {
        conn_free(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_flush(c);
}

/* ---- setup ------------------------------------------------------------------------ */

/* ALPN: h2 or nothing. A client that cannot speak HTTP/2 fails the handshake with a
 * clear alert instead of talking HTTP/1.1 to an HTTP/2 server. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *tls_context(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[160];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        snprintf(err, errlen, "cannot load --tls-cert %s / --tls-key %s: %s", cert, key, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    return ctx;
}

sim_h2_t *sim_h2_new(struct event_base *base, const sim_config_t *cfg, int port,
                     const char *cert, const char *key, char *err, size_t errlen)
{
    sim_h2_t *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = cfg;
    h->base = base;
    h->name_json = sim_json_quote_dup(cfg->name);
    if (!h->name_json) {
        snprintf(err, errlen, "out of memory");
        sim_h2_free(h);
        return NULL;
    }
    if (!(h->tls = tls_context(cert, key, err, errlen))) {
        sim_h2_free(h);
        return NULL;
    }
    h->listener = sim_listen(base, cfg->host, port, on_accept, h, err, errlen);
    if (!h->listener) {
        sim_h2_free(h);
        return NULL;
    }
    h->port = sim_bound_port(h->listener);
    return h;
}

int sim_h2_port(const sim_h2_t *h)
{
    return h->port;
}

void sim_h2_counts(const sim_h2_t *h, unsigned long long *streams, unsigned long long *conns)
{
    *streams = h->requests;
    *conns = h->conns_accepted;
}

void sim_h2_free(sim_h2_t *h)
{
    if (!h)
        return;
    if (h->listener)
        evconnlistener_free(h->listener);
    while (!LIST_EMPTY(&h->conns))
        conn_free(LIST_FIRST(&h->conns));
    if (h->tls)
        SSL_CTX_free(h->tls);
    free(h->name_json);
    free(h);
}
