/* ws — WebSocket connections and push. See ws.h. */
#include "ws.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <wslay/wslay.h>

#include "clientauth.h"
#include "headguard.h"
#include "httputil.h"
#include "log.h"
#include "proxy.h"
#include "wsmsg.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_CHATS 32
#define MAX_CHANNELS 16
#define LOW_WATER (64 * 1024)
#define CLOSE_GRACE_MS 5000 /* a close frame not read by then: the connection is dropped */

struct ws_conn {
    ws_conn_t *prev, *next; /* worker's list */
    worker_t *w;
    config_t *cfg; /* the snapshot it started with (limits, clients) */
    struct evhttp_connection *evcon;
    struct bufferevent *bev;
    wslay_event_context_ptr ctx;
    struct evkeyvalq headers; /* copy of the handshake headers (sticky sources) */
    uint64_t id;
    const config_client_t *client; /* NULL until authenticated (or open mode) */
    int authed;
    char user[260];
    char channels[MAX_CHANNELS][128];
    int n_channels;
    void *chats[MAX_CHATS];
    int n_chats;
    struct event *timer;
    long long last_seen_ms, opened_ms;
    int closing;
    int going_away; /* the worker drains: close with 1001 once the chats are done */
    int registered;
};

/* ---- registry (push) ------------------------------------------------------------- */

typedef struct reg_entry {
    struct reg_entry *next;
    ws_conn_t *conn;
    worker_t *w;
    uint64_t id;
    char user[260];
    char client[72];
    char channels[MAX_CHANNELS][128];
    int n_channels;
} reg_entry_t;

struct ws_registry {
    pthread_mutex_t lock;
    reg_entry_t *head;
    uint64_t next_id;
};

/* A message queued for one connection of one worker. */
typedef struct push_item {
    struct push_item *next;
    ws_conn_t *conn;
    uint64_t id;
    size_t len;
    char text[];
} push_item_t;

