"""Container images, pinned, per engine and hardware (Jetson images match the L4T release).

Jetson containers must be built for the board's L4T release (the JetPack's BSP): a
container built for another L4T major/minor may not find the Tegra CUDA driver that
nvidia-container-runtime mounts in. Each JetPack maps to the L4T tag its images carry;
an engine without an image for that L4T has no entry, and validation reports it.
"""

from __future__ import annotations

from vilms.compiler.plan import Hardware

VILMS_VERSION_TAG = "0.1.0"
GATEWAY_IMAGE = f"ghcr.io/vilms/gateway:{VILMS_VERSION_TAG}"
TRAINER_IMAGE = f"ghcr.io/vilms/trainer:{VILMS_VERSION_TAG}"
OLLAMA_IMAGE = "ollama/ollama:0.12.6"
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
RAY_LLM_IMAGE = "rayproject/ray-llm:2.60.0-py311-cu128"  # Ray Serve LLM with vLLM (facts.ray.VERSION)

# JetPack release → L4T tag of the jetson-containers images built for it
JETPACK_L4T = {"5.1": "r35.4.1", "6.0": "r36.3.0", "6.1": "r36.4.0", "6.2": "r36.4.0"}
# L4T tag → image, per engine (jetson-containers / dustynv builds)
JETSON_IMAGES = {
    "ollama": {"r35.4.1": "dustynv/ollama:r35.4.1", "r36.3.0": "dustynv/ollama:r36.3.0",
               "r36.4.0": "dustynv/ollama:r36.4.0"},
    "vllm": {"r36.4.0": "dustynv/vllm:0.7.4-r36.4.0-cu128-24.04"},
}


def l4t_tag(jetpack: str) -> str | None:
    major_minor = ".".join(jetpack.split(".")[:2])
    return JETPACK_L4T.get(major_minor)


def image_for(engine: str, kind: str, jetpack: str | None = None) -> str | None:
    """The image for ``engine`` on hardware of ``kind``; None when no image exists."""
    if kind != "jetson":
        return {"ollama": OLLAMA_IMAGE, "vllm": VLLM_IMAGE, "ray": RAY_LLM_IMAGE}.get(engine)
    tag = l4t_tag(jetpack or "")
    if tag is None:
        return None
    return JETSON_IMAGES.get(engine, {}).get(tag)


def jetpacks_with_image(engine: str) -> list[str]:
    """JetPack releases that have an ``engine`` image (for hints)."""
    return sorted(jp for jp, tag in JETPACK_L4T.items() if tag in JETSON_IMAGES.get(engine, {}))


def engine_image(engine: str, hw: Hardware) -> str | None:
    """The image for ``engine`` on ``hw``; None when no image exists (validation reports it)."""
    return image_for(engine, hw.kind, hw.jetpack)
