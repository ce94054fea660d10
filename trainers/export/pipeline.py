"""``vilms export RUN_ID``: merged safetensors, GGUF model + LoRA, quantisations, Modelfile.

Layout under ``artifacts/<run_id>/``::

    merged/                 HF safetensors of base + adapter (merged in fp32 or 16-bit)
    gguf/model.<f32|f16>.gguf   the merged model as GGUF
    gguf/model.<Q>.gguf     one per requested quantisation (Q8_0, Q4_K_M)
    gguf/model.gguf         the file the Modelfile serves (last quantisation, else unquantised)
    gguf/adapter.gguf       the adapter as GGUF LoRA (for llama.cpp --lora)
    gguf/Modelfile          FROM ./model.gguf + TEMPLATE/stop from the training chat template
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.run_record import ExportRecord
from vilms.compiler.digest import sha256_file
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import RUN_ADAPTER, RUN_CONFIG, Layout

from .. import runs
from ..atomic import write_text
from ..chat_templates import get_template
from ..job import read_job
from ..loader import resolve_source
from .modelfile import render_modelfile
from .vllm import check_adapter


def _link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def export_run(
    layout: Layout,
    run_id: str,
    *,
    gguf: bool | None = None,
    quantize: list[str] | None = None,
    outtype: str = "f16",
    merge_dtype: str = "float32",
) -> ExportRecord:
    """Export a completed run; returns the ``export`` section written into run.json."""
    from .merge import merge_adapter
    from .quantize import normalise

    run_path = runs.run_dir(layout, run_id)
    record = runs.load_record(run_path)
    if record.status != "completed":
        raise ActionError(
            f"run {run_id} is {record.status}, not completed; nothing to export",
            hint=f"finish it with `vilms train {record.adapter} --resume`",
        )
    job = read_job(run_path / RUN_CONFIG, layout.root)
    cfg = job.config
    want_gguf = cfg.export.gguf if gguf is None else gguf
    quants = [normalise(q) for q in (quantize if quantize else ([] if gguf is False else cfg.export.quantize))]
    if quants:
        want_gguf = True
    adapter_dir = run_path / RUN_ADAPTER
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    vllm = check_adapter(adapter_config)

    source = resolve_source(cfg.base_model, layout.root)
    merged = merge_adapter(source, adapter_dir, run_path / "merged", merge_dtype)
    files = [merged / name for name in sorted(os.listdir(merged))]
    notes: list[str] = []
    if want_gguf:
        from .gguf import write_llama_gguf
        from .gguf_lora import write_lora_gguf

        out = run_path / "gguf"
        full = write_llama_gguf(merged, out / f"model.{outtype}.gguf", outtype=outtype, name=cfg.adapter)
        files.append(full)
        files.append(write_lora_gguf(adapter_dir, merged, out / "adapter.gguf"))
        served = full
        for kind in quants:
            from .quantize import quantize_gguf

            served = quantize_gguf(full, out / f"model.{kind.upper()}.gguf", kind)
            files.append(served)
        _link_or_copy(served, out / "model.gguf")
        template = get_template(cfg.base_model.chat_template)
        if template is None:
            notes.append("no Modelfile: chat_template 'tokenizer' has no Ollama TEMPLATE equivalent")
        else:
            modelfile = out / "Modelfile"
            write_text(modelfile, render_modelfile(template, "./model.gguf", num_ctx=cfg.training.seq_len))
            files.append(modelfile)
    section = ExportRecord(
        at=utc_now(),
        merged_dtype=merge_dtype,
        gguf_outtype=outtype if want_gguf else None,
        quantize=tuple(q.upper() for q in quants),
        vllm=vllm,
        notes=tuple(notes),
        files={p.relative_to(run_path).as_posix(): sha256_file(p) for p in files if p.is_file()},
    )
    runs.save_record(run_path, replace(runs.load_record(run_path), export=section))
    return section
