"""What to run for a local plan: one command line per process, in start order.

llama.cpp servers first (``python -m llama_cpp.server``), the gateway last
(``python -m vilms serve``). Paths in local.yaml are relative to the folder of
vilms.yaml (models, LoRA files) or to ``generated/<deployment>/`` (routes); every file is
checked here, before anything starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vilms.compiler.errors import ActionError
from vilms.compiler.facts import gateway as gateway_facts

from .hfcache import cached_gguf
from .plan import LocalPlan, ServerSpec

GATEWAY = "gateway"


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


def launches(plan: LocalPlan, root: Path) -> list[Launch]:
    """Command lines for ``plan`` (``root``: the folder of vilms.yaml). Raises
    :class:`ActionError` for a missing model, LoRA or routes file."""
    out = [_server(spec, root) for spec in plan.servers]
    routes = plan.routes_file
    if not routes.is_file():
        raise ActionError(f"{routes} does not exist", hint="run `vilms build`")
    gw = plan.gateway
    out.append(Launch(GATEWAY, GATEWAY, (sys.executable, "-m", "vilms", "serve", "--routes", str(routes),
                                         "--host", gw.host, "--port", str(gw.port)),
                      gw.host, gw.port, gateway_facts.READY_PATH))
    return out


def _server(spec: ServerSpec, root: Path) -> Launch:
    if spec.model.path is not None:
        model = root / spec.model.path
        if not model.is_file():
            raise ActionError(f"{spec.name}: model file {spec.model.path} does not exist ({model})",
                              hint="put the GGUF file there, or change the model's gguf: in vilms.yaml and run `vilms build`")
    else:
        assert spec.model.hf_repo and spec.model.hf_file_glob
        try:
            model = cached_gguf(spec.model.hf_repo, spec.model.hf_file_glob)
        except ActionError as exc:
            raise ActionError(f"{spec.name}: {exc.message}", hint=exc.hint) from None
    if len(spec.lora) > 1:
        raise ActionError(f"{spec.name}: llama-cpp-python's server applies one LoRA file, local.yaml lists {len(spec.lora)}")
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", spec.model_alias,
            "--n_ctx", str(spec.context), "--n_threads", str(spec.threads), "--host", spec.host, "--port", str(spec.port)]
    for lora in spec.lora:
        path = root / lora
        if not path.is_file():
            raise ActionError(f"{spec.name}: LoRA file {lora} does not exist ({path})", hint=_lora_hint(lora))
        argv += ["--lora_path", str(path)]
    return Launch(spec.name, "llamacpp", tuple(argv), spec.host, spec.port, "/v1/models")


def _lora_hint(lora: str) -> str:
    parts = PurePosixPath(lora).parts
    if len(parts) >= 2 and parts[0] == "artifacts":
        return f"export the released run as GGUF: vilms export {parts[1]} --gguf"
    return "export the adapter as GGUF (vilms export RUN_ID --gguf)"
