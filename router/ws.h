/*
 * ws — WebSocket clients (wslay framing) on the main listener, and push.
 *
 * GET /v1/realtime, or GET /v1/chat/completions with `Upgrade: websocket`, is
 * answered with 101 and the connection is taken over from evhttp (libevent 2.1
 * has no API for it: the bufferevent's callbacks are replaced and the request is
 * never completed; the connection is freed with evhttp_connection_free when the
 * WebSocket ends, and all connections are closed before the worker's evhttp is).
 * Messages are JSON: auth, subscribe/unsubscribe, chat (routed by proxy exactly
 * like POST /v1/chat/completions), heartbeat. Each chat's answer reaches only the
 * connection that asked.
 *
 * Push: a process-wide registry (one mutex, touched on connect, disconnect,
 * subscribe and push only, never per chat chunk) maps users and channels to
 * connections; a push enqueues to the owning workers and wakes them.
 *
 * A ws_conn_t belongs to its worker thread. Errors close the connection with the
 * RFC 6455 code that fits (1002 protocol, 1003 unsupported data, 1008 policy,
 * 1009 too big, 1013 try again later, 4401 unauthorized).
 */
#ifndef SWITCHYARD_WS_H
#define SWITCHYARD_WS_H

#include <stddef.h>

#include <event2/http.h>

#include "config.h"
#include "server.h"

typedef struct ws_conn ws_conn_t;
typedef struct ws_registry ws_registry_t;

/* 1 when req asks for a WebSocket upgrade. */
int ws_is_upgrade(struct evhttp_request *req);

/* Answers the upgrade (101, or an HTTP error) for an authenticated-or-open request.
 * client: the key's client when the handshake carried one, else NULL. */
void ws_accept(worker_t *w, struct evhttp_request *req, const config_client_t *client);

/* For proxy: a chat's answer, its backlog, and the end of a chat. */
void ws_send_text(ws_conn_t *c, const char *text, size_t len);
size_t ws_backlog(const ws_conn_t *c);
int ws_chat_add(ws_conn_t *c, void *chat); /* -1 when the connection has too many */
void ws_chat_finished(ws_conn_t *c, void *chat);
/* A client that stopped reading: closes the connection with 1013. */
void ws_close_slow(ws_conn_t *c);
struct evkeyvalq *ws_headers(ws_conn_t *c);

/* Closes every connection of the worker (shutdown), before its evhttp is freed. */
void ws_close_all(worker_t *w);
/* The worker drains: every connection is closed with 1001, those with chats in flight
 * once their chats are done. */
void ws_worker_going_away(worker_t *w);

/* Process-wide registry (server_t owns one). */
ws_registry_t *ws_registry_new(void);
void ws_registry_free(ws_registry_t *r);

/* POST /v1/push: body {"targets":[user...],"channel":"c","message":<any JSON>}.
 * Returns the HTTP status; *answer is malloc'd JSON ({"delivered":n,"offline":[...]} or an
 * OpenAI-shaped error). */
int ws_push(server_t *srv, const char *body, size_t len, char **answer);

/* Drains the worker's push queue (runs on the worker's loop when woken). */
void ws_worker_drain(worker_t *w);
void ws_worker_drain_discard(worker_t *w); /* shutdown: drops what is left */

#endif
