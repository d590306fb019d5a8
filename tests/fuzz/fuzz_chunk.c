/*
 * fuzz_chunk — the text extraction for switchyard's own client formats
 * (router/chunk.c on cJSON): what WebSocket and browser-SSE clients receive is
 * read out of upstream stream events and completions with these two functions.
 *
 * Input: one upstream event's data (or a whole completion body). Invariants
 * beyond "no ASan/UBSan report, no leak":
 *   - finish_reason is always NUL-terminated inside its array;
 *   - content, when present, is a NUL-terminated string no longer than the input;
 *   - the [DONE] sentinel is recognised as done.
 */
#include "chunk.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chunk(const chunk_t *c, size_t size)
{
    FUZZ_CHECK(memchr(c->finish_reason, '\0', sizeof c->finish_reason) != NULL);
    if (c->content != NULL)
        FUZZ_CHECK(strlen(c->content) <= size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copy: the module copies before parsing and must stop at size */
    char *buf = fuzz_dup(data, size);
    chunk_t c;
    memset(&c, 0x5a, sizeof c); /* the parser must set every field it reports */
    c.content = NULL;
    if (chunk_parse_event(buf, size, &c) == 0) {
        check_chunk(&c, size);
        chunk_free(&c);
    }
    memset(&c, 0, sizeof c);
    if (chunk_parse_completion(buf, size, &c) == 0) {
        check_chunk(&c, size);
        chunk_free(&c);
    }
    if (size == 6 && memcmp(data, "[DONE]", 6) == 0) {
        memset(&c, 0, sizeof c);
        FUZZ_CHECK(chunk_parse_event(buf, size, &c) == 0 && c.done);
        chunk_free(&c);
    }
    free(buf);
    return 0;
}
