"""The environment of each process `vilms up` starts.

llama.cpp servers get an allow-list of the supervisor's environment: what a program needs to
run (PATH, HOME, locale, temp folder, library path), the GPU selection, and llama.cpp's and
OpenMP's own settings. Nothing else: no VILMS_API_KEYS, no ops key, no named keys, no cloud
credentials. The gateway gets the supervisor's environment (it reads the keys its routes
name) plus the engine key.
"""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.facts.llamacpp import ENGINE_KEY_ENV

SERVER_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH",
    "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONHOME", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "CUDA_PATH",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "NVIDIA_VISIBLE_DEVICES",
})
SERVER_PREFIXES = ("LC_", "GGML_", "OMP_", "LLAMA_ARG_")


def server_env(base: Mapping[str, str]) -> dict[str, str]:
    """What a llama.cpp server inherits from ``base``."""
    return {k: v for k, v in base.items()
            if (k in SERVER_NAMES or k.startswith(SERVER_PREFIXES)) and k != ENGINE_KEY_ENV}


def gateway_env(base: Mapping[str, str], key: str | None) -> dict[str, str]:
    """What the gateway gets: ``base`` and the engine key."""
    return {**base, ENGINE_KEY_ENV: key} if key else dict(base)
