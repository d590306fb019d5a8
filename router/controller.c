/* controller — rollout driver and hot reload. See controller.h. */
#include "controller.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "rollout.h"

#define MAX_DECISIONS 16
#define COLLECT_POLL_MS 5
#define COLLECT_GIVE_UP_MS 2000
#define WATCH_DEBOUNCE_MS 50

struct controller {
    struct event_base *base;
    server_t *srv;
    char *config_path;
    config_t *started; /* the config the server started with: what start-only settings use */

    int active; /* the config has a rollout block */
    rollout_policy_t pol;
    rollout_state_t st;
    char state_note[768]; /* where the state comes from or why it is not used, for the admin API */
    char *state_path;     /* the state file the running state belongs to */
    char save_error[512]; /* why the last state write failed */

    int manual_bp; /* manual mode / no rollout: an admin's percentage, -1 = the file's */
    int file_bp;   /* the routing flag's percentage in the file */

    struct event *tick;
    struct event *collect;
    unsigned gen;
    long long collect_started;
    window_t merged;
    int have_check;
    rollout_check_t last_check;
    long long stale_warned; /* stage start whose stale-window hold was logged */

    char *decisions[MAX_DECISIONS]; /* recent audit lines, oldest first */
    int n_decisions;

    int inotify_fd;
    struct event *watch_ev;
    struct event *debounce;
    char *watch_name;
};

/* ---- policy and percentage ------------------------------------------------------- */

static void policy_from_config(rollout_policy_t *p, const config_rollout_t *r)
{
    memset(p, 0, sizeof(*p));
    p->mode = (rollout_mode_t)r->mode;
    p->n_stages = r->n_stages;
    for (int i = 0; i < r->n_stages && i < ROLLOUT_MAX_STAGES; i++)
        p->stages_bp[i] = r->stages_bp[i];
    p->stage_min_duration_ms = r->stage_min_duration_ms;
    p->check_interval_ms = r->check_interval_ms;
    p->max_stage_duration_ms = r->max_stage_duration_ms;
    p->min_requests = (uint64_t)r->min_requests;
    p->failure_threshold = (int)r->failure_threshold;
    p->error_rate_increase = r->error_rate_increase;
    p->confidence = r->confidence;
    p->latency_p95_ratio = r->latency_p95_ratio;
    p->ttft_p95_ratio = r->ttft_p95_ratio;
    p->cost_per_1k_tokens_ratio = r->cost_per_1k_tokens_ratio;
    p->latency_min_diff_ms = r->latency_min_difference_ms;
    p->on_failure = (rollout_on_failure_t)r->on_failure;
}

/* The routing flag's percentage as written in the file, or -1 when not written. */
static int file_percentage(const config_t *cfg)
{
    const flag_def_t *f = config_flag(cfg, "use_new_provider");
    return f && cfg->routing_percentage_set ? (int)f->percentage_bp : -1;
}

/* What every request uses from now on. */
static int effective_bp(const controller_t *c)
{
    if (c->file_bp == 0)
        return 0; /* `percentage: 0` written in the file is a rollback, whatever else says */
    if (!c->active)
        return c->manual_bp;
    if (c->pol.mode == ROLLOUT_MODE_ROLLBACK)
        return 0;
    if (c->pol.mode == ROLLOUT_MODE_MANUAL) {
        if (c->st.corrupt || c->st.phase == ROLLOUT_ROLLED_BACK)
            return 0;
        return c->manual_bp;
    }
    return (int)rollout_percentage_bp(&c->st, &c->pol);
}

static void publish(controller_t *c)
{
    int bp = effective_bp(c);
    int old = atomic_exchange_explicit(&c->srv->pct_override, bp, memory_order_release);
    double file = c->file_bp < 0 ? 0 : c->file_bp / 100.0;
    if (old != bp)
        log_info("event=percentage_changed flag=use_new_provider from=%s%g to=%s%g",
                 old < 0 ? "file:" : "", old < 0 ? file : old / 100.0, bp < 0 ? "file:" : "",
                 bp < 0 ? file : bp / 100.0);
}

