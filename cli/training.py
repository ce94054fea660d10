"""Training commands: train, runs, approve, export, and data (check, sanitize, manifest).

torch, transformers and peft are imported inside the command bodies (through the trainer
modules that need them), never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from vilms.compiler.errors import ActionError, GateError, UsageError
from vilms.compiler.layout import Layout, run_path
from vilms.compiler.suggest import did_you_mean
from vilms.trainers.detect.scanner import DEFAULT_REGIONS  # a constant; the detectors load when a command runs

from .options import FILE, dataset_format


@click.command("train")
@click.argument("adapter", required=False)
@click.option("--resume", is_flag=True, help="continue the newest unfinished run of ADAPTER from its last checkpoint")
@click.option("--all", "all_adapters", is_flag=True, help="train every adapter in generated/training/")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="with --all: how many adapters train at once (separate processes)",
)
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    default=None,
    help="training processes on this node, under torchrun (default: the config's distributed.nproc_per_node)",
)
@click.option("--nnodes", type=click.IntRange(min=1), default=None,
              help="nodes of a bare-metal run: prints the torchrun command for every node (default: the profile's nodes)")
@click.option("--rdzv-endpoint", metavar="HOST:PORT", default=None, help="with --nnodes N>1: the rendezvous endpoint")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="train as Ray Train workers on a running Ray cluster: auto, HOST:PORT (GCS) or ray://HOST:PORT; "
                   "nnodes × nproc-per-node workers")
@click.option("--progress/--no-progress", default=True, help="show the progress bar")
@click.option("--worker", is_flag=True, hidden=True, help="run as a torchrun worker")
@click.option("--run-id", default=None, hidden=True, help="with --worker: the run to train")
@FILE
def train(
    adapter: str | None,
    resume: bool,
    all_adapters: bool,
    jobs: int,
    nproc_per_node: int | None,
    nnodes: int | None,
    rdzv_endpoint: str | None,
    ray_address: str | None,
    progress: bool,
    worker: bool,
    run_id: str | None,
    file: Path,
) -> None:
    """Train ADAPTER from generated/training/ADAPTER.yaml into artifacts/<run_id>/."""
    if all_adapters == (adapter is not None):
        raise UsageError("give either ADAPTER or --all")
    if jobs != 1 and not all_adapters:
        raise UsageError("-j/--jobs only applies with --all")
    if all_adapters and (nproc_per_node or nnodes or rdzv_endpoint or worker or ray_address):
        raise UsageError("--nproc-per-node, --nnodes, --rdzv-endpoint and --ray apply to one ADAPTER, not --all")
    if run_id is not None and not worker:
        raise UsageError("--run-id only applies with --worker")
    if all_adapters:
        from vilms.trainers.parallel import train_all

        results = train_all(file, jobs=jobs, resume=resume, show_progress=progress)
        for result in results:
            click.echo(result.summary())
        failed = [r for r in results if not r.ok]
        for result in failed:  # each adapter's whole error, as `vilms train ADAPTER` would print it
            click.echo(f"\n{result.adapter}: {result.error}", err=True)
        if failed:
            names = ", ".join(r.adapter for r in failed)
            if all(r.gate_refused for r in failed):
                raise GateError(f"{len(failed)} of {len(results)} adapters trained but did not pass their gate: {names}")
            raise ActionError(f"{len(failed)} of {len(results)} adapters failed: {names}")
        return
    from vilms.trainers import runs
    from vilms.trainers import trainer as trainers

    assert adapter is not None
    if worker:
        if nproc_per_node or nnodes or rdzv_endpoint or ray_address:
            raise UsageError("a --worker takes its place from torchrun, not from --nproc-per-node/--nnodes/--ray")
        if run_id is None and not resume:
            raise UsageError("a --worker needs --run-id RUN, or --resume to find or create the run")
        done = trainers.run_worker(file, adapter, run_id=run_id, resume=resume, show_progress=progress)
        if done is not None and os.environ.get("RANK", "0") == "0":
            click.echo(f"{adapter}: run {done}: worker group finished")
        return
    started = trainers.train(
        file, adapter, resume=resume, show_progress=progress, nproc_per_node=nproc_per_node, nnodes=nnodes,
        rdzv_endpoint=rdzv_endpoint, ray_address=ray_address,
    )
    if started.command is not None:
        click.echo(f"{adapter}: run {started.run_id} created; run this on every node:")
        click.echo(started.command)
        return
    record = runs.read_record(Layout.of(file), started.run_id)
    click.echo(f"{adapter}: run {started.run_id} completed; gate {record.gate_status}")
    _refuse_unreleasable(record)


def _refuse_unreleasable(record: Any) -> None:
    """Exit with ExitCode.GATE when the run completed but its gate failed or needs approval."""
    from vilms.compiler.runs import release_hint

    if record.releasable:
        return
    reasons = "; ".join(record.gate.reasons) if record.gate and record.gate.reasons else "no reason recorded"
    raise GateError(f"{record.adapter}: run {record.run_id} did not pass its gate ({record.gate_status}): {reasons}",
                    hint=release_hint(record.run_id, record.status, record.gate_status))


@click.command("approve")
@click.argument("run_id")
@click.option("--reason", required=True, help="why this run may be released despite its gate")
@FILE
def approve(run_id: str, reason: str, file: Path) -> None:
    """Record a human approval of RUN_ID (a run whose gate needs approval)."""
    from vilms.trainers.approval import approve as approve_run

    layout = Layout.of(file)
    decision, entry = approve_run(layout, run_id, reason)
    from vilms.compiler.approvals import shown

    click.echo(f"approved {run_id} by {decision.who} (from {entry.identity}) at {decision.at}; "
               f"recorded in {shown(layout, entry.adapter)}: commit it")


@click.command("export")
@click.argument("run_id")
@click.option("--gguf/--no-gguf", "gguf", default=None, help="write GGUF files (default: the config's export.gguf)")
@click.option(
    "--quantize",
    "quantize",
    multiple=True,
    type=click.Choice(["Q8_0", "Q4_K_M"], case_sensitive=False),
    help="quantise the GGUF (repeatable; default: the config's export.quantize)",
)
@click.option(
    "--outtype",
    type=click.Choice(["f16", "f32"]),
    default="f16",
    show_default=True,
    help="float type of the unquantised GGUF",
)
@click.option(
    "--merge-dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="dtype the adapter is merged in (never 4-bit)",
)
@click.option("--push", is_flag=True,
              help="then push the run's adapter to vilms.yaml's artifact_store and verify it (Ray Serve LLM loads it there)")
@FILE
def export(
    run_id: str, gguf: bool | None, quantize: tuple[str, ...], outtype: str, merge_dtype: str, push: bool, file: Path
) -> None:
    """Merge RUN_ID's adapter and export it (safetensors, GGUF, GGUF LoRA, Modelfile)."""
    store = _store_to_push(file) if push else None  # before the export: a store that cannot work fails fast
    from vilms.trainers.export.pipeline import export_run

    section = export_run(
        Layout.of(file), run_id, gguf=gguf, quantize=list(quantize), outtype=outtype, merge_dtype=merge_dtype
    )
    for name in sorted(section.files):
        click.echo(run_path(run_id, name))
    if section.vllm.compatible:
        click.echo(f"vLLM: compatible (--max-lora-rank {section.vllm.max_lora_rank})")
    else:
        click.echo("vLLM: NOT compatible: " + "; ".join(section.vllm.problems))
    for note in section.notes:
        click.echo(f"note: {note}")
    if store is not None:
        from vilms.runtime.artifact_store import publish

        click.echo(publish(store, Layout.of(file), run_id).summary())


