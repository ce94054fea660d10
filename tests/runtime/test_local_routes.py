"""The local gateway routes by what the runner applied, never by what was merely built.

llama-server loads its adapters at start; the gateway selects one per request by its slot
(the index in that list), read from the routes. A release that adds an adapter sorting
before another shifts that other's slot. The supervisor owns the routes the gateway serves
(a copy in the run folder), so between `vilms build` and `vilms up` the gateway keeps the
old slots, and applying swaps the copy only once the changed server is down.

A real supervisor, the real gateway, and a fake llama-server (same command line) that
answers with the adapter file it applies for the request's ``lora`` scales, and records its
start, its stop, and the routes copy it saw at each.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from gateway_harness import routes_doc

from vilms.compiler.contracts.local_plan import LocalGateway, LocalPlan, Lora, Server, Weights
from vilms.compiler.contracts.runner_state import RUNNER_STATE
from vilms.compiler.layout import Layout
from vilms.runtime.local.launch import launches
from vilms.runtime.local.state import RunDir
from vilms.runtime.local.supervisor import RELOAD_SIGNAL, Supervisor

SUPPORT = "artifacts/support-v1-20261120T091500Z-5c4b3a/gguf/adapter.gguf"
FAQ = "artifacts/faq-v1-20261121T080000Z-0a0b0c/gguf/adapter.gguf"
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}

FAKE_LLAMA_SERVER = """\
#!{python}
import hashlib, http.server, json, os, signal, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
lora = args[args.index("--lora") + 1].split(",") if "--lora" in args else []
# servers get an allow-listed environment: the test's settings come from a file beside this script
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-env.json")) as fh:
    FAKE = json.load(fh)
reported = list(reversed(lora)) if FAKE.get("FAKE_MISREPORT") else lora

def note(what):
    with open(FAKE["FAKE_COPY"], "rb") as fh:
        copy = hashlib.sha256(fh.read()).hexdigest()
    with open(FAKE["FAKE_EVENTS"], "a") as fh:
        fh.write(json.dumps([what, lora, copy]) + "\\n")

