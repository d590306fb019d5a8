/*
 * log — one line per event on stderr, key=value, with an ISO-8601 UTC time.
 * Callers log once, where the decision is made; never a key, never a body.
 * Thread-safe: each line is formatted first and written with one fwrite.
 */
#ifndef SWITCHYARD_LOG_H
#define SWITCHYARD_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_set_level(log_level_t level);
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
