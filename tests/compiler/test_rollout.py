"""`vilms rollout` / `vilms rollback`: a surgical edit of `release:` (every other byte kept),
validated before anything is touched, rebuilt, recorded in .vilms/releases/<adapter>.jsonl."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from tests.support.runs import write_run as write_run_record
from vilms.compiler.contracts.release_history import ReleaseHistoryEntry
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import PROJECT_LOCK, STATE_GITIGNORE
from vilms.compiler.rollout import rollback_target, set_release

REPO = Path(__file__).resolve().parents[2]
ADAPTER = "support-v1"
R1, R2, R3 = (f"support-v1-2026112{i}T091500Z-{i}a2b3c" for i in (1, 2, 3))
# the shipped project, with a comment above and after the value that the edit must keep
SHIPPED = (REPO / "vilms.yaml").read_text()
assert SHIPPED.count("    release: null\n") == 1
BASE = SHIPPED.replace("    release: null\n", "    # which run is served; `vilms rollout` edits the next line\n    release: null   # not trained yet\n")
RELEASE_LINE = BASE.splitlines().index("    release: null   # not trained yet") + 1
ADAPTERS_LINE = BASE.splitlines().index("adapters:") + 1


def released(run: str | None) -> str:
    return BASE.replace("    release: null   #", f"    release: {run or 'null'}   #")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` but the project lock and the .gitignore that names it (a
    command that means to write takes the lock first, so even a refused one creates them)."""
    return {rel: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and (rel := p.relative_to(folder).as_posix()) not in (PROJECT_LOCK, STATE_GITIGNORE)}


def write_run(root: Path, run_id: str, *, status: str = "completed", gate: str | None = "passed") -> None:
    """artifacts/<run>/run.json as the trainer writes it (contract RunRecord)."""
    write_run_record(root, run_id, status=status, gate=gate)


@pytest.fixture
def proj(tmp_path, vilms):
    """The shipped project (with extra comments) in tmp_path, generated/ built."""
    path = tmp_path / "vilms.yaml"
    path.write_text(BASE)
    assert vilms("build", "-f", str(path)).code == 0
    return path


def history(path: Path) -> list[dict]:
    file = path.parent / ".vilms" / "releases" / f"{ADAPTER}.jsonl"
    lines = file.read_text().splitlines() if file.exists() else []
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert list(entry) == ["apiVersion", "kind", "at", "adapter", "from", "to", "action", "digest"]
        digest = entry.pop("digest")
        assert digest is None or set(digest) == {"adapter_sha256", "gguf_sha256"}
        assert (entry.pop("apiVersion"), entry.pop("kind")) == ("contracts.vilms.dev/v1", "ReleaseHistoryEntry")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["at"]) and entry["adapter"] == ADAPTER
    return entries


def test_rollout_edits_only_the_value_and_rebuilds(proj, vilms):
    os.chmod(proj, 0o640)
    write_run(proj.parent, R1)
    result = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert result.code == 0, result.err
    assert proj.read_text() == released(R1)  # every comment, blank line and key kept
    assert os.stat(proj).st_mode & 0o777 == 0o640
    assert vilms("build", "--check", "-f", str(proj)).code == 0  # generated/ is what the new file compiles to
    out = result.out
    assert f"{ADAPTER}: release null → {R1} ({proj}:{RELEASE_LINE})" in out
    assert "served as alias support-bot on deployments cluster, dev, edge" in out
    assert "  modified  generated/cluster/gateway/routes.yaml  (+4 -4)" in out
    assert "  added     generated/edge/ollama/support-bot.Modelfile  (+7 -0)" in out  # Ollama: one derived model per adapter alias
    assert re.search(r"^\d+ files changed, 1 added, 0 removed$", out, re.M)
    assert "review `git diff`" in out and result.err == ""  # a local run whose gate passed: no warning
    assert history(proj) == [{"at": history(proj)[0]["at"], "adapter": ADAPTER, "from": None, "to": R1, "action": "rollout"}]
    assert not [p.name for p in proj.parent.iterdir() if p.name.startswith(".") and p.name != ".vilms"]


def test_rollout_of_a_run_not_present_here_warns_and_proceeds(proj, vilms):
    result = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert result.code == 0, result.err
    assert f"warning: artifacts/{R1}/run.json is not here, so its gate was not checked (releasing it by name)\n" == result.err
    assert proj.read_text() == released(R1)


