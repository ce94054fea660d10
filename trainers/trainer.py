"""One training run end to end: pre-flight → run directory → recipe → records.

Everything that can be checked without a model is checked before the run directory is
created (config, dataset rows, dataset hash pin, mlflow availability, the process count),
so bad input leaves no partial artifacts.

One process trains here, in this process. Several processes on this node: this process
creates the run and its record, then runs torchrun as a child (:mod:`.distributed.launch`);
each worker runs :func:`run_worker`. Several nodes: the run is created and the torchrun
command for every node is returned (bare metal), or Kubeflow Trainer starts the workers with
``--worker --resume`` and rank 0 finds or creates the run. On a Ray cluster (``--ray``): this
process creates the run, then Ray Train's workers (:mod:`.distributed.ray_train`) run the same
worker loop, :func:`train_in_world`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.run_record import DistributedUsed, RunRecord
from vilms.compiler.errors import ActionError, DatasetError, Diagnostic, UsageError
from vilms.compiler.layout import RUN_CONFIG, RUN_RECORD, Layout
from vilms.compiler.memory.estimate import gib
from vilms.compiler.resolve import DEFAULT_OS_RESERVE

from . import checkpoint, record, report, run_locks, runs, tracking
from .datasets.validate import Dataset, load_dataset
from .distributed import heartbeat, launch
from .distributed.world import World
from .job import TrainingJob, job_for


def preflight(job: TrainingJob) -> Dataset:
    cfg = job.config
    dataset = load_dataset(job.dataset_path, cfg.dataset.format, display=cfg.dataset.path)
    if cfg.dataset.sha256 is not None and cfg.dataset.sha256 != dataset.sha256:
        raise DatasetError(
            [
                Diagnostic(
                    cfg.dataset.path,
                    0,
                    0,
                    "dataset.sha256",
                    f"content hash {dataset.sha256} does not match the pinned {cfg.dataset.sha256}",
                    hint="the dataset changed since it was pinned; review it and update the pin in vilms.yaml",
                )
            ]
        )
    tracking.require(job)
    return dataset


@dataclass(frozen=True)
class Started:
    run_id: str
    command: str | None = None  # a multi-node run: the torchrun command to run on every node (nothing trained here)


def check_processes(job: TrainingJob, nnodes: int, nproc: int) -> None:
    """Refuse a process count the hardware profile cannot hold (before anything is created)."""
    cfg, dist, hw = job.config, job.config.distributed, job.config.hardware
    if dist.max_nproc_per_node is not None and nproc > dist.max_nproc_per_node:
        if hw is not None and hw.kind == "jetson":
            why = "Jetson trains in one process (its one integrated GPU)"
        elif hw is not None and hw.kind == "cpu":
            why = f"hardware {hw.name} declares cpus: {hw.cpus}"
        else:
            why = f"hardware {hw.name if hw else '?'} has {dist.max_nproc_per_node} GPUs per node"
        raise UsageError(f"--nproc-per-node {nproc} is more than a node runs: {why}",
                         hint=f"use --nproc-per-node {dist.max_nproc_per_node} or fewer")
    if hw is not None and hw.kind == "cpu" and nproc > 1 and dist.strategy == "ddp":
        budget = hw.memory_bytes - DEFAULT_OS_RESERVE["cpu"]
        need = nproc * cfg.memory_estimate.total_bytes
        if need > budget:
            raise ActionError(
                f"{nproc} processes × {gib(cfg.memory_estimate.total_bytes)} (one DDP replica each) = {gib(need)} "
                f"does not fit {gib(budget)} (hardware {hw.name}: memory − OS reserve)",
                hint="use fewer processes (--nproc-per-node), or training.strategy: fsdp to shard the base weights",
            )


def train_adapter(project_file: Path, adapter: str, *, resume: bool = False, show_progress: bool = True) -> str:
    """Train ``adapter`` from ``generated/training/<adapter>.yaml`` in this process; return the run id."""
    return train(project_file, adapter, resume=resume, show_progress=show_progress, nproc_per_node=1).run_id


def train(
    project_file: Path,
    adapter: str,
    *,
    resume: bool = False,
    show_progress: bool = True,
    nproc_per_node: int | None = None,
    nnodes: int | None = None,
    rdzv_endpoint: str | None = None,
    ray_address: str | None = None,
) -> Started:
    """Train ``adapter`` on ``nnodes`` × ``nproc_per_node`` processes (defaults: the training config's);
    with ``ray_address``, as Ray Train workers on that Ray cluster."""
    layout = Layout.of(project_file)
    job = job_for(layout, adapter)
    nproc = nproc_per_node or job.config.distributed.nproc_per_node
    nodes = nnodes or job.config.distributed.nnodes
    if ray_address is not None:
        if rdzv_endpoint:
            raise UsageError("--rdzv-endpoint is for torchrun; Ray Train sets up the process group on the Ray cluster")
        return _train_on_ray(project_file, layout, job, ray_address, resume=resume, nnodes=nodes, nproc=nproc)
    if job.config.distributed.engine == "ray":
        print(f"{adapter}: training.engine is ray; without --ray ADDRESS it trains on this machine under torchrun",
              file=sys.stderr)
    if nodes > 1 and not rdzv_endpoint:
        raise UsageError(f"a run on {nodes} nodes needs --rdzv-endpoint HOST:PORT (a node every other node reaches)")
    if rdzv_endpoint and nodes == 1:
        raise UsageError("--rdzv-endpoint only applies to a run on several nodes (--nnodes N > 1)")
    check_processes(job, nodes, nproc)
    dataset = preflight(job)
    backend = "none" if nodes * nproc == 1 else _host_backend()
    used = record.distributed_used(job, nnodes=nodes, nproc_per_node=nproc, backend=backend)
    run_id, run_dir, current, resuming = open_run(layout, job, dataset, resume, used)
    try:
        return _train_here(project_file, layout, job, dataset, run_id, run_dir, current, resuming, used, nodes=nodes,
                           nproc=nproc, rdzv_endpoint=rdzv_endpoint, show_progress=show_progress)
    finally:
        close_run(layout, run_id)


def _train_here(project_file: Path, layout: Layout, job: TrainingJob, dataset: Dataset, run_id: str, run_dir: Path,
                current: RunRecord, resuming: bool, used: DistributedUsed, *, nodes: int, nproc: int,
                rdzv_endpoint: str | None, show_progress: bool) -> Started:
    adapter = job.config.adapter
    print(f"{adapter}: run {run_id}: global batch {used.equation}"
          + (f" ({used.strategy}, {used.backend})" if used.world_size > 1 else ""), file=sys.stderr)
    if nodes > 1:
        return Started(run_id, launch.multinode_command(
            adapter, project_file, run_id, nnodes=nodes, nproc=nproc, rdzv_endpoint=str(rdzv_endpoint),
            max_restarts=job.config.distributed.max_restarts))
    if nproc > 1:
        _run_torchrun(project_file, job, run_id, run_dir, nproc, show_progress)
        return Started(run_id)

    from .recipe import Interrupted, LoraRecipe

    tracker = open_tracking(job, run_id, run_dir, dataset)
    recipe = LoraRecipe(job, dataset, run_dir, resume=resuming, show_progress=show_progress, tracker=tracker)
    try:
        result = recipe.run()
    except Interrupted:
        runs.save_record(run_dir, record.ended(current, "interrupted"))
        end_tracking(tracker, "interrupted", recipe)
        raise
    except BaseException:
        runs.save_record(run_dir, record.ended(current, "failed"))
        end_tracking(tracker, "failed", recipe)
        raise
    finish(layout, job, run_dir, current, recipe, result, tracker)
    return Started(run_id)


def open_tracking(job: TrainingJob, run_id: str, run_dir: Path, dataset: Dataset) -> tracking.Tracker:
    """Rank 0's live metrics of ``run_id`` (MLflow, OTLP); a resumed run continues its MLflow run."""
    latest = checkpoint.latest_checkpoint(run_dir)
    return tracking.open_tracker(job, run_id, run_dir, dataset,
                                 start_step=int(latest.name.split("-")[1]) if latest else 0)


def end_tracking(tracker: tracking.Tracker, status: str, recipe: Any) -> None:
    """End a session that did not complete (FAILED in MLflow, with what it logged); never masks why."""
    state = getattr(recipe, "state", None)
    try:
        tracker.finish(status, step=state.step if state is not None else 0)
    except Exception as exc:  # noqa: BLE001 — the training's own error is the one to report
        print(f"{recipe.cfg.adapter}: could not end the tracking run: {type(exc).__name__}", file=sys.stderr)


def open_run(
    layout: Layout, job: TrainingJob, dataset: Dataset, resume: bool, used: DistributedUsed
) -> tuple[str, Path, RunRecord, bool]:
    """The run to train, its record saved as running, its lock held by this process (:mod:`.run_locks`;
    :func:`close_run` gives it up). ``resume``: the newest unfinished run of this config and dataset,
    else a new run. Every other unfinished run of the adapter that no process trains is marked
    abandoned: nothing would ever resume it (this is what lets a Job always pass ``--resume``)."""
    adapter = job.config.adapter
    with run_locks.picking(layout, adapter):
        candidates = runs.unfinished(layout, adapter)
        free = [r for r in candidates if run_locks.hold(layout, r.run_id)]
        try:
            previous = _resumable(layout, job, dataset, used, candidates, free) if resume else None
        except BaseException:
            for other in free:
                run_locks.release(layout, other.run_id)
            raise
        if previous is not None:
            run_id, run_dir = previous.run_id, layout.run(previous.run_id)
            removed = runs.remove_leftovers(run_dir)
            if removed:
                print(f"{adapter}: run {run_id}: removed {removed} unfinished write(s) of the killed session",
                      file=sys.stderr)
            current = record.resumed(previous)
        else:
            if resume:  # e.g. the first start of a Kubernetes Job that always passes --resume
                print(f"{adapter}: no unfinished run of this config to resume; starting a new run", file=sys.stderr)
            run_id, run_dir = runs.create_run(layout, adapter)
            run_locks.hold(layout, run_id)
            shutil.copyfile(job.file, run_dir / RUN_CONFIG)
            current = record.started(job, run_id, dataset, used)
        runs.save_record(run_dir, current)
        for other in free:
            if other.run_id != run_id:
                other_dir = layout.run(other.run_id)
                runs.save_record(other_dir, record.abandoned(other))
                runs.remove_leftovers(other_dir)
                run_locks.release(layout, other.run_id)
                print(f"{adapter}: run {other.run_id} ({other.status}) marked abandoned: run {run_id} supersedes it",
                      file=sys.stderr)
    return run_id, run_dir, current, previous is not None


def _resumable(layout: Layout, job: TrainingJob, dataset: Dataset, used: DistributedUsed,
               candidates: list[RunRecord], free: list[RunRecord]) -> RunRecord | None:
    """The newest unfinished run of ``job``'s config and dataset (of ``candidates``, newest first) that no
    other process trains (``free``: locked by this one); refuses when that run is being trained elsewhere."""
    adapter = job.config.adapter
    ours = {r.run_id for r in free}
    busy = [r for r in candidates
            if r.run_id not in ours and r.config_sha256 == job.sha256 and r.dataset.sha256 == dataset.sha256]
    same = [r for r in free if r.config_sha256 == job.sha256 and r.dataset.sha256 == dataset.sha256]
    if busy and (not same or (busy[0].created_at, busy[0].run_id) > (same[0].created_at, same[0].run_id)):
        pid = run_locks.holder(layout, busy[0].run_id)
        raise ActionError(f"run {busy[0].run_id} of {adapter} is being trained by another process"
                          + (f" (pid {pid})" if pid else ""),
                          hint="wait for it to end, or stop it; a second trainer of one run would corrupt it")
    if not same:
        return None
    previous = same[0]
    before = previous.distributed.world_size if previous.distributed else 1
    if before != used.world_size:
        raise ActionError(
            f"run {previous.run_id} trained on {before} process{'es' if before > 1 else ''}; resuming it on "
            f"{used.world_size} is not supported (its checkpoints hold {before} ranks' data order and RNG)",
            hint=f"resume with --nproc-per-node {before}"
            + (f" (× {previous.distributed.nnodes} nodes)" if previous.distributed and previous.distributed.nnodes > 1 else "")
            + ", or start a new run without --resume",
        )
    return previous


def close_run(layout: Layout, run_id: str | None) -> None:
    """This process no longer trains ``run_id``: give its lock up."""
    if run_id is not None:
        run_locks.release(layout, run_id)


def finish(layout: Layout, job: TrainingJob, run_dir: Path, current: RunRecord, recipe: Any, result: Any,
           tracker: tracking.Tracker) -> None:
    """The run's outputs once it trained (rank 0): metrics, loss curve, the completed record, MLflow."""
    cfg = job.config
    report.write_loss_curve(run_dir, result.state, f"{cfg.adapter} ({current.run_id})")
    # the process's peak so far: training, the gate, the adapter save and the loss curve (sampled last)
    result.state.peak_rss_bytes = max(result.state.peak_rss_bytes, report.peak_rss_bytes())
    metrics = report.build_metrics(result.state, result.eval_loss, result.gate.perplexity, result.total_steps)
    metrics["train_examples"] = len(recipe.train_examples)
    metrics["eval_examples"] = len(recipe.eval_examples)
    report.write_metrics(run_dir, metrics)
    runs.save_record(run_dir, record.completed(current, result.gate, metrics))
    tracker.finish("completed", step=result.state.step, gate_status=result.gate.status,
                   artifacts=[run_dir / "adapter", run_dir / "metrics.json", run_dir / RUN_RECORD, run_dir / "loss.png"])
    shutil.rmtree(run_dir / heartbeat.FOLDER, ignore_errors=True)


def _host_backend() -> str:
    from .distributed.world import backend_for_host

    return backend_for_host()


def _run_torchrun(project_file: Path, job: TrainingJob, run_id: str, run_dir: Path, nproc: int, progress: bool) -> None:
    adapter = job.config.adapter
    outcome = launch.run_local(adapter, project_file, run_id, nproc=nproc,
                               max_restarts=job.config.distributed.max_restarts, progress=progress)
    if outcome.returncode == 0:
        return
    lines = [(f.rank, ("killed by " + f.signal) if f.signal else f"exit code {f.exitcode}"
              + (f": {f.message}" if f.message else "")) for f in outcome.failures]
    _raise_unfinished(job, run_id, run_dir, lines, outcome.signal, f"torchrun exited with code {outcome.returncode}")


def _raise_unfinished(job: TrainingJob, run_id: str, run_dir: Path, failures: list[tuple[int, str]],
                      stopped_by: str | None, otherwise: str) -> None:
    """The worker group ended without completing the run: record it as failed (unless a rank recorded how
    it ended) and raise what happened — a signal, the failed ranks and their errors, or ``otherwise``."""
    adapter = job.config.adapter
    current = runs.load_record(run_dir)
    if current.status == "running":  # no worker recorded how it ended
        runs.save_record(run_dir, record.ended(current, "interrupted" if stopped_by and not failures else "failed"))
    latest = checkpoint.latest_checkpoint(run_dir)
    at = f"; checkpoint at step {int(latest.name.split('-')[1])}" if latest else ""
    if current.status == "interrupted" or (stopped_by and not failures):
        raise ActionError(f"training stopped by {stopped_by or 'a signal'}{at}",
                          hint=f"continue with `vilms train {adapter} --resume`")
    if not failures:
        raise ActionError(f"{otherwise}{at}", hint=f"see the output above; continue with `vilms train {adapter} --resume`")
    lines = [(f"rank {rank}: " if rank >= 0 else "") + text for rank, text in failures]
    raise ActionError(
        f"training failed on rank {failures[0][0]} of run {run_id} after "
        f"{job.config.distributed.max_restarts} restart(s){at}:\n  " + "\n  ".join(lines),
        hint=f"fix the cause, then continue with `vilms train {adapter} --resume`",
    )


def _train_on_ray(project_file: Path, layout: Layout, job: TrainingJob, address: str, *, resume: bool, nnodes: int,
                  nproc: int) -> Started:
    """Create (or resume) the run here, then train it as Ray Train workers on the cluster at ``address``."""
    from .distributed import ray_train

    address = ray_train.parse_address(address)
    cfg = job.config
    check_processes(job, nnodes, nproc)
    dataset = preflight(job)
    ray_train.connect(address)  # before the run exists: no extra, or no cluster, leaves nothing behind
    use_gpu = cfg.hardware is not None and cfg.hardware.gpus > 0
    used = record.distributed_used(job, nnodes=nnodes, nproc_per_node=nproc, backend="nccl" if use_gpu else "gloo")
    run_id, run_dir, _, _ = open_run(layout, job, dataset, resume, used)
    print(f"{cfg.adapter}: run {run_id}: global batch {used.equation} ({used.strategy}, {used.backend}) "
          f"on Ray Train at {address}", file=sys.stderr)
    try:
        return _fit_on_ray(project_file, layout, job, run_id, run_dir, nnodes=nnodes, nproc=nproc, use_gpu=use_gpu)
    finally:
        close_run(layout, run_id)


def _fit_on_ray(project_file: Path, layout: Layout, job: TrainingJob, run_id: str, run_dir: Path, *, nnodes: int,
                nproc: int, use_gpu: bool) -> Started:
    from .distributed import ray_train

    try:
        outcome = ray_train.fit(project_file, job, run_id, run_dir, layout.artifacts / ray_train.STORAGE_DIR,
                                nnodes=nnodes, nproc_per_node=nproc, use_gpu=use_gpu)
    except BaseException:
        current = runs.load_record(run_dir)
        if current.status == "running":
            runs.save_record(run_dir, record.ended(current, "failed"))
        raise
    if runs.load_record(run_dir).status != "completed":
        _raise_unfinished(job, run_id, run_dir, list(outcome.failures), outcome.signal, "the Ray Train run did not complete")
    return Started(run_id)


def run_worker(
    project_file: Path, adapter: str, *, run_id: str | None, resume: bool, show_progress: bool = True
) -> str | None:
    """One torchrun worker: join the group, train its share, rank 0 writes. Errors are recorded
    for torchrun (``TORCHELASTIC_ERROR_FILE``) so the launcher can say which rank failed and why."""
    from torch.distributed.elastic.multiprocessing.errors import record as record_error

    return record_error(_worker)(project_file, adapter, run_id, resume, show_progress)


def _worker(project_file: Path, adapter: str, run_id: str | None, resume: bool, show_progress: bool) -> str | None:
    from .distributed import world as worlds

    layout = Layout.of(project_file)
    job = job_for(layout, adapter)
    world = worlds.join(job.config.distributed.collective_timeout_s)
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0  # torchrun restarted the worker group
    return train_in_world(layout, job, world, run_id, resume=resume, show_progress=show_progress, restarted=restarted)


def train_in_world(
    layout: Layout, job: TrainingJob, world: World, run_id: str | None, *, resume: bool, show_progress: bool,
    restarted: bool, stop_requested: Callable[[], int | None] | None = None,
) -> str | None:
    """One rank of a worker group whose process group is set up (torchrun or Ray Train): train its share;
    rank 0 writes the checkpoints, metrics and the record. Leaves the group when done."""
    from .distributed import world as worlds
    from .recipe import Interrupted, LoraRecipe

    cfg = job.config
    try:
        check_processes(job, world.nnodes, world.local_size)
        dataset = preflight(job)
        used = record.distributed_used(job, nnodes=world.nnodes, nproc_per_node=world.local_size,
                                       backend=world.backend)
        if run_id is None:  # started by Kubeflow Trainer (or by hand) with --resume: rank 0 finds or creates the run
            opened = world.main_only(open_run, layout, job, dataset, resume, used)
            run_id = world.broadcast(opened[0] if opened else None)
        assert run_id is not None
        run_dir = runs.run_dir(layout, run_id)
        current = runs.load_record(run_dir)
        if current.config_sha256 != job.sha256 or current.dataset.sha256 != dataset.sha256:
            raise ActionError(f"the training config or dataset changed since run {run_id} started",
                              hint="start a new run")
        if restarted:  # the launcher restarted the worker group: a new session of the same run
            current = record.resumed(current)
            world.main_only(runs.save_record, run_dir, current)
        world.heartbeat = heartbeat.Heartbeat(run_dir, world.rank, heartbeat.interval_for(
            cfg.distributed.collective_timeout_s))
        resuming = checkpoint.latest_checkpoint(run_dir) is not None
        tracker = open_tracking(job, run_id, run_dir, dataset) if world.is_main else tracking.Tracker()
        recipe = LoraRecipe(job, dataset, run_dir, resume=resuming, show_progress=show_progress, world=world,
                            stop_requested=stop_requested, tracker=tracker)
        try:
            result = recipe.run()
        except Interrupted:
            world.main_only(runs.save_record, run_dir, record.ended(current, "interrupted"))
            end_tracking(tracker, "interrupted", recipe)
            raise
        except BaseException as exc:
            end_tracking(tracker, "failed", recipe)
            if isinstance(exc, RuntimeError) and world.size > 1 and _is_collective_error(exc):
                raise heartbeat.collective_failed(
                    exc, run_dir, world.rank, world.size, cfg.distributed.collective_timeout_s) from None
            raise
        world.main_only(finish, layout, job, run_dir, current, recipe, result, tracker)
        return run_id
    except ActionError as exc:
        if world.size > 1 and exc.hint and not isinstance(exc, Interrupted):  # torchrun's error file keeps str(exc)
            raise ActionError(exc.render()) from None
        raise
    finally:
        close_run(layout, run_id)  # rank 0 of a group that picked its run itself held its lock
        worlds.leave(world)


def _is_collective_error(exc: BaseException) -> bool:
    import torch.distributed as dist

    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(
        word in text for word in ("gloo", "nccl", "timed out", "timeout", "connection closed", "connection reset")
    )
