"""Training on a Ray cluster: Ray Train's ``TorchTrainer`` runs the same worker loop as torchrun.

``vilms train ADAPTER --ray ADDRESS``: this process (the driver) creates the run and its record
as the torchrun path does (:func:`vilms.trainers.trainer.open_run`), connects to the cluster and
runs ``TorchTrainer(worker_loop, ScalingConfig(num_workers=nnodes × nproc_per_node, use_gpu,
resources_per_worker), RunConfig(name=<run id>, storage_path=<artifacts>/.ray,
failure_config=FailureConfig(max_failures=max_restarts)))``. Each worker adopts the process
group Ray Train initialised (:func:`.world.adopt`: gloo on CPU, NCCL on GPU, the run's collective
timeout) and runs :func:`vilms.trainers.trainer.train_in_world` — the same sharding, DDP/FSDP2
wrap and one all_reduce per step; rank 0 writes checkpoints, metrics and the record into the
project's ``artifacts/``, which every node mounts (the KubeRay RayJob mounts the workspace PVC on
every pod). A restarted worker group resumes from the last checkpoint, as a new session.

The driver forwards SIGINT/SIGTERM as a stop request file the workers' rank 0 polls each step:
every rank stops at the same step, rank 0 writes a checkpoint and records the run as interrupted,
and the worker loop returns normally (an exception would make Ray restart the group).

Ray 2.60 runs Ray Train V2 (``RAY_TRAIN_V2_ENABLED`` defaults to on); this module uses only what
V1 and V2 share (``TorchTrainer``, ``ScalingConfig``, ``RunConfig``, ``FailureConfig``,
``TorchConfig``, ``ray.train.get_context()``, ``ray.train.TrainingFailedError``). V2 runs the loop
in a thread of the worker actor, so the recipe installs no signal handlers there. Metrics are not
sent through ``ray.train.report``: in V2 it is a barrier through the controller, measured at ~2 s
per call here (tiny model, CPU), longer than 100 steps; metrics.json, the record and MLflow carry
them as on the other paths. Ray is imported lazily: without it the error names the ``ray`` extra.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError, UsageError
from vilms.compiler.facts.ray import VERSION as RAY_VERSION

from .heartbeat import FOLDER as HEARTBEAT_FOLDER

STOP_FILE = "ray-stop"  # in <run>/heartbeat/: the signal name the driver received; rank 0 polls it
ATTEMPT_FILE = "ray-attempt"  # in <run>/heartbeat/: written by rank 0 when a worker group starts
STORAGE_DIR = ".ray"  # under artifacts/: Ray Train's own run state (RunConfig.storage_path), not a run
CONNECT_TIMEOUT_S = 30.0
# what the driver's environment passes on to the workers (ray.init runtime_env), when set
FORWARDED_ENV = ("VILMS_TORCH_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_VERBOSITY")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
INSTALL_HINT = f"install the ray extra: pip install 'vilms[ray]' (ray[train]=={RAY_VERSION})"


def parse_address(text: str) -> str:
    """``auto``, ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (the head's GCS), checked."""
    if text == "auto":
        return text
    rest = text.removeprefix("ray://")
    match = _HOST_PORT.match(rest)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise UsageError(f"--ray {text!r} is not a Ray address",
                         hint="use auto (the cluster this node belongs to), HOST:PORT of the head (GCS, 6379) "
                              "or ray://HOST:PORT (Ray Client, 10001)")
    return text


def _endpoint(address: str) -> tuple[str, int] | None:
    if address == "auto":
        return None
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    return host.strip("[]"), int(port)


def import_ray() -> Any:
    try:
        import ray
        import ray.train  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError as exc:
        raise ActionError(f"--ray needs Ray Train, which is not installed ({exc.name or exc})", hint=INSTALL_HINT) from None
    return ray


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """Connect this process to the Ray cluster at ``address`` (a TCP check first: a wrong address fails
    within ``timeout_s``, not after Ray's own retries)."""
    ray = import_ray()
    endpoint = _endpoint(address)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=timeout_s).close()
        except OSError as exc:
            raise ActionError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
                              hint="is the head running (`ray start --head`)? is the port its GCS (6379) "
                                   "or Ray Client (ray://…:10001) port?") from None
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    try:
        ray.init(address=address, runtime_env={"env_vars": env} if env else None, logging_level="WARNING",
                 log_to_driver=True, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ActionError(f"cannot connect to the Ray cluster at {address}: {first}",
                          hint="with --ray auto, run on a node of the cluster (or set RAY_ADDRESS)") from None
    return ray


# ---------------------------------------------------------------- the driver's stop request

def _stop_file(run_dir: Path) -> Path:
    return run_dir / HEARTBEAT_FOLDER / STOP_FILE


def request_stop(run_dir: Path, signum: int) -> None:
    path = _stop_file(run_dir)
    path.parent.mkdir(exist_ok=True)
    path.write_text(signal.Signals(signum).name, encoding="utf-8")


class StopRequest:
    """The recipe's ``stop_requested``: the signal the driver received, once it wrote the stop file."""

    def __init__(self, run_dir: Path) -> None:
        self.path = _stop_file(run_dir)

    def __call__(self) -> int | None:
        try:
            name = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return int(signal.Signals[name]) if name in signal.Signals.__members__ else int(signal.SIGTERM)


@contextmanager
def forwarding_signals(run_dir: Path) -> Iterator[list[int]]:
    """SIGINT/SIGTERM ask the workers to stop at their next step; a second one aborts the driver."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        request_stop(run_dir, signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


# ---------------------------------------------------------------- the workers

def _group_restarted(run_dir: Path) -> bool:
    """Rank 0, at the start of a worker group: has a group of this driver already started (a restart)?"""
    marker = run_dir / HEARTBEAT_FOLDER / ATTEMPT_FILE
    marker.parent.mkdir(exist_ok=True)
    attempt = int(marker.read_text(encoding="utf-8") or "0") if marker.is_file() else 0
    marker.write_text(str(attempt + 1), encoding="utf-8")
    return attempt > 0


def worker_loop(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs (``train_loop_per_worker``)."""
    import ray.train
    from ray.train.torch import get_device

    from vilms.compiler.layout import Layout

    from .. import runs
    from ..job import job_for
    from ..recipe import Interrupted
    from ..trainer import train_in_world
    from .world import adopt

    context = ray.train.get_context()
    layout = Layout.of(Path(config["project_file"]))
    job = job_for(layout, config["adapter"])
    device = get_device()
    world = adopt(context.get_local_rank(), context.get_local_world_size(), device if device.type == "cuda" else None)
    run_dir = runs.run_dir(layout, config["run_id"])
    restarted = bool(world.main_only(_group_restarted, run_dir))
    try:
        train_in_world(layout, job, world, config["run_id"], resume=True, show_progress=False, restarted=restarted,
                       stop_requested=StopRequest(run_dir))
    except Interrupted:
        return  # rank 0 recorded the run as interrupted; returning keeps Ray from restarting the group


# ---------------------------------------------------------------- the driver

@dataclass(frozen=True)
class RayOutcome:
    failures: tuple[tuple[int, str], ...]  # (rank, error) of the last attempt's failed workers
    signal: str | None  # the signal the driver received


def _error_text(exc: BaseException) -> str:
    """A worker's error without Ray's wrapping: the ViLMS message when there is one, else the first line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ActionError):
            return cause.render() if cause.hint else str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    named = [line for line in lines if line.startswith(("ActionError: ", "UsageError: "))]
    text = (named or lines or [type(exc).__name__])[-1 if named else 0]
    return text.removeprefix("ActionError: ").removeprefix("UsageError: ")


def fit(project_file: Path, job: Any, run_id: str, run_dir: Path, storage: Path, *, nnodes: int,
        nproc_per_node: int, use_gpu: bool) -> RayOutcome:
    """Run the worker group of ``run_id`` on the Ray cluster this process is connected to (:func:`connect`);
    wait; a worker failure is returned, not raised."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    dist = job.config.distributed
    for stale in (_stop_file(run_dir), run_dir / HEARTBEAT_FOLDER / ATTEMPT_FILE):
        stale.unlink(missing_ok=True)
    # a GPU per worker (a pod's Ray CPUs may be fewer than its GPUs), else a CPU
    resources = {"GPU": 1} if use_gpu else {"CPU": 1}
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"project_file": str(project_file.resolve()), "adapter": job.config.adapter, "run_id": run_id},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=math.ceil(dist.collective_timeout_s)),
        scaling_config=ScalingConfig(
            num_workers=nnodes * nproc_per_node, use_gpu=use_gpu, resources_per_worker=resources,
            # one process per node: one worker on each node, not packed on the first one
            placement_strategy="STRICT_SPREAD" if nnodes > 1 and nproc_per_node == 1 else "PACK",
        ),
        run_config=RunConfig(name=run_id, storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=dist.max_restarts)),
    )
    failures: tuple[tuple[int, str], ...] = ()
    with forwarding_signals(run_dir) as received:
        try:
            trainer.fit()
        except ray.train.TrainingFailedError as exc:
            found = getattr(exc, "worker_failures", None) or {}
            texts = [(int(rank), _error_text(err).removeprefix(f"rank {rank}: ")) for rank, err in sorted(found.items())]
            # the rank that failed first, not the peers whose collective broke because of it
            failures = tuple(sorted(texts, key=lambda f: (f[1].startswith("a collective failed"), f[0])))
            failures = failures or ((-1, _error_text(exc)),)
        except KeyboardInterrupt:  # a second signal: the driver gives up waiting
            pass
        finally:
            ray.shutdown()
            _stop_file(run_dir).unlink(missing_ok=True)
    stopped = signal.Signals(received[0]).name if received else None
    return RayOutcome(failures=failures, signal=stopped)