/* ---- persistence ----------------------------------------------------------------- */

static int mkdirs_for(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* write, fsync, rename, fsync the folder: a crash leaves the old state or the new. On
 * failure c->save_error says which step failed and why, for the log and the admin reply. */
static int persist_to(controller_t *c, const char *path)
{
    char buf[4096], tmp[PATH_MAX];
    const char *step = "serialize";
    int err = 0;
    int n = rollout_state_serialize(&c->st, buf, sizeof(buf));
    if (n < 0)
        goto fail;
    step = "create the folder of";
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        err = ENAMETOOLONG;
        goto fail;
    }
    if (mkdirs_for(path) < 0) {
        err = errno;
        goto fail;
    }
    step = "open";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        err = errno;
        goto fail;
    }
    step = "write";
    ssize_t w = write(fd, buf, (size_t)n);
    if (w != n || fsync(fd) < 0) {
        err = w >= 0 && w != n ? ENOSPC : errno; /* a short write: the disk is full */
        close(fd);
        unlink(tmp);
        goto fail;
    }
    close(fd);
    step = "rename onto";
    if (rename(tmp, path) < 0) {
        err = errno;
        unlink(tmp);
        goto fail;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    snprintf(c->save_error, sizeof(c->save_error), "cannot %s %s: %s", step, path,
             err ? strerror(err) : "the state does not serialize");
    log_error("event=rollout_state_write_failed path=%s error=\"%s\"", path, c->save_error);
    return -1;
}

static int persist(controller_t *c)
{
    return persist_to(c, c->srv->cfg->rollout.state_file);
}

/* A stage that starts in the future would hold every check until the clock caught up. */
static void clamp_clock(controller_t *c, long long now)
{
    long long started = c->st.stage_started_ms;
    if (!rollout_state_clamp_clock(&c->st, now))
        return;
    log_warn("event=rollout_state_clock_ahead path=%s stage_started_ms=%lld now_ms=%lld "
             "ahead_ms=%lld action=\"stage start set to now\"",
             c->srv->cfg->rollout.state_file, started, now, started - now);
    persist(c);
}

/* An admin's percentage: in manual mode it is kept in the state file, so a restart keeps
 * it while the file's percentage is the one it replaced (with no rollout block there is
 * no state file, and it lasts until the restart). */
static void set_manual(controller_t *c, int bp)
{
    c->manual_bp = bp;
    c->st.manual_bp = bp;
    c->st.manual_file_bp = c->file_bp < 0 ? -1 : c->file_bp;
}

static void load_state(controller_t *c)
{
    const char *path = c->srv->cfg->rollout.state_file;
    long long now = wall_ms();
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT) {
            rollout_state_init(&c->st, &c->pol, now);
            snprintf(c->state_note, sizeof(c->state_note), "fresh rollout (no state file)");
            log_info("event=rollout_fresh stage_percentage=%g",
                     rollout_percentage_bp(&c->st, &c->pol) / 100.0);
            persist(c);
            return;
        }
        snprintf(c->state_note, sizeof(c->state_note), "state file unreadable: %s",
                 strerror(errno));
    } else {
        char buf[8192];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        int complete = feof(f) && !ferror(f);
        fclose(f);
        buf[n] = '\0';
        if (complete && rollout_state_parse(buf, n, &c->st) == 0) {
            snprintf(c->state_note, sizeof(c->state_note), "resumed from %s", path);
            log_info("event=rollout_resumed phase=%s stage=%d percentage=%g",
                     rollout_phase_name(c->st.phase), c->st.stage,
                     rollout_percentage_bp(&c->st, &c->pol) / 100.0);
            clamp_clock(c, now);
            return;
        }
        snprintf(c->state_note, sizeof(c->state_note), "state file corrupt");
    }
    /* Unknown state: the only safe percentage is 0, and nobody promotes until reset. */
    rollout_state_corrupt(&c->st, now, c->state_note);
    log_error("event=rollout_state_corrupt path=%s note=\"%s\" percentage=0", path,
              c->state_note);
}

