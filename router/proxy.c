/*
 * proxy — request lifecycle on the main listener. See proxy.h.
 *
 * Order of events for one request:
 *   proxy_handle        validate, parse the body once, decide the variant
 *   start_attempt       easy handle + headers + timeouts, into the worker's CURLM
 *   on_header           upstream status and headers (nothing sent to the client yet)
 *   on_write            body bytes: buffered whole (non-stream, errors) or, for a
 *                       2xx event stream, held until the first complete SSE event,
 *                       then committed and forwarded event by event
 *   attempt_finished    reply / end the stream / error, then maybe_free
 * The client may leave at any point (on_client_close, on_fd_closed); the attempt
 * is cancelled and the request freed once both sides are done.
 */
#include "proxy.h"

#include <errno.h>
#include <sys/socket.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#include <cjson/cJSON.h>

#include "body.h"
#include "chunk.h"
#include "clientauth.h"
#include "failure.h"
#include "flags.h"
#include "fmt.h"
#include "headguard.h"
#include "httputil.h"
#include "log.h"
#include "pricing.h"
#include "sse.h"
#include "usage.h"
#include "ws.h"
#include "upstream.h"

#define ROUTING_FLAG "use_new_provider"
/* Pause the upstream when this much is waiting for a slow client. */
#define CLIENT_HIGH_WATER (256 * 1024)
/* On a multiplexed (HTTP/2) upstream connection a transfer is never paused: libcurl
 * 7.88 stops reading the whole connection for one paused stream, so one client that
 * stops reading would stall every stream sharing it. Such a client's bytes are held
 * instead, up to this much, while its stall clock runs. */
#define CLIENT_HOLD_MAX (2 * CLIENT_HIGH_WATER)
/* A non-streaming upstream body is read whole before the commit; bound it. */
#define RESPONSE_MAX (64 * 1024 * 1024)
/* Bytes an event stream may send before its first complete event. */
#define PRECOMMIT_MAX (1024 * 1024)
/* An event larger than this is forwarded raw rather than held whole. */
#define EVENT_MAX (1024 * 1024)

typedef enum { ROUTE_JSON, ROUTE_MODELS, ROUTE_OTHER } route_t;
typedef enum { MODE_NONE, MODE_BUFFER, MODE_STREAM } mode_t_;

#define MAX_ATTEMPTS 10

typedef enum { TIMER_ATTEMPT, TIMER_BACKOFF, TIMER_CANCEL, TIMER_END } timer_mode_t;
/* An answer complete by its content whose end libcurl may be holding (on_stuck) gets
 * this long for the end to arrive by itself before it is ended here. */
#define END_GRACE_MS 20

/* Who asked: an HTTP client (the provider's answer passes through), a WebSocket chat
 * or a browser EventSource (both get switchyard's own messages with the text). */
typedef enum { CLIENT_HTTP = 0, CLIENT_WS, CLIENT_SSE } client_kind_t;

/* Packed to 16 bytes: ten of them are in every request's state. */
typedef struct {
    double ms;
    int32_t status; /* HTTP status, 0 when none came */
    int8_t role;
    uint8_t cls; /* fail_class_t, FAIL_NONE on success */
} attempt_rec_t;

struct proxy_req {
    proxy_req_t *prev, *next; /* worker's live list */
    worker_t *w;
    client_kind_t kind;
    ws_conn_t *ws;                 /* CLIENT_WS: the connection, NULL once it is done */
    char *chat_id;                 /* CLIENT_WS: the chat's id (at most 127 bytes) */
    struct evkeyvalq *in;          /* the client's request headers */
    const config_client_t *client; /* the authenticated client key, if any */
    const char *origin;            /* an allowed Origin (CORS), or NULL */
    struct event *hb_timer;        /* CLIENT_SSE: heartbeats */
    char finish_reason[32];
    config_t *cfg;
    struct evhttp_request *req; /* NULL once evhttp owns it again */
    struct evhttp_connection *evcon;
    struct event *close_watch;
    char request_id[72];

    /* request */
    enum evhttp_cmd_type method;
    route_t route;
    char *path_query; /* the part after "/v1", with "?query" */
    char *log_path;   /* the request path for the access log (no query) */
    char *body;
    size_t body_len;
    size_t model_off, model_len;
    char *model;
    flag_result_t decision;
    const char *sticky_source;

    /* the attempt */
    int role;
    upstream_xfer_t xfer;
    struct curl_slist *up_hdrs;
    char *up_body; /* rewritten body, or NULL to send `body` */
    size_t send_len; /* bytes of body this attempt sends */
    struct event *timer;
    struct timespec t_start, t_attempt, t_last;
    struct timespec t_wall; /* CLOCK_REALTIME at the start, for the log's ts */
    long status;
    struct evkeyvalq up_headers;
    mode_t_ mode;
    struct evbuffer *buf; /* buffered body, or stream bytes not yet forwarded */
    sse_scanner_t sse;
    unsigned paused : 1;      /* the client stopped reading: its stall clock runs */
    unsigned held : 1;        /* ... and the transfer goes on (multiplexed), not paused */
    unsigned hold_full : 1;   /* held CLIENT_HOLD_MAX bytes: drop the client now */
    unsigned saw_end : 1;     /* the stream's last event ([DONE], response.completed) */
    unsigned sse_started : 1;
    unsigned own_req : 1; /* evhttp detached req after the client left: we free it */
    unsigned client_gone : 1; /* the client connection is closed */
    unsigned client_done : 1; /* the reply is complete or abandoned */
    unsigned stream_req : 1;
    unsigned headers_done : 1;
    unsigned committed : 1;
    unsigned attempt_is_probe : 1; /* this attempt holds its provider's probe slot */
    unsigned switched : 1; /* moved to the other provider */
    unsigned budget_exhausted : 1;
    unsigned inject_usage : 1; /* switchyard asked for usage: strip it from the client's stream */
    unsigned accounted : 1;
    unsigned truncated : 1;
    unsigned first_byte_seen : 1;
    unsigned legacy_text : 1; /* /v1/completions: stream text is in "text", not "content" */
    long long paused_at_ms;
    fail_class_t fail;
    uint32_t client_sent; /* bytes handed to the client's connection, mod 2^32 */
    uint16_t decided_bp;  /* the routing flag's percentage when the request was routed */
    uint32_t stall_mark;  /* what the client had read when the stall clock last started */
    char fail_detail[96]; /* a short reason; longer ones are cut */
    timer_mode_t timer_mode;
    long retry_after_ms;  /* from the last upstream response, -1 when absent */

    /* all attempts */
    attempt_rec_t attempts[MAX_ATTEMPTS];
    int n_attempts;
    int first_role;
    int tries_on_role;
    const char *fallback_why; /* class name that moved it, or "ejected" */
    int fallback_class;       /* fail_class_t that moved it, FAIL_N_CLASSES for ejected */
    int fallback_from;        /* role it moved from, -1 when it did not */

    /* accounting */
    usage_t usage;
    long content_events;   /* stream events carrying content (estimate without usage) */
    body_edit_t usage_edit;
    int client_status;     /* status sent to the client, 0 = none */
    struct timespec t_first_byte, t_upstream_done;
    double pre_ms;         /* received to the first attempt's start */
    double wasted[CONFIG_N_ROLES];
};

/* One request's state is live for as long as its stream: 10,000 streams hold 10,000 of
 * these. mimalloc serves 1,024 bytes from its 1 KiB class and 1,025 to 1,280 from the
 * next, so the flags are bits and crossing the line costs 256 bytes a request. */
_Static_assert(sizeof(struct proxy_req) <= 1024, "proxy_req_t grew past 1 KiB");

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---- freeing --------------------------------------------------------------------- */

static void release_attempt(proxy_req_t *p)
{
    if (p->xfer.easy) {
        upstream_cancel(p->w->up, &p->xfer);
        upstream_easy_put(p->w->up, p->xfer.easy);
        p->xfer.easy = NULL;
    }
    curl_slist_free_all(p->up_hdrs);
    p->up_hdrs = NULL;
    free(p->up_body);
    p->up_body = NULL;
    if (p->timer)
        evtimer_del(p->timer);
}

static void stop_close_watch(proxy_req_t *p)
{
    if (p->close_watch) {
        event_free(p->close_watch);
        p->close_watch = NULL;
    }
}

static void account(proxy_req_t *p);

static void maybe_free(proxy_req_t *p)
{
    if (!p->client_done || p->xfer.active)
        return;
    worker_t *w = p->w;
    account(p);
    release_attempt(p);
    stop_close_watch(p);
    if (p->attempt_is_probe) /* the client left before the probe could say anything */
        health_release_probe(&w->srv->health[p->role]);
    if (p->own_req && p->req)
        evhttp_request_free(p->req);
    if (p->prev)
        p->prev->next = p->next;
    else
        w->live = p->next;
    if (p->next)
        p->next->prev = p->prev;
    w->n_live--;
    if (p->timer)
        event_free(p->timer);
    if (p->hb_timer)
        event_free(p->hb_timer);
    if (p->kind == CLIENT_WS && p->ws)
        ws_chat_finished(p->ws, p);
    evhttp_clear_headers(&p->up_headers);
    if (p->buf)
        evbuffer_free(p->buf);
    free(p->path_query);
    free(p->log_path);
    free(p->body);
    free(p->model);
    free(p->chat_id);
    config_unref(p->cfg);
    free(p);
    worker_request_ended(w);
}

/* ---- CORS and switchyard's own client messages ------------------------------------ */

static const char *allowed_origin(const config_t *cfg, struct evkeyvalq *in)
{
    const char *o = in ? http_header(in, "Origin") : NULL;
    if (!o)
        return NULL;
    for (size_t i = 0; i < cfg->cors.n_allow_origins; i++)
        if (strcmp(cfg->cors.allow_origins[i], o) == 0)
            return o;
    return NULL;
}

/* CORS response headers for an allowed origin; nothing at all for any other. */
static void add_cors(struct evkeyvalq *out, const config_t *cfg, const char *origin)
{
    if (cfg->cors.n_allow_origins == 0)
        return;
    evhttp_add_header(out, "Vary", "Origin");
    if (!origin)
        return;
    evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
    if (cfg->cors.allow_credentials)
        evhttp_add_header(out, "Access-Control-Allow-Credentials", "true");
    evhttp_add_header(out, "Access-Control-Expose-Headers",
                      "x-switchyard-request-id, x-switchyard-provider, x-switchyard-variant, "
                      "x-switchyard-attempts, x-switchyard-fallback");
}

static void ws_msg(proxy_req_t *p, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (s && p->ws)
        ws_send_text(p->ws, s, strlen(s));
    free(s);
    cJSON_Delete(o);
}

static void on_client_drained(struct evhttp_connection *evcon, void *arg);

/* Hands the worker's scratch buffer to the client as one chunk. evhttp moves it all,
 * except when the connection is already gone: drained either way, so nothing staged
 * for one client can reach another. */
static void send_chunk(proxy_req_t *p, void (*drained)(struct evhttp_connection *, void *))
{
    struct evbuffer *out = p->w->scratch;
    p->client_sent += (uint32_t)evbuffer_get_length(out);
    if (drained)
        evhttp_send_reply_chunk_with_cb(p->req, out, drained, p);
    else
        evhttp_send_reply_chunk(p->req, out);
    evbuffer_drain(out, evbuffer_get_length(out));
}

static void sse_event(proxy_req_t *p, const char *event, const char *data)
{
    if (p->client_done || !p->req)
        return;
    evbuffer_add_printf(p->w->scratch, "event: %s\ndata: %s\n\n", event, data);
    send_chunk(p, on_client_drained);
}

/* One piece of the answer's text. */
static void client_text(proxy_req_t *p, const char *text)
{
    cJSON *o = cJSON_CreateObject();
    if (p->kind == CLIENT_SSE) {
        cJSON_AddStringToObject(o, "content", text);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (s)
            sse_event(p, "message", s);
        free(s);
        return;
    }
    cJSON_AddStringToObject(o, "type", "stream");
    cJSON_AddStringToObject(o, "id", p->chat_id);
    cJSON_AddStringToObject(o, "content", text);
    cJSON_AddStringToObject(o, "provider", p->cfg->providers[p->role].name);
    ws_msg(p, o);
}

/* The end of a successful answer. */
static void client_complete(proxy_req_t *p)
{
    if (p->kind == CLIENT_SSE) {
        sse_event(p, "done", "{}");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "complete");
    cJSON_AddStringToObject(o, "id", p->chat_id);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)p->usage.prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)p->usage.completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(p->usage.prompt + p->usage.completion));
    cJSON_AddStringToObject(o, "provider", p->cfg->providers[p->role].name);
    if (p->finish_reason[0])
        cJSON_AddStringToObject(o, "finish_reason", p->finish_reason);
    else
        cJSON_AddNullToObject(o, "finish_reason");
    ws_msg(p, o);
}

