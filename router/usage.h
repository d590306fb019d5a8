/*
 * usage — token counts from upstream responses, the stream usage withheld from
 * clients that did not ask for it, and estimates when a provider sends none.
 *
 * Pure: no I/O. Functions taking JSON text copy it before parsing (cJSON needs
 * a NUL-terminated buffer); nothing here keeps pointers into its arguments.
 */
#ifndef SWITCHYARD_USAGE_H
#define SWITCHYARD_USAGE_H

#include <stddef.h>

typedef enum { USAGE_NONE = 0, USAGE_UPSTREAM, USAGE_ESTIMATED } usage_source_t;

typedef struct {
    long prompt, completion, cached; /* cached tokens are part of prompt */
    usage_source_t source;
} usage_t;

const char *usage_source_name(usage_source_t s); /* "none" / "upstream" / "estimated" */

/*
 * Reads a usage object from a response document: chat.completion, text_completion,
 * embeddings ({"usage":{...}}), a stream chunk, or a Responses API object or event
 * ({"response":{"usage":{...}}}, input_tokens/output_tokens). 0 when found, -1 not.
 */
int usage_from_json(const char *json, size_t len, usage_t *u);

/* Quick test before any parse: does this event data carry a non-null usage object? */
int usage_event_has_usage(const char *data, size_t len);

/*
 * For a stream whose usage switchyard asked for on the client's behalf: rewrites
 * one event's raw bytes so that the client gets what it would have got without
 * include_usage. Returns -1 when the whole event must be withheld (the usage
 * chunk), otherwise the new length of the event, rewritten in place (the
 * `,"usage":null` members OpenAI adds to every chunk are removed).
 */
long usage_strip_event(char *event, size_t len);
/*
 * For an event usage_strip_event withholds (-1): when the usage object rides on a chunk
 * that carries more (DeepSeek, Mistral and relays put it on the last content chunk),
 * its member is cut out of the event's data line in place and the new length is
 * returned, so the client still gets the chunk's content and finish_reason. -1 when
 * the event is the usage alone (OpenAI's own usage chunk: "choices":[]) or its data
 * cannot be read with confidence (no top-level choices or usage object, a second data
 * line): withheld whole, as before.
 */
long usage_strip_object(char *event, size_t len);
/* The same rewrite, member by member: usage_strip_event's fallback past the members it
 * keeps track of, and what the fuzzer and the unit test hold it to. */
long usage_strip_event_reference(char *event, size_t len);

/* Does this stream event carry text: a `"content"` member (legacy completions: `"text"`)
 * whose value is a non-empty string (blanks around the colon allowed, as any JSON writer
 * may put them)? The count of such events is the completion estimate of a stream
 * without usage. */
int usage_event_has_content(const char *ev, size_t len, int legacy);

/* Completion text length of a non-streaming response (for estimates), or -1. */
long usage_content_chars(const char *json, size_t len);

/* Rough tokens for n bytes of text: ceil(n / 4), at least 1 for n > 0. */
long usage_estimate_tokens(size_t bytes);

#endif