static void audit(controller_t *c, const rollout_decision_t *d, const rollout_check_t *chk,
                  const char *who)
{
    char line[8192];
    long long now = wall_ms();
    int n = rollout_audit_line(d, chk, who, now, line, sizeof(line) - 1);
    if (n < 0)
        return;
    line[n] = '\n';
    const char *path = c->srv->cfg->rollout.audit_log;
    if (mkdirs_for(path) == 0) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd >= 0) {
            if (write(fd, line, (size_t)n + 1) != n + 1)
                log_error("event=audit_write_failed path=%s", path);
            close(fd);
        } else {
            log_error("event=audit_open_failed path=%s error=\"%s\"", path, strerror(errno));
        }
    }
    line[n] = '\0';
    if (c->n_decisions == MAX_DECISIONS) {
        free(c->decisions[0]);
        memmove(c->decisions, c->decisions + 1, sizeof(char *) * (MAX_DECISIONS - 1));
        c->n_decisions--;
    }
    c->decisions[c->n_decisions] = strdup(line);
    if (c->decisions[c->n_decisions])
        c->n_decisions++;
}

/* The state changed (a transition, or a failure streak counted or cleared): publish,
 * restart windows on a new stage, persist, audit. The change takes effect in memory first,
 * whatever the disk does: a rollback must stop traffic to new even when the state cannot
 * be written. Returns -1 when it was not saved (a restart would load the previous state;
 * c->save_error says why), else 0. */
static int apply(controller_t *c, const rollout_decision_t *d, const rollout_check_t *chk,
                 const char *who)
{
    if (!d->changed)
        return 0;
    if (d->stage_changed)
        server_restart_windows(c->srv, c->st.stage_started_ms);
    publish(c);
    int saved = persist(c) == 0;
    audit(c, d, chk, who);
    int moved = d->from_phase != d->to_phase || d->from_stage != d->to_stage;
    log_info("event=%s who=%s from_phase=%s to_phase=%s from=%g to=%g saved=%s reason=\"%s\"",
             moved ? "rollout_transition" : "rollout_check_recorded", who,
             rollout_phase_name(d->from_phase), rollout_phase_name(d->to_phase), d->from_bp / 100.0,
             d->to_bp / 100.0, saved ? "true" : "false", d->reason);
    if (!saved)
        log_error("event=rollout_state_not_saved who=%s phase=%s applied=in_memory error=\"%s\" "
                  "(a restart would load the previous state)",
                  who, rollout_phase_name(d->to_phase), c->save_error);
    return saved ? 0 : -1;
}

/* ---- ticking ----------------------------------------------------------------------- */

