/*
 * test_config.c — unit tests for router/config.c (and its YAML reader
 * router/config_yaml.c): the shipped configs load with the documented values
 * and defaults, and every error path reports FILE:LINE:COL with a useful
 * message — all errors of a file at once, never a secret.
 * Run from the repository root (the default config is read by relative path).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "failure.h"
#include "flags.h"

#define F "t.yaml"

/* Two providers and nothing else: the smallest valid config. */
#define PROVIDERS                                                                                  \
    "providers:\n"                                                                                 \
    "  original:\n"                                                                                \
    "    base_url: http://127.0.0.1:8101/v1\n"                                                     \
    "  new:\n"                                                                                     \
    "    base_url: http://127.0.0.1:8102/v1\n"

static config_errors_t errs;

static config_t *load(const char *yaml)
{
    config_errors_free(&errs);
    return config_load_buffer(F, yaml, strlen(yaml), &errs);
}

static void dump(void)
{
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "    error: %s\n", errs.lines[i]);
    for (size_t i = 0; i < errs.n_warnings; i++)
        fprintf(stderr, "    warning: %s\n", errs.warnings[i]);
}

/* Every line is "t.yaml:LINE:COL: message" with LINE, COL >= 1. */
static void check_format(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int line = 0, col = 0, off = 0;
        if (sscanf(lines[i], F ":%d:%d: %n", &line, &col, &off) != 2 || off == 0 || line < 1 ||
            col < 1 || lines[i][off] == '\0' || strchr(lines[i], '\n') != NULL) {
            dump();
            fail_msg("badly formatted line: %s", lines[i]);
        }
    }
}

static size_t count_containing(const char *sub)
{
    size_t k = 0;
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.lines[i], sub) != NULL)
            k++;
    return k;
}

/* The load fails, and some error line contains `sub`. */
static void expect_error(const char *yaml, const char *sub)
{
    config_t *c = load(yaml);
    if (c != NULL) {
        config_unref(c);
        fail_msg("loaded, expected an error containing: %s", sub);
    }
    check_format(errs.lines, errs.n);
    if (count_containing(sub) == 0) {
        dump();
        fail_msg("no error contains: %s", sub);
    }
}

/* The load fails, and some error line is exactly `line`. */
static void expect_line(const char *yaml, const char *line)
{
    config_t *c = load(yaml);
    if (c != NULL) {
        config_unref(c);
        fail_msg("loaded, expected: %s", line);
    }
    for (size_t i = 0; i < errs.n; i++)
        if (strcmp(errs.lines[i], line) == 0)
            return;
    dump();
    fail_msg("no error is exactly: %s", line);
}

static config_t *expect_ok(const char *yaml)
{
    config_t *c = load(yaml);
    if (c == NULL) {
        dump();
        fail_msg("expected the config to load");
    }
    check_format(errs.warnings, errs.n_warnings);
    return c;
}

static int teardown(void **state)
{
    (void)state;
    config_errors_free(&errs);
    return 0;
}

static void clear_env(void)
{
    unsetenv("ORIGINAL_API_KEY");
    unsetenv("NEW_API_KEY");
    unsetenv("SWITCHYARD_ADMIN_TOKEN");
}

/* ---- the shipped configs ---------------------------------------------------- */

static void test_default_config(void **state)
{
    (void)state;
    clear_env();
    config_errors_free(&errs);
    config_t *c = config_load("configs/switchyard.yaml", &errs);
    if (c == NULL)
        dump();
    assert_non_null(c);
    assert_int_equal(errs.n, 0);
    assert_int_equal(errs.n_warnings, 0);

    assert_string_equal(c->path, "configs/switchyard.yaml");
    assert_string_equal(c->listen.host, "127.0.0.1");
    assert_int_equal(c->listen.port, 8080);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cores < 1 ? 1 : cores > 256 ? 256 : cores);
    assert_string_equal(c->admin.listen.host, "127.0.0.1");
    assert_int_equal(c->admin.listen.port, 9090);
    assert_null(c->admin.token_env);
    assert_null(c->admin.token);
    assert_int_equal(c->limits.max_body_bytes, 8388608);
    assert_int_equal(c->limits.max_header_bytes, 65536);

    const config_provider_t *o = config_provider(c, CONFIG_ROLE_ORIGINAL);
    const config_provider_t *n = config_provider(c, CONFIG_ROLE_NEW);
    assert_non_null(o);
    assert_non_null(n);
    assert_null(config_provider(c, 2));
    assert_null(config_provider(c, -1));
    assert_string_equal(o->role, "original");
    assert_string_equal(n->role, "new");
    assert_string_equal(o->name, "openai");
    assert_string_equal(n->name, "relay");
    assert_string_equal(o->base_url, "http://127.0.0.1:8101/v1");
    assert_string_equal(n->base_url, "http://127.0.0.1:8102/v1");
    assert_null(o->api_key_env);
    assert_null(o->api_key);
    assert_null(n->api_key_env);
    assert_null(n->api_key);
    for (int r = 0; r < CONFIG_N_ROLES; r++) {
        const config_provider_t *p = config_provider(c, r);
        assert_int_equal(p->timeouts.connect_ms, 10000);
        assert_int_equal(p->timeouts.first_byte_ms, 60000);
        assert_int_equal(p->timeouts.idle_ms, 60000);
        assert_int_equal(p->timeouts.total_ms, 600000);
    }
    assert_int_equal(o->n_models, 0);
    assert_int_equal(n->n_models, 1);
    assert_string_equal(config_map_model(n, "claude-sonnet-4.5"), "claude-sonnet-4-5");
    assert_null(config_map_model(o, "claude-sonnet-4.5"));

    assert_int_equal(c->n_flags, 1);
    const flag_def_t *f = config_flag(c, "use_new_provider");
    assert_non_null(f);
    assert_null(config_flag(c, "nope"));
    assert_int_equal(f->percentage_bp, 1000);
    assert_int_equal(f->unkeyed, FLAG_UNKEYED_RANDOM);
    assert_int_equal(f->n_sticky, 3);
    assert_int_equal(f->sticky[0].kind, FLAG_STICKY_HEADER);
    assert_string_equal(f->sticky[0].name, "x-user-id");
    assert_int_equal(f->sticky[1].kind, FLAG_STICKY_BODY);
    assert_string_equal(f->sticky[1].name, "user");
    assert_int_equal(f->sticky[2].kind, FLAG_STICKY_API_KEY);
    assert_int_equal(f->n_allow + f->n_deny + f->n_models, 0);
    config_unref(c);
}

static void test_real_providers_example(void **state)
{
    (void)state;
    clear_env();
    setenv("ORIGINAL_API_KEY", "sk-original-SECRET-1", 1);
    setenv("NEW_API_KEY", "relay-SECRET-2", 1);
    setenv("SWITCHYARD_ADMIN_TOKEN", "admin-SECRET-3", 1);
    config_errors_free(&errs);
    config_t *c = config_load("configs/examples/real-providers.yaml", &errs);
    if (c == NULL)
        dump();
    assert_non_null(c);
    const config_provider_t *o = config_provider(c, CONFIG_ROLE_ORIGINAL);
    const config_provider_t *n = config_provider(c, CONFIG_ROLE_NEW);
    assert_string_equal(o->base_url, "https://api.openai.com/v1");
    assert_string_equal(n->base_url, "https://relay.example.com/v1");
    assert_string_equal(o->api_key_env, "ORIGINAL_API_KEY");
    assert_string_equal(o->api_key, "sk-original-SECRET-1");
    assert_string_equal(n->api_key, "relay-SECRET-2");
    assert_string_equal(c->admin.token, "admin-SECRET-3");
    assert_string_equal(config_map_model(n, "gpt-4o"), "openai/gpt-4o");
    assert_int_equal(config_flag(c, "use_new_provider")->unkeyed, FLAG_UNKEYED_ORIGINAL);
    config_unref(c);

    /* Both keys missing: both reported, by name, with where they were asked for. */
    setenv("ORIGINAL_API_KEY", "", 1);
    unsetenv("NEW_API_KEY");
    config_errors_free(&errs);
    assert_null(config_load("configs/examples/real-providers.yaml", &errs));
    assert_int_equal(errs.n, 2);
    assert_non_null(strstr(errs.lines[0], "environment variable ORIGINAL_API_KEY "
                                          "(providers.original.api_key_env) is empty"));
    assert_non_null(strstr(errs.lines[1], "environment variable NEW_API_KEY "
                                          "(providers.new.api_key_env) is not set"));
    assert_true(strncmp(errs.lines[0], "configs/examples/real-providers.yaml:", 37) == 0);
    clear_env();
}

static void test_missing_file(void **state)
{
    (void)state;
    config_errors_free(&errs);
    assert_null(config_load("configs/does-not-exist.yaml", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0],
                        "configs/does-not-exist.yaml:1:1: cannot open: No such file or directory");
}

