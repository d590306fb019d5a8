/*
 * switchyard — command line.
 *
 *   switchyard [-c FILE]          run the router (default configs/switchyard.yaml)
 *   switchyard check -c FILE      validate a config; every problem as FILE:LINE:COL
 *
 * Process-wide state (libcurl, libevent threading, signals) lives here only.
 */
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "admin.h"
#include "controller.h"
#include "config.h"
#include "curlmem.h"
#include "log.h"
#include "report.h"
#include "server.h"
#include "upstream.h"

#define DEFAULT_CONFIG "configs/switchyard.yaml"
#define VERSION "0.1.0"
#define DRAIN_MS 10000

static void usage(FILE *to)
{
    fprintf(to, "usage: switchyard [-c FILE]           run the router (default %s)\n"
                "       switchyard check [-c FILE]     validate a config file\n"
                "       switchyard report [-c FILE] [--since T] [--until T]\n"
                "                         [--format table|markdown|json|csv] LOG...\n"
                "       switchyard --version\n",
            DEFAULT_CONFIG);
}

static config_t *load_or_report(const char *path)
{
    config_errors_t errs = {0};
    config_t *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.n_warnings; i++)
        fprintf(stderr, "%s (warning)\n", errs.warnings[i]);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    return cfg;
}

static int cmd_check(const char *path)
{
    config_t *cfg = load_or_report(path);
    if (!cfg)
        return 1;
    printf("%s: ok (%d workers, providers %s and %s, %zu flag%s)\n", path, cfg->workers,
           cfg->providers[CONFIG_ROLE_ORIGINAL].name, cfg->providers[CONFIG_ROLE_NEW].name,
           cfg->n_flags, cfg->n_flags == 1 ? "" : "s");
    config_unref(cfg);
    return 0;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("event=stopping signal=%d", (int)sig);
    event_base_loopexit(arg, NULL);
}

static void on_reopen_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    server_t *srv = arg;
    if (srv->alog && accesslog_reopen(srv->alog) < 0)
        log_error("event=access_log_reopen_failed path=%s", srv->alog->path);
    else if (srv->alog)
        log_info("event=access_log_reopened path=%s", srv->alog->path ? srv->alog->path : "-");
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    controller_reload(arg, "sighup", NULL);
}

static int cmd_run(const char *path)
{
    config_t *cfg = load_or_report(path);
    if (!cfg)
        return 1;
    struct event_base *base = event_base_new();
    server_t *srv = base ? server_start(cfg) : NULL;
    if (!srv) {
        if (base)
            event_base_free(base);
        config_unref(cfg);
        return 1;
    }
    controller_t *ctl = controller_new(base, srv, path);
    admin_t *admin = ctl ? admin_start(base, srv, ctl, cfg) : NULL;
    if (!admin) {
        controller_free(ctl);
        server_stop(srv, 0);
        event_base_free(base);
        config_unref(cfg);
        return 1;
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_stop_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_stop_signal, base);
    struct event *sigusr1 = evsignal_new(base, SIGUSR1, on_reopen_signal, srv);
    struct event *sighup = evsignal_new(base, SIGHUP, on_reload_signal, ctl);
    event_add(sighup, NULL);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_add(sigusr1, NULL);
    log_info("event=listening addr=%s:%d admin=%s:%d workers=%d original=%s new=%s",
             cfg->listen.host, srv->listen_port, cfg->admin.listen.host, admin_port(admin),
             srv->n_workers, cfg->providers[CONFIG_ROLE_ORIGINAL].name,
             cfg->providers[CONFIG_ROLE_NEW].name);
    config_unref(cfg);

    event_base_dispatch(base);

    admin_free(admin);
    controller_free(ctl);
    server_stop(srv, DRAIN_MS);
    event_free(sigint);
    event_free(sigterm);
    event_free(sigusr1);
    event_free(sighup);
    event_base_free(base);
    log_info("event=stopped");
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    int check = 0;
    if (argc > 1 && strcmp(argv[1], "report") == 0) {
        setlocale(LC_ALL, "C");
        return report_main(argc - 1, argv + 1);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "check") == 0 && i == 1) {
            check = 1;
        } else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
                   i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("switchyard %s\n", VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "switchyard: unexpected argument `%s`\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* cJSON and our own number formatting assume the C locale. */
    setlocale(LC_ALL, "C");
    if (check)
        return cmd_check(path);

    signal(SIGPIPE, SIG_IGN);
    /* Every client and every upstream connection is a descriptor: take what is allowed. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    size_t exact[] = {upstream_stream_buffer_bytes(), upstream_body_buffer_bytes()};
    if (curlmem_init(CURL_GLOBAL_DEFAULT, exact, 2) != CURLE_OK) {
        fprintf(stderr, "switchyard: libcurl failed to initialise\n");
        return 1;
    }
    evthread_use_pthreads();
    int rc = cmd_run(path);
    curl_global_cleanup();
    libevent_global_shutdown();
    return rc;
}
