"""A local S3-compatible server for the artifact store tests: moto's standalone server
(``python -m moto.server``) on 127.0.0.1, a free port, with request signing enforced.

moto checks SigV4 signatures and IAM policies once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests
have been served: the first three create an IAM user, its access key and a policy allowing
``s3:*``; from then on a wrong secret is refused as AWS refuses it (SignatureDoesNotMatch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

SETUP_REQUESTS = 3  # create_user, create_access_key, put_user_policy
START_TIMEOUT_S = 30.0


def _die_with_the_tests() -> None:
    """In the child: SIGTERM when the test process dies, even if it is killed (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    process: subprocess.Popen

    def client(self):
        """A plain boto3 client of the server (the tests' own, to create buckets and tamper)."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def env(self, **extra: str) -> dict[str, str]:
        return {"S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key, **extra}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start() -> S3Server:
    import boto3

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_the_tests,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto.server exited with {process.returncode} before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto.server did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s") from None
            time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.session.Session().client("iam", endpoint_url=endpoint, region_name="us-east-1",
                                             aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="vilms")
        key = iam.create_access_key(UserName="vilms")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="vilms", PolicyName="s3", PolicyDocument=json.dumps(policy))
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        raise
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], process)
