#!/usr/bin/env python3
"""`vilms data sanitize` before and after, on the same corpus in the same run.

"Before" is trainers/sanitize.py as of BASELINE_REV (the regex-only detector), loaded from git
into a temporary module; "after" is the working tree's. Both sanitise the corpus of
tests/trainers/sanitize_corpus.py (planted items + clean look-alikes) repeated --repeat times;
each is timed --runs times, interleaved, and the median reported as rows/s, plus recall per
kind and false-positive rows for both. Scanner start-up (library imports) is reported apart.
Run: python bench/sanitize.py [--runs 3] [--repeat 4] [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
BASELINE_REV = "0685537"  # the last commit with the regex-only detector


def load_baseline(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:trainers/sanitize.py"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="sanitize-baseline-"))
    path = folder / "_sanitize_baseline.py"
    path.write_text(source, encoding="utf-8")
    # a module of the vilms.trainers package, so its relative imports (.atomic, .datasets) resolve
    spec = importlib.util.spec_from_file_location("vilms.trainers._sanitize_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sanitize_corpus", REPO / "tests" / "trainers" / "sanitize_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quality(run, corpus: ModuleType, folder: Path) -> tuple[dict[str, str], int]:  # type: ignore[no-untyped-def]
    planted = corpus.planted()
    source = folder / "quality.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus.rows()), encoding="utf-8")
    out, audit = folder / "q-out.jsonl", folder / "q-audit.jsonl"
    run(source, out, audit)
    lines = out.read_text(encoding="utf-8").splitlines()
    kinds: dict[int, set[str]] = {}
    for entry in map(json.loads, audit.read_text(encoding="utf-8").splitlines()):
        kinds.setdefault(entry["line"], set()).add(entry["kind"])
    per_kind: dict[str, list[int]] = {}
    for index, (kind, value, _) in enumerate(planted):
        hit = value not in lines[index] and bool(kinds.get(index + 1))  # redacted, whatever the kind is called
        per_kind.setdefault(kind, [0, 0])
        per_kind[kind][0] += hit
        per_kind[kind][1] += 1
    fp = sum(1 for line in kinds if line > len(planted))
    return {k: f"{h}/{t}" for k, (h, t) in per_kind.items()}, fp


HOSTILE = {  # one string each, 60,000 characters: lines an attacker would send
    "digits": "1" * 60000,
    "digit groups": "1 " * 30000,
    "sk- repeated": "sk-" * 20000,
    "scheme://": "a://" * 15000,
    "dotted": "a@" + "a." * 30000,
    "base64-ish": "Ab1+" * 15000,
    "parentheses": "(1) " * 15000,
    "order ids": "ORD-2024-0001-7788 " * 3158,
}


def hostile(find_old, find_new) -> None:  # type: ignore[no-untyped-def]
    print("hostile strings (seconds for one find over the string):")
    for name, text in HOSTILE.items():
        t0 = time.perf_counter()
        find_old(text)
        t1 = time.perf_counter()
        find_new(text)
        t2 = time.perf_counter()
        print(f"  {name:14s} {len(text):6d} chars  before {t1 - t0:6.2f} s  after {t2 - t1:6.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=4, help="copies of the corpus in the timed file")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO.parent))
    corpus = load_corpus()
    folder = Path(tempfile.mkdtemp(prefix="sanitize-bench-"))
    rows = corpus.rows() * args.repeat
    source = folder / "corpus.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    started = time.perf_counter()
    baseline = load_baseline(args.baseline_rev)
    base_start = time.perf_counter() - started
    started = time.perf_counter()
    from vilms.trainers import sanitize
    from vilms.trainers.detect import build_scanner

    build_scanner()  # imports Presidio, phonenumbers, stdnum, detect-secrets (cached afterwards)
    new_start = time.perf_counter() - started

    runners = {
        "before": lambda s, o, a: baseline.sanitize_file(s, o, a),
        "after": lambda s, o, a: sanitize.sanitize_file(s, o, a),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.runs):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(source, folder / f"{name}.jsonl", folder / f"{name}-audit.jsonl")
            times[name].append(time.perf_counter() - t0)
    print(f"corpus: {len(rows)} rows ({len(corpus.planted())} planted items + {len(corpus.clean())} clean rows) "
          f"x {args.repeat}; median of {args.runs} runs each, interleaved")
    for name, run in runners.items():
        median = statistics.median(times[name])
        recall, fp = quality(run, corpus, folder)
        found = sum(int(v.split("/")[0]) for v in recall.values())
        print(f"{name:7s} {len(rows) / median:8.0f} rows/s ({median:.2f} s)  start-up "
              f"{base_start if name == 'before' else new_start:.2f} s  found {found}/{len(corpus.planted())}  "
              f"false-positive rows {fp}/{len(corpus.clean())}")
        print("        recall: " + ", ".join(f"{k} {v}" for k, v in recall.items()))
    scanner = build_scanner()
    hostile(baseline.find, scanner.find)
    return 0


if __name__ == "__main__":
    sys.exit(main())
