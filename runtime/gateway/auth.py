"""API-key check: keys come from an environment variable, compared in constant time."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from vilms.compiler.errors import ActionError

from .apierrors import ApiError


class KeyCheck:
    """Accepts ``Authorization: Bearer <key>`` when it equals one configured key."""

    __slots__ = ("_keys",)

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @classmethod
    def from_env(cls, env_names: tuple[str, ...], environ: Mapping[str, str] | None = None) -> "KeyCheck":
        """Read the keys (comma-separated) of every variable in ``env_names``; refuse one that is
        unset or empty: the gateway never silently runs open."""
        environ = os.environ if environ is None else environ
        keys: list[bytes] = []
        for env_name in env_names:
            found = [k.strip().encode() for k in environ.get(env_name, "").split(",") if k.strip()]
            if not found:
                raise ActionError(
                    f"the gateway's keys are read from {env_name}, but that environment variable is unset or empty",
                    hint=f"export {env_name}=key1,key2 (comma-separated), or remove the key from the gateway: "
                         "section of vilms.yaml to run without it",
                )
            keys.extend(found)
        return cls(tuple(keys))

    def check(self, authorization: str | None) -> None:
        """Raise a 401 :class:`ApiError` unless the header carries a configured key."""
        if not self._keys:
            return
        if not authorization:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
        scheme, _, token = authorization.partition(" ")
        candidate = token.strip().encode() if scheme.lower() == "bearer" else b""
        matched = False
        for key in self._keys:  # no early exit: time does not depend on which key matched
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
