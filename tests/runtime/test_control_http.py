"""Control-plane HTTP through httpx: the local runner's health probe (runtime/local/health.py)
and the demo's chat request (cli/demo.py), against small servers in this process; every
wait times out."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vilms.cli import demo
from vilms.compiler.errors import ActionError
from vilms.runtime.local.health import probe


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    replies: dict[str, tuple[int, bytes]] = {}  # path → (status, body); set per test
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_GET(self) -> None:
        self.answer(b"")

    def do_POST(self) -> None:
        self.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def answer(self, body: bytes) -> None:
        self.seen.append((self.path, dict(self.headers), body))
        status, reply = self.replies.get(self.path, (404, b"not found"))
        if status == 0:  # hang up without an answer
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("x-vilms-backend", "fake")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, dict, list]]:
    replies: dict[str, tuple[int, bytes]] = {}
    seen: list = []
    handler = type("H", (Handler,), {"replies": replies, "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], replies, seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the health probe


def test_probe_answers(server):
    port, replies, seen = server
    replies["/health"] = (200, b'{"status": "ok"}')
    replies["/busy"] = (503, b"loading")
    replies["/gone"] = (0, b"")
    assert probe(f"http://127.0.0.1:{port}/health") is None
    assert probe(f"http://127.0.0.1:{port}/busy") == "HTTP 503"
    assert probe(f"http://127.0.0.1:{port}/gone") == "RemoteProtocolError"
    assert probe(f"http://127.0.0.1:{closed_port()}/health") == "connection refused"
    assert seen[0][1]["Connection"] == "close"  # one connection per probe, closed by the server


def test_probe_times_out(silent_port):
    started = time.monotonic()
    assert probe(f"http://127.0.0.1:{silent_port}/health", timeout_s=0.3) == "timed out"
    assert time.monotonic() - started < 2


def test_probe_is_plain_http_only():
    with pytest.raises(ValueError, match="plain HTTP"):
        probe("https://127.0.0.1:1/health")


# --- the demo's chat request


def completion(text: object) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


def test_chat_sends_the_question_and_returns_the_reply(server):
    port, replies, seen = server
    replies["/v1/chat/completions"] = (200, completion("hello"))
    assert demo.chat(port, "support-bot", key="k1") == (200, "fake", "hello")
    _path, headers, body = seen[0]
    assert headers["Authorization"] == "Bearer k1" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"model": "support-bot", "messages": [{"role": "user", "content": demo.QUESTION}],
                                "max_tokens": 8, "temperature": 0}


@pytest.mark.parametrize("status,reply,message", [
    (503, b'{"error": "no backend"}', "the gateway answered 'chat' with HTTP 503: b'{\"error\": \"no backend\"}'"),
    (200, b"{}", "the gateway's answer for 'chat' is not a chat completion: b'{}'"),
    (200, b"<html>", "the gateway's answer for 'chat' is not a chat completion: b'<html>'"),
    (200, completion(None), "is not a chat completion"),
], ids=["http-error", "not-a-completion", "not-json", "no-content"])
def test_chat_refuses_a_bad_answer(server, status, reply, message):
    port, replies, _seen = server
    replies["/v1/chat/completions"] = (status, reply)
    with pytest.raises(ActionError) as caught:
        demo.chat(port, "chat")
    assert message in caught.value.message


def test_chat_names_an_unreachable_gateway():
    port = closed_port()
    with pytest.raises(ActionError) as caught:
        demo.chat(port, "chat")
    assert caught.value.message.startswith(f"cannot reach the gateway on port {port}")


def test_chat_times_out(silent_port, monkeypatch):
    monkeypatch.setattr(demo, "CHAT_TIMEOUT_S", 0.3)
    started = time.monotonic()
    with pytest.raises(ActionError) as caught:
        demo.chat(silent_port, "chat")
    assert caught.value.message == "the gateway did not answer 'chat' within 0.3 s"
    assert time.monotonic() - started < 2
