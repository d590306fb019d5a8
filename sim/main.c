/*
 * switchyard-sim — a simulated OpenAI-compatible provider for the demo, the
 * integration tests (fault injection) and the benchmarks (as the upstream).
 *
 * This file is the command line, process setup (file-descriptor limit,
 * signals) and the event loop; the HTTP side is server.c. Run with --help for
 * the options; sim/README.md describes endpoints and faults.
 */
#include "h2.h"
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fputs("usage: switchyard-sim [options]\n"
          "  --port N          listen port (default 8101; 0 = any free port)\n"
          "  --host H          listen address (default 127.0.0.1)\n"
          "  --name NAME       provider name for x-sim-provider (default sim)\n"
          "  --api-key KEY     require 'Authorization: Bearer KEY' on /v1\n"
          "  --latency-ms N    delay before the response headers (default 0)\n"
          "  --ttft-ms N       streams: headers to first content chunk (default 0)\n"
          "  --chunk-ms N      streams: between content chunks (default 0: all at once)\n"
          "  --chunks N        content pieces per answer (default 8)\n"
          "  --error-rate F    share of /v1 requests that fail, 0..1 (default 0)\n"
          "  --error-status S  their status: 500, 502, 503 or 429 (default 503)\n"
          "  --seed N          makes content, failures and ids reproducible (default 1)\n"
          "  --max-conns N     stop accepting above N open connections (default: no limit)\n"
          "  --quiet           no startup summary on stderr\n"
          "  --h2-port N       also serve /v1 over HTTP/2 on TLS on port N (0 = any free\n"
          "                    port); needs --tls-cert and --tls-key; x-sim-fault is\n"
          "                    HTTP/1.1 only\n"
          "  --tls-cert FILE   PEM certificate chain for --h2-port\n"
          "  --tls-key FILE    PEM private key for --h2-port\n"
          "  --h2-end-frame    end HTTP/2 answers with an empty DATA frame (as many proxies\n"
          "                    do) instead of flagging the last DATA frame\n"
          "  --h2-max-streams N  streams a client may open on one HTTP/2 connection\n"
          "                    (SETTINGS_MAX_CONCURRENT_STREAMS; default 128)\n"
          "  --help\n",
          f);
}

/* Whole-string integer in [lo, hi]. */
static int parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "switchyard-sim: %s wants an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* Returns 0, 1 for --help, -1 on a bad command line. */
typedef struct {
    int port; /* -1 = no HTTP/2 listener */
    const char *cert, *key;
} h2_opts_t;

static int parse_args(int argc, char **argv, sim_config_t *cfg, h2_opts_t *h2)
{
    enum {
        O_PORT = 256,
        O_HOST,
        O_NAME,
        O_KEY,
        O_LAT,
        O_TTFT,
        O_CHUNK_MS,
        O_CHUNKS,
        O_RATE,
        O_STATUS,
        O_SEED,
        O_MAXC,
        O_QUIET,
        O_H2PORT,
        O_CERT,
        O_TLSKEY,
        O_END_FRAME,
        O_MAX_STREAMS,
        O_HELP
    };
    static const struct option opts[] = {
        {"port", required_argument, NULL, O_PORT},
        {"host", required_argument, NULL, O_HOST},
        {"name", required_argument, NULL, O_NAME},
        {"api-key", required_argument, NULL, O_KEY},
        {"latency-ms", required_argument, NULL, O_LAT},
        {"ttft-ms", required_argument, NULL, O_TTFT},
        {"chunk-ms", required_argument, NULL, O_CHUNK_MS},
        {"chunks", required_argument, NULL, O_CHUNKS},
        {"error-rate", required_argument, NULL, O_RATE},
        {"error-status", required_argument, NULL, O_STATUS},
        {"seed", required_argument, NULL, O_SEED},
        {"max-conns", required_argument, NULL, O_MAXC},
        {"quiet", no_argument, NULL, O_QUIET},
        {"h2-port", required_argument, NULL, O_H2PORT},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_TLSKEY},
        {"h2-end-frame", no_argument, NULL, O_END_FRAME},
        {"h2-max-streams", required_argument, NULL, O_MAX_STREAMS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    long v;

    memset(cfg, 0, sizeof(*cfg));
    cfg->h2_max_streams = 128; /* as nginx announces by default */
    cfg->host = "127.0.0.1";
    cfg->port = 8101;
    cfg->name = "sim";
    cfg->chunks = 8;
    cfg->error_status = 503;
    cfg->seed = 1;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_PORT:
            if (parse_long("--port", optarg, 0, 65535, &v) < 0)
                return -1;
            cfg->port = (int)v;
            break;
        case O_HOST:
            cfg->host = optarg;
            break;
        case O_NAME:
            if (!valid_name(optarg)) {
                fprintf(stderr, "switchyard-sim: --name wants 1..64 of [A-Za-z0-9._-]\n");
                return -1;
            }
            cfg->name = optarg;
            break;
        case O_KEY:
            if (!*optarg || strchr(optarg, '\r') || strchr(optarg, '\n')) {
                fprintf(stderr, "switchyard-sim: --api-key must be a non-empty single line\n");
                return -1;
            }
            cfg->api_key = optarg;
            break;
        case O_LAT:
            if (parse_long("--latency-ms", optarg, 0, 3600000, &cfg->latency_ms) < 0)
                return -1;
            break;
        case O_TTFT:
            if (parse_long("--ttft-ms", optarg, 0, 3600000, &cfg->ttft_ms) < 0)
                return -1;
            break;
        case O_CHUNK_MS:
            if (parse_long("--chunk-ms", optarg, 0, 3600000, &cfg->chunk_ms) < 0)
                return -1;
            break;
        case O_CHUNKS:
            if (parse_long("--chunks", optarg, 0, 100000, &cfg->chunks) < 0)
                return -1;
            break;
        case O_RATE: {
            char *end;
            double d;
            errno = 0;
            d = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(d >= 0.0 && d <= 1.0)) {
                fprintf(stderr, "switchyard-sim: --error-rate wants a number in 0..1, got '%s'\n",
                        optarg);
                return -1;
            }
            cfg->error_rate = d;
            break;
        }
        case O_STATUS:
            if (parse_long("--error-status", optarg, 400, 599, &v) < 0)
                return -1;
            if (v != 500 && v != 502 && v != 503 && v != 429) {
                fprintf(stderr, "switchyard-sim: --error-status is one of 500, 502, 503, 429\n");
                return -1;
            }
            cfg->error_status = (int)v;
            break;
        case O_SEED: {
            char *end;
            unsigned long long s;
            errno = 0;
            s = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "switchyard-sim: --seed wants an unsigned integer, got '%s'\n",
                        optarg);
                return -1;
            }
            cfg->seed = s;
            break;
        }
        case O_MAXC:
            if (parse_long("--max-conns", optarg, 0, 100000000, &cfg->max_conns) < 0)
                return -1;
            break;
        case O_QUIET:
            cfg->quiet = 1;
            break;
        case O_H2PORT:
            if (parse_long("--h2-port", optarg, 0, 65535, &v) < 0)
                return -1;
            h2->port = (int)v;
            break;
        case O_CERT:
            h2->cert = optarg;
            break;
        case O_TLSKEY:
            h2->key = optarg;
            break;
        case O_END_FRAME:
            cfg->h2_end_frame = 1;
            break;
        case O_MAX_STREAMS:
            if (parse_long("--h2-max-streams", optarg, 1, 1000000, &cfg->h2_max_streams) < 0)
                return -1;
            break;
        case O_HELP:
            return 1;
        default:
            fprintf(stderr, "switchyard-sim: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "switchyard-sim: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    int want_h2 = h2->port >= 0;
    if (want_h2 != (h2->cert != NULL) || want_h2 != (h2->key != NULL)) {
        fprintf(stderr, "switchyard-sim: --h2-port, --tls-cert and --tls-key go together\n");
        return -1;
    }
    return 0;
}

