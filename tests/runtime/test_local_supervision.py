"""Issue 17, the supervisor's side, for real (llama-cpp-python on a tiny GGUF): crashes after
serving restart for ever with a capped backoff, a hung server is killed and restarted, `up` and
`vilms restart` heal a failed process, the previous run's logs survive `up` and `vilms logs`
reads and follows them, `status` tells an older build and `up` restarts only what changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from local_project import pid_alive, wait_until

# the runner tests' project: built once, copied per test, everything it started killed afterwards
from tests.runtime.test_local_runner import ENV, by_name, gateway_port, project, status_json, template, vilms  # noqa: F401

pytest.importorskip("llama_cpp")

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(120)]

SERVER = "llamacpp-tiny"


def up(root, *args: str) -> None:
    result = vilms(root, "up", *args)
    assert result.code == 0, result.out + result.err


def logs_dir(root):
    return root / ".vilms" / "run" / "dev" / "logs"


def serving_again(root, restarts: int):
    def check():
        code, report = status_json(root)
        server = by_name(report)[SERVER]
        return code == 0 and server["restarts"] == restarts and server["state"] == "running" and report
    return check


def test_a_server_killed_after_serving_is_restarted_every_time_never_failed(project):  # noqa: F811
    """Three SIGKILLs, each after it served again, with --give-up-after 1: never marked failed;
    the backoff doubles (quick exits in a row) and is capped by the policy."""
    up(project, "--restart-backoff", "0.05", "--give-up-after", "1")
    for n in range(1, 4):
        _, report = status_json(project)
        os.kill(by_name(report)[SERVER]["pid"], signal.SIGKILL)
        report = wait_until(serving_again(project, n), timeout_s=20)
        assert by_name(report)[SERVER]["exit_reason"] == "exited with signal SIGKILL"
    log = (logs_dir(project) / "supervisor.log").read_text()
    assert "restarting in 0.05 s" in log and "restarting in 0.1 s" in log and "restarting in 0.2 s" in log
    assert "marked failed" not in log


def test_a_sigstopped_server_is_killed_and_restarted(project):  # noqa: F811
    up(project)
    _, report = status_json(project)
    old = by_name(report)[SERVER]["pid"]
    os.kill(old, signal.SIGSTOP)
    try:
        report = wait_until(serving_again(project, 1), timeout_s=35)
    finally:
        if pid_alive(old):
            os.kill(old, signal.SIGKILL)
    server = by_name(report)[SERVER]
    assert server["pid"] != old and not pid_alive(old)
    assert server["exit_reason"].startswith("health probe failed 3 times"), server
    text = vilms(project, "status").out
    assert "health probe failed 3 times" in text


def test_up_restarts_a_failed_process_and_vilms_restart_restarts_one(project):  # noqa: F811
    up(project, "--restart-backoff", "0.05", "--give-up-after", "1")
    model = project / "models" / "tiny.gguf"
    good = model.read_bytes()
    model.write_bytes(good[:1000])  # its restart cannot load it
    _, report = status_json(project)
    os.kill(by_name(report)[SERVER]["pid"], signal.SIGKILL)

    def failed():
        code, report = status_json(project)
        return code == 1 and by_name(report)[SERVER]["state"] == "failed" and report
    wait_until(failed, timeout_s=30)
    text = vilms(project, "status").out
    assert f"`vilms restart {SERVER}`" in text and "`vilms up dev`" in text, text
    model.write_bytes(good)
    result = vilms(project, "up")
    assert result.code == 0 and f"restarted {SERVER}, which had failed" in result.out, result.out + result.err
    code, report = status_json(project)
    assert code == 0 and by_name(report)[SERVER]["state"] == "running"
    gateway_pid = by_name(report)["gateway"]["pid"]
    old = by_name(report)[SERVER]["pid"]

    result = vilms(project, "restart", SERVER)
    assert result.code == 0 and f"restarted {SERVER}" in result.out, result.out + result.err
    code, report = status_json(project)
    server = by_name(report)[SERVER]
    assert code == 0 and server["pid"] != old and server["exit_reason"] == "restarted by `vilms restart`"
    assert by_name(report)["gateway"]["pid"] == gateway_pid  # only the named one
    result = vilms(project, "restart", "nope")
    assert result.code != 0 and "no process 'nope'" in result.err and "Traceback" not in result.err


def test_the_previous_logs_survive_up_and_vilms_logs_prints_and_follows_them(project):  # noqa: F811
    up(project)
    first_pid = by_name(status_json(project)[1])[SERVER]["pid"]
    assert vilms(project, "down").code == 0
    up(project)
    previous = (logs_dir(project) / f"{SERVER}.log.1").read_text()
    assert "starting llamacpp-tiny" in previous and "stopped (exit" in previous
    assert (logs_dir(project) / "supervisor.log.1").read_text().count(f"started {SERVER} (pid {first_pid})") == 1

    result = vilms(project, "logs", SERVER, "-n", "5")
    assert result.code == 0 and len(result.out.splitlines()) <= 5 and result.out.strip(), result.out
    everything = vilms(project, "logs").out
    assert f"==> {SERVER} (" in everything and "==> supervisor (" in everything

    follower = subprocess.Popen([sys.executable, "-m", "vilms", "logs", "-f", "-n", "0", SERVER], cwd=project,
                                env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # it reaches the end of the log
        log = logs_dir(project) / f"{SERVER}.log"
        with open(log, "a") as fh:
            fh.write("marker before rotation\n")
        time.sleep(0.5)
        os.truncate(log, 0)  # copy-truncate rotation, as the supervisor does at 20 MiB
        with open(log, "a") as fh:
            fh.write("marker after rotation\n")
        time.sleep(1.0)
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=15)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert "marker before rotation" in out and "marker after rotation" in out, out + err
    assert follower.returncode == 130 and "Traceback" not in err, err


def test_status_reports_an_older_build_and_up_restarts_only_the_changed_server(project, gateway_port, snapshot):  # noqa: F811
    up(project)
    code, report = status_json(project)
    assert code == 0 and report["build"] == "current"
    assert snapshot == _shape(report)
    before = {p["name"]: p["pid"] for p in report["processes"]}
    doc = yaml.safe_load((project / "vilms.yaml").read_text())
    doc["models"]["tiny"]["context"] = 512
    (project / "vilms.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert vilms(project, "build").code == 0

    code, report = status_json(project)
    assert code == 1 and report["build"] == "running an older build", report
    assert "running an older build" in vilms(project, "status").out

    result = vilms(project, "up")
    assert result.code == 0 and f"restarted {SERVER}" in result.out and "gateway" not in result.out.split("\n")[0], result.out
    code, report = status_json(project)
    after = {p["name"]: p["pid"] for p in report["processes"]}
    assert code == 0 and report["build"] == "current"
    assert after["gateway"] == before["gateway"] and after[SERVER] != before[SERVER]
    cmdline = open(f"/proc/{after[SERVER]}/cmdline", "rb").read().split(b"\0")
    config = [a for a in cmdline if a.endswith(b".json")]
    assert not config or b'"n_ctx": 512' in open(config[0], "rb").read().replace(b'"n_ctx":512', b'"n_ctx": 512')


def _shape(value):
    """The JSON's keys and value types: what the snapshot pins, not the pids or times."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_up_after_a_dead_supervisor_says_it_cleaned_its_state_and_keeps_its_logs(project):  # noqa: F811
    up(project)
    _, report = status_json(project)
    children = [p["pid"] for p in report["processes"]]
    os.kill(report["supervisor_pid"], signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in children), timeout_s=5)  # PR_SET_PDEATHSIG
    result = vilms(project, "up")
    assert result.code == 0 and "previous supervisor of dev had died; removed the state it left" in result.out, result.out
    assert "starting llamacpp-tiny" in (logs_dir(project) / f"{SERVER}.log.1").read_text()
