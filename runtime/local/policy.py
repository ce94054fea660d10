"""When to restart a child that exited or hangs: capped exponential backoff, and when to give up.

Two counts per child. ``streak``: exits in a row, each after a run shorter than ``stable_s``;
the restart after the n-th waits ``backoff_s * 2**(n-1)``, at most ``max_backoff_s``. A process
that served (answered its health URL) and then died is always restarted: a request of death
must not take a deployment down for good. ``unhealthy``: starts in a row that never answered
their health URL (exited, or stayed silent past the start timeout); the ``give_up_after``-th
marks the process failed (a model that cannot load would only crash again) until `vilms up`
or `vilms restart`. A process that serves resets it.

Health while it runs: every ``health_every_s`` the supervisor probes each serving child
(``health_timeout_s`` each); ``hung_after`` failures in a row (a SIGSTOPped or wedged server)
SIGKILL its process group (a stopped process ignores SIGTERM) and it restarts as after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_s: float = 60.0
    give_up_after: int = 5
    health_every_s: float = 2.0
    health_timeout_s: float = 2.0
    hung_after: int = 3

    def streak_after(self, streak: int, ran_for_s: float) -> int:
        """The count of quick exits in a row after a child that ran ``ran_for_s`` exits."""
        return streak + 1 if ran_for_s < self.stable_s else 1

    def delay(self, streak: int) -> float:
        """Seconds to wait before the restart after ``streak`` quick exits in a row (capped)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** min(max(streak - 1, 0), 62))

    def gives_up(self, unhealthy: int) -> bool:
        """True after ``unhealthy`` starts in a row that never served: mark the process failed."""
        return unhealthy >= self.give_up_after