/* An error after switchyard's own message stream started (or any WS error). */
static void client_error_msg(proxy_req_t *p, const char *type, const char *code,
                             const char *message)
{
    char *body = http_error_body(type, code, message);
    if (p->kind == CLIENT_SSE) {
        if (body)
            sse_event(p, "error", body);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddStringToObject(o, "id", p->chat_id);
        cJSON *err = body ? cJSON_Parse(body) : NULL;
        cJSON *inner = err ? cJSON_DetachItemFromObject(err, "error") : NULL;
        cJSON_AddItemToObject(o, "error", inner ? inner : cJSON_CreateNull());
        cJSON_Delete(err);
        ws_msg(p, o);
    }
    free(body);
}

static struct evhttp_request *take_req(proxy_req_t *p);

/* Hands the end of the answer over (HTTP, SSE) or closes the chat (WS). */
static void end_client(proxy_req_t *p)
{
    struct evhttp_request *req = take_req(p);
    if (!req)
        return;
    if (p->evcon) {
        /* A stream lifted the connection's timeout to its own length; the connection
         * goes back to client_timeout_ms: as a keep-alive connection, and for a client
         * that still has not read the end of its stream. */
        long ms = p->cfg->limits.client_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evhttp_connection_set_timeout_tv(p->evcon, &tv);
    }
    evhttp_send_reply_end(req);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sse_event(arg, "heartbeat", "{}");
}

/* A browser stream starts at once, so heartbeats can flow while the answer is awaited;
 * what the providers do (fallback included) stays behind it. */
static void sse_start(proxy_req_t *p)
{
    if (p->sse_started)
        return;
    struct evkeyvalq *out = evhttp_request_get_output_headers(p->req);
    evhttp_add_header(out, "Content-Type", "text/event-stream");
    evhttp_add_header(out, "Cache-Control", "no-cache");
    evhttp_add_header(out, "X-Accel-Buffering", "no");
    evhttp_add_header(out, "x-switchyard-request-id", p->request_id);
    add_cors(out, p->cfg, p->origin);
    http_reply_start_stream(p->req, 200, "OK");
    p->sse_started = 1;
    stop_close_watch(p);
    evhttp_connection_set_timeout(p->evcon, 3600);
    long ms = p->cfg->realtime.heartbeat_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    p->hb_timer = event_new(p->w->base, -1, EV_PERSIST, on_heartbeat, p);
    if (p->hb_timer)
        event_add(p->hb_timer, &tv);
}

/* The reply is about to be handed over: evhttp owns req from here on. */
static void mark_first_byte(proxy_req_t *p, int status)
{
    if (!p->first_byte_seen) {
        p->first_byte_seen = 1;
        clock_gettime(CLOCK_MONOTONIC, &p->t_first_byte);
    }
    p->client_status = status;
}

static struct evhttp_request *take_req(proxy_req_t *p)
{
    struct evhttp_request *req = p->req;
    if (p->kind == CLIENT_WS) {
        p->client_done = 1;
        if (p->ws)
            ws_chat_finished(p->ws, p);
        p->ws = NULL;
        return NULL;
    }
    if (p->hb_timer)
        evtimer_del(p->hb_timer);
    evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    stop_close_watch(p);
    p->client_done = 1;
    p->req = NULL;
    if (req && p->w->draining && evhttp_request_get_connection(req))
        worker_track_write(p->w, req, p->evcon);
    return req;
}

/* ---- replies --------------------------------------------------------------------- */

/* in_flight: the serving attempt is not recorded yet (a stream commits mid-attempt). */
static void add_switchyard_headers(proxy_req_t *p, struct evkeyvalq *out, int with_provider,
                                   int in_flight)
{
    evhttp_add_header(out, "x-switchyard-request-id", p->request_id);
    add_cors(out, p->cfg, p->origin);
    if (!with_provider)
        return;
    /* Up to MAX_ATTEMPTS finished attempts and the one in flight, each a name (at most
     * 64 bytes), a colon and a status or class name, with a comma. */
    char attempts[(MAX_ATTEMPTS + 1) * (64 + 1 + 24 + 1) + 1];
    fmtbuf_t b;
    fmt_init(&b, attempts, sizeof(attempts));
    for (int i = 0; i < p->n_attempts; i++) {
        const attempt_rec_t *a = &p->attempts[i];
        if (i)
            fmt_lit(&b, ",");
        fmt_str(&b, p->cfg->providers[a->role].name);
        fmt_lit(&b, ":");
        if (a->status > 0)
            fmt_i64(&b, a->status);
        else
            fmt_str(&b, failure_name(a->cls));
    }
    if (in_flight) {
        if (b.n)
            fmt_lit(&b, ",");
        fmt_str(&b, p->cfg->providers[p->role].name);
        fmt_lit(&b, ":");
        fmt_i64(&b, p->status);
    }
    size_t n = fmt_cstr(&b) ? b.n : 0; /* sized above for the longest possible list */
    evhttp_add_header(out, "x-switchyard-provider", p->cfg->providers[p->role].name);
    evhttp_add_header(out, "x-switchyard-variant", flags_variant_name(p->decision.variant));
    if (n > 0)
        evhttp_add_header(out, "x-switchyard-attempts", attempts);
    if (p->fallback_why)
        evhttp_add_header(out, "x-switchyard-fallback", p->fallback_why);
}

static void reply_error(proxy_req_t *p, int status, const char *type, const char *code,
                        const char *message, int with_provider)
{
    if (p->client_done)
        return;
    if (p->kind == CLIENT_WS || (p->kind == CLIENT_SSE && p->sse_started)) {
        mark_first_byte(p, status);
        client_error_msg(p, type, code, message);
        end_client(p);
        return;
    }
    struct evhttp_request *req = take_req(p);
    mark_first_byte(p, status);
    add_switchyard_headers(p, evhttp_request_get_output_headers(req), with_provider, 0);
    http_reply_error(req, status, type, code, message);
}

static int is_hop_by_hop(const char *name)
{
    static const struct {
        const char *name;
        size_t len;
    } drop[] = {
#define D(s) {s, sizeof(s) - 1}
        D("connection"), D("keep-alive"),        D("proxy-authenticate"), D("proxy-authorization"),
        D("te"),         D("trailer"),           D("transfer-encoding"),  D("upgrade"),
        D("content-length"), D("set-cookie"),    D("proxy-connection"),
#undef D
    };
    /* Every upstream header passes here: compare only names of the same length. */
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (drop[i].len == len && strcasecmp(name, drop[i].name) == 0)
            return 1;
    return len >= 13 && strncasecmp(name, "x-switchyard-", 13) == 0;
}

static void copy_upstream_headers(proxy_req_t *p, struct evhttp_request *req, int in_flight)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    /* Moved, not copied: on_header already checked each name and value the way
     * evhttp_add_header would, and the request frees them with its own headers. */
    TAILQ_CONCAT(out, &p->up_headers, next);
    add_switchyard_headers(p, out, 1, in_flight);
}

/* A whole upstream answer for a WS or browser-SSE client: its text, or its error. */
static void reply_translated(proxy_req_t *p)
{
    size_t n = evbuffer_get_length(p->buf);
    const char *b = (const char *)evbuffer_pullup(p->buf, -1);
    if (p->status >= 200 && p->status < 300) {
        chunk_t ch;
        mark_first_byte(p, (int)p->status);
        if (b && chunk_parse_completion(b, n, &ch) == 0) {
            if (ch.content)
                client_text(p, ch.content);
            snprintf(p->finish_reason, sizeof(p->finish_reason), "%s", ch.finish_reason);
            chunk_free(&ch);
        }
        client_complete(p);
        end_client(p);
        return;
    }
    /* The provider's error, in switchyard's envelope. */
    char *copy = b ? strndup(b, n) : NULL;
    cJSON *doc = copy ? cJSON_Parse(copy) : NULL;
    free(copy);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    char msg[256];
    snprintf(msg, sizeof(msg), "%s answered %ld", p->cfg->providers[p->role].name, p->status);
    reply_error(p, (int)p->status, cJSON_IsString(t) ? t->valuestring : "api_error",
                cJSON_IsString(c) ? c->valuestring : NULL,
                cJSON_IsString(m) ? m->valuestring : msg, 1);
    cJSON_Delete(doc);
}

/* A whole JSON answer's usage is its bill, whether the attempt counts as a success or
 * not (a billed failure is wasted spend). */
static void bill_buffered(proxy_req_t *p, fail_class_t cls)
{
    if (p->mode != MODE_BUFFER || !p->headers_done || evbuffer_get_length(p->buf) == 0)
        return;
    usage_t u = {0};
    size_t blen = evbuffer_get_length(p->buf);
    const char *body = (const char *)evbuffer_pullup(p->buf, -1);
    if (body && usage_from_json(body, blen, &u) == 0) {
        if (cls == FAIL_NONE && !p->client_gone)
            p->usage = u;
        else if (p->model)
            p->wasted[p->role] +=
                fmax(0, pricing_cost(config_price(&p->cfg->providers[p->role], p->model), u.prompt,
                                     u.completion, u.cached));
    } else if (body && cls == FAIL_NONE && p->usage.source == USAGE_NONE) {
        long chars = usage_content_chars(body, blen);
        if (chars >= 0) {
            p->usage.completion = usage_estimate_tokens((size_t)chars);
            p->usage.source = USAGE_ESTIMATED;
        }
    }
}

/* bill: a good answer, whose usage is read once it is written (bill_buffered). */
static void redact_provider_keys(proxy_req_t *p);

static void reply_buffered(proxy_req_t *p, int bill)
{
    if (p->status < 200 || p->status >= 300)
        redact_provider_keys(p);
    if (p->kind != CLIENT_HTTP) {
        if (bill)
            bill_buffered(p, FAIL_NONE);
        reply_translated(p);
        return;
    }
    struct evhttp_request *req = take_req(p);
    mark_first_byte(p, (int)p->status);
    copy_upstream_headers(p, req, 0);
    struct evbuffer *body = p->buf;
    if (bill) {
        /* The reply takes the body by reference, so it is still here to be billed.
         * libevent's reference can come out short without saying so (out of memory):
         * then the body moves as usual and is billed first. */
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        size_t n = evbuffer_get_length(p->buf);
        if (evbuffer_get_length(out) == 0 && evbuffer_add_buffer_reference(out, p->buf) == 0 &&
            evbuffer_get_length(out) == n) {
            body = NULL;
        } else {
            evbuffer_drain(out, evbuffer_get_length(out));
            bill_buffered(p, FAIL_NONE);
            bill = 0;
        }
    }
    evhttp_send_reply(req, (int)p->status, http_reason((int)p->status), body);
    http_flush_reply(p->evcon);
    p->evcon = NULL; /* the flush may have completed and freed it */
    if (bill)
        bill_buffered(p, FAIL_NONE);
}

/* ---- upstream callbacks ---------------------------------------------------------- */

static size_t client_backlog(proxy_req_t *p);

/* Bytes the client has taken off its connection so far, mod 2^32 (HTTP clients: what
 * was handed to evhttp less what still waits; chunk framing is not counted, which only
 * ever understates progress). */
static uint32_t client_read(proxy_req_t *p)
{
    return p->client_sent - (uint32_t)client_backlog(p);
}

static size_t client_backlog(proxy_req_t *p)
{
    if (p->kind == CLIENT_WS)
        return p->ws ? ws_backlog(p->ws) : 0;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(p->evcon);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* Looks at one complete event on its way to the client: usage, content count.
 * has_usage: what usage_event_has_usage says of it, when the caller knows (-1: not). */
static void inspect_event(proxy_req_t *p, const char *ev, size_t len, int has_usage)
{
    if (usage_event_has_content(ev, len, p->legacy_text))
        p->content_events++;
    if (sse_event_is_last(ev, len))
        p->saw_end = 1;
    if (has_usage < 0)
        has_usage = usage_event_has_usage(ev, len);
    if (has_usage) {
        const char *data;
        size_t dlen;
        if (sse_event_data(ev, len, &data, &dlen) == 0)
            usage_from_json(data, dlen, &p->usage);
    }
}

/* Sends the first n bytes of p->buf (whole events, or the last bytes of a finished
 * stream) to the client, event by event: usage is read on the way, and when
 * switchyard asked for it on the client's behalf it is taken out again. */
static void forward(proxy_req_t *p, size_t n)
{
    if (n == 0 || p->client_done)
        return;
    char *region = (char *)evbuffer_pullup(p->buf, (ev_ssize_t)n);
    size_t off = 0;
    while (region && off < n) {
        size_t len = sse_event_end(region + off, n - off);
        if (len == 0)
            len = n - off; /* a tail without its blank line */
        if (p->kind == CLIENT_HTTP && p->inject_usage) {
            /* Stripping `,"usage":null` changes neither the content nor the usage, and
             * its answer (-1: the event carries usage) saves inspect_event a search. */
            long kept = usage_strip_event(region + off, len);
            inspect_event(p, region + off, kept < 0 ? len : (size_t)kept, kept < 0);
            if (kept < 0) /* read above; a chunk that carries more than usage goes on */
                kept = usage_strip_object(region + off, len);
            if (kept > 0)
                evbuffer_add(p->w->scratch, region + off, (size_t)kept);
            off += len;
            continue;
        }
        inspect_event(p, region + off, len, -1);
        if (p->kind != CLIENT_HTTP) {
            const char *data;
            size_t dlen;
            chunk_t ch;
            if (sse_event_data(region + off, len, &data, &dlen) == 0 &&
                chunk_parse_event(data, dlen, &ch) == 0) {
                if (ch.content && !p->client_done)
                    client_text(p, ch.content);
                if (ch.finish_reason[0])
                    snprintf(p->finish_reason, sizeof(p->finish_reason), "%s", ch.finish_reason);
                chunk_free(&ch);
            }
        }
        off += len;
    }
    if (p->kind != CLIENT_HTTP) {
        evbuffer_drain(p->buf, n);
        return;
    }
    if (p->inject_usage)
        evbuffer_drain(p->buf, n);
    else
        evbuffer_remove_buffer(p->buf, p->w->scratch, n);
    if (evbuffer_get_length(p->w->scratch) > 0)
        send_chunk(p, on_client_drained);
}

/* The provider has the whole request body of this attempt. */
static int request_sent(proxy_req_t *p)
{
    curl_off_t sent = 0;
    return curl_easy_getinfo(p->xfer.easy, CURLINFO_SIZE_UPLOAD_T, &sent) == CURLE_OK &&
           sent >= (curl_off_t)p->send_len;
}

/* Keeps only the "Connection" headers of h. A stream's response head is on the wire
 * once evhttp_send_reply_start returns, and evhttp reads request and response headers
 * again only for "Connection" when the reply ends: the rest (~1 KB: the client's, the
 * provider's and switchyard's headers) need not live as long as the stream. */
static void drop_sent_headers(struct evkeyvalq *h)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, h, next) {
        if (strcasecmp(kv->key, "Connection") == 0)
            break;
    }
    if (!kv) {
        /* Nothing to keep (most requests and answers): one pass frees them all, where
         * evhttp_remove_header would look each name up again. */
        evhttp_clear_headers(h);
        return;
    }
    kv = TAILQ_FIRST(h);
    while (kv) {
        struct evkeyval *next = TAILQ_NEXT(kv, next);
        /* The first header of this name is kv itself: earlier ones are gone, and only
         * "Connection" headers are kept. */
        if (strcasecmp(kv->key, "Connection") != 0)
            evhttp_remove_header(h, kv->key);
        kv = next;
    }
}

