"""metrics.json's peak RSS covers the whole run: the gate and the adapter save as well as the steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import write_project

pytestmark = pytest.mark.heavy


def test_peak_rss_is_sampled_after_the_gate_and_the_save(tiny_model: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("peft")
    from vilms.trainers import report
    from vilms.trainers.recipe import LoraRecipe
    from vilms.trainers.trainer import train_adapter

    # the process's peak as the kernel would report it: small while training, large once the
    # adapter is being saved (a save that allocates more than any step did)
    peak = {"bytes": 100 * 2**20}
    monkeypatch.setattr(report, "peak_rss_bytes", lambda: peak["bytes"])
    save = LoraRecipe.save_adapter

    def big_save(self: LoraRecipe) -> Path:
        peak["bytes"] = 3 * 2**30
        return save(self)

    monkeypatch.setattr(LoraRecipe, "save_adapter", big_save)
    project = write_project(tmp_path / "proj", tiny_model, {"training": {"max_steps": 4, "save_steps": 2}})
    run_id = train_adapter(project, "tiny-v1", show_progress=False)
    metrics = json.loads((tmp_path / "proj" / "artifacts" / run_id / "metrics.json").read_text())
    assert metrics["peak_rss_bytes"] == 3 * 2**30