static void arm(struct event *ev, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

/* A window older than the stage start makes every check hold, automatic rollback included:
 * say so, once per stage, rather than hold in silence. */
static void warn_stale(controller_t *c)
{
    if (c->merged.since_ms >= c->st.stage_started_ms || c->stale_warned == c->st.stage_started_ms)
        return;
    c->stale_warned = c->st.stage_started_ms;
    log_warn("event=rollout_check_held reason=\"the window is older than the stage start\" "
             "window_since_ms=%lld stage_started_ms=%lld",
             c->merged.since_ms, c->st.stage_started_ms);
}

static void on_collect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    controller_t *c = arg;
    if (!server_snapshots_ready(c->srv, c->gen)) {
        if (wall_ms() - c->collect_started < COLLECT_GIVE_UP_MS) {
            arm(c->collect, COLLECT_POLL_MS);
            return;
        }
        log_warn("event=rollout_check_skipped reason=\"a worker did not answer in time\"");
        arm(c->tick, c->pol.check_interval_ms);
        return;
    }
    if (server_merge_snapshots(c->srv, &c->merged) < 0) {
        /* An admin call started a stage after the copies were asked for: they may hold the
         * previous stage's samples, and this stage has none worth judging yet. */
        log_info("event=rollout_check_skipped reason=\"the stage changed during the check\"");
        arm(c->tick, c->pol.check_interval_ms);
        return;
    }
    warn_stale(c);
    rollout_check_t chk;
    rollout_decision_t d = rollout_check(&c->st, &c->pol, &c->merged, wall_ms(), &chk);
    c->last_check = chk;
    c->have_check = 1;
    if (chk.overall == STATS_FAIL && !d.changed)
        log_warn("event=rollout_gates_failing phase=%s consecutive=%d",
                 rollout_phase_name(c->st.phase), c->st.consecutive_failures);
    /* A failing check that only counts (or the first check that clears a streak) is
     * persisted, so the streak survives a restart, and audited with its gates, so the log
     * shows the checks that led to a rollback (rollout.h). */
    apply(c, &d, &chk, "automatic");
    arm(c->tick, c->pol.check_interval_ms);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    controller_t *c = arg;
    if (!c->active)
        return;
    c->gen = server_request_snapshots(c->srv);
    c->collect_started = wall_ms();
    arm(c->collect, 1);
}

/* ---- reload ------------------------------------------------------------------------ */

/* Settings read only at start whose value in cur differs from the one the server started
 * with: logged one line each, and returned as a JSON array of their names for the admin
 * reply (NULL on out of memory). Without this a reload reported success while these kept
 * their old values. Compared with the start, not the previous reload, so a change stays
 * reported on every reload until a restart (and no more once it is reverted). */
static cJSON *warn_restart_needed(const config_t *started, const config_t *cur, const char *who)
{
    const char *keys[32];
    size_t n = config_restart_keys(started, cur, keys, 32);
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n && i < 32; i++) {
        log_warn("event=reload_needs_restart who=%s key=%s", who, keys[i]);
        if (a)
            cJSON_AddItemToArray(a, cJSON_CreateString(keys[i]));
    }
    return a;
}

/* A reload that names another state_file: the running state is the one that counts, so it
 * is written there at once. Otherwise a restart reads the new path (nothing, or another
 * rollout's file) and a rollback is lost. */
static void move_state(controller_t *c, const char *who)
{
    const char *path = c->srv->cfg->rollout.state_file;
    if (c->state_path && strcmp(c->state_path, path) == 0)
        return;
    if (persist_to(c, path) == 0) {
        log_info("event=rollout_state_moved who=%s from=%s to=%s phase=%s", who,
                 c->state_path ? c->state_path : "-", path, rollout_phase_name(c->st.phase));
        snprintf(c->state_note, sizeof(c->state_note), "moved to %s on reload", path);
    } else {
        log_error("event=rollout_state_not_saved who=%s from=%s to=%s error=\"%s\" (a restart "
                  "would not find the running state)",
                  who, c->state_path ? c->state_path : "-", path, c->save_error);
        snprintf(c->state_note, sizeof(c->state_note), "not saved on reload: %s", c->save_error);
    }
    free(c->state_path);
    c->state_path = strdup(path);
}

