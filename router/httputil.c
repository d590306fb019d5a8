/* httputil — shared reply helpers. See httputil.h. */
#include "httputil.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
/* libevent 2.1 has no getter for the request's HTTP version: http_struct.h, its
 * public compatibility header, is the way (read only, one place). */
#include <event2/http_struct.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *http_error_body(const char *type, const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    char *out = NULL;
    if (err && cJSON_AddStringToObject(err, "message", message ? message : "") &&
        cJSON_AddStringToObject(err, "type", type ? type : "api_error") &&
        cJSON_AddNullToObject(err, "param") &&
        (code ? cJSON_AddStringToObject(err, "code", code) : cJSON_AddNullToObject(err, "code")))
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

void http_reply_start_stream(struct evhttp_request *req, int status, const char *reason)
{
    if (req->major == 1 && req->minor == 0) {
        /* evhttp keeps a 1.0 connection only when the request asked for keep-alive */
        evhttp_remove_header(evhttp_request_get_input_headers(req), "Connection");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    }
    evhttp_send_reply_start(req, status, reason);
}

void http_flush_reply(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    if (!bev)
        return;
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    if (fd < 0 || evbuffer_get_length(out) == 0)
        return;
    /* The bufferevent keeps its output's front frozen so that only its own write
     * callback drains it; this is that write, done now. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, fd);
    evbuffer_freeze(out, 1);
    /* All written: tell evhttp as its write callback would (it finishes the request,
     * and may free the connection: nothing of bev is touched after this). Anything
     * left, or an error, stays with the bufferevent, which meets it on its next write. */
    if (n > 0 && evbuffer_get_length(out) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
}

void http_reply_json(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b && body)
        evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, status, http_reason(status), b);
    if (b)
        evbuffer_free(b);
}

void http_reply_error(struct evhttp_request *req, int status, const char *type, const char *code,
                      const char *message)
{
    char *body = http_error_body(type, code, message);
    http_reply_json(req, status, body ? body : "{\"error\":{\"message\":\"internal error\"}}");
    free(body);
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: break;
    }
    if (status >= 200 && status < 300)
        return "OK";
    if (status >= 400 && status < 500)
        return "Client Error";
    return "Error";
}

static const unsigned char fold[256] = {
#define R(c) [c] = (unsigned char)(c - 'A' + 'a')
    R('A'), R('B'), R('C'), R('D'), R('E'), R('F'), R('G'), R('H'), R('I'),
    R('J'), R('K'), R('L'), R('M'), R('N'), R('O'), R('P'), R('Q'), R('R'),
    R('S'), R('T'), R('U'), R('V'), R('W'), R('X'), R('Y'), R('Z'),
#undef R
};

static inline unsigned char lower(unsigned char c)
{
    return fold[c] ? fold[c] : c;
}

const char *http_header(const struct evkeyvalq *headers, const char *name)
{
    const unsigned char *n = (const unsigned char *)name;
    unsigned char first = lower(n[0]);
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, headers, next) {
        const unsigned char *k = (const unsigned char *)kv->key;
        if (lower(k[0]) != first)
            continue;
        if (!first)
            return kv->value; /* both empty */
        size_t i = 1;
        while (n[i] && lower(k[i]) == lower(n[i]))
            i++;
        if (!n[i] && !k[i])
            return kv->value;
    }
    return NULL;
}

int http_value_unsafe(const char *v)
{
    /* Every header of every answer passes here: a table and no early exit, rather than
     * two compares and a branch per byte. */
    static const unsigned char bad[256] = {
        [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
        [0x07] = 1, [0x08] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1,
        [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1,
        [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1,
        [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [0x7f] = 1};
    const unsigned char *p = (const unsigned char *)v;
    size_t n = strlen(v);
    unsigned char any = 0;
    for (size_t i = 0; i < n; i++)
        any |= bad[p[i]];
    return any;
}

int http_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    /* Compare over b's length whatever a is, so timing says nothing of a. */
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)((i < la ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return diff == 0;
}

const char *http_bearer(struct evkeyvalq *headers)
{
    const char *v = http_header(headers, "Authorization");
    if (!v || strncasecmp(v, "Bearer ", 7) != 0)
        return NULL;
    v += 7;
    while (*v == ' ')
        v++;
    return *v ? v : NULL;
}
