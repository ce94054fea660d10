"""What to run for a local plan: one command line per process, in start order.

llama.cpp servers first (``python -m llama_cpp.server``), the gateway last
(``python -m vilms serve``). Paths in local.yaml are relative to the folder of
vilms.yaml (models, LoRA files) or to ``generated/`` (routes); every file is checked here,
before anything starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vilms.compiler.contracts.local_plan import GATEWAY_PROCESS, SERVER_KIND, LocalPlan, Server
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import gateway as gateway_facts
from vilms.compiler.layout import ARTIFACTS, Layout

from .hfcache import cached_gguf
from .plan import routes_file

GATEWAY = GATEWAY_PROCESS  # the gateway's process name and kind
HEALTH_PATH = "/v1/models"  # a llama.cpp server answers it once its model is loaded


@dataclass(frozen=True)
class Launch:
    name: str
    kind: str  # llamacpp | gateway
    argv: tuple[str, ...]
    host: str
    port: int
    health_path: str  # answers 200 once the process serves

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.url + self.health_path


def launches(plan: LocalPlan, layout: Layout) -> list[Launch]:
    """Command lines for ``plan`` in the project ``layout``. Raises :class:`ActionError`
    for a missing model, LoRA or routes file."""
    out = [_server(spec, layout.root) for spec in plan.servers]
    routes = routes_file(layout, plan)
    if not routes.is_file():
        raise ActionError(f"{routes} does not exist", hint="run `vilms build`")
    gw = plan.gateway
    out.append(Launch(GATEWAY, GATEWAY, (sys.executable, "-m", "vilms", "serve", "--routes", str(routes),
                                         "--host", gw.host, "--port", str(gw.port)),
                      gw.host, gw.port, gateway_facts.READY_PATH))
    return out


def _server(spec: Server, root: Path) -> Launch:
    weights = spec.model
    if weights.file is not None:
        model = root / weights.file
        if not model.is_file():
            raise ActionError(f"{spec.name}: model file {weights.file} does not exist ({model})",
                              hint="put the GGUF file there, or change the model's gguf: in vilms.yaml and run `vilms build`")
    else:
        assert weights.hf is not None, "the LocalPlan schema requires a file or hf weights"
        try:
            model = cached_gguf(weights.hf.repo, weights.hf.file_glob)
        except ActionError as exc:
            raise ActionError(f"{spec.name}: {exc.message}", hint=exc.hint) from None
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", spec.model_alias,
            "--n_ctx", str(spec.context), "--n_threads", str(spec.threads), "--host", spec.host, "--port", str(spec.port)]
    for lora in spec.lora:  # the schema allows one: llama-cpp-python's server applies one LoRA file
        path = root / lora
        if not path.is_file():
            raise ActionError(f"{spec.name}: LoRA file {lora} does not exist ({path})", hint=_lora_hint(lora))
        argv += ["--lora_path", str(path)]
    return Launch(spec.name, SERVER_KIND, tuple(argv), spec.host, spec.port, HEALTH_PATH)


def _lora_hint(lora: str) -> str:
    parts = PurePosixPath(lora).parts
    if len(parts) >= 2 and parts[0] == ARTIFACTS:
        return f"export the released run as GGUF: vilms export {parts[1]} --gguf"
    return "export the adapter as GGUF (vilms export RUN_ID --gguf)"
