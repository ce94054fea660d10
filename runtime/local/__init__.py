"""The local runner (`vilms up` / `status` / `down`): llama.cpp servers and the gateway as
supervised processes, from ``generated/<deployment>/local.yaml``. No Docker.

Its two files are contracts in :mod:`vilms.compiler.contracts`: the plan it reads
(``local_plan``) and the state its supervisor writes (``runner_state``). Modules, one
concept each: ``plan`` (what the runner derives from the plan), ``project`` (which
deployment, is the build fresh), ``launch`` (command lines, file checks), ``hfcache``
(offline Hugging Face cache lookup), ``health`` (ports, probes), ``processes`` (spawn,
identify, signal), ``policy`` (restart backoff), ``logfiles`` (log rotation), ``state``
(run folder, state.json, lock), ``observe`` (what runs, stale state), ``supervisor``,
``start`` / ``status`` / ``stop`` (`vilms up` / `status` / `down` as functions). The click
commands are in :mod:`vilms.cli.serving`.
"""
