/*
 * api — the OpenAI-compatible surface of switchyard-sim without the I/O:
 * routing a path to an endpoint, reading the few request fields the sim
 * honours, and formatting every answer (bodies, SSE streams, errors, the model
 * list) into evbuffers.
 *
 * Pure apart from memory: the server decides when bytes go out, this module
 * only decides which bytes. Owned results are released with sim_call_free();
 * functions return 0 / -1 (allocation failure) unless stated otherwise.
 */
#ifndef SWITCHYARD_SIM_API_H
#define SWITCHYARD_SIM_API_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

typedef enum {
    SIM_EP_NONE = 0,    /* not an endpoint the sim knows: 404 unknown_url */
    SIM_EP_CHAT,        /* POST /v1/chat/completions */
    SIM_EP_COMPLETIONS, /* POST /v1/completions */
    SIM_EP_EMBEDDINGS,  /* POST /v1/embeddings */
    SIM_EP_RESPONSES,   /* POST /v1/responses */
    SIM_EP_MODELS,      /* GET  /v1/models */
    SIM_EP_MODEL,       /* GET  /v1/models/{id} */
} sim_endpoint_t;

sim_endpoint_t sim_api_route(const char *path, int is_post);

/* An OpenAI-shaped error to answer with. Strings other than message are static. */
typedef struct {
    int status;
    const char *type;
    const char *param; /* NULL = JSON null */
    const char *code;  /* NULL = JSON null */
    char message[512];
} sim_error_t;

void sim_error_set(sim_error_t *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The error a failing provider answers with for status (429, 500, 502, 503 or any
 * other), naming the sim and why it failed. */
void sim_api_status_error(sim_error_t *e, int status, const char *name, const char *why);

/* What the sim takes from a request body. */
typedef struct {
    char *model_json;    /* the request's "model", already quoted for JSON; owned */
    int stream;          /* "stream": true */
    int include_usage;   /* "stream_options": {"include_usage": true} */
    long max_tokens;     /* smallest of the max_*tokens fields given, 0 = none */
    size_t prompt_chars; /* characters of the prompt text, for the token estimate */
    long prompt_tokens;  /* estimate from prompt_chars (or token arrays) */
    long dimensions;     /* embeddings: vector size */
    int base64;          /* embeddings: "encoding_format": "base64" */
    uint64_t *keys;      /* embeddings: one key per input, owned */
    size_t n_keys;
} sim_call_t;

void sim_call_free(sim_call_t *c);

/*
 * Parses the NUL-terminated body for endpoint ep into *c. Returns 0, or -1 with
 * *err filled (400 for bad JSON or missing fields, 500 for allocation failure);
 * *c is then empty and needs no sim_call_free.
 */
int sim_api_parse(sim_endpoint_t ep, const char *body, sim_call_t *c, sim_error_t *err);

/* Everything about one answer that is not in the request. */
typedef struct {
    uint64_t n;                   /* request number: ids and the content stream */
    uint64_t seed;                /* --seed */
    long created;                 /* unix seconds for "created" */
    const char *fingerprint_json; /* quoted --name, for system_fingerprint / owned_by */
    long pieces;                  /* content pieces (completion tokens) to generate */
    int usage;                    /* put usage in the answer (stream: a usage chunk) */
    int usage_on_last;            /* stream: on the finish chunk instead */
} sim_answer_t;

/* Non-streaming body of a successful answer for ep. */
int sim_api_body(sim_endpoint_t ep, const sim_call_t *c, const sim_answer_t *a,
                 struct evbuffer *out);

/* Where each SSE event ends in the stream buffer, and what may delay it. */
enum {
    SIM_EV_NOW = 0,   /* goes out with whatever precedes it */
    SIM_EV_FIRST = 1, /* first content: --ttft-ms after the headers */
    SIM_EV_NEXT = 2,  /* later content: --chunk-ms after the previous one */
};
typedef struct {
    size_t end;
    int kind;
} sim_event_t;

/* Room sim_api_stream needs in its events array. */
size_t sim_api_stream_cap(long pieces);

/*
 * Appends the whole SSE stream for ep (chat, completions or responses) to out
 * and records each event's end offset and kind. Returns the number of events,
 * or -1 on allocation failure.
 */
long sim_api_stream(sim_endpoint_t ep, const sim_call_t *c, const sim_answer_t *a,
                    struct evbuffer *out, sim_event_t *events);

/* One /v1 request's answer, decided the same way on the HTTP/1.1 and HTTP/2 sides. */
typedef struct {
    sim_endpoint_t ep;
    const char *method;   /* for the 404 text */
    const char *path;     /* without the query */
    const char *body;     /* NUL-terminated request body (POST endpoints) */
    uint64_t n;           /* request number */
    uint64_t seed;
    long pieces;          /* --chunks */
    double error_rate;    /* --error-rate, with error_status */
    int error_status;
    const char *name;     /* --name, and quoted for JSON */
    const char *name_json;
    const char *models_body; /* GET /v1/models formatted once by the caller, or NULL */
    size_t models_len;
    const sim_error_t *pre; /* an error the caller already decided (fault script, auth,
                               size), or NULL */
    int fault_status;       /* x-sim-fault status=, 0 = none */
    int fault_retry_after;  /* x-sim-fault retry_after=, -1 = none */
    int no_usage;           /* x-sim-fault no_usage */
    int usage_on_last;      /* x-sim-fault usage_on_last */
} sim_request_t;

typedef struct {
    int status;
    int is_stream;
    int retry_after; /* -1: no Retry-After */
    sim_event_t *events; /* streams: malloc'd, the caller frees */
    long n_events;
} sim_plan_t;

/* Fills out (the body or the whole stream) and *plan for r. Returns 0, or -1 when
 * nothing could be built (out of memory). */
int sim_api_plan(const sim_request_t *r, struct evbuffer *out, sim_plan_t *plan);

/* The error body {"error":{...}} for e. */
int sim_api_error(struct evbuffer *out, const sim_error_t *e);

/* GET /v1/models list; GET /v1/models/{id} (returns 1 when id is not known). */
int sim_api_models(struct evbuffer *out, const char *owner_json);
int sim_api_model(struct evbuffer *out, const char *id, const char *owner_json);

#endif
