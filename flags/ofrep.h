/*
 * ofrep — OpenFeature Remote Evaluation Protocol view of the flags.
 *
 *   POST /ofrep/v1/evaluate/flags/{key}  -> ofrep_evaluate_one
 *   POST /ofrep/v1/evaluate/flags        -> ofrep_evaluate_bulk
 *
 * Request body: {"context":{"targetingKey":"...","model":"..."}}.
 * Success: {"key","reason","variant":"new"|"original","value":true|false,"metadata":{}}.
 * Errors as OFREP defines them: 400 {"key","errorCode":"TARGETING_KEY_MISSING"|
 * "INVALID_CONTEXT"|"PARSE_ERROR","errorDetails"}, 404 {"key","errorCode":"FLAG_NOT_FOUND",...}.
 *
 * Pure: no I/O. The body need not be NUL-terminated (it is copied before parsing).
 * Both functions return the HTTP status and store a malloc'd, NUL-terminated JSON
 * document in *out (the caller frees it); on allocation failure they return 500
 * with *out = NULL.
 */
#ifndef SWITCHYARD_OFREP_H
#define SWITCHYARD_OFREP_H

#include <stddef.h>

#include "flags.h"

int ofrep_evaluate_one(const flag_def_t *const *flags, size_t n_flags, const char *key,
                       const char *body, size_t body_len, char **out);
int ofrep_evaluate_bulk(const flag_def_t *const *flags, size_t n_flags, const char *body,
                        size_t body_len, char **out);

#endif
