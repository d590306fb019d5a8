/* api — request fields and answer formatting for switchyard-sim. See api.h. */
#include "api.h"

#include "gen.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMBED_DEFAULT_DIMS 8
#define EMBED_MAX_DIMS 4096

static const char *const model_ids[] = {
    "gpt-4.1",           "gpt-4.1-mini",     "claude-sonnet-4-5",
    "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2",
};
#define N_MODELS (sizeof(model_ids) / sizeof(model_ids[0]))
#define MODEL_CREATED 1735689600L

sim_endpoint_t sim_api_route(const char *path, int is_post)
{
    if (is_post) {
        if (strcmp(path, "/v1/chat/completions") == 0)
            return SIM_EP_CHAT;
        if (strcmp(path, "/v1/completions") == 0)
            return SIM_EP_COMPLETIONS;
        if (strcmp(path, "/v1/embeddings") == 0)
            return SIM_EP_EMBEDDINGS;
        if (strcmp(path, "/v1/responses") == 0)
            return SIM_EP_RESPONSES;
        return SIM_EP_NONE;
    }
    if (strcmp(path, "/v1/models") == 0)
        return SIM_EP_MODELS;
    if (strncmp(path, "/v1/models/", 11) == 0 && path[11] && !strchr(path + 11, '/'))
        return SIM_EP_MODEL;
    return SIM_EP_NONE;
}

void sim_error_set(sim_error_t *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void sim_call_free(sim_call_t *c)
{
    if (!c)
        return;
    free(c->model_json);
    free(c->keys);
    memset(c, 0, sizeof(*c));
}

/* ---- request parsing ---------------------------------------------------- */

/* Characters of text in an OpenAI "content": a string or an array of parts. */
static size_t content_chars(const cJSON *content)
{
    size_t n = 0;
    const cJSON *part;
    if (cJSON_IsString(content))
        return strlen(content->valuestring);
    if (!cJSON_IsArray(content))
        return 0;
    cJSON_ArrayForEach(part, content)
    {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(part))
            n += strlen(part->valuestring);
        else if (cJSON_IsString(text))
            n += strlen(text->valuestring);
    }
    return n;
}

/* Lowers *max to v when v is a positive integer and smaller (0 = unset). */
static void take_max(long *max, const cJSON *v)
{
    long x;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e9)
        return;
    x = (long)v->valuedouble;
    if (*max == 0 || x < *max)
        *max = x;
}

/* One embedding input: a string, or an array of token ids. */
static int embed_input(const cJSON *in, uint64_t *key, size_t *chars, long *tokens)
{
    const cJSON *t;
    if (cJSON_IsString(in)) {
        size_t len = strlen(in->valuestring);
        *key = sim_gen_hash(in->valuestring, len, SIM_GEN_HASH_INIT);
        *chars += len;
        return 0;
    }
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) == 0)
        return -1;
    *key = SIM_GEN_HASH_INIT;
    cJSON_ArrayForEach(t, in)
    {
        long id;
        if (!cJSON_IsNumber(t))
            return -1;
        id = (long)t->valuedouble;
        *key = sim_gen_hash(&id, sizeof(id), *key);
        (*tokens)++;
    }
    return 0;
}

