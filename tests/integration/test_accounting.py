"""Metrics, access log, usage and cost: the numbers must agree, wherever they are read."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import (ROOT, Router, Sim, binary, check, eq, expected_variant, request,
                     router_config, sse_events, tmp_path)

CHAT_BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]}

PRICED = """
    pricing:
      gpt-4.1: { input: 2.00, output: 8.00, cached_input: 0.50 }
      claude-sonnet-4.5: { input: 3.00, output: 15.00 }"""
NEW_PRICED = """
    pricing:
      gpt-4.1: { input: 0.40, output: 1.60 }
      claude-sonnet-4.5: { input: 0.50, output: 2.50 }"""


def _stack(log_path, percentage=50, extra="", sim_args=(), new_priced=NEW_PRICED):
    o = Sim("original", *sim_args)
    n = Sim("new", *sim_args)
    cfg = router_config(o, n, percentage=percentage, original_extra=PRICED, new_extra=new_priced,
                        extra=f'access_log: {{ path: "{log_path}" }}\n' + extra)
    try:
        r = Router(cfg)
    except Exception:
        o.stop()
        n.stop()
        raise
    return o, n, r, cfg


def _read_log(path, want, timeout=5):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = [json.loads(l) for l in f if l.strip()]
            if len(lines) >= want:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"access log has {len(lines)} lines, want {want}")


def _metrics(r):
    status, _, body = r.admin("GET", "/metrics")
    eq(status, 200, "/metrics status")
    return body.decode()


def _series(text, name):
    """[(labels dict, value)] of one metric family's samples."""
    out = []
    for line in text.splitlines():
        m = re.match(re.escape(name) + r"(\{(.*)\})? (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((labels, float(m.group(3))))
    return out


def _promtool(text):
    if not shutil.which("promtool"):
        raise AssertionError("promtool is missing (make deps installs Debian's prometheus)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=30)
    eq(p.returncode, 0, f"promtool check metrics:\n{p.stdout}{p.stderr}")


def _mixed_traffic(r):
    """Streaming and not, usage asked and not, fallbacks, a model without a price."""
    cases = []
    for i in range(60):
        body = {"model": ["gpt-4.1", "claude-sonnet-4.5", "no-price-model"][i % 3],
                "messages": [{"role": "user", "content": "x" * (i + 1)}],
                "stream": i % 2 == 0}
        if i % 4 == 0:
            body["stream_options"] = {"include_usage": True}
        headers = {"x-user-id": f"acct-{i}"}
        if i % 5 == 0:
            headers["x-sim-fault"] = "new:status=503"
        status, h, data = r.chat(body, headers)
        eq(status, 200, f"request {i}")
        cases.append((body, h, data))
    return cases


def case_metrics_pass_promtool_and_agree_with_log_and_report():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log)
    try:
        _mixed_traffic(r)
        lines = _read_log(log, 60)
        eq(len(lines), 60, "one access log line per request")
        text = _metrics(r)
        _promtool(text)

        # requests
        req = _series(text, "switchyard_requests_total")
        eq(sum(v for _, v in req), 60.0, "requests in /metrics")
        # tokens per direction, log vs metrics
        tok = _series(text, "switchyard_tokens_total")
        for field, direction in (("tokens_in", "input"), ("tokens_out", "output"),
                                 ("tokens_cached", "cached_input")):
            log_sum = sum(l[field] for l in lines)
            met_sum = sum(v for lab, v in tok if lab["direction"] == direction)
            eq(met_sum, float(log_sum), f"{field}: metrics vs log")
        check(sum(l["tokens_out"] for l in lines) > 0, "no tokens counted")
        # cost, log vs metrics, to 1e-9 USD
        cost_log = sum(l["cost_usd"] for l in lines if l["cost_usd"] is not None)
        cost_met = sum(v for _, v in _series(text, "switchyard_cost_usd_total"))
        check(abs(cost_log - cost_met) < 1e-9, f"cost: log {cost_log!r} vs metrics {cost_met!r}")
        check(cost_log > 0, "no cost recorded")
        orig_log = sum(l["cost_if_original_usd"] for l in lines
                       if l["cost_if_original_usd"] is not None)
        orig_met = sum(v for _, v in _series(text, "switchyard_cost_if_original_usd_total"))
        check(abs(orig_log - orig_met) < 1e-9, f"cost_if_original: {orig_log!r} vs {orig_met!r}")
        # unknown prices stay unknown, never zero
        unpriced = [l for l in lines if l["model"] == "no-price-model"]
        check(unpriced and all(l["cost_usd"] is None for l in unpriced), "unknown cost is null")
        check(all(l["tokens_out"] > 0 for l in unpriced), "unpriced requests still counted")
        check(not any(lab["model"] == "no-price-model"
                      for name in ("switchyard_cost_usd_total",
                                   "switchyard_cost_if_original_usd_total")
                      for lab, _ in _series(text, name)), "a cost series for no-price-model")
        unknown_met = sum(v for _, v in _series(text, "switchyard_requests_cost_unknown_total"))
        eq(unknown_met, float(len(unpriced)), "requests with unknown cost: metrics vs log")
        # fallbacks show up in both
        fb_log = sum(1 for l in lines if l["fallback"])
        fb_met = sum(v for _, v in _series(text, "switchyard_fallbacks_total"))
        eq(fb_met, float(fb_log), "fallbacks: metrics vs log")
        check(fb_log > 0, "the mix had no fallback")
        # report --format json, when the report command exists
        p = subprocess.run([binary("switchyard"), "report", "-c", r.config_path, "--format",
                            "json", log], capture_output=True, text=True, timeout=60, cwd=ROOT)
        eq(p.returncode, 0, f"report: {p.stderr}")
        rep = json.loads(p.stdout)["totals"]
        eq(rep["requests"], 60, "report requests")
        eq(rep["tokens_in"], sum(l["tokens_in"] for l in lines), "report tokens_in")
        eq(rep["tokens_out"], sum(l["tokens_out"] for l in lines), "report tokens_out")
        check(abs(rep["cost_usd"] - cost_log) < 1e-9, f"report cost {rep['cost_usd']!r}")
        check(abs(rep["cost_if_original_usd"] - orig_log) < 1e-9, "report cost_if_original")
        # every request of the mix is served, so the report's null costs are the unpriced ones
        check(all(_served(l) for l in lines), "a request of the mix was not served")
        eq(rep["requests_cost_unknown"], int(unknown_met), "report requests_cost_unknown")
    finally:
        for x in (r, n, o):
            x.stop()


def _label(value):
    """A label value as the exposition format escapes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _served(line):
    """The provider's answer reached the client: its tokens and cost apply."""
    return bool(line["attempts"]) and line["attempts"][-1]["class"] == "ok"


def case_unpriced_model_has_no_cost_series_and_is_counted_unknown():
    """A model without a price is never a cost of 0 in /metrics: its cost series is left
    out and the request is counted in switchyard_requests_cost_unknown_total. The same
    for the cost at the original's prices. A request nothing served has no cost to know."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    relay_only = NEW_PRICED + "\n      relay-only-model: { input: 1.00, output: 2.00 }"
    o, n, r, cfg = _stack(log, percentage=100, new_priced=relay_only)
    odd = 'odd"name\\x'  # a quote and a backslash: escaped in the label
    try:
        for i, (model, fault) in enumerate((("no-price-model", None), (odd, None),
                                            ("relay-only-model", None), ("gpt-4.1", None),
                                            ("no-price-model", "status=503"))):
            headers = {"x-user-id": f"unpriced-{i}"}
            if fault:
                headers["x-sim-fault"] = fault
            status, _, _ = r.chat({"model": model,
                                   "messages": [{"role": "user", "content": "price?"}]}, headers)
            check(status >= 500 if fault else status == 200, f"request {i} ({model}): {status}")
        lines = _read_log(log, 5)
        text = _metrics(r)
        _promtool(text)
        esc_odd = _label(odd)

        def by_pair(name):
            return {(lab["provider"], lab["model"]): v for lab, v in _series(text, name)}

        cost = by_pair("switchyard_cost_usd_total")
        orig = by_pair("switchyard_cost_if_original_usd_total")
        for model in ("no-price-model", esc_odd):
            check(not any(m == model for _, m in cost), f"cost series for {model}: {cost}")
            check(not any(m == model for _, m in orig), f"cost_if_original for {model}: {orig}")
        check(cost.get(("relay", "relay-only-model"), 0) > 0, f"relay-only cost: {cost}")
        check(("relay", "relay-only-model") not in orig, f"relay-only cost_if_original: {orig}")
        check(cost.get(("relay", "gpt-4.1"), 0) > 0 and orig.get(("relay", "gpt-4.1"), 0) > 0,
              f"gpt-4.1 costs: {cost} {orig}")
        check(0.0 not in cost.values() and 0.0 not in orig.values(),
              f"a cost of 0 stands for unknown: {cost} {orig}")

        for name in ("switchyard_requests_cost_unknown_total",
                     "switchyard_requests_cost_if_original_unknown_total"):
            check(f"# TYPE {name} counter\n" in text, f"{name} has no TYPE line")
            check(f"# HELP {name} " in text, f"{name} has no HELP line")
        unknown = by_pair("switchyard_requests_cost_unknown_total")
        eq(unknown, {("relay", "no-price-model"): 1.0, ("relay", esc_odd): 1.0},
           "switchyard_requests_cost_unknown_total")
        unknown_orig = by_pair("switchyard_requests_cost_if_original_unknown_total")
        eq(unknown_orig, {("relay", "no-price-model"): 1.0, ("relay", esc_odd): 1.0,
                          ("relay", "relay-only-model"): 1.0},
           "switchyard_requests_cost_if_original_unknown_total")

        # The log says the same: null costs of served requests, per provider and model.
        for field, counted in (("cost_usd", unknown), ("cost_if_original_usd", unknown_orig)):
            from_log = {}
            for l in lines:
                if _served(l) and l[field] is None:
                    k = (l["provider"], _label(l["model"]))
                    from_log[k] = from_log.get(k, 0) + 1.0
            eq(counted, from_log, f"unknown {field}: metrics vs log")
        # The 503 has a null cost too, but nothing was served: it is in neither counter
        # (the comparisons above are exact).
        failed = [l for l in lines if not _served(l)]
        eq(len(failed), 1, "the 503 is in the log")
        eq((failed[0]["model"], failed[0]["cost_usd"]), ("no-price-model", None), "the 503")
    finally:
        for x in (r, n, o):
            x.stop()


def case_cost_follows_the_price_table():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=100)
    try:
        status, _, data = r.chat({"model": "gpt-4.1", "messages": [{"role": "user",
                                                                    "content": "hello"}]},
                                 {"x-user-id": "price-1"})
        eq(status, 200, "status")
        usage = json.loads(data)["usage"]
        line = _read_log(log, 1)[0]
        eq(line["usage_source"], "upstream", "usage source")
        eq((line["tokens_in"], line["tokens_out"]),
           (usage["prompt_tokens"], usage["completion_tokens"]), "tokens from the upstream")
        want = (usage["prompt_tokens"] * 0.40 + usage["completion_tokens"] * 1.60) / 1e6
        check(abs(line["cost_usd"] - want) < 1e-15, f"cost {line['cost_usd']} want {want}")
        want_o = (usage["prompt_tokens"] * 2.00 + usage["completion_tokens"] * 8.00) / 1e6
        check(abs(line["cost_if_original_usd"] - want_o) < 1e-15, "cost_if_original")
        eq(line["provider"], "relay", "provider")
        eq(line["attempts"], [{"provider": "relay", "status": 200, "class": "ok",
                               "ms": line["attempts"][0]["ms"]}], "attempts")
        for k in ("ts", "request_id", "method", "path", "model", "stream", "variant",
                  "sticky_source", "status", "latency_ms", "first_byte_ms", "tokens_cached",
                  "fallback", "truncated", "wasted_cost_usd"):
            check(k in line, f"access log lacks {k}")
        eq(line["sticky_source"], "header:x-user-id", "sticky source")
    finally:
        for x in (r, n, o):
            x.stop()


def case_stream_without_usage_is_byte_identical_and_still_counted():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "count me"}],
            "stream": True}
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        status, h, via_router = r.chat(body, {"x-user-id": "bytes-1"})
        eq(status, 200, "status")
        sent = o.requests()[-1]["body"]
        check('"include_usage":true' in sent, f"usage not requested upstream: {sent}")
    finally:
        for x in (r, n, o):
            x.stop()
    direct_sim = Sim("original")  # same seed, same request number: the same stream
    try:
        status, _, direct = request("POST", direct_sim.host, direct_sim.port,
                                    "/v1/chat/completions", body)
        eq(status, 200, "direct status")
    finally:
        direct_sim.stop()
    check(b'"usage"' not in direct, "the direct stream has no usage")
    eq(via_router, direct, "the client's stream is byte for byte the provider's stream")
    line = _read_log(log, 1)[0]
    eq(line["usage_source"], "upstream", "usage recorded from the withheld chunk")
    check(line["tokens_out"] > 0 and line["tokens_in"] > 0, f"tokens: {line}")
    check(line["cost_usd"] > 0, "cost recorded")


def case_usage_on_the_finish_chunk_is_cut_out_not_the_chunk():
    """DeepSeek and Mistral send usage on the last content chunk, not on one of its own:
    a client that did not ask for usage gets that chunk without it, finish_reason and
    all, and the usage is still billed."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "finish"}],
                "stream": True}
        status, h1, data = r.chat(body, {"x-user-id": "last-1", "x-sim-fault": "usage_on_last"})
        eq(status, 200, "status")
        check(b'"usage"' not in data, f"usage reached a client that did not ask: {data[-300:]}")
        chunks = [json.loads(d) for _, d in sse_events(data) if d != "[DONE]"]
        finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
        eq(len(finish), 1, f"the finish chunk reached the client: {data[-300:]}")
        eq(finish[0]["choices"][0]["finish_reason"], "stop", "finish_reason")
        check(data.rstrip().endswith(b"data: [DONE]"), "the stream ends with [DONE]")
        # the client who asked for usage gets the provider's chunk as it was sent
        body["stream_options"] = {"include_usage": True}
        status, h2, asked = r.chat(body, {"x-user-id": "last-2", "x-sim-fault": "usage_on_last"})
        withusage = [json.loads(d) for _, d in sse_events(asked) if d != "[DONE]"
                     and json.loads(d).get("usage")]
        eq(len(withusage), 1, "the usage the client asked for")
        eq(withusage[0]["choices"][0]["finish_reason"], "stop", "on the finish chunk")
        lines = _by_id(_read_log(log, 2), h1, h2)  # workers write in either order
        for line in lines:
            eq(line["usage_source"], "upstream", "usage billed from the finish chunk")
        eq(lines[1]["tokens_out"], withusage[0]["usage"]["completion_tokens"], "tokens")
        eq(lines[0]["tokens_out"], lines[1]["tokens_out"], "same answer, same bill")
    finally:
        for x in (r, n, o):
            x.stop()


