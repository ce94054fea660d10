"""``python -m vilms.trainers.distributed.agent SUMMARY -- TORCHRUN_ARGS…``: torchrun, quietly.

Runs ``torch.distributed.run`` with TORCHRUN_ARGS. When the worker group fails for good it
writes the failed ranks (exit code, signal, the error each worker recorded through
``torch.distributed.elastic.multiprocessing.errors.record``) to SUMMARY as JSON and exits
1 — no launcher traceback. A SIGTERM/SIGINT to this process stops the workers (they write a
checkpoint) and is written as ``{"signal": NAME}``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def _message(data: object) -> str:
    text = data.get("message", "") if isinstance(data, dict) else str(data)
    for prefix in ("ActionError: ", "VilmsError: "):
        text = text.removeprefix(prefix)
    return text


def main(argv: list[str]) -> int:
    summary = Path(argv[0])
    torchrun_args = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as exc:
        failures = [
            {"rank": rank, "exitcode": f.exitcode, "signal": f.signal_name() if f.exitcode < 0 else None,
             "message": _message(f.message)}
            for rank, f in sorted(exc.failures.items())
        ]
        summary.write_text(json.dumps({"failures": failures}), encoding="utf-8")
        return 1
    except SignalException as exc:
        summary.write_text(json.dumps({"signal": exc.sigval.name}), encoding="utf-8")
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