/* Takes the rollout settings of cfg (at start and after every reload). */
static void adopt(controller_t *c, const config_t *cfg, const char *who)
{
    int was_active = c->active;
    rollout_mode_t old_mode = c->pol.mode;
    int old_file_bp = c->file_bp;
    c->file_bp = file_percentage(cfg);
    if (old_file_bp != c->file_bp) {
        c->manual_bp = -1; /* a new percentage in the file replaces an admin's */
        if (was_active && c->st.manual_bp >= 0) {
            /* ...for good: a restart must not bring it back, even if the file later
             * says the old percentage again */
            c->st.manual_bp = c->st.manual_file_bp = -1;
            persist(c);
        }
    }
    c->active = cfg->rollout.present;
    if (!c->active) {
        publish(c);
        return;
    }
    policy_from_config(&c->pol, &cfg->rollout);
    if (!was_active) {
        load_state(c);
        /* An admin's percentage from before the restart, unless the file has a new one. */
        if (c->st.manual_bp >= 0 && c->st.manual_file_bp == (c->file_bp < 0 ? -1 : c->file_bp))
            c->manual_bp = c->st.manual_bp;
        free(c->state_path);
        c->state_path = strdup(cfg->rollout.state_file);
        server_restart_windows(c->srv, wall_ms());
        arm(c->tick, c->pol.check_interval_ms);
    } else {
        move_state(c, who);
    }
    if (c->pol.mode == ROLLOUT_MODE_ROLLBACK && (old_mode != ROLLOUT_MODE_ROLLBACK || !was_active)) {
        rollout_decision_t d = rollout_rollback(&c->st, &c->pol, wall_ms(), who,
                                                "config: rollout.mode is rollback");
        apply(c, &d, NULL, who);
    }
    if (c->file_bp == 0 && old_file_bp != 0 && c->st.phase != ROLLOUT_ROLLED_BACK) {
        rollout_decision_t d = rollout_rollback(&c->st, &c->pol, wall_ms(), who,
                                                "config: flag percentage is 0");
        apply(c, &d, NULL, who);
    }
    publish(c);
}

/* {"reloaded":ok, name:list}; takes list. NULL on out of memory. */
static char *reload_reply(int ok, const char *name, cJSON *list)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && list && cJSON_AddBoolToObject(o, "reloaded", ok)) {
        cJSON_AddItemToObject(o, name, list);
        list = NULL;
        s = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(list);
    cJSON_Delete(o);
    return s;
}

int controller_reload(controller_t *c, const char *who, char **reply_json)
{
    config_errors_t errs = {0};
    config_t *cfg = config_load(c->config_path, &errs);
    if (reply_json)
        *reply_json = NULL;
    if (!cfg) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < errs.n; i++) {
            log_error("event=reload_rejected who=%s error=\"%s\"", who, errs.lines[i]);
            if (a)
                cJSON_AddItemToArray(a, cJSON_CreateString(errs.lines[i]));
        }
        if (reply_json)
            *reply_json = reload_reply(0, "errors", a);
        else
            cJSON_Delete(a);
        config_errors_free(&errs);
        return -1;
    }
    for (size_t i = 0; i < errs.n_warnings; i++)
        log_warn("event=reload_warning who=%s warning=\"%s\"", who, errs.warnings[i]);
    config_errors_free(&errs);
    cJSON *restart = warn_restart_needed(c->started, cfg, who);
    if (reply_json)
        *reply_json = reload_reply(1, "restart_needed", restart);
    else
        cJSON_Delete(restart);
    /* The new percentage is published before the snapshot swap is seen by anyone who
     * could read an older one; requests in flight keep the snapshot they started with. */
    server_set_config(c->srv, cfg);
    adopt(c, cfg, who);
    config_unref(cfg);
    log_info("event=config_reloaded who=%s path=%s", who, c->config_path);
    return 0;
}

static void on_debounced(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    controller_reload(arg, "watch", NULL);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    controller_t *c = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->len > 0 && strcmp(ev->name, c->watch_name) == 0)
                hit = 1;
            p += sizeof(struct inotify_event) + ev->len;
        }
    }
    if (hit)
        arm(c->debounce, WATCH_DEBOUNCE_MS);
}

