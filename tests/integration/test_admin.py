"""The admin listener: health, OFREP evaluation, the admin token."""
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
