"""``generated/training/<adapter>.yaml`` (kind TrainingConfig): everything the trainer reads.

Written by :mod:`vilms.compiler.render.training`, read by the trainer (`vilms train`,
`vilms export`, through :mod:`vilms.trainers.job`). A run keeps a copy of the config it
was started from (``artifacts/<run_id>/training.yaml``), read through this contract too.

``hardware`` is null when the adapter names no hardware profile in vilms.yaml. The trainer
then trains on the machine it runs on (CUDA when torch sees a GPU, else the CPU), and
nothing was checked at build time: with no profile there is no memory budget to fit, so
``memory_estimate`` is the estimate alone. The run record names no profile and records
the host it ran on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter

from .contract import Contract
from .telemetry import OtlpSpec


@record
class BaseModel:
    """The model the adapter is trained on, and its chat template."""

    name: str
    source: str  # hf:<org>/<repo> | file:<folder relative to the project>
    revision: str | None  # hf: the revision to load; null: the default branch
    family: str
    chat_template: str  # chatml | llama3 | mistral | gemma | phi3 | tokenizer (the tokenizer's own)


@record
class DatasetRef:
    """The dataset file, its format, pinned hash and evaluation share."""

    name: str
    path: str  # JSONL, relative to the project root
    format: str  # chat | completion | text
    sha256: str | None  # pinned content hash; null: not pinned
    eval_fraction: float  # share of rows held out for evaluation and the gate


@record
class LoraSpec:
    """PEFT LoRA settings, in PEFT's own names."""

    r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: tuple[str, ...]
    bias: str  # none | all | lora_only
    use_rslora: bool


@record
class QuantSpec:
    """bitsandbytes 4-bit loading of the base model (method qlora)."""

    load_in_4bit: bool
    bnb_4bit_quant_type: str  # nf4 | fp4
    bnb_4bit_use_double_quant: bool
    bnb_4bit_compute_dtype: str  # bfloat16 | float16 | float32


@record
class TrainingSpec:
    """Optimiser, schedule, batch and checkpoint settings."""

    epochs: int
    max_steps: int | None  # null: epochs decide
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    seq_len: int
    seed: int
    warmup_ratio: float
    lr_scheduler: str  # cosine | linear | constant
    weight_decay: float
    save_steps: int
    eval_steps: int
    logging_steps: int
    gradient_checkpointing: bool


@record
class RegressionCase:
    """A prompt the trained adapter must answer; exactly one expectation is set."""

    prompt: str
    expect_substring: str | None
    expect_exact: str | None


@record
class GateSpec:
    """The evaluation gate a run must pass before it may be released."""

    max_eval_perplexity: float | None
    regression: tuple[RegressionCase, ...]
    on_fail: str  # reject | approval


@record
class HardwareSpec:
    """The hardware profile the adapter trains on, as vilms.yaml declares it."""

    name: str
    kind: str  # jetson | cpu | gpu
    memory_bytes: int
    gpu_memory_bytes: int  # of one GPU; 0 without GPUs
    gpus: int  # per node
    cpus: int | None  # per node; null: not declared
    nodes: int  # nodes of the profile


@record
class DistributedSpec:
    """How a run spreads over processes (torchrun on one node) and nodes (Kubeflow Trainer, bare-metal torchrun).

    Global batch = ``training.batch_size`` × world size × ``training.gradient_accumulation_steps``;
    the world size is the processes per node × nodes the run is started with.
    """

    strategy: str  # ddp | fsdp: vilms.yaml's training.strategy, auto resolved by the memory planner
    declared: str  # auto | ddp | fsdp: what vilms.yaml asked for
    reason: str  # why this strategy (one sentence, for `vilms explain` and the run log)
    nnodes: int  # nodes the run spans: the hardware profile's nodes (1 without a profile)
    nproc_per_node: int  # processes per node by default: the profile's GPUs; 1 on CPU, Jetson and without a profile
    max_nproc_per_node: int | None  # most processes a node may run: GPUs; cpus on CPU; 1 on Jetson; null: unknown
    collective_timeout_s: float  # a collective waiting longer fails the run and names the rank that did not arrive
    max_restarts: int  # torchrun --max-restarts
    engine: str  # torchrun | ray: what starts the processes (vilms.yaml training.engine; ray: Ray Train's TorchTrainer)