/* ---- defaults --------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS);
    assert_string_equal(c->listen.host, "127.0.0.1");
    assert_int_equal(c->listen.port, 8080);
    assert_true(c->workers >= 1);
    assert_int_equal(c->admin.listen.port, 9090);
    assert_int_equal(c->limits.max_body_bytes, 8 << 20);
    assert_int_equal(c->limits.max_header_bytes, 64 << 10);
    assert_string_equal(c->providers[0].name, "original");
    assert_string_equal(c->providers[1].name, "new");
    assert_int_equal(c->providers[1].timeouts.total_ms, 600000);
    /* no flags block: use_new_provider at 0% with the default sticky list */
    assert_int_equal(c->n_flags, 1);
    const flag_def_t *f = config_flag(c, "use_new_provider");
    assert_non_null(f);
    assert_int_equal(f->percentage_bp, 0);
    assert_int_equal(f->unkeyed, FLAG_UNKEYED_RANDOM);
    assert_int_equal(f->n_sticky, 3);
    assert_string_equal(f->sticky[0].spec, "header:x-user-id");
    assert_string_equal(f->sticky[1].spec, "body:user");
    assert_string_equal(f->sticky[2].spec, "api_key");
    assert_int_equal(errs.n_warnings, 0);
    config_unref(c);
}

static void test_values_and_flag_defaults(void **state)
{
    (void)state;
    config_t *c = expect_ok("listen: \"[::1]:0\"\n"
                            "workers: 1\n"
                            "admin: {listen: \"127.0.0.1:0\"}\n"
                            "limits: {max_body_bytes: 1024, max_header_bytes: 16777216}\n"
                            "providers:\n"
                            "  original: {base_url: \"https://a.example/v1///\", name: A.b_c-1,"
                            " timeouts: {connect_ms: 1, total_ms: 86400000}}\n"
                            "  new:\n"
                            "    base_url: HTTP://b.example:8443\n"
                            "    models: {x: y, \"a b\": 'c d'}\n"
                            "flags:\n"
                            "  use_new_provider:\n"
                            "    percentage: 12.5\n"
                            "    unkeyed: new\n"
                            "    allow: [\"internal-*\", bob]\n"
                            "    deny: [eve]\n"
                            "    models: [gpt-4o]\n");
    assert_string_equal(c->listen.host, "::1");
    assert_int_equal(c->listen.port, 0);
    assert_int_equal(c->workers, 1);
    assert_int_equal(c->admin.listen.port, 0);
    assert_int_equal(c->limits.max_body_bytes, 1024);
    assert_int_equal(c->limits.max_header_bytes, 16777216);
    assert_string_equal(c->providers[0].base_url, "https://a.example/v1");
    assert_string_equal(c->providers[0].name, "A.b_c-1");
    assert_int_equal(c->providers[0].timeouts.connect_ms, 1);
    assert_int_equal(c->providers[0].timeouts.first_byte_ms, 60000);
    assert_int_equal(c->providers[0].timeouts.total_ms, 86400000);
    assert_string_equal(c->providers[1].base_url, "HTTP://b.example:8443");
    assert_string_equal(config_map_model(&c->providers[1], "a b"), "c d");
    assert_string_equal(config_map_model(&c->providers[1], "x"), "y");
    assert_null(config_map_model(&c->providers[1], "y"));
    assert_null(config_map_model(NULL, "x"));
    assert_null(config_map_model(&c->providers[1], NULL));
    const flag_def_t *f = config_flag(c, "use_new_provider");
    assert_int_equal(f->percentage_bp, 1250);
    assert_int_equal(f->unkeyed, FLAG_UNKEYED_NEW);
    assert_int_equal(f->n_sticky, 3); /* sticky absent: the default list */
    assert_int_equal(f->n_allow, 2);
    assert_true(f->allow[0].prefix);
    assert_string_equal(f->allow[0].text, "internal-");
    assert_int_equal(f->n_deny, 1);
    assert_int_equal(f->n_models, 1);
    config_unref(c);
}

static void test_explicit_sticky_and_extra_flag(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS "flags:\n"
                                      "  use_new_provider: {percentage: 100, sticky: [api_key]}\n"
                                      "  use_new_providr: {percentage: 0, sticky: []}\n");
    assert_int_equal(c->n_flags, 2);
    assert_int_equal(config_flag(c, "use_new_provider")->n_sticky, 1);
    assert_int_equal(config_flag(c, "use_new_provider")->percentage_bp, 10000);
    assert_int_equal(config_flag(c, "use_new_providr")->n_sticky, 0);
    /* an unknown flag name and an empty sticky list are warnings */
    assert_int_equal(errs.n_warnings, 2);
    assert_string_equal(errs.warnings[0], F ":8:3: flag `use_new_providr` is not evaluated by the "
                                            "router; did you mean `use_new_provider`?");
    assert_string_equal(errs.warnings[1],
                        F ":8:44: flags.use_new_providr.sticky is empty: every request follows "
                          "`unkeyed`");
    config_unref(c);
}

/* A flags block without the routing flag used to load with a warning and route 0% to new:
 * a typo in its name, saved during a rollout, moved all traffic back to original. */
static void test_routing_flag_missing(void **state)
{
    (void)state;
    expect_line(PROVIDERS "flags:\n  use_new_providr: {percentage: 50}\n",
                F ":7:3: flag `use_new_providr` is not evaluated by the router and flags has no "
                  "`use_new_provider`, so every request would go to original; did you mean "
                  "`use_new_provider`?");
    assert_int_equal(errs.n, 1);
    expect_error(PROVIDERS "flags:\n  Use_New_Provider: {percentage: 50}\n",
                 F ":7:3: flag `Use_New_Provider` is not evaluated by the router and flags has "
                   "no `use_new_provider`, so every request would go to original; did you mean "
                   "`use_new_provider`? (keys are case-sensitive)");
    /* no near miss: the block itself is pointed at */
    expect_line(PROVIDERS "flags: {}\n",
                F ":6:8: flags has no `use_new_provider`, the flag that routes requests: every "
                  "request would go to original. Add it (`use_new_provider: { percentage: 0 }` "
                  "keeps everything on original), or leave the flags block out");
    expect_error(PROVIDERS "flags:\n  beta_ui: {percentage: 5}\n",
                 F ":7:3: flags has no `use_new_provider`");
    /* with a rollout the percentage may be left out, never the flag */
    expect_error(PROVIDERS "rollout: {}\nflags:\n  use_new_provder: {}\n",
                 F ":8:3: flag `use_new_provder` is not evaluated by the router and flags has "
                   "no `use_new_provider`");
    /* other flags beside the routing one are OFREP flags: still a warning */
    config_t *c = expect_ok(PROVIDERS "flags:\n"
                                      "  use_new_provider: {percentage: 5}\n"
                                      "  beta_ui: {percentage: 20}\n");
    assert_int_equal(c->n_flags, 2);
    assert_int_equal(config_flag(c, "beta_ui")->percentage_bp, 2000);
    assert_int_equal(errs.n_warnings, 1);
    assert_string_equal(errs.warnings[0], F ":8:3: flag `beta_ui` is not evaluated by the router");
    config_unref(c);
}

static void test_workers_warning(void **state)
{
    (void)state;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores >= 256)
        skip();
    char yaml[256];
    snprintf(yaml, sizeof yaml, "workers: %ld\n" PROVIDERS, cores + 1);
    config_t *c = expect_ok(yaml);
    assert_int_equal(c->workers, cores + 1);
    assert_int_equal(errs.n_warnings, 1);
    assert_non_null(strstr(errs.warnings[0], F ":1:10: workers ("));
    assert_non_null(strstr(errs.warnings[0], "is above the number of online CPUs"));
    config_unref(c);
}

static void test_key_in_clear_warning(void **state)
{
    (void)state;
    setenv("CLEAR_KEY", "sk-clear", 1);
    config_t *c = expect_ok("providers:\n"
                            "  original:\n"
                            "    base_url: http://10.1.2.3/v1\n"
                            "    api_key_env: CLEAR_KEY\n"
                            "  new:\n"
                            "    base_url: http://127.0.0.1:8102/v1\n"
                            "    api_key_env: CLEAR_KEY\n");
    assert_int_equal(errs.n_warnings, 1);
    assert_non_null(strstr(errs.warnings[0], "providers.original: its key would cross the "
                                             "network in clear text"));
    config_unref(c);
    /* loopback, https, or no key: nothing to say */
    c = expect_ok("providers:\n"
                  "  original:\n"
                  "    base_url: http://localhost:8101/v1\n"
                  "    api_key_env: CLEAR_KEY\n"
                  "  new:\n"
                  "    base_url: http://10.1.2.3/v1\n");
    assert_int_equal(errs.n_warnings, 0);
    config_unref(c);
    unsetenv("CLEAR_KEY");
}

static void test_contradictions_warned(void **state)
{
    (void)state;
    config_t *c = expect_ok("providers:\n"
                            "  original: { base_url: \"http://127.0.0.1:1/v1\", timeouts: { "
                            "first_byte_ms: 900000, total_ms: 1000 } }\n"
                            "  new: { base_url: \"http://127.0.0.1:2/v1\" }\n"
                            "fallback: { max_attempts: 1, retry_same_provider: 5 }\n"
                            "rollout: { check_interval: 24h, max_stage_duration: 1s, "
                            "stage_min_duration: 0s }\n");
    assert_int_equal(errs.n_warnings, 3);
    assert_non_null(strstr(errs.warnings[0], "fallback.retry_same_provider (5) has no effect"));
    assert_non_null(strstr(errs.warnings[1], F ":2:13: providers.original.timeouts.total_ms "
                                               "(1000) is below first_byte_ms (900000)"));
    assert_non_null(strstr(errs.warnings[2], "rollout.check_interval is longer than "
                                             "rollout.max_stage_duration"));
    config_unref(c);
}

