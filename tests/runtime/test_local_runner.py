"""`vilms up` / `status` / `down` for real: llama.cpp servers on a tiny GGUF and the gateway,
run by the supervisor as processes, probed over HTTP, killed with signals.

Each test works on its own copy of a project built once; its finalizer stops the runner
and SIGKILLs by process group anything still naming the project's folder, so a failing
test leaves no llama.cpp server behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
import yaml
from local_project import (
    API_KEY,
    KEYS_ENV,
    LLAMACPP_PORT,
    chat,
    free_port,
    kill_all_under,
    pid_alive,
    processes_under,
    require_llamacpp_port,
    wait_until,
    write_hf_cache,
    write_project,
)

from tests.conftest import run_vilms
from vilms.compiler.contracts.runner_state import RUNNER_STATE

pytest.importorskip("llama_cpp")
pytest.importorskip("httptools")
pytest.importorskip("gguf")

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(120)]

ENV = {KEYS_ENV: API_KEY}


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def template(tmp_path_factory, gateway_port) -> Path:
    """A project serving the tiny GGUF, built once."""
    require_llamacpp_port()
    root = tmp_path_factory.mktemp("local-template")
    write_project(root, gateway_port=gateway_port)
    assert run_vilms("build", cwd=root).code == 0
    return root


@pytest.fixture
def project(template, tmp_path):
    """A fresh copy of the built project; everything it started is gone afterwards."""
    root = tmp_path / "project"
    shutil.copytree(template, root)
    yield root
    run_vilms("down", "--timeout", "20", cwd=root, env=ENV)
    left = kill_all_under(root)
    assert not left, f"processes left running: {left}"


def vilms(root: Path, *args: str, env: dict | None = None):
    return run_vilms(*args, cwd=root, env={**ENV, **(env or {})})


def status_json(root: Path) -> tuple[int, dict]:
    result = vilms(root, "status", "--format", "json")
    return result.code, json.loads(result.out)


def by_name(report: dict) -> dict[str, dict]:
    return {p["name"]: p for p in report["processes"]}


# -- the happy path ---------------------------------------------------------------------

def test_up_serves_chat_reports_healthy_and_down_stops_everything(project, gateway_port):
    started = time.monotonic()
    result = vilms(project, "up")
    up_s = time.monotonic() - started
    assert result.code == 0, result.err
    assert f"gateway: http://127.0.0.1:{gateway_port}/v1" in result.out
    assert "llamacpp-tiny" in result.out and f"http://127.0.0.1:{LLAMACPP_PORT}" in result.out
    print(f"vilms up took {up_s:.2f} s")

    status, headers, body = chat(gateway_port)
    assert status == 200 and body["object"] == "chat.completion" and body["choices"]
    assert headers["x-vilms-backend"] == "llamacpp-tiny"

    code, report = status_json(project)
    assert code == 0 and report["healthy"] is True and report["status"] == "running"
    procs = by_name(report)
    assert set(procs) == {"llamacpp-tiny", "gateway"}
    assert all(p["state"] == "running" and p["health"] == "ok" and p["restarts"] == 0 for p in procs.values())
    assert procs["gateway"]["port"] == gateway_port and procs["llamacpp-tiny"]["port"] == LLAMACPP_PORT
    pids = [report["supervisor_pid"], *(p["pid"] for p in procs.values())]
    assert all(pid_alive(pid) for pid in pids)
    state_file = project / ".vilms" / "run" / "dev" / "state.json"
    assert state_file.is_file() and (project / ".vilms" / "run" / "dev" / "logs" / "llamacpp-tiny.log").stat().st_size > 0
    assert API_KEY not in state_file.read_text()  # secrets travel in the environment only
    state = RUNNER_STATE.load(state_file)  # the real file loads through its contract
    assert state.status == "running" and state.supervisor.pid == report["supervisor_pid"]
    assert {p.name: p.pid for p in state.processes} == {name: p["pid"] for name, p in procs.items()}
    assert state.gateway_url == f"http://127.0.0.1:{gateway_port}" and state.error is None
    assert (project / ".vilms" / "run" / ".gitignore").read_text().endswith("*\n")  # run state stays out of git

    text = vilms(project, "status")
    assert text.code == 0 and "deployment dev: running, healthy" in text.out

    again = vilms(project, "up")
    assert again.code == 0 and "already running" in again.out

    started = time.monotonic()
    stopped = vilms(project, "down")
    down_s = time.monotonic() - started
    assert stopped.code == 0 and "stopped deployment dev" in stopped.out, stopped.err
    print(f"vilms down took {down_s:.2f} s")
    assert not any(pid_alive(pid) for pid in pids)
    assert not processes_under(project)
    assert not state_file.exists()

    code, report = status_json(project)
    assert code == 1 and report["status"] == "stopped" and report["healthy"] is False
    assert {p["state"] for p in report["processes"]} == {"stopped"}
    assert "deployment dev: stopped" in vilms(project, "status").out

    twice = vilms(project, "down")
    assert twice.code == 0 and "not running" in twice.out


def test_a_routes_only_build_reaches_the_gateway_at_up_not_at_build(project, gateway_port):
    """The gateway serves the supervisor's copy of the routes: `vilms build` changes nothing that
    runs; the next `vilms up` swaps the copy and restarts nothing."""
    assert vilms(project, "up").code == 0
    copy = project / ".vilms" / "run" / "dev" / "routes.yaml"
    built = project / "generated" / "dev" / "gateway" / "routes.yaml"
    assert copy.read_bytes() == built.read_bytes()
    before = {p.name: p.pid for p in RUNNER_STATE.load(project / ".vilms" / "run" / "dev" / "state.json").processes}
    doc = yaml.safe_load((project / "vilms.yaml").read_text())
    doc["aliases"]["hello"] = "tiny"
    (project / "vilms.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    old = copy.read_bytes()
    assert vilms(project, "build").code == 0
    assert built.read_bytes() != old and copy.read_bytes() == old
    result = vilms(project, "up")
    assert result.code == 0 and "no process needed a restart" in result.out, result.out + result.err
    assert copy.read_bytes() == built.read_bytes()
    state = RUNNER_STATE.load(project / ".vilms" / "run" / "dev" / "state.json")
    assert {p.name: p.pid for p in state.processes} == before
    deadline = time.monotonic() + 10  # the supervisor told the gateway (SIGHUP); it reloads in its own loop
    while True:
        try:
            status, _, _ = chat(gateway_port, "hello")
            break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and time.monotonic() < deadline
            time.sleep(0.05)
    assert status == 200
    assert "already running" in vilms(project, "up").out


def test_two_concurrent_ups_start_one_supervisor(project, gateway_port):
    argv = [sys.executable, "-m", "vilms", "up"]
    env = {**os.environ, **ENV}
    procs = [subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert [code for code, _out, _err in results] == [0, 0], results
    assert sum("is already" in out for _code, out, _err in results) == 1, results
    supervisors = [cmd for cmd in processes_under(project).values() if "-m vilms supervise" in cmd]
    assert len(supervisors) == 1, supervisors
    assert chat(gateway_port)[0] == 200


def test_a_killed_llamacpp_server_is_restarted_and_serves_again(project, gateway_port):
    assert vilms(project, "up").code == 0
    _, report = status_json(project)
    old = by_name(report)["llamacpp-tiny"]["pid"]
    os.kill(old, signal.SIGKILL)

    def restarted():
        code, report = status_json(project)
        server = by_name(report)["llamacpp-tiny"]
        return code == 0 and server["restarts"] == 1 and server["state"] == "running" and report
    report = wait_until(restarted, timeout_s=20)
    assert by_name(report)["llamacpp-tiny"]["pid"] != old and not pid_alive(old)
    assert chat(gateway_port)[0] == 200
    log = (project / ".vilms" / "run" / "dev" / "logs" / "supervisor.log").read_text()
    assert "llamacpp-tiny exited with signal SIGKILL" in log and "restarting in 0.5 s" in log


def test_a_server_that_keeps_crashing_is_marked_failed(project, gateway_port):
    assert vilms(project, "up", "--restart-backoff", "0.05", "--give-up-after", "2").code == 0
    _, report = status_json(project)
    model = project / "models" / "tiny.gguf"
    model.write_bytes(model.read_bytes()[:1000])  # every restart now fails to load
    os.kill(by_name(report)["llamacpp-tiny"]["pid"], signal.SIGKILL)

    def failed():
        code, report = status_json(project)
        return code == 1 and by_name(report)["llamacpp-tiny"]["state"] == "failed" and report
    report = wait_until(failed, timeout_s=20)
    server, gateway = by_name(report)["llamacpp-tiny"], by_name(report)["gateway"]
    # the crash after serving does not count; the two starts after it never served
    assert server["pid"] is None and server["restarts"] == 2
    assert gateway["state"] == "running" and gateway["health"] == "ok"  # the rest keeps serving
    assert "marked failed" in (project / ".vilms" / "run" / "dev" / "logs" / "supervisor.log").read_text()
    assert vilms(project, "down").code == 0
    assert not processes_under(project)


def test_a_dead_supervisor_takes_its_children_along_and_its_state_is_cleaned(project):
    assert vilms(project, "up").code == 0
    _, report = status_json(project)
    children = [p["pid"] for p in report["processes"]]
    os.kill(report["supervisor_pid"], signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in children), timeout_s=5)  # PR_SET_PDEATHSIG

    result = vilms(project, "status")
    assert result.code == 1 and "stale state cleaned" in result.out
    assert not (project / ".vilms" / "run" / "dev" / "state.json").exists()
    assert "not running" in vilms(project, "down").out


def test_foreground_up_stops_everything_on_ctrl_c(project, gateway_port):
    proc = subprocess.Popen([sys.executable, "-m", "vilms", "up", "--foreground"], cwd=project,
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any(f"gateway: http://127.0.0.1:{gateway_port}/v1" in line for line in lines), lines
        assert chat(gateway_port)[0] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped deployment dev" in out and "SIGINT received: stopping" in err
    assert err.index("stopped gateway") < err.index("stopped llamacpp-tiny")  # the gateway drains first
    assert not processes_under(project)


# -- refusals: exit 1, a clear message, nothing started ----------------------------------

def assert_refused(result, *needles: str) -> None:
    assert result.code == 1, (result.out, result.err)
    own = result.err.split("\n--- last lines of ")[0]  # a quoted child log may hold the child's traceback
    assert "Traceback" not in own and "internal error" not in own
    for needle in needles:
        assert needle in result.err, result.err


def assert_nothing_runs(root: Path) -> None:
    assert not processes_under(root)
    assert not (root / ".vilms" / "run" / "dev" / "state.json").exists()


def test_up_without_a_build_asks_for_one(project):
    shutil.rmtree(project / "generated")
    assert_refused(vilms(project, "up"), "generated/dev/local.yaml does not exist", "run `vilms build")
    assert_nothing_runs(project)


def test_up_refuses_a_stale_build(project):
    file = project / "vilms.yaml"
    file.write_text(file.read_text().replace("context: 256", "context: 384"))
    result = vilms(project, "up")
    assert result.code == 4, result.err  # the drift code of `build --check`
    assert "generated/dev/ is not what vilms.yaml compiles to" in result.err and "generated/dev/local.yaml: differs" in result.err
    assert_nothing_runs(project)


def test_up_names_a_missing_model_file(project):
    (project / "models" / "tiny.gguf").unlink()
    assert_refused(vilms(project, "up"), "llamacpp-tiny: model file models/tiny.gguf does not exist")
    assert_nothing_runs(project)


def test_up_names_a_port_in_use(project, gateway_port):
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # earlier tests' connections may be in TIME_WAIT
        busy.bind(("127.0.0.1", gateway_port))
        busy.listen()
        assert_refused(vilms(project, "up"), f"port already in use: 127.0.0.1:{gateway_port} (gateway)", "gateway_port")
    assert_nothing_runs(project)


def test_up_names_an_unset_api_key_variable(project):
    result = run_vilms("up", cwd=project, env={KEYS_ENV: ""})
    assert_refused(result, f"reads {KEYS_ENV} from the environment", f"export {KEYS_ENV}=")
    assert_nothing_runs(project)


def test_down_when_nothing_runs(project, tmp_path):
    result = vilms(project, "down")
    assert result.code == 0 and "not running" in result.out
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "vilms.yaml").write_text("apiVersion: vilms/v1\n")
    result = vilms(empty, "down")
    assert result.code == 0 and "no local deployment is running" in result.out


def test_the_deployment_is_named_when_it_is_ambiguous(project, gateway_port):
    file = project / "vilms.yaml"
    data = yaml.safe_load(file.read_text())
    data["deployments"]["dev2"] = {"hardware": "box", "target": "local", "engine": "llamacpp", "gateway_port": gateway_port}
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    assert vilms(project, "build").code == 0
    result = vilms(project, "up")
    assert result.code == 2 and "2 deployments have target local (dev, dev2)" in result.err
    result = vilms(project, "up", "dev3")
    assert result.code == 2 and "unknown deployment 'dev3'" in result.err
    result = vilms(project, "status")
    assert result.code == 2 and "name a deployment" in result.err
    assert_nothing_runs(project)


# -- weights from the Hugging Face cache -------------------------------------------------

def test_hf_weights_come_from_the_local_cache_only(project, gateway_port):
    tiny = project / "models" / "tiny.gguf"
    shutil.rmtree(project / "generated")
    write_project(project, gateway_port=gateway_port, gguf="hf:test-org/tiny-GGUF")
    assert vilms(project, "build").code == 0
    cache = project / "hf-cache"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = vilms(project, "up", env=env)
    assert_refused(result, "llamacpp-tiny: weights hf:test-org/tiny-GGUF (*q4_k_m*.gguf) are not in the local Hugging Face cache",
                   "download test-org/tiny-GGUF")
    assert_nothing_runs(project)

    write_hf_cache(cache, "test-org/tiny-GGUF", "tiny-Q4_K_M.gguf", tiny)
    result = vilms(project, "up", env=env)
    assert result.code == 0, result.err
    assert chat(gateway_port)[0] == 200
    log = (project / ".vilms" / "run" / "dev" / "logs" / "llamacpp-tiny.log").read_text()
    assert "tiny-Q4_K_M.gguf" in log  # the command line the supervisor logged
    assert vilms(project, "down").code == 0


# -- parts, without processes ------------------------------------------------------------

def test_restart_policy_backs_off_exponentially_capped_and_gives_up_only_on_starts_that_never_served():
    from vilms.runtime.local.policy import RestartPolicy

    policy = RestartPolicy(backoff_s=0.5, max_backoff_s=4, stable_s=60, give_up_after=5)
    streak, delays = 0, []
    for _ in range(7):
        streak = policy.streak_after(streak, ran_for_s=1.0)
        delays.append(policy.delay(streak))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]  # capped, never None: a crash after serving restarts
    assert policy.streak_after(6, ran_for_s=600.0) == 1  # a long run resets the backoff
    assert policy.delay(10_000) == 4  # no overflow however long the streak
    assert [policy.gives_up(n) for n in (1, 4, 5)] == [False, False, True]


def test_a_symlinked_vilms_yaml_finds_the_build_beside_the_real_file(project, tmp_path):
    """`vilms build` writes generated/ beside the real file; the runner must look there too."""
    link_dir = tmp_path / "elsewhere"
    link_dir.mkdir()
    (link_dir / "vilms.yaml").symlink_to(project / "vilms.yaml")
    code, report = status_json(link_dir)
    assert report["deployment"] == "dev" and report["status"] == "stopped", report


HANGS_AFTER_FIRST_START = """\
import http.server, os, sys, time
port, marker = int(sys.argv[1]), sys.argv[2]
if os.path.exists(marker):
    time.sleep(3600)  # every restart hangs: alive, never answering