ws_registry_t *ws_registry_new(void)
{
    ws_registry_t *r = calloc(1, sizeof(*r));
    if (r)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

void ws_registry_free(ws_registry_t *r)
{
    if (!r)
        return;
    while (r->head) {
        reg_entry_t *e = r->head;
        r->head = e->next;
        free(e);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static int count_for_client(ws_registry_t *r, const char *client)
{
    int n = 0;
    for (reg_entry_t *e = r->head; e; e = e->next)
        n += strcmp(e->client, client) == 0;
    return n;
}

/* Registers c (or updates its user and channels). 0, or -1 when the key is at its limit. */
static int reg_update(ws_conn_t *c)
{
    ws_registry_t *r = c->w->srv->ws_registry;
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    reg_entry_t *e = r->head;
    while (e && e->conn != c)
        e = e->next;
    if (!e) {
        const char *cname = c->client ? c->client->name : "";
        if (c->client &&
            count_for_client(r, cname) >= c->cfg->realtime.max_connections_per_key) {
            rc = -1;
            goto out;
        }
        e = calloc(1, sizeof(*e));
        if (!e) {
            rc = -1;
            goto out;
        }
        e->conn = c;
        e->w = c->w;
        e->id = c->id = ++r->next_id;
        snprintf(e->client, sizeof(e->client), "%s", cname);
        e->next = r->head;
        r->head = e;
        c->registered = 1;
    }
    snprintf(e->user, sizeof(e->user), "%s", c->user);
    e->n_channels = c->n_channels;
    memcpy(e->channels, c->channels, sizeof(e->channels));
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* Removes c from the registry and drops what was queued for it (worker thread). */
static void reg_remove(ws_conn_t *c)
{
    if (!c->registered)
        return;
    c->registered = 0;
    ws_registry_t *r = c->w->srv->ws_registry;
    pthread_mutex_lock(&r->lock);
    for (reg_entry_t **pp = &r->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->conn == c) {
            reg_entry_t *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    /* No push can name c any more; purge the queue of what already did. */
    worker_t *w = c->w;
    pthread_mutex_lock(&w->push_lock);
    for (push_item_t **pp = (push_item_t **)&w->push_head; *pp;) {
        if ((*pp)->conn == c) {
            push_item_t *it = *pp;
            *pp = it->next;
            free(it);
        } else {
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&w->push_lock);
    c->registered = 0;
}

/* ---- connection lifecycle -------------------------------------------------------- */

static void conn_free(ws_conn_t *c)
{
    worker_t *w = c->w;
    int draining = w->draining;
    /* Chats first: they point at this connection. */
    while (c->n_chats > 0) {
        void *chat = c->chats[--c->n_chats];
        proxy_ws_gone(chat);
    }
    reg_remove(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->ws_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->timer)
        event_free(c->timer);
    if (c->ctx)
        wslay_event_context_free(c->ctx);
    evhttp_clear_headers(&c->headers);
    if (c->evcon)
        evhttp_connection_free(c->evcon); /* frees the request, the bufferevent, the socket */
    config_unref(c->cfg);
    free(c);
    if (draining)
        worker_request_ended(w); /* the last connection may let the worker stop */
}

static void flush_out(ws_conn_t *c)
{
    if (wslay_event_want_write(c->ctx))
        wslay_event_send(c->ctx);
}

/* Frees the connection once wslay has nothing more to do and the output is written. */
static void maybe_finish(ws_conn_t *c)
{
    if (wslay_event_want_read(c->ctx) || wslay_event_want_write(c->ctx)) {
        if (!c->closing)
            return;
    }
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 && !c->closing)
        return;
    if ((!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx)) || c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
    }
}

static void close_with(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (c->closing)
        return;
    wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    flush_out(c);
    c->closing = 1;
    /* A closing connection takes no push and counts against no key's limit. */
    reg_remove(c);
    wslay_event_shutdown_read(c->ctx);
    /* Stop reading; free once the close frame is written (write callback), or after
     * CLOSE_GRACE_MS when the peer does not read it (it would hold its socket for good). */
    bufferevent_disable(c->bev, EV_READ);
    struct timeval grace = {CLOSE_GRACE_MS / 1000, (CLOSE_GRACE_MS % 1000) * 1000};
    if (c->timer)
        evtimer_add(c->timer, &grace);
    maybe_finish(c);
}

void ws_close_slow(ws_conn_t *c)
{
    close_with(c, 1013, "consumer too slow");
}

void ws_send_text(ws_conn_t *c, const char *text, size_t len)
{
    if (c->closing)
        return;
    if (ws_backlog(c) + len > (size_t)c->cfg->realtime.max_queue_bytes) {
        /* A consumer that falls behind is let go rather than buffered without end. */
        log_warn("event=ws_slow_consumer conn=%llu backlog=%zu", (unsigned long long)c->id,
                 ws_backlog(c));
        close_with(c, 1013, "consumer too slow");
        return;
    }
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (wslay_event_queue_msg(c->ctx, &msg) == 0)
        flush_out(c);
}

static void send_json(ws_conn_t *c, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        ws_send_text(c, s, strlen(s));
        free(s);
    }
    cJSON_Delete(o);
}

static void send_error(ws_conn_t *c, const char *id, const char *type, const char *code,
                       const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    if (id)
        cJSON_AddStringToObject(o, "id", id);
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    send_json(c, o);
}

size_t ws_backlog(const ws_conn_t *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) +
           wslay_event_get_queued_msg_length(c->ctx);
}

int ws_chat_add(ws_conn_t *c, void *chat)
{
    if (c->n_chats == MAX_CHATS)
        return -1;
    c->chats[c->n_chats++] = chat;
    return 0;
}

void ws_chat_finished(ws_conn_t *c, void *chat)
{
    for (int i = 0; i < c->n_chats; i++)
        if (c->chats[i] == chat) {
            c->chats[i] = c->chats[--c->n_chats];
            break;
        }
    /* Closed from the timer, not here: the caller still holds c. */
    if (c->going_away && c->n_chats == 0 && c->timer) {
        struct timeval now = {0, 0};
        evtimer_add(c->timer, &now);
    }
}

void ws_worker_going_away(worker_t *w)
{
    for (ws_conn_t *c = w->ws_conns, *next; c; c = next) {
        next = c->next; /* close_with may free c */
        c->going_away = 1;
        if (c->n_chats == 0)
            close_with(c, 1001, "going away");
    }
}

struct evkeyvalq *ws_headers(ws_conn_t *c)
{
    return &c->headers;
}

/* ---- messages ---------------------------------------------------------------------- */

static void authenticate(ws_conn_t *c, const config_client_t *client)
{
    c->client = client;
    c->authed = 1;
    snprintf(c->user, sizeof(c->user), "%s", client ? client->user : "");
}

static void handle_auth(ws_conn_t *c, const wsmsg_t *m)
{
    const config_client_t *client = NULL;
    if (c->cfg->n_clients > 0) {
        /* A client key, or the session token a browser page was given. */
        if (m->token) {
            server_t *srv = c->w->srv;
            client = clientauth_find(c->cfg, m->token);
            if (!client)
                client = clientauth_token_check(c->cfg, m->token, wall_ms() / 1000,
                                                srv->session_secret, srv->session_secret_len);
        }
        if (!client) {
            close_with(c, 4401, "unauthorized");
            return;
        }
    }
    authenticate(c, client);
    if (reg_update(c) < 0) {
        close_with(c, 1008, "too many connections for this key");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "auth_success");
    if (client)
        cJSON_AddStringToObject(o, "user", client->user);
    else
        cJSON_AddNullToObject(o, "user");
    send_json(c, o);
}

static void handle_subscribe(ws_conn_t *c, const wsmsg_t *m)
{
    int sub = m->kind == WSMSG_SUBSCRIBE;
    if (!m->channel) {
        send_error(c, NULL, "invalid_request_error", "invalid_channel",
                   "`channel` must be a non-empty string of at most 127 bytes");
        return;
    }
    int at = -1;
    for (int i = 0; i < c->n_channels; i++)
        if (strcmp(c->channels[i], m->channel) == 0)
            at = i;
    if (sub && at < 0) {
        if (c->n_channels == MAX_CHANNELS) {
            send_error(c, NULL, "invalid_request_error", "too_many_channels",
                       "at most 16 channels per connection");
            return;
        }
        snprintf(c->channels[c->n_channels++], 128, "%s", m->channel);
    } else if (!sub && at >= 0) {
        memmove(c->channels[at], c->channels[c->n_channels - 1], 128);
        c->n_channels--;
    }
    reg_update(c);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", sub ? "subscribed" : "unsubscribed");
    cJSON_AddStringToObject(o, "channel", m->channel);
    send_json(c, o);
}

static void handle_chat(ws_conn_t *c, wsmsg_t *m)
{
    if (c->going_away) { /* the worker drains: no new work, or it never gets to stop */
        send_error(c, m->id, "server_error", "going_away", "the server is shutting down");
        return;
    }
    if (c->client && !(c->client->permissions & CLIENT_PERM_CHAT)) {
        send_error(c, m->id, "invalid_request_error", "permission_denied",
                   "this key may not chat");
        return;
    }
    size_t len = 0;
    char *body = wsmsg_chat_body(m, &len);
    if (!body) {
        send_error(c, m->id, "server_error", "internal_error", "out of memory");
        return;
    }
    proxy_start_ws_chat(c->w, c, c->client, m->id, body, len);
}

/* A reload reaches a long-lived connection at its next message or ping: its limits and
 * its client, which must still be in the config with the same key (a key removed or
 * rotated by a reload is revoked: 4401). 0, or -1 when the connection was closed. */
static int follow_reload(ws_conn_t *c)
{
    config_t *now = worker_config(c->w);
    if (now == c->cfg || c->closing)
        return 0;
    const config_client_t *client = NULL;
    if (c->client) {
        for (size_t i = 0; i < now->n_clients && !client; i++)
            if (strcmp(now->clients[i].name, c->client->name) == 0 &&
                memcmp(now->clients[i].key_sha256, c->client->key_sha256, 32) == 0)
                client = &now->clients[i];
        if (!client) {
            close_with(c, 4401, "key revoked");
            return -1;
        }
    } else if (c->authed && now->n_clients > 0) {
        close_with(c, 4401, "authenticate first"); /* keys are required now */
        return -1;
    }
    if (c->n_chats > 0)
        return 0; /* its chats point into the old snapshot: swap at a later message */
    config_t *old = c->cfg;
    c->cfg = config_ref(now);
    if (c->client) {
        authenticate(c, client);
        reg_update(c);
    }
    config_unref(old);
    return 0;
}

static void on_text(ws_conn_t *c, const uint8_t *data, size_t len)
{
    if (follow_reload(c) < 0)
        return;
    wsmsg_t m;
    switch (wsmsg_parse(data, len, &m)) {
    case WSMSG_BAD_JSON:
        send_error(c, NULL, "invalid_request_error", "invalid_json",
                   "messages must be JSON objects");
        break;
    case WSMSG_AUTH:
        handle_auth(c, &m);
        break;
    default:
        if (!c->authed)
            close_with(c, 4401, "authenticate first");
        else if (m.kind == WSMSG_HEARTBEAT)
            ws_send_text(c, "{\"type\":\"pong\"}", 15);
        else if (m.kind == WSMSG_SUBSCRIBE || m.kind == WSMSG_UNSUBSCRIBE)
            handle_subscribe(c, &m);
        else if (m.kind == WSMSG_CHAT)
            handle_chat(c, &m);
        else
            send_error(c, NULL, "invalid_request_error", "unknown_type",
                       "type must be auth, subscribe, unsubscribe, chat or heartbeat");
        break;
    }
    wsmsg_free(&m);
}

/* ---- wslay callbacks ----------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    ws_conn_t *c = user;
    int n = evbuffer_remove(bufferevent_get_input(c->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)flags;
    ws_conn_t *c = user;
    if (bufferevent_write(c->bev, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    memset(buf, 0, len); /* servers do not mask */
    return 0;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    (void)ctx;
    ws_conn_t *c = user;
    c->last_seen_ms = wall_ms();
    if (arg->opcode == WSLAY_TEXT_FRAME)
        on_text(c, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME)
        close_with(c, 1003, "text messages only");
}

/* ---- bufferevent callbacks -------------------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    ws_conn_t *c = arg;
    c->last_seen_ms = wall_ms();
    if (wslay_event_recv(c->ctx) != 0) {
        /* wslay refused the input (bad frame bits, bad UTF-8): say why, then leave. */
        close_with(c, 1002, "protocol error");
        c->closing = 1;
        maybe_finish(c);
        return;
    }
    flush_out(c);
    maybe_finish(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    ws_conn_t *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) < LOW_WATER) {
        for (int i = 0; i < c->n_chats; i++)
            proxy_ws_drained(c->chats[i]);
    }
    flush_out(c);
    maybe_finish(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    ws_conn_t *c = arg;
    /* EOF or error: nothing more can be sent either. */
    evbuffer_drain(bufferevent_get_output(c->bev), evbuffer_get_length(bufferevent_get_output(c->bev)));
    c->closing = 1;
    conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ws_conn_t *c = arg;
    if (c->closing) { /* CLOSE_GRACE_MS after the close frame was queued */
        conn_free(c);
        return;
    }
    if (c->going_away && c->n_chats == 0) {
        close_with(c, 1001, "going away");
        return;
    }
    if (follow_reload(c) < 0)
        return;
    long long now = wall_ms();
    if (!c->authed && now - c->opened_ms >= c->cfg->realtime.handshake_timeout_ms) {
        close_with(c, 4401, "authenticate first");
        return;
    }
    if (now - c->last_seen_ms >= c->cfg->realtime.idle_timeout_ms) {
        close_with(c, 1001, "idle");
        return;
    }
    struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"", 0};
    wslay_event_queue_msg(c->ctx, &ping);
    flush_out(c);
}

