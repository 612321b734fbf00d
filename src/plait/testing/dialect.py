"""What every API dialect of the scripted server provides, and helpers they share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from plait.testing.tools import Answer


@dataclass(frozen=True)
class Conversation:
    """What the server needs to know about one request."""

    turn: int  # assistant turns already in the conversation
    tools: tuple[str, ...]
    system: str  # system prompt text (Aider's edit format is described there)
    main: bool  # False for title generation, quota probes and other side requests
    stream: bool
    model: str
    input_tokens: int  # a deterministic estimate, so usage and cost are testable
    json_schema: dict[str, Any] | None = None  # set when the client asks for JSON output (side requests)
    transcript: str = ""  # Aider: the user messages, which hold the files in the chat


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes | Iterator[bytes]  # an iterator is streamed (SSE) chunk by chunk
    headers: Mapping[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    name: str

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None: ...

    def conversation(self, path: str, body: dict[str, Any]) -> Conversation: ...

    def reply(self, answer: Answer, conv: Conversation) -> Reply: ...

    def error(self, status: int, message: str | None) -> Reply: ...


def estimate_tokens(data: object) -> int:
    """About four characters a token: deterministic, good enough to test usage plumbing."""
    return max(1, len(json.dumps(data)) // 4)


def json_reply(status: int, data: object, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"content-type": "application/json", **(headers or {})})


def sse(event: str | None, data: object) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def text_of(content: object) -> str:
    """Plain text of a message content in any of the APIs' shapes (str, list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "content", "input_text"):
            if isinstance(content.get(key), str):
                return str(content[key])
        if "parts" in content:
            return text_of(content["parts"])
    return ""


# Retries are the CLI's business; these headers only keep them quick in tests (the Anthropic and
# OpenAI SDKs honour retry-after-ms / retry-after).
RETRY_SOON = {"retry-after-ms": "10", "retry-after": "0"}

_CWD = re.compile(r"(?:[Ww]orking directory|cwd|Current working directory)[^/\n]{0,20}(/[^\s`'\"<>]+)")


def working_dir(system: str) -> str | None:
    """The CLI's working directory as its system prompt states it, when it does."""
    match = _CWD.search(system)
    return match.group(1).rstrip(".,") if match else None


def minimal_json(schema: object) -> object:
    """The smallest value that satisfies a JSON schema (Gemini CLI's router and next-speaker
    checks ask for JSON; an answer they cannot parse makes them retry with back-off)."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: minimal_json(props.get(name)) for name in schema.get("required") or props}
    return {"string": "ok", "integer": 1, "number": 1, "boolean": False, "array": []}.get(kind)
