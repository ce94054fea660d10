"""What to run for a local plan: one command line per process, in start order.

llama.cpp servers first, the gateway last (``python -m vilms serve``). A server is the
native ``llama-server`` when one is found (``$VILMS_LLAMA_SERVER``, else ``PATH``): it loads
every LoRA of its plan entry at start, unapplied, and the gateway selects one per request
(``lora``: every slot's scale, 1.0 for the alias's adapter). Without it, llama-cpp-python's server runs
a config file with one model entry per (base, adapter) sharing the base GGUF, selected by
the request's ``model``: the same plan and routes work, but switching entries reloads the
model. Paths in local.yaml are relative to the folder of vilms.yaml (models, LoRA files) or
to ``generated/`` (routes); every file is checked here, before anything starts.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vilms.compiler.contracts.local_plan import GATEWAY_PROCESS, LOCAL_PLAN, SERVER_KIND, LocalPlan, Server
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import gateway as gateway_facts
from vilms.compiler.facts import llamacpp
from vilms.compiler.layout import ARTIFACTS, Layout

from . import child_env, engine_key
from .hfcache import cached_gguf
from .plan import routes_file
from .project import Project
from .state import RunDir

GATEWAY = GATEWAY_PROCESS  # the gateway's process name and kind
LLAMA_SERVER = "llama-server"  # the native llama.cpp server, looked up on PATH
LLAMA_SERVER_ENV = "VILMS_LLAMA_SERVER"  # or its path, given explicitly
GPU_LAYERS_ALL = 9999  # llama-server's --n-gpu-layers for "all"
SWITCH_NOTE = ("{name}: no llama-server found, so llama-cpp-python's server runs it and reloads the model "
               f"whenever a request selects another adapter (slow for big models); install llama.cpp's "
               f"llama-server on PATH or set {LLAMA_SERVER_ENV}")


@dataclass(frozen=True)
class Launch:
    name: str
    kind: str  # llamacpp | gateway
    argv: tuple[str, ...]
    host: str
    port: int
    health_path: str  # answers 200 once the process serves
    files: tuple[tuple[Path, bytes], ...] = ()  # written before each start (the fallback server's config)
    lora: tuple[str, ...] | None = None  # llama-server: the adapter files it must report loaded, in slot order
    note: str | None = None  # what `vilms up` tells the user about this process
    key: str | None = field(default=None, repr=False)  # the run's engine key (servers require it, the gateway sends it)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """Its environment, from the supervisor's ``base``: an allow-list for a server, all
        of it plus the engine key for the gateway (see :mod:`.child_env`)."""
        if self.kind == GATEWAY:
            return child_env.gateway_env(base, self.key)
        return child_env.server_env(base)

    @property
    def probe_headers(self) -> dict[str, str]:
        """What a health probe of a server sends: the engine key."""
        return dict(engine_key.bearer(self.key)) if self.kind != GATEWAY else {}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.url + self.health_path


def find_llama_server(env: Mapping[str, str] | None = None) -> Path | None:
    """The llama-server to run: ``$VILMS_LLAMA_SERVER`` (which must be an executable file),
    else ``llama-server`` on PATH, else None (llama-cpp-python's server is used)."""
    env = os.environ if env is None else env
    given = env.get(LLAMA_SERVER_ENV, "").strip()
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ActionError(f"{LLAMA_SERVER_ENV}={given} is not an executable file",
                              hint=f"point it at llama.cpp's llama-server binary, or unset it to use {LLAMA_SERVER} "
                                   "from PATH or llama-cpp-python's server")
        return path.absolute()
    found = shutil.which(LLAMA_SERVER, path=env.get("PATH"))
    return Path(found) if found else None


def planned(project: Project, deployment: str) -> tuple[LocalPlan, list[Launch]]:
    """The deployment's plan as built, and its command lines on this machine."""
    plan = LOCAL_PLAN.load(project.plan_file(deployment))
    folder = project.run_dir(deployment).path
    return plan, launches(plan, project.layout, folder, llama_server=find_llama_server(),
                          key=engine_key.current(folder))


def launches(plan: LocalPlan, layout: Layout, config_dir: Path, *, llama_server: Path | None,
             key: str | None = None) -> list[Launch]:
    """Command lines for ``plan`` in the project ``layout``; a fallback server's config file
    goes to ``config_dir`` (written when it starts), the run folder, where the gateway serves
    the supervisor's copy of the routes (:attr:`RunDir.routes_file`), never generated/'s. ``llama_server``: the binary to run, None
    for llama-cpp-python's server. Raises :class:`ActionError` for a missing model, LoRA or
    routes file. ``key``: the run's engine key (:mod:`.engine_key`, in ``config_dir``), which
    every server requires and the gateway sends; None: servers answer anyone."""
    out = [_server(spec, layout.root, config_dir, llama_server, key) for spec in plan.servers]
    routes = routes_file(layout, plan)
    if not routes.is_file():
        raise ActionError(f"{routes} does not exist", hint="run `vilms build`")
    gw = plan.gateway
    copy = RunDir(config_dir).routes_file
    out.append(Launch(GATEWAY, GATEWAY, (sys.executable, "-m", "vilms", "serve", "--routes", str(copy),
                                         "--host", gw.host, "--port", str(gw.port)),
                      gw.host, gw.port, gateway_facts.READY_PATH, key=key))
    return out


def _server(spec: Server, root: Path, config_dir: Path, llama_server: Path | None, key: str | None) -> Launch:
    model = model_file(spec, root)
    for lora in spec.lora:
        path = root / lora.file
        if not path.is_file():
            raise ActionError(f"{spec.name}: LoRA file {lora.file} of adapter {lora.adapter} does not exist ({path})",
                              hint=_lora_hint(lora.file))
    if llama_server is not None:
        # the context is per slot: llama-server divides --ctx-size among its --parallel slots.
        # --lora takes the files comma-separated (repeating it is deprecated); they stay
        # relative (the server runs in the folder of vilms.yaml), and a relative path in
        # local.yaml never holds a comma.
        argv = [str(llama_server), "--model", str(model), "--alias", spec.model_alias,
                "--ctx-size", str(spec.context * spec.parallel), "--parallel", str(spec.parallel),
                "--threads", str(spec.threads), "--n-gpu-layers", str(_gpu_layers(spec.gpu_layers)), "--host", spec.host, "--port", str(spec.port), "--no-webui"]
        if spec.lora:  # loaded, applied to nothing unless a request selects one
            argv += ["--lora", ",".join(lora.file for lora in spec.lora), "--lora-init-without-apply"]
        if key is not None:  # a file, not --api-key: a command line is world-readable
            argv += ["--api-key-file", str(engine_key.key_file(config_dir))]
        return Launch(spec.name, SERVER_KIND, tuple(argv), spec.host, spec.port, llamacpp.HEALTH_PATH,
                      lora=tuple(lora.file for lora in spec.lora), key=key)
    entry = {"model": str(model), "n_ctx": spec.context, "n_threads": spec.threads, "n_gpu_layers": spec.gpu_layers}
    models = [{**entry, "model_alias": spec.model_alias}]
    models += [{**entry, "model_alias": lora.adapter, "lora_path": str(root / lora.file)} for lora in spec.lora]
    config = config_dir / f"{spec.name}.json"
    # interrupt_requests off: a second request waits for the lock instead of cutting the running stream
    settings: dict = {"host": spec.host, "port": spec.port, "models": models, "interrupt_requests": False}
    if key is not None:  # the file is written 0600, in the run folder
        settings["api_key"] = key
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    return Launch(spec.name, SERVER_KIND, (sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)),
                  spec.host, spec.port, llamacpp.PYTHON_SERVER_HEALTH_PATH, files=((config, text.encode()),),
                  note=SWITCH_NOTE.format(name=spec.name) if spec.lora else None, key=key)


