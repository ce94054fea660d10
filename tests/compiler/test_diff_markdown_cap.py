"""`vilms diff --format markdown` fits a GitHub comment: capped in characters, whole file diffs
only (no code fence is cut), then a count-only summary, with a stable hidden marker first."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compiler.minimal import MINIMAL
from vilms.compiler.diff import DEFAULT_MAX_CHARS, MIN_MAX_CHARS, compare, marker, render_markdown

GITHUB_LIMIT = 65_536


def _fences_balanced(text: str) -> bool:
    """Every opening fence has its closing fence of the same length (CommonMark's rule)."""
    open_fence = None
    for line in text.split("\n"):
        m = re.match(r"^(`{3,})(.*)$", line)
        if open_fence is None:
            if m:
                open_fence = m.group(1)
        elif m and m.group(1) == open_fence and not m.group(2).strip():
            open_fence = None
    return open_fence is None


def _many_deployments(count: int) -> str:
    lines = "".join(f"  d{i}: {{hardware: laptop, target: local, engine: llamacpp}}\n" for i in range(count))
    return MINIMAL.replace("  dev: {hardware: laptop, target: local, engine: llamacpp}\n", lines)


def test_250_deployments_and_one_context_change_fit_one_comment(project, vilms):
    path = project(_many_deployments(250))
    assert vilms("build", "-f", str(path), timeout=600).code == 0
    path.write_text(path.read_text().replace("context: 8192", "context: 4096"))
    full = vilms("diff", "--format", "markdown", "--max-chars", "10000000", "-f", str(path), timeout=600)
    assert len(full.out) > GITHUB_LIMIT  # the case of the issue: far too big uncapped
    result = vilms("diff", "--format", "markdown", "-f", str(path), timeout=600)
    assert result.code == 0, result.err
    text = result.out
    assert len(text) <= DEFAULT_MAX_CHARS < GITHUB_LIMIT
    assert text.splitlines()[0] == "<!-- vilms-diff project=demo -->"
    assert _fences_balanced(text)
    assert "file diffs left out to keep this comment under 60,000 characters" in text
    assert "| `generated/d249/local.yaml` | modified |" in text  # every file still in the table
    small = vilms("diff", "--format", "markdown", "--max-chars", "2000", "-f", str(path), timeout=600).out
    assert len(small) <= 2000 and small.startswith("<!-- vilms-diff project=demo -->\n")
    assert "files differ; the per-file table alone is over 2,000 characters" in small
    assert vilms("diff", "--format", "markdown", "--max-chars", "999", "-f", str(path)).code == 2  # below the floor


def test_an_unchanged_project_still_carries_the_marker(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    text = vilms("diff", "--format", "markdown", "-f", str(path)).out
    assert text.startswith("<!-- vilms-diff project=demo -->\n### `vilms diff`: no changes")


_paths = st.lists(st.from_regex(r"[a-z]{1,8}(/[a-z`|<>]{1,8}){0,2}\.yaml", fullmatch=True), min_size=1, max_size=25, unique=True)
_content = st.lists(st.text(alphabet="ab`~ |<>\n", max_size=40), min_size=0, max_size=40).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=_paths, data=st.data(), cap=st.integers(min_value=MIN_MAX_CHARS, max_value=20_000),
       max_lines=st.integers(min_value=0, max_value=50), project=st.text(max_size=30),
       against=st.one_of(st.none(), st.text(min_size=1, max_size=300)))
def test_any_diff_under_any_cap_fits_with_marker_and_closed_fences(paths, data, cap, max_lines, project, against):
    old = {p: data.draw(_content).encode() for p in paths if data.draw(st.booleans())}
    new = {p: data.draw(_content).encode() for p in paths if data.draw(st.booleans())}
    modes = {p: data.draw(st.sampled_from(["100644", "100755", "120000"])) for p in old}
    report = compare(old, new, against=against, old_modes=modes, project=project)
    text = render_markdown(report, max_lines=max_lines, max_chars=cap)
    assert len(text) <= cap
    assert text.split("\n", 1)[0] == marker(project) and marker(project).startswith("<!-- vilms-diff")
    assert marker(project).endswith("-->") and "-->" not in marker(project)[4:-3]
    assert _fences_balanced(text)
