/*
 * config — loads switchyard's YAML config (libyaml event API) into an immutable
 * snapshot, validating all of it, and reports every error with its location.
 *
 * Ownership: config_load returns a config_t owned by the caller; it is never
 * modified after load and is shared read-only between threads through
 * config_ref / config_unref (atomic reference count; the last unref frees it).
 * Errors: config_load returns NULL and fills `errs` with one line per problem,
 * each "FILE:LINE:COL: message" (1-based line and column), with a hint for a
 * near-miss key ("unknown key `tmeout`; did you mean `timeout`?"). Warnings that
 * do not stop loading go to errs->warnings the same way.
 *
 * Provider keys are read from the environment variables the file names
 * (`api_key_env`), never from the file; a named variable that is unset or empty
 * is an error.
 */
#ifndef SWITCHYARD_CONFIG_H
#define SWITCHYARD_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "flags.h"

enum { CONFIG_ROLE_ORIGINAL = 0, CONFIG_ROLE_NEW = 1, CONFIG_N_ROLES = 2 };

typedef struct {
    char *from; /* client-facing model name */
    char *to;   /* the provider's model name */
} config_model_map_t;

/* USD per million tokens for one client-facing model name. */
typedef struct {
    char *model;
    double input, output, cached_input; /* cached_input defaults to input */
} config_price_t;

typedef struct {
    const char *role; /* "original" / "new" (static string) */
    char *name;       /* label in headers, logs, metrics; defaults to the role */
    char *base_url;   /* e.g. "http://127.0.0.1:8101/v1", no trailing '/' */
    char *api_key_env;/* NULL when the provider takes no key */
    char *api_key;    /* value of $api_key_env at load time, or NULL */
    size_t api_key_len; /* its length (the echo check runs on every upstream header) */
    struct {
        long connect_ms, first_byte_ms, idle_ms, total_ms;
    } timeouts;
    config_model_map_t *models;
    size_t n_models;
    config_price_t *pricing;
    size_t n_pricing;
    int http_version; /* CONFIG_HTTP_*: which HTTP the upstream connection speaks */
    char *ca_file;    /* PEM CAs to verify the provider with, or NULL: the system's */
} config_provider_t;

/* http_version: "auto" lets TLS negotiate HTTP/2 (ALPN) and uses HTTP/1.1 in clear;
 * "1.1" never multiplexes; "2" asks for HTTP/2 over TLS (https:// only). */
enum { CONFIG_HTTP_AUTO = 0, CONFIG_HTTP_1_1 = 1, CONFIG_HTTP_2 = 2 };

typedef struct {
    char *host; /* numeric or name, without brackets */
    int port;   /* 0..65535 (0 = any free port) */
} config_addr_t;

/* fallback: which failures move a request to another attempt, and the limits on it. */
typedef struct {
    unsigned on;                /* FAILURE_BIT(class) set (failure.h) */
    long retry_same_provider;   /* retries on one provider before falling back */
    long max_attempts;          /* all attempts of one client request */
    long backoff_base_ms, backoff_max_ms;
    long budget_percent;        /* retries+fallbacks as a share of requests, per worker */
    long budget_min_per_second; /* always allowed, per worker */
    long eject_consecutive;     /* consecutive failures that eject a provider; 0 = never */
    long eject_base_ms, eject_max_ms;
} config_fallback_t;

#define CONFIG_MAX_STAGES 16

/* rollout: the staged migration the controller runs (rollback/rollout.h). */
typedef struct {
    int present;  /* the file has a rollout block */
    char *flag;   /* the flag whose percentage it owns */
    int mode;     /* 0 auto, 1 manual, 2 rollback (rollout_mode_t) */
    int n_stages;
    uint32_t stages_bp[CONFIG_MAX_STAGES];
    long long stage_min_duration_ms, check_interval_ms, max_stage_duration_ms;
    long long min_requests;
    long failure_threshold;
    double error_rate_increase, confidence, latency_p95_ratio, ttft_p95_ratio,
        cost_per_1k_tokens_ratio;
    double latency_min_difference_ms; /* p95 differences below this pass the latency gates */
    int on_failure; /* 0 rollback, 1 step_down, 2 pause (rollout_on_failure_t) */
    char *state_file, *audit_log;
} config_rollout_t;

