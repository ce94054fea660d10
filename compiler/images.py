"""Container images, pinned, per engine and hardware (Jetson images match the L4T release)."""

from __future__ import annotations

from vilms.compiler.plan import Hardware

VILMS_VERSION_TAG = "0.1.0"
GATEWAY_IMAGE = f"ghcr.io/vilms/gateway:{VILMS_VERSION_TAG}"
TRAINER_IMAGE = f"ghcr.io/vilms/trainer:{VILMS_VERSION_TAG}"
OLLAMA_IMAGE = "ollama/ollama:0.12.6"
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"

# JetPack release → L4T tag of the jetson-containers images built for it
JETPACK_L4T = {"5.1": "r35.4.1", "6.0": "r36.3.0", "6.1": "r36.4.0", "6.2": "r36.4.0"}
JETSON_OLLAMA = "dustynv/ollama:{l4t}"
JETSON_VLLM = {"r36.4.0": "dustynv/vllm:0.7.4-r36.4.0-cu128-24.04", "r36.3.0": "dustynv/vllm:0.6.3-r36.4.0"}


def l4t_tag(jetpack: str) -> str | None:
    major_minor = ".".join(jetpack.split(".")[:2])
    return JETPACK_L4T.get(major_minor)


def engine_image(engine: str, hw: Hardware) -> str | None:
    """The image for ``engine`` on ``hw``; None when no image exists (validation reports it)."""
    if hw.kind != "jetson":
        return {"ollama": OLLAMA_IMAGE, "vllm": VLLM_IMAGE}.get(engine)
    tag = l4t_tag(hw.jetpack or "")
    if tag is None:
        return None
    if engine == "ollama":
        return JETSON_OLLAMA.format(l4t=tag)
    if engine == "vllm":
        return JETSON_VLLM.get(tag)
    return None
