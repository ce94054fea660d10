"""The ViLMS OpenAI-compatible gateway.

Clients send an alias as ``model``; the gateway resolves it through
``generated/<deployment>/gateway/routes.yaml`` to a backend (vLLM, Ollama or a
llama.cpp server), trims the payload to the hardware profile, and proxies the
request with retries, fallbacks and streaming. Entry point: :func:`server.run`.
"""
