"""The OpenAI Responses API (`POST /v1/responses`), streaming (SSE) and not, as Codex uses it."""

from __future__ import annotations

import time
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

# status -> (error type, code, message); 529 is Anthropic's and becomes OpenAI's 503 "overloaded".
OPENAI_ERRORS = {
    400: ("invalid_request_error", "context_length_exceeded",
          "Your input exceeds the context window of this model. Please adjust your input and try again."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    429: ("rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    503: ("server_error", "server_is_overloaded", "The server is overloaded. Please try again later."),
}
_ASSISTANT_ITEMS = {"function_call", "reasoning", "custom_tool_call", "local_shell_call"}


def openai_error(status: int, message: str | None) -> Reply:
    status = 503 if status == 529 else status
    kind, code, default = OPENAI_ERRORS.get(status, ("server_error", "server_error", f"HTTP {status}"))
    body = {"error": {"message": message or default, "type": kind, "param": None, "code": code}}
    return json_reply(status, body, RETRY_SOON if status in (429, 500, 503) else {})


def count_assistant_turns(items: list[Any], is_assistant: Any) -> int:
    """Runs of consecutive assistant items: one model turn may hold several items."""
    turns, inside = 0, False
    for item in items:
        mine = isinstance(item, dict) and bool(is_assistant(item))
        if mine and not inside:
            turns += 1
        inside = mine
    return turns


def _additional_tools(items: list[Any]) -> list[Any]:
    """Tools Codex offers inside the input (its code mode puts them in an `additional_tools` item)."""
    found: list[Any] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            found += item.get("tools") or []
    return found


def _tool_names(tools: list[Any]) -> list[str]:
    names: list[str] = []
    for tool in tools:
        if isinstance(tool, dict):
            if tool.get("type") == "namespace":
                names += _tool_names(tool.get("tools") or [])
            elif tool.get("name"):
                names.append(str(tool["name"]))
    return names


def _is_assistant(item: dict[str, Any]) -> bool:
    return item.get("type") in _ASSISTANT_ITEMS or item.get("role") == "assistant"


class Responses:
    name = "responses"

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return bearer(headers) or headers.get("api-key")

    def conversation(self, path: str, body: dict[str, Any]) -> Conversation:
        items = body.get("input")
        items = items if isinstance(items, list) else [{"role": "user", "content": items}]
        tools = tuple(_tool_names([*(body.get("tools") or []), *_additional_tools(items)]))
        return Conversation(
            turn=count_assistant_turns(items, _is_assistant),
            tools=tools,
            system=text_of(body.get("instructions") or ""),
            main=bool(tools),
            stream=bool(body.get("stream")),
            model=str(body.get("model", "gpt-scripted")),
            input_tokens=estimate_tokens(items),
        )

    def reply(self, answer: Answer, conv: Conversation) -> Reply:
        output: list[dict[str, Any]] = []
        if answer.text or not answer.calls:
            output.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:20]}", "role": "assistant",
                           "status": "completed",
                           "content": [{"type": "output_text", "text": answer.text or "done", "annotations": []}]})
        for call in answer.calls:
            ident = {"call_id": f"call_{uuid.uuid4().hex[:20]}", "name": call.name, "status": "completed"}
            if call.custom is not None:
                output.append({"type": "custom_tool_call", "id": f"ctc_{uuid.uuid4().hex[:20]}", **ident,
                               "input": call.custom})
            else:
                output.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:20]}", **ident,
                               "arguments": call.json})
        out_tokens = estimate_tokens(output)
        usage = {"input_tokens": conv.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": conv.input_tokens + out_tokens}
        response = {"id": f"resp_{uuid.uuid4().hex[:20]}", "object": "response", "created_at": int(time.time()),
                    "status": "completed", "model": conv.model, "output": output, "usage": usage}
        if not conv.stream:
            return json_reply(200, response)
        return Reply(200, _stream(response), {"content-type": "text/event-stream"})

    def error(self, status: int, message: str | None) -> Reply:
        return openai_error(status, message)


def _stream(response: dict[str, Any]) -> Iterator[bytes]:
    seq = iter(range(1_000_000))
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield sse("response.created", {"type": "response.created", "sequence_number": next(seq), "response": started})
    for index, item in enumerate(response["output"]):
        opened = {**item, "status": "in_progress"}
        if item["type"] == "message":
            opened["content"] = []
        elif item["type"] == "function_call":
            opened["arguments"] = ""
        elif item["type"] == "custom_tool_call":
            opened["input"] = ""
        yield sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                 "output_index": index, "item": opened})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                     "sequence_number": next(seq), "item_id": item["id"],
                                                     "output_index": index, "content_index": 0, "delta": text})
        elif item["type"] == "function_call":
            yield sse("response.function_call_arguments.delta",
                      {"type": "response.function_call_arguments.delta", "sequence_number": next(seq),
                       "item_id": item["id"], "output_index": index, "delta": item["arguments"]})
        yield sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                                "output_index": index, "item": item})
    yield sse("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                     "response": response})
