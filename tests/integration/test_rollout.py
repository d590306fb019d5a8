"""The rollout controller end to end: stages, gates against a concurrent baseline,
persisted state, admin calls, hot reload and instant rollback."""
import http.client
import json
import os
import signal
import threading
import time

from harness import Router, Sim, TestFailure, check, eq, router_config, tmp_path


def rollout_block(state, audit, stages="[10, 50, 100]", min_duration="1s", interval="200ms",
                  min_requests=30, max_duration="1h", threshold=2, mode="auto",
                  on_failure="rollback", latency_ratio="1.25", error_rate_increase="0.01"):
    return f"""
rollout:
  mode: {mode}
  stages: {stages}
  stage_min_duration: {min_duration}
  min_requests: {min_requests}
  check_interval: {interval}
  max_stage_duration: {max_duration}
  failure_threshold: {threshold}
  gates: {{ error_rate_increase: {error_rate_increase}, confidence: 0.95, latency_p95_ratio: {latency_ratio},
           ttft_p95_ratio: 1.25, cost_per_1k_tokens_ratio: 1.0 }}
  on_failure: {on_failure}
  state_file: "{state}"
  audit_log: "{audit}"
"""


class Traffic:
    """Steady traffic from many sticky users until stopped; records every answer."""

    def __init__(self, router, rps=200, threads=8, stream_every=3):
        self.router = router
        self.rps = rps
        self.threads = threads
        self.stream_every = stream_every
        self.stop_flag = threading.Event()
        self.results = []  # (t_sent, status, variant, provider)
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def __enter__(self):
        for t in self.workers:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_flag.set()
        for t in self.workers:
            t.join(timeout=30)

    def _run(self, k):
        conn = http.client.HTTPConnection("127.0.0.1", self.router.port, timeout=30)
        period = self.threads / self.rps
        i = 0
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            i += 1
            body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}],
                    "stream": i % self.stream_every == 0}
            t0 = time.monotonic()
            try:
                conn.request("POST", "/v1/chat/completions", json.dumps(body),
                             {"Content-Type": "application/json",
                              "x-user-id": f"user-{k}-{i % 500}"})
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if body["stream"] and b"[DONE]" not in data:
                    status = -1  # an incomplete stream is a failure too
                rec = (t0, status, resp.getheader("x-switchyard-variant"),
                       resp.getheader("x-switchyard-provider"))
            except Exception:  # noqa: BLE001 - a failed request is recorded, not raised
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.router.port, timeout=30)
                rec = (t0, 0, None, None)
            with self.lock:
                self.results.append(rec)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


def status_of(r):
    status, _, body = r.admin("GET", "/admin/rollout")
    eq(status, 200, "GET /admin/rollout")
    return json.loads(body)


def wait_for(r, pred, timeout, what):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = status_of(r)
        if pred(st):
            return st
        time.sleep(0.1)
    raise TestFailure(f"{what}: not within {timeout}s; last status {json.dumps(st)[:1500]}")


def sims(new_args=(), original_args=()):
    return Sim("original", *original_args), Sim("new", *new_args)


def case_promotes_through_every_stage_when_healthy():
    state, audit = tmp_path("promote.state"), tmp_path("promote-audit.jsonl")
    o, n = sims()
    r = None
    try:
        r = Router(router_config(o, n, percentage=10, extra=rollout_block(state, audit)))
        st = status_of(r)
        eq((st["phase"], st["stage"], st["percentage"]), ("progressing", 0, 10), "fresh rollout")
        with Traffic(r, rps=400):
            st = wait_for(r, lambda s: s["phase"] == "completed", 30, "promotion to completed")
        eq(st["percentage"], 100, "completed at 100%")
        lines = [json.loads(l) for l in open(audit)]
        check(len(lines) >= 3, f"audit lines: {lines}")
        pcts = [l.get("percent") for l in lines]
        check(50 in pcts and 100 in pcts, f"audited stages {pcts}")
        saved = json.load(open(state))
        eq(saved.get("phase"), "completed", "persisted phase")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def _send(r, n, prefix, headers=None):
    """n sequential requests on one keep-alive connection (so one worker serves them all)."""
    conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
    out = []
    try:
        for i in range(n):
            h = {"Content-Type": "application/json", "x-user-id": f"{prefix}-{i}"}
            h.update(headers or {})
            conn.request("POST", "/v1/chat/completions",
                         json.dumps({"model": "gpt-4.1", "messages": [{"role": "user",
                                                                        "content": "hi"}]}), h)
            resp = conn.getresponse()
            resp.read()
            out.append((resp.status, resp.getheader("x-switchyard-variant")))
    finally:
        conn.close()
    return out