static int parse_embeddings(const cJSON *root, sim_call_t *c, sim_error_t *err)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(root, "dimensions");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    const cJSON *item;
    size_t n, chars = 0;
    long tokens = 0;
    int flat_tokens;

    c->dimensions = EMBED_DEFAULT_DIMS;
    if (dims && !cJSON_IsNull(dims)) {
        if (!cJSON_IsNumber(dims) || dims->valuedouble < 1 || dims->valuedouble > EMBED_MAX_DIMS) {
            sim_error_set(err, 400, "invalid_request_error", "dimensions", "invalid_value",
                          "'dimensions' must be an integer between 1 and %d.", EMBED_MAX_DIMS);
            return -1;
        }
        c->dimensions = (long)dims->valuedouble;
    }
    c->base64 = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "base64") == 0;

    /* A flat array of numbers is one tokenized input, not many. */
    flat_tokens = cJSON_IsArray(in) && cJSON_GetArraySize(in) > 0 &&
                  cJSON_IsNumber(cJSON_GetArrayItem(in, 0));
    n = cJSON_IsArray(in) && !flat_tokens ? (size_t)cJSON_GetArraySize(in) : 1;
    if (!in || (cJSON_IsArray(in) && n == 0) || (!cJSON_IsString(in) && !cJSON_IsArray(in))) {
        sim_error_set(err, 400, "invalid_request_error", "input", "invalid_value",
                      "'input' must be a string, an array of strings or an array of tokens.");
        return -1;
    }
    c->keys = calloc(n, sizeof(*c->keys));
    if (!c->keys) {
        sim_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    c->n_keys = n;
    if (n == 1 && (cJSON_IsString(in) || flat_tokens)) {
        if (embed_input(in, &c->keys[0], &chars, &tokens) < 0)
            goto bad;
    } else {
        size_t i = 0;
        cJSON_ArrayForEach(item, in)
        {
            if (embed_input(item, &c->keys[i++], &chars, &tokens) < 0)
                goto bad;
        }
    }
    c->prompt_chars = chars;
    c->prompt_tokens = tokens + (chars ? (long)(chars / 4) : 0);
    if (c->prompt_tokens < 1)
        c->prompt_tokens = 1;
    return 0;
bad:
    sim_error_set(err, 400, "invalid_request_error", "input", "invalid_value",
                  "'input' must be a string, an array of strings or an array of tokens.");
    return -1;
}

int sim_api_parse(sim_endpoint_t ep, const char *body, sim_call_t *c, sim_error_t *err)
{
    cJSON *root;
    const cJSON *model, *stream, *opts, *x;
    size_t chars = 0;

    memset(c, 0, sizeof(*c));
    root = cJSON_Parse(body);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        sim_error_set(err, 400, "invalid_request_error", NULL, "invalid_json",
                      "We could not parse the JSON body of your request. The API expects a "
                      "JSON object.");
        return -1;
    }
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        sim_error_set(err, 400, "invalid_request_error", "model", "missing_required_parameter",
                      "you must provide a model parameter");
        goto fail;
    }
    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    c->stream = cJSON_IsTrue(stream);
    opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    c->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opts, "include_usage"));

    switch (ep) {
    case SIM_EP_CHAT:
        x = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) == 0) {
            sim_error_set(err, 400, "invalid_request_error", "messages",
                          "missing_required_parameter",
                          "'messages' must be a non-empty array of messages.");
            goto fail;
        }
        for (const cJSON *m = x->child; m; m = m->next)
            chars += content_chars(cJSON_GetObjectItemCaseSensitive(m, "content"));
        take_max(&c->max_tokens, cJSON_GetObjectItemCaseSensitive(root, "max_tokens"));
        take_max(&c->max_tokens, cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens"));
        break;
    case SIM_EP_COMPLETIONS:
        chars = content_chars(cJSON_GetObjectItemCaseSensitive(root, "prompt"));
        take_max(&c->max_tokens, cJSON_GetObjectItemCaseSensitive(root, "max_tokens"));
        break;
    case SIM_EP_RESPONSES:
        x = cJSON_GetObjectItemCaseSensitive(root, "input");
        if (cJSON_IsArray(x)) {
            for (const cJSON *m = x->child; m; m = m->next)
                chars += content_chars(cJSON_GetObjectItemCaseSensitive(m, "content"));
        } else {
            chars = content_chars(x);
        }
        chars += content_chars(cJSON_GetObjectItemCaseSensitive(root, "instructions"));
        take_max(&c->max_tokens, cJSON_GetObjectItemCaseSensitive(root, "max_output_tokens"));
        break;
    case SIM_EP_EMBEDDINGS:
        c->stream = 0;
        if (parse_embeddings(root, c, err) < 0)
            goto fail;
        break;
    default:
        break;
    }
    if (ep != SIM_EP_EMBEDDINGS) {
        c->prompt_chars = chars;
        c->prompt_tokens = sim_gen_tokens(chars);
    }
    c->model_json = sim_json_quote_dup(model->valuestring);
    if (!c->model_json) {
        sim_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        goto fail;
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    sim_call_free(c);
    return -1;
}

/* ---- answers -------------------------------------------------------------- */

