/* headguard: NUL bytes and slow heads, seen on the raw bytes (see headguard.h). */
#include "headguard.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

enum phase {
    PH_HEAD = 0, /* reading a request head: every byte is checked */
    PH_BODY,     /* the blank line was seen: body bytes are not ours to judge */
    PH_OFF,      /* the connection is no longer HTTP (WebSocket) */
};

/* Line state while in PH_HEAD, to find the blank line that ends a head. evhttp accepts
 * "\n" as well as "\r\n" as a line end, so both count. */
enum nl {
    NL_TEXT = 0, /* inside a line */
    NL_START,    /* just after a line end */
    NL_START_CR, /* a CR right after a line end */
};

typedef struct {
    struct bufferevent *bev; /* the connection this slot describes */
    int64_t head_start_ms;   /* first byte of the current head; 0 = none yet */
    uint8_t phase, nl, verdict;
    uint8_t watching; /* on_input is on the connection's input buffer */
} slot_t;

struct headguard {
    long head_timeout_ms;
    slot_t *slots; /* indexed by descriptor */
    size_t n_slots;
};

static _Thread_local headguard_t *tls_guard;

headguard_t *headguard_new(long head_timeout_ms)
{
    headguard_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->head_timeout_ms = head_timeout_ms;
    return g;
}

void headguard_free(headguard_t *g)
{
    if (!g)
        return;
    if (tls_guard == g)
        tls_guard = NULL;
    free(g->slots);
    free(g);
}

void headguard_attach(headguard_t *g)
{
    tls_guard = g;
}

static slot_t *slot_for(headguard_t *g, evutil_socket_t fd, int grow)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= g->n_slots) {
        if (!grow)
            return NULL;
        size_t n = g->n_slots ? g->n_slots : 256;
        while (n <= (size_t)fd)
            n *= 2;
        slot_t *s = realloc(g->slots, n * sizeof *s);
        if (!s)
            return NULL;
        memset(s + g->n_slots, 0, (n - g->n_slots) * sizeof *s);
        g->slots = s;
        g->n_slots = n;
    }
    return &g->slots[fd];
}

/* Monotonic (a wall-clock step must neither fake nor hide a slow head); the coarse
 * clock is a vDSO read at tick resolution, plenty for a limit counted in seconds. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void slot_new_head(slot_t *s)
{
    s->phase = PH_HEAD;
    s->nl = NL_TEXT;
    s->verdict = HEADGUARD_OK;
    s->head_start_ms = 0;
}

/* Runs the head state machine over bytes [p, p+n), a line at a time (memchr finds
 * the line ends and any NUL, so a head costs a few calls, not a branch per byte). */
static void scan(slot_t *s, const unsigned char *p, size_t n)
{
    while (n > 0 && s->phase == PH_HEAD) {
        const unsigned char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        if (seg > 0) {
            if (s->verdict == HEADGUARD_OK && memchr(p, '\0', seg))
                s->verdict = HEADGUARD_NUL;
            /* Only a lone CR right after a line end keeps the line blank. */
            s->nl = (seg == 1 && p[0] == '\r' && s->nl == NL_START) ? NL_START_CR : NL_TEXT;
        }
        if (!nl)
            return;
        if (s->nl != NL_TEXT)
            s->phase = PH_BODY;
        s->nl = NL_START;
        p += seg + 1;
        n -= seg + 1;
    }
}

/* Scans the last n bytes of buf. */
static void scan_tail(slot_t *s, struct evbuffer *buf, size_t n)
{
    size_t len = evbuffer_get_length(buf);
    if (n == 0 || n > len)
        return;
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(buf, &at, len - n, EVBUFFER_PTR_SET) < 0)
        return;
    struct evbuffer_iovec v[8];
    while (n > 0 && s->phase == PH_HEAD) {
        int k = evbuffer_peek(buf, (ev_ssize_t)n, &at, v, 8);
        if (k <= 0)
            return;
        size_t done = 0;
        for (int i = 0; i < k && i < 8 && done < n; i++) {
            size_t take = v[i].iov_len < n - done ? v[i].iov_len : n - done;
            scan(s, v[i].iov_base, take);
            done += take;
        }
        if (done == 0)
            return;
        n -= done;
        if (n > 0 && evbuffer_ptr_set(buf, &at, done, EVBUFFER_PTR_ADD) < 0)
            return;
    }
}

#define TIMEOUT_BODY                                                                      \
    "{\"error\":{\"message\":\"The request headers took too long to arrive.\",\"type\":"        \
    "\"invalid_request_error\",\"param\":null,\"code\":\"request_timeout\"}}\n"
