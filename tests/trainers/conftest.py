"""Fixtures for the trainer tests: a tiny llama model and tiny projects on disk."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("VILMS_TORCH_THREADS", "1")

from vilms.trainers.tiny import TINY_TRAINING_CONFIG as BASE_CONFIG  # noqa: E402,F401
from vilms.trainers.tiny import merge_config as merge  # noqa: E402,F401
from vilms.trainers.tiny import write_tiny_project as write_project  # noqa: E402

QLORA = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "float32",
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vilms.trainers.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2 architecture (q/k/v biases, tied embeddings, NEOX rope in llama.cpp)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vilms.trainers.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-qwen2") / "model", arch="qwen2")


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    def make(
        model_dir: Path | None = None,
        changes: dict[str, Any] | None = None,
        name: str = "proj",
        rows: list[dict[str, Any]] | None = None,
        adapter: str | None = None,
    ) -> Path:
        return write_project(tmp_path / name, model_dir, changes, rows, adapter)

    return make


@pytest.fixture(autouse=True)
def _client_settings_stay_in_the_test() -> Iterator[None]:
    """The trainer sets MLflow's client settings in its own process (mlflow_run.configure_client); here
    that process is the test session's, so each test puts them back."""
    import os

    keys = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
            "MLFLOW_ALLOW_FILE_STORE")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