class H(http.server.BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/lora-adapters":
            return self.reply(200, [{{"id": i, "path": p, "scale": 0.0}} for i, p in enumerate(reported)])
        self.reply(200, {{"status": "ok"}})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        scales = body.get("lora") or []
        if any(s["id"] >= len(lora) for s in scales):  # as llama-server: an unknown id is an error
            return self.reply(400, {{"error": {{"message": "invalid adapter id", "type": "invalid_request_error"}}}})
        applied = [lora[s["id"]] for s in scales if s["scale"] == 1.0]
        answer = applied[0] if applied else "base"
        if body.get("stream"):  # as llama-server: SSE chunks, the last with finish_reason, then [DONE]
            head = {{"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}}
            events = [dict(head, choices=[{{"index": 0, "delta": {{"role": "assistant", "content": answer}},
                                           "finish_reason": None}}]),
                      dict(head, choices=[{{"index": 0, "delta": {{}}, "finish_reason": "stop"}}])]
            data = b"".join(b"data: " + json.dumps(e).encode() + b"\\n\\n" for e in events) + b"data: [DONE]\\n\\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        self.reply(200, {{"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                          "choices": [{{"index": 0, "message": {{"role": "assistant", "content": answer}},
                                        "finish_reason": "stop"}}],
                          "usage": {{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}}})
    def log_message(self, *a): pass

def stop(*_):
    note("stop")
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
note("start")
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Project:
    """A project folder with the files a plan names, a fake llama-server, and its builds."""

    def __init__(self, root: Path, binary: Path | None = None) -> None:
        self.root = root
        self.layout = Layout(root)
        self.run_dir = RunDir(root / ".vilms" / "run" / "dev")
        self.server_port, self.gateway_port = _free_port(), _free_port()
        for path in ("models/tiny.gguf", SUPPORT, FAQ):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(b"")
        self.binary = binary or root / "bin" / "llama-server"
        if binary is None:
            self.binary.parent.mkdir()
            self.binary.write_text(FAKE_LLAMA_SERVER.format(python=sys.executable))
            self.binary.chmod(0o755)
        self.events = root / "events.jsonl"
        self.env = {**os.environ, "FAKE_EVENTS": str(self.events), "FAKE_COPY": str(self.run_dir.routes_file)}
        self.routes = self.layout.routes("dev")
        self.plan: LocalPlan | None = None

    def build(self, adapters: dict[str, str], aliases: dict[str, str]) -> bytes:
        """What `vilms build` writes: local.yaml's plan (adapters in slot order: sorted by
        name) and routes.yaml; ``aliases``: alias → adapter. Returns the routes' bytes."""
        names = sorted(adapters)
        server = Server(name="llamacpp-tiny", model_alias="tiny", model=Weights(file="models/tiny.gguf", hf=None),
                        context=256, threads=1, gpu_layers=0, parallel=2,
                        lora=tuple(Lora(adapter=n, file=adapters[n]) for n in names),
                        host="127.0.0.1", port=self.server_port)
        self.plan = LocalPlan(deployment="dev", servers=(server,),
                              gateway=LocalGateway(host="127.0.0.1", port=self.gateway_port,
                                                   routes="dev/gateway/routes.yaml"))
        routed = {"chat": {"backend": "tiny", "model": "tiny"}}
        for alias, adapter in aliases.items():
            routed[alias] = {"backend": "tiny", "model": adapter,
                             "adapter": {"name": adapter, "released": True, "slot": names.index(adapter)}}
        doc = routes_doc({"tiny": {"engine": "llamacpp", "endpoints": [f"http://127.0.0.1:{self.server_port}"]}},
                         routed)
        self.routes.parent.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_dump(doc, sort_keys=True).encode()
        self.routes.write_bytes(data)
        return data

    def planned(self):  # type: ignore[no-untyped-def]
        assert self.plan is not None
        return self.plan, launches(self.plan, self.layout, self.run_dir.path, llama_server=self.binary)

    def supervisor(self) -> Supervisor:
        plan, planned = self.planned()
        if self.binary.parent.is_dir():  # the fake's settings (see FAKE_LLAMA_SERVER)
            fake = {k: v for k, v in self.env.items() if k.startswith("FAKE_")}
            (self.binary.parent / "fake-env.json").write_text(json.dumps(fake))
        return Supervisor(plan, planned, self.run_dir, self.root / "vilms.yaml", start_timeout_s=30, env=self.env,
                          cwd=self.root, reload=self.planned, routes=self.routes)

    def ask(self, alias: str) -> tuple[int, str]:
        body = json.dumps({**CHAT, "model": alias, "max_tokens": 8, "temperature": 0}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.gateway_port}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def reloads(self) -> int:
        """How many routes reloads the gateway accepted (its metrics)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith('vilms_gateway_reloads_total{result="ok"}'))

    def event_log(self) -> list[tuple[str, list[str], str]]:
        return [tuple(json.loads(line)) for line in self.events.read_text().splitlines()]  # type: ignore[misc]


def until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def supervise(supervisor: Supervisor, scenario: Callable[[], None]) -> None:
    """Run the supervisor in this (the main) thread, ``scenario`` beside it once it serves."""
    failures: list[BaseException] = []

    def in_thread() -> None:
        try:
            scenario()
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)
        finally:
            supervisor.stopping = True

    assert supervisor.run(lambda _state: threading.Thread(target=in_thread, daemon=True).start()) == 0
    if failures:
        raise failures[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_release_reaches_the_gateway_only_when_applied_and_after_the_old_server_stopped(tmp_path):
    project = Project(tmp_path)
    v1 = project.build({"support-v1": SUPPORT}, {"support-bot": "support-v1"})
    supervisor = project.supervisor()
    copy = project.run_dir.routes_file

    def state():  # type: ignore[no-untyped-def]
        return RUNNER_STATE.load(project.run_dir.state_file)

    def scenario() -> None:
        (gateway,) = [p for p in state().processes if p.name == "gateway"]
        assert gateway.pid is not None
        assert copy.read_bytes() == v1 and state().routes_sha256 == sha(v1)
        assert project.ask("support-bot") == (200, SUPPORT)

        # release faq-v1 on the same base, build only: it sorts first, support-v1 moves to slot 1
        v2 = project.build({"support-v1": SUPPORT, "faq-v1": FAQ}, {"support-bot": "support-v1", "faq-bot": "faq-v1"})
        assert yaml.safe_load(v2)["aliases"]["support-bot"]["adapter"]["slot"] == 1
        assert copy.read_bytes() == v1  # nothing that runs changed
        os.kill(gateway.pid, 1)  # SIGHUP: the gateway reloads what it serves, now
        until(lambda: project.reloads() >= 1, "the gateway's reload")
        assert project.ask("support-bot") == (200, SUPPORT)  # the old slot, on the old server
        assert project.ask("faq-bot")[0] == 404  # not routed before it is applied

        before = {p.name: p.pid for p in state().processes}
        os.kill(os.getpid(), RELOAD_SIGNAL)  # what `vilms up` sends for the new build
        until(lambda: state().routes_sha256 == sha(v2) and all(p.state == "running" for p in state().processes),
              "the new build to serve")
        after = {p.name: p.pid for p in state().processes}
        assert after["gateway"] == before["gateway"] and after["llamacpp-tiny"] != before["llamacpp-tiny"]
        assert copy.read_bytes() == v2
        # the old server stopped while the copy still held the old routes; the new one started on the new
        assert project.event_log() == [("start", [SUPPORT], sha(v1)), ("stop", [SUPPORT], sha(v1)),
                                       ("start", [FAQ, SUPPORT], sha(v2))]
        until(lambda: project.reloads() >= 2, "the gateway's reload of the swapped copy")  # SIGHUP by the supervisor
        assert project.ask("support-bot") == (200, SUPPORT)  # its new slot
        assert project.ask("faq-bot") == (200, FAQ)
        assert project.ask("chat") == (200, "base")

        # a build that changes only the routes: the copy is swapped, nothing restarts
        v3 = project.build({"support-v1": SUPPORT, "faq-v1": FAQ},
                           {"support-bot": "support-v1", "faq-bot": "faq-v1", "help-bot": "support-v1"})
        os.kill(os.getpid(), RELOAD_SIGNAL)
        until(lambda: state().routes_sha256 == sha(v3), "the routes-only build")
        assert copy.read_bytes() == v3 and {p.name: p.pid for p in state().processes} == after
        until(lambda: project.reloads() >= 3, "the gateway's reload")
        assert project.ask("help-bot") == (200, SUPPORT)

    supervise(supervisor, scenario)
    assert len(project.event_log()) == 4  # the last server stopped with the supervisor


def test_a_llama_server_reporting_other_adapters_fails_the_start(tmp_path):
    project = Project(tmp_path)
    project.build({"support-v1": SUPPORT, "faq-v1": FAQ}, {"support-bot": "support-v1"})
    project.env["FAKE_MISREPORT"] = "1"  # it reports its adapters in the reverse order
    supervisor = project.supervisor()
    assert supervisor.run() == 1
    error = supervisor.state().error
    assert error is not None and error.process == "llamacpp-tiny"
    assert error.message == (
        f"loaded other adapters than its plan: http://127.0.0.1:{project.server_port}/lora-adapters reports "
        f"0={SUPPORT}, 1={FAQ}; the plan's slots are 0={FAQ}, 1={SUPPORT}")


@pytest.mark.heavy
@pytest.mark.timeout(120)
def test_on_llama_server_an_alias_answers_with_its_adapter_across_build_and_apply(tmp_path, llama_server_bin):
    """The real llama-server and two random adapters: support-bot's greedy answer stays its
    adapter's before the release of faq-v1, after the build only, and after the apply that
    moves support-v1 to slot 1."""
    pytest.importorskip("gguf")
    from tiny_gguf import write_tiny_llama, write_tiny_lora

    project = Project(tmp_path, binary=llama_server_bin)
    write_tiny_llama(tmp_path / "models" / "tiny.gguf")
    write_tiny_lora(tmp_path / SUPPORT, seed=1)
    write_tiny_lora(tmp_path / FAQ, seed=2)
    project.build({"support-v1": SUPPORT}, {"support-bot": "support-v1"})
    supervisor = project.supervisor()

    def scenario() -> None:
        status, support = project.ask("support-bot")
        assert status == 200, support
        assert support != project.ask("chat")[1]  # the adapter changes the answer
        project.build({"support-v1": SUPPORT, "faq-v1": FAQ}, {"support-bot": "support-v1", "faq-bot": "faq-v1"})
        (gateway,) = [p for p in RUNNER_STATE.load(project.run_dir.state_file).processes if p.name == "gateway"]
        assert gateway.pid is not None
        os.kill(gateway.pid, 1)  # SIGHUP: it reloads what it serves, now
        until(lambda: project.reloads() >= 1, "the gateway's reload")
        assert project.ask("support-bot") == (200, support)  # built, not applied: still slot 0 of the old server
        os.kill(os.getpid(), RELOAD_SIGNAL)
        until(lambda: (lambda s: s.routes_sha256 == sha(project.routes.read_bytes())
                       and all(p.state == "running" for p in s.processes))(RUNNER_STATE.load(project.run_dir.state_file)),
              "the new build to serve", timeout_s=60)
        until(lambda: project.reloads() >= 2, "the gateway's reload of the swapped copy")
        assert project.ask("support-bot") == (200, support)  # slot 1 now, the same adapter
        status, faq = project.ask("faq-bot")
        assert status == 200 and faq not in (support, project.ask("chat")[1])

    supervise(supervisor, scenario)


def test_routes_broken_after_up_checked_them_fail_the_start_located(tmp_path):
    project = Project(tmp_path)
    project.build({"support-v1": SUPPORT}, {"support-bot": "support-v1"})
    supervisor = project.supervisor()
    project.routes.write_text(project.routes.read_text().replace("kind: GatewayRoutes", "kind: Nonsense"))
    assert supervisor.run() == 1
    error = supervisor.state().error
    assert error is not None and error.process == "gateway"
    assert error.message.startswith(f"cannot serve its routes: {project.routes}:")
    assert "kind" in error.message.splitlines()[0]
    assert not project.run_dir.routes_file.exists() and not project.events.exists()  # nothing started
