"""A corpus of vilms.yaml variants for the `release:` edit: every way the adapter's mapping and
the text around it may be written (block and flow, multi-line flow, quoting, comments, CRLF,
a BOM, block scalars, 100 kB lines, unicode), each a project that builds.

``variants()`` gives ``(name, text)``; the text is ``str`` with the BOM, if any, as ``\\ufeff``
(write it with ``.encode("utf-8")``). The adapter is :data:`ADAPTER`; :data:`R0` is the run
some variants already release. Used by tests/compiler/test_release_edit.py and by
bench/release_edit.py (which measures ruamel.yaml's round trip on the same corpus).
"""

from __future__ import annotations

from tests.compiler.minimal import MINIMAL

ADAPTER = "support-v1"
R0 = "support-v1-20261120T091500Z-0a0b0c"
R1 = "support-v1-20261121T091500Z-1a2b3c"

BLOCK = "  support-v1:\n    base: qwen2.5-1.5b\n    dataset: support\n    method: lora\n    lora: {r: 16}\n    hardware: gpu1\n"
assert BLOCK in MINIMAL
LONG = "x" * 100_000

# how adapters.support-v1 is written (replaces BLOCK in MINIMAL)
ADAPTER_FORMS = {
    "plain-null": BLOCK + "    release: null\n",
    "tilde": BLOCK + "    release: ~\n",
    "empty-with-comment": BLOCK + "    release:   # not trained yet\n",
    "single-quoted": BLOCK + f"    release: '{R0}'\n",
    "double-quoted": BLOCK + f'    release: "{R0}"\n',
    "plain-run-id-comment": BLOCK + f"    release: {R0}   # the served run\n",
    "quoted-key": BLOCK + '    "release": null\n',
    "release-first": "  support-v1:\n    release: null  # first\n" + BLOCK.split("\n", 1)[1],
    "release-between-comments": BLOCK.replace("    hardware: gpu1\n", "    # which run is served\n    release: null\n    # where it trains\n    hardware: gpu1\n"),
    "missing": BLOCK,
    "missing-comment-after": BLOCK.replace("hardware: gpu1\n", "hardware: gpu1   # trains here\n") + "    # more later\n\n",
    "missing-nested-last": BLOCK + "    gate:\n      max_eval_perplexity: 12.0\n      # about the gate\n",
    "missing-sequence-last": BLOCK.replace("    lora: {r: 16}\n", "") + "    lora:\n      r: 16\n      target_modules:\n      - q_proj\n      - v_proj\n",
    "indent-4": BLOCK.replace("\n    ", "\n        ") + "        release: null\n",
    "flow": "  support-v1: {base: qwen2.5-1.5b, dataset: support, method: lora, lora: {r: 16}, hardware: gpu1, release: null}  # flow\n",
    "flow-missing": "  support-v1: {base: qwen2.5-1.5b, dataset: support, method: lora, lora: {r: 16}, hardware: gpu1}\n",
    "flow-quoted": "  support-v1: {'base': \"qwen2.5-1.5b\", dataset: support, method: lora, lora: {r: 16}, hardware: gpu1, "
                   f"\"release\": '{R0}'}}\n",
    "multiline-flow": "  support-v1: {\n    base: qwen2.5-1.5b, dataset: support,\n    method: lora, lora: {r: 16},\n"
                      "    hardware: gpu1, release: null   # in flow\n  }\n",
    "multiline-flow-missing": "  support-v1: {\n    base: qwen2.5-1.5b, dataset: support,\n    method: lora,\n    lora: {r: 16},\n"
                              "    hardware: gpu1}\n",
    "multiline-flow-release-own-line": "  support-v1: {base: qwen2.5-1.5b, dataset: support, method: lora, lora: {r: 16}, hardware: gpu1,\n"
                                       f"    release: \"{R0}\"}}\n",
}