def case_a_new_stage_is_judged_on_its_own_samples():
    """After a promotion the next stage starts with no samples, on every worker: idle workers
    must not hand the previous stage's samples to the next check (which promoted 50% and
    then 100% on stage-0 data, and diluted a failing new provider)."""
    state, audit = tmp_path("fresh.state"), tmp_path("fresh-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, stages="[40, 50, 100]", min_duration="1500ms",
                              error_rate_increase="0.1")
        r = Router(router_config(o, n, percentage=40, extra=extra, workers=2))
        with Traffic(r, rps=400):
            time.sleep(1)  # enough for the gates; the stage is promoted after it stopped
        wait_for(r, lambda s: s["stage"] >= 1, 10, "promotion to the second stage")
        time.sleep(3.5)  # two more stage_min_durations, many checks, and no traffic
        st = status_of(r)
        eq((st["phase"], st["stage"]), ("progressing", 1), "no promotion without new samples")
        news = st["last_check"]["variants"]["new"]["requests"]
        check(news < 30, f"the check at stage 1 saw {news} requests on new, sent at stage 0")
        # Stage 1 on one connection (one worker) while new fails every request: the other
        # worker's stage-0 samples must not dilute it.
        res = _send(r, 150, "stage1", {"x-sim-fault": "new:status=500"})
        eq(sum(1 for s, _ in res if s != 200), 0, "fallback covered new's failures")
        st = wait_for(r, lambda s: s["phase"] == "rolled_back", 10, "rollback at stage 1")
        v = st["last_check"]["variants"]
        eq(v["new"]["errors"], v["new"]["requests"], "new's window holds stage-1 failures only")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_rolls_back_when_new_fails_5_percent():
    state, audit = tmp_path("rb.state"), tmp_path("rb-audit.jsonl")
    o, n = sims(new_args=("--error-rate", "0.05", "--error-status", "503"))
    r = None
    try:
        extra = rollout_block(state, audit, stages="[50, 100]", min_duration="60s",
                              min_requests=300, threshold=2)
        r = Router(router_config(o, n, percentage=50, extra=extra))
        with Traffic(r, rps=250) as t:
            st = wait_for(r, lambda s: s["phase"] == "rolled_back", 40, "automatic rollback")
            time.sleep(0.5)
        eq(st["percentage"], 0, "rolled back to 0%")
        check("error" in st["reason"].lower() or "fail" in st["reason"].lower(),
              f"reason names the failure: {st['reason']}")
        gates = st["last_check"]["gates"]
        eq(gates["error_rate"]["verdict"], "FAIL", "error-rate gate")
        failed = [x for x in t.results if x[1] != 200]
        eq(len(failed), 0, "no client request failed (fallback covered the 5%)")
        line = [json.loads(l) for l in open(audit)][-1]
        eq(line.get("phase"), "rolled_back", "audit line of the rollback")
        for k in ("time", "who", "from_percent", "percent", "from_stage", "stage", "reason"):
            check(k in line, f"audit line lacks {k}: {line}")
        check("gates" in json.dumps(line), "the audit line carries the gate statistics")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def _write_state(path, stage, stage_bp, phase="progressing", started_ms=None):
    """A state file as a version-1 switchyard wrote it (no baseline)."""
    now = int(time.time() * 1000)
    with open(path, "w") as f:
        json.dump({"version": 1, "phase": phase, "stage": stage, "stage_bp": stage_bp,
                   "stage_started_ms": now - 1000 if started_ms is None else started_ms,
                   "consecutive_failures": 0, "corrupt": False, "updated_ms": now,
                   "reason": "written by the test"}, f)


