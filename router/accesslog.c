/* accesslog — buffered JSON lines. See accesslog.h. */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (64 * 1024)

static int open_fd(const char *path)
{
    if (!path)
        return dup(STDOUT_FILENO);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

accesslog_t *accesslog_open(const char *path)
{
    accesslog_t *log = calloc(1, sizeof(*log));
    if (!log)
        return NULL;
    if (strcmp(path, "-") != 0 && !(log->path = strdup(path))) {
        free(log);
        return NULL;
    }
    int fd = open_fd(log->path);
    if (fd < 0) {
        int e = errno;
        free(log->path);
        free(log);
        errno = e;
        return NULL;
    }
    atomic_store(&log->fd, fd);
    return log;
}

int accesslog_reopen(accesslog_t *log)
{
    if (!log->path)
        return 0;
    int fd = open_fd(log->path);
    if (fd < 0)
        return -1;
    /* dup2 swaps the file behind the descriptor number the workers use in one step:
     * a flush writes wholly to the old (renamed) file or wholly to the new one. */
    int rc = dup2(fd, atomic_load(&log->fd)) < 0 ? -1 : 0;
    close(fd);
    return rc;
}

void accesslog_close(accesslog_t *log)
{
    if (!log)
        return;
    close(atomic_load(&log->fd));
    free(log->path);
    free(log);
}

int accesslog_buf_init(accesslog_buf_t *b, accesslog_t *log)
{
    b->log = log;
    b->len = 0;
    b->cap = FLUSH_AT * 2;
    b->buf = log ? malloc(b->cap) : NULL;
    return log && !b->buf ? -1 : 0;
}

void accesslog_flush(accesslog_buf_t *b)
{
    if (!b->log || b->len == 0)
        return;
    size_t off = 0;
    int fd = atomic_load(&b->log->fd);
    while (off < b->len) {
        ssize_t n = write(fd, b->buf + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            atomic_fetch_add(&b->log->write_errors, 1);
            break;
        }
        off += (size_t)n;
    }
    b->len = 0;
}

void accesslog_buf_free(accesslog_buf_t *b)
{
    accesslog_flush(b);
    free(b->buf);
    b->buf = NULL;
}

char *accesslog_reserve(accesslog_buf_t *b, size_t need)
{
    if (!b->log)
        return NULL;
    if (b->len + need > b->cap)
        accesslog_flush(b);
    if (need > b->cap) {
        char *nb = realloc(b->buf, need);
        if (!nb)
            return NULL;
        b->buf = nb;
        b->cap = need;
    }
    return b->buf + b->len;
}

void accesslog_commit(accesslog_buf_t *b, size_t used)
{
    b->len += used;
    if (b->len >= FLUSH_AT)
        accesslog_flush(b);
}

size_t accesslog_json_string(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s) {
        if (cap < 5)
            return 0;
        memcpy(out, "null", 4);
        return 4;
    }
    size_t j = 0;
    if (cap < 2)
        return 0;
    out[j++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (j + 7 >= cap)
            return 0;
        if (*p == '"' || *p == '\\') {
            out[j++] = '\\';
            out[j++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            out[j++] = '\\';
            out[j++] = 'u';
            out[j++] = '0';
            out[j++] = '0';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        } else {
            out[j++] = (char)*p;
        }
    }
    if (j + 1 >= cap)
        return 0;
    out[j++] = '"';
    return j;
}
