"""Engine and container facts: ports, in-container paths and defaults, each in one place.

One module per program ViLMS configures (``vllm``, ``ollama``, ``llamacpp``, ``gateway``,
``trainer``); renderers, the memory planner and the Helm values import from here.
Pinned container images live in ``compiler/images.py``.
"""