def _gpu_layers(layers: int) -> int:
    """llama-server's --n-gpu-layers: a count larger than any model's means all layers, in
    every llama.cpp version (newer ones also take `all`; -1 there means `auto`)."""
    return GPU_LAYERS_ALL if layers == llamacpp.ALL_GPU_LAYERS else layers


def model_file(spec: Server, root: Path) -> Path:
    """The GGUF file ``spec`` serves: its file in the project, else the Hugging Face cache's."""
    weights = spec.model
    if weights.file is not None:
        model = root / weights.file
        if not model.is_file():
            raise ActionError(f"{spec.name}: model file {weights.file} does not exist ({model})",
                              hint="put the GGUF file there, or change the model's gguf: in vilms.yaml and run `vilms build`")
        return model
    assert weights.hf is not None, "the LocalPlan schema requires a file or hf weights"
    try:
        return cached_gguf(weights.hf.repo, weights.hf.file_glob)
    except ActionError as exc:
        raise ActionError(f"{spec.name}: {exc.message}", hint=exc.hint) from None


def _lora_hint(lora: str) -> str:
    parts = PurePosixPath(lora).parts
    if len(parts) >= 2 and parts[0] == ARTIFACTS:
        return f"export the released run as GGUF: vilms export {parts[1]} --gguf"
    return "export the adapter as GGUF (vilms export RUN_ID --gguf)"