/* The answer text, piece by piece ("word " each); the same every time for a. */
static int add_text(struct evbuffer *out, const sim_answer_t *a)
{
    sim_rng_t r;
    sim_rng_init(&r, a->seed, SIM_STREAM_CONTENT, a->n);
    for (long i = 0; i < a->pieces; i++) {
        size_t len;
        const char *w = sim_gen_word(&r, &len);
        if (evbuffer_add(out, w, len) < 0 || evbuffer_add(out, " ", 1) < 0)
            return -1;
    }
    return 0;
}

static int add_chat_usage(struct evbuffer *out, const sim_call_t *c, const sim_answer_t *a)
{
    return evbuffer_add_printf(out,
                               "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
                               "\"total_tokens\":%ld,\"prompt_tokens_details\":"
                               "{\"cached_tokens\":0}}",
                               c->prompt_tokens, a->pieces, c->prompt_tokens + a->pieces) < 0
               ? -1
               : 0;
}

static int add_completion_usage(struct evbuffer *out, const sim_call_t *c, const sim_answer_t *a)
{
    return evbuffer_add_printf(out,
                               "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
                               "\"total_tokens\":%ld}",
                               c->prompt_tokens, a->pieces, c->prompt_tokens + a->pieces) < 0
               ? -1
               : 0;
}

static int add_responses_usage(struct evbuffer *out, const sim_call_t *c, const sim_answer_t *a)
{
    return evbuffer_add_printf(out,
                               "{\"input_tokens\":%ld,\"input_tokens_details\":"
                               "{\"cached_tokens\":0},\"output_tokens\":%ld,"
                               "\"output_tokens_details\":{\"reasoning_tokens\":0},"
                               "\"total_tokens\":%ld}",
                               c->prompt_tokens, a->pieces, c->prompt_tokens + a->pieces) < 0
               ? -1
               : 0;
}

/* The Responses API message item; the text only when complete. */
static int add_resp_item(struct evbuffer *out, const sim_answer_t *a, int complete)
{
    int rc = evbuffer_add_printf(out,
                                 "{\"id\":\"msg-sim-%llu\",\"type\":\"message\",\"status\":\"%s\","
                                 "\"role\":\"assistant\",\"content\":[",
                                 (unsigned long long)a->n, complete ? "completed" : "in_progress");
    if (rc < 0)
        return -1;
    if (complete &&
        (evbuffer_add_printf(out, "{\"type\":\"output_text\",\"text\":\"") < 0 ||
         add_text(out, a) < 0 || evbuffer_add_printf(out, "\",\"annotations\":[]}") < 0))
        return -1;
    return evbuffer_add(out, "]}", 2);
}

/* The Responses API response object, in progress (no output) or completed. */
static int add_resp_object(struct evbuffer *out, const sim_call_t *c, const sim_answer_t *a,
                           int complete)
{
    if (evbuffer_add_printf(out,
                            "{\"id\":\"resp-sim-%llu\",\"object\":\"response\",\"created_at\":%ld,"
                            "\"status\":\"%s\",\"model\":%s,\"output\":[",
                            (unsigned long long)a->n, a->created,
                            complete ? "completed" : "in_progress", c->model_json) < 0)
        return -1;
    if (complete && add_resp_item(out, a, 1) < 0)
        return -1;
    if (evbuffer_add_printf(out, "],\"usage\":") < 0)
        return -1;
    if (complete && a->usage) {
        if (add_responses_usage(out, c, a) < 0)
            return -1;
    } else if (evbuffer_add(out, "null", 4) < 0) {
        return -1;
    }
    return evbuffer_add(out, "}", 1);
}

