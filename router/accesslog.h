/*
 * accesslog — JSON lines, one per client request (format: docs/ACCESS_LOG.md).
 *
 * One accesslog_t for the process: the file, opened with O_APPEND so that whole
 * lines from several workers never interleave, reopened on SIGUSR1 (logrotate).
 * Each worker formats into its own accesslog_buf_t and flushes it with single
 * write(2)s (when it passes 64 KiB, on a 100 ms timer, and at exit), so the
 * request path makes no system call.
 * Errors: accesslog_open returns NULL (errno set); write failures are counted
 * and logged once per minute at most, never fatal.
 */
#ifndef SWITCHYARD_ACCESSLOG_H
#define SWITCHYARD_ACCESSLOG_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct {
    char *path;       /* NULL for standard output */
    atomic_int fd;
    atomic_long write_errors;
} accesslog_t;

accesslog_t *accesslog_open(const char *path); /* "-" = standard output */
int accesslog_reopen(accesslog_t *log);        /* 0, or -1 keeping the old file */
void accesslog_close(accesslog_t *log);

typedef struct {
    accesslog_t *log;
    char *buf;
    size_t len, cap;
} accesslog_buf_t;

int accesslog_buf_init(accesslog_buf_t *b, accesslog_t *log);
void accesslog_buf_free(accesslog_buf_t *b); /* flushes first */

/* Room for one line of up to `need` bytes at the buffer's end (flushes if full). */
char *accesslog_reserve(accesslog_buf_t *b, size_t need);
void accesslog_commit(accesslog_buf_t *b, size_t used);
void accesslog_flush(accesslog_buf_t *b);

/* Appends s as a JSON string (quoted, escaped) to out; returns the bytes written or 0 when
 * it does not fit in cap. NULL s gives `null`. */
size_t accesslog_json_string(char *out, size_t cap, const char *s);

#endif
