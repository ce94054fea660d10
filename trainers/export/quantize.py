"""Quantise a GGUF file in-process through llama.cpp (``llama_model_quantize``)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from vilms.compiler.errors import ActionError

# llama.cpp's llama_ftype values
QUANT_TYPES = {"q8_0": 7, "q4_k_m": 15}


def normalise(name: str) -> str:
    key = name.strip().lower()
    if key not in QUANT_TYPES:
        raise ActionError(f"unsupported quantization {name!r} (expected Q8_0 or Q4_K_M)")
    return key


def quantize_gguf(source: Path, target: Path, kind: str, threads: int = 0) -> Path:
    """Write ``source`` quantised as ``kind`` to ``target`` (atomically)."""
    kind = normalise(kind)
    try:
        import llama_cpp
    except ImportError:
        raise ActionError(
            "GGUF quantization needs llama-cpp-python",
            hint="pip install 'llama-cpp-python==0.3.36' (the vilms[serve] extra)",
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[kind]
    params.nthread = threads
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ActionError(f"llama.cpp failed to quantize {source.name} to {kind.upper()} (code {code})")
    os.replace(tmp, target)
    return target
