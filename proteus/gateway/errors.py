"""OpenAI-style errors: every failure a client sees is `{"error": {"message", "type", "code"}}`.

The `type` values follow OpenAI's (`invalid_request_error`, `authentication_error`,
`rate_limit_error`, `insufficient_quota`, `server_error`), so SDKs raise their usual exception
classes (401 -> AuthenticationError, 429 -> RateLimitError, ...); `code` says which rule fired.
"""

from __future__ import annotations

import json


class GatewayError(Exception):
    """A request the gateway answers with an error: HTTP `status`, OpenAI `type` and `code`."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON error body."""
        return error_body(self.message, self.type, self.code)


def error_body(message: str, type_: str, code: str | None) -> bytes:
    """`{"error": {"message", "type", "code"}}` as bytes (also used for upstream errors)."""
    return json.dumps({"error": {"message": message, "type": type_, "param": None,
                                 "code": code}}).encode()
