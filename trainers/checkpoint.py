"""Training checkpoints: everything needed to continue a run bit for bit.

``checkpoints/step-000050/`` holds the trainable (adapter) weights, the optimizer and
scheduler states, the RNG states (python, numpy, torch, cuda) and ``state.json`` (step,
data position, loss history). A run on several processes saves the gathered (full) trainable
weights and optimizer state, every rank's RNG state and the world size, written by rank 0;
it resumes only at the same world size. Each checkpoint is written into a temp directory and
renamed into place, so a run killed at any moment leaves only complete checkpoints.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError

from .atomic import atomic_directory

KEEP_LAST = 2
_NAME = re.compile(r"^step-(\d{6,})$")


@dataclass
class TrainerState:
    """The loop's position and history; serialised as ``state.json``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch of the next micro-batch
    micro_index: int = 0  # index of the next micro-batch within the epoch
    tokens_seen: int = 0  # input tokens processed (padding excluded)
    elapsed_seconds: float = 0.0  # training-loop wall time over all sessions
    peak_rss_bytes: int = 0
    train_history: list[list[float]] = field(default_factory=list)  # [step, loss, lr]
    eval_history: list[list[float]] = field(default_factory=list)  # [step, loss]
    step_seconds: list[float] = field(default_factory=list)  # wall time of each loop iteration


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / "state.json").is_file()
    ]
    return max(found)[1] if found else None


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainerState) -> Path:
    import torch
    from safetensors.torch import save_file

    target = checkpoint_dir(run_dir, state.step)
    with atomic_directory(target) as tmp:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    _prune(run_dir)
    return target


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> TrainerState:
    """Restore weights, optimizer, scheduler and RNG from ``path``; return the loop state."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing or any(n not in params for n in weights):
        raise ActionError(f"checkpoint {path} does not match the model (LoRA settings changed?)")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    rng = torch.load(path / "rng.pt", weights_only=False)
    _same_world(path, rng, 1)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(rng)
    return TrainerState(**json.loads((path / "state.json").read_text(encoding="utf-8")))


def world_size_of(rng: dict[str, Any]) -> int:
    """The world size a checkpoint was written at (its rng.pt: one state, or one per rank)."""
    return int(rng["world_size"]) if "ranks" in rng else 1


def _same_world(path: Path, rng: dict[str, Any], world_size: int) -> None:
    saved = world_size_of(rng)
    if saved != world_size:
        raise ActionError(
            f"checkpoint {path.name} was written by {saved} process{'es' if saved > 1 else ''}; "
            f"this run has {world_size}: resuming at another world size is not supported",
            hint=f"resume with --nproc-per-node {saved} (on {saved} processes in all), or start a new run without --resume",
        )


def _full_options(**extra: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def gathered_trainable_state(model: Any) -> dict[str, Any]:
    """The full trainable weights, gathered on rank 0 (empty elsewhere): a collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True, ignore_frozen_params=True))


def save_distributed(run_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: TrainerState, world: Any) -> None:
    """Every rank gathers (collectives); rank 0 writes, then the ranks meet again."""
    import torch
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    weights = gathered_trainable_state(model)
    optim = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    rngs = world.gather(rng_state())

    def write() -> None:
        target = checkpoint_dir(run_dir, state.step)
        with atomic_directory(target) as tmp:
            save_file(weights, str(tmp / "trainable.safetensors"))
            torch.save(optim, tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save({"world_size": world.size, "ranks": rngs}, tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        _prune(run_dir)

    world.main_only(write)
    world.barrier()


def load_distributed(path: Path, model: Any, optimizer: Any, scheduler: Any, world: Any) -> TrainerState:
    """Every rank reads the checkpoint and takes its shard of the weights and optimizer state and its own RNG."""
    import torch
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    rng = torch.load(path / "rng.pt", weights_only=False)
    _same_world(path, rng, world.size)
    weights = load_file(str(path / "trainable.safetensors"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != trainable:
        raise ActionError(f"checkpoint {path} does not match the model (LoRA settings changed?)")
    set_model_state_dict(model, weights, options=_full_options(strict=False))
    set_optimizer_state_dict(model, optimizer, torch.load(path / "optimizer.pt", weights_only=False),
                             options=_full_options())
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(rng["ranks"][world.rank])
    return TrainerState(**json.loads((path / "state.json").read_text(encoding="utf-8")))


def _prune(run_dir: Path) -> None:
    root = run_dir / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)))
    for _, old in found[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