def test_a_run_id_that_only_resembles_a_local_run_is_refused_unless_forced(proj, vilms):
    (proj.parent / "artifacts" / "support-v1-20261121T091500Z-1a2b3d").mkdir(parents=True)
    before = tree(proj.parent)
    result = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert result.code == 1, result.err
    assert (f"vilms.yaml:{RELEASE_LINE}:14: adapters.support-v1.release: run {R1!r} is not in artifacts/ here, "
            "but 'support-v1-20261121T091500Z-1a2b3d' is: a typo?") in result.err
    assert f"hint: roll out support-v1-20261121T091500Z-1a2b3d, or pass --force to release {R1} by name" in result.err
    assert tree(proj.parent) == before
    result = vilms("rollout", ADAPTER, R1, "--force", "-f", str(proj))
    assert result.code == 0, result.err
    assert f"warning: artifacts/{R1}/run.json is not here, so its gate was not checked" in result.err
    assert "did you mean 'support-v1-20261121T091500Z-1a2b3d'?" in result.err
    assert proj.read_text() == released(R1)


def test_rollout_keeps_the_quoting_style(proj, vilms):
    proj.write_text(released(f"'{R1}'"))
    assert vilms("rollout", ADAPTER, R2, "-f", str(proj)).code == 0
    assert proj.read_text() == released(f"'{R2}'")
    proj.write_text(released(f'"{R1}"'))
    assert vilms("rollout", ADAPTER, R2, "-f", str(proj)).code == 0
    assert proj.read_text() == released(f'"{R2}"')


