/*
 * config — YAML file -> validated, immutable config_t (see config.h).
 *
 * Two passes: config_yaml.c turns libyaml events into a node tree that keeps
 * every node's position (and refuses anchors, aliases, tags, deep nesting);
 * this file walks that tree with one table of known keys per block. A block is
 * a field_t table plus small parse functions; adding a top-level block (say
 * `fallback`) is one entry in top_fields[] and one function. Every problem is
 * reported, none stops the walk; the load fails when at least one error was
 * reported. Values of environment variables (keys, tokens) never appear in a
 * message, and neither does anything that could be a key written into the file
 * by mistake (api_key_env's value when it is not a variable name, URLs).
 */
#include "config.h"
#include "failure.h"

#include <curl/curl.h>
#include <openssl/sha.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_yaml.h"

enum {
    MAX_DEPTH = 32,           /* nesting cap handed to the YAML reader */
    MAX_FILE_BYTES = 4 << 20, /* a config larger than this is refused */
    PATH_CAP = 256,           /* "providers.original.timeouts.total_ms", ... */
    SHOW_CAP = 96,            /* quoted user text in messages */
    MAX_FIELDS = 32,          /* keys per block table */
    NAME_MAX_LEN = 64,        /* provider and flag names */
    ENV_NAME_MAX = 128
};

#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_LISTEN_PORT 8080
#define DEFAULT_ADMIN_HOST "127.0.0.1"
#define DEFAULT_ADMIN_PORT 9090
#define DEFAULT_MAX_BODY ((size_t)8 << 20)
#define DEFAULT_MAX_HEADER ((size_t)64 << 10)
#define DEFAULT_CONNECT_MS 10000L
#define DEFAULT_FIRST_BYTE_MS 60000L
#define DEFAULT_IDLE_MS 60000L
#define DEFAULT_TOTAL_MS 600000L
#define MAX_TIMEOUT_MS 86400000LL
#define DEFAULT_FLAG "use_new_provider"

static const char *const role_names[CONFIG_N_ROLES] = {"original", "new"};
static const char *const default_sticky[] = {"header:x-user-id", "body:user", "api_key"};
/* Flags the router evaluates. Any other name is a flag of its own (served over OFREP,
 * shown in metrics) and is accepted with a warning. */
static const char *const known_flags[] = {DEFAULT_FLAG};

typedef config_yaml_node_t node_t;

/* Load state: where messages go and what the cross-block checks need. */
typedef struct {
    const char *file;
    config_errors_t *errs; /* may be NULL */
    size_t n_errors;
    config_t *cfg;
    int sticky_seen;          /* the flag being parsed has a `sticky` key */
    const node_t *provider_node[CONFIG_N_ROLES];
    const node_t *http_version_node[CONFIG_N_ROLES];
    const node_t *name_node[CONFIG_N_ROLES];
    const node_t *listen_node;
    const node_t *admin_listen_node;
    const node_t *workers_node;
    const node_t *rollout_node;
    int client_has_key;
    const node_t *client_key_node; /* the first key_env / key_sha256 of the client parsed */
    const node_t *rollout_flag_node;
    const node_t *percentage_node; /* flags.<rollout flag>.percentage, when written */
    int percentage_seen;           /* the flag being parsed has a `percentage` key */
    const node_t *flag_missing_percentage; /* the routing flag's mapping, when it has none */
} ld_t;

/* ---- messages ---------------------------------------------------------- */

static int push_line(char ***arr, size_t *n, char *line)
{
    char **a = realloc(*arr, (*n + 1) * sizeof *a);
    if (a == NULL) {
        free(line);
        return -1;
    }
    a[(*n)++] = line;
    *arr = a;
    return 0;
}

static void vemit(ld_t *ld, int warning, int line, int col, const char *fmt, va_list ap)
{
    if (!warning)
        ld->n_errors++;
    if (ld->errs == NULL)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t need = strlen(ld->file) + strlen(msg) + 32;
    char *s = malloc(need);
    if (s == NULL)
        return;
    snprintf(s, need, "%s:%d:%d: %s", ld->file, line, col, msg);
    if (warning)
        push_line(&ld->errs->warnings, &ld->errs->n_warnings, s);
    else
        push_line(&ld->errs->lines, &ld->errs->n, s);
}

