/* h2gate: whether a new HTTP/2 transfer to an origin may start now (pure; upstream.c
 * keeps the counts, the line of waiting transfers and libcurl's side).
 *
 * Why: libcurl 7.88 puts no transfer on a connection still in its TLS handshake (a new
 * connection is marked "close" until it is known to multiplex), and CURLOPT_PIPEWAIT
 * waits only for the first connection to an origin. Once the connections it has are
 * full, every transfer started before the next connection is up opens a connection of
 * its own: 2,000 transfers started together opened 1,901 connections, started 200 a
 * loop pass 501 (docs/DECISIONS.md, "HTTP/2 connection storms"). A burst against a
 * provider would open hundreds of TLS connections, each ~60 KB here and a handshake
 * there.
 *
 * So a transfer that fits on a connection that is up starts; one that does not fit
 * starts as the opener of the next connection when no other is opening; any other
 * waits until the opening connection is up (or failed). An opener that failed to
 * connect opens the gate until a connection is up again: against a provider that
 * cannot be reached every request fails at its own connect timeout, at once, as
 * without a gate, rather than one after the other. Counts are per origin:
 *
 *   ready    connections opened by these transfers, up, and not closed yet
 *   opening  transfers started where nothing had room, not yet connected or finished
 *   running  transfers started and not finished, openers included
 *   failing  the last opener to end ended without a connection
 *
 * Errors: none; a count the caller gets wrong makes transfers wait for an opener, so
 * at worst starts go one at a time, never stall (an opener always ends, and the
 * caller bounds a wait by the transfer's connect timeout). */
#ifndef SWITCHYARD_H2GATE_H
#define SWITCHYARD_H2GATE_H

typedef struct {
    int ready, opening, running, failing;
} h2gate_t;

typedef enum { H2GATE_START, H2GATE_START_OPENER, H2GATE_WAIT } h2gate_verdict_t;

/* streams: streams a connection carries (libcurl's CURLMOPT_MAX_CONCURRENT_STREAMS). */
static inline h2gate_verdict_t h2gate_admit(const h2gate_t *g, int streams)
{
    if (g->failing || g->running - g->opening < g->ready * streams)
        return H2GATE_START;
    return g->opening > 0 ? H2GATE_WAIT : H2GATE_START_OPENER;
}

#endif