static void commit_stream(proxy_req_t *p)
{
    if (p->kind != CLIENT_HTTP) {
        mark_first_byte(p, (int)p->status);
        p->committed = 1;
        return;
    }
    copy_upstream_headers(p, p->req, 1);
    http_reply_start_stream(p->req, (int)p->status, http_reason((int)p->status));
    drop_sent_headers(evhttp_request_get_output_headers(p->req));
    /* The client's headers were for routing and for attempts, and no attempt follows a
     * commit; evhttp reads only "Connection" of them again (keep-alive). origin points
     * into them. */
    p->origin = NULL;
    drop_sent_headers(p->in);
    mark_first_byte(p, (int)p->status);
    p->committed = 1;
    if (request_sent(p)) {
        /* No attempt follows a commit and libcurl is done with the body: a stream
         * need not carry its request for the rest of its life (only its length, for
         * the estimate without usage). */
        free(p->body);
        p->body = NULL;
        free(p->up_body);
        p->up_body = NULL;
    }
    stop_close_watch(p); /* evhttp watches the connection itself once writing */
    /* evhttp's timeout is also a read timeout: an SSE client sends nothing. */
    const config_provider_t *pv = &p->cfg->providers[p->role];
    long secs = pv->timeouts.total_ms / 1000 + 60;
    evhttp_connection_set_timeout(p->evcon, (int)(secs > 3600 ? secs : 3600));
}

/* Before the commit: does the first n bytes of p->buf hold an event with a field, not
 * only comments? Relays send `: PROCESSING` keep-alives before the first token; they
 * are held with the answer rather than commit a stream that may still fail over. */
static int has_data_event(proxy_req_t *p, size_t n)
{
    const char *b = (const char *)evbuffer_pullup(p->buf, (ev_ssize_t)n);
    size_t off = 0;
    while (b && off < n) {
        size_t len = sse_event_end(b + off, n - off);
        if (len == 0)
            return 0;
        for (size_t i = off; i < off + len;) {
            if (b[i] != '\r' && b[i] != '\n' && b[i] != ':')
                return 1; /* a line that is not a comment or a blank */
            const char *lf = memchr(b + i, '\n', off + len - i);
            i = lf ? (size_t)(lf - b) + 1 : off + len;
        }
        off += len;
    }
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    proxy_req_t *p = arg;
    size_t len = size * nmemb;
    if (p->client_gone || p->fail != FAIL_NONE)
        return CURL_WRITEFUNC_ERROR;
    clock_gettime(CLOCK_MONOTONIC, &p->t_last);
    if (p->xfer.multiplexed)
        upstream_delivered(&p->xfer, len);
    if (p->mode != MODE_STREAM) {
        if (evbuffer_get_length(p->buf) + len > RESPONSE_MAX) {
            p->fail = FAIL_PROTOCOL;
            snprintf(p->fail_detail, sizeof(p->fail_detail), "response body over %d bytes",
                     RESPONSE_MAX);
            return CURL_WRITEFUNC_ERROR;
        }
        evbuffer_add(p->buf, data, len);
        return len;
    }
    size_t backlog = p->committed ? client_backlog(p) : 0;
    if (backlog > CLIENT_HIGH_WATER) {
        if (!p->paused) {
            /* The client is not reading: give it client_stall_ms to start again. */
            p->paused = 1;
            p->held = p->xfer.multiplexed;
            p->paused_at_ms = now_ms();
            p->stall_mark = client_read(p);
            long stall = p->cfg->limits.client_stall_ms;
            struct timeval tv = {stall / 1000, (stall % 1000) * 1000};
            p->timer_mode = TIMER_ATTEMPT;
            evtimer_add(p->timer, &tv);
        }
        if (!p->held)
            return CURL_WRITEFUNC_PAUSE;
        if (backlog > CLIENT_HOLD_MAX) {
            /* Held as much as a client may cost: drop it now (from the timer: not
             * from inside libcurl), its bytes still accepted until then. */
            p->hold_full = 1;
            struct timeval now = {0, 0};
            evtimer_add(p->timer, &now);
        }
    }
    size_t before = evbuffer_get_length(p->buf);
    evbuffer_add(p->buf, data, len);
    size_t last_end = 0;
    if (sse_scan(&p->sse, data, len, &last_end) > 0 &&
        (p->committed || has_data_event(p, before + last_end))) {
        if (!p->committed)
            commit_stream(p);
        forward(p, before + last_end);
    } else if (!p->committed && before + len > PRECOMMIT_MAX) {
        p->fail = FAIL_PROTOCOL;
        snprintf(p->fail_detail, sizeof(p->fail_detail), "no SSE event in the first %d bytes",
                 PRECOMMIT_MAX);
        return CURL_WRITEFUNC_ERROR;
    } else if (p->committed && before + len > EVENT_MAX) {
        forward(p, before + len);
    }
    return len;
}

/* Retry-After (seconds) or OpenAI's retry-after-ms, in milliseconds; -1 when absent. */
static long parse_retry_after(struct evkeyvalq *h)
{
    const char *ms = http_header(h, "retry-after-ms");
    const char *sec = http_header(h, "Retry-After");
    char *end = NULL;
    if (ms) {
        double v = strtod(ms, &end);
        if (end != ms && v >= 0 && v < 1e9)
            return (long)v;
    }
    if (sec) {
        double v = strtod(sec, &end);
        if (end != sec && v >= 0 && v < 1e6)
            return (long)(v * 1000.0);
    }
    return -1;
}

/* Removes the upstream's Connection headers and every header they name. */
static void drop_connection_listed(struct evkeyvalq *h)
{
    const char *c;
    while ((c = http_header(h, "Connection")) != NULL) {
        char names[512];
        snprintf(names, sizeof(names), "%s", c);
        evhttp_remove_header(h, "Connection");
        char *save = NULL;
        for (char *t = strtok_r(names, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
            while (evhttp_remove_header(h, t) == 0)
                ;
    }
}

static void headers_complete(proxy_req_t *p)
{
    p->headers_done = 1;
    drop_connection_listed(&p->up_headers);
    p->retry_after_ms = parse_retry_after(&p->up_headers);
    const char *ct = http_header(&p->up_headers, "Content-Type");
    int is_sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    p->mode = (p->status >= 200 && p->status < 300 && is_sse) ? MODE_STREAM : MODE_BUFFER;
    long version = 0;
    curl_easy_getinfo(p->xfer.easy, CURLINFO_HTTP_VERSION, &version);
    p->xfer.multiplexed = version >= CURL_HTTP_VERSION_2_0;
    /* Over HTTP/2 libcurl 7.88 sends the body through a 64 KiB upload buffer that it
     * keeps until the transfer ends: 4 KB of memory per open stream. Once the body is
     * sent, setting the option frees it (see upstream_can_trim_upload). Streams stay
     * open for minutes; what the sent request held is dropped here. */
    if (upstream_can_trim_upload() && request_sent(p)) {
        if (p->xfer.multiplexed)
            curl_easy_setopt(p->xfer.easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
        /* The request headers are only read to build the request (7.88: nothing on the
         * answer's path without HTTP auth), and no retry follows an answer. */
        curl_easy_setopt(p->xfer.easy, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(p->up_hdrs);
        p->up_hdrs = NULL;
    }
}

/* Where in s[0..n) a configured provider key starts (its length in *klen), or NULL.
 * A relay or a debugging proxy may echo the key it got ("Incorrect API key provided:
 * sk-...", a header echo); switchyard's promise is that no key reaches a client. */
static const char *find_provider_key(const proxy_req_t *p, const char *s, size_t n, size_t *klen)
{
    const char *first = NULL;
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        const char *k = p->cfg->providers[r].api_key;
        size_t kl = p->cfg->providers[r].api_key_len;
        if (kl < 8 || n < kl) /* a key that short would match by chance: none is */
            continue;
        const char *f = memmem(s, n, k, kl);
        if (f && (!first || f < first)) {
            first = f;
            *klen = kl;
        }
    }
    return first;
}

/* An error answer is passed on, or its message is: any provider key in it is replaced
 * by "[redacted]" first. */
static void redact_provider_keys(proxy_req_t *p)
{
    size_t n = evbuffer_get_length(p->buf), klen = 0;
    const char *b = n ? (const char *)evbuffer_pullup(p->buf, -1) : NULL;
    const char *k = b ? find_provider_key(p, b, n, &klen) : NULL;
    if (!k)
        return;
    log_warn("event=upstream_echoed_key request_id=%s provider=%s where=body", p->request_id,
             p->cfg->providers[p->role].name);
    struct evbuffer *out = evbuffer_new();
    size_t i = 0;
    while (out && k) {
        evbuffer_add(out, b + i, (size_t)(k - (b + i)));
        evbuffer_add(out, "[redacted]", 10);
        i = (size_t)(k - b) + klen;
        k = find_provider_key(p, b + i, n - i, &klen);
    }
    if (out)
        evbuffer_add(out, b + i, n - i);
    evbuffer_drain(p->buf, n); /* without memory to redact, no body at all */
    if (out) {
        evbuffer_add_buffer(p->buf, out);
        evbuffer_free(out);
    }
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    proxy_req_t *p = arg;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new header block (after a 1xx interim response too). */
        evhttp_clear_headers(&p->up_headers);
        const char *sp = memchr(buf, ' ', len);
        p->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (p->status >= 200)
            headers_complete(p);
        return len;
    }
    char line[8192];
    if (len >= sizeof(line))
        return len; /* an absurd header is dropped, not forwarded */
    memcpy(line, buf, len);
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    line[len] = '\0';
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return size * nitems;
    *colon = '\0';
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t klen;
    if (find_provider_key(p, value, strlen(value), &klen)) {
        log_warn("event=upstream_echoed_key request_id=%s provider=%s where=header header=%s",
                 p->request_id, p->cfg->providers[p->role].name,
                 http_value_unsafe(line) ? "?" : line);
        return size * nitems; /* dropped whole */
    }
    /* "Connection" stays until the head is whole: the headers it names are hop-by-hop
     * too (RFC 9110 7.6.1), and go with it in drop_connection_listed. */
    if ((!is_hop_by_hop(line) || strcasecmp(line, "connection") == 0) &&
        !http_value_unsafe(line) && !http_value_unsafe(value))
        evhttp_add_header(&p->up_headers, line, value);
    return size * nitems;
}

/* ---- attempt end ----------------------------------------------------------------- */

/* Microseconds from the attempt's start to the request being sent; 0 while connecting.
 * (CONNECT_TIME is 0 on a reused connection, so it cannot tell.) */
static curl_off_t sent_at_us(proxy_req_t *p)
{
    curl_off_t t = 0;
    if (p->xfer.easy)
        curl_easy_getinfo(p->xfer.easy, CURLINFO_PRETRANSFER_TIME_T, &t);
    return t;
}

/* The attempt never reached the provider because this process ran out of something
 * (descriptors, buffers, memory): that says nothing about the provider. */
static int local_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* libcurl 7.88 reports a failed socket() as CURLE_COULDNT_CONNECT with no OS error, like
 * a refused connection: upstream.c's socket callback keeps the errno (xfer.open_errno). */
static fail_class_t classify_curl(proxy_req_t *p, CURLcode rc)
{
    if (rc == CURLE_OUT_OF_MEMORY)
        return FAIL_LOCAL_ERROR;
    if (rc == CURLE_COULDNT_CONNECT && local_errno(p->xfer.open_errno))
        return FAIL_LOCAL_ERROR;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return sent_at_us(p) > 0 ? FAIL_TIMEOUT_TOTAL : FAIL_TIMEOUT_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_COULDNT_RESOLVE_PROXY:
    /* The connection broke (reset, closed with nothing sent): the provider did not
     * answer, whatever part of a response had arrived. */
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    /* ...or closed cleanly before the end of its body: a FIN there says no more than a
     * reset does. */
    case CURLE_PARTIAL_FILE:
        return FAIL_CONNECT_ERROR;
    default:
        /* Malformed or short responses (bad chunking, body shorter than announced). */
        return FAIL_PROTOCOL;
    }
}

static void end_stream_with_error(proxy_req_t *p, const char *message)
{
    /* After the commit the status is sent: say it in the stream, and leave out
     * [DONE] so that clients can tell the answer is incomplete. */
    if (p->kind != CLIENT_HTTP) {
        p->truncated = 1;
        client_error_msg(p, "server_error", "upstream_error", message);
        end_client(p);
        return;
    }
    char *err = http_error_body("server_error", "upstream_error", message);
    evbuffer_drain(p->buf, evbuffer_get_length(p->buf));
    evbuffer_add_printf(p->w->scratch, "event: error\ndata: %s\n\n", err ? err : "{}");
    free(err);
    p->truncated = 1;
    send_chunk(p, NULL);
    evhttp_send_reply_end(take_req(p));
}

static int start_attempt(proxy_req_t *p, int role);

/* "relay: upstream_5xx (503) after 12 ms; openai: connect_error after 1 ms" */
static void describe_attempts(const proxy_req_t *p, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < p->n_attempts && n + 1 < cap; i++) {
        const attempt_rec_t *a = &p->attempts[i];
        char status[24] = "";
        if (a->status > 0)
            snprintf(status, sizeof(status), " (%ld)", (long)a->status);
        int k = snprintf(out + n, cap - n, "%s%s: %s%s after %.0f ms", i ? "; " : "",
                         p->cfg->providers[a->role].name, failure_name(a->cls), status, a->ms);
        if (k < 0)
            break;
        n += (size_t)k < cap - n ? (size_t)k : cap - n - 1;
    }
    if (p->fail_detail[0] && n + 1 < cap)
        snprintf(out + n, cap - n, " (%s)", p->fail_detail);
}

