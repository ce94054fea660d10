"""The sanitiser finds every planted item, flags nothing in clean text, never logs values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vilms.cli.training import data
from vilms.compiler.errors import DatasetError, UsageError
from vilms.trainers.sanitize import find, parse_user_patterns, sanitize_file

PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----"
)

PLANTED: list[tuple[str, str]] = [
    ("email", "jane.doe@example.com"),
    ("email", "ops+alerts@mail.acme-corp.co.uk"),
    ("email", "x_y@sub.domain.org"),
    ("email", "first.last@uni.edu"),
    ("email", "SUPPORT@ACME.IO"),
    ("email", "a1@b2.dev"),
    ("phone", "+1 415 555 0132"),
    ("phone", "(415) 555-0198"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "415-555-0173"),
    ("phone", "+4915112345678"),
    ("phone", "+33 1 42 68 53 00"),
    ("phone", "020 7946 0018"),
    ("ipv4", "192.168.1.20"),
    ("ipv4", "10.0.0.1"),
    ("ipv4", "8.8.8.8"),
    ("ipv4", "203.0.113.7"),
    ("ipv4", "172.16.254.1"),
    ("ipv6", "2001:db8::1"),
    ("ipv6", "fe80::1ff:fe23:4567:890a"),
    ("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ipv6", "::ffff:c000:280"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "5500-0000-0000-0004"),
    ("credit_card", "378282246310005"),
    ("credit_card", "6011111111111117"),
    ("credit_card", "4012888888881881"),
    ("credit_card", "5105 1051 0510 5100"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_access_key", "AKIA2E0A8F3B244C9986"),
    ("github_token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("github_token", "gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCD"),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("slack_token", "xoxp-2233445566-7788990011-abcdefABCDEF12"),
    ("openai_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
    ("openai_key", "sk-T3BlbkFJx9Yq2Lw7Rk5Mv8Np1Qs4Tz6Ub0"),
    ("openai_key", "sk-svcacct-Zz1Yy2Xx3Ww4Vv5Uu6Tt7Ss8Rr9"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("jwt", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY21lIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLXZhbHVlLWhlcmU"),
    ("private_key", PRIVATE_KEY),
    (
        "private_key",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBxQ0QdmN3d1ZrF7zHq0b1c2d3e4f5g6h7i8j9k0l1m2\n"
        "-----END PRIVATE KEY-----",
    ),
    ("secret", "password: Sup3rS3cretPass"),
    ("secret", "api_key=9f8e7d6c5b4a3210"),
    ("secret", "token: q8W3e5R7t9Y1u3I5"),
    ("high_entropy_secret", "Zx9Kq2Lm7Pw4Rt8Yb3Nc6Vd1Hs5Jg0Fa"),
    ("high_entropy_secret", "7hT2kP9qLw3xZm8Rv5Nc1Bd6Gf4Js0Ya"),
    ("high_entropy_secret", "aB3/dE6+gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6="),
    ("employee_id", "EMP-004711"),
    ("employee_id", "EMP-123456"),
]

CLEAN = [
    "Version 1.2.3 was released on 2024-01-15 and v2.10.4 follows next week.",
    "Order #12345678 shipped; order number 4111 1111 1111 1112 is not a card (Luhn fails).",
    "Order 98765432109 was refunded on 12/05/2024 at 10:30.",
    "The meeting is at 10:30:45 in room 101 on floor 3.",
    "The short hex a1b2c3 and commit abc1234 are fine, so is deadbeef.",
    "The SHA is 3f786850e387550fdab836ed7e6dc881de23001b and that is public.",
    "Pi is 3.14159, the price is $1,299.99 and we sold 1,000,000 units.",
    "Windows build 10.0.19041.1234 is old; Python 3.11.7 is current.",
    "Your password reset link was sent. The token limit: 4096 per request.",
    "Set api_key: see-docs in the settings page.",
    "Call getUserAccountSettingsById from the AccountSettingsController class.",
    "Tracking code 1Z999AA10123456784 arrives Monday.",
    "Use e.g. ratio 16:9 or 4:3 for the screen; ISBN 978-3-16-148410-0 is a book.",
    "Temperatures ranged from -5 to 37.5 degrees between 2023 and 2024.",
    "Email support through the contact form; phone support is closed on Sundays.",
    "The range 1-2-3 and the score 3-1 were great. Serial ABCD-1234-EFGH.",
    "Use the path /usr/local/lib/python3.11/site-packages for that.",
    "Chapter 12.4.1 covers LoRA ranks 8, 16 and 32 in detail.",
]


def test_plants_cover_enough_kinds() -> None:
    assert len(PLANTED) >= 50
    assert len({kind for kind, _ in PLANTED}) >= 8


def _corpus(tmp_path: Path) -> Path:
    rows = []
    for index, (_, value) in enumerate(PLANTED):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Case {index}: please use {value} for this."},
                    {"role": "assistant", "content": "Noted, thanks."},
                ]
            }
        )
    for text in CLEAN:
        rows.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Okay."}]})
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_corpus_all_found_no_false_positives_no_values_in_audit(tmp_path: Path) -> None:
    source = _corpus(tmp_path)
    out, audit = tmp_path / "clean.jsonl", tmp_path / "audit.jsonl"
    report = sanitize_file(source, out, audit, parse_user_patterns([r"employee_id=EMP-\d{6}"]))
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    by_line: dict[int, list[str]] = {}
    for entry in entries:
        by_line.setdefault(entry["line"], []).append(entry["kind"])
    for index, (kind, value) in enumerate(PLANTED):
        assert by_line.get(index + 1) == [kind], (index, kind, value, by_line.get(index + 1))
    clean_lines = range(len(PLANTED) + 1, len(PLANTED) + len(CLEAN) + 1)
    false_positives = {n: by_line[n] for n in clean_lines if n in by_line}
    assert false_positives == {}
    assert report.rows == len(PLANTED) + len(CLEAN) and report.total == len(PLANTED)
    cleaned = out.read_text()
    audit_text = audit.read_text()
    for _, value in PLANTED:
        assert value not in cleaned
        assert value not in audit_text and json.dumps(value)[1:-1] not in audit_text
    for entry in entries:
        assert set(entry) == {"line", "path", "kind", "span", "length", "hash"}
        assert entry["path"] == "messages[0].content"
    # untouched rows are byte-identical
    assert cleaned.splitlines()[len(PLANTED)] == source.read_text().splitlines()[len(PLANTED)]


def test_spans_point_at_the_value() -> None:
    text = "mail jane.doe@example.com or call +1 415 555 0132 now"
    found = find(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [
        ("email", "jane.doe@example.com"),
        ("phone", "+1 415 555 0132"),
    ]


def test_bad_input_leaves_no_output(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "a@b.co"}\n{"text": \n', encoding="utf-8")
    out, audit = tmp_path / "out.jsonl", tmp_path / "audit.jsonl"
    with pytest.raises(DatasetError) as info:
        sanitize_file(source, out, audit, display="in.jsonl")
    assert info.value.diagnostics[0].render().startswith("in.jsonl:2:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_user_pattern_errors() -> None:
    with pytest.raises(UsageError):
        parse_user_patterns(["noequals"])
    with pytest.raises(UsageError):
        parse_user_patterns(["x=("])
    with pytest.raises(UsageError):
        parse_user_patterns(["x=a*"])


def test_cli_sanitize(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "reach me at bob@example.org"}\n', encoding="utf-8")
    result = CliRunner().invoke(
        data, ["sanitize", str(source), "--output", str(tmp_path / "o.jsonl"), "--audit", str(tmp_path / "a.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert "1 redactions (email 1)" in result.output
    assert json.loads((tmp_path / "o.jsonl").read_text()) == {"text": "reach me at [REDACTED:email]"}


@pytest.mark.parametrize("number", ["+49 30 12345678", "+91 98765 43210", "030 1234567", "+44 20 7946 0958"])
def test_phones_the_regex_missed(number: str) -> None:
    text = f"call {number} today"
    assert [(f.kind, text[f.start : f.end]) for f in find(text)] == [("phone", number)]


@pytest.mark.parametrize(
    "text",
    ["ORD-2024-0001-7788", "invoice INV-2024-000123", "v10.0.19041.1234", "at 2024-01-15 10:30", "ISBN 978-3-16-148410-0"],
)
def test_order_ids_and_versions_are_not_phones(text: str) -> None:
    assert find(text) == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
        ("iban de89 3704 0044 0532 0130 00", "iban"),
        ("AT48 2415 8683 4497 8690 AAAA", "iban"),  # hypothesis found it: a word after the groups
        ("SSN 219-09-9999", "us_ssn"),
        ("passport number X12345678", "passport"),
        ("wallet bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "crypto_wallet"),
        ("Hi Anna, thanks", "person"),
        ("ship to 221B Baker Street", "street_address"),
        ("postgres://app:hunter2pass@db:5432/x", "url_credentials"),
    ],
)
def test_kinds_the_regex_missed(text: str, kind: str) -> None:
    assert [f.kind for f in find(text)] == [kind]


def test_national_numbers_follow_the_region() -> None:
    assert find("call 030 1234567", regions=("US",)) == []
    assert [f.kind for f in find("call 030 1234567", regions=("DE",))] == ["phone"]
    with pytest.raises(UsageError, match="not a region"):
        find("x", regions=("XX",))


def test_cli_region_and_bad_region(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "ring 030 1234567"}\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    ok = CliRunner().invoke(data, ["sanitize", str(source), "--output", str(out), "--region", "de"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text()) == {"text": "ring [REDACTED:phone]"}
    bad = CliRunner().invoke(data, ["sanitize", str(source), "--output", str(out), "--region", "Germany"])
    assert bad.exit_code != 0 and "not a region" in str(bad.exception or bad.output)


def test_keys_are_scanned_and_collisions_keep_both(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    row = {"text": "hi", "meta": {"jane@example.com": "a", "bob@example.org": {"note": "call +1 415 555 0132"}}}
    source.write_text(json.dumps(row) + "\n", encoding="utf-8")
    out, audit = tmp_path / "o.jsonl", tmp_path / "a.jsonl"
    sanitize_file(source, out, audit)
    assert json.loads(out.read_text()) == {
        "text": "hi",
        "meta": {"[REDACTED:email]": "a", "[REDACTED:email]~2": {"note": "call [REDACTED:phone]"}},
    }
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["path"], e["kind"], e.get("key", False)) for e in entries] == [
        ("meta.[REDACTED:email]", "email", True),
        ("meta.[REDACTED:email]~2", "email", True),
        ("meta.[REDACTED:email]~2.note", "phone", False),
    ]
    assert "example" not in audit.read_text()


def test_ner_adapter_on_a_spacy_pipeline() -> None:
    """The NER path on a real spaCy pipeline (blank English + an entity ruler: no model download)."""
    import spacy

    from vilms.trainers.detect.people import SpacyNer

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Grace Hopper"}])
    text = "The compiler was written by Grace Hopper in 1952."
    found = [(c.kind, text[c.start : c.end]) for c in SpacyNer(nlp)(text)]
    assert found == [("person", "Grace Hopper")]


def test_no_ner_model_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from vilms.trainers.detect.people import ner_layer

    assert ner_layer("no_such_model_installed") is None


def test_an_installed_spacy_pipeline_finds_names_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end with a spaCy pipeline from a folder (an entity ruler stands in for a trained NER)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Grace Hopper"}])
    nlp.to_disk(tmp_path / "pipeline")
    text = "Yesterday I spoke to Grace Hopper about the compiler."
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    assert find(text) == []  # the pattern layer alone: not a greeting
    monkeypatch.setenv("VILMS_SANITIZE_SPACY_MODEL", str(tmp_path / "pipeline"))
    report = sanitize_file(source, tmp_path / "out.jsonl")
    assert report.ner == f"spaCy {tmp_path / 'pipeline'}" and report.findings == {"person": 1}
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {
        "text": "Yesterday I spoke to [REDACTED:person] about the compiler."
    }


def test_short_strings_are_skipped_unless_a_user_pattern_could_match() -> None:
    assert find("a@b.c") == []  # shorter than any built-in finding
    assert [f.kind for f in find("X1", extra=parse_user_patterns([r"code=X\d"]))] == ["code"]


@pytest.mark.parametrize(
    "text",
    [
        "firmware 2.1.0.5 is out",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "epoch 1600605935 ms",
        "EAN 4006381333931 on the box",
    ],
)
def test_more_look_alikes_are_clean(text: str) -> None:
    assert find(text) == []


def test_detect_secrets_patterns_are_bounded() -> None:
    """Unbounded repeats in third-party patterns get a bound (hostile lines stay linear)."""
    from vilms.trainers.detect.secrets import bounded

    assert bounded(r"sk-[A-Za-z0-9-_]*[A-Za-z0-9]{20}T3BlbkFJ") == r"sk-[A-Za-z0-9-_]{0,256}[A-Za-z0-9]{20}T3BlbkFJ"
    assert bounded(r"\/\/.+\/:_authToken=") == r"\/\/.{1,256}\/:_authToken="
    assert bounded(r"[+*]+a\++b*?c{2,}") == r"[+*]{1,256}a\+{1,256}b{0,256}?c{2,}"
    assert bounded(r"AccountKey=[a-zA-Z0-9+\/=]{88}") == r"AccountKey=[a-zA-Z0-9+\/=]{88}"


def test_missing_sanitize_extra_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from vilms.cli.main import main

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "x"}\n', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "phonenumbers", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as info:
        main(["data", "sanitize", str(source), "--output", str(tmp_path / "o.jsonl"), "--region", "de"])
    assert info.value.code == 1
    assert "pip install 'vilms[sanitize]'" in capsys.readouterr().err


def test_presidio_logs_never_carry_values(caplog: pytest.LogCaptureFixture) -> None:
    from vilms.trainers.detect.presidio import PRESIDIO_LOGGER

    with caplog.at_level("ERROR", logger=PRESIDIO_LOGGER.name):
        PRESIDIO_LOGGER.error("Failed to validate text %s", "DE89 3704 0044 0532 0130 00")  # what iban_recognizer logs
    assert caplog.messages == ["Failed to validate text …"]
    assert "3704" not in caplog.text


def test_cli_takes_the_datasets_region_from_vilms_yaml(tmp_path: Path) -> None:
    """datasets.<d>.region: a Viennese number in national format is found only with the data's region (AT)."""
    from tests.compiler.minimal import MINIMAL

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text('{"text": "ring 01 5350000 now"}\n', encoding="utf-8")
    project = tmp_path / "vilms.yaml"
    out = tmp_path / "o.jsonl"
    project.write_text(MINIMAL, encoding="utf-8")
    plain = CliRunner().invoke(data, ["sanitize", "--dataset", "support", "-f", str(project), "--output", str(out)])
    assert plain.exit_code == 0, plain.output
    assert json.loads(out.read_text()) == {"text": "ring 01 5350000 now"}  # the default regions do not know it
    project.write_text(MINIMAL.replace("format: chat}", "format: chat, region: AT}", 1), encoding="utf-8")
    regional = CliRunner().invoke(data, ["sanitize", "--dataset", "support", "-f", str(project), "--output", str(out)])
    assert regional.exit_code == 0, regional.output
    assert json.loads(out.read_text()) == {"text": "ring [REDACTED:phone] now"}
    unknown = CliRunner().invoke(data, ["sanitize", "--dataset", "suport", "-f", str(project), "--output", str(out)])
    assert unknown.exit_code != 0 and "did you mean 'support'" in str(unknown.exception or unknown.output)
    bare = CliRunner().invoke(data, ["sanitize", "--output", str(out)])
    assert bare.exit_code != 0 and "--dataset" in str(bare.exception or bare.output)