def _store_to_push(file: Path) -> Any:
    """vilms.yaml's artifact store, its credentials read from the environment (no request yet)."""
    from vilms.compiler.pipeline import compile_plan
    from vilms.runtime.artifact_store import open_store
    from vilms.runtime.artifact_store.publish import NEEDS_STORE

    _, plan = compile_plan(file, fit=False)
    if plan.artifact_store is None:
        raise UsageError(f"--push needs an artifact_store in {file}, and it has none", hint=NEEDS_STORE)
    return open_store(plan.artifact_store)


@click.group("data")
def data() -> None:
    """Check, describe and sanitise JSONL datasets."""


@data.command("sanitize")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--output", "output", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dataset", "dataset", metavar="NAME",
              help="a dataset of the vilms.yaml (-f): INPUT defaults to its path, --region to its region")
@FILE
@click.option(
    "--audit",
    "audit",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write a JSONL audit log of every redaction (never the values)",
)
@click.option("--pattern", "patterns", multiple=True, metavar="NAME=REGEX", help="an extra pattern to redact")
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="CC",
    help="country (ISO 3166 alpha-2) whose national phone formats the data uses; repeatable "
    f"(default: {' '.join(DEFAULT_REGIONS)})",
)
def sanitize(
    input_path: Path | None, output: Path, dataset: str | None, file: Path, audit: Path | None, patterns: tuple[str, ...],
    regions: tuple[str, ...]
) -> None:
    """Redact PII and secrets from INPUT (or --dataset's file) into OUTPUT (written atomically)."""
    from vilms.trainers.sanitize import parse_user_patterns, sanitize_file

    if dataset is not None:
        from vilms.compiler.pipeline import compile_plan

        _, plan = compile_plan(file, fit=False)
        if dataset not in plan.datasets:
            raise UsageError(f"{file} has no dataset {dataset!r}" + did_you_mean(dataset, plan.datasets),
                             hint=f"datasets: {', '.join(sorted(plan.datasets)) or 'none'}")
        spec = plan.datasets[dataset]
        input_path = input_path or file.parent / spec.path
        regions = regions or ((spec.region,) if spec.region else ())
    if input_path is None:
        raise UsageError("give INPUT, or --dataset NAME to sanitise a dataset of the vilms.yaml")
    report = sanitize_file(
        input_path, output, audit, parse_user_patterns(patterns), display=str(input_path),
        regions=regions or DEFAULT_REGIONS,
    )
    kinds = ", ".join(f"{k} {v}" for k, v in report.findings.items()) or "nothing found"
    click.echo(f"{input_path}: {report.rows} rows, {report.rows_changed} changed, {report.total} redactions ({kinds})")
    if report.ner is None:
        click.echo("names: greetings and sign-offs only (no NER model installed; see docs/training.md)")


