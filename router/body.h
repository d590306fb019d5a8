/*
 * body — what the router needs from a JSON request body, read once, and the one
 * rewrite it may make (the model name), done by splicing bytes so everything
 * else the client sent reaches the upstream byte for byte (cJSON would reprint
 * numbers as doubles and lose integers above 2^53).
 *
 * Pure: no I/O. The body must be NUL-terminated at buf[len] and outlive the info.
 * Validation is strict RFC 8259 (one pass, no tree): stricter than cJSON on numbers
 * (no leading zeros, no "1."), as strict on control bytes, escapes and surrogates.
 * Ownership: body_parse fills a body_info_t whose strings belong to it;
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

#define BODY_MAX_OWNED 8

typedef struct {
    const char *buf;     /* the body parsed (not owned), for body:FIELD lookups */
    size_t len;
    char *owned[BODY_MAX_OWNED]; /* decoded strings handed out; freed with the info */
    size_t n_owned;
    const char *model;   /* top-level "model", decoded, NULL if absent */
    const char *user;    /* top-level "user", NULL if absent or null */
    int stream;          /* "stream": true */
    int include_usage;   /* "stream_options": {"include_usage": true} */
    int has_stream_options;
    size_t model_off;    /* span of the model value token (with its quotes) in buf */
    size_t model_len;    /* 0 when there is no model */
    size_t so_off;       /* span of the stream_options value, when present */
    size_t so_len;
    size_t user_off, user_len;     /* span of the user value, when present */
    size_t stream_off, stream_len; /* span of the stream value, when present */
    int include_usage_false; /* stream_options.include_usage is present and not true */
    int so_empty;            /* stream_options is an object with no member */
    size_t obj_end;      /* offset of the top-level closing '}' */
    const char *error;   /* message for the client when body_parse fails */
} body_info_t;

int body_parse(const char *buf, size_t len, body_info_t *info);

/* 1 when buf is exactly one JSON object or array (whitespace around it allowed): no
 * byte can follow it in a valid document, so such an answer body is complete. */
int body_json_complete(const char *buf, size_t len);

/* A top-level string field of the body, decoded, or NULL (absent, not a string, or
 * holding a NUL). The string belongs to info (at most BODY_MAX_OWNED in all). */
const char *body_string_field(body_info_t *info, const char *name);

/* Frees what info owns (after routing); every string it handed out becomes invalid. */
void body_info_free(body_info_t *info);

/* One splice: delete `del` bytes at `off`, insert `ins` there. */
typedef struct {
    size_t off, del;
    const char *ins;
    size_t ins_len;
} body_edit_t;

/*
 * Applies edits (sorted by offset, not overlapping) to buf; returns a malloc'd,
 * NUL-terminated copy with *out_len its length, or NULL on allocation failure.
 */
char *body_apply(const char *buf, size_t len, const body_edit_t *edits, size_t n, size_t *out_len);

/*
 * The edit that makes a streaming request ask for usage
 * (stream_options.include_usage = true), or 0 when none is needed or possible:
 * the client asked already, or set include_usage to false itself (respected).
 * `ins` points to static text.
 */
int body_usage_edit(const body_info_t *info, body_edit_t *edit);

/* The JSON string token for s (quoted, escaped), malloc'd; NULL on failure. */
char *body_json_string(const char *s);

/*
 * Returns a copy of buf with the model value replaced by the JSON string for
 * new_model; *out_len receives its length. NULL on allocation failure or when
 * info has no model. The result is NUL-terminated.
 */
char *body_rewrite_model(const char *buf, size_t len, const body_info_t *info,
                         const char *new_model, size_t *out_len);

#endif