static void error_at(ld_t *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void error_at(ld_t *ld, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(ld, 0, line, col, fmt, ap);
    va_end(ap);
}

static void err(ld_t *ld, const node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(ld_t *ld, const node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(ld, 0, n->line, n->col, fmt, ap);
    va_end(ap);
}

static void warn(ld_t *ld, const node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(ld_t *ld, const node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(ld, 1, n->line, n->col, fmt, ap);
    va_end(ap);
}

static void yaml_report(void *ctx, int line, int col, const char *msg)
{
    error_at(ctx, line, col, "%s", msg);
}

static const char *show(const node_t *n, char *buf)
{
    return config_yaml_show(n->text, n->len, buf, SHOW_CAP);
}

/* "a mapping", "a sequence", "an empty value", "`text`" */
static const char *describe(const node_t *n, char *buf)
{
    switch (n->kind) {
    case CONFIG_YAML_MAP:
        return "a mapping";
    case CONFIG_YAML_SEQ:
        return "a sequence";
    case CONFIG_YAML_SCALAR:
        if (config_yaml_is_null(n))
            return "an empty value";
        buf[0] = '`';
        config_yaml_show(n->text, n->len, buf + 1, SHOW_CAP - 2);
        strcat(buf, "`");
        return buf;
    default:
        return "an unsupported value";
    }
}

static const char *where(const char *path)
{
    return path[0] ? path : "the top level";
}

static void join(char *dst, const char *path, const char *key)
{
    /* A path cut at PATH_CAP only shortens a message; the result is checked so the
     * compiler knows truncation is expected. */
    int n = path[0] ? snprintf(dst, PATH_CAP, "%s.%s", path, key)
                    : snprintf(dst, PATH_CAP, "%s", key);
    if (n >= PATH_CAP)
        dst[PATH_CAP - 1] = '\0';
}

static void join_index(char *dst, const char *path, size_t i)
{
    snprintf(dst, PATH_CAP, "%s[%zu]", path, i);
}

static void oom(ld_t *ld, const node_t *n)
{
    err(ld, n, "out of memory");
}

/* ---- near-miss hints ---------------------------------------------------- */

static size_t levenshtein(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[NAME_MAX_LEN + 1];
    if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Writes "; did you mean `x`?" (or the case-sensitive variant) into buf when one
 * of known[] is a near miss of key, else "" or the list of known keys. */
static const char *hint(const node_t *key, const char *const *known, size_t n_known, int list,
                        char *buf, size_t cap)
{
    const char *best = NULL;
    size_t best_d = 3;
    buf[0] = '\0';
    for (size_t i = 0; i < n_known; i++) {
        size_t kl = strlen(known[i]);
        if (kl == key->len && strncasecmp(known[i], key->text, kl) == 0) {
            snprintf(buf, cap, "; did you mean `%s`? (keys are case-sensitive)", known[i]);
            return buf;
        }
        size_t d = levenshtein(key->text, key->len, known[i], kl);
        if (d < best_d && d < kl) {
            best_d = d;
            best = known[i];
        }
    }
    if (best != NULL) {
        snprintf(buf, cap, "; did you mean `%s`?", best);
    } else if (list && n_known > 0) {
        size_t o = (size_t)snprintf(buf, cap, " (expected ");
        for (size_t i = 0; i < n_known && o < cap; i++)
            o += (size_t)snprintf(buf + o, cap - o, "%s`%s`", i == 0 ? "" : ", ", known[i]);
        if (o < cap)
            snprintf(buf + o, cap - o, ")");
    }
    return buf;
}

/* ---- typed values -------------------------------------------------------- */

static int want_map(ld_t *ld, const node_t *n, const char *path)
{
    char b[SHOW_CAP];
    if (n->kind == CONFIG_YAML_BAD)
        return -1;
    if (n->kind == CONFIG_YAML_MAP)
        return 0;
    err(ld, n, "%s must be a mapping, got %s", where(path), describe(n, b));
    return -1;
}

static int want_seq(ld_t *ld, const node_t *n, const char *path)
{
    char b[SHOW_CAP];
    if (n->kind == CONFIG_YAML_BAD)
        return -1;
    if (n->kind == CONFIG_YAML_SEQ)
        return 0;
    err(ld, n, "%s must be a sequence (e.g. [a, b] or [] for none), got %s", path, describe(n, b));
    return -1;
}

/* A non-empty string without NUL bytes (plain or quoted), or NULL (reported). */
static const char *want_string(ld_t *ld, const node_t *n, const char *path)
{
    char b[SHOW_CAP];
    if (n->kind == CONFIG_YAML_BAD)
        return NULL;
    if (n->kind != CONFIG_YAML_SCALAR || config_yaml_is_null(n)) {
        err(ld, n, "%s must be a string, got %s", path, describe(n, b));
        return NULL;
    }
    if (n->len == 0) {
        err(ld, n, "%s must not be empty", path);
        return NULL;
    }
    if (memchr(n->text, '\0', n->len) != NULL) {
        err(ld, n, "%s must not contain a NUL character", path);
        return NULL;
    }
    return n->text;
}

/* A plain scalar: numbers are written without quotes (a quoted "10" is a string). */
static const char *want_number_text(ld_t *ld, const node_t *n, const char *path)
{
    char b[SHOW_CAP];
    if (n->kind == CONFIG_YAML_BAD)
        return NULL;
    if (n->kind != CONFIG_YAML_SCALAR || config_yaml_is_null(n)) {
        err(ld, n, "%s must be a number, got %s", path, describe(n, b));
        return NULL;
    }
    if (n->quoted) {
        err(ld, n,
            "%s must be a number, got the quoted string \"%s\" (write numbers without quotes)",
            path, show(n, b));
        return NULL;
    }
    return n->text;
}

/* Strict decimal integer in [min, max]: optional sign, digits only, no leading
 * zeros (YAML 1.1 would read 010 as octal), no overflow. */
static int want_int(ld_t *ld, const node_t *n, const char *path, long long min, long long max,
                    long long *out)
{
    char b[SHOW_CAP];
    const char *s = want_number_text(ld, n, path);
    if (s == NULL)
        return -1;
    const char *d = s + (s[0] == '+' || s[0] == '-');
    size_t nd = strspn(d, "0123456789");
    if (nd == 0 || d[nd] != '\0' || (size_t)(d + nd - s) != n->len) {
        err(ld, n, "%s must be an integer, got `%s`", path, show(n, b));
        return -1;
    }
    if (nd > 1 && d[0] == '0') {
        err(ld, n, "%s must be an integer without leading zeros, got `%s`", path, show(n, b));
        return -1;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || end != s + n->len || v < min || v > max) {
        err(ld, n, "%s must be from %lld to %lld, got %s", path, min, max, show(n, b));
        return -1;
    }
    *out = v;
    return 0;
}

static int replace_str(ld_t *ld, const node_t *n, char **dst, const char *s, size_t len)
{
    char *c = strndup(s, len);
    if (c == NULL) {
        oom(ld, n);
        return -1;
    }
    free(*dst);
    *dst = c;
    return 0;
}

static int is_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* A variable name, and not something that looks like a pasted token (a long
 * run without '_'): a refused value is never echoed. */
static int is_env_name(const char *s, size_t len)
{
    if (len == 0 || len > ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    if (len >= 32 && memchr(s, '_', len) == NULL)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == len;
}

/* A name safe to repeat in a message: a variable's usual shape, capitals, digits and
 * '_' (is_env_name has already checked the characters). */
static int env_name_plain(const char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            return 0;
    return 1;
}

/* A host that ends in a number (999.1.1.1, 10.0.0) is read as an IPv4 address by URL
 * parsers and resolvers, never looked up as a name: it must then be a dotted quad of
 * 0..255 without leading zeros. 1 when host[0..len) looks numeric and is not one. */
static int bad_ipv4_literal(const char *host, size_t len)
{
    char buf[64];
    struct in_addr a;
    if (len > 0 && host[len - 1] == '.')
        len--; /* a trailing dot ends a fully qualified name */
    size_t last = len;
    while (last > 0 && host[last - 1] != '.')
        last--;
    if (last == len || strspn(host + last, "0123456789") < len - last)
        return 0; /* the last label is a name */
    if (len >= sizeof buf)
        return 1;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a) != 1;
}

/* ---- mappings ------------------------------------------------------------ */

typedef int (*field_fn)(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg);

typedef struct {
    const char *key;
    field_fn fn;
    intptr_t arg;
    int required;
    int hidden; /* a known mistake with its own message: not offered as a hint */
} field_t;

typedef struct {
    const node_t *key;
    size_t index;
} key_ref_t;

static int key_cmp(const void *a, const void *b)
{
    const key_ref_t *x = a, *y = b;
    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    int c = memcmp(x->key->text, y->key->text, x->key->len);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * Checks every key of map once: a string, and not a repeat. Returns an array
 * with one entry per pair: the key node, or NULL for a key that was reported
 * (the caller skips that pair). NULL on out of memory (reported).
 * Sorting keeps a big `models` map from costing n^2 comparisons.
 */
static const node_t **check_keys(ld_t *ld, const node_t *map, const char *path)
{
    size_t n = map->n_kids / 2;
    const node_t **keys = calloc(n ? n : 1, sizeof *keys);
    const node_t **first = calloc(n ? n : 1, sizeof *first); /* of a duplicate */
    key_ref_t *refs = calloc(n ? n : 1, sizeof *refs);
    size_t nr = 0;
    char b[SHOW_CAP];
    if (keys == NULL || first == NULL || refs == NULL) {
        free(keys);
        free(first);
        free(refs);
        oom(ld, map);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const node_t *k = map->kids[2 * i];
        if (k->kind == CONFIG_YAML_BAD)
            continue;
        if (k->kind != CONFIG_YAML_SCALAR) {
            err(ld, k, "keys in %s must be strings, got %s", where(path), describe(k, b));
            continue;
        }
        keys[i] = k;
        refs[nr].key = k;
        refs[nr].index = i;
        nr++;
    }
    /* equal keys end up adjacent, the earliest (by index) first */
    qsort(refs, nr, sizeof *refs, key_cmp);
    for (size_t r = 1, run = 0; r < nr; r++) {
        if (refs[run].key->len == refs[r].key->len &&
            memcmp(refs[run].key->text, refs[r].key->text, refs[r].key->len) == 0)
            first[refs[r].index] = refs[run].key;
        else
            run = r;
    }
    for (size_t i = 0; i < n; i++) {
        if (first[i] == NULL)
            continue;
        err(ld, keys[i], "duplicate key `%s` in %s (first at %d:%d)", show(keys[i], b), where(path),
            first[i]->line, first[i]->col);
        keys[i] = NULL;
    }
    free(first);
    free(refs);
    return keys;
}

static void unknown_key(ld_t *ld, const node_t *k, const char *path, const field_t *f, size_t nf)
{
    const char *known[MAX_FIELDS];
    size_t nk = 0;
    char b[SHOW_CAP], h[512];
    for (size_t i = 0; i < nf; i++)
        if (!f[i].hidden)
            known[nk++] = f[i].key;
    hint(k, known, nk, 1, h, sizeof h);
    if (path[0])
        err(ld, k, "unknown key `%s` in %s%s", show(k, b), path, h);
    else
        err(ld, k, "unknown top-level key `%s`%s", show(k, b), h);
}

/* Walks a mapping with a table of known keys: each known key's value goes to
 * its field function with out/arg, unknown and missing required keys are
 * reported. Returns 0, or -1 when map is not a mapping (reported). */
static int parse_block(ld_t *ld, const node_t *map, const char *path, const field_t *f, size_t nf,
                       void *out)
{
    unsigned char seen[MAX_FIELDS] = {0};
    if (want_map(ld, map, path) != 0)
        return -1;
    const node_t **keys = check_keys(ld, map, path);
    if (keys == NULL)
        return -1;
    for (size_t i = 0; i < map->n_kids / 2; i++) {
        const node_t *k = keys[i];
        size_t j;
        if (k == NULL)
            continue;
        for (j = 0; j < nf; j++)
            if (strlen(f[j].key) == k->len && memcmp(f[j].key, k->text, k->len) == 0)
                break;
        if (j == nf) {
            unknown_key(ld, k, path, f, nf);
            continue;
        }
        seen[j] = 1;
        char sub[PATH_CAP];
        join(sub, path, f[j].key);
        f[j].fn(ld, map->kids[2 * i + 1], sub, out, f[j].arg);
    }
    free(keys);
    for (size_t j = 0; j < nf; j++) {
        if (!f[j].required || seen[j])
            continue;
        if (path[0])
            err(ld, map, "missing required key `%s` in %s", f[j].key, path);
        else
            err(ld, map, "missing required top-level key `%s`", f[j].key);
    }
    return 0;
}

/* ---- fields --------------------------------------------------------------- */

/* "host:port" / "[v6]:port"; out = a config_t, arg = offset of a config_addr_t. */
static int field_addr(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_addr_t *a = (config_addr_t *)((char *)out + arg);
    char b[SHOW_CAP];
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    const char *host, *port;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            err(ld, val, "%s must be host:port (e.g. 127.0.0.1:8080 or [::1]:8080), got `%s`", path,
                show(val, b));
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(close - host);
        port = close + 2;
        char v6[64];
        struct in6_addr tmp;
        if (hlen == 0 || hlen >= sizeof v6) {
            err(ld, val, "%s has a bad IPv6 address in `%s`", path, show(val, b));
            return -1;
        }
        memcpy(v6, host, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &tmp) != 1) {
            err(ld, val, "%s has a bad IPv6 address in `%s`", path, show(val, b));
            return -1;
        }
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            err(ld, val, "%s must be host:port (e.g. 127.0.0.1:8080 or [::1]:8080), got `%s`", path,
                show(val, b));
            return -1;
        }
        host = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        if (memchr(s, ':', hlen) != NULL) {
            err(ld, val, "%s: write an IPv6 address in brackets, e.g. [::1]:8080, got `%s`", path,
                show(val, b));
            return -1;
        }
        if (hlen == 0) {
            err(ld, val, "%s has no host in `%s` (use 0.0.0.0:PORT for every interface)", path,
                show(val, b));
            return -1;
        }
        if (hlen > 253 ||
            strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") <
                hlen) {
            err(ld, val, "%s has a bad host name in `%s`", path, show(val, b));
            return -1;
        }
        if (bad_ipv4_literal(host, hlen)) {
            /* `check` said ok, and the router failed to resolve it at start. */
            err(ld, val,
                "%s: `%.*s` looks like an IPv4 address but is not one (four numbers from 0 "
                "to 255)",
                path, (int)hlen, host);
            return -1;
        }
    }
    size_t pl = strlen(port);
    if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl || atol(port) > 65535 ||
        (pl > 1 && port[0] == '0')) {
        err(ld, val, "%s must end in a port from 0 to 65535, got `%s`", path, show(val, b));
        return -1;
    }
    if (replace_str(ld, val, &a->host, host, hlen) != 0)
        return -1;
    a->port = (int)atol(port);
    if (arg == (intptr_t)offsetof(config_t, listen))
        ld->listen_node = val;
    else
        ld->admin_listen_node = val;
    return 0;
}

static int field_workers(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_t *c = out;
    long long v;
    (void)arg;
    if (want_int(ld, val, path, 0, 256, &v) != 0)
        return -1;
    c->workers = (int)v;
    ld->workers_node = val;
    return 0;
}

/* Reads the environment variable named by val into *value (its name into *env). */
static int load_env(ld_t *ld, const node_t *val, const char *path, char **env, char **value)
{
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (!is_env_name(s, val->len)) {
        /* Not echoed: a key pasted here by mistake must not reach a log. */
        err(ld, val,
            "%s must be the name of an environment variable (letters, digits and _, not "
            "starting with a digit), not the secret itself",
            path);
        return -1;
    }
    const char *v = getenv(s);
    if (v == NULL || v[0] == '\0') {
        const char *what = v == NULL ? "is not set" : "is empty";
        if (env_name_plain(s))
            err(ld, val, "environment variable %s (%s) %s", s, path, what);
        else
            /* Keys such as gsk_..., hf_... or ghp_... pass for names: one with lower
             * case is named by where it was asked for only. */
            err(ld, val,
                "the environment variable named in %s %s (its name is not repeated: it "
                "has lower case, as a key pasted there by mistake would)",
                path, what);
        return -1;
    }
    if (replace_str(ld, val, env, s, val->len) != 0 ||
        replace_str(ld, val, value, v, strlen(v)) != 0)
        return -1;
    return 0;
}

static int field_secret_inline(ld_t *ld, const node_t *val, const char *path, void *out,
                               intptr_t arg)
{
    (void)out;
    (void)arg;
    err(ld, val,
        "%s: secrets are never read from the file; put it in an environment variable and "
        "name that variable with `%s_env`",
        path, strrchr(path, '.') ? strrchr(path, '.') + 1 : path);
    return -1;
}

static int field_admin_token_env(ld_t *ld, const node_t *val, const char *path, void *out,
                                 intptr_t arg)
{
    config_t *c = out;
    (void)arg;
    return load_env(ld, val, path, &c->admin.token_env, &c->admin.token);
}

static const field_t admin_fields[] = {
    {"listen", field_addr, (intptr_t)offsetof(config_t, admin.listen), 0, 0},
    {"token_env", field_admin_token_env, 0, 0, 0},
    {"token", field_secret_inline, 0, 0, 1},
};

static int field_admin(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    return parse_block(ld, val, path, admin_fields, sizeof admin_fields / sizeof *admin_fields,
                       out);
}

static int field_limit(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_t *c = out;
    long long v;
    int body = arg == 0;
    if (want_int(ld, val, path, 1024, body ? 1LL << 30 : 16LL << 20, &v) != 0)
        return -1;
    if (body)
        c->limits.max_body_bytes = (size_t)v;
    else
        c->limits.max_header_bytes = (size_t)v;
    return 0;
}

/* An integer field stored as a long at an offset in config_t, within a range. */
typedef struct {
    size_t off;
    long long min, max;
} int_field_t;

static int field_int_at(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)out;
    const int_field_t *d = (const int_field_t *)arg;
    long long v;
    if (want_int(ld, val, path, d->min, d->max, &v) != 0)
        return -1;
    *(long *)((char *)ld->cfg + d->off) = (long)v;
    return 0;
}

#define INT_AT(member, lo, hi)                                                                     \
    ((intptr_t) & (const int_field_t){offsetof(config_t, member), (lo), (hi)})

static const field_t limits_fields[] = {
    {"max_body_bytes", field_limit, 0, 0, 0},
    {"max_header_bytes", field_limit, 1, 0, 0},
    {"client_stall_ms", field_int_at, INT_AT(limits.client_stall_ms, 100, 3600000), 0, 0},
    {"client_timeout_ms", field_int_at, INT_AT(limits.client_timeout_ms, 100, 3600000), 0, 0},
    {"header_timeout_ms", field_int_at, INT_AT(limits.header_timeout_ms, 100, 3600000), 0, 0},
};

/* ---- fallback ------------------------------------------------------------- */

static int field_fallback_on(ld_t *ld, const node_t *val, const char *path, void *out,
                             intptr_t arg)
{
    (void)out;
    (void)arg;
    char sub[PATH_CAP], b[SHOW_CAP];
    if (want_seq(ld, val, path) != 0)
        return -1;
    unsigned on = 0;
    for (size_t i = 0; i < val->n_kids; i++) {
        const node_t *it = val->kids[i];
        join_index(sub, path, i);
        const char *s = want_string(ld, it, sub);
        if (s == NULL)
            continue;
        int c = failure_parse(s);
        if (c < 0 || c == FAIL_CLIENT_CLOSED || c == FAIL_LOCAL_ERROR) {
            err(ld, it,
                "%s: unknown failure class `%s` (connect_error, timeout_connect, "
                "timeout_first_byte, timeout_idle, timeout_total, upstream_5xx, upstream_429, "
                "upstream_4xx, protocol)",
                sub, show(it, b));
            continue;
        }
        on |= FAILURE_BIT(c);
    }
    ld->cfg->fallback.on = on;
    return 0;
}