/* ---- handshake ------------------------------------------------------------------- */

int ws_is_upgrade(struct evhttp_request *req)
{
    const char *up = http_header(evhttp_request_get_input_headers(req), "Upgrade");
    return up && strcasecmp(up, "websocket") == 0;
}

static int accept_key(const char *key, char *out, size_t cap)
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char buf[128];
    if (snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID) >= (int)sizeof(buf))
        return -1;
    SHA1((const unsigned char *)buf, strlen(buf), digest);
    if (cap < 29)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    return 0;
}

void ws_accept(worker_t *w, struct evhttp_request *req, const config_client_t *client)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *key = http_header(in, "Sec-WebSocket-Key");
    const char *version = http_header(in, "Sec-WebSocket-Version");
    const char *conn_hdr = http_header(in, "Connection");
    char accept[64];
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !key || strlen(key) != 24 ||
        !conn_hdr || !strcasestr(conn_hdr, "upgrade") || accept_key(key, accept, sizeof(accept)) < 0) {
        http_reply_error(req, 400, "invalid_request_error", "bad_handshake",
                         "Not a valid WebSocket handshake.");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Sec-WebSocket-Version", "13");
        http_reply_error(req, 426, "invalid_request_error", "upgrade_required",
                         "WebSocket version 13 is required.");
        return;
    }
    ws_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        http_reply_error(req, 500, "server_error", NULL, "out of memory");
        return;
    }
    c->w = w;
    c->cfg = config_ref(worker_config(w));
    TAILQ_INIT(&c->headers);
    struct evkeyval *h;
    TAILQ_FOREACH(h, in, next)
    {
        if (strcasecmp(h->key, "Authorization") != 0 && strcasecmp(h->key, "Cookie") != 0)
            evhttp_add_header(&c->headers, h->key, h->value);
    }
    struct wslay_event_callbacks cbs = {recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg};
    if (wslay_event_context_server_init(&c->ctx, &cbs, c) != 0) {
        evhttp_clear_headers(&c->headers);
        config_unref(c->cfg);
        free(c);
        http_reply_error(req, 500, "server_error", NULL, "out of memory");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, (uint64_t)c->cfg->realtime.max_message_bytes);
    if (client || c->cfg->n_clients == 0) {
        authenticate(c, client);
        if (reg_update(c) < 0) {
            wslay_event_context_free(c->ctx);
            evhttp_clear_headers(&c->headers);
            config_unref(c->cfg);
            free(c);
            http_reply_error(req, 429, "rate_limit_error", "too_many_connections",
                             "Too many WebSocket connections for this key.");
            return;
        }
    }
    c->evcon = evhttp_request_get_connection(req);
    c->bev = evhttp_connection_get_bufferevent(c->evcon);
    c->opened_ms = c->last_seen_ms = wall_ms();
    c->next = w->ws_conns;
    if (w->ws_conns)
        w->ws_conns->prev = c;
    w->ws_conns = c;
    /* Take the connection over: our 101, our callbacks, no evhttp timeouts. */
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);
    headguard_release(req); /* frames are not request heads */
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->timer = event_new(w->base, -1, EV_PERSIST, on_timer, c);
    long every = c->cfg->realtime.ping_interval_ms;
    if (!c->authed && c->cfg->realtime.handshake_timeout_ms < every)
        every = c->cfg->realtime.handshake_timeout_ms;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    if (c->timer)
        event_add(c->timer, &tv);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        on_read(c->bev, c);
}

