/* wsmsg: the client messages of a WebSocket connection, parsed and classified — the
 * pure part of ws.c (no I/O, no connection state), so it is unit-tested and fuzzed.
 *
 * A message is one JSON object (anything after it but whitespace is refused, and so is
 * a raw NUL anywhere) with a
 * string `type`: auth {token}, heartbeat, subscribe/unsubscribe {channel}, chat
 * {id, ...a chat completion request}. A message with no `type` but `"stream": true`
 * and `messages` is a chat as well (an SDK's request body sent as is).
 *
 * Ownership: wsmsg_parse fills a wsmsg_t that owns the parsed document; wsmsg_free
 * releases it (always call it, whatever the kind). Pointers in the struct point into
 * that document. wsmsg_chat_body returns a malloc'd string the caller frees. */
#ifndef SWITCHYARD_WSMSG_H
#define SWITCHYARD_WSMSG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WSMSG_BAD_JSON = 0, /* not one JSON object */
    WSMSG_AUTH,
    WSMSG_HEARTBEAT,
    WSMSG_SUBSCRIBE,
    WSMSG_UNSUBSCRIBE,
    WSMSG_CHAT,
    WSMSG_UNKNOWN, /* an object with another (or no) type */
} wsmsg_kind_t;

#define WSMSG_CHANNEL_MAX 127 /* bytes */
#define WSMSG_ID_MAX 127      /* bytes kept of a chat id (cut at a UTF-8 boundary) */

typedef struct {
    wsmsg_kind_t kind;
    void *doc;           /* the parsed object (cJSON *), owned */
    const char *token;   /* AUTH: the token, or NULL when absent or not a string */
    const char *channel; /* (UN)SUBSCRIBE: NULL unless a string of 1..127 bytes */
    char id[WSMSG_ID_MAX + 1]; /* CHAT: the client's id, "" when none */
} wsmsg_t;

/* Parses data[0..len) (need not be NUL-terminated). Returns m->kind. */
wsmsg_kind_t wsmsg_parse(const uint8_t *data, size_t len, wsmsg_t *m);

/* CHAT: the chat completion request to send upstream — the message without the
 * envelope (`type`, `id`), always streamed with usage (`stream: true`,
 * `stream_options: {include_usage: true}`). NULL on allocation failure. Consumes the
 * envelope members of m->doc. */
char *wsmsg_chat_body(wsmsg_t *m, size_t *len);

void wsmsg_free(wsmsg_t *m);

#endif
