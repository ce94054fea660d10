"""The resolved plan: an immutable description of everything `vilms build` renders.

Frozen dataclasses with tuples and read-only mappings; built once by
:mod:`vilms.compiler.resolve`, read by every renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.contracts.training_config import ArtifactStoreSpec, MlflowSpec
from vilms.compiler.record import record


def frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only copy of ``mapping`` with sorted keys (nested mappings frozen too)."""
    return MappingProxyType({k: _freeze(v) for k, v in sorted((mapping or {}).items())})


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return frozen(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@record
class Hardware:
    """A hardware profile, sizes in bytes."""

    name: str
    kind: str  # jetson | cpu | gpu
    memory_bytes: int
    cpus: int | None
    arch: str  # amd64 | arm64
    jetpack: str | None
    os_reserve_bytes: int
    gpus: int  # per node
    gpu_memory_bytes: int
    gpu_type: str | None
    nodes: int  # nodes of the profile (kind gpu); a model may span several

    @property
    def cuda(self) -> bool:
        return self.kind in ("gpu", "jetson")

    @property
    def accelerator_bytes(self) -> int:
        """Memory the engine's weights and KV cache live in."""
        if self.kind == "gpu":
            return self.gpus * self.gpu_memory_bytes
        return self.memory_bytes - self.os_reserve_bytes


@record
class Source:
    """Where a model's weights come from: hf:, ollama: or file:."""

    scheme: str  # hf | ollama | file
    ref: str
    revision: str | None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.ref}" + (f"@{self.revision}" if self.revision else "")


@record
class Model:
    """A base model with its defaults applied."""

    name: str
    source: Source
    family: str
    params: int | None
    context: int
    chat_template: str | None
    quantization: Mapping[str, str]
    dtype: str
    architecture: Mapping[str, Any] | None
    task: str  # chat | embedding
    token_env: str | None
    weights: Mapping[str, str]  # source, and gguf / ollama when given (see vilms.compiler.weights)


@record
class Dataset:
    """A dataset with its defaults applied."""

    name: str
    path: str
    format: str
    sha256: str | None
    eval_fraction: float
    provenance: Mapping[str, str]
    redact: tuple[str, ...]
    region: str | None  # ISO 3166 alpha-2 of the data's national phone formats; None: the sanitiser's defaults


@record
class Adapter:
    """A LoRA adapter with its defaults applied."""

    name: str
    base: str
    dataset: str
    method: str  # lora | qlora
    lora: Mapping[str, Any]
    training: Mapping[str, Any]
    hardware: str | None
    gate: Mapping[str, Any]
    export: Mapping[str, Any]
    mlflow: MlflowSpec | None  # None: tracking.mlflow false or absent
    release: str | None

    @property
    def rank(self) -> int:
        return int(self.lora["r"])


@record
class Alias:
    """A public model name and what it serves."""

    name: str
    model: str
    adapter: str | None
    system: str | None
    params: Mapping[str, Any]
    fallbacks: tuple[str, ...]


@record
class Upstream:
    """One model name an engine serves in a deployment: a base model or an adapter on it."""

    name: str  # what the gateway sends as "model"
    model: str  # base model
    adapter: str | None
    released: bool  # False: adapter declared but not yet released (nothing to load)
    context: int


@record
class ModelServing:
    """What a deployment declares for one served model (``serving.<model>``); None: not set.

    The effective values (tensor parallel chosen from the memory estimate, GPUs, nodes)
    come from :func:`vilms.compiler.memory.placement.placement`.
    """

    gpus: int | None  # per replica
    tensor_parallel: int | None
    pipeline_parallel: int | None
    replicas: int | None
    max_num_seqs: int | None
    autoscale: Mapping[str, Any]  # KEDA on queue depth: min, max, queue, kv_cache; empty: off