# the text around the adapter (applied to the plain-null, missing and multi-line flow forms)
CONTEXTS = {
    "long-comment-line": lambda t: t.replace("adapters:\n", f"# {LONG}\nadapters:\n"),
    "long-value-line": lambda t: t.replace("\naliases:\n", "\n  other-v1: {base: qwen2.5-1.5b, dataset: support, method: lora, lora: {r: 8}, "
                                           f'hardware: gpu1, gate: {{regression: [{{prompt: "{LONG}", expect_substring: ok}}]}}}}\naliases:\n'),
    "unicode": lambda t: "# Überblick — 模型 ✓ 🚀 עברית\n" + t.replace("fallbacks: [chat]}", 'fallbacks: [chat], system: "Hilfe für Kunden 客服 🙂"}')
                          .replace("adapters:\n", "adapters:   # Adapter (日本語) ✓\n"),
    "literal-block-scalar": lambda t: t.replace("  support-bot: {model: qwen2.5-1.5b, adapter: support-v1, fallbacks: [chat]}\n",
                                                "  support-bot:\n    model: qwen2.5-1.5b\n    adapter: support-v1\n    fallbacks: [chat]\n"
                                                "    system: |\n      You help customers.\n        release: not-this\n\n      Be brief.\n"),
    "folded-block-scalar-before": lambda t: t.replace("adapters:\n", "adapters:\n  other-v1:\n    base: qwen2.5-1.5b\n    dataset: support\n"
                                                      "    method: lora\n    lora: {r: 8}\n    hardware: gpu1\n    gate:\n      regression:\n"
                                                      "      - prompt: >-\n          adapters:\n            support-v1:\n              release: x\n"
                                                      "        expect_substring: ok\n"),
    "fake-release-comments": lambda t: t.replace("adapters:\n", "# adapters.support-v1.release: not here\nadapters:\n  # release: nor here\n"),
    "document-markers": lambda t: "%YAML 1.2\n---\n" + t + "...\n",
    "trailing-spaces": lambda t: t.replace("\n", "  \n").replace("  \n", "\n", 1),
    "adapters-last-no-final-newline": lambda t: _adapters_last(t).rstrip("\n"),
    "blank-lines": lambda t: t.replace("\n  support-v1:", "\n\n\n  support-v1:").replace("\naliases:", "\n\n\naliases:"),
}
CONTEXT_FORMS = ("plain-null", "missing", "multiline-flow")

ENCODINGS = {
    "lf": lambda t: t,
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "bom": lambda t: "\ufeff" + t,
    "bom-crlf": lambda t: "\ufeff" + t.replace("\n", "\r\n"),
}


def _adapters_last(text: str) -> str:
    head, rest = text.split("adapters:\n", 1)
    block, tail = rest.split("aliases:\n", 1)
    return head + "aliases:\n" + tail + "adapters:\n" + block


def variants() -> list[tuple[str, str]]:
    out = []
    for form, block in ADAPTER_FORMS.items():
        base = MINIMAL.replace(BLOCK, block)
        for encoding, encode in ENCODINGS.items():
            out.append((f"{form}/{encoding}", encode(base)))
    for context, change in CONTEXTS.items():
        for form in CONTEXT_FORMS:
            out.append((f"{form}/{context}", change(MINIMAL.replace(BLOCK, ADAPTER_FORMS[form]))))
    return out


def released_before(text: str) -> str | None:
    """The run the variant releases before any edit (None: null or no release: at all)."""
    return R0 if R0 in text else None


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    """The lines of ``old`` and of ``new`` between their common first and last lines (line
    endings included, so a changed CRLF counts)."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start:len(a) - end], b[start:len(b) - end]


def one_line_changed(old: str, new: str) -> bool:
    """True when ``new`` is ``old`` with exactly one line replaced or inserted, every other
    byte kept, and that line ending as the file's lines do (a line inserted after a last line
    without a newline gives that line one)."""
    before, after = changed_lines(old, new)
    newline = "\r\n" if "\r\n" in old else "\n"
    if (len(before), len(after)) == (1, 1):
        return _ending(after[0]) == _ending(before[0])
    if (len(before), len(after)) == (0, 1):
        return _ending(after[0]) == newline
    return (len(before) == 1 and len(after) == 2 and old.endswith(before[0]) and after[0] == before[0] + newline
            and _ending(after[1]) == newline)


def _ending(line: str) -> str:
    return "\r\n" if line.endswith("\r\n") else line[-1:] if line.endswith(("\n", "\r")) else ""


# forms whose release: is not written as a run id or plain `null`: a rollback back to
# "unreleased" writes `release: null` there, so the file differs from the original in that line
ROLLBACK_WRITES_NULL = frozenset({"tilde", "empty-with-comment", "missing", "missing-comment-after", "missing-nested-last",
                                  "missing-sequence-last", "flow-missing", "multiline-flow-missing"})
assert ROLLBACK_WRITES_NULL <= set(ADAPTER_FORMS)
