/*
 * fuzz_usage — token accounting from upstream responses (router/usage.c on
 * cJSON): usage_from_json and usage_content_chars on a whole response body, the
 * event helpers on the same bytes.
 *
 * Invariants beyond "no ASan/UBSan report, no leak":
 *   - found usage is non-negative, cached <= prompt, source "upstream";
 *   - content chars are -1 or a length no larger than the input;
 *   - usage_strip_event never grows its input and withholds exactly the events
 *     usage_event_has_usage flags, and rewrites an event exactly as the walk it
 *     replaced (usage_strip_event_reference);
 *   - usage_strip_object only ever removes one run of bytes, or leaves the event;
 *   - differential: usage_from_json (a scan that parses only the usage value) finds
 *     exactly what the whole-body cJSON reference finds, and finds more only in a
 *     body cJSON cannot parse at all.
 */
#include <cjson/cJSON.h>

#include "usage.h"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int usage_from_json_reference(const char *json, size_t len, usage_t *u); /* usage.c */

static int whole_body_parses(const char *buf, size_t size)
{
    char *c = fuzz_cstr((const uint8_t *)buf, size);
    cJSON *root = cJSON_ParseWithLength(c, size + 1);
    int ok = root != NULL;
    cJSON_Delete(root);
    free(c);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copy: the module copies before parsing and must stop at size */
    char *buf = fuzz_dup(data, size);
    usage_t u = {0};
    if (usage_from_json(buf, size, &u) == 0) {
        FUZZ_CHECK(u.prompt >= 0 && u.completion >= 0 && u.cached >= 0);
        FUZZ_CHECK(u.cached <= u.prompt);
        FUZZ_CHECK(u.source == USAGE_UPSTREAM);
        FUZZ_CHECK(strcmp(usage_source_name(u.source), "upstream") == 0);
    }
    usage_t r = {0};
    int ref = usage_from_json_reference(buf, size, &r);
    usage_t again = {0};
    int got = usage_from_json(buf, size, &again);
    if (ref == 0) {
        FUZZ_CHECK(got == 0);
        FUZZ_CHECK(again.prompt == r.prompt && again.completion == r.completion &&
                   again.cached == r.cached);
    } else if (got == 0) {
        FUZZ_CHECK(!whole_body_parses(buf, size));
    }
    long chars = usage_content_chars(buf, size);
    FUZZ_CHECK(chars >= -1 && (chars < 0 || (size_t)chars <= size));
    int has = usage_event_has_usage(buf, size);
    FUZZ_CHECK(usage_event_has_content(buf, size, (int)(size & 1)) <=
               1); /* reads only inside buf */
    char *ref_buf = fuzz_dup(data, size);
    long ref_kept = usage_strip_event_reference(ref_buf, size);
    long kept = usage_strip_event(buf, size); /* rewrites buf in place */
    /* differential: the one-walk strip rewrites exactly as the member-by-member walk */
    FUZZ_CHECK(kept == ref_kept);
    FUZZ_CHECK(kept <= 0 || memcmp(buf, ref_buf, (size_t)kept) == 0);
    free(ref_buf);
    if (kept == -1) {
        /* usage cut out of a chunk that carries more: shorter, the usage gone from the
         * data line, everything before the cut untouched */
        char *obj = fuzz_dup(data, size);
        long cut = usage_strip_object(obj, size);
        FUZZ_CHECK(cut == -1 || (cut > 0 && (size_t)cut < size));
        if (cut > 0) {
            size_t same = 0;
            while (same < (size_t)cut && obj[same] == (char)data[same])
                same++;
            FUZZ_CHECK(memcmp(obj + same, data + same + (size - (size_t)cut),
                              (size_t)cut - same) == 0); /* the rest is the tail, moved */
        }
        free(obj);
    }
    if (has)
        FUZZ_CHECK(kept == -1);
    else
        FUZZ_CHECK(kept >= 0 && (size_t)kept <= size && (size - (size_t)kept) % 13 == 0);
    long est = usage_estimate_tokens(size);
    FUZZ_CHECK(size == 0 ? est == 0 : (est >= 1 && (size_t)est <= size));
    free(buf);
    return 0;
}
