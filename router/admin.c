/* admin — admin listener routes. See admin.h. */
#include "admin.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#include "httputil.h"
#include "log.h"
#include "ofrep.h"

#define OFREP_PREFIX "/ofrep/v1/evaluate/flags"

struct admin {
    struct evhttp *http;
    server_t *srv;
    controller_t *ctl;
    int port;
};

static int authorized(struct evhttp_request *req, const config_t *cfg)
{
    if (!cfg->admin.token)
        return 1;
    const char *given = http_bearer(evhttp_request_get_input_headers(req));
    return given && http_secret_equal(given, cfg->admin.token);
}

static char *body_copy(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *b = malloc(*len + 1);
    if (b) {
        evbuffer_copyout(in, b, *len);
        b[*len] = '\0';
    }
    return b;
}

static void handle_ofrep(admin_t *a, struct evhttp_request *req, const config_t *cfg,
                         const char *rest)
{
    size_t len;
    char *body = body_copy(req, &len);
    char *out = NULL;
    int status;
    if (!body) {
        http_reply_error(req, 500, "server_error", NULL, "out of memory");
        return;
    }
    /* The flags as requests see them now: the routing flag at its effective percentage.
     * Every flag: a fixed table cut the list at 64, routing flag included. */
    size_t n_defs = cfg->n_flags;
    const flag_def_t **defs = calloc(n_defs ? n_defs : 1, sizeof(*defs));
    flag_def_t scratch;
    if (!defs) {
        free(body);
        http_reply_error(req, 500, "server_error", NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n_defs; i++)
        defs[i] = strcmp(cfg->flags[i]->key, "use_new_provider") == 0
                      ? server_routing_flag(a->srv, cfg->flags[i], &scratch)
                      : cfg->flags[i];
    const flag_def_t *const *flags = defs;
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        status = ofrep_evaluate_bulk(flags, n_defs, body, len, &out);
    } else {
        char *key = evhttp_uridecode(rest + 1, 0, NULL);
        status = key ? ofrep_evaluate_one(flags, n_defs, key, body, len, &out) : 500;
        free(key);
    }
    free(body);
    free(defs);
    http_reply_json(req, status, out ? out : "{\"errorCode\":\"GENERAL\"}");
    free(out);
}

static void reply_owned(struct evhttp_request *req, int status, char *json)
{
    http_reply_json(req, status, json ? json : "{\"error\":\"out of memory\"}");
    free(json);
}

/* /admin/rollout, /admin/rollout/{action}, /admin/flags/{name}, /admin/reload */
static void handle_admin(admin_t *a, struct evhttp_request *req, const char *rest,
                         enum evhttp_cmd_type m)
{
    char *json = NULL;
    if (!a->ctl) {
        http_reply_error(req, 404, "invalid_request_error", "unknown_url", "Unknown admin endpoint.");
        return;
    }
    if (strcmp(rest, "rollout") == 0 && m == EVHTTP_REQ_GET) {
        reply_owned(req, 200, controller_status_json(a->ctl));
    } else if (strncmp(rest, "rollout/", 8) == 0 && m == EVHTTP_REQ_POST) {
        int status = controller_action(a->ctl, rest + 8, "admin", &json);
        reply_owned(req, status, json);
    } else if (strncmp(rest, "flags/", 6) == 0 && m == EVHTTP_REQ_PUT) {
        size_t len;
        char *body = body_copy(req, &len);
        char *name = evhttp_uridecode(rest + 6, 0, NULL);
        int status = body && name ? controller_set_percentage(a->ctl, name, body, len, "admin",
                                                              &json)
                                  : 500;
        free(body);
        free(name);
        reply_owned(req, status, json);
    } else if (strcmp(rest, "reload") == 0 && m == EVHTTP_REQ_POST) {
        int status = controller_reload(a->ctl, "admin", &json) == 0 ? 200 : 400;
        reply_owned(req, status, json);
    } else {
        http_reply_error(req, 404, "invalid_request_error", "unknown_url",
                         "Unknown admin endpoint or method.");
    }
}

static void handle(struct evhttp_request *req, void *arg)
{
    admin_t *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (!path)
        path = "/";
    config_t *cfg = server_config_get(a->srv);
    /* With a token configured every admin call needs it, health included: the main
     * listener's /healthz is the unauthenticated one for load balancers. */
    if (!authorized(req, cfg)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        http_reply_error(req, 401, "invalid_request_error", "unauthorized",
                         "The admin API needs a valid bearer token.");
    } else if (strcmp(path, "/healthz") == 0) {
        if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
            http_reply_json(req, 200, "{\"status\":\"ok\"}");
        else
            http_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                             "Only GET is allowed on /healthz.");
    } else if (strncmp(path, "/admin/", 7) == 0) {
        handle_admin(a, req, path + 7, m);
    } else if (strcmp(path, "/metrics") == 0) {
        if (m != EVHTTP_REQ_GET) {
            http_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                             "Only GET is allowed on /metrics.");
        } else {
            char *text = server_metrics_text(a->srv);
            struct evbuffer *b = evbuffer_new();
            if (text && b) {
                evbuffer_add(b, text, strlen(text));
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                                  "text/plain; version=0.0.4; charset=utf-8");
                evhttp_send_reply(req, 200, "OK", b);
            } else {
                http_reply_error(req, 500, "server_error", NULL, "out of memory");
            }
            if (b)
                evbuffer_free(b);
            free(text);
        }
    } else if (strncmp(path, OFREP_PREFIX, strlen(OFREP_PREFIX)) == 0 &&
               (path[strlen(OFREP_PREFIX)] == '\0' || path[strlen(OFREP_PREFIX)] == '/')) {
        if (m != EVHTTP_REQ_POST)
            http_reply_error(req, 405, "invalid_request_error", "method_not_allowed",
                             "OFREP evaluation takes POST.");
        else
            handle_ofrep(a, req, cfg, path + strlen(OFREP_PREFIX));
    } else {
        http_reply_error(req, 404, "invalid_request_error", "unknown_url",
                         "Unknown admin endpoint.");
    }
    config_unref(cfg);
}

admin_t *admin_start(struct event_base *base, server_t *srv, controller_t *ctl,
                     const config_t *cfg)
{
    admin_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->srv = srv;
    a->ctl = ctl;
    a->http = evhttp_new(base);
    if (!a->http) {
        free(a);
        return NULL;
    }
    evhttp_set_max_body_size(a->http, 1 << 20);
    evhttp_set_timeout(a->http, 30);
    evhttp_set_default_content_type(a->http, NULL);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(a->http, handle, a);
    struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(
        a->http, cfg->admin.listen.host, (ev_uint16_t)cfg->admin.listen.port);
    if (!b) {
        log_error("event=admin_listen_failed addr=%s:%d error=\"%s\"", cfg->admin.listen.host,
                  cfg->admin.listen.port, strerror(errno));
        admin_free(a);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    a->port = cfg->admin.listen.port;
    if (getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &len) == 0)
        a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return a;
}

int admin_port(const admin_t *a)
{
    return a->port;
}

void admin_free(admin_t *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
