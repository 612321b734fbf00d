"""The request and response records authkit's handlers take and return.

A framework adapter (WSGI, ASGI, a test client) converts to and from these, so the
authentication logic never depends on a web framework.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header's value; names are compared ignoring case, as HTTP requires."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def text(self, name: str) -> str | None:
        """A body field that must be a non-empty string, or None: handlers reject anything else."""
        value = self.body.get(name)
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Response:
    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(dict(self.body), sort_keys=True)


def json_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, dict(body), dict(headers or {}))


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    """Every error has the same shape, so clients branch on `error` and show `message`."""
    return Response(status, {"error": code, "message": message}, dict(headers or {}))
