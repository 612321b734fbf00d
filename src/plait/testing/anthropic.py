"""The Anthropic Messages API (`POST /v1/messages`), streaming (SSE) and not, as Claude Code uses it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from plait.testing.dialect import (
    RETRY_SOON,
    Conversation,
    Reply,
    bearer,
    estimate_tokens,
    json_reply,
    sse,
    text_of,
)
from plait.testing.tools import Answer

_ERRORS = {
    400: ("invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class AnthropicMessages:
    name = "anthropic"

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-api-key") or bearer(headers)

    def conversation(self, path: str, body: dict[str, Any]) -> Conversation:
        messages = body.get("messages") or []
        tools = tuple(str(t.get("name", "")) for t in body.get("tools") or [] if isinstance(t, dict))
        return Conversation(
            turn=sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant"),
            tools=tools,
            system=text_of(body.get("system", "")),
            main=bool(tools),
            stream=bool(body.get("stream")),
            model=str(body.get("model", "claude-scripted")),
            input_tokens=estimate_tokens(messages),
        )

    def reply(self, answer: Answer, conv: Conversation) -> Reply:
        blocks: list[dict[str, Any]] = []
        if answer.text:
            blocks.append({"type": "text", "text": answer.text})
        for call in answer.calls:
            blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": call.name,
                           "input": call.arguments})
        if not blocks:
            blocks.append({"type": "text", "text": "done"})
        stop = "tool_use" if answer.calls else "end_turn"
        output_tokens = estimate_tokens(blocks)
        usage = {"input_tokens": conv.input_tokens, "output_tokens": output_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                   "model": conv.model, "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": usage}
        if not conv.stream:
            return json_reply(200, message)
        return Reply(200, _stream(message, blocks, stop, usage), {"content-type": "text/event-stream"})

    def error(self, status: int, message: str | None) -> Reply:
        kind, default = _ERRORS.get(status, ("api_error", f"HTTP {status}"))
        headers = RETRY_SOON if status in (429, 500, 529) else {}
        body = {"type": "error", "error": {"type": kind, "message": message or default},
                "request_id": f"req_{uuid.uuid4().hex[:24]}"}
        return json_reply(status, body, headers)


def _stream(message: dict[str, Any], blocks: list[dict[str, Any]], stop: str,
            usage: dict[str, int]) -> Iterator[bytes]:
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield sse("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}})
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            yield sse("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {**block, "input": {}}})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": usage["output_tokens"]}})
    yield sse("message_stop", {"type": "message_stop"})
