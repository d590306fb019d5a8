/*
 * admin — the admin listener: health, OFREP flag evaluation (later: metrics,
 * rollout control, reload). Runs on the main thread's event loop, apart from
 * the workers, so admin traffic never competes with proxied requests.
 *
 * When the config names admin.token_env, every call (health included) needs
 * `Authorization: Bearer <token>` (compared in constant time), else 401.
 * admin_start returns NULL after logging why (e.g. the port is taken).
 */
#ifndef SWITCHYARD_ADMIN_H
#define SWITCHYARD_ADMIN_H

#include <event2/event.h>

#include "controller.h"
#include "server.h"

typedef struct admin admin_t;

/* ctl may be NULL (no rollout endpoints). */
admin_t *admin_start(struct event_base *base, server_t *srv, controller_t *ctl,
                     const config_t *cfg);
int admin_port(const admin_t *a); /* the port actually bound */
void admin_free(admin_t *a);

#endif