static const field_t backoff_fields[] = {
    {"base_ms", field_int_at, INT_AT(fallback.backoff_base_ms, 0, 60000), 0, 0},
    {"max_ms", field_int_at, INT_AT(fallback.backoff_max_ms, 0, 600000), 0, 0},
};
static const field_t budget_fields[] = {
    {"percent", field_int_at, INT_AT(fallback.budget_percent, 0, 100), 0, 0},
    {"min_per_second", field_int_at, INT_AT(fallback.budget_min_per_second, 0, 1000000), 0, 0},
};
static const field_t eject_fields[] = {
    {"consecutive_failures", field_int_at, INT_AT(fallback.eject_consecutive, 0, 100000), 0, 0},
    {"base_ms", field_int_at, INT_AT(fallback.eject_base_ms, 100, 86400000), 0, 0},
    {"max_ms", field_int_at, INT_AT(fallback.eject_max_ms, 100, 86400000), 0, 0},
};

#define SUB_BLOCK(name, table)                                                                     \
    static int name(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)       \
    {                                                                                              \
        (void)arg;                                                                                 \
        return parse_block(ld, val, path, table, sizeof table / sizeof *table, out);               \
    }
SUB_BLOCK(field_budget, budget_fields)

/* The value of key in map, or NULL (map is a mapping whose keys were checked). */
static const node_t *map_value(const node_t *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n_kids; i += 2) {
        const node_t *k = map->kids[i];
        if (k->kind == CONFIG_YAML_SCALAR && k->len == strlen(key) &&
            memcmp(k->text, key, k->len) == 0)
            return map->kids[i + 1];
    }
    return NULL;
}

/* base_ms above max_ms, in a backoff or eject block: reported at base_ms when it is written
 * (else at max_ms, which then is below the default base), not at the top of the file. */
static void check_base_max(ld_t *ld, const node_t *map, const char *path, long base, long max)
{
    if (base <= max)
        return;
    const node_t *at = map_value(map, "base_ms");
    if (at == NULL)
        at = map_value(map, "max_ms");
    err(ld, at ? at : map, "%s.base_ms (%ld) is above %s.max_ms (%ld)", path, base, path, max);
}

static int field_backoff(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    const config_fallback_t *fb = &ld->cfg->fallback;
    size_t n = sizeof backoff_fields / sizeof *backoff_fields;
    if (parse_block(ld, val, path, backoff_fields, n, out) != 0)
        return -1;
    check_base_max(ld, val, path, fb->backoff_base_ms, fb->backoff_max_ms);
    return 0;
}

static int field_eject(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    const config_fallback_t *fb = &ld->cfg->fallback;
    size_t n = sizeof eject_fields / sizeof *eject_fields;
    if (parse_block(ld, val, path, eject_fields, n, out) != 0)
        return -1;
    check_base_max(ld, val, path, fb->eject_base_ms, fb->eject_max_ms);
    return 0;
}

static const field_t fallback_fields[] = {
    {"on", field_fallback_on, 0, 0, 0},
    {"retry_same_provider", field_int_at, INT_AT(fallback.retry_same_provider, 0, 10), 0, 0},
    {"max_attempts", field_int_at, INT_AT(fallback.max_attempts, 1, 10), 0, 0},
    {"backoff", field_backoff, 0, 0, 0},
    {"budget", field_budget, 0, 0, 0},
    {"eject", field_eject, 0, 0, 0},
};
SUB_BLOCK(field_fallback, fallback_fields)

static int field_limits(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    return parse_block(ld, val, path, limits_fields, sizeof limits_fields / sizeof *limits_fields,
                       out);
}

/* ---- providers ------------------------------------------------------------ */

static int role_of(const ld_t *ld, const config_provider_t *p)
{
    return (int)(p - ld->cfg->providers);
}

static int field_name(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    char b[SHOW_CAP];
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (!is_name(s, val->len)) {
        err(ld, val, "%s must be 1 to %d characters of A-Z a-z 0-9 . _ -, got `%s`", path,
            NAME_MAX_LEN, show(val, b));
        return -1;
    }
    ld->name_node[role_of(ld, p)] = val;
    return replace_str(ld, val, &p->name, s, val->len);
}

/* The API paths switchyard appends to base_url (the client's path after /v1). */
static const char *const endpoint_paths[] = {"/chat/completions", "/completions", "/embeddings",
                                             "/responses", "/models"};

/* The endpoint base_url (without trailing '/') ends in, or NULL. Such a base_url sends
 * requests to .../chat/completions/chat/completions: a 404, which is the client's
 * answer, so nothing falls back. */
static const char *endpoint_suffix(const char *url, size_t len)
{
    for (size_t i = 0; i < sizeof endpoint_paths / sizeof *endpoint_paths; i++) {
        size_t el = strlen(endpoint_paths[i]);
        if (len >= el && strncasecmp(url + len - el, endpoint_paths[i], el) == 0)
            return endpoint_paths[i];
    }
    return NULL;
}

/* Host and port as libcurl will read them, checked now: a port out of range, an empty
 * or malformed host or a broken IPv6 literal would otherwise fail every request as a
 * connect_error instead of the load. skip is the length of "http://" or "https://". */
static int check_url_authority(ld_t *ld, const node_t *val, const char *path, const char *url,
                               size_t skip)
{
    CURLU *u = curl_url();
    if (u == NULL) {
        oom(ld, val);
        return -1;
    }
    /* No CURLU_NON_SUPPORT_SCHEME: only what libcurl can fetch passes. */
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    char *port = NULL;
    if (rc == CURLUE_OK && curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL; /* none written: the scheme's */
    long pn = port ? strtol(port, NULL, 10) : 443;
    curl_free(port);
    curl_url_cleanup(u);

    /* The host as written: libcurl turns 1.2.3 into 1.2.0.3 and takes 999.1.1.1 as a name. */
    const char *host = url + skip;
    size_t hlen = strcspn(host, "/");
    const char *colon = host[0] == '[' ? NULL : memchr(host, ':', hlen);
    if (colon != NULL)
        hlen = (size_t)(colon - host);

    switch (rc) {
    case CURLUE_OK:
        break;
    case CURLUE_BAD_PORT_NUMBER:
        err(ld, val, "%s has a bad port: it must be a number from 1 to 65535", path);
        return -1;
    case CURLUE_NO_HOST:
        err(ld, val, "%s has no host", path);
        return -1;
    case CURLUE_BAD_IPV6:
        err(ld, val, "%s has a bad IPv6 address (write it in brackets, e.g. http://[::1]:8080)",
            path);
        return -1;
    case CURLUE_BAD_HOSTNAME:
        err(ld, val, "%s has a bad host name (letters, digits, `-` and `.`)", path);
        return -1;
    default:
        err(ld, val, "%s is not a valid URL (libcurl: %s)", path, curl_url_strerror(rc));
        return -1;
    }
    if (pn < 1 || pn > 65535) {
        err(ld, val, "%s has a bad port: it must be a number from 1 to 65535", path);
        return -1;
    }
    if (bad_ipv4_literal(host, hlen)) {
        err(ld, val,
            "%s has a host that looks like an IPv4 address but is not one (four "
            "numbers from 0 to 255)",
            path);
        return -1;
    }
    return 0;
}

/* http(s)://host[:port][/path], stored without trailing '/'. The URL itself is
 * never echoed (it could carry credentials). */
static int field_base_url(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    char b[SHOW_CAP];
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    size_t skip;
    if (strncasecmp(s, "http://", 7) == 0) {
        skip = 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        skip = 8;
    } else {
        const char *sep = strstr(s, "://");
        if (sep != NULL && is_name(s, (size_t)(sep - s)))
            err(ld, val, "%s must use http:// or https://, got scheme `%s`", path,
                config_yaml_show(s, (size_t)(sep - s), b, sizeof b));
        else
            err(ld, val, "%s must be an absolute http:// or https:// URL", path);
        return -1;
    }
    size_t len = val->len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '?' || ch == '#') {
            err(ld, val,
                "%s must not contain spaces, control characters, a query (?) or a "
                "fragment (#)",
                path);
            return -1;
        }
    }
    size_t auth = strcspn(s + skip, "/");
    if (auth == 0) {
        err(ld, val, "%s has no host", path);
        return -1;
    }
    if (memchr(s + skip, '@', auth) != NULL) {
        err(ld, val,
            "%s must not contain credentials; name the key's environment variable "
            "with api_key_env",
            path);
        return -1;
    }
    if (check_url_authority(ld, val, path, s, skip) != 0)
        return -1;
    while (len > skip + auth && s[len - 1] == '/')
        len--;
    const char *endpoint = endpoint_suffix(s, len);
    if (endpoint != NULL) {
        err(ld, val,
            "%s must stop before the endpoint: it ends in `%s`, which switchyard appends "
            "itself (requests would go to ...%s%s); write the API's base, e.g. "
            "https://api.openai.com/v1",
            path, endpoint, endpoint, endpoint);
        return -1;
    }
    return replace_str(ld, val, &p->base_url, s, len);
}

static int field_api_key_env(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    (void)arg;
    int rc = load_env(ld, val, path, &p->api_key_env, &p->api_key);
    p->api_key_len = p->api_key ? strlen(p->api_key) : 0;
    return rc;
}

static int field_timeout(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    long long v;
    if (want_int(ld, val, path, 1, MAX_TIMEOUT_MS, &v) != 0)
        return -1;
    *(long *)((char *)out + arg) = (long)v;
    return 0;
}

static const field_t timeout_fields[] = {
    {"connect_ms", field_timeout, (intptr_t)offsetof(config_provider_t, timeouts.connect_ms), 0, 0},
    {"first_byte_ms", field_timeout, (intptr_t)offsetof(config_provider_t, timeouts.first_byte_ms),
     0, 0},
    {"idle_ms", field_timeout, (intptr_t)offsetof(config_provider_t, timeouts.idle_ms), 0, 0},
    {"total_ms", field_timeout, (intptr_t)offsetof(config_provider_t, timeouts.total_ms), 0, 0},
};

static int field_timeouts(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    return parse_block(ld, val, path, timeout_fields,
                       sizeof timeout_fields / sizeof *timeout_fields, out);
}

/* models: { client name: provider name } */
static int field_models(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    char b[SHOW_CAP];
    (void)arg;
    if (want_map(ld, val, path) != 0)
        return -1;
    const node_t **keys = check_keys(ld, val, path);
    if (keys == NULL)
        return -1;
    size_t n = val->n_kids / 2;
    p->models = calloc(n ? n : 1, sizeof *p->models);
    if (p->models == NULL) {
        free(keys);
        oom(ld, val);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const node_t *k = keys[i];
        if (k == NULL)
            continue;
        char sub[PATH_CAP];
        join(sub, path, show(k, b));
        if (want_string(ld, k, sub) == NULL)
            continue;
        const node_t *v = val->kids[2 * i + 1];
        const char *to = want_string(ld, v, sub);
        if (to == NULL)
            continue;
        config_model_map_t *m = &p->models[p->n_models];
        if (replace_str(ld, k, &m->from, k->text, k->len) != 0 ||
            replace_str(ld, v, &m->to, to, v->len) != 0) {
            free(m->from);
            free(m->to);
            m->from = m->to = NULL;
            continue;
        }
        p->n_models++;
    }
    free(keys);
    return 0;
}

static int want_decimal(ld_t *ld, const node_t *n, const char *path, double min, double max,
                        double *out);

/* A price: a plain non-negative decimal (USD per million tokens). */
static int want_price(ld_t *ld, const node_t *n, const char *path, double *out)
{
    return want_decimal(ld, n, path, 0, 9999999, out);
}

static const char *const price_keys[] = {"input", "output", "cached_input"};

