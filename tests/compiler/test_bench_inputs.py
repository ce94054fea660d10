"""The synthetic projects bench/compile.py times are valid and build (so the benchmark cannot rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_synthetic_projects_build(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_compile", REPO / "bench" / "compile.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from vilms.compiler.pipeline import compile_files

    (tmp_path / "vilms.yaml").write_text(bench.synthetic(40))
    files = compile_files(tmp_path / "vilms.yaml")[2]
    assert {rel.split("/")[0] for rel in files} >= {"edge", "gpu", "dev", "k8s"}
    assert sum(rel.endswith(".Modelfile") for rel in files) == 10
