"""The S3 client of the artifact store, built from vilms.yaml's ``artifact_store`` and the
environment, and the translation of everything it can raise into one-line errors.

Credentials are read from the variables vilms.yaml names (a missing one is an error naming the
variable, never a value) and given to the client explicitly, so no other credential source
(``~/.aws``, instance metadata) is consulted. Every wait is bounded: connect and read timeouts,
a few retries with backoff (``compiler/facts/store.py``). boto3 is imported here, lazily: the
``store`` extra installs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vilms.compiler.contracts.training_config import ArtifactStoreSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import store as facts

ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")  # as vilms.yaml's schema, for env:NAME
AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "InvalidToken",
                        "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidSecurity", "Forbidden"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class Timeouts:
    connect: float = facts.CONNECT_TIMEOUT_S
    read: float = facts.READ_TIMEOUT_S
    attempts: int = facts.MAX_ATTEMPTS


@dataclass(frozen=True)
class Connection:
    """A client of one artifact store, and what its error messages may say."""

    spec: ArtifactStoreSpec
    client: Any  # botocore's S3 client
    endpoint: str  # for messages: the URL, or "AWS S3"
    secrets: tuple[str, ...]  # credential values, scrubbed from every message

    def scrub(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, "***")
        return text

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Run S3 calls, turning whatever botocore raises into an :class:`ActionError` about ``what``."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            yield
        except ClientError as exc:
            raise self._refused(exc, what) from None
        except (BotoConnectionError, HTTPClientError) as exc:
            raise ActionError(self.scrub(f"cannot reach the artifact store at {self.endpoint} ({what}): {exc}"),
                              hint=self.endpoint_hint()) from None
        except BotoCoreError as exc:
            raise ActionError(self.scrub(f"artifact store {self.spec.uri}: {what} failed: {exc}")) from None

    def _refused(self, exc: Any, what: str) -> ActionError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        message = str(error.get("Message") or "")
        said = f"{code}: {message}" if message and message != code else code
        spec = self.spec
        if code in AUTH_CODES:
            return ActionError(self.scrub(f"the artifact store at {self.endpoint} refused {what} ({said})"),
                               hint=f"check the credentials in ${spec.access_key_id_env} and ${spec.secret_access_key_env}, "
                                    f"and that they may read and write s3://{spec.bucket}/")
        if code == "NoSuchBucket":
            return ActionError(f"bucket {spec.bucket!r} does not exist at {self.endpoint} ({what})",
                               hint="create it, or fix artifact_store.uri in vilms.yaml")
        return ActionError(self.scrub(f"artifact store {spec.uri}: {what} failed ({said})"))

    def endpoint_hint(self) -> str:
        source = f"${self.spec.endpoint_env}" if self.spec.endpoint_env else "artifact_store.endpoint in vilms.yaml"
        return f"check {source} and that the store is up and reachable from here"


def missing(exc: BaseException) -> bool:
    """Whether a botocore ClientError says the object is not there."""
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in MISSING_CODES


def _variable(env: Mapping[str, str], name: str, key: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ActionError(f"the artifact store's {key.replace('_', ' ')} is read from ${name}, which is not set",
                          hint=f"export {name} (vilms.yaml: artifact_store.{key}: env:{name})")
    return value


def endpoint_of(spec: ArtifactStoreSpec, env: Mapping[str, str]) -> str | None:
    """The endpoint URL: vilms.yaml's, or the one in ``$endpoint_env``; None: AWS S3."""
    if spec.endpoint_env is None:
        return spec.endpoint
    url = _variable(env, spec.endpoint_env, "endpoint")
    if not ENDPOINT.match(url):
        raise ActionError(f"${spec.endpoint_env} does not hold an endpoint URL (http(s)://host[:port])",
                          hint=f"set {spec.endpoint_env} to the store's S3 endpoint, e.g. https://minio.example:9000")
    return url.rstrip("/")


def connect(spec: ArtifactStoreSpec, env: Mapping[str, str], timeouts: Timeouts = Timeouts()) -> Connection:
    """A client of ``spec``'s store with credentials from ``env`` (no request is made yet)."""
    access = _variable(env, spec.access_key_id_env, "access_key_id")
    secret = _variable(env, spec.secret_access_key_env, "secret_access_key")
    endpoint = endpoint_of(spec, env)
    import boto3.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        region_name=spec.region,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        retries={"max_attempts": timeouts.attempts, "mode": "standard"},
        signature_version="s3v4",
        # S3-compatible stores: path-style addressing, and checksums only where S3 requires them
        # (many stores refuse the CRC32 headers botocore adds by default since 1.36)
        s3={"addressing_style": "path" if endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        ignore_configured_endpoint_urls=True,  # the endpoint is vilms.yaml's, not $AWS_ENDPOINT_URL's
        user_agent_extra="vilms",
    )
    try:  # e.g. $AWS_PROFILE naming a profile that does not exist: botocore still reads it
        session = boto3.session.Session(aws_access_key_id=access, aws_secret_access_key=secret, region_name=spec.region)
        client = session.client("s3", endpoint_url=endpoint, config=config)
    except BotoCoreError as exc:
        raise ActionError(f"cannot set up the S3 client of the artifact store: {exc}".replace(secret, "***")) from None
    return Connection(spec=spec, client=client, endpoint=endpoint or "AWS S3", secrets=(secret, access))
