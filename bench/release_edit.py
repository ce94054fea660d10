#!/usr/bin/env python3
"""The `release:` edit: the text splice ViLMS uses vs ruamel.yaml's round trip, on the corpus of
vilms.yaml variants in tests/support/yaml_variants.py (flow, multi-line flow, quoting,
comments, CRLF, BOM, block scalars, 100 kB lines, unicode).

For each variant, ``adapters.support-v1.release`` is set to a new run id by
(a) ``vilms.compiler.rollout.edit.set_release`` and (b) ruamel.yaml ``YAML(typ="rt")`` with
preserve_quotes, the file's own indentation (``load_yaml_guess_indent``), its line break,
an unlimited width, the old value's quoting style kept and a BOM put back. A result passes
when exactly one line changed (every other byte kept) and it loads to the old data with the
new release. Prints the failures by kind and the pass counts. Run: python bench/release_edit.py
"""

from __future__ import annotations

import io
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ruamel.yaml import YAML  # noqa: E402
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString  # noqa: E402
from ruamel.yaml.util import load_yaml_guess_indent  # noqa: E402

from tests.support.yaml_variants import ADAPTER, R1, one_line_changed, variants  # noqa: E402
from vilms.compiler.load import parse  # noqa: E402
from vilms.compiler.rollout.edit import set_release  # noqa: E402


def splice(text: str) -> str:
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    return bom + set_release(text[len(bom):], ADAPTER, R1).text


def ruamel_round_trip(text: str) -> str:
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    _data, indent, block_seq_indent = load_yaml_guess_indent(body)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 10**9
    yaml.indent(mapping=indent or 2, sequence=(indent or 2) + (block_seq_indent or 0), offset=block_seq_indent or 0)
    if "\r\n" in body:
        yaml.line_break = "\r\n"
    data = yaml.load(body)
    spec = data["adapters"][ADAPTER]
    old = spec.get("release")
    style = type(old) if isinstance(old, (SingleQuotedScalarString, DoubleQuotedScalarString)) else str
    spec["release"] = style(R1)
    out = io.StringIO()
    yaml.dump(data, out)
    return bom + out.getvalue()


def expected_data(text: str) -> object:
    data = parse(text.encode("utf-8"), file=Path("vilms.yaml"), display_name="vilms.yaml").data
    data["adapters"][ADAPTER]["release"] = R1
    return data


def check(text: str, new: str) -> str | None:
    """None when ``new`` passes, else why not."""
    if not one_line_changed(text, new):
        return "changed more than one line"
    try:
        data = parse(new.encode("utf-8"), file=Path("vilms.yaml"), display_name="vilms.yaml").data
    except Exception as exc:  # noqa: BLE001 - counted, not raised
        return f"does not load ({type(exc).__name__})"
    return None if data == expected_data(text) else "loads to other data"


def main() -> int:
    corpus = variants()
    results: dict[str, Counter] = {}
    failures: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name, edit in (("splice", splice), ("ruamel rt", ruamel_round_trip)):
        counts: Counter = Counter()
        t0 = time.perf_counter()
        for variant, text in corpus:
            try:
                new = edit(text)
            except Exception as exc:  # noqa: BLE001 - counted, not raised
                why = f"raised {type(exc).__name__}"
            else:
                why = check(text, new)
            counts["pass" if why is None else why] += 1
            if why is not None:
                failures.setdefault(name, []).append(f"{variant}: {why}")
        seconds[name] = time.perf_counter() - t0
        results[name] = counts
    print(f"{len(corpus)} variants ({len({v.split('/')[0] for v, _ in corpus})} adapter forms, each as LF, CRLF, BOM, BOM+CRLF; "
          "plus 10 contexts x 3 forms)")
    for name, counts in results.items():
        detail = ", ".join(f"{why}: {n}" for why, n in counts.most_common() if why != "pass")
        print(f"{name:10} {counts['pass']:4}/{len(corpus)} keep every other byte  ({seconds[name]:.2f} s)  {detail}")
    for name, lines in failures.items():
        print(f"\n{name} failures:")
        for line in lines:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