/* Every attempt failed, or no more may be made: the client's answer. */
/* A header for the HTTP reply still to come; WebSocket chats and started browser
 * streams have none (their answers are messages), so nothing is added there. */
static void add_reply_header(proxy_req_t *p, const char *name, const char *value)
{
    if (!p->req || p->client_done || p->kind == CLIENT_WS ||
        (p->kind == CLIENT_SSE && p->sse_started))
        return;
    evhttp_add_header(evhttp_request_get_output_headers(p->req), name, value);
}

static void reply_final_failure(proxy_req_t *p)
{
    const attempt_rec_t *last = &p->attempts[p->n_attempts - 1];
    /* A 2xx that failed (a body cut short, too large, no event) is never passed on. */
    int answer = last->status > 0 && (last->status < 200 || last->status >= 300) &&
                 (p->n_attempts == 1 || !(p->cfg->fallback.on & FAILURE_BIT(last->cls)));
    if (answer) {
        /* The provider's own response is the answer: a 4xx the client must see, or
         * the only attempt's error when nothing else could be tried. */
        reply_buffered(p, 0);
        return;
    }
    char msg[1024];
    describe_attempts(p, msg, sizeof(msg));
    int all_429 = 1;
    long retry_after = -1;
    for (int i = 0; i < p->n_attempts; i++) {
        all_429 &= p->attempts[i].cls == FAIL_UPSTREAM_429;
    }
    if (all_429)
        retry_after = p->retry_after_ms;
    if (all_429) {
        if (retry_after >= 0) {
            char ra[32];
            snprintf(ra, sizeof(ra), "%ld", (retry_after + 999) / 1000);
            add_reply_header(p, "Retry-After", ra);
        }
        reply_error(p, 429, "rate_limit_error", "rate_limit_exceeded", msg, 1);
        return;
    }
    if (last->cls == FAIL_LOCAL_ERROR) {
        /* Ours, not the provider's: say so, and when to come back. */
        add_reply_header(p, "Retry-After", "1");
        reply_error(p, 503, "server_error", "local_error", msg, 1);
        return;
    }
    int timeout = failure_is_timeout(last->cls);
    reply_error(p, timeout ? 504 : 502, "server_error",
                timeout ? "upstream_timeout" : "upstream_error", msg, 1);
}

/* Chooses the next attempt after a failure of class cls, or -1 for none. */
static int next_role(proxy_req_t *p, fail_class_t cls, int *same)
{
    const config_fallback_t *fb = &p->cfg->fallback;
    if (!(fb->on & FAILURE_BIT(cls)) || p->n_attempts >= fb->max_attempts ||
        p->n_attempts >= MAX_ATTEMPTS)
        return -1;
    server_t *srv = p->w->srv;
    int role = p->role;
    *same = p->tries_on_role <= fb->retry_same_provider;
    if (*same && health_route(&srv->health[role], now_ms()) == HEALTH_EJECTED)
        *same = 0;
    if (!*same) {
        if (p->switched)
            return -1; /* both providers had their turn */
        role = 1 - role;
    }
    health_state_t st = health_route(&srv->health[role], now_ms());
    if (st == HEALTH_EJECTED)
        return -1;
    if (!budget_try_retry(&p->w->budget, now_ms(), fb->budget_percent,
                          fb->budget_min_per_second)) {
        if (st == HEALTH_PROBE)
            health_release_probe(&srv->health[role]);
        p->budget_exhausted = 1;
        return -1;
    }
    p->attempt_is_probe = st == HEALTH_PROBE;
    return role;
}

static long backoff_ms(proxy_req_t *p)
{
    const config_fallback_t *fb = &p->cfg->fallback;
    long cap = fb->backoff_base_ms;
    for (int i = 1; i < p->tries_on_role && cap < fb->backoff_max_ms; i++)
        cap *= 2;
    if (cap > fb->backoff_max_ms)
        cap = fb->backoff_max_ms;
    /* Full jitter spreads the retries of many clients over the whole interval. */
    long wait = cap > 0 ? (long)(worker_random(p->w) % (uint64_t)(cap + 1)) : 0;
    if (p->retry_after_ms > wait)
        wait = p->retry_after_ms < fb->backoff_max_ms ? p->retry_after_ms : fb->backoff_max_ms;
    return wait;
}

static void report_health(proxy_req_t *p, fail_class_t cls)
{
    const config_fallback_t *fb = &p->cfg->fallback;
    /* A 4xx is the client's answer and a client leaving is nobody's fault: neither
     * says anything about the provider. */
    int failed = cls != FAIL_NONE && cls != FAIL_UPSTREAM_4XX && cls != FAIL_CLIENT_CLOSED &&
                 (fb->on & FAILURE_BIT(cls));
    health_t *h = &p->w->srv->health[p->role];
    if (cls == FAIL_CLIENT_CLOSED || cls == FAIL_LOCAL_ERROR) {
        if (p->attempt_is_probe)
            health_release_probe(h);
    } else if (health_report(h, now_ms(), failed, p->attempt_is_probe, fb->eject_consecutive,
                             fb->eject_base_ms, fb->eject_max_ms)) {
        log_warn("event=provider_ejected provider=%s after=%s", p->cfg->providers[p->role].name,
                 failure_name(cls));
    }
    p->attempt_is_probe = 0;
}

/* The buffered answer is one whole JSON document. */
static int buffered_json_whole(proxy_req_t *p)
{
    size_t n = evbuffer_get_length(p->buf);
    const char *body = (const char *)evbuffer_pullup(p->buf, -1);
    return n > 0 && body && body_json_complete(body, n);
}

/* A buffered 2xx answer labelled JSON (and not encoded) must be one whole JSON
 * document before it is passed on. Through libcurl 7.88's HTTP/2 a body once arrived
 * cut short with a clean end (docs/DECISIONS.md, "HTTP/2 bursts"); failing the attempt
 * makes that a protocol error the client sees, or a retry, instead of a 200 with a
 * broken body. */
static int json_answer_whole(proxy_req_t *p)
{
    /* Over HTTP/1.1 libcurl holds a body to its framing (Content-Length or chunks), and
     * the check would cost every answer ~6k instructions (3.6%, callgrind) for a
     * provider's own broken document only: multiplexed connections only. */
    if (!p->xfer.multiplexed || p->mode != MODE_BUFFER || p->status < 200 || p->status >= 300)
        return 1;
    const char *ct = http_header(&p->up_headers, "Content-Type");
    if (!ct || !strcasestr(ct, "json") || http_header(&p->up_headers, "Content-Encoding"))
        return 1;
    return buffered_json_whole(p);
}

/* What the provider bills for an attempt that ended without a whole answer (a stream
 * cut short, an attempt the client left): the usage it sent, or once the request had
 * reached it an estimate, the prompt from the body's size and the completion from the
 * content events passed on. It is wasted spend: nobody got a whole answer for it. */
static void bill_unfinished(proxy_req_t *p)
{
    if (!p->model)
        return;
    usage_t u = p->usage;
    if (u.source != USAGE_UPSTREAM) {
        if (!p->xfer.easy || !request_sent(p))
            return; /* the provider never had the whole request */
        u.prompt = usage_estimate_tokens(p->body_len);
        u.completion = p->stream_req ? p->content_events : 0;
        u.cached = 0;
    }
    double c = pricing_cost(config_price(&p->cfg->providers[p->role], p->model), u.prompt,
                            u.completion, u.cached);
    if (c > 0)
        p->wasted[p->role] += c;
}

/* The client left while an attempt was in flight: the attempt is cancelled, never
 * finished, so it is recorded here, as the client's, with what it cost. */
static void record_abandoned(proxy_req_t *p)
{
    if (!p->xfer.active || p->n_attempts >= MAX_ATTEMPTS)
        return;
    attempt_rec_t *a = &p->attempts[p->n_attempts++];
    a->role = (int8_t)p->role;
    a->status = p->headers_done && p->status > 0 && p->status < 1000 ? (int32_t)p->status : 0;
    a->cls = (uint8_t)FAIL_CLIENT_CLOSED;
    a->ms = ms_since(&p->t_attempt);
    bill_unfinished(p);
    if (p->attempt_is_probe) {
        health_release_probe(&p->w->srv->health[p->role]);
        p->attempt_is_probe = 0;
    }
}

/* Has the stream sent its last event? It may still be in the tail, unterminated. */
static int stream_ended(proxy_req_t *p)
{
    size_t n = evbuffer_get_length(p->buf);
    const char *tail = p->saw_end || n == 0 ? NULL : (const char *)evbuffer_pullup(p->buf, -1);
    return p->saw_end || (tail && sse_event_is_last(tail, n));
}

