"""Training on several processes: torchrun launches the workers, each runs the same recipe.

* :mod:`.world` — this process's place in the process group, the collectives the recipe
  uses, and the one rank gate for writes (:meth:`World.main_only`);
* :mod:`.shard` — which micro-batches and eval batches a rank takes;
* :mod:`.wrap` — DDP or FSDP2 around the PEFT model, gradient sync during accumulation;
* :mod:`.heartbeat` — per-rank liveness files that name the rank a timed-out collective waited for;
* :mod:`.launch` — the torchrun command lines (local child, bare-metal multi-node printout);
* :mod:`.agent` — torchrun run as a child process that reports failures as data, not tracebacks.
"""
