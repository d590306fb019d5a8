/*
 * config_yaml — libyaml events -> a position-keeping node tree (see config_yaml.h).
 */
#include "config_yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum { SHOW_MAX = 60 };

char *config_yaml_show(const char *s, size_t len, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int esc = c < 0x20 || c >= 0x7f || c == '`';
        size_t need = esc ? 4 : 1;
        /* keep room for "..." and the NUL */
        if (i >= SHOW_MAX || o + need + 4 > cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (esc) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}

int config_yaml_is_null(const config_yaml_node_t *n)
{
    if (n == NULL || n->kind != CONFIG_YAML_SCALAR || n->quoted)
        return 0;
    return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
           strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

void config_yaml_free(config_yaml_node_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        config_yaml_free(n->kids[i]); /* depth is bounded by max_depth */
    free(n->kids);
    free(n->text);
    free(n);
}

typedef struct {
    config_yaml_report_fn report;
    void *ctx;
    int max_depth;
    config_yaml_node_t **stack; /* open collections, innermost last */
    int depth;
    config_yaml_node_t *root;
} builder_t;

static void report(builder_t *b, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(builder_t *b, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->report)
        b->report(b->ctx, line, col, msg);
}

static config_yaml_node_t *node_new(config_yaml_kind_t kind, yaml_mark_t m)
{
    config_yaml_node_t *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->line = (int)m.line + 1;
    n->col = (int)m.column + 1;
    return n;
}

/* Hangs n under the innermost open collection (or makes it the root). Takes
 * ownership of n even on failure. Returns 0 or -1 (out of memory). */
static int attach(builder_t *b, config_yaml_node_t *n)
{
    if (b->depth == 0) {
        if (b->root == NULL) {
            b->root = n;
            return 0;
        }
        config_yaml_free(n); /* cannot happen with one document */
        return 0;
    }
    config_yaml_node_t *p = b->stack[b->depth - 1];
    if (p->n_kids == p->cap_kids) {
        size_t cap = p->cap_kids ? p->cap_kids * 2 : 8;
        config_yaml_node_t **k = realloc(p->kids, cap * sizeof *k);
        if (k == NULL) {
            config_yaml_free(n);
            return -1;
        }
        p->kids = k;
        p->cap_kids = cap;
    }
    p->kids[p->n_kids++] = n;
    return 0;
}

static void report_anchor_tag(builder_t *b, yaml_mark_t m, const yaml_char_t *anchor,
                              const yaml_char_t *tag)
{
    char show[96];
    if (anchor != NULL)
        report(b, (int)m.line + 1, (int)m.column + 1,
               "anchor `&%s` is not supported (anchors and aliases are refused)",
               config_yaml_show((const char *)anchor, strlen((const char *)anchor), show,
                                sizeof show));
    if (tag != NULL)
        report(b, (int)m.line + 1, (int)m.column + 1, "YAML tag `%s` is not supported",
               config_yaml_show((const char *)tag, strlen((const char *)tag), show, sizeof show));
}

/* Line and column (1-based) of byte offset off in buf. */
static void offset_position(const char *buf, size_t len, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void report_syntax(builder_t *b, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        report(b, 1, 1, "out of memory while parsing");
        return;
    case YAML_READER_ERROR: {
        int line, col;
        offset_position(buf, len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            report(b, line, col, "syntax error: %s (byte 0x%02X)", problem,
                   (unsigned)p->problem_value & 0xffu);
        else
            report(b, line, col, "syntax error: %s", problem);
        return;
    }
    default:
        break;
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context != NULL)
        report(b, line, col, "syntax error: %s (%s at %d:%d)", problem, p->context,
               (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else
        report(b, line, col, "syntax error: %s", problem);
}

config_yaml_node_t *config_yaml_parse(const char *buf, size_t len, int max_depth,
                                      config_yaml_report_fn report_fn, void *ctx)
{
    builder_t b = {.report = report_fn, .ctx = ctx, .max_depth = max_depth > 0 ? max_depth : 1};
    yaml_parser_t p;
    int fatal = 0, done = 0, docs = 0;
    size_t skip = 0; /* > 0 while inside a refused (too deep) subtree */

    b.stack = calloc((size_t)b.max_depth, sizeof *b.stack);
    if (b.stack == NULL || !yaml_parser_initialize(&p)) {
        free(b.stack);
        report(&b, 1, 1, "out of memory while parsing");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);

    while (!done && !fatal) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            report_syntax(&b, &p, buf, len);
            fatal = 1;
            break;
        }
        yaml_mark_t m = ev.start_mark;
        config_yaml_node_t *n = NULL;

        if (skip > 0) {
            if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
                skip++;
            else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
                skip--;
            yaml_event_delete(&ev);
            continue;
        }

        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                report(&b, (int)m.line + 1, (int)m.column + 1,
                       "only one YAML document is allowed; this is a second one");
                done = 1;
            }
            break;
        case YAML_ALIAS_EVENT: {
            char show[96];
            const char *a = (const char *)ev.data.alias.anchor;
            report(&b, (int)m.line + 1, (int)m.column + 1,
                   "alias `*%s` is not supported (anchors and aliases are refused)",
                   config_yaml_show(a, strlen(a), show, sizeof show));
            n = node_new(CONFIG_YAML_BAD, m);
            if (n == NULL || attach(&b, n) != 0)
                fatal = 1;
            break;
        }
        case YAML_SCALAR_EVENT:
            report_anchor_tag(&b, m, ev.data.scalar.anchor, ev.data.scalar.tag);
            n = node_new(CONFIG_YAML_SCALAR, m);
            if (n != NULL) {
                n->len = ev.data.scalar.length;
                n->text = malloc(n->len + 1);
                n->quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
                if (n->text != NULL) {
                    memcpy(n->text, ev.data.scalar.value, n->len);
                    n->text[n->len] = '\0';
                }
            }
            if (n == NULL || n->text == NULL) {
                config_yaml_free(n);
                fatal = 1;
            } else if (attach(&b, n) != 0) {
                fatal = 1;
            }
            break;
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT: {
            int is_map = ev.type == YAML_MAPPING_START_EVENT;
            if (is_map)
                report_anchor_tag(&b, m, ev.data.mapping_start.anchor, ev.data.mapping_start.tag);
            else
                report_anchor_tag(&b, m, ev.data.sequence_start.anchor, ev.data.sequence_start.tag);
            if (b.depth >= b.max_depth) {
                report(&b, (int)m.line + 1, (int)m.column + 1,
                       "nesting deeper than %d levels is not allowed", b.max_depth);
                n = node_new(CONFIG_YAML_BAD, m);
                if (n == NULL || attach(&b, n) != 0)
                    fatal = 1;
                skip = 1;
                break;
            }
            n = node_new(is_map ? CONFIG_YAML_MAP : CONFIG_YAML_SEQ, m);
            if (n == NULL || attach(&b, n) != 0) {
                fatal = 1;
                break;
            }
            b.stack[b.depth++] = n;
            break;
        }
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (b.depth > 0)
                b.depth--;
            break;
        default: /* STREAM_START, DOCUMENT_END, NO_EVENT */
            break;
        }
        yaml_event_delete(&ev);
        if (fatal && p.error == YAML_NO_ERROR)
            report(&b, (int)m.line + 1, (int)m.column + 1, "out of memory while parsing");
    }

    yaml_parser_delete(&p);
    free(b.stack);
    if (fatal) {
        config_yaml_free(b.root);
        return NULL;
    }
    if (b.root == NULL) {
        yaml_mark_t start = {0, 0, 0};
        b.root = node_new(CONFIG_YAML_MAP, start);
        if (b.root == NULL)
            report(&b, 1, 1, "out of memory while parsing");
    }
    return b.root;
}