static int embeddings_body(const sim_call_t *c, const sim_answer_t *a, struct evbuffer *out)
{
    float *v = malloc((size_t)c->dimensions * sizeof(float));
    int rc = -1;
    if (!v)
        return -1;
    if (evbuffer_add_printf(out, "{\"object\":\"list\",\"data\":[") < 0)
        goto done;
    for (size_t i = 0; i < c->n_keys; i++) {
        sim_gen_vector(a->seed, c->keys[i], v, (size_t)c->dimensions);
        if (evbuffer_add_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                                i ? "," : "", i) < 0)
            goto done;
        if (c->base64) {
            /* The wire format is little-endian float32, what the SDKs decode. */
            unsigned char *b = (unsigned char *)v;
            for (long k = 0; k < c->dimensions; k++) {
                uint32_t u;
                memcpy(&u, &v[k], 4);
                b[4 * k] = (unsigned char)u;
                b[4 * k + 1] = (unsigned char)(u >> 8);
                b[4 * k + 2] = (unsigned char)(u >> 16);
                b[4 * k + 3] = (unsigned char)(u >> 24);
            }
            if (evbuffer_add(out, "\"", 1) < 0 ||
                sim_base64(out, b, 4 * (size_t)c->dimensions) < 0 || evbuffer_add(out, "\"", 1) < 0)
                goto done;
        } else {
            for (long k = 0; k < c->dimensions; k++)
                if (evbuffer_add_printf(out, "%s%.6f", k ? "," : "[", (double)v[k]) < 0)
                    goto done;
            if (evbuffer_add(out, "]", 1) < 0)
                goto done;
        }
        if (evbuffer_add(out, "}", 1) < 0)
            goto done;
    }
    if (evbuffer_add_printf(out, "],\"model\":%s", c->model_json) < 0)
        goto done;
    if (a->usage &&
        evbuffer_add_printf(out, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}",
                            c->prompt_tokens, c->prompt_tokens) < 0)
        goto done;
    rc = evbuffer_add(out, "}", 1);
done:
    free(v);
    return rc;
}

int sim_api_body(sim_endpoint_t ep, const sim_call_t *c, const sim_answer_t *a,
                 struct evbuffer *out)
{
    unsigned long long n = (unsigned long long)a->n;
    switch (ep) {
    case SIM_EP_CHAT:
        if (evbuffer_add_printf(out,
                                "{\"id\":\"chatcmpl-sim-%llu\",\"object\":\"chat.completion\","
                                "\"created\":%ld,\"model\":%s,\"system_fingerprint\":%s,"
                                "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                                "\"content\":\"",
                                n, a->created, c->model_json, a->fingerprint_json) < 0 ||
            add_text(out, a) < 0 ||
            evbuffer_add_printf(out, "\",\"refusal\":null},\"logprobs\":null,"
                                     "\"finish_reason\":\"stop\"}]") < 0)
            return -1;
        if (a->usage &&
            (evbuffer_add_printf(out, ",\"usage\":") < 0 || add_chat_usage(out, c, a) < 0))
            return -1;
        return evbuffer_add(out, "}", 1);
    case SIM_EP_COMPLETIONS:
        if (evbuffer_add_printf(out,
                                "{\"id\":\"cmpl-sim-%llu\",\"object\":\"text_completion\","
                                "\"created\":%ld,\"model\":%s,\"system_fingerprint\":%s,"
                                "\"choices\":[{\"text\":\"",
                                n, a->created, c->model_json, a->fingerprint_json) < 0 ||
            add_text(out, a) < 0 ||
            evbuffer_add_printf(out, "\",\"index\":0,\"logprobs\":null,"
                                     "\"finish_reason\":\"stop\"}]") < 0)
            return -1;
        if (a->usage &&
            (evbuffer_add_printf(out, ",\"usage\":") < 0 || add_completion_usage(out, c, a) < 0))
            return -1;
        return evbuffer_add(out, "}", 1);
    case SIM_EP_RESPONSES:
        return add_resp_object(out, c, a, 1);
    case SIM_EP_EMBEDDINGS:
        return embeddings_body(c, a, out);
    default:
        return -1;
    }
}

size_t sim_api_stream_cap(long pieces)
{
    return (size_t)pieces + 8;
}

/* Closes the event just written: records where it ends and what may delay it. */
static void mark(struct evbuffer *out, sim_event_t *ev, long *k, int kind)
{
    ev[*k].end = evbuffer_get_length(out);
    ev[*k].kind = kind;
    (*k)++;
}