def _by_id(lines, *replies):
    """The log lines of these replies (their headers), in that order."""
    by = {l["request_id"]: l for l in lines}
    return [by[h["x-switchyard-request-id"]] for h in replies]


def _cost(usage, price_in=2.00, price_out=8.00, price_cached=0.50):
    """A usage object at the original's PRICED gpt-4.1 prices."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return ((usage["prompt_tokens"] - cached) * price_in + cached * price_cached +
            usage["completion_tokens"] * price_out) / 1e6


def _report_json(r, log):
    p = subprocess.run([binary("switchyard"), "report", "-c", r.config_path, "--format", "json",
                        log], capture_output=True, text=True, timeout=30, cwd=ROOT)
    eq(p.returncode, 0, f"report: {p.stderr}")
    return json.loads(p.stdout)["totals"]


def case_a_stream_cut_short_is_billed_as_wasted():
    """The provider bills a stream that breaks: with the usage it sent before breaking,
    exactly; without, an estimate. Neither may vanish from the log."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "cut me"}],
                "stream": True, "stream_options": {"include_usage": True}}
        # 10 events: the role chunk, 8 content chunks, the finish chunk with the usage
        status, h1, data = r.chat(body, {"x-user-id": "cut-1",
                                         "x-sim-fault": "usage_on_last,reset_after_chunks=10"})
        eq(status, 200, "status")
        usage = [json.loads(d)["usage"] for _, d in sse_events(data)
                 if d != "[DONE]" and "error" not in json.loads(d) and json.loads(d).get("usage")]
        eq(len(usage), 1, "the usage arrived before the cut")
        body.pop("stream_options")
        status, h2, _ = r.chat(body, {"x-user-id": "cut-2", "x-sim-fault": "reset_after_chunks=4"})
        lines = _by_id(_read_log(log, 2), h1, h2)
        for line in lines:
            check(line["truncated"], f"truncated: {line}")
            check(line["attempts"][-1]["class"] not in ("ok", "client_closed"), f"the cut: {line}")
        check(abs(lines[0]["wasted_cost_usd"] - _cost(usage[0])) < 1e-12,
              f"exact wasted {lines[0]['wasted_cost_usd']!r}, want {_cost(usage[0])!r}")
        check(lines[1]["wasted_cost_usd"] > 0, f"estimated wasted: {lines[1]}")
        rep = _report_json(r, log)
        check(abs(rep["wasted_cost_usd"] - lines[0]["wasted_cost_usd"] -
                  lines[1]["wasted_cost_usd"]) < 1e-12, f"report wasted {rep['wasted_cost_usd']}")
    finally:
        for x in (r, n, o):
            x.stop()