static int field_pricing(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    char b[SHOW_CAP];
    (void)arg;
    if (want_map(ld, val, path) != 0)
        return -1;
    const node_t **keys = check_keys(ld, val, path);
    if (keys == NULL)
        return -1;
    size_t n = val->n_kids / 2;
    p->pricing = calloc(n ? n : 1, sizeof *p->pricing);
    if (p->pricing == NULL) {
        free(keys);
        oom(ld, val);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const node_t *k = keys[i];
        if (k == NULL)
            continue;
        char sub[PATH_CAP];
        join(sub, path, show(k, b));
        if (want_string(ld, k, sub) == NULL)
            continue;
        const node_t *v = val->kids[2 * i + 1];
        if (want_map(ld, v, sub) != 0)
            continue;
        const node_t **pk = check_keys(ld, v, sub);
        if (pk == NULL)
            continue;
        double price[3] = {0, 0, 0};
        int seen[3] = {0, 0, 0}, bad = 0;
        for (size_t j = 0; j < v->n_kids / 2; j++) {
            if (pk[j] == NULL) {
                bad = 1;
                continue;
            }
            char sub2[PATH_CAP];
            join(sub2, sub, show(pk[j], b));
            int which = -1;
            for (int q = 0; q < 3; q++)
                if (pk[j]->len == strlen(price_keys[q]) &&
                    memcmp(pk[j]->text, price_keys[q], pk[j]->len) == 0)
                    which = q;
            if (which < 0) {
                char hb[SHOW_CAP + 64];
                err(ld, pk[j], "unknown key `%s` in %s%s", show(pk[j], b), sub,
                    hint(pk[j], price_keys, 3, 1, hb, sizeof hb));
                bad = 1;
                continue;
            }
            if (want_price(ld, v->kids[2 * j + 1], sub2, &price[which]) != 0)
                bad = 1;
            seen[which] = 1;
        }
        free(pk);
        if (!bad && (!seen[0] || !seen[1])) {
            err(ld, v, "%s needs both `input` and `output` prices", sub);
            bad = 1;
        }
        if (bad)
            continue;
        config_price_t *pr = &p->pricing[p->n_pricing];
        if (replace_str(ld, k, &pr->model, k->text, k->len) != 0)
            continue;
        pr->input = price[0];
        pr->output = price[1];
        pr->cached_input = seen[2] ? price[2] : price[0];
        p->n_pricing++;
    }
    free(keys);
    return 0;
}

static int field_enum_at(ld_t *ld, const node_t *val, const char *path, int *dst,
                         const char *const *names, int n_names);

static int field_http_version(ld_t *ld, const node_t *val, const char *path, void *out,
                              intptr_t arg)
{
    static const char *const versions[] = {"auto", "1.1", "2"}; /* CONFIG_HTTP_* order */
    config_provider_t *p = out;
    (void)arg;
    ld->http_version_node[role_of(ld, p)] = val;
    return field_enum_at(ld, val, path, &p->http_version, versions, 3);
}

/* A PEM file of CAs to verify this provider's certificate with (a private CA). Read
 * now, so a wrong path is an error at load and not a TLS failure per request. */
static int field_ca_file(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_provider_t *p = out;
    char b[SHOW_CAP];
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    FILE *f = *s ? fopen(s, "rb") : NULL;
    if (!f) {
        err(ld, val, "%s: cannot read `%s`: %s", path, show(val, b),
            *s ? strerror(errno) : "empty path");
        return -1;
    }
    char head[16384];
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    if (!strstr(head, "-----BEGIN CERTIFICATE-----")) {
        err(ld, val, "%s: `%s` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path,
            show(val, b));
        return -1;
    }
    return replace_str(ld, val, &p->ca_file, s, strlen(s));
}

static const field_t provider_fields[] = {
    {"name", field_name, 0, 0, 0},
    {"pricing", field_pricing, 0, 0, 0},
    {"base_url", field_base_url, 0, 1, 0},
    {"api_key_env", field_api_key_env, 0, 0, 0},
    {"timeouts", field_timeouts, 0, 0, 0},
    {"models", field_models, 0, 0, 0},
    {"api_key", field_secret_inline, 0, 0, 1},
    {"http_version", field_http_version, 0, 0, 0},
    {"ca_file", field_ca_file, 0, 0, 0},
};

/* out = the config_t, arg = the role. */
static int field_provider(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_t *c = out;
    ld->provider_node[arg] = val;
    return parse_block(ld, val, path, provider_fields,
                       sizeof provider_fields / sizeof *provider_fields, &c->providers[arg]);
}

static const field_t provider_roles[] = {
    {"original", field_provider, CONFIG_ROLE_ORIGINAL, 1, 0},
    {"new", field_provider, CONFIG_ROLE_NEW, 1, 0},
};

static int field_providers(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    return parse_block(ld, val, path, provider_roles,
                       sizeof provider_roles / sizeof *provider_roles, out);
}

/* ---- flags ----------------------------------------------------------------- */

static int field_percentage(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    flag_def_t *def = out;
    char b[SHOW_CAP];
    uint32_t bp;
    (void)arg;
    ld->percentage_seen = 1;
    const char *s = want_number_text(ld, val, path);
    if (s == NULL)
        return -1;
    if (flags_parse_percentage(s, &bp) == 0) {
        def->percentage_bp = bp;
        if (def->key && strcmp(def->key, DEFAULT_FLAG) == 0)
            ld->percentage_node = val;
        return 0;
    }
    /* Say which rule the text broke. */
    size_t ni = strspn(s, "0123456789"), nf = 0;
    int decimal = ni > 0 && s[ni] == '\0';
    if (ni > 0 && s[ni] == '.') {
        nf = strspn(s + ni + 1, "0123456789");
        decimal = nf > 0 && s[ni + 1 + nf] == '\0';
    }
    if (decimal && ni > 1 && s[0] == '0')
        err(ld, val, "%s must be written without leading zeros, got %s", path, show(val, b));
    else if (decimal && nf > 2)
        err(ld, val, "%s allows at most two decimals, got %s", path, show(val, b));
    else if (decimal)
        err(ld, val, "%s must be from 0 to 100, got %s", path, show(val, b));
    else
        err(ld, val, "%s must be a number from 0 to 100 with at most two decimals, got `%s`", path,
            show(val, b));
    return -1;
}

static int field_sticky(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    flag_def_t *def = out;
    char b[SHOW_CAP], sub[PATH_CAP];
    (void)arg;
    ld->sticky_seen = 1;
    if (want_seq(ld, val, path) != 0)
        return -1;
    if (val->n_kids == 0)
        warn(ld, val, "%s is empty: every request follows `unkeyed`", path);
    for (size_t i = 0; i < val->n_kids; i++) {
        const node_t *it = val->kids[i];
        join_index(sub, path, i);
        const char *s = want_string(ld, it, sub);
        if (s == NULL)
            continue;
        if (flags_def_add_sticky(def, s) != 0)
            err(ld, it,
                "%s: bad sticky source `%s`; expected `header:NAME`, `body:FIELD` or `api_key`",
                sub, show(it, b));
    }
    return 0;
}

static int field_unkeyed(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    flag_def_t *def = out;
    char b[SHOW_CAP];
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (strcmp(s, "random") == 0)
        def->unkeyed = FLAG_UNKEYED_RANDOM;
    else if (strcmp(s, "original") == 0)
        def->unkeyed = FLAG_UNKEYED_ORIGINAL;
    else if (strcmp(s, "new") == 0)
        def->unkeyed = FLAG_UNKEYED_NEW;
    else {
        err(ld, val, "%s must be `random`, `original` or `new`, got `%s`", path, show(val, b));
        return -1;
    }
    return 0;
}

enum { LIST_ALLOW, LIST_DENY, LIST_MODELS };

static int field_match_list(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    flag_def_t *def = out;
    char b[SHOW_CAP], sub[PATH_CAP];
    flag_match_t **list = arg == LIST_ALLOW  ? &def->allow
                          : arg == LIST_DENY ? &def->deny
                                             : &def->models;
    size_t *n = arg == LIST_ALLOW  ? &def->n_allow
                : arg == LIST_DENY ? &def->n_deny
                                   : &def->n_models;
    if (want_seq(ld, val, path) != 0)
        return -1;
    for (size_t i = 0; i < val->n_kids; i++) {
        const node_t *it = val->kids[i];
        join_index(sub, path, i);
        const char *s = want_string(ld, it, sub);
        if (s == NULL)
            continue;
        if (flags_def_add_match(list, n, s) != 0)
            err(ld, it, "%s: cannot use pattern `%s`", sub, show(it, b));
    }
    return 0;
}

/* clang-format off */
static const field_t flag_fields[] = {
    {"percentage", field_percentage, 0, 0, 0}, /* required unless a rollout owns it */
    {"sticky", field_sticky, 0, 0, 0},
    {"unkeyed", field_unkeyed, 0, 0, 0},
    {"allow", field_match_list, LIST_ALLOW, 0, 0},
    {"deny", field_match_list, LIST_DENY, 0, 0},
    {"models", field_match_list, LIST_MODELS, 0, 0},
};
/* clang-format on */

static int add_default_sticky(flag_def_t *def)
{
    for (size_t i = 0; i < sizeof default_sticky / sizeof *default_sticky; i++)
        if (flags_def_add_sticky(def, default_sticky[i]) != 0)
            return -1;
    return 0;
}

static int push_flag(config_t *c, flag_def_t *def)
{
    flag_def_t **a = realloc(c->flags, (c->n_flags + 1) * sizeof *a);
    if (a == NULL)
        return -1;
    a[c->n_flags++] = def;
    c->flags = a;
    return 0;
}

/* The flags mapping names the routing flag. A block without it used to start at 0% new
 * with a warning, so a misspelt name moved all traffic to original on a reload. */
static int has_routing_flag(const node_t *map, const node_t *const *keys)
{
    for (size_t i = 0; i < map->n_kids / 2; i++)
        if (keys[i] && keys[i]->len == strlen(DEFAULT_FLAG) &&
            memcmp(keys[i]->text, DEFAULT_FLAG, keys[i]->len) == 0)
            return 1;
    return 0;
}

static int field_flags(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_t *c = out;
    char b[SHOW_CAP], h[256], sub[PATH_CAP];
    (void)arg;
    if (want_map(ld, val, path) != 0)
        return -1;
    const node_t **keys = check_keys(ld, val, path);
    if (keys == NULL)
        return -1;
    int routing = has_routing_flag(val, keys), near_miss = 0;
    for (size_t i = 0; i < val->n_kids / 2; i++) {
        const node_t *k = keys[i];
        if (k == NULL)
            continue;
        if (!is_name(k->text, k->len)) {
            err(ld, k, "flag name `%s` must be 1 to %d characters of A-Z a-z 0-9 . _ -", show(k, b),
                NAME_MAX_LEN);
            continue;
        }
        size_t kf;
        for (kf = 0; kf < sizeof known_flags / sizeof *known_flags; kf++)
            if (strcmp(known_flags[kf], k->text) == 0)
                break;
        if (kf == sizeof known_flags / sizeof *known_flags) {
            hint(k, known_flags, sizeof known_flags / sizeof *known_flags, 0, h, sizeof h);
            if (!routing && h[0]) {
                /* Most likely the routing flag misspelt: as a warning it put 0% on new. */
                err(ld, k,
                    "flag `%s` is not evaluated by the router and flags has no `%s`, so every "
                    "request would go to original%s",
                    k->text, DEFAULT_FLAG, h);
                near_miss = 1;
            } else {
                warn(ld, k, "flag `%s` is not evaluated by the router%s", k->text, h);
            }
        }
        join(sub, path, k->text);
        flag_def_t *def = flags_def_new(k->text);
        if (def == NULL) {
            oom(ld, k);
            continue;
        }
        def->percentage_bp = 0;
        def->unkeyed = FLAG_UNKEYED_RANDOM;
        ld->sticky_seen = 0;
        ld->percentage_seen = 0;
        parse_block(ld, val->kids[2 * i + 1], sub, flag_fields,
                    sizeof flag_fields / sizeof *flag_fields, def);
        if (!ld->percentage_seen && strcmp(k->text, DEFAULT_FLAG) == 0)
            ld->flag_missing_percentage = val->kids[2 * i + 1];
        if ((!ld->sticky_seen && def->n_sticky == 0 && add_default_sticky(def) != 0) ||
            push_flag(c, def) != 0) {
            oom(ld, k);
            flags_def_free(def);
        }
    }
    free(keys);
    if (!routing && !near_miss)
        err(ld, val,
            "flags has no `%s`, the flag that routes requests: every request would go to "
            "original. Add it (`%s: { percentage: 0 }` keeps everything on original), or leave "
            "the flags block out",
            DEFAULT_FLAG, DEFAULT_FLAG);
    return 0;
}

