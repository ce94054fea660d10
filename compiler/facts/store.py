"""The artifact store: how ViLMS lays out runs' adapters in an S3-compatible bucket, and how
long it waits for one (``runtime/artifact_store/``; ``vilms export --push``, rollout, rollback).

A run's adapter folder ``artifacts/<run_id>/adapter/`` is stored flat under
``<uri>/<run_id>/`` (Ray Serve LLM loads ``<dynamic_lora_loading_path>/<adapter>/`` as a
PEFT folder), plus :data:`MANIFEST`, written last: a run without it is not in the store.
"""

from __future__ import annotations

MANIFEST = "vilms-manifest.json"  # <uri>/<run_id>/vilms-manifest.json: {format, run_id, files: {name: {sha256, size}}}
MANIFEST_FORMAT = "vilms.dev/adapter-manifest/v1"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few hundred bytes; a bigger object is not one of ours
MAX_RUN_OBJECTS = 1000  # objects listed under one run before the store is taken to be hostile
SHA256_METADATA = "sha256"  # x-amz-meta-sha256 on every object pushed: its content's digest

# every wait is bounded (botocore Config)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # per socket read, so a large object downloads as long as bytes keep coming
MIN_BYTES_PER_S = 64 << 10  # ... but a download slower than this (after READ_TIMEOUT_S) is given up
MAX_ATTEMPTS = 3  # botocore "standard" retries: throttling, 5xx and connection errors, with backoff

# uploads through s3transfer: multipart above the threshold, parts in parallel
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 64 << 20
MAX_CONCURRENCY = 4
READ_BLOCK = 1 << 20  # bytes read at a time when hashing a download