@data.command("check")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@dataset_format()
def check(path: Path, fmt: str) -> None:
    """Validate every row of a JSONL dataset; report every problem with file:line."""
    from vilms.trainers.datasets.validate import load_dataset

    dataset = load_dataset(path, fmt, display=str(path))
    click.echo(f"{path}: ok, {len(dataset.rows)} rows, sha256 {dataset.sha256}")


@data.command("manifest")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@dataset_format()
@click.option("--name", help="dataset name (default: file stem)")
@click.option("--source", help="where the data came from")
@click.option("--license", "license_", help="licence of the data")
@click.option("--collected-at", help="ISO-8601 time the data was collected")
@click.option("--anonymised-at", help="ISO-8601 time the data was anonymised")
@click.option("--confidence", type=click.FloatRange(0, 1), help="confidence in the labels, 0..1")
@click.option(
    "--tokenizer",
    type=click.Path(path_type=Path, file_okay=False),
    help="count tokens with this HF tokenizer folder (default: whitespace words)",
)
def manifest(
    path: Path,
    fmt: str,
    name: str | None,
    source: str | None,
    license_: str | None,
    collected_at: str | None,
    anonymised_at: str | None,
    confidence: float | None,
    tokenizer: Path | None,
) -> None:
    """Write or refresh PATH.manifest.json (hash, rows, token statistics, provenance)."""
    from vilms.trainers.datasets import manifest as mf
    from vilms.trainers.datasets.validate import load_dataset

    dataset = load_dataset(path, fmt, display=str(path))
    stats = None
    if tokenizer is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer))
        stats = mf.token_stats(
            dataset, lambda text: len(tok(text, add_special_tokens=False)["input_ids"]), f"tokenizer:{tokenizer.name}"
        )
    provenance = {
        "source": source,
        "license": license_,
        "collected_at": collected_at,
        "anonymised_at": anonymised_at,
        "confidence": confidence,
    }
    target = mf.write_manifest(dataset, name or path.name.split(".")[0], path.name, provenance, stats)
    click.echo(f"wrote {target}; pin the content with sha256: {dataset.sha256} under datasets: in vilms.yaml")


@click.command("runs")
@click.argument("adapter", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@FILE
def runs_command(adapter: str | None, fmt: str, file: Path) -> None:
    """List the runs under artifacts/ (of ADAPTER): status, gate, released, started, config hash."""
    import json

    from vilms.trainers.run_list import list_runs, table

    rows = list_runs(file, adapter)
    if fmt == "json":
        click.echo(json.dumps([r.data() for r in rows], indent=2))
    elif rows:
        click.echo(table(rows))
    else:
        click.echo("no runs" + (f" of {adapter}" if adapter else "") + " under artifacts/")


COMMANDS = (train, approve, export, data, runs_command)
