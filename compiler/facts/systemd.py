"""systemd (`vilms up --install-service`): where units and their EnvironmentFiles go."""

from __future__ import annotations

USER_UNITS = "~/.config/systemd/user"  # a user unit (default)
SYSTEM_UNITS = "/etc/systemd/system"  # --system
USER_ENV_DIR = "~/.config/vilms"  # the EnvironmentFile holding the keys of a user unit
SYSTEM_ENV_DIR = "/etc/vilms"  # ... of a system unit (the gateway container's config folder has the same name; unrelated)
RESTART_SEC = 5
STOP_TIMEOUT_S = 90  # `vilms down` stops servers within their grace; systemd kills what is left after this