def case_full_stage_still_judges_new_error_rate():
    """At 100% the original has no traffic to compare with; a new provider failing every
    request must still fail the checks (it used to complete the rollout after the soak)."""
    state, audit = tmp_path("full.state"), tmp_path("full-audit.jsonl")
    _write_state(state, 2, 10000)
    o, n = sims(new_args=("--error-rate", "1.0", "--error-status", "503"))
    r = None
    try:
        # Every request fails at new until it is ejected: the retry budget (20% + 5/s by
        # default) would refuse some fallbacks, which is not what this case is about.
        budget = "fallback: { budget: { percent: 100, min_per_second: 1000 } }\n"
        r = Router(router_config(o, n, percentage=10, extra=rollout_block(state, audit) + budget))
        eq(status_of(r)["percentage"], 100, "resumed at 100%")
        with Traffic(r, rps=200) as t:
            st = wait_for(r, lambda s: s["phase"] in ("rolled_back", "completed"), 15,
                          "a decision at 100%")
        eq(st["phase"], "rolled_back", f"new failing every request at 100%: {st['reason']}")
        gate = st["last_check"]["gates"]["error_rate"]
        eq((gate["verdict"], gate["p_original"]), ("FAIL", 0), "judged against 0 (no baseline)")
        eq(len([x for x in t.results if x[1] != 200]), 0, "fallback covered every failure")
        saved = json.load(open(state))
        eq((saved["version"], saved["phase"]), (3, "rolled_back"), "persisted")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_stage_start_in_the_future_is_clamped():
    """A state file whose stage starts after now (the clock was stepped back) held every
    check, automatic rollback included, in silence until the clock caught up."""
    state, audit = tmp_path("ahead.state"), tmp_path("ahead-audit.jsonl")
    _write_state(state, 1, 5000, started_ms=int(time.time() * 1000) + 3600 * 1000)
    o, n = sims(new_args=("--error-rate", "1.0", "--error-status", "503"))
    r = None
    try:
        r = Router(router_config(o, n, percentage=10, extra=rollout_block(state, audit)))
        check("event=rollout_state_clock_ahead" in r.stderr_text(), "the clamp is logged")
        saved = json.load(open(state))
        check(saved["stage_started_ms"] <= time.time() * 1000, f"clamp persisted: {saved}")
        with Traffic(r, rps=200):
            st = wait_for(r, lambda s: s["phase"] == "rolled_back", 10, "automatic rollback")
        eq(st["last_check"]["gates"]["error_rate"]["verdict"], "FAIL", "error-rate gate")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_rollback_that_cannot_be_saved_says_so():
    """A rollback whose state write fails still stops traffic to new at once, but the reply
    says it was not saved (it answered 200 while a restart brought 50% back)."""
    state, audit = tmp_path("nosave.state"), tmp_path("nosave-audit.jsonl")
    _write_state(state, 1, 5000)
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, min_duration="1h", min_requests=100000)
        r = Router(router_config(o, n, percentage=10, extra=extra))
        eq(status_of(r)["percentage"], 50, "resumed at 50%")
        os.mkdir(state + ".tmp")  # the temporary file cannot be created: as EROFS or ENOSPC
        try:
            code, _, body = r.admin("POST", "/admin/rollout/rollback")
        finally:
            os.rmdir(state + ".tmp")
        doc = json.loads(body)
        eq(code, 500, f"rollback reply: {body}")
        check("not saved" in doc["error"] and state in doc["error"], f"the reason: {doc}")
        eq((doc["applied"], doc["saved"]), (True, False), "applied, not saved")
        eq((doc["rollout"]["phase"], doc["rollout"]["percentage"]), ("rolled_back", 0),
           "rolled back in memory")
        for i in range(20):
            _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": f"ns{i}"})
            eq(h["x-switchyard-variant"], "original", "every request on original")
        check("event=rollout_state_not_saved" in r.stderr_text(), "the log says so")
        eq(json.load(open(state))["phase"], "progressing", "the file still holds the old state")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_reload_with_a_new_state_file_keeps_the_state():
    """A reload that names another state_file writes the running state there at once: a
    rollback used to be lost at the next restart (the new path was never written)."""
    state, moved, audit = (tmp_path("move-a.state"), tmp_path("move-b.state"),
                           tmp_path("move-audit.jsonl"))
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, min_duration="1h", min_requests=100000)
        cfg = router_config(o, n, percentage=10, extra=extra)
        r = Router(cfg)
        code, _, _ = r.admin("POST", "/admin/rollout/rollback")
        eq(code, 200, "rollback")
        with open(r.config_path, "w") as f:
            f.write(cfg.replace(state, moved))
        code, _, body = r.admin("POST", "/admin/reload")
        eq(code, 200, f"reload: {body}")
        check(os.path.exists(moved), "the new state file is written at once")
        eq(json.load(open(moved))["phase"], "rolled_back", "with the running state")
        check("event=rollout_state_moved" in r.stderr_text(), "the move is logged")
        r.stop()
        r = Router(cfg.replace(state, moved), name="router-restarted")
        st = status_of(r)
        eq((st["phase"], st["percentage"]), ("rolled_back", 0), "rolled back after a restart")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_percentage_zero_at_startup_is_a_rollback():
    """`percentage: 0` in the file at startup is recorded like one saved at run time: it
    used to leave the state progressing, and removing the line sent traffic to new again
    without anyone resuming."""
    state, audit = tmp_path("zero.state"), tmp_path("zero-audit.jsonl")
    _write_state(state, 1, 5000)
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, min_duration="1h", min_requests=100000)
        cfg = router_config(o, n, percentage=0, extra=extra)
        r = Router(cfg)
        st = status_of(r)
        eq((st["phase"], st["percentage"]), ("rolled_back", 0), "rolled back at startup")
        eq(json.load(open(state))["phase"], "rolled_back", "persisted")
        line = [json.loads(l) for l in open(audit)][-1]
        eq((line["who"], line["from_percent"], line["percent"]), ("startup", 50, 0), "audited")
        with open(r.config_path, "w") as f:
            f.write(cfg.replace("percentage: 0", "percentage: 10"))
        code, _, _ = r.admin("POST", "/admin/reload")
        eq(code, 200, "reload")
        st = status_of(r)
        eq((st["phase"], st["percentage"]), ("rolled_back", 0), "still rolled back until resumed")
        for i in range(20):
            _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": f"z{i}"})
            eq(h["x-switchyard-variant"], "original", "every request on original")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_failing_checks_are_audited():
    """A failing check below failure_threshold changes only the streak: it was persisted
    but missing from the audit log and the admin API's decisions."""
    state, audit = tmp_path("streak.state"), tmp_path("streak-audit.jsonl")
    o, n = sims(new_args=("--error-rate", "0.5", "--error-status", "503"))
    r = None
    try:
        extra = rollout_block(state, audit, stages="[50, 100]", min_duration="1h",
                              threshold=1000)
        r = Router(router_config(o, n, percentage=50, extra=extra))
        with Traffic(r, rps=200):
            st = wait_for(r, lambda s: s["consecutive_failures"] >= 2, 15, "failing checks")
        eq(json.load(open(state))["consecutive_failures"] >= 2, True, "the streak is persisted")
        lines = [json.loads(l) for l in open(audit)] if os.path.exists(audit) else []
        failing = [l for l in lines if l["from_phase"] == l["phase"] == "progressing" and
                   l["from_stage"] == l["stage"] == 0 and "check failed" in l["reason"]]
        check(len(failing) >= 2, f"failing checks in the audit log: {lines}")
        eq((failing[0]["who"], failing[0]["check"]["overall"]), ("automatic", "FAIL"),
           "with who and the gates")
        eq(failing[0]["check"]["gates"]["error_rate"]["verdict"], "FAIL", "the failing gate")
        check(any("check failed" in d["reason"] for d in st["decisions"]),
              f"in the admin API's decisions: {st['decisions']}")
        check("event=rollout_check_recorded" in r.stderr_text(), "logged")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_manual_percentage_after_a_rollback_is_refused():
    """In manual mode a rolled-back rollout stays at 0% until resumed: a PUT answered 200 and
    audited a percentage that never applied."""
    state, audit = tmp_path("manual-rb.state"), tmp_path("manual-rb-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, mode="manual")
        r = Router(router_config(o, n, percentage=10, extra=extra))
        code, _, _ = r.admin("POST", "/admin/rollout/rollback")
        eq(code, 200, "rollback")
        before = open(audit).read()
        code, _, body = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 25})
        eq(code, 409, f"PUT after a rollback: {body}")
        check("resume" in json.loads(body)["error"], f"the reply says what to do: {body}")
        eq(open(audit).read(), before, "nothing audited")
        eq(status_of(r)["percentage"], 0, "still 0%")
        code, _, _ = r.admin("POST", "/admin/rollout/resume")
        eq(code, 200, "resume")
        code, _, body = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 25})
        eq(code, 200, f"PUT after resume: {body}")
        eq(status_of(r)["percentage"], 25, "applied")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_too_few_requests_is_inconclusive():
    state, audit = tmp_path("few.state"), tmp_path("few-audit.jsonl")
    o, n = sims(new_args=("--error-rate", "0.5"))
    r = None
    try:
        extra = rollout_block(state, audit, min_duration="200ms", min_requests=5000, threshold=1)
        r = Router(router_config(o, n, percentage=10, extra=extra))
        with Traffic(r, rps=40, threads=2):
            time.sleep(3)
        st = status_of(r)
        eq((st["phase"], st["stage"]), ("progressing", 0), "neither promoted nor rolled back")
        eq(st["last_check"]["overall"], "INCONCLUSIVE", "verdict with too few requests")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_twice_as_slow_blocks_promotion():
    state, audit = tmp_path("slow.state"), tmp_path("slow-audit.jsonl")
    o, n = sims(new_args=("--latency-ms", "40"), original_args=("--latency-ms", "20"))
    r = None
    try:
        extra = rollout_block(state, audit, stages="[50, 100]", min_duration="200ms",
                              min_requests=100, threshold=1000)
        r = Router(router_config(o, n, percentage=50, extra=extra))
        with Traffic(r, rps=200, threads=12):
            st = wait_for(r, lambda s: s["last_check"] and
                          s["last_check"]["gates"]["latency"]["verdict"] == "FAIL", 20,
                          "latency gate failing")
            time.sleep(1)
            st = status_of(r)
        eq(st["stage"], 0, "not promoted while twice as slow")
        ratio = st["last_check"]["gates"]["latency"]["p95_ratio"]
        check(1.6 < ratio < 2.6, f"p95 ratio {ratio}")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_kill_9_resumes_the_same_stage_and_phase():
    state, audit = tmp_path("k9.state"), tmp_path("k9-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, stages="[50, 100]", min_duration="500ms",
                              min_requests=20)
        cfg = router_config(o, n, percentage=50, extra=extra)
        r = Router(cfg)
        with Traffic(r, rps=200):
            wait_for(r, lambda s: s["stage"] >= 1, 20, "promotion to the second stage")
        code, _, _ = r.admin("POST", "/admin/rollout/pause")
        eq(code, 200, "pause")
        before = status_of(r)
        r.proc.kill()  # SIGKILL: no chance to save anything on the way out
        r.proc.wait()
        r.stopped = True
        r.err_file.close()
        r = Router(cfg, name="router-restarted")
        after = status_of(r)
        eq((after["phase"], after["stage"], after["percentage"]),
           (before["phase"], before["stage"], before["percentage"]), "resumed state")
        check("resumed" in after["state"], f"state note: {after['state']}")
        # rolled back survives a restart too, until an operator resumes
        code, _, _ = r.admin("POST", "/admin/rollout/rollback")
        eq(code, 200, "rollback")
        r.proc.kill()
        r.proc.wait()
        r.stopped = True
        r.err_file.close()
        r = Router(cfg, name="router-restarted-2")
        eq(status_of(r)["phase"], "rolled_back", "rolled_back after restart")
        code, _, _ = r.admin("POST", "/admin/rollout/resume")
        eq(code, 200, "resume")
        eq(status_of(r)["phase"], "progressing", "resumed by the operator")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_corrupt_state_file_starts_at_zero():
    state, audit = tmp_path("corrupt.state"), tmp_path("corrupt-audit.jsonl")
    with open(state, "w") as f:
        f.write('{"version": 1, "phase": "progre')
    o, n = sims()
    r = None
    try:
        r = Router(router_config(o, n, percentage=10, extra=rollout_block(state, audit)))
        st = status_of(r)
        eq(st["percentage"], 0, "0% new with an unreadable state")
        check(st["corrupt_state"], "the admin API says so")
        check("event=rollout_state_corrupt" in r.stderr_text(), "the log says so")
        for i in range(20):
            _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": f"c{i}"})
            eq(h["x-switchyard-variant"], "original", "every request on original")
        code, _, body = r.admin("POST", "/admin/rollout/promote")
        eq(code, 409, "promotion refused until reset")
        code, _, _ = r.admin("POST", "/admin/rollout/reset")
        eq(code, 200, "reset")
        st = status_of(r)
        eq((st["corrupt_state"], st["percentage"]), (False, 10), "fresh rollout after reset")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def _switch_point(results, t_change):
    """Seconds from t_change to the last request routed to the new provider."""
    last_new = max((t for t, s, v, p in results if p == "relay" and t >= t_change),
                   default=t_change)
    return last_new - t_change