static const char TIMEOUT_REPLY[] = "HTTP/1.1 408 Request Timeout\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Connection: close\r\n"
                                    "Content-Length: %zu\r\n\r\n" TIMEOUT_BODY;

static void cut_off(struct bufferevent *bev, evutil_socket_t fd)
{
    /* Only when nothing else is queued, so the 408 cannot interleave with a reply. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        char reply[512];
        int n = snprintf(reply, sizeof reply, TIMEOUT_REPLY, sizeof TIMEOUT_BODY - 1);
        if (n > 0 && (size_t)n < sizeof reply) {
            ssize_t w = send(fd, reply, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
        }
    }
    /* Not close(): evhttp still owns the descriptor; it reads EOF next and frees the
     * connection itself. */
    shutdown(fd, SHUT_RDWR);
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    headguard_t *g = tls_guard;
    struct bufferevent *bev = arg;
    if (!g || info->n_added == 0)
        return;
    evutil_socket_t fd = bufferevent_getfd(bev);
    slot_t *s = slot_for(g, fd, 1);
    if (!s)
        return;
    if (s->bev != bev) {
        /* Not reached for a fresh connection (on_first_input resets the slot); kept so
         * that a slot is never read for another connection. */
        s->bev = bev;
        slot_new_head(s);
    }
    s->watching = 1; /* running, so attached, whatever the slot said */
    if (s->phase != PH_HEAD)
        return;
    int64_t now = now_ms();
    if (s->head_start_ms == 0)
        s->head_start_ms = now;
    scan_tail(s, buf, info->n_added);
    if (s->phase == PH_BODY) {
        /* The head is whole. evhttp now drains it a line at a time, and libevent would
         * run this callback for every drain (17 a request): off until the handler asks
         * for the next head (headguard_verdict). libevent saved the next entry before
         * calling us, so removing ourselves here is safe. */
        evbuffer_remove_cb(buf, on_input, bev);
        s->watching = 0;
        return;
    }
    if (s->phase == PH_HEAD && now - s->head_start_ms > g->head_timeout_ms &&
        s->verdict != HEADGUARD_SLOW) {
        s->verdict = HEADGUARD_SLOW;
        cut_off(bev, fd);
    }
}

/* The first bytes of a new connection: whatever the slot held belonged to a connection
 * that has closed (descriptors are unique among open connections). */
static void on_first_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    headguard_t *g = tls_guard;
    struct bufferevent *bev = arg;
    if (!g || info->n_added == 0)
        return;
    slot_t *s = slot_for(g, bufferevent_getfd(bev), 1);
    if (s) {
        s->bev = bev;
        slot_new_head(s);
    }
    /* Safe inside the callback loop: libevent saved the next entry before calling us,
     * and the entry added here goes to the head of the list, not visited this round. */
    evbuffer_remove_cb(buf, on_first_input, bev);
    evbuffer_add_cb(buf, on_input, bev);
    on_input(buf, info, bev);
}

struct bufferevent *headguard_bevcb(struct event_base *base, void *arg)
{
    (void)arg;
    /* The same bufferevent evhttp makes by default, plus our callback on its input.
     * Not deferred: the callback must run before evhttp's read callback parses. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev && !evbuffer_add_cb(bufferevent_get_input(bev), on_first_input, bev)) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}

static slot_t *slot_of_request(struct evhttp_request *req, struct bufferevent **bev_out)
{
    headguard_t *g = tls_guard;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!g || !evcon)
        return NULL;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    if (!bev)
        return NULL;
    slot_t *s = slot_for(g, bufferevent_getfd(bev), 0);
    if (!s || s->bev != bev)
        return NULL;
    *bev_out = bev;
    return s;
}

enum headguard_verdict headguard_verdict(struct evhttp_request *req)
{
    struct bufferevent *bev;
    slot_t *s = slot_of_request(req, &bev);
    if (!s)
        return HEADGUARD_OK;
    enum headguard_verdict v = (enum headguard_verdict)s->verdict;
    if (s->phase == PH_OFF)
        return v;
    slot_new_head(s);
    /* A pipelined head already buffered is checked for NUL now; its clock starts with
     * the next bytes read, not here: until this reply is written evhttp reads nothing,
     * and the provider's time is not the client's. */
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t pending = evbuffer_get_length(in);
    if (pending > 0)
        scan_tail(s, in, pending);
    /* A pipelined head already whole needs no watching; the next verdict starts it. */
    if (s->phase == PH_HEAD && !s->watching && evbuffer_add_cb(in, on_input, bev))
        s->watching = 1;
    return v;
}

void headguard_release(struct evhttp_request *req)
{
    struct bufferevent *bev;
    slot_t *s = slot_of_request(req, &bev);
    if (s)
        s->phase = PH_OFF;
}