def _leave_after(r, body, headers, leave):
    """Sends a request and closes the socket once `leave` bytes came, or after `leave` s."""
    raw = json.dumps(body).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n" +
            "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    s = socket.create_connection((r.host, r.port))
    try:
        s.sendall(head + raw)
        if isinstance(leave, float):
            time.sleep(leave)
        else:
            got = b""
            s.settimeout(10)
            while len(got) < leave:
                chunk = s.recv(4096)
                check(chunk, "the stream ended before the client meant to leave")
                got += chunk
    finally:
        s.close()


def case_a_client_leaving_is_recorded_with_its_provider_and_spend():
    """A client that leaves mid-answer: its attempt is in the log with the provider that
    had it, the spend the provider billed is wasted, and the report counts the request
    as client-closed, stream (status 200 already sent) or not."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0, sim_args=("--chunk-ms", "300"))
    try:
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "leave me"}],
                "stream": True}
        _leave_after(r, body, {"x-user-id": "gone-1"}, 400)  # the head and a chunk or two
        body.pop("stream")
        _leave_after(r, body, {"x-user-id": "gone-2", "x-sim-fault": "delay_ms=3000"}, 0.5)
        lines = sorted(_read_log(log, 2), key=lambda l: l["stream"], reverse=True)
        eq([l["stream"] for l in lines], [True, False], "both requests logged")
        for line in lines:
            eq(line["provider"], "openai", f"the provider that had it: {line}")
            eq(len(line["attempts"]), 1, "one attempt")
            eq(line["attempts"][0]["class"], "client_closed", "the attempt's end")
            eq(line["attempts"][0]["provider"], "openai", "the attempt's provider")
            check(line["wasted_cost_usd"] > 0, f"what the provider billed: {line}")
        eq(lines[0]["status"], 200, "the stream's head was sent")
        eq(lines[1]["status"], 0, "nothing was sent")
        rep = _report_json(r, log)
        eq(rep["client_closed"], 2, f"report client_closed: {rep}")
        eq(rep["errors"], 0, "leaving is not an error")
        text = _metrics(r)
        att = [v for l, v in _series(text, "switchyard_attempts_total")
               if l.get("class") == "client_closed" and l.get("provider") == "openai"]
        eq(sum(att), 2, f"attempts_total client_closed: {att}")
    finally:
        for x in (r, n, o):
            x.stop()


def case_stream_with_usage_requested_keeps_it():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}],
                "stream": True, "stream_options": {"include_usage": True}}
        status, _, data = r.chat(body, {"x-user-id": "u"})
        events = sse_events(data)
        usage = [json.loads(d) for _, d in events if d != "[DONE]" and
                 json.loads(d).get("usage")]
        eq(len(usage), 1, "the usage chunk the client asked for")
        line = _read_log(log, 1)[0]
        eq(line["tokens_out"], usage[0]["usage"]["completion_tokens"], "tokens")
    finally:
        for x in (r, n, o):
            x.stop()


def case_missing_usage_is_estimated_and_marked():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        for stream in (False, True):
            status, _, _ = r.chat({"model": "gpt-4.1", "stream": stream,
                                   "messages": [{"role": "user", "content": "no usage please"}]},
                                  {"x-user-id": "est", "x-sim-fault": "no_usage"})
            eq(status, 200, "status")
        lines = _read_log(log, 2)
        for line in lines:
            eq(line["usage_source"], "estimated", f"usage source ({line['stream']})")
            check(line["tokens_in"] > 0 and line["tokens_out"] > 0, f"estimate: {line}")
            check(line["cost_usd"] is not None and line["cost_usd"] > 0, "estimated cost")
    finally:
        for x in (r, n, o):
            x.stop()


def case_routes_without_a_model_bill_no_tokens():
    """/v1/models and a pass-through route carry no tokens: no estimate of its body as a
    prompt (a file upload was counted as tokens_in, body bytes / 4)."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=0)
    try:
        status, _, _ = r.request("GET", "/v1/models", None, {"x-user-id": "m"})
        eq(status, 200, "/v1/models")
        r.request("POST", "/v1/files", {"purpose": "batch", "pad": "x" * 4000}, {"x-user-id": "f"})
        lines = _read_log(log, 2)
        for line in lines:
            eq((line["tokens_in"], line["tokens_out"]), (0, 0), f"no tokens: {line['path']}")
            eq(line["usage_source"], "none", f"nothing estimated: {line['path']}")
        text = _metrics(r)
        tok = [v for l, v in _series(text, "switchyard_tokens_total") if l.get("model") == ""]
        eq(sum(tok), 0.0, f"no tokens without a model in /metrics: {tok}")
    finally:
        for x in (r, n, o):
            x.stop()