static void test_unreachable_price_and_ping_warned(void **state)
{
    (void)state;
    config_t *c =
        expect_ok(PROVIDERS "    models: { \"claude-sonnet-4.5\": \"claude-sonnet-4-5\" }\n"
                            "    pricing:\n"
                            "      \"claude-sonnet-4-5\": { input: 1, output: 2 }\n"
                            "      \"claude-sonnet-4.5\": { input: 1, output: 2 }\n"
                            "realtime: { ping_interval_ms: 3600000, idle_timeout_ms: 200 }\n");
    assert_int_equal(errs.n_warnings, 2);
    int price = 0, ping = 0;
    for (size_t i = 0; i < errs.n_warnings; i++) {
        price += strstr(errs.warnings[i], "providers.new.pricing `claude-sonnet-4-5` is the "
                                          "provider's name for `claude-sonnet-4.5`") != NULL;
        ping +=
            strstr(errs.warnings[i], "realtime.ping_interval_ms (3600000) is not below") != NULL;
    }
    assert_int_equal(price, 1);
    assert_int_equal(ping, 1);
    config_unref(c);
    /* a name that is also sent by clients is a price in use */
    c = expect_ok(PROVIDERS "    models: { \"a\": \"b\", \"b\": \"b\" }\n"
                            "    pricing: { \"b\": { input: 1, output: 2 } }\n");
    assert_int_equal(errs.n_warnings, 0);
    config_unref(c);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_unknown_key_hint(void **state)
{
    (void)state;
    expect_line(PROVIDERS "lisen: \"127.0.0.1:1\"\n",
                F ":6:1: unknown top-level key `lisen`; did you mean `listen`?");
    expect_line("providers:\n"
                "  original:\n"
                "    base_url: http://127.0.0.1:8101/v1\n"
                "    tmeout: {total_ms: 5}\n"
                "  new:\n"
                "    base_url: http://127.0.0.1:8102/v1\n",
                F ":4:5: unknown key `tmeout` in providers.original; did you mean `timeouts`?");
    expect_line(PROVIDERS "    timeouts: {totl_ms: 5}\n",
                F ":6:16: unknown key `totl_ms` in providers.new.timeouts; did you mean "
                  "`total_ms`?");
    /* a case variant */
    expect_line(PROVIDERS "Workers: 2\n",
                F ":6:1: unknown top-level key `Workers`; did you mean `workers`? (keys are "
                  "case-sensitive)");
    /* no near miss: the known keys are listed */
    expect_line(PROVIDERS "limits: {body: 5}\n",
                F ":6:10: unknown key `body` in limits (expected `max_body_bytes`, "
                  "`max_header_bytes`, `client_stall_ms`, `client_timeout_ms`, `header_timeout_ms`)");
    /* blocks that later issues add are unknown today */
    expect_error(PROVIDERS "client: []\n", "unknown top-level key `client`; did you mean `clients`?");
}

static void test_clients_cors_realtime(void **state)
{
    (void)state;
    setenv("T_CLIENT_KEY", "ck-123", 1);
    config_t *c = expect_ok(PROVIDERS "clients:\n"
                                      "  - { name: web, key_env: T_CLIENT_KEY, user: u1, permissions: [chat, push] }\n"
                                      "  - { name: b, key_sha256: \"" "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                                      "\", user: u2 }\n"
                                      "cors: { allow_origins: [\"https://app.example.com\"], allow_credentials: true, max_age_s: 60 }\n"
                                      "realtime: { max_message_bytes: 4096, heartbeat_ms: 500 }\n");
    assert_int_equal(c->n_clients, 2);
    assert_string_equal(c->clients[0].user, "u1");
    assert_int_equal(c->clients[0].permissions, CLIENT_PERM_CHAT | CLIENT_PERM_PUSH);
    assert_int_equal(c->clients[1].permissions, CLIENT_PERM_CHAT);
    assert_int_equal(c->clients[1].key_sha256[0], 0x2c); /* sha256("hello") */
    assert_int_equal(c->cors.n_allow_origins, 1);
    assert_true(c->cors.allow_credentials);
    assert_int_equal(c->cors.max_age_s, 60);
    assert_int_equal(c->realtime.max_message_bytes, 4096);
    assert_int_equal(c->realtime.heartbeat_ms, 500);
    config_unref(c);
    expect_error(PROVIDERS "clients:\n  - { name: a, user: u }\n", "needs `key_env` or `key_sha256`");
    expect_error(PROVIDERS "clients:\n  - { name: a, user: u, key_sha256: abc }\n", "64 hex digits");
    expect_error(PROVIDERS "clients:\n  - { name: a, user: u, key_env: T_CLIENT_KEY, permissions: [admin] }\n",
                 "must be `chat` or `push`");
    expect_error(PROVIDERS "clients:\n  - { name: a, user: u, key: sk-1 }\n", "key");
    expect_error(PROVIDERS "cors: { allow_origins: [\"*\"] }\n", "must be an origin such as");
    expect_error(PROVIDERS "cors: { allow_origins: [\"https://a.com/path\"] }\n", "must be an origin");
    unsetenv("T_CLIENT_KEY");
}

/* `clients: []` turned client authentication off: it failed open. */
static void test_clients_empty(void **state)
{
    (void)state;
    expect_line(PROVIDERS "clients: []\n",
                F ":6:10: clients is empty, which would turn client authentication off; list at "
                  "least one client, or leave the `clients` block out to run without client "
                  "keys");
    config_t *c = expect_ok(PROVIDERS);
    assert_int_equal(c->n_clients, 0); /* no block: no client keys, as documented */
    config_unref(c);
}

/* Two clients with one key: the first always won, the second's user and permissions never
 * applied; one client with two keys kept the last one silently. */
static void test_clients_keys_unique(void **state)
{
    (void)state;
    setenv("T_KEY_A", "ck-same", 1);
    setenv("T_KEY_B", "ck-same", 1);
    setenv("T_KEY_C", "ck-other", 1);
    expect_line(PROVIDERS "clients:\n"
                          "  - { name: a, user: u1, key_env: T_KEY_A }\n"
                          "  - { name: b, user: u2, key_env: T_KEY_A }\n",
                F ":8:35: clients[1].key_env names the same variable as client `a` (7:35); each "
                  "client needs its own key");
    expect_line(PROVIDERS "clients:\n"
                          "  - { name: a, user: u1, key_env: T_KEY_A }\n"
                          "  - { name: b, user: u2, key_env: T_KEY_B }\n",
                F ":8:35: clients[1] has the same key as client `a` (7:35); each client needs its "
                  "own key");
    assert_int_equal(count_containing("ck-same"), 0);
    /* sha256("hello"), twice, and as the hash of a key_env's value */
    setenv("T_KEY_C", "hello", 1);
    expect_line(PROVIDERS "clients:\n"
                          "  - { name: a, user: u1, key_env: T_KEY_C }\n"
                          "  - { name: b, user: u2, key_sha256: "
                          "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 }\n",
                F ":8:38: clients[1] has the same key as client `a` (7:35); each client needs its "
                  "own key");
    /* one client, two keys */
    expect_line(PROVIDERS "clients:\n"
                          "  - { name: a, user: u1, key_env: T_KEY_A, key_sha256: "
                          "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 }\n",
                F ":7:56: clients[0].key_sha256: this client already has a key (at 7:35); give "
                  "one, `key_env` or `key_sha256`");
    assert_int_equal(errs.n, 1);
    config_t *c = expect_ok(PROVIDERS "clients:\n"
                                      "  - { name: a, user: u1, key_env: T_KEY_A }\n"
                                      "  - { name: b, user: u1, key_env: T_KEY_C }\n");
    assert_int_equal(c->n_clients, 2);
    config_unref(c);
    unsetenv("T_KEY_A");
    unsetenv("T_KEY_B");
    unsetenv("T_KEY_C");
}

static void test_rollout_block(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS);
    assert_false(c->rollout.present);
    config_unref(c);
    c = expect_ok(PROVIDERS "rollout: {}\n");
    assert_true(c->rollout.present);
    assert_string_equal(c->rollout.flag, "use_new_provider");
    assert_int_equal(c->rollout.n_stages, 3);
    assert_int_equal(c->rollout.stages_bp[1], 5000);
    assert_int_equal(c->rollout.stage_min_duration_ms, 24LL * 3600000);
    assert_int_equal(c->rollout.check_interval_ms, 60000);
    assert_int_equal(c->rollout.min_requests, 500);
    assert_string_equal(c->rollout.state_file, "var/rollout.state");
    config_unref(c);
    c = expect_ok(PROVIDERS "rollout:\n  mode: manual\n  stages: [1, 12.5, 100]\n"
                            "  stage_min_duration: 90m\n  check_interval: 500ms\n"
                            "  max_stage_duration: 2h\n  min_requests: 20\n"
                            "  failure_threshold: 2\n  on_failure: step_down\n"
                            "  gates: { error_rate_increase: 0.02, confidence: 0.99, "
                            "latency_p95_ratio: 1.5, ttft_p95_ratio: 2, "
                            "cost_per_1k_tokens_ratio: 0.5 }\n"
                            "  state_file: /tmp/x.state\n  audit_log: /tmp/x.jsonl\n");
    assert_int_equal(c->rollout.mode, 1);
    assert_int_equal(c->rollout.stages_bp[1], 1250);
    assert_int_equal(c->rollout.stage_min_duration_ms, 90LL * 60000);
    assert_int_equal(c->rollout.check_interval_ms, 500);
    assert_int_equal(c->rollout.on_failure, 1);
    assert_true(c->rollout.confidence > 0.989 && c->rollout.confidence < 0.991);
    assert_true(c->rollout.ttft_p95_ratio == 2.0);
    config_unref(c);
    expect_line(PROVIDERS "rollout:\n  mode: automatic\n",
                F ":7:9: rollout.mode must be one of `auto`, `manual`, `rollback`, got `automatic`");
    expect_line(PROVIDERS "rollout:\n  stages: [10, 5]\n",
                F ":7:16: rollout.stages[1]: stages must increase, got 5 after 10");
    expect_error(PROVIDERS "rollout:\n  stage_min_duration: 24\n",
                 "must be a duration such as 30s, 15m or 24h");
    expect_error(PROVIDERS "rollout:\n  stages: [0, 50]\n", "must be a percentage above 0");
    expect_error(PROVIDERS "rollout:\n  gates: { confidence: 1.5 }\n",
                 "rollout.gates.confidence must be from 0.5 to 0.9999");
    expect_error(PROVIDERS "rollout:\n  on_failure: explode\n", "rollout.on_failure must be one of");
    expect_error(PROVIDERS "rollout:\n  flag: other\n", "rollout.flag must be `use_new_provider`");
    expect_error(PROVIDERS "rollout:\n  stage_min_duration: 5h\n  max_stage_duration: 1h\n",
                 "max_stage_duration is shorter than rollout.stage_min_duration");
    expect_error(PROVIDERS "rollout:\n  gatez: {}\n", "did you mean `gates`?");
    /* auto mode: the file's percentage is ignored, and check says so */
    c = expect_ok(PROVIDERS "flags:\n  use_new_provider: { percentage: 30 }\nrollout: {}\n");
    assert_int_equal(errs.n_warnings, 1);
    assert_non_null(strstr(errs.warnings[0], "is ignored while rollout.mode is auto"));
    config_unref(c);
}

