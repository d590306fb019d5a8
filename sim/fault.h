/*
 * fault — parses the per-request fault script of switchyard-sim, the
 * `x-sim-fault` header: a comma-separated list such as
 * "status=503,retry_after=2" or "delay_ms=200,reset_after_chunks=3".
 *
 * Pure, no allocation. Unknown names and bad values are errors (with a message
 * naming the offending item) so that a typo in a test fails loudly instead of
 * silently running the happy path.
 */
#ifndef SWITCHYARD_SIM_FAULT_H
#define SWITCHYARD_SIM_FAULT_H

#include <stddef.h>

typedef struct {
    int status;        /* 0 = none, else 400..599 */
    int retry_after;   /* -1 = not given; seconds for Retry-After */
    int hang_before;   /* never answer */
    int hang_after;    /* headers, then nothing */
    long reset_after;  /* -1 = none; events (or half a body) sent before a TCP reset */
    int close_clean;   /* close_after_chunks: that end is a clean close (FIN), not a reset */
    long delay_ms;     /* extra delay before the headers */
    int no_usage;      /* never send usage, even when asked */
    int usage_on_last; /* a stream's usage rides on its finish chunk (DeepSeek, Mistral) */
    long stall_after;  /* -1 = none; stream: events sent before going silent */
    long end_after;    /* -1 = none; stream: events sent before a clean end of the stream */
    int hop_header;    /* "Connection: keep-alive, X-Hop" and an X-Hop header with it */
    int echo_key;      /* 401 that echoes the Authorization it got (a careless relay) */
    int comment_first; /* stream: a `: keep-alive` comment block before the first event */
    int garbage;       /* answer with bytes that are not HTTP, then close */
    int cut_json;      /* a JSON answer's first half, framed as if whole */
} sim_fault_t;

void sim_fault_init(sim_fault_t *f);

/*
 * Parses header value s (NULL or empty = no faults) into *f. An item written
 * "NAME:fault" applies only to the sim whose --name is NAME (self), so one header
 * can script different faults for the two providers behind a router. Returns 0,
 * or -1 with a human-readable reason in err (always NUL-terminated when errlen > 0).
 */
int sim_fault_parse(const char *s, const char *self, sim_fault_t *f, char *err, size_t errlen);

#endif