/* ---- top level ------------------------------------------------------------- */

/* Headers that carry identity, routing or framing never pass on, whatever the file says. */
static const char *const never_forwarded[] = {
    "authorization", "proxy-authorization", "cookie", "host", "connection", "keep-alive",
    "transfer-encoding", "content-length", "te", "trailer", "upgrade", "expect",
    "proxy-connection", "x-forwarded-for", "forwarded",
};

/* Forwarded headers go to both providers: a credential meant for one (a client's own
 * provider key, a token) would reach the other on every fallback. */
static const char *const credential_headers[] = {"x-api-key", "api-key", "x-goog-api-key"};
/* Words of a header name (between '-') that mark a credential; "api" followed by "key"
 * does too. By word, not substring: x-max-tokens, x-idempotency-key or x-author carry
 * none. */
static const char *const credential_words[] = {
    "apikey", "token", "secret", "password", "passwd", "auth", "oauth", "authorization",
    "cookie", "credential", "credentials",
};

/* 1 when the lower-cased header name looks like one that carries a credential ('_' is
 * read as '-': x_api_key is the same header to many servers). */
static int is_credential_header(const char *lower)
{
    char name[72];
    size_t n = strlen(lower);
    if (n >= sizeof name)
        return 0; /* forward_headers names are at most 64 bytes */
    for (size_t i = 0; i <= n; i++)
        name[i] = lower[i] == '_' ? '-' : lower[i];
    for (size_t i = 0; i < sizeof credential_headers / sizeof *credential_headers; i++)
        if (strcmp(name, credential_headers[i]) == 0)
            return 1;
    int after_api = 0;
    char *save = NULL;
    for (char *w = strtok_r(name, "-", &save); w; w = strtok_r(NULL, "-", &save)) {
        if (after_api && strcmp(w, "key") == 0)
            return 1;
        after_api = strcmp(w, "api") == 0;
        for (size_t i = 0; i < sizeof credential_words / sizeof *credential_words; i++)
            if (strcmp(w, credential_words[i]) == 0)
                return 1;
    }
    return 0;
}