static void start_watch(controller_t *c)
{
    char dir[PATH_MAX], base[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", c->config_path);
    snprintf(base, sizeof(base), "%s", c->config_path);
    c->watch_name = strdup(basename(base));
    c->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (c->inotify_fd < 0 || !c->watch_name)
        goto fail;
    /* The folder, not the file: an editor's rename-replace makes a new inode. */
    if (inotify_add_watch(c->inotify_fd, dirname(dir),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0)
        goto fail;
    c->watch_ev = event_new(c->base, c->inotify_fd, EV_READ | EV_PERSIST, on_inotify, c);
    c->debounce = evtimer_new(c->base, on_debounced, c);
    if (!c->watch_ev || !c->debounce || event_add(c->watch_ev, NULL) < 0)
        goto fail;
    return;
fail:
    log_warn("event=config_watch_unavailable path=%s error=\"%s\" (SIGHUP and POST /admin/reload "
             "still reload)",
             c->config_path, strerror(errno));
}

/* ---- construction ------------------------------------------------------------------ */

controller_t *controller_new(struct event_base *base, server_t *srv, const char *config_path)
{
    controller_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->srv = srv;
    c->manual_bp = -1;
    c->inotify_fd = -1;
    c->config_path = strdup(config_path);
    c->tick = evtimer_new(base, on_tick, c);
    c->collect = evtimer_new(base, on_collect, c);
    if (!c->config_path || !c->tick || !c->collect) {
        controller_free(c);
        return NULL;
    }
    config_t *cfg = server_config_get(srv);
    c->started = config_ref(cfg);
    /* "Nothing written yet": a `percentage: 0` in the file at startup is then a change to 0,
     * recorded as a rollback (persisted, audited) exactly as when it is saved at run time;
     * otherwise removing the line later sent traffic to new without anyone resuming. */
    c->file_bp = -1;
    adopt(c, cfg, "startup");
    config_unref(cfg);
    start_watch(c);
    return c;
}

void controller_free(controller_t *c)
{
    if (!c)
        return;
    if (c->tick)
        event_free(c->tick);
    if (c->collect)
        event_free(c->collect);
    if (c->watch_ev)
        event_free(c->watch_ev);
    if (c->debounce)
        event_free(c->debounce);
    if (c->inotify_fd >= 0)
        close(c->inotify_fd);
    for (int i = 0; i < c->n_decisions; i++)
        free(c->decisions[i]);
    free(c->watch_name);
    free(c->config_path);
    free(c->state_path);
    config_unref(c->started);
    free(c);
}

/* ---- admin API ----------------------------------------------------------------------- */

static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_time(cJSON *o, const char *k, long long ms)
{
    char buf[40];
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    if (snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(ms % 1000)) < 0)
        buf[0] = '\0';
    cJSON_AddStringToObject(o, k, buf);
}

static cJSON *summary_json(const window_summary_t *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "requests", (double)s->requests);
    cJSON_AddNumberToObject(o, "errors", (double)s->errors);
    add_num(o, "error_rate", s->error_rate);
    add_num(o, "latency_p50_ms", s->latency_p50);
    add_num(o, "latency_p95_ms", s->latency_p95);
    add_num(o, "latency_p99_ms", s->latency_p99);
    add_num(o, "ttft_p50_ms", s->ttft_p50);
    add_num(o, "ttft_p95_ms", s->ttft_p95);
    cJSON_AddNumberToObject(o, "ttft_count", (double)s->ttft_count);
    add_num(o, "cost_per_1k_tokens", s->cost_per_1k_tokens);
    return o;
}

static cJSON *gate_json(stats_verdict_t v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "verdict", stats_verdict_name(v));
    return o;
}

