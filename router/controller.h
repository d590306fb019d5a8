/*
 * controller — the rollout driver and hot reload, on the main thread's loop.
 *
 * It owns the rollout state (rollback/rollout.h: the pure state machine), ticks
 * it every check_interval with the windows of all workers, publishes the
 * effective percentage (server_t.pct_override, read by every request), persists
 * the state (write, fsync, rename) and appends one audit line per transition or
 * manual action. It also reloads the config file on SIGHUP, POST /admin/reload
 * and any save of the file (inotify on its folder, so both in-place rewrites and
 * rename-replaces are seen): the whole file is validated and swapped atomically,
 * or rejected with every FILE:LINE:COL error while the running config stays.
 *
 * Errors: controller_new returns NULL only on allocation failure; an unreadable
 * or corrupt state file is not fatal (0% new, refuses to promote until reset).
 * Functions returning JSON return malloc'd text the caller frees.
 */
#ifndef SWITCHYARD_CONTROLLER_H
#define SWITCHYARD_CONTROLLER_H

#include <event2/event.h>

#include "server.h"

typedef struct controller controller_t;

controller_t *controller_new(struct event_base *base, server_t *srv, const char *config_path);
void controller_free(controller_t *c);

/* Reloads the config file. Returns 0 or -1 (the file was refused; the running config stays).
 * When reply_json is not NULL it gets the admin reply: {"reloaded":true,"restart_needed":
 * [keys]} (settings read only at start whose value differs from the one the process started
 * with, each also logged as event=reload_needs_restart: they apply after a restart) or
 * {"reloaded":false,"errors":[FILE:LINE:COL lines]}; NULL on out of memory.
 * who: "sighup", "admin", "watch". */
int controller_reload(controller_t *c, const char *who, char **reply_json);

/* GET /admin/rollout */
char *controller_status_json(controller_t *c);

/* POST /admin/rollout/{promote|rollback|pause|resume|reset}. Returns the HTTP status and
 * a JSON body: 200 with the new status, 409 when refused (with the reason), 404 for an
 * unknown action or when no rollout is configured, 500 when the action took effect in
 * memory but the state file could not be written ({"error", "applied": true, "saved":
 * false, "rollout": status}: a restart would load the previous state). */
int controller_action(controller_t *c, const char *action, const char *who, char **json);

/* PUT /admin/flags/{name} {"percentage": p}. Same return convention; 409 also when the
 * percentage would have no effect (the file says 0, or a manual rollout is rolled back or
 * its state unreadable): nothing is set or audited then. */
int controller_set_percentage(controller_t *c, const char *flag, const char *body, size_t len,
                              const char *who, char **json);

#endif