static int field_forward_headers(ld_t *ld, const node_t *val, const char *path, void *out,
                                 intptr_t arg)
{
    (void)out;
    (void)arg;
    char sub[PATH_CAP];
    config_t *c = ld->cfg;
    if (want_seq(ld, val, path) != 0)
        return -1;
    for (size_t i = 0; i < val->n_kids; i++) {
        const node_t *it = val->kids[i];
        join_index(sub, path, i);
        const char *s = want_string(ld, it, sub);
        if (s == NULL)
            continue;
        size_t len = strlen(s);
        int ok = len > 0 && len <= 64;
        for (size_t j = 0; ok && j < len; j++)
            ok = (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                 (s[j] >= '0' && s[j] <= '9') || s[j] == '-' || s[j] == '_';
        if (!ok) {
            err(ld, it, "%s must be a header name (letters, digits, `-`, `_`)", sub);
            continue;
        }
        char *lower = strdup(s);
        if (lower == NULL) {
            oom(ld, it);
            return -1;
        }
        for (char *q = lower; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q - 'A' + 'a');
        int banned = 0;
        for (size_t j = 0; j < sizeof never_forwarded / sizeof *never_forwarded; j++)
            banned |= strcmp(lower, never_forwarded[j]) == 0;
        if (banned) {
            err(ld, it, "%s: `%s` is never forwarded to a provider", sub, lower);
            free(lower);
            continue;
        }
        if (is_credential_header(lower)) {
            err(ld, it,
                "%s: `%s` looks like a credential header and is never forwarded: forwarded "
                "headers go to both providers, so a key meant for one would reach the other "
                "on fallback",
                sub, lower);
            free(lower);
            continue;
        }
        char **a = realloc(c->forward_headers, (c->n_forward_headers + 1) * sizeof *a);
        if (a == NULL) {
            free(lower);
            oom(ld, it);
            return -1;
        }
        a[c->n_forward_headers++] = lower;
        c->forward_headers = a;
    }
    return 0;
}

/* The router opens the log at start and creates the file, not its folder: a folder that
 * is missing passed `check` and then stopped the start. 1 when it is missing (reported). */
static int access_log_folder_missing(ld_t *ld, const node_t *val, const char *path,
                                     const char *file)
{
    char b[SHOW_CAP], dir[4096];
    const char *slash = strrchr(file, '/');
    size_t dl = slash == NULL ? 0 : slash == file ? 1 : (size_t)(slash - file);
    if (dl >= sizeof dir)
        return 0; /* longer than a path can be: open() will say so */
    memcpy(dir, dl ? file : ".", dl ? dl : 1);
    dir[dl ? dl : 1] = '\0';
    struct stat st;
    int rc = stat(dir, &st);
    if (rc == 0 && S_ISDIR(st.st_mode))
        return 0;
    const char *why = rc == 0                               ? "is not a folder"
                      : errno == ENOENT || errno == ENOTDIR ? "does not exist"
                                                            : strerror(errno);
    err(ld, val, "%s: folder `%s` %s (switchyard creates the log file, not its folder%s)", path,
        config_yaml_show(dir, strlen(dir), b, sizeof b), why,
        file[0] == '/' ? "" : "; a relative path starts where switchyard runs");
    return 1;
}

static int field_access_log_path(ld_t *ld, const node_t *val, const char *path, void *out,
                                 intptr_t arg)
{
    (void)out;
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (*s == '\0') {
        err(ld, val, "%s must be \"-\" (standard output) or a file path", path);
        return -1;
    }
    if (strcmp(s, "-") != 0 && access_log_folder_missing(ld, val, path, s))
        return -1;
    return replace_str(ld, val, &ld->cfg->access_log.path, s, strlen(s));
}

static const field_t access_log_fields[] = {
    {"path", field_access_log_path, 0, 1, 0},
};
SUB_BLOCK(field_access_log, access_log_fields)


/* ---- rollout --------------------------------------------------------------- */

/* "24h", "90m", "30s", "500ms": a whole number and a unit. */
static int want_duration(ld_t *ld, const node_t *n, const char *path, long long min_ms,
                         long long max_ms, long long *out)
{
    char b[SHOW_CAP];
    const char *s = want_string(ld, n, path);
    if (s == NULL)
        return -1;
    size_t nd = strspn(s, "0123456789");
    const char *unit = s + nd;
    long long mult = strcmp(unit, "ms") == 0  ? 1
                     : strcmp(unit, "s") == 0 ? 1000
                     : strcmp(unit, "m") == 0 ? 60000
                     : strcmp(unit, "h") == 0 ? 3600000
                                              : 0;
    if (nd == 0 || nd > 9 || mult == 0) {
        err(ld, n, "%s must be a duration such as 30s, 15m or 24h, got `%s`", path, show(n, b));
        return -1;
    }
    long long v = strtoll(s, NULL, 10) * mult;
    if (v < min_ms || v > max_ms) {
        err(ld, n, "%s must be from %lldms to %lldh, got %s", path, min_ms, max_ms / 3600000,
            show(n, b));
        return -1;
    }
    *out = v;
    return 0;
}

/* A plain decimal within [min, max]. */
static int want_decimal(ld_t *ld, const node_t *n, const char *path, double min, double max,
                        double *out)
{
    char b[SHOW_CAP];
    const char *s = want_number_text(ld, n, path);
    if (s == NULL)
        return -1;
    size_t ni = strspn(s, "0123456789"), nf = 0;
    if (s[ni] == '.')
        nf = strspn(s + ni + 1, "0123456789");
    size_t used = ni + (s[ni] == '.' ? 1 + nf : 0);
    if (ni == 0 || used != n->len || (s[ni] == '.' && nf == 0) || ni > 9) {
        err(ld, n, "%s must be a decimal number, got `%s`", path, show(n, b));
        return -1;
    }
    double v = strtod(s, NULL);
    if (v < min || v > max) {
        err(ld, n, "%s must be from %g to %g, got %s", path, min, max, show(n, b));
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct {
    size_t off;
    long long min, max;
} dur_field_t;

static int field_duration_at(ld_t *ld, const node_t *val, const char *path, void *out,
                             intptr_t arg)
{
    (void)out;
    const dur_field_t *d = (const dur_field_t *)arg;
    long long v;
    if (want_duration(ld, val, path, d->min, d->max, &v) != 0)
        return -1;
    *(long long *)((char *)ld->cfg + d->off) = v;
    return 0;
}
#define DUR_AT(member, lo, hi)                                                                     \
    ((intptr_t) & (const dur_field_t){offsetof(config_t, member), (lo), (hi)})

typedef struct {
    size_t off;
    double min, max;
} dec_field_t;

static int field_decimal_at(ld_t *ld, const node_t *val, const char *path, void *out,
                            intptr_t arg)
{
    (void)out;
    const dec_field_t *d = (const dec_field_t *)arg;
    double v;
    if (want_decimal(ld, val, path, d->min, d->max, &v) != 0)
        return -1;
    *(double *)((char *)ld->cfg + d->off) = v;
    return 0;
}
#define DEC_AT(member, lo, hi)                                                                     \
    ((intptr_t) & (const dec_field_t){offsetof(config_t, member), (lo), (hi)})

static int field_rollout_flag(ld_t *ld, const node_t *val, const char *path, void *out,
                              intptr_t arg)
{
    (void)out;
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    ld->rollout_flag_node = val;
    return replace_str(ld, val, &ld->cfg->rollout.flag, s, strlen(s));
}

static int field_enum_at(ld_t *ld, const node_t *val, const char *path, int *dst,
                         const char *const *names, int n_names)
{
    char b[SHOW_CAP];
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    for (int i = 0; i < n_names; i++)
        if (strcmp(s, names[i]) == 0) {
            *dst = i;
            return 0;
        }
    char list[160];
    size_t o = 0;
    for (int i = 0; i < n_names; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s`%s`", i ? ", " : "", names[i]);
    err(ld, val, "%s must be one of %s, got `%s`", path, list, show(val, b));
    return -1;
}

static const char *const rollout_modes[] = {"auto", "manual", "rollback"};
static const char *const rollout_on_failure[] = {"rollback", "step_down", "pause"};

static int field_rollout_mode(ld_t *ld, const node_t *val, const char *path, void *out,
                              intptr_t arg)
{
    (void)out;
    (void)arg;
    return field_enum_at(ld, val, path, &ld->cfg->rollout.mode, rollout_modes, 3);
}

static int field_rollout_on_failure(ld_t *ld, const node_t *val, const char *path, void *out,
                                    intptr_t arg)
{
    (void)out;
    (void)arg;
    return field_enum_at(ld, val, path, &ld->cfg->rollout.on_failure, rollout_on_failure, 3);
}

static int field_rollout_stages(ld_t *ld, const node_t *val, const char *path, void *out,
                                intptr_t arg)
{
    (void)out;
    (void)arg;
    char sub[PATH_CAP], b[SHOW_CAP];
    config_rollout_t *r = &ld->cfg->rollout;
    if (want_seq(ld, val, path) != 0)
        return -1;
    if (val->n_kids == 0 || val->n_kids > CONFIG_MAX_STAGES) {
        err(ld, val, "%s must list 1 to %d percentages", path, CONFIG_MAX_STAGES);
        return -1;
    }
    r->n_stages = 0;
    for (size_t i = 0; i < val->n_kids; i++) {
        const node_t *it = val->kids[i];
        join_index(sub, path, i);
        const char *s = want_number_text(ld, it, sub);
        uint32_t bp;
        if (s == NULL)
            return -1;
        if (flags_parse_percentage(s, &bp) != 0 || bp == 0) {
            err(ld, it, "%s must be a percentage above 0 and at most 100 (two decimals), got %s",
                sub, show(it, b));
            return -1;
        }
        if (r->n_stages > 0 && bp <= r->stages_bp[r->n_stages - 1]) {
            err(ld, it, "%s: stages must increase, got %s after %g", sub, show(it, b),
                r->stages_bp[r->n_stages - 1] / 100.0);
            return -1;
        }
        r->stages_bp[r->n_stages++] = bp;
    }
    return 0;
}

static int field_rollout_path(ld_t *ld, const node_t *val, const char *path, void *out,
                              intptr_t arg)
{
    (void)out;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (*s == '\0') {
        err(ld, val, "%s must be a file path", path);
        return -1;
    }
    char **dst = arg ? &ld->cfg->rollout.audit_log : &ld->cfg->rollout.state_file;
    return replace_str(ld, val, dst, s, strlen(s));
}

static int field_rollout_min_requests(ld_t *ld, const node_t *val, const char *path, void *out,
                                      intptr_t arg)
{
    (void)out;
    (void)arg;
    return want_int(ld, val, path, 1, 100000000, &ld->cfg->rollout.min_requests);
}

static const field_t gates_fields[] = {
    {"error_rate_increase", field_decimal_at, DEC_AT(rollout.error_rate_increase, 0, 1), 0, 0},
    {"confidence", field_decimal_at, DEC_AT(rollout.confidence, 0.5, 0.9999), 0, 0},
    {"latency_p95_ratio", field_decimal_at, DEC_AT(rollout.latency_p95_ratio, 0.01, 100), 0, 0},
    {"ttft_p95_ratio", field_decimal_at, DEC_AT(rollout.ttft_p95_ratio, 0.01, 100), 0, 0},
    {"cost_per_1k_tokens_ratio", field_decimal_at,
     DEC_AT(rollout.cost_per_1k_tokens_ratio, 0.01, 100), 0, 0},
    {"latency_min_difference_ms", field_decimal_at,
     DEC_AT(rollout.latency_min_difference_ms, 0, 600000), 0, 0},
};
SUB_BLOCK(field_gates, gates_fields)

#define DAY_MS (24LL * 3600000)
static const field_t rollout_fields[] = {
    {"flag", field_rollout_flag, 0, 0, 0},
    {"mode", field_rollout_mode, 0, 0, 0},
    {"stages", field_rollout_stages, 0, 0, 0},
    {"stage_min_duration", field_duration_at,
     DUR_AT(rollout.stage_min_duration_ms, 0, 365 * DAY_MS), 0, 0},
    {"min_requests", field_rollout_min_requests, 0, 0, 0},
    {"check_interval", field_duration_at, DUR_AT(rollout.check_interval_ms, 100, DAY_MS), 0, 0},
    {"max_stage_duration", field_duration_at,
     DUR_AT(rollout.max_stage_duration_ms, 1000, 365 * DAY_MS), 0, 0},
    {"failure_threshold", field_int_at, INT_AT(rollout.failure_threshold, 1, 1000), 0, 0},
    {"gates", field_gates, 0, 0, 0},
    {"on_failure", field_rollout_on_failure, 0, 0, 0},
    {"state_file", field_rollout_path, 0, 0, 0},
    {"audit_log", field_rollout_path, 1, 0, 0},
};

static int field_rollout(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    (void)arg;
    ld->cfg->rollout.present = 1;
    ld->rollout_node = val;
    return parse_block(ld, val, path, rollout_fields, sizeof rollout_fields / sizeof *rollout_fields,
                       out);
}


/* ---- clients, cors, realtime ----------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                 : -1;
}

static int field_client_name(ld_t *ld, const node_t *val, const char *path, void *out,
                             intptr_t arg)
{
    config_client_t *cl = out;
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (!is_name(s, val->len)) {
        err(ld, val, "%s must be 1 to %d characters of A-Z a-z 0-9 . _ -", path, NAME_MAX_LEN);
        return -1;
    }
    return replace_str(ld, val, &cl->name, s, val->len);
}

static int field_client_user(ld_t *ld, const node_t *val, const char *path, void *out,
                             intptr_t arg)
{
    config_client_t *cl = out;
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (*s == '\0' || val->len > 256) {
        err(ld, val, "%s must be a non-empty user id of at most 256 bytes", path);
        return -1;
    }
    return replace_str(ld, val, &cl->user, s, val->len);
}

/* A client with both key_env and key_sha256 used to keep whichever came last, silently:
 * one key per client. 1 when this client already has one (reported). */
static int client_second_key(ld_t *ld, const node_t *val, const char *path)
{
    if (ld->client_key_node == NULL) {
        ld->client_key_node = val;
        return 0;
    }
    err(ld, val,
        "%s: this client already has a key (at %d:%d); give one, `key_env` or "
        "`key_sha256`",
        path, ld->client_key_node->line, ld->client_key_node->col);
    return 1;
}

static int field_client_key_env(ld_t *ld, const node_t *val, const char *path, void *out,
                                intptr_t arg)
{
    config_client_t *cl = out;
    (void)arg;
    char *key = NULL;
    if (client_second_key(ld, val, path))
        return -1;
    if (load_env(ld, val, path, &cl->key_env, &key) != 0)
        return -1;
    SHA256((const unsigned char *)key, strlen(key), cl->key_sha256);
    explicit_bzero(key, strlen(key));
    free(key);
    ld->client_has_key = 1;
    return 0;
}

static int field_client_key_sha256(ld_t *ld, const node_t *val, const char *path, void *out,
                                   intptr_t arg)
{
    config_client_t *cl = out;
    (void)arg;
    if (client_second_key(ld, val, path))
        return -1;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (val->len != 64) {
        err(ld, val, "%s must be 64 hex digits (the SHA-256 of the key)", path);
        return -1;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            err(ld, val, "%s must be 64 hex digits (the SHA-256 of the key)", path);
            return -1;
        }
        cl->key_sha256[i] = (unsigned char)(hi * 16 + lo);
    }
    ld->client_has_key = 1;
    return 0;
}

static int field_client_permissions(ld_t *ld, const node_t *val, const char *path, void *out,
                                    intptr_t arg)
{
    config_client_t *cl = out;
    char sub[PATH_CAP], b[SHOW_CAP];
    (void)arg;
    if (want_seq(ld, val, path) != 0)
        return -1;
    cl->permissions = 0;
    for (size_t i = 0; i < val->n_kids; i++) {
        join_index(sub, path, i);
        const char *s = want_string(ld, val->kids[i], sub);
        if (s == NULL)
            continue;
        if (strcmp(s, "chat") == 0)
            cl->permissions |= CLIENT_PERM_CHAT;
        else if (strcmp(s, "push") == 0)
            cl->permissions |= CLIENT_PERM_PUSH;
        else
            err(ld, val->kids[i], "%s must be `chat` or `push`, got `%s`", sub,
                show(val->kids[i], b));
    }
    return 0;
}

static const field_t client_fields[] = {
    {"name", field_client_name, 0, 1, 0},
    {"key_env", field_client_key_env, 0, 0, 0},
    {"key_sha256", field_client_key_sha256, 0, 0, 0},
    {"user", field_client_user, 0, 1, 0},
    {"permissions", field_client_permissions, 0, 0, 0},
    {"key", field_secret_inline, 0, 0, 1},
};

/* Two clients with one key: authentication finds the first, so the second client's name,
 * user and permissions never apply. Compared by SHA-256, which covers the same variable
 * twice, two variables holding the same key and a key_sha256 of a key_env's key. */
static void client_same_key(ld_t *ld, const config_t *c, const node_t *const *key_nodes, size_t i,
                            const char *sub)
{
    const config_client_t *cl = &c->clients[i];
    for (size_t j = 0; j < i; j++) {
        const config_client_t *o = &c->clients[j];
        if (key_nodes[j] == NULL || memcmp(o->key_sha256, cl->key_sha256, 32) != 0)
            continue;
        if (cl->key_env && o->key_env && strcmp(cl->key_env, o->key_env) == 0)
            err(ld, key_nodes[i],
                "%s.key_env names the same variable as client `%s` (%d:%d); "
                "each client needs its own key",
                sub, o->name ? o->name : "?", key_nodes[j]->line, key_nodes[j]->col);
        else
            err(ld, key_nodes[i],
                "%s has the same key as client `%s` (%d:%d); each client "
                "needs its own key",
                sub, o->name ? o->name : "?", key_nodes[j]->line, key_nodes[j]->col);
        return;
    }
}

static int field_clients(ld_t *ld, const node_t *val, const char *path, void *out, intptr_t arg)
{
    config_t *c = out;
    char sub[PATH_CAP];
    (void)arg;
    if (want_seq(ld, val, path) != 0)
        return -1;
    if (val->n_kids == 0) {
        /* No clients means no client authentication: an empty list must not fail open. */
        err(ld, val,
            "%s is empty, which would turn client authentication off; list at least one "
            "client, or leave the `clients` block out to run without client keys",
            path);
        return -1;
    }
    c->clients = calloc(val->n_kids, sizeof *c->clients);
    const node_t **key_nodes = calloc(val->n_kids, sizeof *key_nodes);
    if (c->clients == NULL || key_nodes == NULL) {
        free(key_nodes);
        oom(ld, val);
        return -1;
    }
    for (size_t i = 0; i < val->n_kids; i++) {
        join_index(sub, path, i);
        config_client_t *cl = &c->clients[c->n_clients];
        cl->permissions = CLIENT_PERM_CHAT;
        ld->client_has_key = 0;
        ld->client_key_node = NULL;
        if (want_map(ld, val->kids[i], sub) != 0)
            continue;
        parse_block(ld, val->kids[i], sub, client_fields, sizeof client_fields / sizeof *client_fields,
                    cl);
        if (ld->client_key_node == NULL)
            err(ld, val->kids[i], "%s needs `key_env` or `key_sha256`", sub);
        for (size_t j = 0; j < c->n_clients; j++)
            if (cl->name && c->clients[j].name && strcmp(cl->name, c->clients[j].name) == 0)
                err(ld, val->kids[i], "%s: client name `%s` is used twice", sub, cl->name);
        key_nodes[c->n_clients] = ld->client_has_key ? ld->client_key_node : NULL;
        if (key_nodes[c->n_clients] != NULL)
            client_same_key(ld, c, key_nodes, c->n_clients, sub);
        c->n_clients++;
    }
    free(key_nodes);
    return 0;
}

static int field_cors_origins(ld_t *ld, const node_t *val, const char *path, void *out,
                              intptr_t arg)
{
    config_t *c = out;
    char sub[PATH_CAP], b[SHOW_CAP];
    (void)arg;
    if (want_seq(ld, val, path) != 0)
        return -1;
    c->cors.allow_origins = calloc(val->n_kids ? val->n_kids : 1, sizeof(char *));
    if (c->cors.allow_origins == NULL) {
        oom(ld, val);
        return -1;
    }
    for (size_t i = 0; i < val->n_kids; i++) {
        join_index(sub, path, i);
        const char *s = want_string(ld, val->kids[i], sub);
        if (s == NULL)
            continue;
        /* An origin is scheme://host[:port], nothing else: a path or a '*' is a mistake. */
        const char *rest = strncmp(s, "https://", 8) == 0  ? s + 8
                           : strncmp(s, "http://", 7) == 0 ? s + 7
                                                           : NULL;
        if (!rest || !*rest || strpbrk(rest, "/*?# ")) {
            err(ld, val->kids[i], "%s must be an origin such as https://app.example.com, got `%s`",
                sub, show(val->kids[i], b));
            continue;
        }
        if (replace_str(ld, val->kids[i], &c->cors.allow_origins[c->cors.n_allow_origins], s,
                        val->kids[i]->len) == 0)
            c->cors.n_allow_origins++;
    }
    return 0;
}

static int field_cors_credentials(ld_t *ld, const node_t *val, const char *path, void *out,
                                  intptr_t arg)
{
    config_t *c = out;
    char b[SHOW_CAP];
    (void)arg;
    const char *s = want_string(ld, val, path);
    if (s == NULL)
        return -1;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        c->cors.allow_credentials = s[0] == 't';
        return 0;
    }
    err(ld, val, "%s must be true or false, got `%s`", path, show(val, b));
    return -1;
}

static const field_t cors_fields[] = {
    {"allow_origins", field_cors_origins, 0, 1, 0},
    {"allow_credentials", field_cors_credentials, 0, 0, 0},
    {"max_age_s", field_int_at, INT_AT(cors.max_age_s, 0, 86400), 0, 0},
};
SUB_BLOCK(field_cors, cors_fields)

static int field_session_secret_env(ld_t *ld, const node_t *val, const char *path, void *out,
                                    intptr_t arg)
{
    (void)out;
    (void)arg;
    return load_env(ld, val, path, &ld->cfg->realtime.session_secret_env,
                    &ld->cfg->realtime.session_secret);
}

static const field_t realtime_fields[] = {
    {"max_message_bytes", field_int_at, INT_AT(realtime.max_message_bytes, 256, 16 << 20), 0, 0},
    {"max_connections_per_key", field_int_at,
     INT_AT(realtime.max_connections_per_key, 1, 1000000), 0, 0},
    {"handshake_timeout_ms", field_int_at, INT_AT(realtime.handshake_timeout_ms, 100, 600000), 0,
     0},
    {"ping_interval_ms", field_int_at, INT_AT(realtime.ping_interval_ms, 100, 3600000), 0, 0},
    {"idle_timeout_ms", field_int_at, INT_AT(realtime.idle_timeout_ms, 200, 86400000), 0, 0},
    {"max_queue_bytes", field_int_at, INT_AT(realtime.max_queue_bytes, 4096, 1 << 30), 0, 0},
    {"heartbeat_ms", field_int_at, INT_AT(realtime.heartbeat_ms, 100, 3600000), 0, 0},
    {"session_token_ttl_s", field_int_at, INT_AT(realtime.session_token_ttl_s, 10, 86400), 0, 0},
    {"session_secret_env", field_session_secret_env, 0, 0, 0},
};
SUB_BLOCK(field_realtime, realtime_fields)

/*
 * The top-level blocks. A new block (fallback, access_log, rollout, clients,
 * cors) is one entry here plus its field function; its data goes in config_t.
 */
static const field_t top_fields[] = {
    {"listen", field_addr, (intptr_t)offsetof(config_t, listen), 0, 0},
    {"workers", field_workers, 0, 0, 0},
    {"admin", field_admin, 0, 0, 0},
    {"limits", field_limits, 0, 0, 0},
    {"providers", field_providers, 0, 1, 0},
    {"flags", field_flags, 0, 0, 0},
    {"forward_headers", field_forward_headers, 0, 0, 0},
    {"fallback", field_fallback, 0, 0, 0},
    {"access_log", field_access_log, 0, 0, 0},
    {"rollout", field_rollout, 0, 0, 0},
    {"clients", field_clients, 0, 0, 0},
    {"cors", field_cors, 0, 0, 0},
    {"realtime", field_realtime, 0, 0, 0},
};

/* Prices are looked up by the model name clients send: a price keyed by a provider-side
 * name that `models` maps to (and that no client sends under that name) never applies,
 * and every request of that model would show an unknown cost. */
static void warn_price_never_used(ld_t *ld, const config_provider_t *p, const char *model)
{
    const char *from = NULL;
    for (size_t j = 0; j < p->n_models; j++) {
        if (strcmp(p->models[j].from, model) == 0)
            return; /* also a client-facing name */
        if (strcmp(p->models[j].to, model) == 0)
            from = p->models[j].from;
    }
    if (from)
        warn(ld, ld->provider_node[role_of(ld, p)],
             "providers.%s.pricing `%s` is the provider's name for `%s`: prices are looked up "
             "by the model name clients send, so key it `%s`",
             p->role, model, from, from);
}

/* 1 when the URL's host is this machine (127.0.0.0/8, ::1, localhost). */
static int url_host_is_loopback(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int lo = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
        lo = strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
             strcasecmp(host, "localhost") == 0;
    }
    curl_free(host);
    curl_url_cleanup(u);
    return lo;
}

/* Frees a secret after overwriting it: a core dump or a later allocation must not find
 * an old key after a reload. */
static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void config_free(config_t *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->listen.host);
    free(c->admin.listen.host);
    free(c->admin.token_env);
    free_secret(c->admin.token);
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        config_provider_t *p = &c->providers[r];
        free(p->name);
        free(p->base_url);
        free(p->ca_file);
        free(p->api_key_env);
        free_secret(p->api_key);
        for (size_t i = 0; i < p->n_models; i++) {
            free(p->models[i].from);
            free(p->models[i].to);
        }
        free(p->models);
        for (size_t i = 0; i < p->n_pricing; i++)
            free(p->pricing[i].model);
        free(p->pricing);
    }
    free(c->access_log.path);
    for (size_t i = 0; i < c->n_clients; i++) {
        free(c->clients[i].name);
        free(c->clients[i].key_env);
        free(c->clients[i].user);
    }
    free(c->clients);
    for (size_t i = 0; i < c->cors.n_allow_origins; i++)
        free(c->cors.allow_origins[i]);
    free(c->cors.allow_origins);
    free_secret(c->realtime.session_secret);
    free(c->realtime.session_secret_env);
    free(c->rollout.flag);
    free(c->rollout.state_file);
    free(c->rollout.audit_log);
    for (size_t i = 0; i < c->n_forward_headers; i++)
        free(c->forward_headers[i]);
    free(c->forward_headers);
    for (size_t i = 0; i < c->n_flags; i++)
        flags_def_free(c->flags[i]);
    free(c->flags);
    free(c);
}