static cJSON *check_json(const rollout_check_t *k)
{
    cJSON *o = cJSON_CreateObject();
    add_time(o, "at", k->at_ms);
    cJSON_AddStringToObject(o, "overall", stats_verdict_name(k->overall));
    cJSON *g = cJSON_AddObjectToObject(o, "gates");
    cJSON *e = gate_json(k->verdict[GATE_ERROR_RATE]);
    add_num(e, "p_new", k->error_rate.p_new);
    add_num(e, "p_original", k->error_rate.p_orig);
    add_num(e, "diff", k->error_rate.diff);
    add_num(e, "lower", k->error_rate.lower);
    add_num(e, "upper", k->error_rate.upper);
    cJSON_AddItemToObject(g, "error_rate", e);
    cJSON *l = gate_json(k->verdict[GATE_LATENCY]);
    add_num(l, "p95_ratio", k->latency_ratio);
    add_num(l, "mann_whitney_p", k->latency_mwu.p_value);
    cJSON_AddItemToObject(g, "latency", l);
    cJSON *t = gate_json(k->verdict[GATE_TTFT]);
    add_num(t, "p95_ratio", k->ttft_ratio);
    add_num(t, "mann_whitney_p", k->ttft_mwu.p_value);
    cJSON_AddItemToObject(g, "ttft", t);
    cJSON *cst = gate_json(k->verdict[GATE_COST]);
    add_num(cst, "ratio", k->cost_ratio);
    cJSON_AddItemToObject(g, "cost", cst);
    cJSON *v = cJSON_AddObjectToObject(o, "variants");
    cJSON_AddItemToObject(v, "original", summary_json(&k->summary[WINDOW_ORIGINAL]));
    cJSON_AddItemToObject(v, "new", summary_json(&k->summary[WINDOW_NEW]));
    return o;
}