static long chat_stream(const sim_call_t *c, const sim_answer_t *a, struct evbuffer *out,
                        sim_event_t *ev, int legacy)
{
    char *prefix = NULL;
    const char *tail = a->usage ? "],\"usage\":null}\n\n" : "]}\n\n";
    sim_rng_t r;
    long k = 0;
    int plen;

    /* Every chunk starts the same way; format that once. */
    plen = asprintf(&prefix,
                    "data: {\"id\":\"%s-sim-%llu\",\"object\":\"%s\",\"created\":%ld,"
                    "\"model\":%s,\"system_fingerprint\":%s,\"choices\":[",
                    legacy ? "cmpl" : "chatcmpl", (unsigned long long)a->n,
                    legacy ? "text_completion" : "chat.completion.chunk", a->created, c->model_json,
                    a->fingerprint_json);
    if (plen < 0)
        return -1;
    if (!legacy) {
        if (evbuffer_add(out, prefix, (size_t)plen) < 0 ||
            evbuffer_add_printf(out,
                                "{\"index\":0,\"delta\":{\"role\":\"assistant\","
                                "\"content\":\"\"},\"logprobs\":null,"
                                "\"finish_reason\":null}%s",
                                tail) < 0)
            goto fail;
        mark(out, ev, &k, SIM_EV_NOW);
    }
    sim_rng_init(&r, a->seed, SIM_STREAM_CONTENT, a->n);
    for (long i = 0; i < a->pieces; i++) {
        size_t wlen;
        const char *w = sim_gen_word(&r, &wlen);
        int rc = legacy ? evbuffer_add_printf(out,
                                              "%s{\"text\":\"%.*s \",\"index\":0,"
                                              "\"logprobs\":null,\"finish_reason\":null}%s",
                                              prefix, (int)wlen, w, tail)
                        : evbuffer_add_printf(out,
                                              "%s{\"index\":0,\"delta\":{\"content\":\"%.*s \"},"
                                              "\"logprobs\":null,\"finish_reason\":null}%s",
                                              prefix, (int)wlen, w, tail);
        if (rc < 0)
            goto fail;
        mark(out, ev, &k, i == 0 ? SIM_EV_FIRST : SIM_EV_NEXT);
    }
    int on_last = a->usage && a->usage_on_last;
    if (evbuffer_add_printf(out,
                            legacy ? "%s{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                                     "\"finish_reason\":\"stop\"}%s"
                                   : "%s{\"index\":0,\"delta\":{},\"logprobs\":null,"
                                     "\"finish_reason\":\"stop\"}%s",
                            prefix, on_last ? "],\"usage\":" : tail) < 0)
        goto fail;
    if (on_last && ((legacy ? add_completion_usage(out, c, a) : add_chat_usage(out, c, a)) < 0 ||
                    evbuffer_add(out, "}\n\n", 3) < 0))
        goto fail;
    mark(out, ev, &k, a->pieces == 0 ? SIM_EV_FIRST : SIM_EV_NOW);
    if (a->usage && !on_last) {
        if (evbuffer_add(out, prefix, (size_t)plen) < 0 ||
            evbuffer_add_printf(out, "],\"usage\":") < 0 ||
            (legacy ? add_completion_usage(out, c, a) : add_chat_usage(out, c, a)) < 0 ||
            evbuffer_add(out, "}\n\n", 3) < 0)
            goto fail;
        mark(out, ev, &k, SIM_EV_NOW);
    }
    if (evbuffer_add(out, "data: [DONE]\n\n", 14) < 0)
        goto fail;
    mark(out, ev, &k, SIM_EV_NOW);
    free(prefix);
    return k;
fail:
    free(prefix);
    return -1;
}