@record
class Deployment:
    """A deployment: its hardware, target, engine and what it serves."""

    name: str
    hardware: Hardware
    target: str  # compose | local | helm
    engine: str  # ollama | vllm | llamacpp | ray (helm: Ray Serve LLM on a KubeRay RayService)
    aliases: tuple[str, ...]
    models: tuple[str, ...]  # base models served, sorted
    upstreams: Mapping[str, Upstream]  # by alias
    contexts: Mapping[str, int]  # served context of each base model
    model_adapters: Mapping[str, tuple[str, ...]]  # adapters served on each base model, sorted
    replicas: int
    parallel: int | None  # concurrent sequences per engine, when set
    gateway_port: int
    engine_port: int  # target local: the first llama.cpp server's port
    expose: bool
    ingress: Mapping[str, Any] | None
    autoscale: Mapping[str, Any]  # the gateway's HPA
    serving: Mapping[str, ModelServing]  # by base model, only those declared
    update: Mapping[str, int]  # rolling update of vLLM Deployments: max_surge, max_unavailable
    monitoring: Mapping[str, Any] | None  # None: no monitors, no dashboard
    threads: int  # target local: CPU threads of all llama.cpp servers together
    gpu_layers: int  # target local: layers each server offloads to a GPU; llamacpp.ALL_GPU_LAYERS: all
    kube_context: str | None  # target helm: the kubeconfig context (None: the current one)
    namespace: str | None  # target helm: the release's namespace (None: the context's)

    def serving_of(self, model: str) -> ModelServing:
        """What ``serving.<model>`` declares (all None when nothing)."""
        return self.serving.get(model, NO_SERVING)

    @property
    def slots(self) -> int:
        """Concurrent sequences the memory plan reserves KV cache for."""
        if self.parallel is not None:
            return self.parallel
        return 4 if self.hardware.kind == "gpu" else 1

    def context_of(self, model: str) -> int:
        return self.contexts[model]

    def adapters_of(self, model: str) -> tuple[str, ...]:
        return self.model_adapters.get(model, ())


NO_SERVING = ModelServing(gpus=None, tensor_parallel=None, pipeline_parallel=None, replicas=None,
                          max_num_seqs=None, autoscale=frozen())


@record
class ApiKey:
    """A named API key: the variable holding it, what it may use, how much."""

    name: str
    env: str
    aliases: tuple[str, ...] | None  # None: every alias
    rpm: int | None
    tpm: int | None


@record
class Gateway:
    """The gateway's settings with defaults applied."""

    api_keys_env: str | None
    retries: int
    connect_timeout: float
    read_timeout: float
    max_body_bytes: int
    max_queue: int
    cooldown: float
    balance: str
    on_overlong_prompt: str
    port: int
    first_byte_timeout: float
    request_timeout: float
    write_timeout: float
    max_response_bytes: int
    eject_after: int
    discovery_interval: float
    ops_key_env: str | None
    keys: Mapping[str, ApiKey]  # by name

    @property
    def key_envs(self) -> tuple[str, ...]:
        """Every environment variable holding a key the gateway checks (it refuses to start
        without them), sorted."""
        names = {self.api_keys_env, self.ops_key_env, *(key.env for key in self.keys.values())}
        return tuple(sorted(name for name in names if name))


@record
class ArgoCd:
    """``gitops.argocd`` with defaults applied."""

    namespace: str
    project: str
    server: str


@record
class Flux:
    """``gitops.flux`` with defaults applied."""

    namespace: str
    interval: str
    secret: str | None  # the repository's credentials Secret (None: a public repository)


@record
class GitOps:
    """Where the project lives in git, and which GitOps controllers deploy its helm deployments."""

    repository: str
    revision: str
    path: str  # the folder of vilms.yaml in the repository, "" at its root
    argocd: ArgoCd | None
    flux: Flux | None


@record
class Plan:
    """The resolved project: what every renderer reads."""

    project: str
    source_name: str  # file name of the input, relative to its folder
    input_sha256: str
    hardware: Mapping[str, Hardware]
    models: Mapping[str, Model]
    datasets: Mapping[str, Dataset]
    adapters: Mapping[str, Adapter]
    aliases: Mapping[str, Alias]
    deployments: Mapping[str, Deployment]
    gateway: Gateway
    artifact_store: ArtifactStoreSpec | None  # None: no artifact_store; Ray deployments with adapters need one
    telemetry: OtlpSpec | None  # None: no telemetry.otlp; nothing exported over OTLP
    gitops: GitOps | None  # None: no gitops:, no Argo CD or Flux objects
