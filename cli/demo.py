"""`vilms demo`: the whole loop on a tiny local model, in a folder you can keep and read.

It builds a tiny random Llama and its tokenizer (nothing is downloaded), converts it to
GGUF, writes a support-chat dataset and a ``vilms.yaml`` with one local deployment, then
runs the commands a user would, printing each one: ``build`` → ``train`` → ``export --gguf``
→ ``rollout`` → ``up`` → a chat request per alias through the gateway → ``down``. The
model is random, so its words are noise; the routing, adapter and processes are real.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.layout import RUN_RECORD as RUN_RECORD_FILE
from vilms.compiler.layout import Layout

MARKER = ".vilms-demo"  # marks a folder the demo made, so a rerun may replace it
DEPLOYMENT = "dev"
ADAPTER = "support-v1"
QUESTION = "How do I reset my password?"
CHAT_TIMEOUT_S = 60.0


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=Path("vilms-demo"),
              show_default=True, help="Project folder to create (a folder an earlier demo made is replaced).")
@click.option("--keep-running", is_flag=True,
              help="Leave the servers up; stop them with `vilms down -f DIR/vilms.yaml`.")
def demo(directory: Path, keep_running: bool) -> None:
    """Run the end-to-end loop on a tiny local model: build, train, export, roll out, serve, chat."""
    run_demo(directory, keep_running=keep_running)


def run_demo(root: Path, *, keep_running: bool = False) -> None:
    started = time.monotonic()
    _prepare_folder(root)
    click.echo(f"ViLMS demo in {root}/ (a tiny random Llama made here; nothing is downloaded)")
    steps = 8
    with _step(1, steps, "make the tiny model, its GGUF and a support dataset"):
        engine_port = _free_ports(2)
        gateway_port = next(p for p in iter(_free_port, 0) if not engine_port <= p < engine_port + 2)
        write_demo_project(root, gateway_port=gateway_port, engine_port=engine_port)
    with _step(2, steps, "$ vilms build"):
        _vilms(root, "build")
    with _step(3, steps, f"$ vilms train {ADAPTER}"):
        _vilms(root, "train", ADAPTER, "--no-progress")
    run_id = _newest_run(root)
    from vilms.compiler.contracts.run_record import RUN_RECORD

    gate = RUN_RECORD.load(Layout(root).run_record(run_id)).gate
    perplexity = gate.perplexity if gate is not None else None
    click.echo(f"      run {run_id}: gate {gate.status if gate is not None else 'not evaluated'}"
               + (f", eval perplexity {perplexity:.1f}" if perplexity is not None else ""))
    with _step(4, steps, f"$ vilms export {run_id} --gguf"):
        _vilms(root, "export", run_id, "--gguf")
    with _step(5, steps, f"$ vilms rollout {ADAPTER} {run_id}"):
        _vilms(root, "rollout", ADAPTER, run_id)
    with _step(6, steps, f"$ vilms up {DEPLOYMENT}"):
        _vilms(root, "up", DEPLOYMENT)
    try:
        port = _gateway_port(root)
        click.echo(f"[7/{steps}] chat through the gateway: POST http://127.0.0.1:{port}/v1/chat/completions")
        for alias in ("chat", "support-bot"):
            status, backend, text = chat(port, alias)
            click.echo(f"      {alias:<12} -> {backend:<22} HTTP {status}  {text[:48]!r}")
    finally:
        if not keep_running:
            with _step(8, steps, f"$ vilms down {DEPLOYMENT}"):
                _vilms(root, "down", DEPLOYMENT)
    click.echo(f"done in {time.monotonic() - started:.0f} s. Everything is in {root}/: vilms.yaml, generated/, "
               f"artifacts/{run_id}/.")
    if keep_running:
        click.echo(f"The servers are still up: `vilms status -f {root}/vilms.yaml`, `vilms down -f {root}/vilms.yaml`.")


def write_demo_project(root: Path, *, gateway_port: int | None = None, engine_port: int | None = None,
                       api_keys_env: str | None = None) -> Path:
    """The demo's project: tiny model (HF folder + GGUF), dataset, and vilms.yaml. Returns vilms.yaml."""
    import yaml
    from transformers.utils import logging as hf_logging

    from vilms.compiler.git_files import write_git_files
    from vilms.trainers.export.gguf import write_llama_gguf
    from vilms.trainers.tiny import build_tiny_llama, tiny_chat_rows

    hf_logging.disable_progress_bar()
    write_git_files(root)
    model = build_tiny_llama(root / "models" / "tiny")
    write_llama_gguf(model, root / "models" / "tiny.gguf")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "support.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tiny_chat_rows(32)))
    hf = json.loads((model / "config.json").read_text())
    architecture = {
        "layers": hf["num_hidden_layers"], "hidden_size": hf["hidden_size"], "heads": hf["num_attention_heads"],
        "kv_heads": hf.get("num_key_value_heads") or hf["num_attention_heads"],
        "head_dim": hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
        "intermediate_size": hf["intermediate_size"], "vocab_size": hf["vocab_size"],
        "tie_word_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }
    deployment: dict[str, Any] = {"hardware": "laptop", "target": "local", "engine": "llamacpp"}
    if gateway_port is not None:
        deployment["gateway_port"] = gateway_port
    if engine_port is not None:
        deployment["engine_port"] = engine_port
    doc: dict[str, Any] = {
        "apiVersion": "vilms/v1",
        "project": "demo",
        "hardware": {"laptop": {"kind": "cpu", "memory": "16GiB", "cpus": 2}},
        "models": {"tiny": {"source": "file:models/tiny", "gguf": "file:models/tiny.gguf", "family": "llama",
                            "context": 256, "chat_template": "chatml", "architecture": architecture}},
        "datasets": {"support": {"path": "data/support.jsonl", "format": "chat"}},
        "adapters": {ADAPTER: {
            "base": "tiny", "dataset": "support", "method": "lora", "hardware": "laptop",
            "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"epochs": 2, "batch_size": 4, "seq_len": 128, "seed": 3, "save_steps": 4, "eval_steps": 4,
                         "gradient_checkpointing": False},
            "gate": {"max_eval_perplexity": 1.0e6, "on_fail": "approval"},
            "release": None,
        }},
        "aliases": {"chat": "tiny", "support-bot": {"model": "tiny", "adapter": ADAPTER, "fallbacks": ["chat"]}},
        "deployments": {DEPLOYMENT: deployment},
    }
    if api_keys_env:
        doc["gateway"] = {"api_keys": f"env:{api_keys_env}"}
    path = root / "vilms.yaml"
    path.write_text("# Written by `vilms demo`: a tiny random model served locally with one LoRA adapter.\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path


def chat(port: int, alias: str, key: str | None = None) -> tuple[int, str, str]:
    """(status, backend that answered, reply text) for one chat request to ``alias``."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": alias, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "temperature": 0}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        # a tiny CPU model answers in seconds; connecting to a local port takes no time
        response = httpx.post(url, json=body, headers=headers, timeout=httpx.Timeout(CHAT_TIMEOUT_S, connect=5.0), trust_env=False)
    except httpx.TimeoutException:
        raise ActionError(f"the gateway did not answer {alias!r} within {CHAT_TIMEOUT_S:g} s") from None
    except httpx.HTTPError as exc:
        raise ActionError(f"cannot reach the gateway on port {port}: {exc}") from None
    if response.status_code != 200:
        raise ActionError(f"the gateway answered {alias!r} with HTTP {response.status_code}: {response.content[:300]!r}")
    try:
        text = response.json()["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError(text)
    except (ValueError, LookupError, TypeError):
        raise ActionError(f"the gateway's answer for {alias!r} is not a chat completion: {response.content[:300]!r}") from None
    return response.status_code, response.headers.get("x-vilms-backend", "-"), text


class _step:
    """Prints ``[n/N] title`` and how long the step took."""

    def __init__(self, n: int, total: int, title: str) -> None:
        self.title = f"[{n}/{total}] {title}"

    def __enter__(self) -> None:
        click.echo(f"{self.title} ...", nl=False)
        self.t0 = time.monotonic()

    def __exit__(self, kind: type | None, *rest: object) -> None:
        click.echo(f" {time.monotonic() - self.t0:.1f} s" if kind is None else " failed")


def _vilms(root: Path, *args: str) -> str:
    command = [sys.executable, "-m", "vilms", *args, "-f", "vilms.yaml"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}, timeout=900)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise ActionError(f"`vilms {' '.join(args)}` failed (exit {result.returncode}):\n  " + "\n  ".join(tail))
    return result.stdout


def _prepare_folder(root: Path) -> None:
    if root.exists():
        if not root.is_dir() or (any(root.iterdir()) and not (root / MARKER).exists()):
            raise UsageError(f"{root} exists and was not made by `vilms demo`",
                             hint="pick another folder with --dir, or remove it")
        if (root / "vilms.yaml").exists() and (root / ".vilms" / "run").exists():
            _vilms(root, "down", DEPLOYMENT)  # an earlier --keep-running demo
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).write_text("made by `vilms demo`; a rerun replaces this folder\n")


def _newest_run(root: Path) -> str:
    artifacts = Layout(root).artifacts
    runs = sorted(p.name for p in artifacts.iterdir() if (p / RUN_RECORD_FILE).is_file())
    if not runs:
        raise ActionError(f"`vilms train` left no run under {artifacts}/")
    return runs[-1]


def _gateway_port(root: Path) -> int:
    from vilms.compiler.contracts.local_plan import LOCAL_PLAN

    return LOCAL_PLAN.load(Layout(root).local_plan(DEPLOYMENT)).gateway.port


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the llama.cpp servers count up from it)."""
    for _ in range(100):
        base = _free_port()
        if base + count - 1 <= 65535 and all(_bindable(base + i) for i in range(1, count)):
            return base
    raise ActionError(f"found no {count} consecutive free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


COMMANDS = (demo,)