/* Responses API stream: typed events ("event: name"), no [DONE]. */
static long responses_stream(const sim_call_t *c, const sim_answer_t *a, struct evbuffer *out,
                             sim_event_t *ev)
{
    unsigned long long n = (unsigned long long)a->n;
    long k = 0, seq = 0;
    sim_rng_t r;

#define EV_HEAD(name)                                                                              \
    evbuffer_add_printf(                                                                           \
        out, "event: " name "\ndata: {\"type\":\"" name "\",\"sequence_number\":%ld", seq++)
#define PART_IDS ",\"item_id\":\"msg-sim-%llu\",\"output_index\":0,\"content_index\":0"

    if (EV_HEAD("response.created") < 0 || evbuffer_add_printf(out, ",\"response\":") < 0 ||
        add_resp_object(out, c, a, 0) < 0 || evbuffer_add(out, "}\n\n", 3) < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
    if (EV_HEAD("response.output_item.added") < 0 ||
        evbuffer_add_printf(out, ",\"output_index\":0,\"item\":") < 0 ||
        add_resp_item(out, a, 0) < 0 || evbuffer_add(out, "}\n\n", 3) < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
    if (EV_HEAD("response.content_part.added") < 0 ||
        evbuffer_add_printf(out,
                            PART_IDS ",\"part\":{\"type\":\"output_text\",\"text\":\"\","
                                     "\"annotations\":[]}}\n\n",
                            n) < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
    sim_rng_init(&r, a->seed, SIM_STREAM_CONTENT, a->n);
    for (long i = 0; i < a->pieces; i++) {
        size_t wlen;
        const char *w = sim_gen_word(&r, &wlen);
        if (EV_HEAD("response.output_text.delta") < 0 ||
            evbuffer_add_printf(out, PART_IDS ",\"delta\":\"%.*s \"}\n\n", n, (int)wlen, w) < 0)
            return -1;
        mark(out, ev, &k, i == 0 ? SIM_EV_FIRST : SIM_EV_NEXT);
    }
    if (EV_HEAD("response.output_text.done") < 0 ||
        evbuffer_add_printf(out, PART_IDS ",\"text\":\"", n) < 0 || add_text(out, a) < 0 ||
        evbuffer_add(out, "\"}\n\n", 4) < 0)
        return -1;
    mark(out, ev, &k, a->pieces == 0 ? SIM_EV_FIRST : SIM_EV_NOW);
    if (EV_HEAD("response.content_part.done") < 0 ||
        evbuffer_add_printf(out, PART_IDS ",\"part\":{\"type\":\"output_text\",\"text\":\"", n) <
            0 ||
        add_text(out, a) < 0 || evbuffer_add_printf(out, "\",\"annotations\":[]}}\n\n") < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
    if (EV_HEAD("response.output_item.done") < 0 ||
        evbuffer_add_printf(out, ",\"output_index\":0,\"item\":") < 0 ||
        add_resp_item(out, a, 1) < 0 || evbuffer_add(out, "}\n\n", 3) < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
    if (EV_HEAD("response.completed") < 0 || evbuffer_add_printf(out, ",\"response\":") < 0 ||
        add_resp_object(out, c, a, 1) < 0 || evbuffer_add(out, "}\n\n", 3) < 0)
        return -1;
    mark(out, ev, &k, SIM_EV_NOW);
#undef EV_HEAD
#undef PART_IDS
    return k;
}

long sim_api_stream(sim_endpoint_t ep, const sim_call_t *c, const sim_answer_t *a,
                    struct evbuffer *out, sim_event_t *events)
{
    switch (ep) {
    case SIM_EP_CHAT:
        return chat_stream(c, a, out, events, 0);
    case SIM_EP_COMPLETIONS:
        return chat_stream(c, a, out, events, 1);
    case SIM_EP_RESPONSES:
        return responses_stream(c, a, out, events);
    default:
        return -1;
    }
}

int sim_api_error(struct evbuffer *out, const sim_error_t *e)
{
    if (evbuffer_add_printf(out, "{\"error\":{\"message\":") < 0 ||
        sim_json_quote(out, e->message, strlen(e->message)) < 0 ||
        evbuffer_add_printf(out, ",\"type\":\"%s\",\"param\":", e->type) < 0)
        return -1;
    if (e->param ? evbuffer_add_printf(out, "\"%s\"", e->param) < 0
                 : evbuffer_add(out, "null", 4) < 0)
        return -1;
    if (evbuffer_add(out, ",\"code\":", 8) < 0)
        return -1;
    if (e->code ? evbuffer_add_printf(out, "\"%s\"", e->code) < 0
                : evbuffer_add(out, "null", 4) < 0)
        return -1;
    return evbuffer_add(out, "}}", 2);
}

static int add_model(struct evbuffer *out, const char *id, const char *owner_json)
{
    return evbuffer_add_printf(out,
                               "{\"id\":\"%s\",\"object\":\"model\",\"created\":%ld,"
                               "\"owned_by\":%s}",
                               id, MODEL_CREATED, owner_json) < 0
               ? -1
               : 0;
}

int sim_api_models(struct evbuffer *out, const char *owner_json)
{
    if (evbuffer_add_printf(out, "{\"object\":\"list\",\"data\":[") < 0)
        return -1;
    for (size_t i = 0; i < N_MODELS; i++)
        if ((i && evbuffer_add(out, ",", 1) < 0) || add_model(out, model_ids[i], owner_json) < 0)
            return -1;
    return evbuffer_add(out, "]}", 2);
}

int sim_api_model(struct evbuffer *out, const char *id, const char *owner_json)
{
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(id, model_ids[i]) == 0)
            return add_model(out, model_ids[i], owner_json);
    return 1;
}

void sim_api_status_error(sim_error_t *e, int status, const char *name, const char *why)
{
    switch (status) {
    case 429:
        sim_error_set(e, 429, "requests", NULL, "rate_limit_exceeded",
                      "Rate limit reached for requests (%s, switchyard-sim %s).", why, name);
        break;
    case 500:
        sim_error_set(e, 500, "server_error", NULL, "internal_error",
                      "The server had an error while processing your request (%s, "
                      "switchyard-sim %s).",
                      why, name);
        break;
    case 502:
        sim_error_set(e, 502, "server_error", NULL, "bad_gateway",
                      "Bad gateway (%s, switchyard-sim %s).", why, name);
        break;
    case 503:
        sim_error_set(e, 503, "server_error", NULL, "service_unavailable",
                      "The server is overloaded or not ready yet (%s, switchyard-sim %s).", why,
                      name);
        break;
    default:
        sim_error_set(e, status, status >= 500 ? "server_error" : "invalid_request_error", NULL,
                      "sim_fault", "Simulated HTTP %d (%s, switchyard-sim %s).", status, why, name);
        break;
    }
}

#define CREATED_BASE 1735689600L /* 2025-01-01; created = base + request number */

int sim_api_plan(const sim_request_t *r, struct evbuffer *out, sim_plan_t *plan)
{
    sim_error_t err;
    sim_rng_t rng;
    sim_rng_init(&rng, r->seed, SIM_STREAM_ERROR, r->n);
    double draw = sim_rng_unit(&rng);
    memset(plan, 0, sizeof(*plan));
    plan->retry_after = -1;
    err.status = 0;

    if (r->pre && r->pre->status) {
        err = *r->pre;
    } else if (r->fault_status) {
        sim_api_status_error(&err, r->fault_status, r->name, "x-sim-fault");
    } else if (draw < r->error_rate) {
        sim_api_status_error(&err, r->error_status, r->name, "--error-rate");
    } else if (r->ep == SIM_EP_NONE) {
        sim_error_set(&err, 404, "invalid_request_error", NULL, "unknown_url",
                      "Invalid URL (%s %.200s)", r->method, r->path);
    } else if (r->ep == SIM_EP_MODELS) {
        plan->status = 200;
        if (r->models_body)
            return evbuffer_add_reference(out, r->models_body, r->models_len, NULL, NULL);
        return sim_api_models(out, r->name_json);
    } else if (r->ep == SIM_EP_MODEL) {
        int rc = sim_api_model(out, r->path + 11, r->name_json);
        if (rc <= 0) {
            plan->status = 200;
            return rc;
        }
        sim_error_set(&err, 404, "invalid_request_error", "model", "model_not_found",
                      "The model '%.200s' does not exist", r->path + 11);
    } else {
        sim_call_t call;
        if (sim_api_parse(r->ep, r->body ? r->body : "", &call, &err) == 0) {
            sim_answer_t a = {.n = r->n,
                              .seed = r->seed,
                              .created = CREATED_BASE + (long)r->n,
                              .fingerprint_json = r->name_json,
                              .pieces = r->pieces};
            int rc;
            if (call.max_tokens > 0 && call.max_tokens < a.pieces)
                a.pieces = call.max_tokens;
            plan->status = 200;
            plan->is_stream = call.stream;
            if (call.stream) {
                a.usage = !r->no_usage && (call.include_usage || r->ep == SIM_EP_RESPONSES);
                a.usage_on_last = r->usage_on_last;
                plan->events = malloc(sim_api_stream_cap(a.pieces) * sizeof(*plan->events));
                plan->n_events =
                    plan->events ? sim_api_stream(r->ep, &call, &a, out, plan->events) : -1;
                rc = plan->n_events < 0 ? -1 : 0;
            } else {
                a.usage = !r->no_usage;
                rc = sim_api_body(r->ep, &call, &a, out);
            }
            sim_call_free(&call);
            return rc;
        }
    }
    if (err.status == 429)
        plan->retry_after = r->fault_retry_after >= 0 ? r->fault_retry_after : 1;
    else if (r->fault_retry_after >= 0)
        plan->retry_after = r->fault_retry_after;
    plan->status = err.status;
    plan->is_stream = 0;
    return sim_api_error(out, &err);
}
