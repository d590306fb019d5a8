/* headguard: watches the raw bytes of each client request head, before libevent's
 * evhttp parses them, for what evhttp cannot report:
 *   - a NUL byte in the request line or a header (evhttp keeps header values as C
 *     strings, so it silently cuts the line at the NUL);
 *   - a head that arrives too slowly in total (evhttp's timeout is an idle timeout that
 *     every byte resets, so a client trickling one byte per second would keep its
 *     connection forever).
 *
 * How: the worker's evhttp creates each connection's bufferevent through
 * headguard_bevcb (evhttp_set_bevcb), which adds an evbuffer callback on its input. The
 * callback sees every byte read before evhttp's parser does. Per-connection state lives
 * in a per-worker table indexed by file descriptor (no allocation per connection and
 * nothing to free when evhttp frees a connection: a descriptor is reused only after its
 * connection closed, and the first read of a new connection resets the slot).
 *
 * A head that is too slow is answered 408 on the socket (only when nothing else is
 * queued for it) and the socket is shut down; evhttp then sees EOF and frees the
 * connection the usual way. A NUL is remembered and reported by headguard_verdict when
 * the request reaches the handler (if evhttp accepts the cut line at all).
 *
 * Threading: one headguard per worker; all calls on that worker's thread. The
 * callbacks find their worker's headguard through a thread-local pointer that
 * headguard_attach sets.
 * Ownership: headguard_new returns an object owned by the caller (headguard_free). */
#ifndef SWITCHYARD_HEADGUARD_H
#define SWITCHYARD_HEADGUARD_H

#include <event2/event.h>
#include <event2/http.h>

typedef struct headguard headguard_t;

enum headguard_verdict {
    HEADGUARD_OK = 0,
    HEADGUARD_NUL = 1,  /* a NUL byte in the request line or headers */
    HEADGUARD_SLOW = 2, /* the head took longer than head_timeout_ms */
};

/* head_timeout_ms: the most a request head may take from its first byte to its blank
 * line. NULL on allocation failure. */
headguard_t *headguard_new(long head_timeout_ms);
void headguard_free(headguard_t *g);

/* Makes g the headguard of the calling thread (the worker's loop thread). */
void headguard_attach(headguard_t *g);

/* For evhttp_set_bevcb(http, headguard_bevcb, g). */
struct bufferevent *headguard_bevcb(struct event_base *base, void *g);

/* Called once per request from the request handler: what the guard saw of this
 * request's head. Starts watching the next head on the connection (bytes already
 * buffered, from a pipelining client, are checked now). */
enum headguard_verdict headguard_verdict(struct evhttp_request *req);

/* The connection stops being HTTP (a WebSocket takeover): its bytes are no longer
 * request heads. */
void headguard_release(struct evhttp_request *req);

#endif
