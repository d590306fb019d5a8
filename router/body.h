/*
 * body — what the router needs from a JSON request body, read once, and the one
 * rewrite it may make (the model name), done by splicing bytes so everything
 * else the client sent reaches the upstream byte for byte (cJSON would reprint
 * numbers as doubles and lose integers above 2^53).
 *
 * Pure: no I/O. The body must be NUL-terminated at buf[len] (cJSON 1.7.15 can
 * over-read truncated input otherwise).
 * Ownership: body_parse fills a body_info_t whose strings and tree belong to it;
 * body_info_free releases them. body_rewrite_model returns a malloc'd buffer.
 * Errors: body_parse returns one of the BODY_ERR_* codes, with a message for the
 * client in info->error (static string).
 */
#ifndef SWITCHYARD_BODY_H
#define SWITCHYARD_BODY_H

#include <stddef.h>

struct cJSON;

enum {
    BODY_OK = 0,
    BODY_ERR_JSON = -1,       /* not valid JSON */
    BODY_ERR_NOT_OBJECT = -2, /* valid JSON, but not an object */
    BODY_ERR_DUPLICATE = -3,  /* a routing key appears twice at top level */
    BODY_ERR_TYPE = -4,       /* model/stream/user of the wrong type */
    BODY_ERR_NOMEM = -5
};

typedef struct {
    struct cJSON *root;  /* the parsed tree; kept for body:FIELD sticky lookups */
    const char *model;   /* top-level "model" (points into root), NULL if absent */
    const char *user;    /* top-level "user", NULL if absent */
    int stream;          /* "stream": true */
    int include_usage;   /* "stream_options": {"include_usage": true} */
    int has_stream_options;
    size_t model_off;    /* span of the model value token (with its quotes) in buf */
    size_t model_len;    /* 0 when there is no model */
    size_t obj_end;      /* offset of the top-level closing '}' */
    const char *error;   /* message for the client when body_parse fails */
} body_info_t;

int body_parse(const char *buf, size_t len, body_info_t *info);

/* A top-level string field of the body, or NULL. */
const char *body_string_field(const body_info_t *info, const char *name);

/* Frees the tree early (after routing); the model/user pointers become invalid. */
void body_info_free(body_info_t *info);

/*
 * Returns a copy of buf with the model value replaced by the JSON string for
 * new_model; *out_len receives its length. NULL on allocation failure or when
 * info has no model. The result is NUL-terminated.
 */
char *body_rewrite_model(const char *buf, size_t len, const body_info_t *info,
                         const char *new_model, size_t *out_len);

#endif
