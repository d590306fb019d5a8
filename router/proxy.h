/*
 * proxy — the life of one client request under /v1: validate, decide the
 * variant, run the upstream attempt, commit once, stream or reply, free once.
 *
 * A proxy_req_t belongs to the worker that accepted it and lives until both
 * sides are finished: the client side (reply handed to evhttp, or client gone)
 * and the upstream side (no transfer in flight). Errors reach the client as
 * OpenAI-shaped JSON before the commit point and as an SSE `event: error` after.
 */
#ifndef SWITCHYARD_PROXY_H
#define SWITCHYARD_PROXY_H

#include <event2/http.h>

#include "server.h"

/* evhttp's generic callback for the main listener (arg = worker_t *). */
void proxy_handle(struct evhttp_request *req, void *arg);

/* Shutdown: cancels and frees every live request of the worker (worker thread). */
void proxy_abort_all(worker_t *w);

struct ws_conn;
/*
 * A chat from a WebSocket connection, routed like POST /v1/chat/completions. body is
 * the request JSON (ownership passes). Returns the chat, or NULL when it ended at once
 * (an error message was sent). The chat registers itself with the connection.
 */
void *proxy_start_ws_chat(worker_t *w, struct ws_conn *ws, const config_client_t *client,
                          const char *id, char *body, size_t len);
void proxy_ws_gone(void *chat);    /* its connection is closing: abandon the chat */
void proxy_ws_drained(void *chat); /* its connection's backlog went down: resume */

#endif
