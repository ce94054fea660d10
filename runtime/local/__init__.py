"""The local runner (`vilms up` / `status` / `down`): llama.cpp servers and the gateway as
supervised processes, from ``generated/<deployment>/local.yaml``. No Docker.

Modules, one concept each: ``plan`` (read local.yaml), ``project`` (which deployment, is
the build fresh), ``launch`` (command lines, file checks), ``hfcache`` (offline Hugging
Face cache lookup), ``health`` (ports, probes), ``processes`` (spawn, identify, signal),
``policy`` (restart backoff), ``state`` (run folder, state.json, lock), ``supervisor``,
``runner`` (up/status/down as functions), ``commands`` (click), ``__main__`` (the
detached supervisor's entry point).
"""