static void test_fallback_block(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS);
    assert_int_equal(c->fallback.on, FAILURE_DEFAULT_ON);
    assert_int_equal(c->fallback.max_attempts, 2);
    assert_int_equal(c->fallback.retry_same_provider, 0);
    assert_int_equal(c->fallback.budget_percent, 20);
    assert_int_equal(c->fallback.eject_consecutive, 5);
    assert_int_equal(c->limits.client_stall_ms, 30000);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    config_unref(c);
    c = expect_ok(PROVIDERS "fallback:\n  on: [timeout_idle, upstream_4xx]\n"
                            "  retry_same_provider: 1\n  max_attempts: 3\n"
                            "  backoff: { base_ms: 10, max_ms: 50 }\n"
                            "  budget: { percent: 100, min_per_second: 0 }\n"
                            "  eject: { consecutive_failures: 0, base_ms: 200, max_ms: 400 }\n"
                            "limits: { client_stall_ms: 1500, header_timeout_ms: 2500 }\n");
    assert_int_equal(c->fallback.on,
                     FAILURE_BIT(FAIL_TIMEOUT_IDLE) | FAILURE_BIT(FAIL_UPSTREAM_4XX));
    assert_int_equal(c->fallback.retry_same_provider, 1);
    assert_int_equal(c->fallback.max_attempts, 3);
    assert_int_equal(c->fallback.backoff_base_ms, 10);
    assert_int_equal(c->fallback.backoff_max_ms, 50);
    assert_int_equal(c->fallback.budget_percent, 100);
    assert_int_equal(c->fallback.budget_min_per_second, 0);
    assert_int_equal(c->fallback.eject_consecutive, 0);
    assert_int_equal(c->limits.client_stall_ms, 1500);
    assert_int_equal(c->limits.header_timeout_ms, 2500);
    config_unref(c);
    expect_error(PROVIDERS "limits: { header_timeout_ms: 50 }\n",
                 "limits.header_timeout_ms must be from 100 to 3600000, got 50");
    expect_line(PROVIDERS "fallback:\n  on: [upstream_5xxx]\n",
                F ":7:8: fallback.on[0]: unknown failure class `upstream_5xxx` (connect_error, "
                  "timeout_connect, timeout_first_byte, timeout_idle, timeout_total, upstream_5xx, "
                  "upstream_429, upstream_4xx, protocol)");
    expect_error(PROVIDERS "fallback:\n  on: [client_closed]\n", "unknown failure class");
    expect_error(PROVIDERS "fallback:\n  on: [local_error]\n", "unknown failure class");
    expect_line(PROVIDERS "fallback:\n  max_attempts: 0\n",
                F ":7:17: fallback.max_attempts must be from 1 to 10, got 0");
    expect_error(PROVIDERS "fallback:\n  budget: { percent: 101 }\n",
                 "fallback.budget.percent must be from 0 to 100");
    expect_error(PROVIDERS "fallback:\n  backof: {}\n", "did you mean `backoff`?");
    expect_error(PROVIDERS "fallback:\n  backoff: { base_ms: 500, max_ms: 100 }\n",
                 "fallback.backoff.base_ms (500) is above fallback.backoff.max_ms (100)");
}

/* base_ms above max_ms used to be reported at 1:1; it points at the value now. */
static void test_fallback_base_max_position(void **state)
{
    (void)state;
    expect_line(PROVIDERS "fallback:\n  backoff: { base_ms: 500, max_ms: 100 }\n",
                F ":7:23: fallback.backoff.base_ms (500) is above fallback.backoff.max_ms (100)");
    assert_int_equal(errs.n, 1);
    expect_line(PROVIDERS "fallback:\n  eject:\n    max_ms: 1000\n    base_ms: 5000\n",
                F ":9:14: fallback.eject.base_ms (5000) is above fallback.eject.max_ms (1000)");
    /* only max_ms written, below the default base (30000): max_ms is the one to fix */
    expect_line(PROVIDERS "fallback:\n  eject: { max_ms: 1000 }\n",
                F ":7:20: fallback.eject.base_ms (30000) is above fallback.eject.max_ms (1000)");
    expect_line(PROVIDERS "fallback:\n  backoff: { max_ms: 50 }\n",
                F ":7:22: fallback.backoff.base_ms (100) is above fallback.backoff.max_ms (50)");
}

static void test_http_version_and_ca_file(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS);
    assert_int_equal(c->providers[0].http_version, CONFIG_HTTP_AUTO);
    assert_null(c->providers[0].ca_file);
    config_unref(c);

    char cert[] = "/tmp/sy-test-ca-XXXXXX";
    int fd = mkstemp(cert);
    assert_true(fd >= 0);
    const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert_int_equal(write(fd, pem, sizeof pem - 1), (ssize_t)(sizeof pem - 1));
    close(fd);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "providers:\n"
             "  original:\n"
             "    base_url: https://10.0.0.1/v1\n"
             "    http_version: \"2\"\n"
             "    ca_file: %s\n"
             "  new:\n"
             "    base_url: http://127.0.0.1:8102/v1\n"
             "    http_version: \"1.1\"\n",
             cert);
    c = expect_ok(yaml);
    assert_int_equal(c->providers[0].http_version, CONFIG_HTTP_2);
    assert_string_equal(c->providers[0].ca_file, cert);
    /* HTTP/2 is an opt-in with a known cost through libcurl 7.88: said at load. */
    assert_int_equal(errs.n_warnings, 1);
    assert_non_null(strstr(errs.warnings[0], ":4:19: providers.original.http_version \"2\": "
                                             "through libcurl 7.88"));
    assert_int_equal(c->providers[1].http_version, CONFIG_HTTP_1_1);
    config_unref(c);

    /* h2c would fail on the second request of a connection (curl#10634): refused. */
    expect_error(PROVIDERS "    http_version: \"2\"\n",
                 "providers.new.http_version \"2\" needs an https:// base_url");
    expect_error(PROVIDERS "    http_version: \"3\"\n",
                 "providers.new.http_version must be one of `auto`, `1.1`, `2`, got `3`");
    expect_error(PROVIDERS "    ca_file: /nonexistent/ca.pem\n",
                 "providers.new.ca_file: cannot read `/nonexistent/ca.pem`: No such file");
    /* The key instead of the certificate: caught at load, not per request. */
    fd = open(cert, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    const char key[] = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    assert_int_equal(write(fd, key, sizeof key - 1), (ssize_t)(sizeof key - 1));
    close(fd);
    snprintf(yaml, sizeof yaml, PROVIDERS "    ca_file: %s\n", cert);
    expect_error(yaml, "holds no PEM certificate");
    unlink(cert);
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_line(PROVIDERS "limits: [1, 2]\n", F ":6:9: limits must be a mapping, got a sequence");
    expect_line(PROVIDERS "    timeouts: 5\n",
                F ":6:15: providers.new.timeouts must be a mapping, got `5`");
    expect_line(PROVIDERS "    models:\n",
                F ":6:12: providers.new.models must be a mapping, got an empty value");
    expect_line(PROVIDERS "workers: {a: 1}\n", F ":6:10: workers must be a number, got a mapping");
    expect_line(PROVIDERS "flags: {use_new_provider: {percentage: 5, allow: bob}}\n",
                F ":6:50: flags.use_new_provider.allow must be a sequence (e.g. [a, b] or [] "
                  "for none), got `bob`");
    expect_line("- a\n- b\n", F ":1:1: the top level must be a mapping, got a sequence");
    expect_error(PROVIDERS "listen: [a]\n", F ":6:9: listen must be a string, got a sequence");
    /* quoted numbers are strings, consistently refused where a number is wanted */
    expect_line(PROVIDERS "workers: \"4\"\n",
                F ":6:10: workers must be a number, got the quoted string \"4\" (write numbers "
                  "without quotes)");
    expect_error(PROVIDERS "flags: {use_new_provider: {percentage: '10'}}\n",
                 "percentage must be a number, got the quoted string \"10\"");
    /* keys must be strings */
    expect_error(PROVIDERS "? [a]\n: 1\n", "keys in the top level must be strings, got a sequence");
}

