"""This process's place among the training processes, and the collectives the recipe uses.

One process (no torchrun) is ``World()``: rank 0 of 1, no process group; every collective
is then the identity, so the single-process recipe runs unchanged. Under torchrun
(``WORLD_SIZE`` > 1) :func:`join` creates the process group: NCCL on CUDA (one GPU per
local rank), gloo on CPU, with the run's collective timeout. Under Ray Train the group is
already initialised (Ray's TorchConfig): :func:`adopt` takes it as it is, and
:func:`leave` leaves it to Ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

THREADS_ENV = "VILMS_TORCH_THREADS"  # torch threads per process; default: the cores shared by the local processes


@dataclass
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1
    backend: str = "none"  # nccl | gloo | none (one process)
    heartbeat: Any = None  # a heartbeat.Heartbeat under torchrun
    owns_group: bool = True  # False: someone else (Ray Train) created the process group and destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def nnodes(self) -> int:
        return max(1, self.size // self.local_size)

    def main_only(self, write: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """The rank gate: run ``write`` on rank 0 only (checkpoints, metrics, records, MLflow)."""
        return write(*args, **kwargs) if self.is_main else None

    def beat(self, step: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.step = step

    # ---------------------------------------------------------------- collectives
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all ranks (one all_reduce)."""
        if self.size == 1:
            return values
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out


def from_env() -> World:
    """The world torchrun describes in the environment (``World()`` without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    return World(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        size=size,
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def join(timeout_s: float) -> World:
    """Join the process group torchrun set up; set this process's device and thread count."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    world = from_env()
    if world.size == 1:
        return world
    if torch.cuda.is_available():
        world.backend = "nccl"
        torch.cuda.set_device(world.local_rank)
    else:
        world.backend = "gloo"
    if not os.environ.get(THREADS_ENV):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
    if not dist.is_initialized():
        try:
            dist.init_process_group(world.backend, timeout=timedelta(seconds=timeout_s))
        except RuntimeError as exc:
            from vilms.compiler.errors import ActionError

            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ActionError(f"rank {world.rank} could not join the process group ({world.backend}): {first}",
                              hint="torchrun restarts the worker group (--max-restarts)") from None
    return world


def adopt(local_rank: int, local_size: int, device: Any = None) -> World:
    """The world of a process group another launcher initialised (Ray Train): its rank, size and
    backend as torch.distributed reports them; ``device`` (a CUDA device) becomes this process's device."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return World(owns_group=False)
    world = World(rank=dist.get_rank(), local_rank=local_rank, size=dist.get_world_size(), local_size=local_size,
                  backend=str(dist.get_backend()), owns_group=False)
    if world.backend == "nccl":
        torch.cuda.set_device(device if device is not None else world.local_rank)
    return world


def leave(world: World) -> None:
    if world.heartbeat is not None:
        world.heartbeat.stop()
    if world.size > 1 and world.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def backend_for_host() -> str:
    """The backend a multi-process run uses on this machine (for the record the parent writes)."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"
