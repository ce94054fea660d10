"""Released adapters on target local, for real: one llama.cpp server per base model loads every
released adapter, and the gateway selects one per request.

A project with a tiny base model, two adapters trained and exported here (support-v1,
faq-v1, each released) and a second base model, run by `vilms up`: once on llama.cpp's own
llama-server (per-request ``lora`` scales), once on llama-cpp-python's server (one model
entry per adapter). The same prompt under each alias must give exactly the greedy answer
llama.cpp gives in-process for base+adapter (``llama_cpp.Llama(lora_path=...)``), whatever
the order of requests and also for concurrent requests. Then a second run of one adapter
is rolled out with ``--apply``: only the server of that base model restarts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from local_project import kill_all_under
from tiny_gguf import write_tiny_llama

from tests.conftest import run_vilms
from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.contracts.runner_state import RUNNER_STATE
from vilms.runtime.local import engine_key

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
pytest.importorskip("httptools")

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(600)]

PROMPT = "How do I reset my password?"
MAX_TOKENS = 12
THREADS = 2  # as the servers run (the demo profile's cpus)
ALIASES = ("chat", "support-bot", "faq-bot")
TINY_GGUF_ARCHITECTURE = {"layers": 2, "hidden_size": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
                          "intermediate_size": 128, "vocab_size": 267, "tie_word_embeddings": False}
FAQ_ROWS = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Call the hotline today."}]}
            for q in ("How do I reset my password?", "Where is my order?", "Hi", "Help")] * 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    while True:
        first = _free_port()
        if first + count <= 65535 and all(_bindable(first + i) for i in range(1, count)):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def vilms(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_vilms(*args, cwd=root, env=env, timeout=300)
    assert result.code == 0, f"vilms {' '.join(args)}:\n{result.out}\n{result.err}"
    return result.out


def release(root: Path, adapter: str, *extra: str) -> tuple[str, str]:
    """Train, export and roll out a run of ``adapter``; returns the run id and the rollout's output."""
    before = set(os.listdir(root / "artifacts")) if (root / "artifacts").exists() else set()
    vilms(root, "train", adapter, "--no-progress")
    (run_id,) = set(os.listdir(root / "artifacts")) - before
    vilms(root, "export", run_id, "--gguf")
    return run_id, vilms(root, "rollout", adapter, run_id, *extra)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built project, both adapters released."""
    from vilms.cli.demo import write_demo_project

    root = tmp_path_factory.mktemp("adapters") / "project"
    root.mkdir()
    file = write_demo_project(root, gateway_port=_free_port(), engine_port=_free_ports(2))
    doc = yaml.safe_load(file.read_text())
    (root / "data" / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FAQ_ROWS))
    doc["datasets"]["faq"] = {"path": "data/faq.jsonl", "format": "chat"}
    support = doc["adapters"]["support-v1"]
    support["training"].update({"learning_rate": 0.01, "max_steps": 30})
    doc["adapters"]["faq-v1"] = {**support, "dataset": "faq", "training": {**support["training"], "seed": 5}}
    write_tiny_llama(root / "models" / "other.gguf", seed=1)
    doc["models"]["other"] = {"source": "file:models/other.gguf", "family": "llama", "context": 256,
                              "chat_template": "chatml", "architecture": TINY_GGUF_ARCHITECTURE}
    doc["aliases"].update({"faq-bot": {"model": "tiny", "adapter": "faq-v1"}, "other": "other"})
    doc["deployments"]["dev"]["parallel"] = 2
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    vilms(root, "build")
    release(root, "support-v1")
    release(root, "faq-v1")
    return root


@dataclass(frozen=True)
class Answer:
    """llama.cpp's greedy answer, and its text as each server writes it: llama-server shows an
    invalid UTF-8 byte (noise of a random model) as U+FFFD, llama-cpp-python's server as its
    own ``create_completion`` decodes it."""

    tokens: tuple[int, ...]
    native: str
    python: str


def greedy(root: Path, lora: str | None) -> Answer:
    """What llama.cpp itself answers, in-process, for the base model with ``lora`` applied."""
    import llama_cpp

    kwargs = {"lora_path": str(root / lora)} if lora else {}
    llm = llama_cpp.Llama(model_path=str(root / "models" / "tiny.gguf"), n_ctx=256, n_threads=THREADS, verbose=False,
                          **kwargs)
    try:
        tokens = []
        for token in llm.generate(llm.tokenize(PROMPT.encode()), temp=0.0):
            tokens.append(token)
            if len(tokens) == MAX_TOKENS or token == llm.token_eos():
                break
        text = llm(PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)["choices"][0]["text"]
        return Answer(tuple(tokens), llm.detokenize(tokens).decode("utf-8", errors="replace"), text)
    finally:
        llm.close()


def expected_answers(root: Path) -> dict[str, Answer]:
    plan = LOCAL_PLAN.load(root / "generated" / "dev" / "local.yaml")
    files = {lora.adapter: lora.file for server in plan.servers for lora in server.lora}
    answers = {"chat": greedy(root, None), "support-bot": greedy(root, files["support-v1"]),
               "faq-bot": greedy(root, files["faq-v1"])}
    assert len({a.tokens for a in answers.values()}) == 3, f"the adapters must change the greedy answer: {answers}"
    return answers


@pytest.fixture(scope="module")
def expected(template: Path) -> dict[str, Answer]:
    return expected_answers(template)


def runner_env(llama_server: Path | None) -> dict[str, str]:
    """`vilms up` with this llama-server, or with none to be found (llama-cpp-python's server)."""
    if llama_server is not None:
        return {"VILMS_LLAMA_SERVER": str(llama_server)}
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "llama-server").exists())
    return {"VILMS_LLAMA_SERVER": "", "PATH": path}