/* Benchmarks hold 10,000+ connections; the soft limit is often 1024. */
static void raise_nofile(int quiet)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && !quiet)
        fprintf(stderr, "switchyard-sim: cannot raise RLIMIT_NOFILE: %s\n", strerror(errno));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    sim_config_t cfg;
    struct event_base *base;
    struct event *sigterm, *sigint;
    sim_server_t *srv;
    char err[256];
    h2_opts_t h2o = {-1, NULL, NULL};
    sim_h2_t *h2 = NULL;
    int rc = parse_args(argc, argv, &cfg, &h2o);

    if (rc > 0) {
        usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fputs("switchyard-sim: see --help for the options\n", stderr);
        return 2;
    }
    /* A peer that vanishes mid-write must be an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg.quiet);

    base = event_base_new();
    if (!base) {
        fprintf(stderr, "switchyard-sim: cannot create the event loop\n");
        return 1;
    }
    srv = sim_server_new(base, &cfg, err, sizeof(err));
    if (!srv) {
        fprintf(stderr, "switchyard-sim: %s\n", err);
        event_base_free(base);
        libevent_global_shutdown();
        return 1;
    }
    if (h2o.port >= 0) {
        h2 = sim_h2_new(base, &cfg, h2o.port, h2o.cert, h2o.key, err, sizeof(err));
        if (!h2) {
            fprintf(stderr, "switchyard-sim: --h2-port: %s\n", err);
            sim_server_free(srv);
            event_base_free(base);
            libevent_global_shutdown();
            return 1;
        }
        sim_server_set_h2(srv, h2);
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 || evsignal_add(sigint, NULL) < 0) {
        fprintf(stderr, "switchyard-sim: cannot install signal handlers\n");
        rc = 1;
        goto out;
    }

    if (strchr(cfg.host, ':'))
        printf("switchyard-sim %s listening on [%s]:%d\n", cfg.name, cfg.host,
               sim_server_port(srv));
    else
        printf("switchyard-sim %s listening on %s:%d\n", cfg.name, cfg.host, sim_server_port(srv));
    if (h2)
        printf("switchyard-sim %s h2 on %s:%d\n", cfg.name, cfg.host, sim_h2_port(h2));
    fflush(stdout);
    if (!cfg.quiet)
        fprintf(stderr,
                "switchyard-sim: name=%s latency_ms=%ld ttft_ms=%ld chunk_ms=%ld chunks=%ld "
                "error_rate=%g error_status=%d seed=%llu auth=%s max_conns=%ld\n",
                cfg.name, cfg.latency_ms, cfg.ttft_ms, cfg.chunk_ms, cfg.chunks, cfg.error_rate,
                cfg.error_status, (unsigned long long)cfg.seed, cfg.api_key ? "on" : "off",
                cfg.max_conns);

    rc = event_base_dispatch(base) < 0 ? 1 : 0;

out:
    sim_h2_free(h2);
    sim_server_free(srv);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    event_base_free(base);
    libevent_global_shutdown();
    return rc;
}