enum { CLIENT_PERM_CHAT = 1, CLIENT_PERM_PUSH = 2 };

/* A client key allowed to call /v1 (clients block). */
typedef struct {
    char *name;
    char *key_env;               /* NULL when given as key_sha256 */
    unsigned char key_sha256[32]; /* SHA-256 of the key (computed from key_env at load) */
    char *user;                  /* identity for push targeting and stickiness */
    unsigned permissions;        /* CLIENT_PERM_* */
} config_client_t;

typedef struct config {
    atomic_int refs;
    char *path;
    config_addr_t listen;
    int workers; /* 0 in the file = one per core; resolved by the loader to >= 1 */
    struct {
        config_addr_t listen;
        char *token_env; /* NULL = no token */
        char *token;     /* value of $token_env */
    } admin;
    struct {
        size_t max_body_bytes;
        size_t max_header_bytes;
        long client_stall_ms; /* a client that reads nothing this long is dropped */
        long client_timeout_ms; /* a client that sends nothing (headers, body) this long */
        long header_timeout_ms; /* a request head (line + headers) taking longer in total */
    } limits;
    config_fallback_t fallback;
    struct {
        char *path; /* "-" = stdout, NULL = off */
    } access_log;
    config_rollout_t rollout;
    config_client_t *clients; /* n_clients > 0: every /v1 request needs a known key */
    size_t n_clients;
    struct {
        char **allow_origins;
        size_t n_allow_origins;
        int allow_credentials;
        long max_age_s;
    } cors;
    struct {
        long max_message_bytes, max_connections_per_key, handshake_timeout_ms;
        long ping_interval_ms, idle_timeout_ms, max_queue_bytes, heartbeat_ms;
        long session_token_ttl_s;
        char *session_secret_env, *session_secret; /* NULL: a random secret per process */
    } realtime;
    config_provider_t providers[CONFIG_N_ROLES];
    char **forward_headers; /* extra client headers passed upstream (lower-cased) */
    size_t n_forward_headers;
    flag_def_t **flags;
    size_t n_flags;
    int routing_percentage_set; /* flags.use_new_provider.percentage is written in the file */
} config_t;

typedef struct {
    char **lines; /* "FILE:LINE:COL: message" */
    size_t n;
    char **warnings;
    size_t n_warnings;
} config_errors_t;

/* Loads and validates path. NULL with errs filled on any error. */
config_t *config_load(const char *path, config_errors_t *errs);

/* The same from a buffer; `name` is used in messages as the FILE part. */
config_t *config_load_buffer(const char *name, const char *yaml, size_t len,
                             config_errors_t *errs);

config_t *config_ref(config_t *c);
void config_unref(config_t *c); /* NULL is a no-op */

void config_errors_free(config_errors_t *errs); /* frees the lines, not the struct */

/* The provider for a role; the flag named `name` or NULL. */
const config_provider_t *config_provider(const config_t *c, int role);
const flag_def_t *config_flag(const config_t *c, const char *name);

/* The price of a client-facing model at a provider, or NULL (cost unknown). */
const config_price_t *config_price(const config_provider_t *p, const char *model);

/* Maps a client model name through the provider's `models`; NULL when unmapped. */
const char *config_map_model(const config_provider_t *p, const char *model);

/* Settings the router reads only when it starts (listeners, workers, the limits evhttp and
 * the head guard are built with, the access log, the session-token secret): the names of
 * those that differ between old and cur ("listen", "limits.client_timeout_ms", ...; static
 * strings) go to keys[0..cap). Returns how many differ, which may be more than cap. A
 * reload applies everything else at once; these wait for a restart. */
size_t config_restart_keys(const config_t *old, const config_t *cur, const char **keys, size_t cap);

#endif