char *controller_status_json(controller_t *c)
{
    cJSON *o = cJSON_CreateObject();
    int bp = effective_bp(c);
    cJSON_AddBoolToObject(o, "enabled", c->active);
    add_num(o, "percentage", (bp < 0 ? (c->file_bp < 0 ? 0 : c->file_bp) : bp) / 100.0);
    if (c->active) {
        cJSON_AddStringToObject(o, "mode", rollout_mode_name(c->pol.mode));
        cJSON_AddStringToObject(o, "phase", rollout_phase_name(c->st.phase));
        cJSON_AddNumberToObject(o, "stage", c->st.stage);
        cJSON *stages = cJSON_AddArrayToObject(o, "stages");
        for (int i = 0; i < c->pol.n_stages; i++)
            cJSON_AddItemToArray(stages, cJSON_CreateNumber(c->pol.stages_bp[i] / 100.0));
        add_time(o, "stage_started", c->st.stage_started_ms);
        cJSON_AddNumberToObject(o, "consecutive_failures", c->st.consecutive_failures);
        cJSON_AddBoolToObject(o, "corrupt_state", c->st.corrupt);
        cJSON_AddStringToObject(o, "state", c->state_note);
        cJSON_AddStringToObject(o, "reason", c->st.reason);
        if (c->have_check)
            cJSON_AddItemToObject(o, "last_check", check_json(&c->last_check));
        else
            cJSON_AddNullToObject(o, "last_check");
        cJSON *ds = cJSON_AddArrayToObject(o, "decisions");
        for (int i = 0; i < c->n_decisions; i++) {
            cJSON *d = cJSON_Parse(c->decisions[i]);
            if (d)
                cJSON_AddItemToArray(ds, d);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *refusal(const char *why)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", why);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The reply to an action that took effect but could not be saved: an operator who reads
 * 200 believes a restart keeps it. {"error", "applied": true, "saved": false, "rollout"}. */
static char *not_saved(controller_t *c, const char *action)
{
    char msg[768];
    snprintf(msg, sizeof(msg),
             "%s applied in memory, but the state was not saved (%s): a restart would load "
             "the previous state",
             action, c->save_error);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddBoolToObject(o, "applied", 1);
    cJSON_AddBoolToObject(o, "saved", 0);
    char *st = controller_status_json(c);
    cJSON *status = st ? cJSON_Parse(st) : NULL;
    free(st);
    if (status)
        cJSON_AddItemToObject(o, "rollout", status);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int controller_action(controller_t *c, const char *action, const char *who, char **json)
{
    if (!c->active) {
        *json = refusal("no rollout is configured (add a `rollout` block)");
        return 404;
    }
    long long now = wall_ms();
    rollout_decision_t d;
    if (strcmp(action, "promote") == 0)
        d = rollout_promote(&c->st, &c->pol, now, who);
    else if (strcmp(action, "rollback") == 0)
        d = rollout_rollback(&c->st, &c->pol, now, who, "manual rollback");
    else if (strcmp(action, "pause") == 0)
        d = rollout_pause(&c->st, &c->pol, now, who);
    else if (strcmp(action, "resume") == 0)
        d = rollout_resume(&c->st, &c->pol, now, who);
    else if (strcmp(action, "reset") == 0)
        d = rollout_reset(&c->st, &c->pol, now, who);
    else {
        *json = refusal("unknown action (promote, rollback, pause, resume, reset)");
        return 404;
    }
    if (!d.changed) {
        *json = refusal(d.reason);
        return 409;
    }
    if (c->pol.mode == ROLLOUT_MODE_MANUAL)
        set_manual(c, (int)rollout_percentage_bp(&c->st, &c->pol));
    if (apply(c, &d, NULL, who) < 0) {
        *json = not_saved(c, action);
        return 500;
    }
    *json = controller_status_json(c);
    return 200;
}

/* Why an admin's percentage would have no effect now (effective_bp ignores manual_bp),
 * or NULL. Accepting it answered 200 and audited a percentage that never applied. */
static const char *percentage_ignored(const controller_t *c)
{
    if (c->file_bp == 0)
        return "percentage: 0 in the config file is a rollback: change the file first";
    if (!c->active)
        return NULL;
    if (c->st.corrupt)
        return "state file unreadable; POST /admin/rollout/reset first";
    if (c->st.phase == ROLLOUT_ROLLED_BACK)
        return "rolled back: POST /admin/rollout/resume first";
    return NULL;
}

int controller_set_percentage(controller_t *c, const char *flag, const char *body, size_t len,
                              const char *who, char **json)
{
    if (strcmp(flag, "use_new_provider") != 0) {
        *json = refusal("unknown flag");
        return 404;
    }
    if (c->active && c->pol.mode != ROLLOUT_MODE_MANUAL) {
        *json = refusal("rollout.mode is not manual: the controller owns the percentage "
                        "(use promote/rollback, or set rollout.mode: manual)");
        return 409;
    }
    const char *why = percentage_ignored(c);
    if (why) {
        *json = refusal(why);
        return 409;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        *json = refusal("out of memory");
        return 500;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    cJSON *doc = cJSON_Parse(copy);
    free(copy);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(doc, "percentage");
    if (!cJSON_IsNumber(p) || p->valuedouble < 0 || p->valuedouble > 100 ||
        fabs(p->valuedouble * 100 - round(p->valuedouble * 100)) > 1e-6) {
        cJSON_Delete(doc);
        *json = refusal("body must be {\"percentage\": p} with 0 <= p <= 100, two decimals");
        return 400;
    }
    int bp = (int)lround(p->valuedouble * 100);
    cJSON_Delete(doc);
    set_manual(c, bp);
    publish(c);
    char line[512];
    snprintf(line, sizeof(line),
             "{\"ts_ms\":%lld,\"who\":\"%s\",\"action\":\"set_percentage\",\"flag\":\"%s\","
             "\"percentage\":%g}",
             wall_ms(), who, flag, bp / 100.0);
    if (c->active) {
        const char *path = c->srv->cfg->rollout.audit_log;
        if (mkdirs_for(path) == 0) {
            int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
            if (fd >= 0) {
                size_t l = strlen(line);
                line[l] = '\n';
                if (write(fd, line, l + 1) < 0)
                    log_error("event=audit_write_failed path=%s", path);
                line[l] = '\0';
                close(fd);
            }
        }
    }
    log_info("event=percentage_set who=%s flag=%s percentage=%g", who, flag, bp / 100.0);
    /* Live and audited either way; the reply says when the state file did not take it. */
    if (c->active && persist(c) < 0) {
        *json = not_saved(c, "set_percentage");
        return 500;
    }
    *json = controller_status_json(c);
    return 200;
}
