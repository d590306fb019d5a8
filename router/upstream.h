/*
 * upstream — libcurl multi driven by one worker's libevent loop (the
 * hiperfifo pattern), plus a small pool of reusable easy handles.
 *
 * One upstream_t per worker thread; nothing in it is shared between threads.
 * A transfer is an upstream_xfer_t embedded in its owner's struct and attached
 * to the easy handle with CURLOPT_PRIVATE. When libcurl finishes it, the handle
 * is removed from the multi first and then xfer->on_done runs, outside every
 * libcurl callback, so on_done may free the owner or start another transfer.
 *
 * upstream_cancel removes a transfer at once when called from a libevent
 * callback; called from inside a libcurl callback it must not be (DESIGN.md §6):
 * there, return CURL_WRITEFUNC_ERROR / abort instead and let on_done run.
 *
 * Sockets are upstream's: upstream_start sets CURLOPT_OPENSOCKETFUNCTION (its errno
 * goes to xfer->open_errno) and CURLOPT_CLOSESOCKETFUNCTION, which keep the worker's
 * table of libevent watches right (a connected socket stays registered while idle,
 * see upstream.c); callers must not set those options themselves.
 */
#ifndef SWITCHYARD_UPSTREAM_H
#define SWITCHYARD_UPSTREAM_H

#include <stdint.h>

#include <curl/curl.h>
#include <event2/event.h>

typedef struct upstream upstream_t;
typedef struct upstream_xfer upstream_xfer_t;

struct upstream_xfer {
    CURL *easy;
    void (*on_done)(upstream_xfer_t *x, CURLcode rc);
    /* Optional. A re-check run (upstream_delivered) handed this transfer nothing and
     * it has not ended: libcurl 7.88 may still hold the end of its stream, which it
     * only notices when more bytes reach the connection. Called from a libevent
     * callback, like on_done; may cancel the transfer or free its owner. */
    void (*on_stuck)(upstream_xfer_t *x);
    upstream_t *u;
    int open_errno; /* errno of this transfer's last failed socket(), else 0 */
    /* Upstream's own from here on, but `held` and `held_ms`, which the owner reads. */
    int bufsize;    /* the receive buffer size */
    /* The re-check of transfers that libcurl may have left with bytes it will not
     * deliver (upstream_delivered), or the line at an HTTP/2 gate: never both. */
    union {
        struct {
            upstream_xfer_t *recheck_next, *recheck_prev;
        };
        upstream_xfer_t *held_next;
    };
    void *gate;             /* its HTTP/2 origin's gate (h2gate.h), or NULL */
    curl_socket_t conn_fd;  /* the socket libcurl connected for it, when it opened one */
    /* While held: when it began waiting (ms, a monotonic clock mod 2^32); once
     * started: how long it waited, which its first-byte clock must not count. */
    uint32_t held_ms;
    unsigned active : 1;        /* added to the multi (or held) and not finished */
    unsigned multiplexed : 1;   /* set by the owner: its connection is HTTP/2 */
    unsigned recheck : 1;       /* on the worker's re-check list */
    unsigned delivered : 1;     /* got bytes since the last re-check */
    unsigned held : 1;          /* waiting at its gate, not in the multi yet */
    unsigned opener : 1;        /* counted in its gate's opening */
    unsigned opened_socket : 1; /* libcurl opened a socket for it */
    unsigned prereq_seen : 1;   /* reached CURLOPT_PREREQFUNCTION (has its connection) */
};

upstream_t *upstream_new(struct event_base *base);
void upstream_free(upstream_t *u); /* transfers must have been cancelled */

/* Sets x->easy to a handle from the pool (reset, CURLOPT_NOSIGNAL and the fixed
 * options set), with a small receive buffer when small (an SSE answer over HTTP/2)
 * is asked. 0, or -1 when no handle could be made. */
int upstream_easy_get(upstream_t *u, upstream_xfer_t *x, int small);
void upstream_easy_put(upstream_t *u, CURL *easy);
/* Bytes libcurl 7.88 allocates for a small receive buffer and for the usual one (its
 * size + 1): main() has curlmem serve these sizes exactly. */
size_t upstream_stream_buffer_bytes(void);
size_t upstream_body_buffer_bytes(void);

/* Sets easy's URL; a URL seen before on this worker is not parsed again. 0 or -1. */
int upstream_set_url(upstream_t *u, CURL *easy, const char *url);

/* Starts x (x->easy configured by the caller). h2_url: the provider URL of a transfer
 * that asks for HTTP/2, NULL for any other; such a transfer may wait in line at its
 * origin's gate, while a connection there is being opened and none has room, and
 * then starts by itself (h2gate.h). 0 or -1. */
int upstream_start(upstream_t *u, upstream_xfer_t *x, const char *h2_url);

/* Removes an active transfer (waiting at a gate or not) without calling on_done. Not
 * from libcurl callbacks. */
void upstream_cancel(upstream_t *u, upstream_xfer_t *x);

/* The write callback of a transfer on a multiplexed (HTTP/2) connection reports
 * each delivery here. libcurl 7.88 stops feeding a stream whose receive buffer it
 * filled, keeps the rest, and may never come back for it when the connection then
 * goes quiet: the stream's last bytes and its end stay inside libcurl. A transfer
 * that got a full buffer is run again, once its callback has returned, until a run
 * delivers nothing (docs/DECISIONS.md, "HTTP/2 bursts"). */
void upstream_delivered(upstream_xfer_t *x, size_t len);

/* Resumes a transfer paused by CURL_WRITEFUNC_PAUSE (from a libevent callback). */
void upstream_resume(upstream_t *u, upstream_xfer_t *x);

/* 1 when this libcurl (7.88.x) frees a transfer's upload buffer on
 * CURLOPT_UPLOAD_BUFFERSIZE and never reads it once the body is sent. */
int upstream_can_trim_upload(void);

/* 1 while libcurl is running one of our callbacks on this worker. */
int upstream_in_callback(const upstream_t *u);

#endif