def test_rollout_inserts_a_missing_release_line(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    result = vilms("rollout", ADAPTER, R1, "-f", str(path))
    assert result.code == 0, result.err
    assert path.read_text() == MINIMAL.replace("    hardware: gpu1\n", f"    hardware: gpu1\n    release: {R1}\n", 1)
    assert f"({path}:23)" in result.out
    assert vilms("build", "--check", "-f", str(path)).code == 0


def test_rollout_into_a_flow_mapping(project, vilms):
    block = "  support-v1:\n    base: qwen2.5-1.5b\n    dataset: support\n    method: lora\n    lora: {r: 16}\n    hardware: gpu1\n"
    assert block in MINIMAL
    flow = MINIMAL.replace(block, "  support-v1: {base: qwen2.5-1.5b, dataset: support, method: lora, lora: {r: 16}, hardware: gpu1}  # flow\n")
    path = project(flow)
    assert vilms("rollout", ADAPTER, R1, "-f", str(path)).code == 0
    assert path.read_text() == flow.replace("hardware: gpu1}", f"hardware: gpu1, release: {R1}}}")
    assert vilms("rollout", ADAPTER, R2, "-f", str(path)).code == 0
    assert path.read_text() == flow.replace("hardware: gpu1}", f"hardware: gpu1, release: {R2}}}")


def test_rollout_to_the_current_run_is_a_no_op(proj, vilms):
    assert vilms("rollout", ADAPTER, R1, "-f", str(proj)).code == 0
    before_text, before_tree = proj.read_bytes(), tree(proj.parent)
    again = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert again.code == 0 and f"{ADAPTER} already releases {R1}" in again.out and "nothing to do" in again.out
    assert proj.read_bytes() == before_text and tree(proj.parent) == before_tree
    assert len(history(proj)) == 1


OTHER_RUN = "faq-v2-20261101T091500Z-a1b2c3"
FAILED, WAITING, RUNNING, APPROVED = (f"support-v1-2026112{i}T091500Z-0f0f0{i}" for i in (4, 5, 6, 7))

REFUSALS = [
    ("unknown-adapter", ["rollout", "support-v2", R1], f"{ADAPTERS_LINE}:1: adapters: unknown adapter 'support-v2' (did you mean 'support-v1'?)"),
    ("malformed-run-id", ["rollout", ADAPTER, "latest"], f"{RELEASE_LINE}:14: adapters.support-v1.release: 'latest' is not a run id"),
    ("truncated-run-id", ["rollout", ADAPTER, R1[:-1]], f"{RELEASE_LINE}:14: adapters.support-v1.release: '{R1[:-1]}' is not a run id"),
    ("run-of-another-adapter", ["rollout", ADAPTER, OTHER_RUN],
     f"{RELEASE_LINE}:14: adapters.support-v1.release: run '{OTHER_RUN}' was trained for adapter 'faq-v2', not 'support-v1'"),
    ("gate-failed", ["rollout", ADAPTER, FAILED],
     f"{RELEASE_LINE}:14: adapters.support-v1.release: run '{FAILED}' cannot be released: status completed, gate failed"),
    ("gate-needs-approval", ["rollout", ADAPTER, WAITING],
     f"{RELEASE_LINE}:14: adapters.support-v1.release: run '{WAITING}' cannot be released: status completed, gate needs_approval"),
    ("still-running", ["rollout", ADAPTER, RUNNING],
     f"{RELEASE_LINE}:14: adapters.support-v1.release: run '{RUNNING}' cannot be released: status running, gate not evaluated"),
    ("rollback-no-history", ["rollback", ADAPTER], "nothing to roll back to: no release history for support-v1"),
    ("rollback-unknown-adapter", ["rollback", "nope"], f"{ADAPTERS_LINE}:1: adapters: unknown adapter 'nope'"),
]


@pytest.mark.parametrize("args,expected", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_are_located_and_touch_nothing(proj, vilms, args, expected):
    write_run(proj.parent, FAILED, gate="failed")
    write_run(proj.parent, WAITING, gate="needs_approval")
    write_run(proj.parent, RUNNING, status="running", gate=None)
    before = tree(proj.parent)
    result = vilms(*args, "-f", str(proj))
    assert result.code == 1, result
    assert expected in result.err, result.err
    if ":1" in expected or ":14" in expected:
        assert result.err.startswith("vilms.yaml:")
    assert "hint: " in result.err and "Traceback" not in result.err and result.out == ""
    assert tree(proj.parent) == before  # vilms.yaml, generated/ and .vilms/ byte-identical


def test_an_approved_run_is_released(proj, vilms):
    write_run(proj.parent, APPROVED, gate="approved")
    result = vilms("rollout", ADAPTER, APPROVED, "-f", str(proj))
    assert result.code == 0 and result.err == ""
    assert proj.read_text() == released(APPROVED)


def test_a_failing_build_changes_nothing_and_is_located_in_the_file_on_disk(project, vilms):
    broken = MINIMAL.replace("engine: vllm}", "engine: vllm, replica: 2}")
    path = project(broken)
    (path.parent / "generated").mkdir()
    (path.parent / "generated" / "keep.txt").write_text("as it was\n")
    before = tree(path.parent)
    result = vilms("rollout", ADAPTER, R1, "-f", str(path))  # inserts a line above the problem
    assert result.code == 1
    assert "vilms.yaml:28:" in result.err and "unknown key 'replica'" in result.err
    assert "vilms.yaml and generated/ were not changed" in result.err and "Traceback" not in result.err
    assert tree(path.parent) == before


def test_rollback_walks_the_history(proj, vilms):
    for run in (R1, R2, R3):
        assert vilms("rollout", ADAPTER, run, "-f", str(proj)).code == 0
    assert proj.read_text() == released(R3)
    first = vilms("rollback", ADAPTER, "-f", str(proj))
    assert first.code == 0, first.err
    assert f"{ADAPTER}: release {R3} → {R2}" in first.out
    assert proj.read_text() == released(R2)
    assert vilms("rollback", ADAPTER, "-f", str(proj)).code == 0
    assert proj.read_text() == released(R1)
    assert vilms("build", "--check", "-f", str(proj)).code == 0
    to_null = vilms("rollback", ADAPTER, "-f", str(proj))
    assert to_null.code == 0 and f"release {R1} → null" in to_null.out and "unreleased" in to_null.out
    assert proj.read_text() == BASE  # back to `release: null   # not trained yet`, byte for byte
    before = tree(proj.parent)
    exhausted = vilms("rollback", ADAPTER, "-f", str(proj))
    assert exhausted.code == 1 and "nothing to roll back to" in exhausted.err and "by hand" in exhausted.err
    assert tree(proj.parent) == before
    steps = [(e["action"], e["from"], e["to"]) for e in history(proj)]
    assert steps == [("rollout", None, R1), ("rollout", R1, R2), ("rollout", R2, R3),
                     ("rollback", R3, R2), ("rollback", R2, R1), ("rollback", R1, None)]
    # a rollout after rollbacks starts a new step to undo
    assert vilms("rollout", ADAPTER, R3, "-f", str(proj)).code == 0
    assert vilms("rollback", ADAPTER, "-f", str(proj)).code == 0
    assert proj.read_text() == BASE


def test_a_corrupt_history_line_is_named(proj, vilms):
    assert vilms("rollout", ADAPTER, R1, "-f", str(proj)).code == 0
    file = proj.parent / ".vilms" / "releases" / f"{ADAPTER}.jsonl"
    file.write_text(file.read_text() + "{not json\n")
    result = vilms("rollback", ADAPTER, "-f", str(proj))
    assert result.code == 1 and ".vilms/releases/support-v1.jsonl:2:2: not valid JSON" in result.err
    assert proj.read_text() == released(R1)


def test_a_stale_generated_is_rebuilt_with_a_warning(proj, vilms):
    proj.write_text(BASE.replace("retries: 2", "retries: 3"))
    result = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert result.code == 0
    assert "generated/ was not up to date before this change" in result.err
    assert vilms("build", "--check", "-f", str(proj)).code == 0


def test_rollback_target_replays_rollouts_as_a_stack():
    def entry(action, a, b):
        return ReleaseHistoryEntry(at="2026-11-23T15:20:00Z", adapter="x", from_=a, to=b, action=action, digest=None)

    h = [entry("rollout", None, "a"), entry("rollout", "a", "b"), entry("rollback", "b", "a"), entry("rollout", "a", "c")]
    assert rollback_target(h, "c") == (True, "a")
    assert rollback_target(h, "a") == (True, None)
    assert rollback_target(h, "b") == (False, None)  # undone already
    assert rollback_target([], None) == (False, None)


# --- the text edit itself

EDITS = [
    ("crlf", "adapters:\r\n  a:\r\n    base: x\r\n", "adapters:\r\n  a:\r\n    base: x\r\n    release: a-20261202T000000Z-bbbbbb\r\n"),
    ("no-final-newline", "adapters:\n  a:\n    base: x", "adapters:\n  a:\n    base: x\n    release: a-20261202T000000Z-bbbbbb\n"),
    ("nested-last-entry-and-comment", "adapters:\n  a:\n    gate:\n      k: 1\n      # about k\n\n  b: {}\n",
     "adapters:\n  a:\n    gate:\n      k: 1\n      # about k\n    release: a-20261202T000000Z-bbbbbb\n\n  b: {}\n"),
    ("empty-value", "adapters:\n  a:\n    release:  # later\n", "adapters:\n  a:\n    release: a-20261202T000000Z-bbbbbb  # later\n"),
    ("tilde", "adapters:\n  a: {release: ~, base: x}\n", "adapters:\n  a: {release: a-20261202T000000Z-bbbbbb, base: x}\n"),
    ("non-ascii-before", "# café\nadapters:\n  a:\n    base: \"é\"\n    release: null # ü\n",
     "# café\nadapters:\n  a:\n    base: \"é\"\n    release: a-20261202T000000Z-bbbbbb # ü\n"),
]


@pytest.mark.parametrize("before,after", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_set_release_edits_text(before, after):
    assert set_release(before, "a", "a-20261202T000000Z-bbbbbb").text == after


def test_set_release_to_null_is_plain_null():
    assert set_release("adapters:\n  a:\n    release: 'a-1'  # x\n", "a", None).text == "adapters:\n  a:\n    release: null  # x\n"


@pytest.mark.parametrize("text", [
    "x: &r r1\nadapters:\n  a:\n    release: *r\n",
    "adapters:\n  a:\n    release: &r r1\n",
    "adapters:\n  a:\n    release: |\n      r1\n",
    "adapters:\n  a:\n    l: &l [1]\n    m: *l\n",
    "base: &b {x: 1}\nadapters:\n  a: *b\n",
], ids=["alias-value", "anchored-value", "block-scalar", "alias-last-entry", "alias-adapter"])
def test_set_release_refuses_what_it_cannot_edit_safely(text):
    with pytest.raises(ActionError):
        set_release(text, "a", "v")


def test_a_history_that_cannot_be_written_refuses_before_changing_anything(proj, vilms):
    (proj.parent / ".vilms").mkdir(exist_ok=True)  # the build of the fixture made it (its lock)
    (proj.parent / ".vilms" / "releases").write_text("not a folder\n")
    before_yaml, before_tree = proj.read_bytes(), tree(proj.parent / "generated")
    result = vilms("rollout", ADAPTER, R1, "-f", str(proj))
    assert result.code == 1 and "cannot write the release history" in result.err and "Traceback" not in result.err
    assert proj.read_bytes() == before_yaml and tree(proj.parent / "generated") == before_tree


def test_a_no_op_rollout_still_knows_what_serves_the_adapter(proj, vilms):
    """`rollout --apply` of the current run deploys what serves it, like any rollout."""
    from vilms.compiler.rollout import rollout

    first = rollout(proj, ADAPTER, R1)
    again = rollout(proj, ADAPTER, R1)
    assert not again.changed and again.serving == first.serving and again.serving


def test_a_history_written_by_the_previous_version_still_rolls_back(proj, vilms):
    """Lines without apiVersion (the previous version's) are read as that shape; new lines are whole entries."""
    proj.write_text(released(R2))
    file = proj.parent / ".vilms" / "releases" / f"{ADAPTER}.jsonl"
    file.parent.mkdir(parents=True)
    old = [{"at": "2026-11-21T09:15:00Z", "adapter": ADAPTER, "from": None, "to": R1, "action": "rollout"},
           {"at": "2026-11-22T09:15:00Z", "adapter": ADAPTER, "from": R1, "to": R2, "action": "rollout"}]
    file.write_text("".join(json.dumps(e) + "\n" for e in old))
    result = vilms("rollback", ADAPTER, "-f", str(proj))
    assert result.code == 0, result.err
    assert proj.read_text() == released(R1)
    lines = file.read_text().splitlines()
    assert [json.loads(line) for line in lines[:2]] == old  # committed lines are never rewritten
    new = json.loads(lines[2])
    assert (new["apiVersion"], new["kind"], new["from"], new["to"], new["action"]) == \
        ("contracts.vilms.dev/v1", "ReleaseHistoryEntry", R2, R1, "rollback")


def test_a_bad_history_line_is_located_and_touches_nothing(proj, vilms):
    assert vilms("rollout", ADAPTER, R1, "-f", str(proj)).code == 0
    file = proj.parent / ".vilms" / "releases" / f"{ADAPTER}.jsonl"
    file.write_text(file.read_text() + "\n" + file.read_text().replace('"rollout"', '"rollup"'))
    before = tree(proj.parent)
    result = vilms("rollback", ADAPTER, "-f", str(proj))
    assert result.code == 1 and "Traceback" not in result.err
    column = file.read_text().splitlines()[2].index('"rollup"') + 1
    assert f".vilms/releases/support-v1.jsonl:3:{column}: action: 'rollup' is not one of rollout, rollback" in result.err
    assert "hint: " in result.err and tree(proj.parent) == before


def test_a_rollout_is_refused_while_another_command_writes_the_project(project, vilms):
    """Rollout takes the project lock before it reads vilms.yaml: a second writer waits (bounded,
    here 0.5 s) and is then refused, never raced."""
    import subprocess
    import sys

    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom vilms.compiler.project_lock import project_lock\n"
         "with project_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(30)\n", str(path.parent)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree(path.parent)
        result = vilms("rollout", ADAPTER, R1, "-f", str(path), env={"VILMS_LOCK_WAIT": "0.5"})
        assert result.code == 1
        assert f"another vilms command (pid {holder.pid}) is writing this project; waited 0.5 s, try again when it ends" in result.err
        assert "(wait longer with VILMS_LOCK_WAIT=SECONDS)" in result.err
        assert tree(path.parent) == before
    finally:
        holder.kill()
        holder.wait()


def test_the_history_records_the_digest_of_the_released_run(proj, vilms):
    """A rollout of a run in artifacts/ records the sha256 of its adapter weights and, where
    exported, of its GGUF; a run released by name and a rollback to null record null."""
    import hashlib

    write_run(proj.parent, R1)
    weights = proj.parent / "artifacts" / R1 / "adapter" / "adapter_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights-1")
    gguf = proj.parent / "artifacts" / R1 / "gguf" / "adapter.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF-1")
    write_run(proj.parent, R2)
    weights2 = proj.parent / "artifacts" / R2 / "adapter" / "adapter_model.safetensors"
    weights2.parent.mkdir(parents=True)
    weights2.write_bytes(b"weights-2")  # not exported
    for run in (R1, R2):
        assert vilms("rollout", ADAPTER, run, "-f", str(proj)).code == 0
    assert vilms("rollback", ADAPTER, "-f", str(proj)).code == 0
    assert vilms("rollout", ADAPTER, R3, "-f", str(proj)).code == 0  # by name: not here
    lines = [json.loads(line) for line in (proj.parent / ".vilms" / "releases" / f"{ADAPTER}.jsonl").read_text().splitlines()]
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    assert [line["digest"] for line in lines] == [
        {"adapter_sha256": sha(b"weights-1"), "gguf_sha256": sha(b"GGUF-1")},
        {"adapter_sha256": sha(b"weights-2"), "gguf_sha256": None},
        {"adapter_sha256": sha(b"weights-1"), "gguf_sha256": sha(b"GGUF-1")},  # the rollback's target
        None,
    ]
