"""The ports pass: runs on the resolved plan. A local deployment's llama.cpp servers take
``engine_port`` and the ports after it; they must stay in range and clear of the gateway's."""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.errors import Diagnostic
from vilms.compiler.plan import Plan
from vilms.compiler.render.routes import llamacpp_ports
from vilms.compiler.reporter import Reporter


def check_ports(doc: Document, plan: Plan) -> list[Diagnostic]:
    report = Reporter(doc)
    for name, dep in sorted(plan.deployments.items()):
        if dep.target != "local":
            continue
        ports = sorted(llamacpp_ports(dep).values())
        if not ports:
            continue
        where = ("deployments", name, "engine_port" if "engine_port" in doc.data["deployments"][name] else "target")
        span = f"{ports[0]}-{ports[-1]}" if len(ports) > 1 else str(ports[0])
        if ports[-1] > 65535:
            report.error(where, f"the {len(ports)} llama.cpp servers of deployment {name!r} need ports {span}, "
                                "past 65535", hint=f"set engine_port to {65536 - len(ports)} or lower")
        elif dep.gateway_port in ports:
            report.error(where, f"gateway_port {dep.gateway_port} is also one of the llama.cpp ports {span} of "
                                f"deployment {name!r}", hint="give engine_port or gateway_port another value")
    return sorted(report.diagnostics)