static void attempt_finished(proxy_req_t *p, CURLcode rc)
{
    if (p->timer)
        evtimer_del(p->timer);
    fail_class_t cls = p->fail;
    if (cls == FAIL_NONE && rc != CURLE_OK) {
        cls = classify_curl(p, rc);
        /* libcurl's own words say which protocol rule the provider broke. */
        if (cls == FAIL_PROTOCOL && !p->fail_detail[0])
            snprintf(p->fail_detail, sizeof(p->fail_detail), "%s", curl_easy_strerror(rc));
    }
    if (cls == FAIL_NONE && !p->headers_done) {
        cls = FAIL_PROTOCOL;
        snprintf(p->fail_detail, sizeof(p->fail_detail), "no response headers");
    }
    if (cls == FAIL_NONE)
        cls = failure_of_status(p->status);
    if (cls == FAIL_NONE && p->mode == MODE_STREAM && !p->committed && p->status >= 200 &&
        p->status < 300) {
        /* A 2xx stream that ended before its first event (empty, half an event, only
         * comments) is no answer: never passed on as one. */
        cls = FAIL_PROTOCOL;
        snprintf(p->fail_detail, sizeof(p->fail_detail), "stream ended before its first event");
    }
    if (cls == FAIL_NONE && p->mode == MODE_STREAM && p->committed && !stream_ended(p) &&
        p->route == ROUTE_JSON && !p->client_gone) {
        /* The model endpoints end a stream with [DONE] or response.completed: one that
         * ends cleanly without it was cut short, and its client is told so. */
        cls = FAIL_PROTOCOL;
        snprintf(p->fail_detail, sizeof(p->fail_detail), "stream ended without its last event");
    }
    if (cls == FAIL_NONE && !p->client_gone && !json_answer_whole(p)) {
        cls = FAIL_PROTOCOL;
        snprintf(p->fail_detail, sizeof(p->fail_detail), "JSON answer cut short or malformed");
    }
    if (p->client_gone)
        cls = FAIL_CLIENT_CLOSED;
    clock_gettime(CLOCK_MONOTONIC, &p->t_upstream_done);
    /* A good answer to an HTTP client is billed after it is written: the usage scan
     * walks the whole body, and nothing in the reply depends on it. */
    int bill_later = cls == FAIL_NONE && !p->client_gone && !p->committed && p->kind == CLIENT_HTTP;
    if (!bill_later)
        bill_buffered(p, cls);
    attempt_rec_t *a = &p->attempts[p->n_attempts++];
    a->role = (int8_t)p->role;
    a->status = p->headers_done && p->status > 0 && p->status < 1000 ? (int32_t)p->status : 0;
    a->cls = (uint8_t)cls;
    a->ms = ms_since(&p->t_attempt);
    report_health(p, cls);
    if (p->client_gone) {
        if (p->mode != MODE_BUFFER)
            bill_unfinished(p);
        maybe_free(p);
        return;
    }
    const config_provider_t *pv = &p->cfg->providers[p->role];
    if (cls == FAIL_NONE) {
        if (p->committed) {
            forward(p, evbuffer_get_length(p->buf));
            if (p->kind != CLIENT_HTTP)
                client_complete(p);
            end_client(p);
        } else {
            reply_buffered(p, bill_later);
        }
        maybe_free(p);
        return;
    }
    log_warn("event=attempt_failed request_id=%s provider=%s class=%s status=%ld ms=%.0f "
             "committed=%d",
             p->request_id, pv->name, failure_name(cls), (long)a->status, a->ms, p->committed);
    if (p->committed) {
        char msg[1024];
        describe_attempts(p, msg, sizeof(msg));
        log_warn("event=response_truncated request_id=%s provider=%s class=%s", p->request_id,
                 pv->name, failure_name(cls));
        bill_unfinished(p);
        end_stream_with_error(p, msg);
        maybe_free(p);
        return;
    }
    int same = 0;
    int role = next_role(p, cls, &same);
    if (role < 0) {
        if (p->budget_exhausted)
            log_warn("event=retry_budget_exhausted request_id=%s provider=%s class=%s",
                     p->request_id, pv->name, failure_name(cls));
        reply_final_failure(p);
        maybe_free(p);
        return;
    }
    if (!same) {
        p->switched = 1;
        if (!p->fallback_why) {
            p->fallback_why = failure_name(cls);
            p->fallback_class = cls;
            p->fallback_from = p->role;
        }
    }
    long wait = same ? backoff_ms(p) : 0;
    if (wait > 0) {
        /* The failed transfer's handle goes back now; the retry starts on the timer. */
        release_attempt(p);
        p->timer_mode = TIMER_BACKOFF;
        p->role = role;
        struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    if (start_attempt(p, role) < 0) {
        release_attempt(p);
        reply_error(p, 500, "server_error", NULL, "could not start the upstream request", 1);
        maybe_free(p);
    }
}

static void on_done(upstream_xfer_t *x, CURLcode rc)
{
    proxy_req_t *p = (proxy_req_t *)((char *)x - offsetof(proxy_req_t, xfer));
    attempt_finished(p, rc);
}

/* The whole answer is here by its own terms: a stream's last event with nothing
 * after it, or a body that is one whole JSON document. (A body with a Content-Length
 * never gets here: libcurl ends it at that length itself.) */
static int answer_complete(proxy_req_t *p)
{
    if (!p->headers_done || p->fail != FAIL_NONE || p->client_gone)
        return 0;
    if (p->mode == MODE_STREAM)
        return p->committed && p->saw_end && evbuffer_get_length(p->buf) == 0;
    return p->mode == MODE_BUFFER && buffered_json_whole(p);
}

/* libcurl 7.88 may hold an HTTP/2 stream's end until the connection gets more bytes
 * (upstream.h, on_stuck). An answer complete by its own terms gets END_GRACE_MS for
 * its end to arrive anyway, then is finished here and its stream reset; any other
 * goes on waiting under its idle timeout. */
static void on_stuck(upstream_xfer_t *x)
{
    proxy_req_t *p = (proxy_req_t *)((char *)x - offsetof(proxy_req_t, xfer));
    if (p->timer_mode != TIMER_ATTEMPT || !answer_complete(p))
        return;
    p->timer_mode = TIMER_END;
    struct timeval tv = {0, END_GRACE_MS * 1000};
    evtimer_add(p->timer, &tv);
}

/* TIMER_END fired: 1 when the answer was ended (p may be gone). */
static int end_stuck_answer(proxy_req_t *p)
{
    p->timer_mode = TIMER_ATTEMPT;
    if (!answer_complete(p))
        return 0;
    log_info("event=upstream_end_inferred request_id=%s provider=%s mode=%s", p->request_id,
             p->cfg->providers[p->role].name, p->mode == MODE_STREAM ? "stream" : "body");
    metrics_end_inferred(p->w->metrics, p->role);
    upstream_cancel(p->w->up, &p->xfer);
    attempt_finished(p, CURLE_OK);
    return 1;
}

static void client_left(proxy_req_t *p);

/* Drops a client that stopped reading (its connection is freed; on_client_close
 * then cancels the attempt). */
static void drop_stalled_client(proxy_req_t *p)
{
    log_warn("event=client_stalled request_id=%s stalled_ms=%lld reason=%s", p->request_id,
             now_ms() - p->paused_at_ms, p->hold_full ? "hold_limit" : "stall_timeout");
    if (p->kind == CLIENT_WS) {
        /* No evhttp connection: the chat leaves its WebSocket, which is closed. */
        ws_conn_t *ws = p->ws;
        if (ws) {
            ws_chat_finished(ws, p);
            p->ws = NULL;
            ws_close_slow(ws);
        }
        client_left(p);
        return;
    }
    evhttp_connection_free(p->evcon);
}

/* One timer per request: first-byte and idle deadlines, backoff waits, the client
 * stall deadline and deferred cancels. Body bytes only stamp t_last; an early
 * wake-up re-arms for what is left. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_req_t *p = arg;
    if (p->timer_mode == TIMER_CANCEL || p->client_gone) {
        record_abandoned(p); /* unless the attempt finished before this cancel */
        release_attempt(p);
        maybe_free(p);
        return;
    }
    if (p->timer_mode == TIMER_BACKOFF) {
        int role = p->role;
        if (start_attempt(p, role) < 0) {
            release_attempt(p);
            reply_error(p, 500, "server_error", NULL, "could not start the upstream request", 1);
            maybe_free(p);
        }
        return;
    }
    if (!p->xfer.active)
        return;
    if (p->timer_mode == TIMER_END && end_stuck_answer(p))
        return;
    const config_provider_t *pv = &p->cfg->providers[p->role];
    if (p->paused) {
        uint32_t read = client_read(p);
        /* Forward only: framing added under a paused stream (heartbeats, chunks held
         * over HTTP/2) lowers the count without any read. */
        if (p->kind != CLIENT_WS && (int32_t)(read - p->stall_mark) > 0 && !p->hold_full) {
            /* Slow is not stalled: a client still reading gets the stall time anew
             * (the backlog stays bounded: paused, or held up to CLIENT_HOLD_MAX). */
            p->stall_mark = read;
            p->paused_at_ms = now_ms();
        }
        long long stalled = now_ms() - p->paused_at_ms;
        long limit = p->cfg->limits.client_stall_ms;
        if (stalled >= limit || p->hold_full) {
            drop_stalled_client(p); /* frees p */
            return;
        }
        long left = limit - (long)stalled;
        struct timeval tv = {left / 1000, (left % 1000) * 1000 + 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    if (p->xfer.held) {
        /* In line for an HTTP/2 connection (upstream.c's gate): that is connecting,
         * bounded by connect_ms as libcurl bounds its own. */
        long connect = pv->timeouts.connect_ms;
        double waited = ms_since(&p->t_attempt);
        if (waited >= (double)connect) {
            p->fail = FAIL_TIMEOUT_CONNECT;
            snprintf(p->fail_detail, sizeof(p->fail_detail),
                     "no HTTP/2 connection within %ld ms", connect);
            upstream_cancel(p->w->up, &p->xfer);
            attempt_finished(p, CURLE_OPERATION_TIMEDOUT);
            return;
        }
        /* Back no later than first_byte_ms: released meanwhile, the request is sent
         * and its first-byte limit runs. */
        long left = connect - (long)waited;
        left = left < pv->timeouts.first_byte_ms ? left : pv->timeouts.first_byte_ms;
        struct timeval tv = {left / 1000, (left % 1000) * 1000 + 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    int waiting_first = !p->committed && evbuffer_get_length(p->buf) == 0;
    long limit = waiting_first ? pv->timeouts.first_byte_ms : pv->timeouts.idle_ms;
    double idle = ms_since(waiting_first ? &p->t_attempt : &p->t_last);
    if (waiting_first) {
        /* first_byte_ms counts from the request being sent; connecting has its own limit. */
        curl_off_t sent = sent_at_us(p);
        if (sent == 0) {
            struct timeval tv = {limit / 1000, (limit % 1000) * 1000};
            evtimer_add(p->timer, &tv);
            return;
        }
        idle -= (double)sent / 1000.0 + (double)p->xfer.held_ms; /* and its wait in line */
    }
    if (idle < (double)limit) {
        long left = limit - (long)idle;
        struct timeval tv = {left / 1000, (left % 1000) * 1000 + 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    /* A stream that stalls before its first event has sent the client nothing: for the
     * fallback policy it is the first event that did not come. */
    p->fail = waiting_first || (p->mode == MODE_STREAM && !p->committed) ? FAIL_TIMEOUT_FIRST_BYTE
                                                                         : FAIL_TIMEOUT_IDLE;
    upstream_cancel(p->w->up, &p->xfer);
    attempt_finished(p, CURLE_OPERATION_TIMEDOUT);
}

/* ---- client side ----------------------------------------------------------------- */

static void client_left(proxy_req_t *p)
{
    p->client_gone = 1;
    p->client_done = 1;
    stop_close_watch(p);
    if (p->xfer.active) {
        if (upstream_in_callback(p->w->up)) {
            struct timeval now = {0, 0};
            p->timer_mode = TIMER_CANCEL;
            evtimer_add(p->timer, &now); /* cancel from the loop, not inside libcurl */
            return;
        }
        record_abandoned(p);
        upstream_cancel(p->w->up, &p->xfer);
    }
    maybe_free(p);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    proxy_req_t *p = arg;
    if (p->req && evhttp_request_get_connection(p->req) == NULL)
        p->own_req = 1; /* evhttp detached it: ours to free */
    else
        p->req = NULL; /* evhttp frees it with the connection */
    client_left(p);
}

/* Before the reply starts evhttp does not read the socket, so a client that
 * leaves while we wait for the upstream would go unnoticed until a write. */
static void on_fd_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_req_t *p = arg;
    stop_close_watch(p);
    /* Frees the connection; evhttp calls on_client_close first. */
    evhttp_connection_free(p->evcon);
}

/* The client read its backlog: stop its stall clock; resume a paused transfer. */
static void client_caught_up(proxy_req_t *p)
{
    if (!p->paused || p->client_done)
        return;
    p->paused = 0;
    p->hold_full = 0;
    if (p->held) {
        p->held = 0;
        return;
    }
    upstream_resume(p->w->up, &p->xfer); /* may finish and free p */
}

void proxy_ws_drained(void *chat)
{
    client_caught_up(chat);
}

void proxy_ws_gone(void *chat)
{
    proxy_req_t *p = chat;
    p->ws = NULL; /* the connection is being freed: never call it again */
    if (!p->client_done)
        client_left(p);
}

static void on_client_drained(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    client_caught_up(arg);
}


/* ---- accounting: metrics and the access log, once per request -------------------- */

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* A JSON string (or null) appended to b. */
static void put_json(fmtbuf_t *b, const char *s)
{
    if (b->over)
        return;
    size_t k = accesslog_json_string(b->p + b->n, b->cap - b->n, s);
    if (k == 0)
        b->over = 1;
    b->n += k;
}

/* Money: every bit of the double (fmt_g17), so sums over the log equal the metrics;
 * null when unknown (negative). */
static void put_money(fmtbuf_t *b, double v)
{
    if (v < 0)
        fmt_lit(b, "null");
    else
        fmt_g17(b, v);
}

#define LINE_MAX_BYTES 8192

static void write_access_line(proxy_req_t *p, const char *path, int provider, double latency_ms,
                              double cost, double cost_orig, double wasted)
{
    worker_t *w = p->w;
    char *o = accesslog_reserve(&w->alog, LINE_MAX_BYTES);
    if (!o)
        return;
    fmtbuf_t b;
    fmt_init(&b, o, LINE_MAX_BYTES);
    int bp = p->decided_bp;
    if (p->decided_bp == UINT16_MAX) { /* refused before routing: the flag as it is now */
        flag_def_t scratch;
        const flag_def_t *def =
            server_routing_flag(w->srv, config_flag(p->cfg, ROUTING_FLAG), &scratch);
        bp = def ? (def->disabled ? 0 : def->percentage_bp) : 0;
    }
    /* Basis points as a percentage: at most two decimals, none when whole. */
    static const char *const methods[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
                                          "TRACE", "CONNECT", "PATCH"};
    const char *method = "OTHER";
    for (int i = 0; i < 9; i++)
        if (p->method == (enum evhttp_cmd_type)(1 << i))
            method = methods[i];
    fmt_lit(&b, "{\"ts\":\"");
    fmt_iso_ms(&b, (int64_t)p->t_wall.tv_sec, p->t_wall.tv_nsec);
    fmt_lit(&b, "\",\"request_id\":");
    put_json(&b, p->request_id);
    fmt_lit(&b, ",\"method\":\"");
    fmt_str(&b, method);
    fmt_lit(&b, "\",\"path\":");
    put_json(&b, path);
    fmt_lit(&b, ",\"model\":");
    put_json(&b, p->model);
    fmt_lit(&b, ",\"stream\":");
    fmt_str(&b, p->stream_req ? "true" : "false");
    fmt_lit(&b, ",\"variant\":\"");
    fmt_str(&b, flags_variant_name(p->decision.variant));
    fmt_lit(&b, "\",\"sticky_source\":");
    put_json(&b, p->sticky_source ? p->sticky_source : "unkeyed");
    fmt_lit(&b, ",\"flag_percentage\":");
    fmt_i64(&b, bp / 100);
    if (bp % 100) {
        fmt_lit(&b, ".");
        fmt_i64(&b, bp % 100 / 10);
        if (bp % 10)
            fmt_i64(&b, bp % 10);
    }
    fmt_lit(&b, ",\"provider\":");
    put_json(&b, provider >= 0 ? p->cfg->providers[provider].name : NULL);
    fmt_lit(&b, ",\"attempts\":[");
    for (int i = 0; i < p->n_attempts; i++) {
        const attempt_rec_t *a = &p->attempts[i];
        if (i)
            fmt_lit(&b, ",");
        fmt_lit(&b, "{\"provider\":");
        put_json(&b, p->cfg->providers[a->role].name);
        fmt_lit(&b, ",\"status\":");
        if (a->status > 0)
            fmt_i64(&b, a->status);
        else
            fmt_lit(&b, "null");
        fmt_lit(&b, ",\"class\":\"");
        fmt_str(&b, failure_name(a->cls));
        fmt_lit(&b, "\",\"ms\":");
        fmt_fixed(&b, a->ms, 3);
        fmt_lit(&b, "}");
    }
    fmt_lit(&b, "],\"status\":");
    fmt_i64(&b, p->client_status);
    fmt_lit(&b, ",\"latency_ms\":");
    fmt_fixed(&b, latency_ms, 3);
    fmt_lit(&b, ",\"first_byte_ms\":");
    if (p->first_byte_seen)
        fmt_fixed(&b, ms_between(&p->t_start, &p->t_first_byte), 3);
    else
        fmt_lit(&b, "null");
    fmt_lit(&b, ",\"tokens_in\":");
    fmt_i64(&b, p->usage.prompt);
    fmt_lit(&b, ",\"tokens_out\":");
    fmt_i64(&b, p->usage.completion);
    fmt_lit(&b, ",\"tokens_cached\":");
    fmt_i64(&b, p->usage.cached);
    fmt_lit(&b, ",\"usage_source\":\"");
    fmt_str(&b, usage_source_name(p->usage.source));
    fmt_lit(&b, "\",\"cost_usd\":");
    size_t cost_at = b.n;
    put_money(&b, cost);
    size_t cost_len = b.n - cost_at;
    fmt_lit(&b, ",\"cost_if_original_usd\":");
    /* Served by the original provider, the two are the same number: print it once
     * (%.17g is most of this line's cost). */
    if (cost_orig == cost && !b.over)
        fmt_mem(&b, b.p + cost_at, cost_len);
    else
        put_money(&b, cost_orig);
    fmt_lit(&b, ",\"wasted_cost_usd\":");
    if (wasted == 0)
        fmt_lit(&b, "0");
    else
        fmt_g17(&b, wasted);
    fmt_lit(&b, ",\"fallback\":");
    put_json(&b, p->fallback_why);
    fmt_lit(&b, ",\"truncated\":");
    fmt_str(&b, p->truncated ? "true" : "false");
    fmt_lit(&b, "}\n");
    if (b.over)
        return; /* a line that does not fit is dropped whole, never cut */
    accesslog_commit(&w->alog, b.n);
}

/* The rollout controller compares providers, not what fallback made of them: a
 * variant's request fails when its own provider failed it (first attempt, or the
 * provider was ejected), whatever the client finally got. */
static void record_window(proxy_req_t *p, int served, int provider, double latency_ms,
                          double first_token_s, double cost)
{
    if (p->client_gone || p->n_attempts == 0)
        return; /* no verdict on the provider */
    worker_t *w = p->w;
    int variant = p->decision.variant == FLAG_VARIANT_NEW ? WINDOW_NEW : WINDOW_ORIGINAL;
    int own = variant == WINDOW_NEW ? CONFIG_ROLE_NEW : CONFIG_ROLE_ORIGINAL;
    fail_class_t first = p->attempts[0].cls;
    int provider_fault = first != FAIL_NONE && first != FAIL_UPSTREAM_4XX &&
                         first != FAIL_CLIENT_CLOSED && first != FAIL_LOCAL_ERROR;
    int local = p->attempts[p->n_attempts - 1].cls == FAIL_LOCAL_ERROR;
    int error = (p->attempts[0].role == own && provider_fault) ||
                (p->fallback_class == FAIL_N_CLASSES && p->fallback_why) || p->truncated ||
                (p->client_status >= 500 && !local);
    window_sample_t s = {
        .latency_ms = served && provider == own ? latency_ms : -1,
        .ttft_ms = served && provider == own && first_token_s >= 0 ? first_token_s * 1e3 : -1,
        .error = error,
        .tokens_in = served ? (uint64_t)p->usage.prompt : 0,
        .tokens_out = served ? (uint64_t)p->usage.completion : 0,
        .cost_usd = served && provider == own ? cost : -1,
    };
    if (s.latency_ms < 0 && !error)
        return; /* served by the other provider without a fault of its own: not comparable */
    window_record(worker_window(w), variant, &s);
}

static metrics_outcome_t outcome_of(const proxy_req_t *p)
{
    if (p->client_gone)
        return OUTCOME_CLIENT_CLOSED;
    if (p->truncated)
        return OUTCOME_TRUNCATED;
    if (p->n_attempts == 0)
        return p->client_status >= 500 ? OUTCOME_ERROR : OUTCOME_REJECTED;
    const attempt_rec_t *last = &p->attempts[p->n_attempts - 1];
    if (p->client_status >= 500 || (last->cls != FAIL_NONE && last->cls != FAIL_UPSTREAM_4XX))
        return OUTCOME_ERROR;
    return p->n_attempts > 1 || p->fallback_why ? OUTCOME_FALLBACK : OUTCOME_OK;
}

static void account(proxy_req_t *p)
{
    if (p->accounted)
        return;
    p->accounted = 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double latency_ms = ms_between(&p->t_start, &now);
    int provider = p->n_attempts > 0 ? p->attempts[p->n_attempts - 1].role : -1;
    int served = provider >= 0 && p->attempts[p->n_attempts - 1].cls == FAIL_NONE;

    /* No usage from the provider: estimate what it will bill, and say so. Only the
     * model endpoints bill tokens: a file upload or /v1/models has none to estimate. */
    if (served && p->route == ROUTE_JSON && p->usage.source != USAGE_UPSTREAM) {
        p->usage.prompt = usage_estimate_tokens(p->body_len);
        if (p->usage.source == USAGE_NONE)
            p->usage.completion = p->stream_req ? p->content_events : 0;
        p->usage.cached = 0;
        p->usage.source = USAGE_ESTIMATED;
    }
    double cost = -1, cost_orig = -1;
    if (served && p->model) {
        const usage_t *u = &p->usage;
        cost = pricing_cost(config_price(&p->cfg->providers[provider], p->model), u->prompt,
                            u->completion, u->cached);
        cost_orig =
            provider == CONFIG_ROLE_ORIGINAL
                ? cost
                : pricing_cost(config_price(&p->cfg->providers[CONFIG_ROLE_ORIGINAL], p->model),
                               u->prompt, u->completion, u->cached);
    }
    double wasted = p->wasted[0] + p->wasted[1];

    int roles[MAX_ATTEMPTS];
    fail_class_t classes[MAX_ATTEMPTS];
    for (int i = 0; i < p->n_attempts; i++) {
        roles[i] = p->attempts[i].role;
        classes[i] = p->attempts[i].cls;
    }
    double first_token = -1;
    if (p->stream_req && p->committed)
        first_token = ms_between(&p->t_start, &p->t_first_byte) / 1e3;
    double overhead = -1;
    if (served && !p->committed && p->first_byte_seen)
        overhead = (p->pre_ms + ms_between(&p->t_upstream_done, &p->t_first_byte)) / 1e3;
    else if (served)
        overhead = p->pre_ms / 1e3;
    metrics_request_t r = {
        .model = p->model,
        .provider = served ? provider : (provider >= 0 ? provider : -1),
        .variant = p->decision.variant == FLAG_VARIANT_NEW,
        .status = p->client_status,
        .outcome = outcome_of(p),
        .duration_s = latency_ms / 1e3,
        .first_token_s = first_token,
        .overhead_s = overhead,
        .tokens_in = served ? p->usage.prompt : 0,
        .tokens_out = served ? p->usage.completion : 0,
        .tokens_cached = served ? p->usage.cached : 0,
        .served = served,
        .cost_usd = cost,
        .cost_if_original_usd = cost_orig,
        .wasted_usd = {p->wasted[0], p->wasted[1]},
        .n_attempts = p->n_attempts,
        .attempt_role = roles,
        .attempt_class = classes,
        .fallback_from = p->fallback_from,
        .fallback_to = p->fallback_from >= 0 && served ? provider : -1,
        .fallback_class = p->fallback_class,
    };
    metrics_record(p->w->metrics, &r);
    record_window(p, served, provider, latency_ms, first_token, cost);
    if (!served) {
        /* Tokens and cost belong to the provider that billed them; nothing was served. */
        p->usage = (usage_t){0};
    }
    write_access_line(p, p->log_path, provider, latency_ms, cost, cost_orig, wasted);
}

/* ---- request start --------------------------------------------------------------- */

static int path_is_safe(const char *path)
{
    /* Dot segments (plain or percent-encoded), backslashes and encoded slashes or
     * NULs could move the request off the provider's base path. */
    for (const char *s = path; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return 0;
        if (c == '%') {
            if (strncasecmp(s, "%2e", 3) == 0 || strncasecmp(s, "%2f", 3) == 0 ||
                strncasecmp(s, "%5c", 3) == 0 || strncmp(s, "%00", 3) == 0)
                return 0;
        }
        if (c == '/' && s[1] == '.' &&
            (s[2] == '/' || s[2] == '\0' || (s[2] == '.' && (s[3] == '/' || s[3] == '\0'))))
            return 0;
    }
    return 1;
}

static void make_request_id(proxy_req_t *p, struct evkeyvalq *in)
{
    const char *given = http_header(in, "x-request-id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n < sizeof(p->request_id);
        for (size_t i = 0; ok && i < n; i++) {
            char c = given[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '-' || c == '_' || c == '.' || c == ':';
        }
        if (ok) {
            memcpy(p->request_id, given, n + 1);
            return;
        }
    }
    uint64_t r[2] = {worker_random(p->w), worker_random(p->w)};
    static const char hex[] = "0123456789abcdef";
    char *o = p->request_id;
    *o++ = 's';
    *o++ = 'y';
    *o++ = '-';
    for (int k = 0; k < 2; k++)
        for (int i = 60; i >= 0; i -= 4)
            *o++ = hex[(r[k] >> i) & 0xf];
    *o = '\0';
}

static const char *find_sticky(proxy_req_t *p, const flag_def_t *def, struct evkeyvalq *in,
                               body_info_t *info, size_t *len)
{
    for (size_t i = 0; i < def->n_sticky; i++) {
        const flag_sticky_t *s = &def->sticky[i];
        const char *v = NULL;
        switch (s->kind) {
        case FLAG_STICKY_HEADER:
            v = http_header(in, s->name);
            break;
        case FLAG_STICKY_BODY:
            v = info ? body_string_field(info, s->name) : NULL;
            break;
        case FLAG_STICKY_API_KEY:
            /* An authenticated client is its `user` (README) on every transport: HTTP
             * sends the key, a WebSocket may have sent it in a message and a browser
             * stream a session token, and each must land in the same bucket. */
            v = p->client ? p->client->user : http_bearer(in);
            break;
        }
        if (v && *v) {
            p->sticky_source = s->spec;
            *len = strlen(v);
            return v;
        }
    }
    p->sticky_source = "unkeyed";
    *len = 0;
    return NULL;
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[4096];
    fmtbuf_t b;
    fmt_init(&b, line, sizeof(line));
    fmt_str(&b, name);
    fmt_lit(&b, ": ");
    fmt_str(&b, value);
    if (!fmt_cstr(&b))
        return -1;
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return -1;
    *list = l;
    return 0;
}

static int build_upstream_headers(proxy_req_t *p, const config_provider_t *pv, size_t send_len)
{
    static const char *const forwarded[] = {"Content-Type",   "Accept",          "OpenAI-Organization",
                                            "OpenAI-Project", "Idempotency-Key", "OpenAI-Beta"};
    struct evkeyvalq *in = p->in;
    struct curl_slist *l = NULL;
    int rc = 0;
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
        const char *v = http_header(in, forwarded[i]);
        if (v)
            rc |= add_header(&l, forwarded[i], v);
        else if (i == 0)
            /* libcurl would otherwise label a POST as a form. */
            l = p->route == ROUTE_JSON ? curl_slist_append(l, "Content-Type: application/json")
                                       : curl_slist_append(l, "Content-Type:");
    }
    for (size_t i = 0; i < p->cfg->n_forward_headers; i++) {
        const char *v = http_header(in, p->cfg->forward_headers[i]);
        if (v)
            rc |= add_header(&l, p->cfg->forward_headers[i], v);
    }
    rc |= add_header(&l, "X-Request-Id", p->request_id);
    /* The client's Authorization never goes upstream: the provider's own key does. */
    if (pv->api_key) {
        char auth[4200];
        int n = snprintf(auth, sizeof(auth), "Authorization: Bearer %s", pv->api_key);
        struct curl_slist *x = (n > 0 && (size_t)n < sizeof(auth)) ? curl_slist_append(l, auth)
                                                                   : NULL;
        explicit_bzero(auth, sizeof(auth));
        if (!x)
            rc = -1;
        else
            l = x;
    }
    /* No "Expect: 100-continue" round trip. libcurl 7.69+ asks only above 1 MiB, older
     * ones above 1 KiB; below that every custom header costs libcurl a scan per check. */
    if (send_len > 1024)
        l = curl_slist_append(l, "Expect:");
    l = curl_slist_append(l, "User-Agent: switchyard/0.1");
    p->up_hdrs = l;
    return l ? rc : -1;
}

static int start_attempt(proxy_req_t *p, int role)
{
    const config_provider_t *pv = &p->cfg->providers[role];
    release_attempt(p); /* the previous attempt's handle, headers and body */
    if (p->n_attempts > 0 && p->attempts[p->n_attempts - 1].role == role)
        p->tries_on_role++;
    else
        p->tries_on_role = 1;
    p->role = role;
    p->status = 0;
    p->headers_done = 0;
    p->mode = MODE_NONE;
    p->fail = FAIL_NONE;
    p->fail_detail[0] = '\0';
    p->retry_after_ms = -1;
    p->paused = 0;
    p->held = 0;
    p->hold_full = 0;
    p->saw_end = 0;
    p->timer_mode = TIMER_ATTEMPT;
    sse_scanner_init(&p->sse);
    evhttp_clear_headers(&p->up_headers);
    evbuffer_drain(p->buf, evbuffer_get_length(p->buf));

    /* The small receive buffer only where it costs no reads: over HTTP/2 libcurl reads
     * the connection into a buffer of its own and copies each stream's bytes; over
     * HTTP/1.1 a burst of events would take four reads instead of one. */
    int tls = strncasecmp(pv->base_url, "https://", 8) == 0;
    if (upstream_easy_get(p->w->up, &p->xfer,
                          p->stream_req && tls && pv->http_version == CONFIG_HTTP_2) < 0)
        return -1;
    CURL *e = p->xfer.easy;
    p->xfer.on_done = on_done;
    p->xfer.on_stuck = on_stuck;

    size_t url_len = strlen(pv->base_url) + strlen(p->path_query) + 1;
    char *url = malloc(url_len);
    if (!url)
        return -1;
    size_t base_len = url_len - 1 - strlen(p->path_query);
    memcpy(url, pv->base_url, base_len);
    memcpy(url + base_len, p->path_query, url_len - base_len); /* with its NUL */
    int url_rc = upstream_set_url(p->w->up, e, url);
    free(url);
    if (url_rc < 0)
        return -1;

    const char *send_body = p->body;
    size_t send_len = p->body_len;
    p->send_len = 0;
    /* At most two splices, in body order: the model (mapped for this provider) and
     * the stream_options that ask for usage. */
    body_edit_t edits[2];
    size_t n_edits = 0;
    char *quoted = NULL;
    const char *mapped = p->model ? config_map_model(pv, p->model) : NULL;
    if (mapped && strcmp(mapped, p->model) != 0 && p->model_len > 0) {
        if (!(quoted = body_json_string(mapped)))
            return -1;
        edits[n_edits++] = (body_edit_t){p->model_off, p->model_len, quoted, strlen(quoted)};
    }
    if (p->inject_usage)
        edits[n_edits++] = p->usage_edit;
    if (n_edits == 2 && edits[0].off > edits[1].off) {
        body_edit_t t = edits[0];
        edits[0] = edits[1];
        edits[1] = t;
    }
    if (n_edits > 0) {
        p->up_body = body_apply(p->body, p->body_len, edits, n_edits, &send_len);
        free(quoted);
        if (!p->up_body)
            return -1;
        send_body = p->up_body;
    }
    p->send_len = send_len;
    if (build_upstream_headers(p, pv, send_len) < 0)
        return -1;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->up_hdrs);

    switch (p->method) {
    case EVHTTP_REQ_GET:
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        break;
    case EVHTTP_REQ_HEAD:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case EVHTTP_REQ_POST:
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, send_body);
        break;
    default: {
        static const struct {
            enum evhttp_cmd_type m;
            const char *name;
        } names[] = {{EVHTTP_REQ_PUT, "PUT"},       {EVHTTP_REQ_DELETE, "DELETE"},
                     {EVHTTP_REQ_PATCH, "PATCH"},   {EVHTTP_REQ_OPTIONS, "OPTIONS"}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (names[i].m == p->method)
                curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, names[i].name);
        if (send_len > 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)send_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, send_body);
        }
    }
    }
    const char *h2_url = NULL;
    if (tls) {
        /* HTTP/2 only when asked for ("2"): through libcurl 7.88 it fails a few answers
         * in a thousand that arrive in bursts, HTTP/1.1 none (docs/DECISIONS.md, "HTTP/2
         * bursts"); "auto" is HTTP/1.1. Where h2 is agreed, a burst of requests waits
         * for the connection being opened and multiplexes on it. */
        int h2 = pv->http_version == CONFIG_HTTP_2;
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                         h2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
        if (h2) {
            /* It waits at its origin's gate (h2gate.h), which turns PIPEWAIT off again;
             * PIPEWAIT is what is left when no gate could be had (a full table). */
            curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
            h2_url = pv->base_url;
        }
        if (pv->ca_file) {
            /* This CA alone, not also the system's directory; and without a CA path
             * libcurl keeps one parsed CA store instead of reading the file for every
             * connection (~4 KB each). */
            curl_easy_setopt(e, CURLOPT_CAINFO, pv->ca_file);
            curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
        }
    } else {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, pv->timeouts.connect_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, pv->timeouts.total_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, p);

    clock_gettime(CLOCK_MONOTONIC, &p->t_attempt);
    p->t_last = p->t_attempt;
    if (upstream_start(p->w->up, &p->xfer, h2_url) < 0)
        return -1;
    long wait = pv->timeouts.first_byte_ms;
    if (p->xfer.held) {
        /* In line for an HTTP/2 connection: that is connecting, with its own limit. */
        metrics_connection_wait(p->w->metrics, role);
        wait = pv->timeouts.connect_ms < wait ? pv->timeouts.connect_ms : wait;
    }
    struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    return 0;
}

