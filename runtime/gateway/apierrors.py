"""OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from typing import Any

from .httpserver import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An error answered to the client as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        headers = dict(self.headers)
        if extra_headers:
            headers.update(extra_headers)
        return Response(json.dumps(self.body()).encode(), self.status, headers=headers)


def normalize_upstream_error(status: int, body: bytes) -> bytes:
    """Rewrite an engine's error body into the OpenAI shape (vLLM, Ollama, llama.cpp differ)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]:
        return body
    if isinstance(data, dict) and isinstance(data.get("error"), str):  # Ollama: {"error": "..."}
        message = data["error"]
    elif isinstance(data, dict) and isinstance(data.get("message"), str):  # old vLLM: {"object": "error", ...}
        message = data["message"]
    elif isinstance(data, dict) and isinstance(data.get("detail"), (str, list)):  # FastAPI validation
        message = data["detail"] if isinstance(data["detail"], str) else json.dumps(data["detail"])
    else:  # not an engine's error object (an HTML page from a proxy, ...): its text is not passed on
        message = f"The engine answered HTTP {status}."
    return json.dumps(ApiError(status, message, code=f"upstream_{status}").body()).encode()
