"""The trainer's input contract: ``generated/training/<adapter>.yaml``, loaded strictly.

Every problem is reported at once as a located :class:`Diagnostic` (unknown keys, missing
keys, wrong types, bad enum values); nothing is loaded until the whole file is valid —
the torchtune rule "validate dry, before any model is loaded".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.document import Document
from vilms.compiler.errors import ActionError, Diagnostic, InvalidInputError
from vilms.compiler.load import parse
from vilms.compiler.schema_errors import type_phrase

CHAT_TEMPLATES = ("chatml", "llama3", "mistral", "gemma", "phi3", "tokenizer")
FORMATS = ("chat", "completion", "text")
METHODS = ("lora", "qlora")
SCHEDULERS = ("cosine", "linear", "constant")

# --- a tiny schema language: type name, or (dict spec), or ("list", item), or ("enum", ...)
_INT = "int"
_NUM = "number"
_STR = "str"
_BOOL = "bool"


def _opt(spec: Any) -> tuple[str, Any]:
    return ("optional", spec)


_LORA = {
    "r": _INT,
    "lora_alpha": _NUM,
    "lora_dropout": _NUM,
    "target_modules": ("list", _STR),
    "bias": ("enum", "none", "all", "lora_only"),
    "use_rslora": _BOOL,
}
_QUANT = {
    "load_in_4bit": _BOOL,
    "bnb_4bit_quant_type": ("enum", "nf4", "fp4"),
    "bnb_4bit_use_double_quant": _BOOL,
    "bnb_4bit_compute_dtype": ("enum", "bfloat16", "float16", "float32"),
}
_TRAINING = {
    "epochs": _INT,
    "max_steps": _opt(_INT),
    "learning_rate": _NUM,
    "batch_size": _INT,
    "gradient_accumulation_steps": _INT,
    "seq_len": _INT,
    "seed": _INT,
    "warmup_ratio": _NUM,
    "lr_scheduler": ("enum", *SCHEDULERS),
    "weight_decay": _NUM,
    "save_steps": _INT,
    "eval_steps": _INT,
    "logging_steps": _INT,
    "gradient_checkpointing": _BOOL,
}
_REGRESSION = {"prompt": _STR, "expect_substring": _opt(_STR), "expect_exact": _opt(_STR)}
_SCHEMA: dict[str, Any] = {
    "apiVersion": ("enum", "vilms/v1"),
    "kind": ("enum", "TrainingConfig"),
    "project": _STR,
    "adapter": _STR,
    "base_model": {
        "name": _STR,
        "source": _STR,
        "revision": _opt(_STR),
        "family": _STR,
        "chat_template": ("enum", *CHAT_TEMPLATES),
    },
    "dataset": {
        "name": _STR,
        "path": _STR,
        "format": ("enum", *FORMATS),
        "sha256": _opt(_STR),
        "eval_fraction": _NUM,
    },
    "method": ("enum", *METHODS),
    "lora": _LORA,
    "quantization": _opt(_QUANT),
    "training": _TRAINING,
    "gate": {
        "max_eval_perplexity": _opt(_NUM),
        "regression": ("list", _REGRESSION),
        "on_fail": ("enum", "reject", "approval"),
    },
    "hardware": {
        "name": _STR,
        "kind": ("enum", "cpu", "gpu", "jetson"),
        "memory_bytes": _opt(_INT),
        "gpu_memory_bytes": _opt(_INT),
        "gpus": _opt(_INT),
    },
    "export": {"gguf": _BOOL, "quantize": ("list", ("enum", "q8_0", "q4_k_m"))},
    "tracking": {"mlflow": _opt({"tracking_uri": _STR, "experiment": _STR})},
    "memory_estimate": _opt(
        {
            "total_bytes": _INT,
            "weights_bytes": _INT,
            "adapter_bytes": _INT,
            "optimizer_bytes": _INT,
            "activations_bytes": _INT,
            "overhead_bytes": _INT,
        }
    ),
}
# keys that may be absent (everything else is required)
_OPTIONAL_KEYS = {
    "memory_estimate",
    "tracking",
    "export",
    "base_model.revision",
    "dataset.sha256",
    "training.max_steps",
    "hardware.memory_bytes",
    "hardware.gpu_memory_bytes",
    "hardware.gpus",
    "regression.expect_substring",
    "regression.expect_exact",
}


@dataclass(frozen=True)
class BaseModel:
    name: str
    source: str
    revision: str | None
    family: str
    chat_template: str


@dataclass(frozen=True)
class DatasetRef:
    name: str
    path: str
    format: str
    sha256: str | None
    eval_fraction: float


@dataclass(frozen=True)
class LoraSpec:
    r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: tuple[str, ...]
    bias: str
    use_rslora: bool


@dataclass(frozen=True)
class QuantSpec:
    load_in_4bit: bool
    bnb_4bit_quant_type: str
    bnb_4bit_use_double_quant: bool
    bnb_4bit_compute_dtype: str


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int
    max_steps: int | None
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    seq_len: int
    seed: int
    warmup_ratio: float
    lr_scheduler: str
    weight_decay: float
    save_steps: int
    eval_steps: int
    logging_steps: int
    gradient_checkpointing: bool


@dataclass(frozen=True)
class RegressionCase:
    prompt: str
    expect_substring: str | None
    expect_exact: str | None


@dataclass(frozen=True)
class GateSpec:
    max_eval_perplexity: float | None
    regression: tuple[RegressionCase, ...]
    on_fail: str


@dataclass(frozen=True)
class TrainingConfig:
    """A validated ``generated/training/<adapter>.yaml`` plus where it came from."""

    path: Path
    project_root: Path
    sha256: str
    project: str
    adapter: str
    base_model: BaseModel
    dataset: DatasetRef
    method: str
    lora: LoraSpec
    quantization: QuantSpec | None
    training: TrainingSpec
    gate: GateSpec
    hardware: dict[str, Any]
    export: dict[str, Any]
    tracking_mlflow: dict[str, str] | None
    memory_estimate: dict[str, int] | None
    raw: dict[str, Any]

    @property
    def dataset_path(self) -> Path:
        return self.project_root / self.dataset.path


def training_config_path(project_file: Path, adapter: str) -> Path:
    return project_file.parent / "generated" / "training" / f"{adapter}.yaml"


def load_training_config(path: Path, project_root: Path | None = None) -> TrainingConfig:
    """Load and strictly validate one training config; raise InvalidInputError with every problem."""
    if not path.is_file():
        raise ActionError(
            f"training config not found: {path}",
            hint="run `vilms build` to generate generated/training/<adapter>.yaml",
        )
    data = path.read_bytes()
    display = str(path)
    doc = parse(data, file=path, display_name=display)  # the compiler's loader: located errors, duplicate keys
    diags: list[Diagnostic] = []
    _check(doc.data, _SCHEMA, "", display, diags, (1, 1), doc)
    diags.extend(_semantic(doc, display))
    if diags:
        raise InvalidInputError(diags)
    root = project_root if project_root is not None else path.parent.parent.parent
    return _build(doc.data, path, root, hashlib.sha256(data).hexdigest())


def _tuple(path: str) -> tuple[str | int, ...]:
    """``gate.regression[2].prompt`` → ``("gate", "regression", 2, "prompt")``."""
    return tuple(int(t[1:-1]) if t.startswith("[") else t for t in re.findall(r"\[\d+\]|[^.\[\]]+", path))


def _check(value: Any, spec: Any, path: str, file: str, diags: list[Diagnostic], at: tuple[int, int], doc: Document) -> None:
    def err(message: str) -> None:
        diags.append(Diagnostic(file, at[0], at[1], path or "<root>", message))

    if isinstance(spec, tuple) and spec[0] == "optional":
        if value is None:
            return
        spec = spec[1]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            err(f"expected a mapping, got {type_phrase(value)}")
            return
        for key in value:
            if key not in spec:
                kat = doc.locate(_tuple(_join(path, str(key))), key=True)
                suggestion = _did_you_mean(str(key), spec)
                diags.append(
                    Diagnostic(file, kat[0], kat[1], _join(path, str(key)), f"unknown key '{key}'" + suggestion)
                )
        for key, sub in spec.items():
            sub_path = _join(path, key)
            if key not in value:
                short = f"{path.split('.')[-1].split('[')[0]}.{key}" if path else key
                if sub_path in _OPTIONAL_KEYS or short in _OPTIONAL_KEYS:
                    continue
                err(f"missing required key '{key}'")
                continue
            _check(value[key], sub, sub_path, file, diags, doc.locate(_tuple(sub_path)), doc)
        return
    if isinstance(spec, tuple) and spec[0] == "list":
        if not isinstance(value, list):
            err(f"expected a list, got {type_phrase(value)}")
            return
        for index, item in enumerate(value):
            _check(item, spec[1], f"{path}[{index}]", file, diags, doc.locate(_tuple(f"{path}[{index}]")), doc)
        return
    if isinstance(spec, tuple) and spec[0] == "enum":
        choices = spec[1:]
        if not isinstance(value, str) or value not in choices:
            err(f"expected one of {', '.join(choices)}, got {value!r}")
        return
    ok = {
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _NUM: isinstance(value, (int, float)) and not isinstance(value, bool),
        _STR: isinstance(value, str),
        _BOOL: isinstance(value, bool),
    }[spec]
    if not ok:
        wanted = {_INT: "an integer", _NUM: "a number", _STR: "a string", _BOOL: "a boolean"}[spec]
        err(f"expected {wanted}, got {type_phrase(value)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _did_you_mean(key: str, spec: dict[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(spec), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _semantic(document: Document, file: str) -> list[Diagnostic]:
    """Cross-field rules, checked only where the shapes are already right."""
    diags: list[Diagnostic] = []
    doc = document.data

    def add(node: Any, key: str, path: str, message: str) -> None:  # noqa: ARG001 - node kept for call sites
        line, col = document.locate(_tuple(path))
        diags.append(Diagnostic(file, line, col, path, message))

    training = doc.get("training")
    if isinstance(training, dict):
        for key in (
            "epochs",
            "batch_size",
            "gradient_accumulation_steps",
            "seq_len",
            "save_steps",
            "eval_steps",
            "logging_steps",
        ):
            value = training.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                add(training, key, f"training.{key}", f"must be at least 1, got {value}")
        max_steps = training.get("max_steps")
        if isinstance(max_steps, int) and not isinstance(max_steps, bool) and max_steps < 1:
            add(training, "max_steps", "training.max_steps", f"must be at least 1 or null, got {max_steps}")
        lr = training.get("learning_rate")
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr <= 0:
            add(training, "learning_rate", "training.learning_rate", "must be positive")
        warm = training.get("warmup_ratio")
        if isinstance(warm, (int, float)) and not isinstance(warm, bool) and not 0 <= warm < 1:
            add(training, "warmup_ratio", "training.warmup_ratio", "must be in [0, 1)")
    dataset = doc.get("dataset")
    if isinstance(dataset, dict):
        frac = dataset.get("eval_fraction")
        if isinstance(frac, (int, float)) and not isinstance(frac, bool) and not 0 <= frac < 1:
            add(dataset, "eval_fraction", "dataset.eval_fraction", "must be in [0, 1)")
        digest = dataset.get("sha256")
        if isinstance(digest, str) and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
            add(dataset, "sha256", "dataset.sha256", "must be 64 lowercase hex digits or null")
    lora = doc.get("lora")
    if isinstance(lora, dict):
        r = lora.get("r")
        if isinstance(r, int) and not isinstance(r, bool) and r < 1:
            add(lora, "r", "lora.r", f"must be at least 1, got {r}")
        targets = lora.get("target_modules")
        if isinstance(targets, list) and not targets:
            add(lora, "target_modules", "lora.target_modules", "must name at least one module")
        dropout = lora.get("lora_dropout")
        if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and not 0 <= dropout < 1:
            add(lora, "lora_dropout", "lora.lora_dropout", "must be in [0, 1)")
    method = doc.get("method")
    quant = doc.get("quantization")
    if method == "qlora" and quant is None:
        add(doc, "method", "method", "qlora needs a quantization section with load_in_4bit: true")
    if method == "qlora" and isinstance(quant, dict) and quant.get("load_in_4bit") is False:
        add(quant, "load_in_4bit", "quantization.load_in_4bit", "qlora needs load_in_4bit: true")
    if method == "lora" and quant is not None:
        add(doc, "quantization", "quantization", "must be null for method lora")
    source = doc.get("base_model", {}).get("source") if isinstance(doc.get("base_model"), dict) else None
    if isinstance(source, str) and not (source.startswith("hf:") or source.startswith("file:")):
        add(
            doc["base_model"], "source", "base_model.source", f"expected hf:<repo>[@rev] or file:<path>, got {source!r}"
        )
    gate = doc.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("regression"), list):
        for index, case in enumerate(gate["regression"]):
            if isinstance(case, dict):
                has = [k for k in ("expect_substring", "expect_exact") if case.get(k) is not None]
                if len(has) != 1:
                    line, col = document.locate(("gate", "regression", index))
                    diags.append(
                        Diagnostic(
                            file,
                            line,
                            col,
                            f"gate.regression[{index}]",
                            "give exactly one of expect_substring, expect_exact",
                        )
                    )
    return diags


def _build(raw: dict[str, Any], path: Path, root: Path, digest: str) -> TrainingConfig:
    gate = raw["gate"]
    quant = raw.get("quantization")
    tracking = raw.get("tracking") or {}
    lora = raw["lora"]
    return TrainingConfig(
        path=path,
        project_root=root,
        sha256=digest,
        project=raw["project"],
        adapter=raw["adapter"],
        base_model=BaseModel(**{"revision": None, **raw["base_model"]}),
        dataset=DatasetRef(
            **{"sha256": None, **raw["dataset"], "eval_fraction": float(raw["dataset"]["eval_fraction"])}
        ),
        method=raw["method"],
        lora=LoraSpec(
            r=lora["r"],
            lora_alpha=float(lora["lora_alpha"]),
            lora_dropout=float(lora["lora_dropout"]),
            target_modules=tuple(lora["target_modules"]),
            bias=lora["bias"],
            use_rslora=lora["use_rslora"],
        ),
        quantization=QuantSpec(**quant) if quant else None,
        training=TrainingSpec(
            **{
                "max_steps": None,
                **raw["training"],
                "learning_rate": float(raw["training"]["learning_rate"]),
                "warmup_ratio": float(raw["training"]["warmup_ratio"]),
                "weight_decay": float(raw["training"]["weight_decay"]),
            }
        ),
        gate=GateSpec(
            max_eval_perplexity=None if gate.get("max_eval_perplexity") is None else float(gate["max_eval_perplexity"]),
            regression=tuple(
                RegressionCase(c["prompt"], c.get("expect_substring"), c.get("expect_exact"))
                for c in gate["regression"]
            ),
            on_fail=gate["on_fail"],
        ),
        hardware=dict(raw["hardware"]),
        export=dict(raw.get("export") or {"gguf": False, "quantize": []}),
        tracking_mlflow=tracking.get("mlflow"),
        memory_estimate=raw.get("memory_estimate"),
        raw=raw,
    )