static void test_integers(void **state)
{
    (void)state;
    expect_line(PROVIDERS "workers: 257\n", F ":6:10: workers must be from 0 to 256, got 257");
    expect_line(PROVIDERS "workers: -1\n", F ":6:10: workers must be from 0 to 256, got -1");
    expect_line(PROVIDERS "workers: 4x\n", F ":6:10: workers must be an integer, got `4x`");
    expect_error(PROVIDERS "workers: 1.5\n", "workers must be an integer, got `1.5`");
    expect_error(PROVIDERS "workers: 0x10\n", "workers must be an integer, got `0x10`");
    expect_error(PROVIDERS "workers: 1e2\n", "workers must be an integer, got `1e2`");
    expect_error(PROVIDERS "workers: 010\n", "workers must be an integer without leading zeros");
    expect_error(PROVIDERS "workers: 99999999999999999999999\n",
                 "workers must be from 0 to 256, got 99999999999999999999999");
    expect_error(PROVIDERS "limits: {max_body_bytes: 1023}\n",
                 "limits.max_body_bytes must be from 1024 to 1073741824, got 1023");
    expect_error(PROVIDERS "limits: {max_header_bytes: 16777217}\n",
                 "limits.max_header_bytes must be from 1024 to 16777216, got 16777217");
    expect_error(PROVIDERS "    timeouts: {connect_ms: 0}\n",
                 F ":6:28: providers.new.timeouts.connect_ms must be from 1 to 86400000, got 0");
    expect_error(PROVIDERS "    timeouts: {idle_ms: 86400001}\n",
                 "providers.new.timeouts.idle_ms must be from 1 to 86400000, got 86400001");
}

static void test_percentage(void **state)
{
    (void)state;
    expect_line(PROVIDERS "flags:\n  use_new_provider: {percentage: 12.345}\n",
                F ":7:34: flags.use_new_provider.percentage allows at most two decimals, got "
                  "12.345");
    expect_line(PROVIDERS "flags:\n  use_new_provider: {percentage: 101}\n",
                F ":7:34: flags.use_new_provider.percentage must be from 0 to 100, got 101");
    expect_error(PROVIDERS "flags:\n  use_new_provider: {percentage: 100.01}\n",
                 "must be from 0 to 100, got 100.01");
    expect_error(PROVIDERS "flags:\n  use_new_provider: {percentage: ten}\n",
                 "percentage must be a number from 0 to 100 with at most two decimals, got `ten`");
    expect_error(PROVIDERS "flags:\n  use_new_provider: {percentage: -5}\n",
                 "at most two decimals, got `-5`");
    expect_error(PROVIDERS "flags:\n  use_new_provider: {unkeyed: new}\n",
                 F ":7:21: missing required key `percentage` in flags.use_new_provider");
}

static void test_sticky_unkeyed_lists(void **state)
{
    (void)state;
    expect_line(PROVIDERS "flags:\n"
                          "  use_new_provider:\n"
                          "    percentage: 5\n"
                          "    sticky: [\"header:x-user-id\", \"cookie:sid\", api_key]\n",
                F ":9:34: flags.use_new_provider.sticky[1]: bad sticky source `cookie:sid`; "
                  "expected `header:NAME`, `body:FIELD` or `api_key`");
    expect_error(PROVIDERS "flags: {use_new_provider: {percentage: 5, sticky: [\"header:\"]}}\n",
                 "sticky[0]: bad sticky source `header:`");
    expect_line(PROVIDERS "flags: {use_new_provider: {percentage: 5, unkeyed: sometimes}}\n",
                F ":6:52: flags.use_new_provider.unkeyed must be `random`, `original` or `new`, "
                  "got `sometimes`");
    expect_error(PROVIDERS "flags: {use_new_provider: {percentage: 5, deny: [\"\"]}}\n",
                 "flags.use_new_provider.deny[0] must not be empty");
    expect_error(PROVIDERS "flags: {use_new_provider: {percentage: 5, models: [[a]]}}\n",
                 "flags.use_new_provider.models[0] must be a string, got a sequence");
    expect_error(PROVIDERS "flags: {\"bad name\": {percentage: 5}}\n",
                 "flag name `bad name` must be 1 to 64 characters");
    expect_error(PROVIDERS "flags: {use_new_provider: {percentage: 5, sticky: [api_key], "
                           "stciky: []}}\n",
                 "unknown key `stciky` in flags.use_new_provider; did you mean `sticky`?");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_line("listen: \"127.0.0.1:1\"\n" PROVIDERS "listen: \"127.0.0.1:2\"\n",
                F ":7:1: duplicate key `listen` in the top level (first at 1:1)");
    expect_line(PROVIDERS "    models:\n"
                          "      a: x\n"
                          "      b: y\n"
                          "      a: z\n"
                          "      a: w\n",
                F ":9:7: duplicate key `a` in providers.new.models (first at 7:7)");
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.lines[1],
                        F ":10:7: duplicate key `a` in providers.new.models (first at 7:7)");
    expect_error("providers:\n"
                 "  original: {base_url: \"http://a\"}\n"
                 "  new: {base_url: \"http://b\"}\n"
                 "  original: {base_url: \"http://c\"}\n",
                 F ":4:3: duplicate key `original` in providers (first at 2:3)");
}

static void test_providers_roles(void **state)
{
    (void)state;
    expect_line("providers:\n"
                "  original:\n"
                "    base_url: http://127.0.0.1:8101/v1\n",
                F ":2:3: missing required key `new` in providers");
    expect_line("listen: \"127.0.0.1:1\"\n", F ":1:1: missing required top-level key `providers`");
    expect_line(PROVIDERS "  backup:\n    base_url: http://127.0.0.1:8103/v1\n",
                F ":6:3: unknown key `backup` in providers (expected `original`, `new`)");
    expect_error(PROVIDERS "  News: {base_url: \"http://x\"}\n",
                 "unknown key `News` in providers; did you mean `new`?");
    expect_line("providers:\n  original: {}\n  new: {base_url: \"http://b\"}\n",
                F ":2:13: missing required key `base_url` in providers.original");
    /* an empty file has no providers */
    expect_line("", F ":1:1: missing required top-level key `providers`");
    expect_line("# only a comment\n", F ":1:1: missing required top-level key `providers`");
}

static void test_env_vars(void **state)
{
    (void)state;
    clear_env();
    const char *yaml = "providers:\n"
                       "  original:\n"
                       "    base_url: http://127.0.0.1:8101/v1\n"
                       "    api_key_env: ORIGINAL_API_KEY\n"
                       "  new:\n"
                       "    base_url: http://127.0.0.1:8102/v1\n"
                       "admin: {token_env: SWITCHYARD_ADMIN_TOKEN}\n";
    expect_line(yaml, F ":4:18: environment variable ORIGINAL_API_KEY "
                        "(providers.original.api_key_env) is not set");
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.lines[1], F ":7:20: environment variable SWITCHYARD_ADMIN_TOKEN "
                                         "(admin.token_env) is not set");
    setenv("ORIGINAL_API_KEY", "", 1);
    setenv("SWITCHYARD_ADMIN_TOKEN", "tok-SECRET", 1);
    expect_line(yaml, F ":4:18: environment variable ORIGINAL_API_KEY "
                        "(providers.original.api_key_env) is empty");
    assert_int_equal(errs.n, 1);
    setenv("ORIGINAL_API_KEY", "sk-SECRET", 1);
    config_t *c = expect_ok(yaml);
    assert_string_equal(c->providers[0].api_key, "sk-SECRET");
    assert_null(c->providers[1].api_key);
    assert_string_equal(c->admin.token, "tok-SECRET");
    config_unref(c);
    clear_env();

    /* a key pasted where the variable's name goes is refused and not echoed */
    expect_error(PROVIDERS "    api_key_env: sk-proj-abc123SECRET\n",
                 F ":6:18: providers.new.api_key_env must be the name of an environment "
                   "variable");
    assert_int_equal(count_containing("SECRET"), 0);
    expect_error(PROVIDERS "    api_key_env: 0123456789abcdef0123456789abcdefSECRET\n",
                 "must be the name of an environment variable");
    assert_int_equal(count_containing("SECRET"), 0);
    expect_error(PROVIDERS "    api_key_env: a0123456789abcdef0123456789abcdefSECRET\n",
                 "must be the name of an environment variable");
    assert_int_equal(count_containing("SECRET"), 0);
    /* keys shaped like a variable's name (Groq, Hugging Face, GitHub) are not
     * repeated when no such variable is set or it is empty */
    expect_line(PROVIDERS "    api_key_env: gsk_8fJ2kQx9Lm3Zr7SECRET\n",
                F ":6:18: the environment variable named in providers.new.api_key_env is not "
                  "set (its name is not repeated: it has lower case, as a key pasted there by "
                  "mistake would)");
    assert_int_equal(count_containing("SECRET"), 0);
    expect_error(PROVIDERS "    api_key_env: hf_AbCdSECRET\n", "is not set");
    assert_int_equal(count_containing("SECRET"), 0);
    setenv("ghp_SECRET", "", 1);
    expect_error(PROVIDERS "    api_key_env: ghp_SECRET\n",
                 "the environment variable named in providers.new.api_key_env is empty");
    assert_int_equal(count_containing("SECRET"), 0);
    unsetenv("ghp_SECRET");
    setenv("lower_case_name", "sk-SECRET", 1);
    config_t *lc = expect_ok(PROVIDERS "    api_key_env: lower_case_name\n");
    assert_string_equal(lc->providers[1].api_key, "sk-SECRET");
    config_unref(lc);
    unsetenv("lower_case_name");
    /* keys are never read from the file */
    expect_error(PROVIDERS "    api_key: sk-proj-abc123SECRET\n",
                 "providers.new.api_key: secrets are never read from the file; put it in an "
                 "environment variable and name that variable with `api_key_env`");
    assert_int_equal(count_containing("SECRET"), 0);
    expect_error(PROVIDERS "admin: {token: SECRET}\n", "name that variable with `token_env`");
    assert_int_equal(count_containing("SECRET"), 0);
}

