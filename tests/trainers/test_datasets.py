"""Dataset validation (located errors) and manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vilms.compiler.errors import DatasetError
from vilms.trainers.datasets import manifest as mf
from vilms.trainers.datasets.validate import load_dataset

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines))
    return path


def errors_of(path: Path, fmt: str = "chat", **kw: object) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path, fmt, display="data/x.jsonl", **kw)
    return [d.render() for d in info.value.diagnostics]


def test_unknown_role_is_located(tmp_path: Path) -> None:
    bad = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "bot", "content": "c"},
        ]
    }
    lines = [json.dumps(GOOD)] * 16 + [json.dumps(bad)]
    assert errors_of(write_lines(tmp_path / "x.jsonl", lines)) == [
        "data/x.jsonl:17:1: messages[2].role: unknown role 'bot' (expected system, user, assistant)"
    ]


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    lines = [
        json.dumps(GOOD),
        '{"messages": [',  # 2 broken JSON
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),  # 3 last not assistant
        json.dumps({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}),  # 4
        "[1, 2]",  # 5 not an object
        "",  # 6 empty line
        json.dumps({"messages": [{"role": "assistant", "content": "x"}]}),  # 7 no user first
        json.dumps({"text": "wrong format"}),  # 8 wrong keys
    ]
    errs = errors_of(write_lines(tmp_path / "x.jsonl", lines))
    assert errs[0].startswith("data/x.jsonl:2:")
    assert "invalid JSON" in errs[0]
    assert "data/x.jsonl:3:1: messages[0].role: the last message must be from the assistant, got 'user'" in errs
    assert "data/x.jsonl:4:1: messages[0].content: expected a string, got a number" in errs
    assert "data/x.jsonl:5:1: expected a JSON object, got an array" in errs
    assert any(e.startswith("data/x.jsonl:6:1: empty line") for e in errs)
    assert "data/x.jsonl:7:1: messages: the first non-system message must be from the user" in errs
    assert any(e.startswith("data/x.jsonl:8:1: text: unknown key 'text'") for e in errs)
    assert any(e.startswith("data/x.jsonl:8:1: messages: missing required key") for e in errs)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"")
    assert errors_of(path) == ["data/x.jsonl:1:1: dataset is empty (no rows)"]


def test_non_utf8_is_located_by_byte(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [json.dumps({"text": "ok"}), b'{"text": "caf\xe9"}'])
    assert errors_of(path, "text") == [
        "data/x.jsonl:2:14: not valid UTF-8 (byte 0xe9)\n  hint: re-encode the file as UTF-8"
    ]


def test_ten_megabyte_line_is_bounded(tmp_path: Path) -> None:
    huge = json.dumps({"text": "a" * (10 * 1024 * 1024)})
    path = write_lines(tmp_path / "x.jsonl", [json.dumps({"text": "ok"}), huge, json.dumps({"text": "fine"})])
    errs = errors_of(path, "text")
    assert len(errs) == 1
    assert errs[0].startswith(f"data/x.jsonl:2:1: line is {len(huge) + 1} bytes, longer than the limit of 1048576")


def test_completion_and_text_formats(tmp_path: Path) -> None:
    comp = write_lines(tmp_path / "c.jsonl", [json.dumps({"prompt": "2+2=", "completion": "4"})])
    assert len(load_dataset(comp, "completion").rows) == 1
    errs = errors_of(
        write_lines(tmp_path / "d.jsonl", [json.dumps({"prompt": "2+2=", "completion": ""})]), "completion"
    )
    assert errs == ["data/x.jsonl:1:1: completion: must not be empty"]


def test_hash_is_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = write_lines(tmp_path / "x.jsonl", [json.dumps(GOOD)] * 3)
    assert load_dataset(path, "chat").sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_written_and_refreshed(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "support.jsonl",
        [
            json.dumps(GOOD),
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "be brief"},
                        {"role": "user", "content": "how are you"},
                        {"role": "assistant", "content": "fine thanks"},
                    ]
                }
            ),
        ],
    )
    ds = load_dataset(path, "chat")
    target = mf.write_manifest(
        ds,
        "support",
        "support.jsonl",
        {
            "source": "helpdesk",
            "license": "internal",
            "collected_at": "2026-11-01T00:00:00Z",
            "anonymised_at": None,
            "confidence": 0.9,
        },
    )
    data = json.loads(target.read_text())
    assert target.name == "support.jsonl.manifest.json"
    assert data["sha256"] == ds.sha256 and data["rows"] == 2
    assert data["tokens"] == {"counter": "whitespace", "total": 9, "min": 2, "max": 7, "mean": 4.5, "p50": 2, "p95": 7}
    assert data["provenance"] == {
        "source": "helpdesk",
        "collected_at": "2026-11-01T00:00:00Z",
        "anonymised_at": None,
        "license": "internal",
        "confidence": 0.9,
    }
    # refresh: new provenance merges, old kept
    mf.write_manifest(ds, "support", "support.jsonl", {"anonymised_at": "2026-11-02T00:00:00Z"})
    again = json.loads(target.read_text())["provenance"]
    assert again["source"] == "helpdesk" and again["anonymised_at"] == "2026-11-02T00:00:00Z"


def test_manifest_rejects_bad_provenance(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(GOOD)])
    with pytest.raises(DatasetError) as info:
        mf.write_manifest(load_dataset(path, "chat"), "s", "s.jsonl", {"confidence": 3, "collected_at": "yesterday"})
    text = info.value.render()
    assert "provenance.confidence: must be a number in [0, 1], got 3" in text
    assert "provenance.collected_at: not an ISO-8601 timestamp: 'yesterday'" in text
    assert not mf.manifest_path(path).exists()
