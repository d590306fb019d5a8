/*
 * fuzz_common — helpers shared by the libFuzzer drivers in tests/fuzz/.
 *
 * FUZZ_CHECK(cond) is an invariant: when it does not hold the driver prints
 * what failed and aborts, so libFuzzer saves the input as a crash artifact
 * exactly as it does for an ASan/UBSan report.
 */
#ifndef SWITCHYARD_FUZZ_COMMON_H
#define SWITCHYARD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__,        \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* A malloc'd copy of data with a NUL at [size]; aborts on allocation failure
 * (libFuzzer's -rss_limit_mb/-malloc_limit_mb report real exhaustion). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* An exact-size heap copy (no terminator), so ASan sees any read past the end. */
static inline char *fuzz_dup(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    return s;
}

#endif