static void test_provider_names(void **state)
{
    (void)state;
    expect_line("providers:\n"
                "  original: {name: same, base_url: \"http://a\"}\n"
                "  new: {name: same, base_url: \"http://b\"}\n",
                F ":3:15: providers.original and providers.new have the same name `same`; names "
                  "label metrics and logs and must differ");
    /* the default label of one role is the other's explicit name */
    expect_error("providers:\n"
                 "  original: {name: new, base_url: \"http://a\"}\n"
                 "  new: {base_url: \"http://b\"}\n",
                 F ":2:20: providers.original and providers.new have the same name `new`");
    expect_error(PROVIDERS "    name: \"has space\"\n",
                 F ":6:11: providers.new.name must be 1 to 64 characters of A-Z a-z 0-9 . _ -, "
                   "got `has space`");
}

static void test_listen(void **state)
{
    (void)state;
    expect_line(PROVIDERS "listen: \"8080\"\n",
                F ":6:9: listen must be host:port (e.g. 127.0.0.1:8080 or [::1]:8080), got "
                  "`8080`");
    expect_error(PROVIDERS "listen: \"127.0.0.1:65536\"\n",
                 "listen must end in a port from 0 to 65535, got `127.0.0.1:65536`");
    expect_error(PROVIDERS "listen: \"127.0.0.1:\"\n", "must end in a port from 0 to 65535");
    expect_error(PROVIDERS "listen: \"127.0.0.1:http\"\n", "must end in a port from 0 to 65535");
    expect_error(PROVIDERS "listen: \"::1:8080\"\n",
                 "listen: write an IPv6 address in brackets, e.g. [::1]:8080");
    expect_error(PROVIDERS "listen: \"[zz]:8080\"\n", "listen has a bad IPv6 address");
    expect_error(PROVIDERS "listen: \":8080\"\n", "listen has no host");
    expect_error(PROVIDERS "admin: {listen: \"127.0.0.1:8080\"}\n",
                 F ":6:17: admin.listen is the same address as listen (127.0.0.1:8080)");
    config_t *c = expect_ok(PROVIDERS "listen: \"localhost:65535\"\n");
    assert_string_equal(c->listen.host, "localhost");
    assert_int_equal(c->listen.port, 65535);
    config_unref(c);
    /* admin open to the network without a token: allowed, with a warning */
    c = expect_ok(PROVIDERS "admin: {listen: \"0.0.0.0:9090\"}\n");
    assert_int_equal(errs.n_warnings, 1);
    assert_non_null(strstr(errs.warnings[0], F ":6:17: admin.listen is not a loopback address"));
    config_unref(c);
}

/* `check` said ok and the router then failed to start. */
static void test_listen_start_failures(void **state)
{
    (void)state;
    /* a numeric-looking host that is not an address: not resolvable, not bindable */
    expect_line(PROVIDERS "listen: \"999.1.1.1:62210\"\n",
                F ":6:9: listen: `999.1.1.1` looks like an IPv4 address but is not one (four "
                  "numbers from 0 to 255)");
    expect_error(PROVIDERS "admin: {listen: \"10.0.1:9090\"}\n",
                 F ":6:17: admin.listen: `10.0.1` looks like an IPv4 address");
    expect_error(PROVIDERS "listen: \"127.000.0.1:8080\"\n", "looks like an IPv4 address");

    /* a wildcard takes the port on every address: a clash, whichever side has it */
    const char *const clash[][2] = {
        {"0.0.0.0:62211", "127.0.0.1:62211"}, {"127.0.0.1:62211", "0.0.0.0:62211"},
        {"[::]:62211", "127.0.0.1:62211"},    {"127.0.0.1:62211", "[::]:62211"},
        {"[::]:62211", "[::1]:62211"},        {"0.0.0.0:62211", "[::]:62211"},
        {"0.0.0.0:62211", "localhost:62211"}, {"[::1]:62211", "[0:0::1]:62211"},
    };
    char yaml[512], want[256];
    for (size_t i = 0; i < sizeof clash / sizeof *clash; i++) {
        snprintf(yaml, sizeof yaml, "listen: \"%s\"\nadmin: {listen: \"%s\"}\n" PROVIDERS,
                 clash[i][0], clash[i][1]);
        snprintf(want, sizeof want, F ":2:17: admin.listen ");
        expect_error(yaml, want);
        assert_int_equal(errs.n, 1);
    }
    expect_line("listen: \"127.0.0.1:62211\"\nadmin: {listen: \"0.0.0.0:62211\"}\n" PROVIDERS,
                F ":2:17: admin.listen (0.0.0.0) and listen (127.0.0.1) both use port 62211, and "
                  "a wildcard address takes the port on every interface: the second would fail "
                  "to bind; give them different ports");
    /* the admin block left out: its default (127.0.0.1:9090) is pointed at through listen */
    expect_error(PROVIDERS "listen: \"0.0.0.0:9090\"\n", F ":6:9: admin.listen (127.0.0.1) and "
                                                           "listen (0.0.0.0) both use port 9090");
    /* different ports, port 0, or an IPv4 wildcard beside a specific IPv6 address: fine */
    const char *const fine[][2] = {
        {"0.0.0.0:62211", "127.0.0.1:62212"},
        {"0.0.0.0:0", "127.0.0.1:0"},
        {"0.0.0.0:62211", "[::1]:62211"},
        {"127.0.0.1:62211", "127.0.0.2:62211"},
    };
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        snprintf(yaml, sizeof yaml, "listen: \"%s\"\nadmin: {listen: \"%s\"}\n" PROVIDERS,
                 fine[i][0], fine[i][1]);
        config_t *c = expect_ok(yaml);
        config_unref(c);
    }
}

/* The router creates the access log, not its folder: a missing folder stopped the start. */
static void test_access_log_folder(void **state)
{
    (void)state;
    expect_line(PROVIDERS "access_log: { path: /nonexistent-sy/logs/access.jsonl }\n",
                F ":6:21: access_log.path: folder `/nonexistent-sy/logs` does not exist "
                  "(switchyard creates the log file, not its folder)");
    expect_error(PROVIDERS "access_log: { path: \"no-such-folder-sy/access.jsonl\" }\n",
                 "folder `no-such-folder-sy` does not exist (switchyard creates the log file, "
                 "not its folder; a relative path starts where switchyard runs)");
    expect_error(PROVIDERS "access_log: { path: \"Makefile/access.jsonl\" }\n",
                 "folder `Makefile` is not a folder");
    const char *const ok[] = {"-", "/tmp/sy-access.jsonl", "sy-access.jsonl", "/sy-access.jsonl",
                              "./sy-access.jsonl"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, PROVIDERS "access_log: { path: \"%s\" }\n", ok[i]);
        config_t *c = expect_ok(yaml);
        assert_string_equal(c->access_log.path, ok[i]);
        config_unref(c);
    }
}

static void test_base_url(void **state)
{
    (void)state;
    expect_line("providers:\n"
                "  original: {base_url: \"ftp://files.example/v1\"}\n"
                "  new: {base_url: \"http://b\"}\n",
                F ":2:24: providers.original.base_url must use http:// or https://, got scheme "
                  "`ftp`");
    expect_error("providers:\n  original: {base_url: api.openai.com/v1}\n  new: "
                 "{base_url: \"http://b\"}\n",
                 "providers.original.base_url must be an absolute http:// or https:// URL");
    expect_error("providers:\n  original: {base_url: \"http:///v1\"}\n  new: "
                 "{base_url: \"http://b\"}\n",
                 "providers.original.base_url has no host");
    expect_error("providers:\n  original: {base_url: \"https://u:SECRET@h/v1\"}\n  new: "
                 "{base_url: \"http://b\"}\n",
                 "providers.original.base_url must not contain credentials");
    assert_int_equal(count_containing("SECRET"), 0);
    expect_error("providers:\n  original: {base_url: \"https://h/v1?key=SECRET\"}\n  new: "
                 "{base_url: \"http://b\"}\n",
                 "must not contain spaces, control characters, a query (?) or a fragment (#)");
    assert_int_equal(count_containing("SECRET"), 0);
}