@record
class ArtifactStoreSpec:
    """vilms.yaml's ``artifact_store``: an S3-compatible object store that runs' adapters are pushed to,
    one folder per run (``<uri>/<run_id>/``). Credentials are the names of environment variables, never values."""

    uri: str  # s3://<bucket>[/<prefix>], no trailing slash
    endpoint: str | None  # the S3 endpoint URL; null: AWS S3 (or endpoint_env)
    endpoint_env: str | None  # the variable that holds the endpoint URL, when vilms.yaml says env:NAME
    region: str
    access_key_id_env: str
    secret_access_key_env: str

    @property
    def bucket(self) -> str:
        return self.uri[len("s3://"):].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The key prefix under the bucket, without slashes at either end ('' at the bucket's root)."""
        rest = self.uri[len("s3://"):].split("/", 1)
        return rest[1].strip("/") if len(rest) > 1 else ""

    def run_uri(self, run_id: str) -> str:
        """Where a run's adapter lives: Ray Serve LLM loads ``<model>:<run_id>`` from here."""
        return f"{self.uri}/{run_id}"


@record
class ExportSpec:
    """What `vilms export` writes by default."""

    gguf: bool
    quantize: tuple[str, ...]  # q8_0 | q4_k_m


@record
class MlflowSpec:
    """Where MLflow tracking goes."""

    tracking_uri: str | None  # file:<path relative to the project> or a server URL; null: read tracking_uri_env
    tracking_uri_env: str | None  # the environment variable holding the server's URL (tracking.mlflow.uri: env:NAME)
    experiment: str
    registered_model: str  # Model Registry model whose versions are the adapter's released runs (the adapter's name)
    registry_alias: str  # the alias `vilms rollout` moves to the released version, `vilms rollback` moves back

    def uri(self, project_root: Path, environ: Mapping[str, str]) -> str | None:
        """The tracking URI: from the file, or from its environment variable (None when that is unset
        or empty); a ``file:`` path is resolved against the project."""
        if self.tracking_uri_env:
            return environ.get(self.tracking_uri_env, "").strip() or None
        uri = str(self.tracking_uri)
        if uri.startswith("file:") and not uri.startswith("file:/"):
            return (project_root / uri[len("file:"):]).resolve().as_uri()
        return uri


@record
class TrackingSpec:
    """Experiment tracking of the run (null: none)."""

    mlflow: MlflowSpec | None  # null: no MLflow logging


@record
class MemoryEstimate:
    """The compiler's estimate of the run's peak memory (compiler/memory/training.py)."""

    total_bytes: int
    weights_bytes: int
    adapter_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    overhead_bytes: int


@record
class TrainingConfig:
    """Everything the trainer reads for one adapter, and nothing else."""

    project: str
    adapter: str
    base_model: BaseModel
    dataset: DatasetRef
    method: str  # lora | qlora
    lora: LoraSpec
    quantization: QuantSpec | None  # set for qlora, null for lora
    training: TrainingSpec
    distributed: DistributedSpec
    gate: GateSpec
    hardware: HardwareSpec | None  # null: no profile; trains on the machine it runs on
    export: ExportSpec
    artifact_store: ArtifactStoreSpec | None  # null: no artifact_store in vilms.yaml; `vilms export --push` refuses
    tracking: TrackingSpec
    telemetry: OtlpSpec | None  # null: no telemetry.otlp in vilms.yaml; no OTLP metrics
    memory_estimate: MemoryEstimate | None  # null: the base model's size is unknown


def _check(config: TrainingConfig, report: Reporter) -> None:
    if config.method == "qlora":
        if config.quantization is None:
            report.error(("quantization",), "method qlora needs a quantization section with load_in_4bit: true")
        elif not config.quantization.load_in_4bit:
            report.error(("quantization", "load_in_4bit"), "method qlora needs load_in_4bit: true")
    elif config.quantization is not None:
        report.error(("quantization",), f"must be null for method {config.method}")
    dist = config.distributed
    if dist.max_nproc_per_node is not None and dist.nproc_per_node > dist.max_nproc_per_node:
        report.error(("distributed", "nproc_per_node"),
                     f"{dist.nproc_per_node} processes per node but a node runs at most {dist.max_nproc_per_node}")
    if config.hardware is not None and config.hardware.nodes != dist.nnodes:
        report.error(("distributed", "nnodes"), f"{dist.nnodes} nodes but hardware {config.hardware.name} has {config.hardware.nodes}")
    for index, case in enumerate(config.gate.regression):
        if (case.expect_substring is None) == (case.expect_exact is None):
            report.error(("gate", "regression", index), "give exactly one of expect_substring, expect_exact")


TRAINING_CONFIG = Contract(
    kind="TrainingConfig",
    root=TrainingConfig,
    schema_file="training-config.schema.json",
    format="yaml",
    remedy="run `vilms build`",
    check=_check,
)
