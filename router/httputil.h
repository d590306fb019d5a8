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

/* 1 when the header value holds a byte that must never be forwarded (CR, LF, NUL, other
 * controls but TAB). */
int http_value_unsafe(const char *v);

/* Constant-time comparison of two NUL-terminated secrets; 1 when equal. */
int http_secret_equal(const char *a, const char *b);

/* The token of "Authorization: Bearer <token>" in headers, or NULL. */
const char *http_bearer(struct evkeyvalq *headers);

#endif