open(marker, "w").close()
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def test_restarts_that_never_answer_count_as_starts_that_never_served(tmp_path):
    """A restart that stays alive but silent past the timeout never served, however long the
    timeout (here 3 s, longer than the 2 s of a stable run): three in a row mark it failed."""
    import threading

    from vilms.compiler.contracts.local_plan import LocalGateway, LocalPlan, Server, Weights
    from vilms.runtime.local.launch import Launch
    from vilms.runtime.local.policy import RestartPolicy
    from vilms.runtime.local.state import RunDir
    from vilms.runtime.local.supervisor import Supervisor

    script = tmp_path / "server.py"
    script.write_text(HANGS_AFTER_FIRST_START)
    port = free_port()
    launch = Launch("srv", "llamacpp", (sys.executable, str(script), str(port), str(tmp_path / "started")),
                    "127.0.0.1", port, "/")
    server = Server("srv", "srv", Weights("m.gguf", None), 256, 1, 0, 1, (), "127.0.0.1", port)
    plan = LocalPlan("hang", (server,), LocalGateway("127.0.0.1", 1, "hang/gateway/routes.yaml"))
    supervisor = Supervisor(plan, [launch], RunDir(tmp_path / "run"), tmp_path / "vilms.yaml",
                            policy=RestartPolicy(backoff_s=0.1, stable_s=2, give_up_after=3), start_timeout_s=3)
    seen: dict[str, object] = {}

    def crash_once_then_watch() -> None:
        try:
            wait_until(lambda: supervisor.children[0].status == "running", timeout_s=10)
            os.kill(supervisor.children[0].proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            seen["failed"] = wait_until(lambda: supervisor.children[0].status == "failed", timeout_s=30)
        finally:
            supervisor.stopping = True  # the supervisor stops whatever happened here

    watcher = threading.Thread(target=crash_once_then_watch, daemon=True)
    watcher.start()
    supervisor.run()
    watcher.join(5)
    child = supervisor.children[0]
    # the kill after serving restarts it; the three restarts that never answer mark it failed
    assert seen.get("failed") and (child.status, child.restarts) == ("failed", 3), (child.status, child.restarts)


def test_an_up_that_joins_a_failing_start_fails_too(project):
    model = project / "models" / "tiny.gguf"
    model.write_bytes(model.read_bytes()[:1000])  # a truncated GGUF: refused by the preflight, or llama.cpp
    argv = [sys.executable, "-m", "vilms", "up"]
    env = {**os.environ, **ENV}
    first = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (project / ".vilms" / "run" / "dev" / "lock").exists(), timeout_s=20, interval_s=0.02)
    second = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [(p.wait(timeout=60), *p.communicate()) for p in (first, second)]
    assert [code for code, _out, _err in results] == [1, 1], results
    joined = results[1][2]
    # the joiner waits for the start it joined and fails with it, or (starting after it ended)
    # makes the same checks and refuses the same truncated file
    assert any(said in joined for said in ("did not start", "by another command, and it is not running",
                                           "truncated or corrupt GGUF file")), joined
    assert_nothing_runs(project)


def test_a_file_where_the_run_folder_goes_is_reported_not_a_crash(project):
    shutil.rmtree(project / ".vilms")  # the build made it (its lock); a file stands there now
    (project / ".vilms").write_text("not a folder\n")
    assert vilms(project, "status").code == 1 and "stopped" in vilms(project, "status").out
    assert vilms(project, "down").code == 0
    result = vilms(project, "up")
    assert_refused(result, "cannot write the run folder")
