"""Semantic pass: names stay valid and distinct in every target they end up in."""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.layout import GENERATED, RESERVED_DEPLOYMENT_NAMES
from vilms.compiler.naming import K8S_NAME_MAX, WINDOWS_RESERVED, dns_label, vllm_object_name
from vilms.compiler.reporter import Reporter
from vilms.compiler.shorthand import alias_entry, served_aliases

_SECTIONS = ("hardware", "models", "datasets", "adapters", "aliases", "deployments")


def check(doc: Document, report: Reporter) -> None:
    data = doc.data
    for section in _SECTIONS:
        for name in data.get(section, {}):
            stem = name.split(".")[0]
            if stem in WINDOWS_RESERVED:
                report.error((section, name), f"{name!r} is a reserved file name on Windows", hint="pick another name", at_key=True)

    for name in data.get("deployments", {}):
        if name in RESERVED_DEPLOYMENT_NAMES:
            report.error(("deployments", name), f"the name {name!r} is reserved: vilms writes other files to {GENERATED}/{name}",
                         hint=f"rename the deployment; reserved names: {', '.join(sorted(RESERVED_DEPLOYMENT_NAMES))}", at_key=True)

    _distinct_dns(data, "models", report)
    _distinct_dns(data, "adapters", report)

    aliases = data.get("aliases", {})
    for dep_name, dep in data.get("deployments", {}).items():
        served = served_aliases(data, dep)
        models = sorted({alias_entry(aliases[a])["model"] for a in served if a in aliases})
        if dep.get("target") == "helm":
            for model in models:
                obj = vllm_object_name(dep_name, model)
                if len(obj) > K8S_NAME_MAX:
                    report.error(
                        ("deployments", dep_name), f"Kubernetes name {obj!r} would be {len(obj)} characters (limit {K8S_NAME_MAX})",
                        hint="shorten the deployment or model name", at_key=True,
                    )
        if dep.get("engine") in ("ollama", "llamacpp"):
            # base models and derived adapter models share the engine's one namespace
            owners: dict[str, str] = {model: f"model {model!r}" for model in models}
            for alias in served:
                entry = alias_entry(aliases.get(alias, {}))
                if entry.get("adapter") and alias in owners:
                    report.error(
                        ("aliases", alias), f"the model derived for alias {alias!r} would clash with {owners[alias]} in deployment {dep_name!r}",
                        hint="rename the alias", at_key=True,
                    )


def _distinct_dns(data: dict, section: str, report: Reporter) -> None:
    seen: dict[str, str] = {}
    for name in sorted(data.get(section, {})):
        label = dns_label(name)
        if label in seen:
            report.error(
                (section, name),
                f"{name!r} and {seen[label]!r} both become {label!r} in Kubernetes names",
                hint="names may not differ only in '.', '_' and '-'", at_key=True,
            )
        else:
            seen[label] = name