static route_t classify_route(const char *path)
{
    static const char *const json_routes[] = {"/v1/chat/completions", "/v1/completions",
                                              "/v1/embeddings", "/v1/responses"};
    for (size_t i = 0; i < sizeof(json_routes) / sizeof(json_routes[0]); i++)
        if (strcmp(path, json_routes[i]) == 0)
            return ROUTE_JSON;
    if (strcmp(path, "/v1/models") == 0)
        return ROUTE_MODELS;
    return ROUTE_OTHER;
}

static void reply_simple(struct evhttp_request *req, int status, const char *type,
                         const char *code, const char *msg)
{
    http_reply_error(req, status, type, code, msg);
}

/* An early answer, with the CORS headers a browser needs to read it. */
static void reply_early(struct evhttp_request *req, const config_t *cfg, const char *origin,
                        int status, const char *type, const char *code, const char *msg)
{
    add_cors(evhttp_request_get_output_headers(req), cfg, origin);
    http_reply_error(req, status, type, code, msg);
}

static proxy_req_t *proxy_new(worker_t *w, client_kind_t kind, struct evhttp_request *req,
                              struct evkeyvalq *in, enum evhttp_cmd_type method, route_t route)
{
    proxy_req_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->w = w;
    p->kind = kind;
    p->cfg = config_ref(worker_config(w));
    p->req = req;
    p->evcon = req ? evhttp_request_get_connection(req) : NULL;
    p->in = in;
    p->method = method;
    p->route = route;
    p->fallback_from = -1;
    p->decided_bp = UINT16_MAX; /* not routed yet */
    TAILQ_INIT(&p->up_headers);
    clock_gettime(CLOCK_MONOTONIC, &p->t_start);
    clock_gettime(CLOCK_REALTIME, &p->t_wall);
    p->next = w->live;
    if (w->live)
        w->live->prev = p;
    w->live = p;
    w->n_live++;
    p->timer = evtimer_new(w->base, on_timer, p);
    p->buf = evbuffer_new();
    make_request_id(p, in);
    if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, on_client_close, p);
    return p;
}