void ws_close_all(worker_t *w)
{
    while (w->ws_conns)
        conn_free(w->ws_conns);
}

/* ---- push ------------------------------------------------------------------------ */

static int in_targets(const cJSON *targets, const char *user)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, targets)
    {
        if (cJSON_IsString(t) && user[0] && strcmp(t->valuestring, user) == 0)
            return 1;
    }
    return 0;
}

int ws_push(server_t *srv, const char *body, size_t len, char **answer)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return 500;
    memcpy(copy, body, len);
    copy[len] = '\0';
    cJSON *doc = cJSON_Parse(copy);
    free(copy);
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(doc, "targets");
    const cJSON *channel = cJSON_GetObjectItemCaseSensitive(doc, "channel");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(doc, "message");
    if (!cJSON_IsObject(doc) || (targets && !cJSON_IsArray(targets)) ||
        (channel && !cJSON_IsString(channel)) || !message || (!targets && !channel)) {
        cJSON_Delete(doc);
        *answer = http_error_body("invalid_request_error", "invalid_push",
                                  "body must be {\"targets\":[user...],\"channel\":\"c\","
                                  "\"message\":<JSON>} with targets and/or channel");
        return 400;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "type", "push");
    if (cJSON_IsString(channel))
        cJSON_AddStringToObject(out, "channel", channel->valuestring);
    else
        cJSON_AddNullToObject(out, "channel");
    cJSON_AddItemToObject(out, "message", cJSON_Duplicate(message, 1));
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    size_t tlen = text ? strlen(text) : 0;
    int delivered = 0;
    cJSON *offline = cJSON_CreateArray();
    ws_registry_t *r = srv->ws_registry;
    pthread_mutex_lock(&r->lock);
    for (reg_entry_t *e = r->head; text && e; e = e->next) {
        int hit = targets && in_targets(targets, e->user);
        for (int i = 0; !hit && cJSON_IsString(channel) && i < e->n_channels; i++)
            hit = strcmp(e->channels[i], channel->valuestring) == 0;
        if (!hit)
            continue;
        push_item_t *it = malloc(sizeof(*it) + tlen);
        if (!it)
            continue;
        it->conn = e->conn;
        it->id = e->id;
        it->len = tlen;
        memcpy(it->text, text, tlen);
        worker_t *w = e->w;
        pthread_mutex_lock(&w->push_lock);
        it->next = NULL;
        push_item_t **tail = (push_item_t **)&w->push_head;
        while (*tail)
            tail = &(*tail)->next;
        *tail = it;
        pthread_mutex_unlock(&w->push_lock);
        event_active(w->push_ev, EV_TIMEOUT, 0);
        delivered++;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, targets)
    {
        if (!cJSON_IsString(t))
            continue;
        int online = 0;
        for (reg_entry_t *e = r->head; e && !online; e = e->next)
            online = strcmp(e->user, t->valuestring) == 0;
        if (!online)
            cJSON_AddItemToArray(offline, cJSON_CreateString(t->valuestring));
    }
    pthread_mutex_unlock(&r->lock);
    free(text);
    cJSON_Delete(doc);
    cJSON *ans = cJSON_CreateObject();
    cJSON_AddNumberToObject(ans, "delivered", delivered);
    cJSON_AddItemToObject(ans, "offline", offline);
    *answer = cJSON_PrintUnformatted(ans);
    cJSON_Delete(ans);
    return 200;
}

void ws_worker_drain(worker_t *w)
{
    /* One at a time: sending may close a connection, which purges its queued items. */
    for (;;) {
        pthread_mutex_lock(&w->push_lock);
        push_item_t *it = w->push_head;
        if (it)
            w->push_head = it->next;
        pthread_mutex_unlock(&w->push_lock);
        if (!it)
            return;
        ws_send_text(it->conn, it->text, it->len);
        free(it);
    }
}

void ws_worker_drain_discard(worker_t *w)
{
    pthread_mutex_lock(&w->push_lock);
    push_item_t *it = w->push_head;
    w->push_head = NULL;
    pthread_mutex_unlock(&w->push_lock);
    while (it) {
        push_item_t *next = it->next;
        free(it);
        it = next;
    }
}
