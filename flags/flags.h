/*
 * flags — per-request feature-flag evaluation: sticky, monotonic percentage
 * bucketing compatible with flagd's `fractional`, allow/deny lists, model scope.
 *
 * Pure code: no I/O, no allocation on the evaluation path, no global state.
 * A flag_def_t is built by the config loader and is immutable afterwards; the
 * strings it points to belong to whoever built it (flags_def_free releases a
 * definition built with flags_def_new / the flags_def_* adders).
 *
 * Bucketing (DESIGN.md §5):
 *   h      = murmur3_x86_32(flag_key || sticky_key, seed 0)
 *   bucket = ((uint64_t)h * 10000) >> 32          (basis points, 0..9999)
 *   new   <=> bucket < percentage_bp
 * so a key that is `new` at p stays `new` at every p' > p.
 */
#ifndef SWITCHYARD_FLAGS_H
#define SWITCHYARD_FLAGS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FLAG_VARIANT_ORIGINAL = 0, FLAG_VARIANT_NEW = 1 } flag_variant_t;

/* OFREP / OpenFeature resolution reasons. */
typedef enum {
    FLAG_REASON_SPLIT = 0,       /* decided by the percentage bucket */
    FLAG_REASON_TARGETING_MATCH, /* an allow or deny entry matched */
    FLAG_REASON_DISABLED,        /* the flag is forced off (rollback) */
    FLAG_REASON_DEFAULT          /* flag does not apply (model out of scope, unkeyed fixed) */
} flag_reason_t;

typedef enum { FLAG_UNKEYED_RANDOM = 0, FLAG_UNKEYED_ORIGINAL, FLAG_UNKEYED_NEW } flag_unkeyed_t;

/* Where a request's sticky key comes from; the first present source wins. */
typedef enum {
    FLAG_STICKY_HEADER = 0, /* name = header name (case-insensitive) */
    FLAG_STICKY_BODY,       /* name = top-level string field of the JSON body */
    FLAG_STICKY_API_KEY     /* the client's bearer token */
} flag_sticky_kind_t;

typedef struct {
    flag_sticky_kind_t kind;
    char *name; /* NULL for FLAG_STICKY_API_KEY */
    char *spec; /* as written in the config: "header:x-user-id" (for logs) */
} flag_sticky_t;

/* An allow/deny/model entry: exact, or prefix when written with a trailing '*'. */
typedef struct {
    char *text; /* without the trailing '*' */
    size_t len;
    int prefix;
} flag_match_t;

typedef struct {
    char *key;              /* flag name, e.g. "use_new_provider" */
    uint32_t percentage_bp; /* 0..10000 basis points */
    int disabled;           /* forced to original (rollout rolled back) */
    flag_unkeyed_t unkeyed;
    flag_sticky_t *sticky;
    size_t n_sticky;
    flag_match_t *allow;
    size_t n_allow;
    flag_match_t *deny;
    size_t n_deny;
    flag_match_t *models; /* empty = applies to every model */
    size_t n_models;
} flag_def_t;

typedef struct {
    flag_variant_t variant;
    flag_reason_t reason;
    uint32_t bucket; /* 0..9999 when reason == SPLIT and keyed, else 0 */
} flag_result_t;

/* MurmurHash3 x86 32-bit. */
uint32_t flags_murmur3_32(const void *data, size_t len, uint32_t seed);

/* Bucket (0..9999) of flag_key || key, without a separator. */
uint32_t flags_bucket(const char *flag_key, const char *key, size_t key_len);

/*
 * Evaluates def for one request. key may be NULL (no sticky key: the unkeyed
 * policy applies, drawing on `random`, any uniformly distributed 32-bit value);
 * model may be NULL (the model scope then does not match a non-empty list).
 * Order: model scope, disabled, deny, allow, split.
 */
flag_result_t flags_eval(const flag_def_t *def, const char *key, size_t key_len,
                         const char *model, uint32_t random);

/* 1 when text matches one entry of list (exact or prefix). */
int flags_match_any(const flag_match_t *list, size_t n, const char *text, size_t len);

/* Parses "12.5" / "100" / "0.01" (0..100, at most two decimals) into basis points.
 * Returns 0 on success, -1 when the text is not such a number. */
int flags_parse_percentage(const char *text, uint32_t *out_bp);

const char *flags_variant_name(flag_variant_t v); /* "new" / "original" */
const char *flags_reason_name(flag_reason_t r);   /* "SPLIT", ... */

/* Builders used by the config loader and tests; return 0 or -1 (ENOMEM). */
flag_def_t *flags_def_new(const char *key);
int flags_def_add_sticky(flag_def_t *def, const char *spec); /* -1 on bad spec too */
int flags_def_add_match(flag_match_t **list, size_t *n, const char *pattern);
void flags_def_free(flag_def_t *def);

#endif