static config_t *config_new_defaults(const char *name)
{
    config_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    atomic_init(&c->refs, 1);
    c->path = strdup(name);
    c->listen.host = strdup(DEFAULT_LISTEN_HOST);
    c->listen.port = DEFAULT_LISTEN_PORT;
    c->admin.listen.host = strdup(DEFAULT_ADMIN_HOST);
    c->admin.listen.port = DEFAULT_ADMIN_PORT;
    c->limits.max_body_bytes = DEFAULT_MAX_BODY;
    c->limits.max_header_bytes = DEFAULT_MAX_HEADER;
    c->limits.client_stall_ms = 30000;
    c->limits.client_timeout_ms = 30000;
    c->limits.header_timeout_ms = 10000;
    c->cors.max_age_s = 600;
    c->realtime.max_message_bytes = 1 << 20;
    c->realtime.max_connections_per_key = 10000;
    c->realtime.handshake_timeout_ms = 10000;
    c->realtime.ping_interval_ms = 30000;
    c->realtime.idle_timeout_ms = 90000;
    c->realtime.max_queue_bytes = 4 << 20;
    c->realtime.heartbeat_ms = 15000;
    c->realtime.session_token_ttl_s = 300;
    c->rollout = (config_rollout_t){
        .mode = 0,
        .n_stages = 3,
        .stages_bp = {1000, 5000, 10000},
        .stage_min_duration_ms = 24 * 3600000LL,
        .check_interval_ms = 60000,
        .max_stage_duration_ms = 72 * 3600000LL,
        .min_requests = 500,
        .failure_threshold = 3,
        .error_rate_increase = 0.01,
        .confidence = 0.95,
        .latency_p95_ratio = 1.25,
        .ttft_p95_ratio = 1.25,
        .cost_per_1k_tokens_ratio = 1.0,
        .latency_min_difference_ms = 10,
        .on_failure = 0,
    };
    c->fallback = (config_fallback_t){
        .on = FAILURE_DEFAULT_ON,
        .retry_same_provider = 0,
        .max_attempts = 2,
        .backoff_base_ms = 100,
        .backoff_max_ms = 2000,
        .budget_percent = 20,
        .budget_min_per_second = 5,
        .eject_consecutive = 5,
        .eject_base_ms = 30000,
        .eject_max_ms = 300000,
    };
    int ok = c->path && c->listen.host && c->admin.listen.host;
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        config_provider_t *p = &c->providers[r];
        p->role = role_names[r];
        p->name = strdup(role_names[r]);
        ok = ok && p->name;
        p->timeouts.connect_ms = DEFAULT_CONNECT_MS;
        p->timeouts.first_byte_ms = DEFAULT_FIRST_BYTE_MS;
        p->timeouts.idle_ms = DEFAULT_IDLE_MS;
        p->timeouts.total_ms = DEFAULT_TOTAL_MS;
    }
    if (!ok) {
        config_free(c);
        return NULL;
    }
    return c;
}

enum { HOST_NAME, HOST_V4, HOST_V6, HOST_V4_ANY, HOST_V6_ANY };

/* What a listen host is; a numeric one's address goes to addr (16 bytes). */
static int host_kind(const char *host, unsigned char *addr)
{
    static const unsigned char zero[16];
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, host, addr) == 1)
        return memcmp(addr, zero, 4) == 0 ? HOST_V4_ANY : HOST_V4;
    if (inet_pton(AF_INET6, host, addr) == 1)
        return memcmp(addr, zero, 16) == 0 ? HOST_V6_ANY : HOST_V6;
    return HOST_NAME;
}

/* Whether two listeners would fight over one port. Besides the same address, a wildcard
 * takes the port on every address it covers: 0.0.0.0 every IPv4 one (and a name, which may
 * resolve to one), :: every address, IPv4 too (Linux binds it dual-stack by default). The
 * second bind then fails at start, after `check` said ok. Port 0 is any free port. */
static int listeners_clash(const config_addr_t *a, const config_addr_t *b)
{
    unsigned char aa[16], ba[16];
    if (a->port == 0 || a->port != b->port)
        return 0;
    int ka = host_kind(a->host, aa), kb = host_kind(b->host, ba);
    if (ka == HOST_V6_ANY || kb == HOST_V6_ANY)
        return 1;
    if (ka == HOST_V4_ANY || kb == HOST_V4_ANY)
        return ka != HOST_V6 && kb != HOST_V6;
    if (ka != kb)
        return 0;
    if (ka == HOST_NAME)
        return strcasecmp(a->host, b->host) == 0;
    return memcmp(aa, ba, 16) == 0;
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcasecmp(host, "localhost") == 0;
}

