"""When to restart a child that exited: exponential backoff, and when to give up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """A run shorter than ``quick_s`` is a quick crash. The n-th quick crash in a row waits
    ``backoff_s * 2**(n-1)`` (at most ``max_backoff_s``) before the restart; the
    ``give_up_after``-th marks the process failed. A run of ``quick_s`` or longer resets the count."""

    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    quick_s: float = 60.0
    give_up_after: int = 5

    def crashes_after(self, crashes: int, ran_for_s: float) -> int:
        """The consecutive quick-crash count after a child that ran ``ran_for_s`` exits."""
        return crashes + 1 if ran_for_s < self.quick_s else 1

    def delay(self, crashes: int) -> float | None:
        """Seconds to wait before restarting after ``crashes`` crashes in a row; None: give up."""
        if crashes >= self.give_up_after:
            return None
        return min(self.max_backoff_s, self.backoff_s * 2 ** (crashes - 1))
