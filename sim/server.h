/*
 * server — the HTTP side of switchyard-sim: one evhttp on the caller's
 * event_base serving /v1 (answers from api.c, faults from fault.c, pacing by
 * timers) and /_sim (stats, request log, reset) for tests.
 *
 * The server owns every request, connection hook and timer it creates; all of
 * it is released by sim_server_free(), which may be called with requests and
 * streams still in flight. Constructors return NULL and describe the failure
 * in err.
 */
#ifndef SWITCHYARD_SIM_SERVER_H
#define SWITCHYARD_SIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct {
    const char *host;    /* bind address, numeric or a name */
    int port;            /* 0 = any free port */
    const char *name;    /* x-sim-provider, system_fingerprint; [A-Za-z0-9._-]+ */
    const char *api_key; /* NULL = accept any Authorization */
    long latency_ms;     /* before the headers */
    long ttft_ms;        /* streams: headers to first content */
    long chunk_ms;       /* streams: between content chunks */
    long chunks;         /* content pieces per answer */
    double error_rate;   /* 0..1 share of /v1 requests that fail */
    int error_status;    /* status of those failures */
    uint64_t seed;       /* determinism */
    long max_conns;      /* 0 = unlimited */
    int quiet;
    int h2_end_frame;    /* HTTP/2: END_STREAM on its own empty DATA frame */
    long h2_max_streams; /* HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS it announces */
} sim_config_t;

typedef struct sim_server sim_server_t;

struct evconnlistener;
struct sockaddr;
/* A listener on host:port (0 = any) handing connections to cb (NULL: evhttp binds
 * it). NULL with err filled on failure. Shared by the HTTP/1.1 and HTTP/2 sides. */
struct evconnlistener *sim_listen(struct event_base *base, const char *host, int port,
                                  void (*cb)(struct evconnlistener *, int, struct sockaddr *,
                                             int, void *),
                                  void *arg, char *err, size_t errlen);
int sim_bound_port(struct evconnlistener *l);

/* Binds and starts serving on base. cfg's strings must outlive the server. */
sim_server_t *sim_server_new(struct event_base *base, const sim_config_t *cfg, char *err,
                             size_t errlen);

struct sim_h2;
/* Reports h2's counts in /_sim/stats ("h2_streams", "h2_connections"). */
void sim_server_set_h2(sim_server_t *s, struct sim_h2 *h2);

/* The port actually bound (useful with port 0). */
int sim_server_port(const sim_server_t *s);

/* Stops listening, closes every connection, frees everything. NULL is a no-op. */
void sim_server_free(sim_server_t *s);

#endif
