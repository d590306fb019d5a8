/* jsonscan: finds one member of a JSON object without building a tree — for the
 * per-response work that only needs one small value out of a large body (the usage
 * of a completion: a cJSON tree of the whole body was 10% of a worker's
 * instructions, callgrind at chat-50).
 *
 * The scan walks the object's members in order, skipping values by their structure
 * (strings with escapes, nested brackets matched by kind); it does not validate what
 * it skips (numbers, literals), so a caller that needs a valid document still parses
 * the value it gets. Whitespace is what cJSON skips (any byte <= 32), and a UTF-8 BOM
 * before the object is allowed, as cJSON allows it.
 *
 * Pure; no allocation. */
#ifndef SWITCHYARD_JSONSCAN_H
#define SWITCHYARD_JSONSCAN_H

#include <stddef.h>

enum {
    JSONSCAN_FOUND = 1,
    JSONSCAN_ABSENT = 0,   /* the object ends without the member */
    JSONSCAN_UNSURE = -1,  /* not an object, broken structure, nesting past the scan's
                              depth, or a key with an escape or a NUL: parse it instead */
};

/* Looks for member `key` (compared byte for byte) of the object in s[0..len). On
 * JSONSCAN_FOUND, *off and *vlen give the first member of that name's value span. */
int jsonscan_member(const char *s, size_t len, const char *key, size_t *off, size_t *vlen);

#endif