/* A base_url naming the endpoint doubles it (.../chat/completions/chat/completions): every
 * request a 404, the client's answer, never retried. */
static void test_base_url_endpoint(void **state)
{
    (void)state;
    expect_line("providers:\n"
                "  original: {base_url: \"https://api.openai.com/v1/chat/completions\"}\n"
                "  new: {base_url: \"http://b/v1\"}\n",
                F ":2:24: providers.original.base_url must stop before the endpoint: it ends in "
                  "`/chat/completions`, which switchyard appends itself (requests would go to "
                  ".../chat/completions/chat/completions); write the API's base, e.g. "
                  "https://api.openai.com/v1");
    const char *const bad[] = {"/v1/chat/completions/", "/v1/completions", "/v1/embeddings//",
                               "/v1/responses",         "/v1/models",      "/v1/Chat/Completions"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml,
                 "providers:\n  original: {base_url: \"http://a/v1\"}\n"
                 "  new: {base_url: \"http://relay.example%s\"}\n",
                 bad[i]);
        expect_error(yaml, "providers.new.base_url must stop before the endpoint");
    }
    /* a base that merely contains such a word is fine */
    config_t *c = expect_ok("providers:\n"
                            "  original: {base_url: \"https://models.example/v1\"}\n"
                            "  new: {base_url: \"https://b.example/responses-api/v1\"}\n");
    config_unref(c);
}

/* A malformed host or port loaded and failed every request as a connect_error; libcurl's
 * URL parser, the one that sends the requests, now refuses it at load. */
static void test_base_url_host_port(void **state)
{
    (void)state;
    static const struct {
        const char *url, *want;
    } bad[] = {
        {"http://127.0.0.1:99999/v1", "has a bad port: it must be a number from 1 to 65535"},
        {"http://127.0.0.1:0/v1", "has a bad port: it must be a number from 1 to 65535"},
        {"http://:62202/v1", "has no host"},
        {"http://exa!mple,com:abc/v1", "has a bad port"},
        {"http://exa!mple,com/v1", "has a bad host name"},
        {"http://[::1/v1", "has a bad IPv6 address"},
        {"http://999.1.1.1/v1", "has a host that looks like an IPv4 address but is not one"},
        {"http://10.0.1:8080/v1", "has a host that looks like an IPv4 address"},
    };
    char yaml[256], want[160];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(yaml, sizeof yaml,
                 "providers:\n  original: {base_url: \"http://a/v1\"}\n"
                 "  new: {base_url: \"%s\"}\n",
                 bad[i].url);
        snprintf(want, sizeof want, F ":3:19: providers.new.base_url %s", bad[i].want);
        expect_error(yaml, want);
        assert_int_equal(errs.n, 1);
    }
    config_t *c = expect_ok("providers:\n"
                            "  original: {base_url: \"http://[::1]:8101/v1\"}\n"
                            "  new: {base_url: \"https://relay-1.example.com:65535/v1\"}\n");
    assert_string_equal(c->providers[0].base_url, "http://[::1]:8101/v1");
    config_unref(c);
    c = expect_ok("providers:\n"
                  "  original: {base_url: \"http://10.0.0.1/v1\"}\n"
                  "  new: {base_url: \"http://host.example.:8102\"}\n");
    config_unref(c);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_line(PROVIDERS "listen: \"127.0.0.1:8080\n",
                F ":7:1: syntax error: found unexpected end of stream (while scanning a quoted "
                  "scalar at 6:9)");
    assert_int_equal(errs.n, 1);
    expect_error("providers:\n  original: x\n   new: y\n", F ":3:7: syntax error: ");
    expect_error("a: 1\n---\nb: 2\n", F ":2:1: only one YAML document is allowed");
    expect_error("a: \"\xff\"\n", "syntax error: invalid leading UTF-8 octet");
}

/* A UTF-8 byte-order mark at the start was read as content: `---` or a misspelt key after
 * it gave a misleading syntax error. */
/* forward_headers go to both providers: a header carrying a client's key for one provider
 * reached the other on fallback. */
static void test_forward_headers_credentials(void **state)
{
    (void)state;
    expect_line(PROVIDERS "forward_headers: [x-sim-fault, X-Api-Key]\n",
                F ":6:32: forward_headers[1]: `x-api-key` looks like a credential header and is "
                  "never forwarded: forwarded headers go to both providers, so a key meant for "
                  "one would reach the other on fallback");
    assert_int_equal(errs.n, 1);
    const char *const bad[] = {"api-key",
                               "x-goog-api-key",
                               "x_api_key",
                               "anthropic-apikey",
                               "x-auth-token",
                               "x-client-secret",
                               "x-db-password",
                               "x-oauth",
                               "set-cookie",
                               "x-access-token",
                               "Proxy-Authorization-Extra"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, PROVIDERS "forward_headers: [\"%s\"]\n", bad[i]);
        expect_error(yaml, "looks like a credential header and is never forwarded");
    }
    /* the existing refusals keep their message */
    expect_line(PROVIDERS "forward_headers: [Authorization]\n",
                F ":6:19: forward_headers[0]: `authorization` is never forwarded to a provider");
    expect_error(PROVIDERS "forward_headers: [cookie]\n",
                 "`cookie` is never forwarded to a provider");
    expect_error(PROVIDERS "forward_headers: [x-forwarded-for]\n", "is never forwarded");
    config_t *c = expect_ok(PROVIDERS "forward_headers: [x-sim-fault, X-Stainless-Lang, "
                                      "x-request-source]\n");
    assert_int_equal(c->n_forward_headers, 3);
    /* by word, not by substring: these carry no credential */
    config_t *words = expect_ok(PROVIDERS "forward_headers: [x-max-tokens, Idempotency-Key, "
                                          "x-author, x-keyboard-layout]\n");
    assert_int_equal(words->n_forward_headers, 4);
    config_unref(words);
    assert_string_equal(c->forward_headers[1], "x-stainless-lang");
    config_unref(c);
}

static void test_utf8_bom(void **state)
{
    (void)state;
    config_t *c = expect_ok("\xEF\xBB\xBF---\n" PROVIDERS);
    assert_string_equal(c->providers[1].base_url, "http://127.0.0.1:8102/v1");
    config_unref(c);
    c = expect_ok("\xEF\xBB\xBF" PROVIDERS);
    config_unref(c);
    /* positions count from the first character after the mark */
    expect_line("\xEF\xBB\xBFlisen: \"127.0.0.1:1\"\n" PROVIDERS,
                F ":1:1: unknown top-level key `lisen`; did you mean `listen`?");
    assert_int_equal(errs.n, 1);
    /* only at the start: anywhere else it is still refused */
    expect_error(PROVIDERS "listen: \"127.0.0.1:1\xEF\xBB\xBF\"\n",
                 "listen must end in a port from 0 to 65535");
}

static void test_anchor_alias_tag(void **state)
{
    (void)state;
    expect_line("t: &a {connect_ms: 5}\n" PROVIDERS "    timeouts: *a\n",
                F ":7:15: alias `*a` is not supported (anchors and aliases are refused)");
    assert_int_equal(count_containing("anchor `&a` is not supported"), 1);
    /* the classic alias bomb stops at the first alias, cheaply */
    expect_error("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n", "alias `*a` is not supported");
    expect_error(PROVIDERS "workers: !!int 4\n", F ":6:10: YAML tag `tag:yaml.org,2002:int` is not "
                                                   "supported");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char yaml[512];
    size_t o = 0;
    o += (size_t)snprintf(yaml + o, sizeof yaml - o, "%s", PROVIDERS "deep: ");
    for (int i = 0; i < 40; i++)
        yaml[o++] = '[';
    for (int i = 0; i < 40; i++)
        yaml[o++] = ']';
    yaml[o++] = '\n';
    yaml[o] = '\0';
    expect_line(yaml, F ":6:38: nesting deeper than 32 levels is not allowed");
    assert_int_equal(count_containing("nesting"), 1);
    /* the top-level mapping and 31 sequences: 32 levels, accepted by the reader */
    o = 0;
    o += (size_t)snprintf(yaml + o, sizeof yaml - o, "%s", PROVIDERS "deep: ");
    for (int i = 0; i < 31; i++)
        yaml[o++] = '[';
    for (int i = 0; i < 31; i++)
        yaml[o++] = ']';
    yaml[o++] = '\n';
    yaml[o] = '\0';
    expect_error(yaml, "unknown top-level key `deep`");
    assert_int_equal(count_containing("nesting"), 0);
}