def _instant_rollback(how):
    state, audit = tmp_path(f"inst-{how}.state"), tmp_path(f"inst-{how}-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, stages="[50, 100]", min_duration="1h",
                              interval="1s")
        cfg = router_config(o, n, percentage=50, extra=extra)
        r = Router(cfg)
        with Traffic(r, rps=200) as t:
            time.sleep(1.5)
            t_change = time.monotonic()
            if how == "admin":
                code, _, _ = r.admin("POST", "/admin/rollout/rollback")
                eq(code, 200, "admin rollback")
            elif how == "rewrite":
                with open(r.config_path, "w") as f:  # in place, as `>` or an editor would
                    f.write(cfg.replace("mode: auto", "mode: rollback"))
            elif how == "rename":
                tmp = r.config_path + ".new"
                with open(tmp, "w") as f:
                    f.write(cfg.replace("mode: auto", "mode: rollback"))
                os.rename(tmp, r.config_path)  # replaced, as config management does
            elif how == "percentage0":
                with open(r.config_path, "w") as f:
                    f.write(cfg.replace("percentage: 50", "percentage: 0"))
            time.sleep(2.5)
        res = t.results
        before = [x for x in res if x[0] < t_change]
        check(any(p == "relay" for _, _, _, p in before), "new served traffic before")
        lag = _switch_point(res, t_change)
        failed = [x for x in res if x[1] != 200]
        rate = len(res) / (res[-1][0] - res[0][0])
        print(f"  rollback by {how}: last request to new {lag * 1000:.0f} ms after the change, "
              f"{len(res)} requests at {rate:.0f}/s, {len(failed)} failed")
        check(lag < 1.0, f"requests still went to new {lag:.2f}s after the change ({how})")
        eq(len(failed), 0, f"failed requests ({how})")
        eq(status_of(r)["percentage"], 0, "0% after the rollback")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_instant_rollback_by_admin_call():
    _instant_rollback("admin")


