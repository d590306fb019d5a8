/*
 * failure — the classes every upstream attempt ends in, and their names.
 *
 * The names are the interface: config (`fallback.on`), headers
 * (`x-switchyard-attempts`, `x-switchyard-fallback`), logs and metrics use them.
 * Pure: no state, no allocation.
 */
#ifndef SWITCHYARD_FAILURE_H
#define SWITCHYARD_FAILURE_H

typedef enum {
    FAIL_NONE = 0,           /* the attempt succeeded (2xx) */
    FAIL_CONNECT_ERROR,      /* refused, DNS, TLS, or the connection broke (reset) */
    FAIL_TIMEOUT_CONNECT,    /* connect_ms passed before the connection was up */
    FAIL_TIMEOUT_FIRST_BYTE, /* first_byte_ms passed before the first body byte / SSE event */
    FAIL_TIMEOUT_IDLE,       /* idle_ms of silence inside a response */
    FAIL_TIMEOUT_TOTAL,      /* total_ms for the whole attempt */
    FAIL_UPSTREAM_5XX,
    FAIL_UPSTREAM_429,
    FAIL_UPSTREAM_4XX,       /* the client's answer: passed through unless configured */
    FAIL_PROTOCOL,           /* malformed or oversized upstream response */
    FAIL_CLIENT_CLOSED,      /* the client left; not the provider's fault */
    FAIL_LOCAL_ERROR,        /* switchyard could not even try: no descriptor or memory left
                                here (EMFILE, ENFILE, ENOBUFS, ENOMEM); not the provider's
                                fault, never retried elsewhere, answered 503 */
    FAIL_N_CLASSES
} fail_class_t;

const char *failure_name(fail_class_t c);

/* The class for a name, or -1. */
int failure_parse(const char *name);

/* The class of an HTTP status from an upstream (FAIL_NONE for 1xx-3xx). */
fail_class_t failure_of_status(long status);

/* 1 for the timeout classes (they end in 504 rather than 502). */
int failure_is_timeout(fail_class_t c);

#define FAILURE_BIT(c) (1u << (unsigned)(c))
/* Default `fallback.on`. */
#define FAILURE_DEFAULT_ON                                                                        \
    (FAILURE_BIT(FAIL_CONNECT_ERROR) | FAILURE_BIT(FAIL_TIMEOUT_CONNECT) |                        \
     FAILURE_BIT(FAIL_TIMEOUT_FIRST_BYTE) | FAILURE_BIT(FAIL_UPSTREAM_5XX) |                      \
     FAILURE_BIT(FAIL_UPSTREAM_429))

#endif
