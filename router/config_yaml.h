/*
 * config_yaml — a small, generic YAML reader for the config loader: libyaml's
 * event API turned into a tree of scalars, mappings and sequences in which
 * every node keeps its 1-based start position (line, column).
 *
 * What it refuses, so the schema walker never sees it: anchors and aliases
 * (an alias can make a tree loop or explode), explicit tags, nesting deeper
 * than max_depth, and more than one document. Each refusal is reported through
 * the callback and the offending node becomes a CONFIG_YAML_BAD node that the
 * walker skips silently (the problem has been reported once already); parsing
 * goes on, so one pass reports every such problem. A libyaml syntax error
 * (or running out of memory) is fatal: it is reported and NULL is returned.
 *
 * Ownership: the returned tree belongs to the caller, freed with
 * config_yaml_free. Scalar text is a NUL-terminated copy; `len` is its real
 * length (a quoted scalar may contain "\0").
 * Pure: no I/O, no global state.
 */
#ifndef SWITCHYARD_CONFIG_YAML_H
#define SWITCHYARD_CONFIG_YAML_H

#include <stddef.h>

typedef enum {
    CONFIG_YAML_SCALAR = 0,
    CONFIG_YAML_MAP,
    CONFIG_YAML_SEQ,
    CONFIG_YAML_BAD /* refused construct, already reported */
} config_yaml_kind_t;

typedef struct config_yaml_node {
    config_yaml_kind_t kind;
    int line, col; /* 1-based start mark */
    char *text;    /* SCALAR: NUL-terminated copy of the value */
    size_t len;    /* SCALAR: length of text */
    int quoted;    /* SCALAR: not plain (quoted, literal or folded): always a string */
    /* MAP: kids[2i] is a key, kids[2i+1] its value; SEQ: the items. */
    struct config_yaml_node **kids;
    size_t n_kids;
    size_t cap_kids;
} config_yaml_node_t;

/* Called once per problem; msg has no location and no trailing newline. */
typedef void (*config_yaml_report_fn)(void *ctx, int line, int col, const char *msg);

/*
 * Parses buf[0..len). Returns the document's root, or an empty MAP at 1:1 when
 * the input holds no document; NULL after a fatal (syntax / out of memory)
 * error, which has been reported.
 */
config_yaml_node_t *config_yaml_parse(const char *buf, size_t len, int max_depth,
                                      config_yaml_report_fn report, void *ctx);

void config_yaml_free(config_yaml_node_t *node); /* NULL is a no-op */

/* 1 for a plain scalar that YAML reads as null: empty, "~", "null", "Null", "NULL". */
int config_yaml_is_null(const config_yaml_node_t *node);

/*
 * Writes a printable, single-line rendering of s[0..len) into buf (cap >= 8):
 * control and non-ASCII-printable bytes as \xNN, a backtick as \x60, cut with
 * "..." past about 60 bytes. Returns buf. For quoting user text in messages.
 */
char *config_yaml_show(const char *s, size_t len, char *buf, size_t cap);

#endif