static void test_many_errors_reported(void **state)
{
    (void)state;
    clear_env();
    config_t *c = load("listen: nowhere\n"                   /* 1 */
                       "workers: 1000\n"                     /* 2 */
                       "limits: {max_body_bytes: 1}\n"       /* 3 */
                       "providers:\n"                        /* 4 */
                       "  original:\n"                       /* 5 */
                       "    base_url: ftp://x\n"             /* 6 */
                       "    api_key_env: ORIGINAL_API_KEY\n" /* 7 */
                       "    timeouts: {tmeout: 5}\n"         /* 8 */
                       "  third: {}\n"                       /* 9 */
                       "flags:\n"                            /* 10 */
                       "  use_new_provider:\n"               /* 11 */
                       "    percentage: 33.333\n"            /* 12 */
                       "    sticky: [\"nope\"]\n"            /* 13 */
                       "    unkeyed: maybe\n");              /* 14 */
    assert_null(c);
    check_format(errs.lines, errs.n);
    const char *want[] = {
        F ":1:9: listen must be host:port (e.g. 127.0.0.1:8080 or [::1]:8080), got `nowhere`",
        F ":2:10: workers must be from 0 to 256, got 1000",
        F ":3:26: limits.max_body_bytes must be from 1024 to 1073741824, got 1",
        F ":5:3: missing required key `new` in providers",
        F ":6:15: providers.original.base_url must use http:// or https://, got scheme `ftp`",
        F ":7:18: environment variable ORIGINAL_API_KEY (providers.original.api_key_env) is not "
          "set",
        F ":8:16: unknown key `tmeout` in providers.original.timeouts (expected `connect_ms`, "
          "`first_byte_ms`, `idle_ms`, `total_ms`)",
        F ":9:3: unknown key `third` in providers (expected `original`, `new`)",
        F ":12:17: flags.use_new_provider.percentage allows at most two decimals, got 33.333",
        F ":13:14: flags.use_new_provider.sticky[0]: bad sticky source `nope`; expected "
          "`header:NAME`, `body:FIELD` or `api_key`",
        F ":14:14: flags.use_new_provider.unkeyed must be `random`, `original` or `new`, got "
          "`maybe`",
    };
    size_t n_want = sizeof want / sizeof *want;
    if (errs.n != n_want)
        dump();
    assert_int_equal(errs.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(errs.lines[i], want[i]);
}

static void test_errs_null_and_buffer_name(void **state)
{
    (void)state;
    assert_null(config_load_buffer("x", "workers: [", 10, NULL));
    assert_null(config_load_buffer("x", "workers: 1000\n", 14, NULL));
    assert_null(config_load(NULL, NULL));
    config_t *c = config_load_buffer("x", PROVIDERS, strlen(PROVIDERS), NULL);
    assert_non_null(c);
    assert_string_equal(c->path, "x");
    config_unref(c);
    /* the length is honoured: nothing past len is read */
    const char *yaml = PROVIDERS "workers: 1000\n";
    c = config_load_buffer("x", yaml, strlen(PROVIDERS), NULL);
    assert_non_null(c);
    config_unref(c);
    /* errors append; config_errors_free resets */
    config_errors_free(&errs);
    assert_null(config_load_buffer("a.yaml", "x: 1\n", 5, &errs));
    assert_null(config_load_buffer("b.yaml", "x: 1\n", 5, &errs));
    assert_int_equal(errs.n, 4);
    assert_true(strncmp(errs.lines[2], "b.yaml:", 7) == 0);
    config_errors_free(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.lines);
    config_errors_free(&errs);
    config_errors_free(NULL);
}

/* A reload reported success while settings read only at start kept their old values; each
 * such setting that changed is named, so the log and the admin reply can say so. */
static void test_restart_keys(void **state)
{
    (void)state;
    const char *keys[16];
    setenv("T_SESSION_A", "secret-a", 1);
    setenv("T_SESSION_B", "secret-b", 1);
    config_t *old = expect_ok(PROVIDERS "workers: 2\n"
                                        "realtime: { session_secret_env: T_SESSION_A }\n");
    config_t *same = expect_ok(PROVIDERS "workers: 2\n"
                                         "realtime: { session_secret_env: T_SESSION_A }\n"
                                         "flags: {use_new_provider: {percentage: 50}}\n"
                                         "limits: { client_stall_ms: 500 }\n");
    assert_int_equal(config_restart_keys(old, same, keys, 16), 0);
    config_t *cur =
        expect_ok(PROVIDERS "workers: 2\n"
                            "limits: { client_timeout_ms: 5000, header_timeout_ms: 2000 }\n"
                            "realtime: { session_secret_env: T_SESSION_B }\n");
    size_t n = config_restart_keys(old, cur, keys, 16);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "limits.client_timeout_ms");
    assert_string_equal(keys[1], "limits.header_timeout_ms");
    assert_string_equal(keys[2], "realtime.session_secret_env");
    /* dropping the secret counts too (tokens would stay signed with the old one) */
    config_t *none = expect_ok(PROVIDERS "workers: 2\n");
    n = config_restart_keys(old, none, keys, 16);
    assert_int_equal(n, 1);
    assert_string_equal(keys[0], "realtime.session_secret_env");
    config_t *moved =
        expect_ok("listen: \"127.0.0.1:8081\"\nworkers: 3\n"
                  "admin: {listen: \"127.0.0.1:9091\"}\n"
                  "access_log: {path: \"-\"}\n"
                  "limits: { max_body_bytes: 2048, max_header_bytes: 2048 }\n" PROVIDERS);
    n = config_restart_keys(none, moved, keys, 16);
    assert_int_equal(n, 6);
    assert_string_equal(keys[0], "listen");
    assert_string_equal(keys[1], "workers");
    assert_string_equal(keys[2], "admin.listen");
    assert_string_equal(keys[3], "access_log.path");
    assert_string_equal(keys[4], "limits.max_body_bytes");
    assert_string_equal(keys[5], "limits.max_header_bytes");
    /* the count is whole even when keys has less room */
    assert_int_equal(config_restart_keys(none, moved, keys, 2), 6);
    config_unref(old);
    config_unref(same);
    config_unref(cur);
    config_unref(none);
    config_unref(moved);
    unsetenv("T_SESSION_A");
    unsetenv("T_SESSION_B");
}

static void test_ref_unref(void **state)
{
    (void)state;
    config_t *c = expect_ok(PROVIDERS);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_ptr_equal(config_ref(c), c);
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 3);
    config_unref(c);
    config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    /* still usable by the last holder */
    assert_string_equal(config_flag(c, "use_new_provider")->key, "use_new_provider");
    config_unref(c); /* frees: the sanitizer run checks nothing leaks */
    config_unref(NULL);
    assert_null(config_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_default_config, teardown),
        cmocka_unit_test_teardown(test_real_providers_example, teardown),
        cmocka_unit_test_teardown(test_missing_file, teardown),
        cmocka_unit_test_teardown(test_defaults, teardown),
        cmocka_unit_test_teardown(test_values_and_flag_defaults, teardown),
        cmocka_unit_test_teardown(test_explicit_sticky_and_extra_flag, teardown),
        cmocka_unit_test_teardown(test_routing_flag_missing, teardown),
        cmocka_unit_test_teardown(test_workers_warning, teardown),
        cmocka_unit_test_teardown(test_unknown_key_hint, teardown),
        cmocka_unit_test_teardown(test_fallback_block, teardown),
        cmocka_unit_test_teardown(test_fallback_base_max_position, teardown),
        cmocka_unit_test_teardown(test_http_version_and_ca_file, teardown),
        cmocka_unit_test_teardown(test_rollout_block, teardown),
        cmocka_unit_test_teardown(test_clients_cors_realtime, teardown),
        cmocka_unit_test_teardown(test_clients_empty, teardown),
        cmocka_unit_test_teardown(test_clients_keys_unique, teardown),
        cmocka_unit_test_teardown(test_wrong_types, teardown),
        cmocka_unit_test_teardown(test_integers, teardown),
        cmocka_unit_test_teardown(test_percentage, teardown),
        cmocka_unit_test_teardown(test_sticky_unkeyed_lists, teardown),
        cmocka_unit_test_teardown(test_duplicate_key, teardown),
        cmocka_unit_test_teardown(test_providers_roles, teardown),
        cmocka_unit_test_teardown(test_env_vars, teardown),
        cmocka_unit_test_teardown(test_provider_names, teardown),
        cmocka_unit_test_teardown(test_listen, teardown),
        cmocka_unit_test_teardown(test_listen_start_failures, teardown),
        cmocka_unit_test_teardown(test_access_log_folder, teardown),
        cmocka_unit_test_teardown(test_base_url, teardown),
        cmocka_unit_test_teardown(test_base_url_endpoint, teardown),
        cmocka_unit_test_teardown(test_base_url_host_port, teardown),
        cmocka_unit_test_teardown(test_yaml_syntax_error, teardown),
        cmocka_unit_test_teardown(test_forward_headers_credentials, teardown),
        cmocka_unit_test_teardown(test_key_in_clear_warning, teardown),
        cmocka_unit_test_teardown(test_contradictions_warned, teardown),
        cmocka_unit_test_teardown(test_unreachable_price_and_ping_warned, teardown),
        cmocka_unit_test_teardown(test_utf8_bom, teardown),
        cmocka_unit_test_teardown(test_anchor_alias_tag, teardown),
        cmocka_unit_test_teardown(test_deep_nesting, teardown),
        cmocka_unit_test_teardown(test_many_errors_reported, teardown),
        cmocka_unit_test_teardown(test_errs_null_and_buffer_name, teardown),
        cmocka_unit_test_teardown(test_restart_keys, teardown),
        cmocka_unit_test_teardown(test_ref_unref, teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