/* From the body on: parse, decide the variant, route, start the first attempt.
 * Takes ownership of body. path: the client-facing path (/v1/...), query may be NULL. */
static void proxy_begin(proxy_req_t *p, const char *path, const char *query, char *body,
                        size_t body_len)
{
    worker_t *w = p->w;
    p->body = body;
    p->body_len = body_len;
    if (!p->timer || !p->buf || !p->body) {
        reply_error(p, 500, "server_error", NULL, "out of memory", 0);
        maybe_free(p);
        return;
    }
    size_t pq_len = strlen(path) - 3 + (query ? strlen(query) + 1 : 0) + 1;
    p->path_query = malloc(pq_len);
    p->log_path = strdup(path);
    if (!p->path_query || !p->log_path) {
        reply_error(p, 500, "server_error", NULL, "out of memory", 0);
        maybe_free(p);
        return;
    }
    fmtbuf_t pq;
    fmt_init(&pq, p->path_query, pq_len);
    fmt_str(&pq, path + 3);
    if (query) {
        fmt_lit(&pq, "?");
        fmt_str(&pq, query);
    }
    fmt_cstr(&pq); /* pq_len was sized for exactly this */

    body_info_t info;
    int have_info = 0;
    if (p->route == ROUTE_JSON) {
        int rc = body_parse(p->body, p->body_len, &info);
        if (rc != BODY_OK) {
            reply_error(p, rc == BODY_ERR_NOMEM ? 500 : 400, "invalid_request_error",
                        rc == BODY_ERR_JSON ? "invalid_json" : "invalid_body", info.error, 0);
            maybe_free(p);
            return;
        }
        have_info = 1;
        p->stream_req = info.stream != 0;
        p->legacy_text = strcmp(path, "/v1/completions") == 0;
        /* Streams are only accountable with usage: ask for it when the client did not
         * (chat and legacy completions take stream_options), and hide it again. */
        if (p->kind == CLIENT_HTTP &&
            (strcmp(path, "/v1/chat/completions") == 0 || strcmp(path, "/v1/completions") == 0))
            p->inject_usage = body_usage_edit(&info, &p->usage_edit) != 0;
        p->model_off = info.model_off;
        p->model_len = info.model_len;
        if (info.model && !(p->model = strdup(info.model))) {
            body_info_free(&info);
            reply_error(p, 500, "server_error", NULL, "out of memory", 0);
            maybe_free(p);
            return;
        }
    }

    flag_def_t scratch;
    const flag_def_t *def =
        server_routing_flag(w->srv, config_flag(p->cfg, ROUTING_FLAG), &scratch);
    size_t key_len = 0;
    const char *key = def ? find_sticky(p, def, p->in, have_info ? &info : NULL, &key_len) : NULL;
    if (def)
        p->decision = flags_eval(def, key, key_len, p->model, (uint32_t)worker_random(w));
    else
        p->decision.variant = FLAG_VARIANT_ORIGINAL;
    /* The access log gives the percentage that decided, not the one when it ends. */
    p->decided_bp = (uint16_t)(def ? (def->disabled ? 0 : def->percentage_bp) : 0);
    if (have_info)
        body_info_free(&info);

    /* Watch for the client leaving while nothing is being written to it. */
    if (p->kind == CLIENT_HTTP && p->evcon) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(p->evcon);
        evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0) {
            p->close_watch = event_new(w->base, fd, EV_CLOSED, on_fd_closed, p);
            if (p->close_watch)
                event_add(p->close_watch, NULL);
        }
    }

    int role = p->decision.variant == FLAG_VARIANT_NEW ? CONFIG_ROLE_NEW : CONFIG_ROLE_ORIGINAL;
    budget_note_request(&w->budget, now_ms());
    health_state_t st = health_route(&w->srv->health[role], now_ms());
    if (st == HEALTH_EJECTED) {
        /* Its share goes to the other provider while it is out, unless both are. */
        health_state_t other = health_route(&w->srv->health[1 - role], now_ms());
        if (other != HEALTH_EJECTED) {
            role = 1 - role;
            st = other;
            p->switched = 1;
            p->fallback_why = "ejected";
            p->fallback_class = FAIL_N_CLASSES;
            p->fallback_from = 1 - role;
        }
    }
    p->attempt_is_probe = st == HEALTH_PROBE;
    p->first_role = role;
    p->pre_ms = ms_since(&p->t_start);
    if (start_attempt(p, role) < 0) {
        release_attempt(p);
        reply_error(p, 500, "server_error", NULL, "could not start the upstream request", 0);
        maybe_free(p);
    }
}