def case_instant_rollback_by_rewriting_the_config():
    _instant_rollback("rewrite")


def case_instant_rollback_by_replacing_the_config():
    _instant_rollback("rename")


def case_instant_rollback_by_percentage_zero():
    _instant_rollback("percentage0")


def case_invalid_reload_is_rejected_and_running_config_stays():
    o, n = sims()
    r = None
    try:
        cfg = router_config(o, n, percentage=100)
        r = Router(cfg)
        with open(r.config_path, "w") as f:
            f.write(cfg.replace("percentage: 100", "percentage: 1000").replace("workers:", "wrkers:"))
        code, _, body = r.admin("POST", "/admin/reload")
        eq(code, 400, "invalid reload")
        doc = json.loads(body)
        check(not doc["reloaded"] and len(doc["errors"]) >= 2, f"errors: {doc}")
        check(all(e.startswith(r.config_path + ":") for e in doc["errors"]),
              f"FILE:LINE:COL: {doc['errors']}")
        check("event=reload_rejected" in r.stderr_text(), "rejection logged")
        _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "x"})
        eq(h["x-switchyard-variant"], "new", "the running config stayed (100%)")
        # SIGHUP with a valid file applies it
        with open(r.config_path, "w") as f:
            f.write(cfg.replace("percentage: 100", "percentage: 0"))
        r.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "x"})
            if h["x-switchyard-variant"] == "original":
                break
            time.sleep(0.05)
        eq(h["x-switchyard-variant"], "original", "SIGHUP reload applied")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_manual_mode_and_percentage_api():
    state, audit = tmp_path("manual.state"), tmp_path("manual-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, mode="manual")
        r = Router(router_config(o, n, percentage=100, extra=extra))
        _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "m"})
        eq(h["x-switchyard-variant"], "new", "manual: the file's percentage applies")
        code, _, body = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 0})
        eq(code, 200, f"PUT percentage: {body}")
        _, h, _ = r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "m"})
        eq(h["x-switchyard-variant"], "original", "the very next request sees 0%")
        code, _, _ = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 101})
        eq(code, 400, "out of range")
        code, _, _ = r.admin("PUT", "/admin/flags/nope", {"percentage": 1})
        eq(code, 404, "unknown flag")
        status, _, body = r.admin("POST", "/ofrep/v1/evaluate/flags/use_new_provider",
                                  {"context": {"targetingKey": "m"}})
        eq(json.loads(body)["variant"], "original", "OFREP sees the effective percentage")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_manual_percentage_survives_a_restart():
    """Manual mode: a promote or a PUT set the percentage in memory only; a restart went
    back to the file's, though the state file said the stage was promoted."""
    state, audit = tmp_path("manual-keep.state"), tmp_path("manual-keep-audit.jsonl")
    o, n = sims()
    r = None
    try:
        extra = rollout_block(state, audit, mode="manual")
        cfg = router_config(o, n, percentage=10, extra=extra)
        r = Router(cfg)
        code, _, _ = r.admin("POST", "/admin/rollout/promote")
        eq(code, 200, "promote")
        eq(status_of(r)["percentage"], 50, "promoted")
        r.stop()
        r = Router(cfg, name="router-after-promote")
        eq(status_of(r)["percentage"], 50, "the promoted percentage after a restart")
        code, _, _ = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 25})
        eq(code, 200, "PUT")
        r.stop()
        r = Router(cfg, name="router-after-put")
        eq(status_of(r)["percentage"], 25, "the admin's percentage after a restart")
        r.stop()
        # a new percentage written in the file replaces the admin's, restart or not
        r = Router(router_config(o, n, percentage=20, extra=extra), name="router-new-file")
        eq(status_of(r)["percentage"], 20, "the file's new percentage")
        # ...for good: the file going back to 10 by reload does not revive the admin's 25
        code, _, _ = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 30})
        eq(code, 200, "PUT 30 over the file's 20")
        with open(r.config_path, "w") as f:
            f.write(router_config(o, n, percentage=40, extra=extra))
        code, _, _ = r.admin("POST", "/admin/reload")
        eq(code, 200, "reload to 40")
        eq(status_of(r)["percentage"], 40, "the file's 40 replaces the admin's 30")
        with open(r.config_path, "w") as f:
            f.write(router_config(o, n, percentage=20, extra=extra))
        code, _, _ = r.admin("POST", "/admin/reload")
        eq(code, 200, "reload back to 20")
        cfg20 = open(r.config_path).read()
        r.stop()
        r = Router(cfg20, name="router-file-back")
        eq(status_of(r)["percentage"], 20, "the replaced admin's 30 does not come back")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()
