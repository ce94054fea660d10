"""The trainer's input: a training config read through its contract, and the project it belongs to.

The config (:mod:`vilms.compiler.contracts.training_config`) is validated whole before any
model is loaded; its relative paths (the dataset, a ``file:`` base model) resolve against
the project root, the folder of vilms.yaml.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.training_config import TRAINING_CONFIG, TrainingConfig
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import TRAINING, Layout, training_config_path
from vilms.compiler.suggest import did_you_mean


@dataclass(frozen=True)
class TrainingJob:
    config: TrainingConfig
    root: Path  # the project folder
    file: Path  # the config file that was read
    sha256: str  # of its bytes: the run records it, and --resume refuses a changed config

    @property
    def dataset_path(self) -> Path:
        return self.root / self.config.dataset.path


def read_job(file: Path, root: Path) -> TrainingJob:
    """Read ``file`` (a training config) for the project in ``root``; InvalidInputError lists every problem."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ActionError(f"cannot read the training config {file}: {exc.strerror or exc}") from None
    config = TRAINING_CONFIG.parse(raw, str(file), file=file)
    return TrainingJob(config=config, root=root, file=file, sha256=hashlib.sha256(raw).hexdigest())


def job_for(layout: Layout, adapter: str) -> TrainingJob:
    """The job of ``adapter``: ``generated/training/<adapter>.yaml`` of the project."""
    file = layout.training_config(adapter)
    if not file.is_file():
        known = adapters(layout)
        raise ActionError(
            f"training config not found: {file}{did_you_mean(adapter, known)}",
            hint=f"`vilms build` writes {training_config_path('<adapter>')} for every adapter in vilms.yaml"
            + (f" (built here: {', '.join(known)})" if known else ""),
        )
    job = read_job(file, layout.root)
    if job.config.adapter != adapter:
        raise ActionError(f"{file} is for adapter {job.config.adapter!r}, not {adapter!r}", hint="run `vilms build`")
    return job


def adapters(layout: Layout) -> list[str]:
    """The adapters that have a training config in ``generated/``, sorted."""
    folder = layout.in_generated(TRAINING)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