void *proxy_start_ws_chat(worker_t *w, ws_conn_t *ws, const config_client_t *client,
                          const char *id, char *body, size_t len)
{
    proxy_req_t *p = proxy_new(w, CLIENT_WS, NULL, ws_headers(ws), EVHTTP_REQ_POST, ROUTE_JSON);
    if (!p) {
        free(body);
        return NULL;
    }
    p->ws = ws;
    p->client = client;
    /* wsmsg cut it to 127 bytes on a character boundary. */
    p->chat_id = strdup(id ? id : "");
    if (!p->chat_id || ws_chat_add(ws, p) < 0) {
        free(body);
        p->body = NULL;
        if (!p->chat_id)
            reply_error(p, 500, "server_error", "out_of_memory", "out of memory", 0);
        else
            reply_error(p, 429, "rate_limit_error", "too_many_chats",
                        "at most 32 chats at once per connection", 0);
        maybe_free(p);
        return NULL;
    }
    proxy_begin(p, "/v1/chat/completions", NULL, body, len);
    return p;
}

static void reply_preflight(struct evhttp_request *req, const config_t *cfg, const char *origin)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    add_cors(out, cfg, origin);
    if (origin) {
        char age[32];
        snprintf(age, sizeof(age), "%ld", cfg->cors.max_age_s);
        evhttp_add_header(out, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        evhttp_add_header(out, "Access-Control-Allow-Headers",
                          "Authorization, Content-Type, Accept, X-Request-Id, X-User-Id, "
                          "OpenAI-Organization, OpenAI-Project, OpenAI-Beta, Idempotency-Key");
        evhttp_add_header(out, "Access-Control-Max-Age", age);
    }
    evhttp_send_reply(req, 204, "No Content", NULL);
}

static char *read_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(input);
    char *b = malloc(*len + 1);
    if (b) {
        /* Removed, not copied: the chain holding it would otherwise live as long as
         * the request (a stream's whole life). */
        evbuffer_remove(input, b, *len);
        b[*len] = '\0';
    }
    return b;
}

static void handle_push(worker_t *w, struct evhttp_request *req, const config_t *cfg,
                        const char *origin, const config_client_t *client)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reply_early(req, cfg, origin, 405, "invalid_request_error", "method_not_allowed",
                    "Only POST is allowed on /v1/push.");
        return;
    }
    if (cfg->n_clients > 0 && !(client->permissions & CLIENT_PERM_PUSH)) {
        reply_early(req, cfg, origin, 403, "invalid_request_error", "permission_denied",
                    "This key may not push.");
        return;
    }
    size_t len;
    char *body = read_body(req, &len);
    char *answer = NULL;
    int status = body ? ws_push(w->srv, body, len, &answer) : 500;
    free(body);
    add_cors(evhttp_request_get_output_headers(req), cfg, origin);
    http_reply_json(req, status, answer ? answer : "{\"error\":{\"message\":\"out of memory\"}}");
    free(answer);
}

static void handle_session_token(worker_t *w, struct evhttp_request *req, const config_t *cfg,
                                 const char *origin, const config_client_t *client)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reply_early(req, cfg, origin, 405, "invalid_request_error", "method_not_allowed",
                    "Only POST is allowed on /v1/session-token.");
        return;
    }
    if (!client) {
        reply_early(req, cfg, origin, 404, "invalid_request_error", "unknown_url",
                    "Session tokens need client keys (the `clients` block).");
        return;
    }
    long long exp = wall_ms() / 1000 + cfg->realtime.session_token_ttl_s;
    char token[1024];
    if (clientauth_token_issue(client, exp, w->srv->session_secret, w->srv->session_secret_len,
                               token, sizeof(token)) < 0) {
        reply_early(req, cfg, origin, 500, "server_error", NULL, "could not issue a token");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddNumberToObject(o, "expires_at", (double)exp);
    cJSON_AddStringToObject(o, "user", client->user);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    add_cors(evhttp_request_get_output_headers(req), cfg, origin);
    http_reply_json(req, s ? 200 : 500, s ? s : "{}");
    free(s);
}

/* GET /v1/stream?model=...&message=...: a chat for EventSource. */
static void handle_browser_stream(worker_t *w, struct evhttp_request *req, const config_t *cfg,
                                  const char *origin, const config_client_t *client,
                                  struct evkeyvalq *params)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        reply_early(req, cfg, origin, 405, "invalid_request_error", "method_not_allowed",
                    "Only GET is allowed on /v1/stream.");
        return;
    }
    const char *model = http_header(params, "model");
    const char *message = http_header(params, "message");
    if (!model || !*model || !message) {
        reply_early(req, cfg, origin, 400, "invalid_request_error", "missing_parameter",
                    "/v1/stream needs ?model=...&message=...");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", message);
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddTrueToObject(o, "stream");
    cJSON *so = cJSON_AddObjectToObject(o, "stream_options");
    cJSON_AddTrueToObject(so, "include_usage");
    if (client)
        cJSON_AddStringToObject(o, "user", client->user);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    proxy_req_t *p = proxy_new(w, CLIENT_SSE, req, evhttp_request_get_input_headers(req),
                               EVHTTP_REQ_POST, ROUTE_JSON);
    if (!p) {
        free(body);
        reply_early(req, cfg, origin, 500, "server_error", NULL, "out of memory");
        return;
    }
    p->client = client;
    p->origin = origin;
    if (body)
        sse_start(p);
    proxy_begin(p, "/v1/chat/completions", NULL, body, body ? strlen(body) : 0);
}

void proxy_handle(struct evhttp_request *req, void *arg)
{
    worker_t *w = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    if (!path || !*path)
        path = "/";
    /* Before anything else: the verdict also starts watching the connection's next head. */
    enum headguard_verdict guard = headguard_verdict(req);
    if (guard != HEADGUARD_OK) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        if (guard == HEADGUARD_NUL)
            http_reply_error(req, 400, "invalid_request_error", "invalid_header",
                             "The request line or a header contains a NUL byte.");
        else
            http_reply_error(req, 408, "invalid_request_error", "request_timeout",
                             "The request headers took too long to arrive.");
        return;
    }

    if (strcmp(path, "/healthz") == 0) {
        if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD)
            http_reply_json(req, 200, "{\"status\":\"ok\"}");
        else
            reply_simple(req, 405, "invalid_request_error", "method_not_allowed",
                         "Only GET is allowed on /healthz.");
        return;
    }
    const config_t *cur = worker_config(w);
    const char *origin = allowed_origin(cur, in);
    if (strncmp(path, "/v1/", 4) != 0) {
        reply_early(req, cur, origin, 404, "invalid_request_error", "unknown_url",
                    "Unknown request URL. switchyard serves the OpenAI API under /v1/.");
        return;
    }
    if (!path_is_safe(path)) {
        reply_early(req, cur, origin, 400, "invalid_request_error", "invalid_path",
                    "The request path is not allowed.");
        return;
    }
    /* evhttp's own header limit is set above ours, so that most oversized requests
     * get a proper 431 from here rather than libevent's bare 400. */
    size_t header_bytes = 0;
    struct evkeyval *h;
    TAILQ_FOREACH(h, in, next)
    {
        if (http_value_unsafe(h->key) || http_value_unsafe(h->value)) {
            reply_early(req, cur, origin, 400, "invalid_request_error", "invalid_header",
                        "A request header contains a control character.");
            return;
        }
        header_bytes += strlen(h->key) + strlen(h->value) + 4;
    }
    /* Request smuggling: a body framed two ways, or two lengths, is refused, and the
     * connection closed so that no leftover byte is read as another request. */
    int n_cl = 0, te = 0, cl_differ = 0;
    const char *first_cl = NULL;
    TAILQ_FOREACH(h, in, next)
    {
        if (strcasecmp(h->key, "Content-Length") == 0) {
            if (first_cl && strcmp(first_cl, h->value) != 0)
                cl_differ = 1;
            first_cl = first_cl ? first_cl : h->value;
            n_cl++;
        } else if (strcasecmp(h->key, "Transfer-Encoding") == 0) {
            te = 1;
        }
    }
    if ((te && n_cl > 0) || cl_differ) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_early(req, cur, origin, 400, "invalid_request_error", "ambiguous_length",
                    "The request has both Content-Length and Transfer-Encoding, or two "
                    "different Content-Lengths.");
        return;
    }
    if (header_bytes > cur->limits.max_header_bytes) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        reply_early(req, cur, origin, 431, "invalid_request_error", "headers_too_large",
                    "The request headers are larger than this server accepts.");
        return;
    }
    if (method == EVHTTP_REQ_OPTIONS && http_header(in, "Origin") &&
        http_header(in, "Access-Control-Request-Method")) {
        reply_preflight(req, cur, origin);
        return;
    }

    int is_ws = (strcmp(path, "/v1/realtime") == 0 || strcmp(path, "/v1/chat/completions") == 0) &&
                ws_is_upgrade(req);
    int is_stream = strcmp(path, "/v1/stream") == 0;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (is_stream) {
        const char *q = evhttp_uri_get_query(uri);
        if (q)
            evhttp_parse_query_str(q, &params);
    }
    /* Client keys: every /v1 call needs one when any is configured (a WebSocket may
     * instead send an auth message, an EventSource a session token). */
    const config_client_t *client = NULL;
    if (cur->n_clients > 0) {
        client = clientauth_find(cur, http_bearer(in));
        if (!client && is_stream)
            client = clientauth_token_check(cur, http_header(&params, "token"),
                                            wall_ms() / 1000, w->srv->session_secret,
                                            w->srv->session_secret_len);
        if (!client && !is_ws) {
            evhttp_clear_headers(&params);
            reply_early(req, cur, origin, 401, "invalid_request_error", "invalid_api_key",
                        "Incorrect API key provided.");
            return;
        }
    }
    if (is_ws) {
        if (cur->cors.n_allow_origins > 0 && http_header(in, "Origin") && !origin)
            reply_early(req, cur, NULL, 403, "invalid_request_error", "origin_not_allowed",
                        "This origin may not open a WebSocket here.");
        else if (w->draining) /* a keep-alive connection during the drain: no new socket */
            reply_early(req, cur, origin, 503, "server_error", "going_away",
                        "The server is shutting down.");
        else
            ws_accept(w, req, client);
        return;
    }
    if (strcmp(path, "/v1/realtime") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Upgrade", "websocket");
        reply_early(req, cur, origin, 426, "invalid_request_error", "upgrade_required",
                    "/v1/realtime is a WebSocket endpoint.");
        return;
    }
    if (strcmp(path, "/v1/push") == 0) {
        handle_push(w, req, cur, origin, client);
        return;
    }
    if (strcmp(path, "/v1/session-token") == 0) {
        handle_session_token(w, req, cur, origin, client);
        return;
    }
    if (client && !(client->permissions & CLIENT_PERM_CHAT)) {
        evhttp_clear_headers(&params);
        reply_early(req, cur, origin, 403, "invalid_request_error", "permission_denied",
                    "This key may not use the chat endpoints.");
        return;
    }
    if (is_stream) {
        handle_browser_stream(w, req, cur, origin, client, &params);
        evhttp_clear_headers(&params);
        return;
    }
    route_t route = classify_route(path);
    if (route == ROUTE_JSON && method != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply_early(req, cur, origin, 405, "invalid_request_error", "method_not_allowed",
                    "Only POST is allowed on this endpoint.");
        return;
    }
    if (route == ROUTE_MODELS && method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        reply_early(req, cur, origin, 405, "invalid_request_error", "method_not_allowed",
                    "Only GET is allowed on /v1/models.");
        return;
    }
    proxy_req_t *p = proxy_new(w, CLIENT_HTTP, req, in, method, route);
    if (!p) {
        reply_early(req, cur, origin, 500, "server_error", NULL, "out of memory");
        return;
    }
    p->client = client;
    p->origin = origin;
    size_t len;
    char *body = read_body(req, &len);
    proxy_begin(p, path, evhttp_uri_get_query(uri), body, len);
}

void proxy_abort_all(worker_t *w)
{
    while (w->live) {
        proxy_req_t *p = w->live;
        if (p->kind == CLIENT_WS) {
            if (p->ws)
                ws_chat_finished(p->ws, p);
            p->ws = NULL;
        } else if (p->req && !p->client_done) {
            evhttp_connection_set_closecb(p->evcon, NULL, NULL);
            p->req = NULL; /* evhttp_free releases it with its connection */
        }
        p->client_done = 1;
        p->client_gone = 1;
        upstream_cancel(w->up, &p->xfer);
        maybe_free(p);
    }
}
