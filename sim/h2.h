/*
 * h2 — switchyard-sim over HTTP/2 on TLS (ALPN "h2"), on a port of its own
 * (--h2-port, with --tls-cert and --tls-key).
 *
 * Real providers answer over HTTP/2 on TLS, where a client multiplexes many
 * requests on one connection; this listener lets the router do the same against the sim
 * (the many-streams benchmark, the multiplexing tests). It serves the /v1
 * answers of api.c with the same pacing (--latency-ms, --ttft-ms, --chunk-ms),
 * --api-key and --error-rate. Faults are scripted over HTTP/1.1 only: a request
 * carrying x-sim-fault is refused with 400 here rather than run unfaulted.
 *
 * Why TLS and not h2c: libcurl 7.88 (Debian 12) fails every request after the first
 * on a reused prior-knowledge h2c connection (curl#10634, fixed in 8.0), so h2c
 * would test a path the router cannot use; over TLS, h2 is what providers speak.
 *
 * Framing and flow control are nghttp2's (the library libcurl itself uses for
 * HTTP/2); TLS is OpenSSL's through libevent's bufferevent_openssl. The listener owns its connections, streams and timers; sim_h2_free
 * releases them all, with streams still open.
 */
#ifndef SWITCHYARD_SIM_H2_H
#define SWITCHYARD_SIM_H2_H

#include "server.h"

struct event_base;

typedef struct sim_h2 sim_h2_t;

/* Binds cfg->host:port (0 = any free port) on base, serving TLS with the PEM
 * certificate chain cert and key. NULL with err filled on failure. cfg must
 * outlive the listener. */
sim_h2_t *sim_h2_new(struct event_base *base, const sim_config_t *cfg, int port,
                     const char *cert, const char *key, char *err, size_t errlen);

int sim_h2_port(const sim_h2_t *h);

/* Streams answered and connections accepted so far (for the startup line and tests). */
void sim_h2_counts(const sim_h2_t *h, unsigned long long *streams, unsigned long long *conns);

/* Closes the listener and every connection. NULL is a no-op. */
void sim_h2_free(sim_h2_t *h);

#endif