@pytest.fixture
def project(template: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "project"
    shutil.copytree(template, root, symlinks=True)
    yield root
    run_vilms("down", "--timeout", "20", cwd=root)
    left = kill_all_under(root)
    assert not left, f"processes left running: {left}"


def complete(port: int, alias: str, **extra: object) -> str:
    # repeat_penalty as llama.cpp's default (llama-cpp-python's server defaults to 1.1)
    body = json.dumps({"model": alias, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0,
                       "repeat_penalty": 1.0, **extra}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        return json.loads(response.read())["choices"][0]["text"]


def state(root: Path):  # type: ignore[no-untyped-def]
    return RUNNER_STATE.load(root / ".vilms" / "run" / "dev" / "state.json")


@pytest.mark.parametrize("server", ["llama-server", "llama-cpp-python"])
def test_one_server_per_base_model_switches_adapters_per_request(server, project, expected, request):
    binary = request.getfixturevalue("llama_server_bin") if server == "llama-server" else None
    out = vilms(project, "up", "dev", env=runner_env(binary))
    plan = LOCAL_PLAN.load(project / "generated" / "dev" / "local.yaml")
    assert [(s.name, [lora.adapter for lora in s.lora]) for s in plan.servers] == [
        ("llamacpp-other", []), ("llamacpp-tiny", ["faq-v1", "support-v1"])]
    assert [p.name for p in state(project).processes] == ["llamacpp-other", "llamacpp-tiny", "gateway"]
    tiny = next(s for s in plan.servers if s.name == "llamacpp-tiny")
    if binary is not None:  # the native server loaded both adapters, in slot order, applied to nothing
        # the engine port answers only with the run's engine key (the gateway's and the supervisor's)
        key = engine_key.read(project / ".vilms" / "run" / "dev")
        ask = urllib.request.Request(f"http://127.0.0.1:{tiny.port}/lora-adapters", headers=dict(engine_key.bearer(key)))
        with urllib.request.urlopen(ask, timeout=10) as response:
            loaded = json.loads(response.read())
        assert [(a["id"], a["path"]) for a in loaded] == [(i, lora.file) for i, lora in enumerate(tiny.lora)]
        assert "note:" not in out
    else:
        assert out.count("note:") == 1 and "note: llamacpp-tiny: no llama-server found" in out  # it has adapters
    port = plan.gateway.port
    # the gateway streams from llama.cpp (so a client that leaves stops it); llama-server's stream
    # holds back an incomplete UTF-8 sequence at the end, which its whole answer shows as U+FFFD
    want = {alias: (answer.native.rstrip("\ufffd") if binary is not None else answer.python)
            for alias, answer in expected.items()}

    interleaved = ["support-bot", "faq-bot", "chat", "faq-bot", "support-bot", "chat", "support-bot"]
    assert [complete(port, alias) for alias in interleaved] == [want[alias] for alias in interleaved]
    # a client cannot pick an adapter itself: the gateway sets the scales of every slot
    assert complete(port, "chat", lora=[{"id": 0, "scale": 1.0}, {"id": 1, "scale": 1.0}]) == want["chat"]

    at_once = ["support-bot", "faq-bot"] * 4 + ["chat"] * 2
    with ThreadPoolExecutor(len(at_once)) as pool:
        answers = list(pool.map(lambda alias: complete(port, alias), at_once))
    assert answers == [want[alias] for alias in at_once]


def test_rolling_out_a_new_run_restarts_only_that_base_models_server(project, expected, llama_server_bin):
    env = runner_env(llama_server_bin)
    vilms(project, "up", "dev", env=env)
    before = {p.name: (p.pid, p.ticks) for p in state(project).processes}
    old_plan = LOCAL_PLAN.load(project / "generated" / "dev" / "local.yaml")

    text = (project / "vilms.yaml").read_text()
    assert text.count("seed: 3") == 1  # support-v1's; faq-v1 trains with seed 5
    (project / "vilms.yaml").write_text(text.replace("seed: 3", "seed: 4"))
    vilms(project, "build")
    run_id, out = release(project, "support-v1", "--apply", "--yes")
    assert "$ vilms up dev -f vilms.yaml" in out and "restarted llamacpp-tiny\n" in out

    after = {p.name: (p.pid, p.ticks) for p in state(project).processes}
    assert [name for name in before if before[name] != after[name]] == ["llamacpp-tiny"]
    assert all(p.state == "running" for p in state(project).processes)
    plan = LOCAL_PLAN.load(project / "generated" / "dev" / "local.yaml")
    (tiny,) = [s for s in plan.servers if s.name == "llamacpp-tiny"]
    assert tiny.lora[1].file.startswith(f"artifacts/{run_id}/")
    assert [s for s in plan.servers if s.name != "llamacpp-tiny"] == [
        s for s in old_plan.servers if s.name != "llamacpp-tiny"]

    now = expected_answers(project)
    assert now["support-bot"] != expected["support-bot"]  # the new run answers differently...
    assert {k: v for k, v in now.items() if k != "support-bot"} == {k: v for k, v in expected.items() if k != "support-bot"}
    port = plan.gateway.port
    assert [complete(port, alias) for alias in ALIASES] == [now[alias].native for alias in ALIASES]  # ...and serves
    # applying the same build again restarts nothing
    assert "already running" in vilms(project, "up", "dev", env=env)
