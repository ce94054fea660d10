"""Make the gateway test helpers (gateway_fakes, gateway_harness) importable by name; the S3-compatible
server (moto) of the artifact-store tests, one per session, and a fresh bucket per test."""

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tests.support import s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3():
    server = s3_server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3) -> str:
    name = f"adapters-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name