/* Checks that span blocks, defaults that depend on what was given. */
static void finish(ld_t *ld, const node_t *root)
{
    config_t *c = ld->cfg;

    if (ld->provider_node[CONFIG_ROLE_ORIGINAL] && ld->provider_node[CONFIG_ROLE_NEW] &&
        strcasecmp(c->providers[0].name, c->providers[1].name) == 0) {
        const node_t *at = ld->name_node[CONFIG_ROLE_NEW] ? ld->name_node[CONFIG_ROLE_NEW]
                           : ld->name_node[CONFIG_ROLE_ORIGINAL]
                               ? ld->name_node[CONFIG_ROLE_ORIGINAL]
                               : ld->provider_node[CONFIG_ROLE_NEW];
        err(ld, at,
            "providers.original and providers.new have the same name `%s`; names label "
            "metrics and logs and must differ",
            c->providers[1].name);
    }
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        const config_provider_t *p = &c->providers[r];
        if (p->http_version == CONFIG_HTTP_2 && p->base_url &&
            strncasecmp(p->base_url, "http://", 7) == 0)
            err(ld, ld->http_version_node[r],
                "providers.%s.http_version \"2\" needs an https:// base_url: HTTP/2 in clear "
                "text (h2c) fails on reused connections with libcurl before 8.0 (curl#10634)",
                p->role);
        else if (p->http_version == CONFIG_HTTP_2)
            warn(ld, ld->http_version_node[r],
                 "providers.%s.http_version \"2\": through libcurl 7.88 (Debian 12) HTTP/2 "
                 "fails a few answers in a thousand that arrive in bursts; \"1.1\" and "
                 "\"auto\" do not (docs/DECISIONS.md)",
                 p->role);
        if (p->api_key && p->base_url && strncasecmp(p->base_url, "http://", 7) == 0 &&
            !url_host_is_loopback(p->base_url))
            warn(ld, ld->provider_node[r],
                 "providers.%s: its key would cross the network in clear text (base_url is "
                 "http:// to a host that is not loopback); use https://",
                 p->role);
        /* A limit that can never be reached because another ends the attempt first is a
         * typo more often than a choice. */
        if (p->timeouts.first_byte_ms > p->timeouts.total_ms ||
            p->timeouts.connect_ms > p->timeouts.total_ms)
            warn(ld, ld->provider_node[r],
                 "providers.%s.timeouts.total_ms (%ld) is below %s (%ld): total_ms ends "
                 "every slow attempt first",
                 p->role, p->timeouts.total_ms,
                 p->timeouts.first_byte_ms > p->timeouts.total_ms ? "first_byte_ms" : "connect_ms",
                 p->timeouts.first_byte_ms > p->timeouts.total_ms ? p->timeouts.first_byte_ms
                                                                  : p->timeouts.connect_ms);
        if (p->ca_file && p->base_url && strncasecmp(p->base_url, "https://", 8) != 0)
            warn(ld, ld->provider_node[r], "providers.%s.ca_file has no effect: base_url is not https://",
                 p->role);
    }
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        const config_provider_t *p = &c->providers[r];
        for (size_t i = 0; i < p->n_pricing; i++)
            warn_price_never_used(ld, p, p->pricing[i].model);
    }
    if (c->realtime.ping_interval_ms >= c->realtime.idle_timeout_ms)
        warn(ld, root,
             "realtime.ping_interval_ms (%ld) is not below realtime.idle_timeout_ms (%ld): "
             "a quiet WebSocket is closed as idle before it is pinged",
             c->realtime.ping_interval_ms, c->realtime.idle_timeout_ms);
    if (c->fallback.max_attempts == 1 && c->fallback.retry_same_provider > 0)
        warn(ld, root,
             "fallback.retry_same_provider (%ld) has no effect: fallback.max_attempts 1 allows "
             "no second attempt",
             c->fallback.retry_same_provider);
    if (ld->provider_node[0] && ld->provider_node[1] && c->providers[0].base_url &&
        c->providers[1].base_url && strcmp(c->providers[0].base_url, c->providers[1].base_url) == 0)
        warn(ld, ld->provider_node[CONFIG_ROLE_NEW],
             "providers.original and providers.new have the same base_url");

    if (listeners_clash(&c->listen, &c->admin.listen)) {
        const node_t *at = ld->admin_listen_node ? ld->admin_listen_node
                           : ld->listen_node     ? ld->listen_node
                                                 : root;
        unsigned char x[16], y[16];
        int kx = host_kind(c->listen.host, x), ky = host_kind(c->admin.listen.host, y);
        if (strcasecmp(c->listen.host, c->admin.listen.host) == 0 ||
            (kx == ky && kx != HOST_NAME && memcmp(x, y, 16) == 0))
            err(ld, at, "admin.listen is the same address as listen (%s:%d)", c->listen.host,
                c->listen.port);
        else
            err(ld, at,
                "admin.listen (%s) and listen (%s) both use port %d, and a wildcard address "
                "takes the port on every interface: the second would fail to bind; give them "
                "different ports",
                c->admin.listen.host, c->listen.host, c->listen.port);
    }
    if (c->admin.token_env == NULL && !is_loopback(c->admin.listen.host))
        warn(ld, ld->admin_listen_node ? ld->admin_listen_node : root,
             "admin.listen is not a loopback address and admin has no token_env: anyone who "
             "can reach it can use it");

    c->routing_percentage_set = ld->percentage_node != NULL;
    if (!c->rollout.present && ld->flag_missing_percentage)
        err(ld, ld->flag_missing_percentage,
            "missing required key `percentage` in flags.%s (only a rollout block may leave it "
            "out)",
            DEFAULT_FLAG);
    if (c->rollout.present) {
        config_rollout_t *r = &c->rollout;
        if (r->flag == NULL && (r->flag = strdup(DEFAULT_FLAG)) == NULL)
            err(ld, ld->rollout_node, "out of memory");
        if (r->state_file == NULL && (r->state_file = strdup("var/rollout.state")) == NULL)
            err(ld, ld->rollout_node, "out of memory");
        if (r->audit_log == NULL && (r->audit_log = strdup("var/rollout-audit.jsonl")) == NULL)
            err(ld, ld->rollout_node, "out of memory");
        if (r->flag && strcmp(r->flag, DEFAULT_FLAG) != 0)
            err(ld, ld->rollout_flag_node ? ld->rollout_flag_node : ld->rollout_node,
                "rollout.flag must be `%s`, the flag that routes requests", DEFAULT_FLAG);
        if (r->max_stage_duration_ms < r->stage_min_duration_ms)
            err(ld, ld->rollout_node,
                "rollout.max_stage_duration is shorter than rollout.stage_min_duration");
        else if (r->max_stage_duration_ms > 0 && r->check_interval_ms > r->max_stage_duration_ms)
            warn(ld, ld->rollout_node,
                 "rollout.check_interval is longer than rollout.max_stage_duration: a stage "
                 "runs out before its first check and the rollout pauses");
        if (r->mode == 0 && ld->percentage_node)
            warn(ld, ld->percentage_node,
                 "flags.%s.percentage is ignored while rollout.mode is auto: the rollout "
                 "controller owns the percentage (stages, state file)",
                 DEFAULT_FLAG);
    }

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (c->workers == 0)
        c->workers = cores > 256 ? 256 : (int)cores;
    else if (c->workers > cores && ld->workers_node)
        warn(ld, ld->workers_node, "workers (%d) is above the number of online CPUs (%ld)",
             c->workers, cores);

    if (config_flag(c, DEFAULT_FLAG) == NULL) {
        flag_def_t *def = flags_def_new(DEFAULT_FLAG);
        if (def != NULL) {
            def->percentage_bp = 0;
            def->unkeyed = FLAG_UNKEYED_RANDOM;
        }
        /* Only without a flags block: a block without the flag is an error (field_flags). */
        if (def == NULL || add_default_sticky(def) != 0 || push_flag(c, def) != 0) {
            flags_def_free(def);
            err(ld, root, "out of memory");
        }
    }
}

typedef struct {
    long line, col;
    size_t seq;
    char *text;
} sorted_line_t;

static int sorted_line_cmp(const void *a, const void *b)
{
    const sorted_line_t *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Orders lines ("FILE:LINE:COL: ...", FILE being prefix bytes) by position,
 * keeping the order of lines at the same position. */
static void sort_lines(char **lines, size_t n, size_t prefix)
{
    if (n < 2)
        return;
    sorted_line_t *a = malloc(n * sizeof *a);
    if (a == NULL)
        return; /* unsorted is still correct */
    for (size_t i = 0; i < n; i++) {
        char *end;
        a[i].line = strtol(lines[i] + prefix + 1, &end, 10);
        a[i].col = *end == ':' ? strtol(end + 1, NULL, 10) : 0;
        a[i].seq = i;
        a[i].text = lines[i];
    }
    qsort(a, n, sizeof *a, sorted_line_cmp);
    for (size_t i = 0; i < n; i++)
        lines[i] = a[i].text;
    free(a);
}

/* Parses, walks, checks; NULL when anything was reported as an error. */
static config_t *load_tree(ld_t *ld, const char *yaml, size_t len)
{
    node_t *root = config_yaml_parse(yaml, len, MAX_DEPTH, yaml_report, ld);
    if (root == NULL)
        return NULL; /* syntax error, reported */

    ld->cfg = config_new_defaults(ld->file);
    if (ld->cfg == NULL) {
        error_at(ld, 1, 1, "out of memory");
        config_yaml_free(root);
        return NULL;
    }
    node_t empty = {.kind = CONFIG_YAML_MAP, .line = root->line, .col = root->col};
    const node_t *top = config_yaml_is_null(root) ? &empty : root;
    if (parse_block(ld, top, "", top_fields, sizeof top_fields / sizeof *top_fields, ld->cfg) == 0)
        finish(ld, top);
    config_yaml_free(root);

    if (ld->n_errors > 0) {
        config_free(ld->cfg);
        return NULL;
    }
    return ld->cfg;
}

config_t *config_load_buffer(const char *name, const char *yaml, size_t len, config_errors_t *errs)
{
    ld_t ld = {.file = name ? name : "<config>", .errs = errs};
    size_t first_err = errs ? errs->n : 0, first_warn = errs ? errs->n_warnings : 0;
    /* A UTF-8 byte-order mark (Windows editors write one): libyaml, told the encoding,
     * takes it for content and fails on `---` or a key after it with a misleading
     * syntax error. Skipped; columns then count from the first real character. */
    if (yaml && len >= 3 && memcmp(yaml, "\xEF\xBB\xBF", 3) == 0) {
        yaml += 3;
        len -= 3;
    }
    config_t *c = load_tree(&ld, yaml ? yaml : "", yaml ? len : 0);
    if (errs != NULL) {
        /* Only with lines to sort: the arrays are NULL until the first one. */
        if (errs->n - first_err > 1)
            sort_lines(errs->lines + first_err, errs->n - first_err, strlen(ld.file));
        if (errs->n_warnings - first_warn > 1)
            sort_lines(errs->warnings + first_warn, errs->n_warnings - first_warn,
                       strlen(ld.file));
    }
    return c;
}

config_t *config_load(const char *path, config_errors_t *errs)
{
    ld_t ld = {.file = path ? path : "<config>", .errs = errs};
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f == NULL) {
        error_at(&ld, 1, 1, "cannot open: %s", path ? strerror(errno) : "no path given");
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        error_at(&ld, 1, 1, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        error_at(&ld, 1, 1, "cannot read");
        return NULL;
    }
    if (n > MAX_FILE_BYTES) {
        free(buf);
        error_at(&ld, 1, 1, "file is larger than %d bytes", MAX_FILE_BYTES);
        return NULL;
    }
    config_t *c = config_load_buffer(path, buf, n, errs);
    free(buf);
    return c;
}

config_t *config_ref(config_t *c)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_unref(config_t *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

void config_errors_free(config_errors_t *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    for (size_t i = 0; i < errs->n_warnings; i++)
        free(errs->warnings[i]);
    free(errs->lines);
    free(errs->warnings);
    errs->lines = errs->warnings = NULL;
    errs->n = errs->n_warnings = 0;
}

const config_provider_t *config_provider(const config_t *c, int role)
{
    if (c == NULL || role < 0 || role >= CONFIG_N_ROLES)
        return NULL;
    return &c->providers[role];
}

const flag_def_t *config_flag(const config_t *c, const char *name)
{
    if (c == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < c->n_flags; i++)
        if (strcmp(c->flags[i]->key, name) == 0)
            return c->flags[i];
    return NULL;
}

const config_price_t *config_price(const config_provider_t *p, const char *model)
{
    if (p == NULL || model == NULL)
        return NULL;
    for (size_t i = 0; i < p->n_pricing; i++)
        if (strcmp(p->pricing[i].model, model) == 0)
            return &p->pricing[i];
    return NULL;
}

/* NULL-safe string inequality. */
static int str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

static int addr_differs(const config_addr_t *a, const config_addr_t *b)
{
    return a->port != b->port || str_differs(a->host, b->host);
}

size_t config_restart_keys(const config_t *old, const config_t *cur, const char **keys, size_t cap)
{
    /* Keep in step with server_start / worker_init (server.c) and admin_start (admin.c):
     * every cfg-> read there happens once. */
    const struct {
        const char *key;
        int differs;
    } all[] = {
        {"listen", addr_differs(&old->listen, &cur->listen)},
        {"workers", old->workers != cur->workers},
        {"admin.listen", addr_differs(&old->admin.listen, &cur->admin.listen)},
        {"access_log.path", str_differs(old->access_log.path, cur->access_log.path)},
        {"limits.max_body_bytes", old->limits.max_body_bytes != cur->limits.max_body_bytes},
        {"limits.max_header_bytes", old->limits.max_header_bytes != cur->limits.max_header_bytes},
        {"limits.client_timeout_ms",
         old->limits.client_timeout_ms != cur->limits.client_timeout_ms},
        {"limits.header_timeout_ms",
         old->limits.header_timeout_ms != cur->limits.header_timeout_ms},
        /* The secret signs session tokens; the server hashed it at start. */
        {"realtime.session_secret_env",
         str_differs(old->realtime.session_secret_env, cur->realtime.session_secret_env) ||
             str_differs(old->realtime.session_secret, cur->realtime.session_secret)},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        if (!all[i].differs)
            continue;
        if (n < cap)
            keys[n] = all[i].key;
        n++;
    }
    return n;
}

const char *config_map_model(const config_provider_t *p, const char *model)
{
    if (p == NULL || model == NULL)
        return NULL;
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i].from, model) == 0)
            return p->models[i].to;
    return NULL;
}