def case_access_log_reopens_on_sigusr1():
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log)
    try:
        r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "a"})
        _read_log(log, 1)
        os.rename(log, log + ".1")
        r.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        r.chat({"model": "gpt-4.1", "messages": []}, {"x-user-id": "b"})
        eq(len(_read_log(log, 1)), 1, "new file after reopen")
        eq(len(_read_log(log + ".1", 1)), 1, "rotated file kept its line")
        text = open(log).read() + open(log + ".1").read()
        check("Bearer" not in text and "messages" not in text, "no key, no body in the log")
    finally:
        for x in (r, n, o):
            x.stop()


def case_the_log_gives_the_percentage_that_routed_the_request():
    """A request routed at 10% that ends after the flag went to 50% was logged at 50%:
    the report then counts it in the wrong stage, and the line contradicts its own
    variant (this key is `new` at 50%)."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=10, sim_args=("--latency-ms", "1500"))
    try:
        key = next(k for k in (f"pct-{i}" for i in range(1000))
                   if expected_variant("use_new_provider", k, 1000) == "original" and
                   expected_variant("use_new_provider", k, 5000) == "new")
        import threading
        done = []
        t = threading.Thread(target=lambda: done.append(r.chat(CHAT_BODY, {"x-user-id": key})))
        t.start()
        time.sleep(0.5)
        status, _, _ = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 50})
        eq(status, 200, "flag change")
        t.join(10)
        eq(done[0][0], 200, "the request")
        line = _read_log(log, 1)[0]
        eq(line["variant"], "original", "routed at 10%")
        eq(line["flag_percentage"], 10, f"the percentage that routed it: {line}")
    finally:
        for x in (r, n, o):
            x.stop()


def case_percentage_gauges_follow_what_routes():
    """An admin override (or a rollout stage) routes at another percentage than the
    file's: /metrics must show what routes, as OFREP and the access log do."""
    log = tmp_path(f"access-{time.monotonic_ns()}.jsonl")
    o, n, r, cfg = _stack(log, percentage=50)
    try:
        status, _, _ = r.admin("PUT", "/admin/flags/use_new_provider", {"percentage": 25})
        eq(status, 200, "flag change")
        text = _metrics(r)
        flag = [v for l, v in _series(text, "switchyard_flag_percentage")
                if l.get("flag") == "use_new_provider"]
        eq(flag, [25.0], "switchyard_flag_percentage")
        eq([v for _, v in _series(text, "switchyard_rollout_stage_percentage")], [25.0],
           "switchyard_rollout_stage_percentage")
    finally:
        for x in (r, n, o):
            x.stop()
