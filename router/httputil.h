/*
 * httputil — small helpers shared by the proxy and admin front ends:
 * OpenAI-shaped error bodies, JSON replies, header checks.
 *
 * Replies are sent with evhttp_send_reply and so end the request; the caller
 * must not touch req afterwards. Functions that build strings return malloc'd,
 * NUL-terminated text (NULL on allocation failure).
 */
#ifndef SWITCHYARD_HTTPUTIL_H
#define SWITCHYARD_HTTPUTIL_H

#include <stddef.h>

#include <event2/http.h>

/* {"error":{"message":M,"type":T,"param":null,"code":C}} ; code may be NULL (null). */
char *http_error_body(const char *type, const char *code, const char *message);

/* Sends body (may be NULL) with Content-Type: application/json. */
void http_reply_json(struct evhttp_request *req, int status, const char *body);

/* Sends an OpenAI-shaped error. */
void http_reply_error(struct evhttp_request *req, int status, const char *type, const char *code,
                      const char *message);

/* Reason phrase for a status code ("OK", "Bad Gateway", ...). */
const char *http_reason(int status);

/* After evhttp_send_reply: writes the reply to the socket now rather than on the next
 * loop iteration (evhttp only enables the write event), and when it all went out,
 * completes the request as evhttp's write callback would. Saves a loop iteration and
 * the epoll_ctl pair per reply; a reply that does not fit the socket buffer carries on
 * the usual way. Call with nothing of the request or connection used afterwards. */
void http_flush_reply(struct evhttp_connection *evcon);

/* Starts a reply whose length is not known (a stream): chunked for HTTP/1.1; an
 * HTTP/1.0 client, which has no chunks, gets a body that ends with the connection
 * (evhttp would announce the still-empty body's Content-Length to a 1.0 keep-alive
 * client and never end it). */
void http_reply_start_stream(struct evhttp_request *req, int status, const char *reason);

/* evhttp_find_header's answer (the first header named `name`, any case, or NULL),
 * cheaper: libevent lowers both names a character at a time through a function call,
 * ~20 instructions for each header it passes; this compares the first letter from a
 * table and only then the rest. A request looks up some twenty names. */
const char *http_header(const struct evkeyvalq *headers, const char *name);

/* 1 when the header value holds a byte that must never be forwarded (CR, LF, NUL, other
 * controls but TAB). */
int http_value_unsafe(const char *v);

/* Constant-time comparison of two NUL-terminated secrets; 1 when equal. */
int http_secret_equal(const char *a, const char *b);

/* The token of "Authorization: Bearer <token>" in headers, or NULL. */
const char *http_bearer(struct evkeyvalq *headers);

#endif
