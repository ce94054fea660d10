"""gitops: → generated/<deployment>/gitops/: an Argo CD Application and a Flux GitRepository + HelmRelease
per helm deployment. Every object validates strictly against its CRD (tests/crds/) and Kubernetes'
metadata rules, points at the chart `vilms build` wrote, and names the release as `vilms apply` does;
hostile gitops: values are located errors with a hint."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compiler.minimal import MINIMAL
from tests.support.projects import compiled_in_memory
from tests.support.validators import crd_validate, load_yaml
from vilms.compiler import layout
from vilms.compiler.facts import gitops as facts
from vilms.compiler.pipeline import build, diagnostics
from vilms.compiler.render.gitops import git_ref
from vilms.compiler.validate.gitops import revision_problem
from vilms.runtime.apply import _step

SCALE = float(os.environ.get("VILMS_PROPERTY_SCALE", "1"))
HELM = MINIMAL.replace("gpu: {hardware: gpu1, target: compose, engine: vllm}", "gpu: {hardware: gpu1, target: helm, engine: vllm}")
HELM_NS = HELM.replace("target: helm, engine: vllm}", "target: helm, engine: vllm, namespace: llm}")


def gitops(revision: str = "main", path: str | None = None, argocd: str = "{}", flux: str | None = "{}",
           repository: str = "https://github.com/acme/llm.git") -> str:
    text = f"gitops:\n  repository: {repository}\n  revision: {revision!r}\n"
    if path is not None:
        text += f"  path: {path!r}\n"
    if argocd is not None:
        text += f"  argocd: {argocd}\n"
    if flux is not None:
        text += f"  flux: {flux}\n"
    return text


def _build(tmp_path: Path, text: str) -> dict[str, bytes]:
    (tmp_path / "vilms.yaml").write_text(text, encoding="utf-8")
    return build(tmp_path / "vilms.yaml").files


def _objects(files: dict[str, bytes]) -> list[dict]:
    return [doc for path, data in sorted(files.items()) if "/gitops/" in path
            for doc in yaml.safe_load_all(data)]


# --- Kubernetes metadata rules (ObjectMeta): the CRD schemas leave metadata open
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def metadata_problems(obj: dict) -> list[str]:
    meta = obj["metadata"]
    problems = []
    if not (_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253):
        problems.append(f"name {meta['name']!r}")
    if not (_LABEL.match(meta["namespace"]) and len(meta["namespace"]) <= 63):
        problems.append(f"namespace {meta['namespace']!r}")
    for key, value in meta.get("labels", {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not (_SUBDOMAIN.match(prefix) and len(prefix) <= 253)) or not (_LABEL_NAME.match(name) and len(name) <= 63):
            problems.append(f"label key {key!r}")
        if value and not (_LABEL_NAME.match(value) and len(value) <= 63):
            problems.append(f"label value {value!r}")
    return problems


VARIANTS = {
    "both-defaults": HELM + gitops(),
    "namespace-path-secret": HELM_NS + gitops(path="deploy/llm", flux="{secret: llm-git, interval: 1h, namespace: gitops}"),
    "tag-custom-argo": HELM + gitops(revision="refs/tags/v1.2.0",
                                     argocd="{namespace: argo, project: llm, server: 'https://10.0.0.1:6443'}", flux=None),
    "commit-ssh": HELM_NS + gitops(revision="0123456789abcdef0123456789abcdef01234567",
                                   repository="ssh://git@github.com/acme/llm.git"),
}


@pytest.mark.parametrize("text", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_object_validates_strictly_against_its_crd(tmp_path, text):
    objects = _objects(_build(tmp_path, text))
    assert objects
    assert crd_validate(objects) == []
    assert [p for obj in objects for p in metadata_problems(obj)] == []


def test_the_example_project_validates():
    objects = _objects(compiled_in_memory("example-gpu-cluster"))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (kind, name) for name in ("acme-ai-prod", "acme-ai-prod-70b") for kind in ("Application", "GitRepository", "HelmRelease"))
    assert crd_validate(objects) == []


def test_the_strict_schemas_catch_a_wrong_field(tmp_path):
    objects = _objects(_build(tmp_path, HELM + gitops()))
    for obj in objects:
        broken = {**obj, "spec": {**obj["spec"], "surprise": True}}
        assert crd_validate([broken]), obj["kind"]


def test_files_per_helm_deployment_only_for_the_controllers_asked_for(tmp_path):
    files = _build(tmp_path, HELM + gitops(flux=None))
    assert [p for p in files if "/gitops/" in p] == [layout.argocd_application_path("gpu")]
    files = _build(tmp_path, HELM + gitops(argocd=None))
    assert [p for p in files if "/gitops/" in p] == [layout.flux_path("gpu")]
    assert not [p for p in _build(tmp_path, HELM) if "/gitops/" in p]


def test_objects_point_at_the_chart_and_name_the_release_as_vilms_apply(tmp_path):
    project = tmp_path / "repo" / "deploy" / "llm"
    project.mkdir(parents=True)
    _build(project, HELM_NS + gitops(path="deploy/llm"))
    gen = project / "generated" / "gpu" / "gitops"
    app = load_yaml((gen / "argocd-application.yaml").read_bytes())
    source, release = list(yaml.safe_load_all((gen / "flux.yaml").read_bytes()))
    apply_release = _step("demo", "gpu", "helm", project / "vilms.yaml", None, (), project).commands[0][3]
    assert app["spec"]["source"]["helm"]["releaseName"] == release["spec"]["releaseName"] == apply_release == "demo-gpu"
    # the chart path, from the repository root, is the chart `vilms build` wrote
    for chart in (app["spec"]["source"]["path"], release["spec"]["chart"]["spec"]["chart"]):
        assert (tmp_path / "repo" / chart / "Chart.yaml").is_file(), chart
        assert (tmp_path / "repo" / chart / "values.yaml").is_file(), chart
    assert release["spec"]["chart"]["spec"]["sourceRef"] == {
        "kind": "GitRepository", "name": source["metadata"]["name"], "namespace": source["metadata"]["namespace"]}
    # a new commit must make a new chart: the chart's version never changes
    assert release["spec"]["chart"]["spec"]["reconcileStrategy"] == "Revision"
    # Helm keeps the release where `helm upgrade --install` does, so Flux upgrades that release
    assert release["spec"]["storageNamespace"] == release["spec"]["targetNamespace"] == app["spec"]["destination"]["namespace"] == "llm"
    assert app["spec"]["syncPolicy"]["syncOptions"] == ["CreateNamespace=true"] and release["spec"]["install"]["createNamespace"]
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert release["spec"]["upgrade"]["remediation"]["retries"] == facts.FLUX_REMEDIATION_RETRIES
    assert source["spec"]["ref"] == {"branch": "main"} and source["spec"]["url"] == "https://github.com/acme/llm.git"


def test_without_namespace_the_controllers_use_default_and_create_nothing(tmp_path):
    files = _build(tmp_path, HELM + gitops())
    app = load_yaml(files[layout.argocd_application_path("gpu")])
    _, release = list(yaml.safe_load_all(files[layout.flux_path("gpu")]))
    assert app["spec"]["destination"]["namespace"] == release["spec"]["targetNamespace"] == facts.DEFAULT_NAMESPACE
    assert "syncOptions" not in app["spec"]["syncPolicy"] and release["spec"]["install"]["createNamespace"] is False
    assert app["spec"]["source"]["path"] == "generated/gpu/helm" and release["spec"]["chart"]["spec"]["chart"] == "./generated/gpu/helm"


def test_output_is_byte_identical_across_builds(tmp_path):
    text = HELM_NS + gitops(path="deploy/llm", flux="{secret: llm-git}")
    first = {p: d for p, d in _build(tmp_path, text).items() if "/gitops/" in p}
    assert first and first == {p: d for p, d in _build(tmp_path, text).items() if "/gitops/" in p}


@given(st.one_of(st.from_regex(r"\A[0-9a-f]{40}\Z"), st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,40}\Z")))
@settings(max_examples=max(1, int(200 * SCALE)), deadline=None, derandomize=True)
def test_a_revision_maps_to_exactly_one_flux_ref(revision):
    ref = git_ref(revision)
    assert list(ref.values()) == [revision]
    kind = next(iter(ref))
    assert kind == ("commit" if re.fullmatch(r"[0-9a-f]{40}", revision) else "name" if revision.startswith("refs/") else "branch")


# --- hostile input: each a located error with a hint, nothing written, no credentials echoed

HOSTILE = [
    ("creds-https", gitops(repository="https://deploy:hunter2secret@github.com/acme/llm.git"), "gitops.repository", "takes no credentials"),
    ("creds-ssh", gitops(repository="ssh://git:hunter2secret@github.com/acme/llm.git"), "gitops.repository", "takes no credentials"),
    ("token-query", gitops(repository="https://github.com/acme/llm.git?token=hunter2secret"), "gitops.repository", "not a valid"),
    ("http", gitops(repository="http://github.com/acme/llm.git"), "gitops.repository", "not a valid"),
    ("revision-dots", gitops(revision="main..evil"), "gitops.revision", "'..' is not allowed"),
    ("revision-space", gitops(revision="main branch"), "gitops.revision", "not a valid revision"),
    ("revision-lock", gitops(revision="release/v1.lock"), "gitops.revision", "ends with '.lock'"),
    ("revision-hidden", gitops(revision="release/.v1"), "gitops.revision", "starts with '.'"),
    ("revision-slash", gitops(revision="release//v1"), "gitops.revision", "empty path component"),
    ("path-up", gitops(path="../elsewhere"), "gitops.path", "'.' or '..'"),
    ("path-inner-up", gitops(path="deploy/../../etc"), "gitops.path", "'.' or '..'"),
    ("path-absolute", gitops(path="/etc"), "gitops.path", "not a valid path"),
    ("interval-zero", gitops(flux="{interval: 0m}"), "gitops.flux.interval", "not a valid interval"),
    ("interval-exp", gitops(flux="{interval: 1e9h}"), "gitops.flux.interval", "not a valid interval"),
    ("interval-short", gitops(flux="{interval: 2s}"), "gitops.flux.interval", "too short"),
    ("interval-long", gitops(flux="{interval: 99999h}"), "gitops.flux.interval", "too long"),
]


@pytest.mark.parametrize("fragment,path,message", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_gitops_is_a_located_error_with_a_hint(tmp_path, fragment, path, message):
    text = HELM + fragment
    (tmp_path / "vilms.yaml").write_text(text, encoding="utf-8")
    found = [d for d in diagnostics(tmp_path / "vilms.yaml") if d.path == path]
    assert found, diagnostics(tmp_path / "vilms.yaml")
    assert message in found[0].message and found[0].hint and found[0].line > 1
    assert all("hunter2secret" not in d.render() + (d.hint or "") for d in diagnostics(tmp_path / "vilms.yaml"))


def test_a_release_name_helm_refuses_is_a_located_error(tmp_path):
    long_dep = "g" * 20
    text = HELM.replace("project: demo", "project: " + "p" * 40).replace("  gpu: {hardware: gpu1", f"  {long_dep}: {{hardware: gpu1")
    (tmp_path / "vilms.yaml").write_text(text + gitops(), encoding="utf-8")
    found = [d for d in diagnostics(tmp_path / "vilms.yaml") if "Helm release" in d.message]
    assert [d.path for d in found] == [f"deployments.{long_dep}"] and found[0].hint
    assert "61 characters" in found[0].message


def test_credentials_in_the_url_are_masked_by_the_cli(project, vilms):
    path = project(HELM + gitops(repository="https://deploy:hunter2secret@github.com/acme/llm.git"))
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    assert result.code == 1 and "Traceback" not in result.err
    assert re.search(r"^vilms\.yaml:\d+:\d+: gitops\.repository: 'https://\*\*\*@github\.com/acme/llm\.git'", result.err, re.M), result.err
    assert "hunter2secret" not in result.err + result.out and "gitops.flux.secret" in result.err
    assert not (path.parent / "generated").exists()


def _accepted(tmp_path: Path, text: str, key: str) -> bool:
    (tmp_path / "vilms.yaml").write_text(text, encoding="utf-8")
    return not [d for d in diagnostics(tmp_path / "vilms.yaml") if d.path.startswith(key)]


@given(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,24}\Z"))
@settings(max_examples=max(1, int(150 * SCALE)), deadline=None, derandomize=True)
def test_vilms_accepts_a_revision_exactly_when_git_does(revision):
    git = subprocess.run(["git", "check-ref-format", f"refs/heads/{revision}"], capture_output=True, check=False)
    assert (revision_problem(revision) is None) == (git.returncode == 0), revision


@given(st.lists(st.sampled_from(["deploy", "llm", ".", "..", "a.b", ".config", "x_y-z"]), min_size=1, max_size=4))
@settings(max_examples=max(1, int(40 * SCALE)), deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_path_is_accepted_only_inside_the_repository(tmp_path, parts):
    path = "/".join(parts)
    accepted = _accepted(tmp_path, HELM + gitops(path=path), "gitops.path")
    assert accepted == (posixpath.normpath(path) == path and path != "." and not path.startswith(".."))
    if accepted:
        chart = load_yaml(build(tmp_path / "vilms.yaml").files[layout.argocd_application_path("gpu")])["spec"]["source"]["path"]
        assert posixpath.normpath(chart) == chart and chart.startswith(path + "/")


@given(st.integers(min_value=0, max_value=200_000), st.sampled_from(["s", "m", "h"]))
@settings(max_examples=max(1, int(40 * SCALE)), deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_interval_is_accepted_between_ten_seconds_and_a_day(tmp_path, number, unit):
    seconds = number * {"s": 1, "m": 60, "h": 3600}[unit]
    accepted = _accepted(tmp_path, HELM + gitops(flux=f"{{interval: {number}{unit}}}"), "gitops.flux.interval")
    assert accepted == (number < 100_000 and facts.FLUX_INTERVAL_MIN_S <= seconds <= facts.FLUX_INTERVAL_MAX_S)
