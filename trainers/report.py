"""Run outputs for humans: ``metrics.json`` and the loss-curve PNG."""

from __future__ import annotations

import io
import resource
import statistics
from pathlib import Path
from typing import Any

from .atomic import write_bytes, write_json
from .checkpoint import TrainerState


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def build_metrics(
    state: TrainerState, eval_loss: float | None, perplexity: float | None, total_steps: int
) -> dict[str, Any]:
    train = state.train_history
    seconds = state.elapsed_seconds
    return {
        "steps": state.step,
        "total_steps": total_steps,
        "train_loss": {
            "first": train[0][1] if train else None,
            "last": train[-1][1] if train else None,
            "history": [[int(s), loss] for s, loss, _ in train],
        },
        "eval_loss": eval_loss,
        "eval_perplexity": perplexity,
        "eval_history": [[int(s), loss] for s, loss in state.eval_history],
        "tokens_processed": state.tokens_seen,
        "tokens_per_second": state.tokens_seen / seconds if seconds > 0 else None,
        "steps_per_second": state.step / seconds if seconds > 0 else None,
        "step_seconds_median": statistics.median(state.step_seconds) if state.step_seconds else None,
        "peak_rss_bytes": state.peak_rss_bytes,
        "wall_time_seconds": round(seconds, 3),
    }


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    path = run_dir / "metrics.json"
    write_json(path, metrics)
    return path


def write_loss_curve(run_dir: Path, state: TrainerState, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    if state.train_history:
        ax.plot(
            [s for s, _, _ in state.train_history],
            [loss for _, loss, _ in state.train_history],
            label="train",
            linewidth=1,
        )
    if state.eval_history:
        ax.plot([s for s, _ in state.eval_history], [loss for _, loss in state.eval_history], "o-", label="eval")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = run_dir / "loss.png"
    write_bytes(path, buffer.getvalue())
    return path
