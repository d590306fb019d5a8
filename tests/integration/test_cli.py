"""The command line: `switchyard check` and start-up failures."""
import os
import re
import subprocess

from harness import ROOT, binary, check, eq, tmp_path


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([binary("switchyard"), *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=30, env=e, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def case_check_default_config_ok():
    rc, out, err = run("check", "-c", "configs/switchyard.yaml")
    eq(rc, 0, f"exit status ({err})")
    check("ok" in out, out)


def case_check_misspelt_key_reports_location():
    path = tmp_path("misspelt.yaml")
    with open(path, "w") as f:
        f.write(open(os.path.join(ROOT, "configs/switchyard.yaml")).read()
                .replace("connect_ms:", "conect_ms:", 1).replace("percentage:", "percentag:", 1))
    rc, out, err = run("check", "-c", path)
    eq(rc, 1, "exit status")
    lines = [l for l in err.splitlines() if l.startswith(path + ":")]
    check(len(lines) >= 2, f"every error reported with FILE:LINE:COL:\n{err}")
    for l in lines:
        check(re.match(re.escape(path) + r":\d+:\d+: ", l), f"location format: {l}")
    check(any("conect_ms" in l and "connect_ms" in l for l in lines), f"near-miss hint:\n{err}")
    check(any("percentag" in l and "percentage" in l for l in lines), f"near-miss hint:\n{err}")


def case_check_missing_env_var_named():
    path = tmp_path("envvar.yaml")
    with open(path, "w") as f:
        f.write(open(os.path.join(ROOT, "configs/examples/real-providers.yaml")).read())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    p = subprocess.run([binary("switchyard"), "check", "-c", path], cwd=ROOT, capture_output=True,
                       text=True, timeout=30, env=env)
    eq(p.returncode, 1, "exit status")
    check("ORIGINAL_API_KEY" in p.stderr, f"variable named:\n{p.stderr}")
    rc, out, err = run("check", "-c", path,
                       env={"ORIGINAL_API_KEY": "sk-test-1", "NEW_API_KEY": "sk-test-2",
                            "SWITCHYARD_ADMIN_TOKEN": "tok-test-3"})
    eq(rc, 0, f"with the variables set: {err}")
    check("sk-test" not in out + err and "tok-test" not in out + err, "a key was printed")


def case_run_refuses_invalid_config():
    path = tmp_path("invalid.yaml")
    with open(path, "w") as f:
        f.write("listen: [1, 2]\nproviders: {}\n")
    rc, out, err = run("-c", path)
    eq(rc, 1, "exit status")
    check(re.search(re.escape(path) + r":1:\d+: ", err), f"location:\n{err}")
