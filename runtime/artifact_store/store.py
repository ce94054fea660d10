"""Push, verify and fetch a run's adapter folder in the artifact store.

Layout (``compiler/facts/store.py``): ``artifacts/<run_id>/adapter/<file>`` is stored as
``<prefix>/<run_id>/<file>``, flat, as Ray Serve LLM loads it, and the run's manifest
(file → sha256, size) is written last, so a push that stopped half-way is never taken as
present. Runs are immutable: a push that would store different content under a run id that
is already there is refused, and a file already stored with the same sha256 is not uploaded
again.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vilms.compiler.contracts.training_config import ArtifactStoreSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import store as facts
from vilms.compiler.run_ids import EXAMPLE, RUN_ID

from .client import Connection, missing
from .manifest import SHA256, Entry, Manifest, differences, parse, scan

IMMUTABLE = "runs are immutable: a run id names one adapter. If the stored copy is wrong, delete {uri}/ from the store and push again"


@dataclass(frozen=True)
class Transfer:
    """How s3transfer uploads: multipart above ``threshold``, ``part`` bytes a part, in parallel."""

    threshold: int = facts.MULTIPART_THRESHOLD
    part: int = facts.PART_SIZE
    concurrency: int = facts.MAX_CONCURRENCY


@dataclass(frozen=True)
class Pushed:
    uri: str
    manifest: Manifest
    uploaded: tuple[str, ...]  # files sent in this push
    skipped: tuple[str, ...]  # files already stored with the same sha256


class ArtifactStore:
    """One store (vilms.yaml's ``artifact_store``) through one S3 client."""

    def __init__(self, connection: Connection, transfer: Transfer = Transfer()) -> None:
        self.connection = connection
        self.transfer = transfer

    @property
    def client(self) -> Any:
        return self.connection.client

    def uri(self, run_id: str) -> str:
        return self.connection.spec.run_uri(_checked(run_id))

    def _key(self, run_id: str, name: str = "") -> str:
        return object_key(self.connection.spec, run_id, name)

    # --- reading

    def manifest(self, run_id: str) -> Manifest | None:
        """The run's manifest, or None when the run is not (completely) in the store."""
        from botocore.exceptions import ClientError

        key = self._key(run_id, facts.MANIFEST)
        where = f"{self.uri(run_id)}/{facts.MANIFEST}"
        with self.connection.call(f"reading {where}"):
            try:
                response = self.client.get_object(Bucket=self.connection.spec.bucket, Key=key)
            except ClientError as exc:
                if missing(exc):
                    return None
                raise
            body = response["Body"]
            try:
                raw = body.read(facts.MAX_MANIFEST_BYTES + 1)
            finally:
                body.close()
        if len(raw) > facts.MAX_MANIFEST_BYTES:
            raise ActionError(f"{where} is larger than {facts.MAX_MANIFEST_BYTES} bytes: not a ViLMS manifest")
        return parse(raw, run_id, where)

    def listing(self, run_id: str) -> dict[str, int]:
        """Every object under the run's folder: name (relative to it) → size."""
        prefix = self._key(run_id)
        found: dict[str, int] = {}
        with self.connection.call(f"listing {self.uri(run_id)}/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.connection.spec.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"][len(prefix):]
                    if name and not name.endswith("/"):  # not a "folder" marker some tools write
                        found[name] = int(item["Size"])
                if len(found) > facts.MAX_RUN_OBJECTS:
                    raise ActionError(f"{self.uri(run_id)}/ holds more than {facts.MAX_RUN_OBJECTS} objects: "
                                      "not a run's adapter folder")
        return found

    def _download(self, run_id: str, name: str, size: int, sink: IO[bytes] | None) -> str:
        """The sha256 of a stored object, read in blocks (written to ``sink``); refuses one whose
        size is not ``size`` (so a hostile object cannot fill the disk)."""
        where = f"{self.uri(run_id)}/{name}"
        digest, seen = hashlib.sha256(), 0
        deadline = time.monotonic() + facts.READ_TIMEOUT_S + size / facts.MIN_BYTES_PER_S  # a trickle cannot hold us
        with self.connection.call(f"downloading {where}"):
            body = self.client.get_object(Bucket=self.connection.spec.bucket, Key=self._key(run_id, name))["Body"]
            try:
                while block := body.read(facts.READ_BLOCK):
                    seen += len(block)
                    if seen > size:
                        break
                    if time.monotonic() > deadline:
                        raise ActionError(f"{where}: the download is slower than {facts.MIN_BYTES_PER_S} bytes/s; gave up",
                                          hint=self.connection.endpoint_hint())
                    digest.update(block)
                    if sink is not None:
                        sink.write(block)
            finally:
                body.close()
        if seen != size:
            raise ActionError(f"{where}: the stored object has {f'more than {size}' if seen > size else seen} bytes, "
                              f"expected {size}", hint=IMMUTABLE.format(uri=self.uri(run_id)))
        return digest.hexdigest()

    def _stored_sha256(self, run_id: str, name: str, size: int) -> str:
        """The digest of an object already stored: from the metadata a push writes, else by reading it."""
        with self.connection.call(f"reading {self.uri(run_id)}/{name}"):
            head = self.client.head_object(Bucket=self.connection.spec.bucket, Key=self._key(run_id, name))
        stated = head.get("Metadata", {}).get(facts.SHA256_METADATA, "")
        return stated if SHA256.match(stated) else self._download(run_id, name, size, None)

    # --- push

    def push(self, run_id: str, folder: Path) -> Pushed:
        """Upload ``folder`` (a run's adapter folder) as the run's files, then its manifest.
        Files already stored with the same sha256 are skipped; different content is refused."""
        local = scan(folder, _checked(run_id))
        uri = self.uri(run_id)
        stored = self.manifest(run_id)
        if stored is not None:
            problems = differences(stored, local)
            if problems:
                raise ActionError(f"{uri}/ already holds run {run_id} with different content: " + "; ".join(problems),
                                  hint=IMMUTABLE.format(uri=uri))
            return Pushed(uri, local, uploaded=(), skipped=tuple(sorted(local.files)))
        listed = self.listing(run_id)
        strays = sorted(set(listed) - set(local.files))
        if strays:
            raise ActionError(f"{uri}/ holds {', '.join(strays)}, which {folder} does not",
                              hint=IMMUTABLE.format(uri=uri))
        uploaded, skipped = [], []
        for name, entry in sorted(local.files.items()):
            if name in listed:
                if listed[name] == entry.size and self._stored_sha256(run_id, name, entry.size) == entry.sha256:
                    skipped.append(name)
                    continue
                raise ActionError(f"{uri}/{name} is already stored with different content",
                                  hint=IMMUTABLE.format(uri=uri))
            self._upload(run_id, folder / name, name, entry)
            uploaded.append(name)
        body = local.dumps()  # last: only now is the run in the store
        with self.connection.call(f"writing {uri}/{facts.MANIFEST}"):
            self.client.put_object(Bucket=self.connection.spec.bucket, Key=self._key(run_id, facts.MANIFEST), Body=body,
                                   ContentType="application/json",
                                   Metadata={facts.SHA256_METADATA: hashlib.sha256(body).hexdigest()})
        return Pushed(uri, local, uploaded=tuple(uploaded), skipped=tuple(skipped))

    def _upload(self, run_id: str, path: Path, name: str, entry: Entry) -> None:
        from s3transfer.manager import TransferConfig, TransferManager

        config = TransferConfig(multipart_threshold=self.transfer.threshold, multipart_chunksize=self.transfer.part,
                                max_request_concurrency=self.transfer.concurrency)
        with self.connection.call(f"uploading {self.uri(run_id)}/{name}"), TransferManager(self.client, config) as manager:
            manager.upload(str(path), self.connection.spec.bucket, self._key(run_id, name),
                           extra_args={"Metadata": {facts.SHA256_METADATA: entry.sha256}}).result()

    # --- verify and fetch

    def _stored_manifest(self, run_id: str) -> Manifest:
        stored = self.manifest(run_id)
        if stored is None:
            raise ActionError(f"run {run_id} is not in the artifact store: {self.uri(run_id)}/{facts.MANIFEST} does not exist",
                              hint=f"push it with `vilms export {run_id} --push` where artifacts/{run_id}/ is")
        listed = set(self.listing(run_id)) - {facts.MANIFEST}
        if listed != set(stored.files):
            lost, strays = sorted(set(stored.files) - listed), sorted(listed - set(stored.files))
            said = "; ".join(([f"missing {', '.join(lost)}"] if lost else []) + ([f"not in the manifest: {', '.join(strays)}"] if strays else []))
            raise ActionError(f"{self.uri(run_id)}/ does not match its manifest: {said}", hint=IMMUTABLE.format(uri=self.uri(run_id)))
        return stored

    def verify(self, run_id: str, folder: Path | None = None) -> Manifest:
        """Download every stored file of the run and compare its sha256 with ``folder``'s files
        (the local adapter folder), or with the stored manifest when there is no local copy."""
        stored = self._stored_manifest(run_id)
        against = "the manifest"
        if folder is not None:
            problems = differences(stored, scan(folder, run_id))
            if problems:
                raise ActionError(f"{self.uri(run_id)}/ does not hold {folder}: " + "; ".join(problems),
                                  hint=IMMUTABLE.format(uri=self.uri(run_id)))
            against = f"the file in {folder}"
        for name, entry in sorted(stored.files.items()):
            actual = self._download(run_id, name, entry.size, None)
            if actual != entry.sha256:
                raise ActionError(f"{self.uri(run_id)}/{name}: the stored object's sha256 is {actual}, "
                                  f"not {entry.sha256} ({against})", hint=IMMUTABLE.format(uri=self.uri(run_id)))
        return stored

    def fetch(self, run_id: str, dest: Path) -> Manifest:
        """Download the run's files into ``dest`` (which must not exist): into a temporary folder
        beside it, each file checked against the manifest, then renamed into place at once."""
        stored = self._stored_manifest(run_id)
        if dest.exists():
            raise ActionError(f"{dest} already exists; not overwriting it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        staging.mkdir()
        try:
            for name, entry in sorted(stored.files.items()):
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as fh:
                    actual = self._download(run_id, name, entry.size, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                if actual != entry.sha256:
                    raise ActionError(f"{self.uri(run_id)}/{name}: the stored object's sha256 is {actual}, "
                                      f"not {entry.sha256} (the manifest)", hint=IMMUTABLE.format(uri=self.uri(run_id)))
            os.rename(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return stored


def object_key(spec: ArtifactStoreSpec, run_id: str, name: str = "") -> str:
    """The key of a run's file: ``<prefix>/<run_id>/<name>`` (``<run_id>/<name>`` at the bucket's root)."""
    return f"{spec.prefix}/{_checked(run_id)}/{name}" if spec.prefix else f"{_checked(run_id)}/{name}"


def _checked(run_id: str) -> str:
    """``run_id`` when it is a run id (one path segment of safe characters), else an error."""
    if not RUN_ID.match(run_id):
        raise ActionError(f"not a run id: {run_id!r}", hint=f"run ids look like {EXAMPLE} (see artifacts/)")
    return run_id
