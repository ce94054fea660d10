"""API keys: who is calling (a :class:`Caller`), what it may use, how much.

Keys come from environment variables (``gateway.api_keys_env``: comma-separated, every
alias, no limit; ``gateway.keys``: named keys, each with an alias scope and rpm/tpm
limits). A presented key is hashed and compared in constant time with every configured
key. Callers are known by name (metrics, logs), never by key. The ops key
(:class:`OpsKey`) is checked the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from vilms.compiler.contracts.routes import GatewaySettings
from vilms.compiler.errors import ActionError

from .apierrors import ApiError
from .quota import KeyQuota, retry_after

API_KEYS = "_api_keys"  # the name of gateway.api_keys' keys (a key name cannot start with '_')
NO_KEY = "-"  # auth off, or no valid key presented


class KeyRejected(ApiError):
    """A request refused because of its key; ``reason`` labels the rejection metric:
    ``missing_key``, ``invalid_key``, ``model_not_allowed``, ``rpm`` or ``tpm``."""

    def __init__(self, status: int, message: str, reason: str, **kw: Any) -> None:
        super().__init__(status, message, **kw)
        self.reason = reason


class Caller:
    """A configured key (or the anonymous caller when auth is off)."""

    __slots__ = ("name", "aliases", "quota")

    def __init__(self, name: str, aliases: frozenset[str] | None = None, quota: KeyQuota | None = None) -> None:
        self.name = name
        self.aliases = aliases  # None: every alias
        self.quota = quota  # None: no limit

    def check_model(self, name: object) -> None:
        """403 for a model outside this caller's scope, whether it exists or not (so the
        answer tells nothing about aliases beyond what ``/v1/models`` shows this key)."""
        if self.aliases is not None and isinstance(name, str) and name not in self.aliases:
            raise KeyRejected(403, f"The model '{name[:200]}' does not exist or this API key may not use it "
                                   "(GET /v1/models lists the models it may use).",
                              "model_not_allowed", param="model", code="model_not_allowed")

    def admit(self, now: float) -> dict[str, str] | None:
        """Count one request against the limits: their ``x-ratelimit-*`` headers, or a 429."""
        quota = self.quota
        if quota is None:
            return None
        refused, wait, headers = quota.admit(now)
        if refused is not None:
            what = "requests" if refused == "rpm" else "tokens"
            raise KeyRejected(429, f"Rate limit reached for this API key on {what} per minute; "
                                   f"retry in {wait:.1f} s.",
                              refused, code="rate_limit_exceeded", type=what,
                              headers={**headers, **retry_after(wait)})
        return headers


ANONYMOUS = Caller(NO_KEY)


class KeyCheck:
    """Maps ``Authorization: Bearer <key>`` to its :class:`Caller`."""

    __slots__ = ("_entries", "callers")

    def __init__(self, entries: tuple[tuple[bytes, Caller], ...]) -> None:
        self._entries = entries  # (SHA-256 of the key, caller): equal lengths, so compare_digest is constant-time
        self.callers: dict[str, Caller] = {c.name: c for _, c in entries}

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    @classmethod
    def from_settings(cls, settings: GatewaySettings, environ: Mapping[str, str] | None = None,
                      previous: KeyCheck | None = None) -> KeyCheck:
        """Read every key; refuse a variable that is unset or empty (the gateway never silently
        runs open) and one key value held by two names. A named key that ``previous`` (the
        routing table being replaced) also has keeps its used quota."""
        environ = os.environ if environ is None else environ
        owners: dict[bytes, Caller] = {}
        entries: list[tuple[bytes, Caller]] = []

        def add(env: str, caller: Caller, what: str) -> None:
            for key in _read(env, environ, what):
                digest = _digest(key)
                owner = owners.get(digest)
                if owner is None:
                    owners[digest] = caller
                    entries.append((digest, caller))
                elif owner is not caller:
                    raise ActionError(f"{what} and {_describe(owner.name)} hold the same key (in {env})",
                                      hint="every key must identify one scope and one budget: give each its own value")

        if settings.api_keys_env:
            add(settings.api_keys_env, Caller(API_KEYS), "gateway.api_keys")
        old = previous.callers if previous is not None else {}
        for name, scope in sorted(settings.keys.items()):
            before = old.get(name)
            quota = KeyQuota.carry(before.quota if before is not None else None, scope.rpm, scope.tpm)
            aliases = None if scope.aliases is None else frozenset(scope.aliases)
            add(scope.env, Caller(name, aliases, quota), f"gateway.keys.{name}")
        return cls(tuple(entries))

    def check(self, authorization: str | None) -> Caller:
        """The caller whose key the header carries; a 401 :class:`KeyRejected` if none."""
        entries = self._entries
        if not entries:
            return ANONYMOUS
        if not authorization:
            raise KeyRejected(401, "Missing API key: send 'Authorization: Bearer <key>'.", "missing_key",
                              code="missing_api_key")
        digest = bearer_digest(authorization)
        found = None
        for key, caller in entries:  # every key, no early exit: time does not depend on which matched
            if hmac.compare_digest(digest, key):
                found = caller
        if found is None:
            raise KeyRejected(401, "Incorrect API key provided.", "invalid_key", code="invalid_api_key")
        return found


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def bearer_digest(authorization: str | None) -> bytes:
    """SHA-256 of the ``Authorization: Bearer`` token (of nothing for another scheme): digests
    have equal lengths, so ``hmac.compare_digest`` on them takes the same time for any key."""
    scheme, _, token = (authorization or "").partition(" ")
    return _digest(token.strip().encode() if scheme.lower() == "bearer" else b"")


def _read(env: str, environ: Mapping[str, str], what: str) -> list[bytes]:
    found = [k.strip().encode() for k in environ.get(env, "").split(",") if k.strip()]
    if not found:
        raise ActionError(
            f"{what} is read from {env}, but that environment variable is unset or empty",
            hint=f"export {env}=<key> (several comma-separated keys are accepted), or remove {what} "
                 "from the gateway: section of vilms.yaml",
        )
    return found


def _describe(name: str) -> str:
    return "gateway.api_keys" if name == API_KEYS else f"gateway.keys.{name}"


class OpsKey:
    """The operator's key (``gateway.ops_key_env``): it guards ``/metrics`` and the readiness detail."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    @classmethod
    def from_env(cls, env_name: str | None, environ: Mapping[str, str] | None = None) -> "OpsKey":
        """The key in ``env_name``; refuse one that is unset or empty (the gateway never silently runs open)."""
        if not env_name:
            return cls(None)
        environ = os.environ if environ is None else environ
        key = environ.get(env_name, "").strip()
        if not key:
            raise ActionError(
                f"the gateway's ops key is read from {env_name}, but that environment variable is unset or empty",
                hint=f"export {env_name}=<a key for /metrics and the readiness detail>, or remove ops_key from the "
                     "gateway: section of vilms.yaml to leave both open",
            )
        return cls(_digest(key.encode()))  # a digest: equal lengths for compare_digest

    def allows(self, authorization: str | None) -> bool:
        """Whether the header carries the ops key (always true without one)."""
        if self._key is None:
            return True
        return hmac.compare_digest(bearer_digest(authorization), self._key)

    def check(self, authorization: str | None) -> None:
        if not self.allows(authorization):
            if not authorization:
                raise ApiError(401, "Missing ops key: send 'Authorization: Bearer <ops key>'.", code="missing_ops_key")
            raise ApiError(401, "Incorrect ops key provided.", code="invalid_ops_key")
