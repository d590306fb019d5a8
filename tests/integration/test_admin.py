"""The admin listener: health, OFREP evaluation, the admin token, reload replies."""
import json

from harness import Router, Sim, check, eq, expected_variant, router_config


def _router(percentage=37.5, admin_extra="", env=None, flag_extra=""):
    o, n = Sim("original"), Sim("new")
    try:
        r = Router(router_config(o, n, percentage=percentage, admin_extra=admin_extra,
                                 flag_extra=flag_extra), env=env)
    except Exception:
        o.stop()
        n.stop()
        raise
    return o, n, r


def _stop(*procs):
    for p in procs:
        p.stop()


def case_ofrep_single_matches_bucketing():
    o, n, r = _router(percentage=37.5, flag_extra='    allow: ["internal-*"]\n')
    try:
        for i in range(300):
            key = f"ofrep-user-{i}"
            status, h, body = r.admin("POST", "/ofrep/v1/evaluate/flags/use_new_provider",
                                      {"context": {"targetingKey": key}})
            eq(status, 200, "status")
            doc = json.loads(body)
            want = expected_variant("use_new_provider", key, 3750)
            eq(doc["variant"], want, f"variant for {key}")
            eq(doc["value"], want == "new", "value")
            eq(doc["reason"], "SPLIT", "reason")
            eq(doc["key"], "use_new_provider", "key")
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags/use_new_provider",
                                  {"context": {"targetingKey": "internal-bob"}})
        doc = json.loads(body)
        eq((doc["variant"], doc["reason"]), ("new", "TARGETING_MATCH"), "allow list")
    finally:
        _stop(r, o, n)


def case_ofrep_errors_and_bulk():
    o, n, r = _router()
    try:
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags/nope",
                                  {"context": {"targetingKey": "a"}})
        eq(status, 404, "unknown flag")
        eq(json.loads(body)["errorCode"], "FLAG_NOT_FOUND", "errorCode")
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags/use_new_provider",
                                  {"context": {}})
        eq(status, 400, "no targeting key")
        eq(json.loads(body)["errorCode"], "TARGETING_KEY_MISSING", "errorCode")
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags",
                                  {"context": {"targetingKey": "bulk-1"}})
        eq(status, 200, "bulk")
        flags = json.loads(body)["flags"]
        eq([f["key"] for f in flags], ["use_new_provider"], "bulk keys")
        eq(flags[0]["variant"], expected_variant("use_new_provider", "bulk-1", 3750), "bulk")
        status, _, _ = r.admin("GET", "/healthz")
        eq(status, 200, "admin healthz")
        status, _, _ = r.admin("GET", "/nope")
        eq(status, 404, "unknown admin route")
    finally:
        _stop(r, o, n)


def case_admin_token_required_when_configured():
    env = {"IT_ADMIN_TOKEN": "admin-secret-token"}
    o, n, r = _router(admin_extra=", token_env: IT_ADMIN_TOKEN", env=env)
    try:
        url = "/ofrep/v1/evaluate/flags/use_new_provider"
        ctx = {"context": {"targetingKey": "a"}}
        status, h, _ = r.admin("POST", url, ctx)
        eq(status, 401, "no token")
        status, _, _ = r.admin("POST", url, ctx, {"Authorization": "Bearer wrong"})
        eq(status, 401, "wrong token")
        status, _, _ = r.admin("POST", url, ctx, {"Authorization": "Bearer admin-secret-token-x"})
        eq(status, 401, "longer token")
        status, _, _ = r.admin("POST", url, ctx, {"Authorization": "Bearer admin-secret-token"})
        eq(status, 200, "right token")
        check("admin-secret-token" not in r.stderr_text(), "token logged")
    finally:
        _stop(r, o, n)


def case_admin_health_needs_token_too():
    env = {"IT_ADMIN_TOKEN": "tok-2"}
    o, n, r = _router(admin_extra=", token_env: IT_ADMIN_TOKEN", env=env)
    try:
        status, _, _ = r.admin("GET", "/healthz")
        eq(status, 401, "admin health without token")
        status, _, _ = r.admin("GET", "/healthz", headers={"Authorization": "Bearer tok-2"})
        eq(status, 200, "admin health with token")
        status, _, _ = r.request("GET", "/healthz")
        eq(status, 200, "main listener health stays open")
    finally:
        _stop(r, o, n)


def case_reload_names_settings_that_need_a_restart():
    """A reload applied nothing of what is read only at start, yet answered a bare
    {"reloaded":true}: the reply and the log now name each such setting."""
    o, n = Sim("original"), Sim("new")
    r = None
    env = {"IT_SESSION_A": "session-secret-a", "IT_SESSION_B": "session-secret-b"}
    try:
        cfg = router_config(o, n, percentage=10,
                            extra="realtime: { session_secret_env: IT_SESSION_A }")
        r = Router(cfg, env=env)
        code, _, body = r.admin("POST", "/admin/reload")
        eq((code, json.loads(body)), (200, {"reloaded": True, "restart_needed": []}),
           "unchanged file")
        with open(r.config_path, "w") as f:
            f.write(cfg.replace("percentage: 10", "percentage: 20")
                    .replace("IT_SESSION_A", "IT_SESSION_B")
                    + "limits: { client_timeout_ms: 5000, header_timeout_ms: 2000 }\n")
        code, _, body = r.admin("POST", "/admin/reload")
        eq(code, 200, f"reload: {body!r}")
        want = ["limits.client_timeout_ms", "limits.header_timeout_ms",
                "realtime.session_secret_env"]
        eq(json.loads(body), {"reloaded": True, "restart_needed": want}, "reload reply")
        log = r.stderr_text()
        for key in want:
            check(f"event=reload_needs_restart who=admin key={key}" in log, f"{key} logged:\n{log}")
        check("session-secret" not in log, "a secret was logged")
        # still pending on the next reload (compared with what the process started with)
        code, _, body = r.admin("POST", "/admin/reload")
        eq(json.loads(body)["restart_needed"], want, "still pending")
        # reverted: nothing pending any more
        with open(r.config_path, "w") as f:
            f.write(cfg)
        code, _, body = r.admin("POST", "/admin/reload")
        eq(json.loads(body), {"reloaded": True, "restart_needed": []}, "reverted")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_ofrep_sees_every_flag():
    # OFREP copied the flags into a table of 64: with more, the routing flag was "not
    # found" (it comes after the others in this file) and bulk answers were cut short.
    more = "".join(f"  extra-{i}: {{ percentage: 50 }}\n" for i in range(70))
    o, n, r = _router(percentage=100, flag_extra=more)
    try:
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags/use_new_provider",
                                  {"context": {"targetingKey": "every-flag"}})
        eq(status, 200, f"the routing flag among 71: {body[:200]!r}")
        eq(json.loads(body)["variant"], "new", "at 100%")
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags",
                                  {"context": {"targetingKey": "every-flag"}})
        eq(status, 200, "bulk")
        eq(len(json.loads(body)["flags"]), 71, "every flag in the bulk answer")
    finally:
        _stop(r, o, n)
