/*
 * chunk — reads the text out of chat completion chunks and completions, for the
 * clients that get switchyard's own message format (WebSocket, browser SSE)
 * instead of the provider's stream.
 *
 * Pure. Inputs need not be NUL-terminated (they are copied). chunk_t owns its
 * content (malloc'd); chunk_free releases it. Returns 0, or -1 for data that is
 * not a chunk (not JSON, no choices): such events are skipped, not fatal.
 */
#ifndef SWITCHYARD_CHUNK_H
#define SWITCHYARD_CHUNK_H

#include <stddef.h>

typedef struct {
    char *content;          /* delta (stream) or message (completion) text, NULL if none */
    char finish_reason[32]; /* "" while the answer goes on */
    int done;               /* the [DONE] sentinel */
} chunk_t;

int chunk_parse_event(const char *data, size_t len, chunk_t *out);
int chunk_parse_completion(const char *json, size_t len, chunk_t *out);
void chunk_free(chunk_t *c);

#endif
