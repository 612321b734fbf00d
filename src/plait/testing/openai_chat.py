"""OpenAI Chat Completions (`POST /v1/chat/completions`), streaming and not, with tool calls.

OpenCode's openai-compatible provider and Aider (through litellm) use it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from plait.testing.dialect import Conversation, Reply, bearer, estimate_tokens, json_reply, sse, text_of
from plait.testing.openai_responses import count_assistant_turns, openai_error
from plait.testing.tools import Answer, Flavor, flavor_for


class ChatCompletions:
    name = "chat"

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return bearer(headers) or headers.get("api-key")

    def conversation(self, path: str, body: dict[str, Any]) -> Conversation:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        tools = tuple(str((t.get("function") or {}).get("name", "")) for t in body.get("tools") or []
                      if isinstance(t, dict))
        system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
        aider = flavor_for((), system) in (Flavor.AIDER_DIFF, Flavor.AIDER_WHOLE)
        return Conversation(
            turn=_aider_turn(messages) if aider else count_assistant_turns(messages, _is_assistant),
            tools=tools,
            system=system,
            main=bool(tools),
            stream=bool(body.get("stream")),
            model=str(body.get("model", "scripted")),
            input_tokens=estimate_tokens(messages),
            transcript=_user_text(messages) if aider else "",
        )

    def reply(self, answer: Answer, conv: Conversation) -> Reply:
        calls = [{"id": f"call_{uuid.uuid4().hex[:20]}", "type": "function",
                  "function": {"name": c.name, "arguments": c.json}} for c in answer.calls]
        content = answer.text or (None if calls else "done")
        finish = "tool_calls" if calls else "stop"
        out_tokens = estimate_tokens([content, calls])
        usage = {"prompt_tokens": conv.input_tokens, "completion_tokens": out_tokens,
                 "total_tokens": conv.input_tokens + out_tokens, "prompt_tokens_details": {"cached_tokens": 0}}
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:20]}", int(time.time())
        if not conv.stream:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            return json_reply(200, {"id": ident, "object": "chat.completion", "created": created,
                                    "model": conv.model, "usage": usage,
                                    "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": conv.model}
        return Reply(200, _stream(head, content, calls, finish, usage), {"content-type": "text/event-stream"})

    def error(self, status: int, message: str | None) -> Reply:
        return openai_error(status, message)


def _stream(head: dict[str, Any], content: str | None, calls: list[dict[str, Any]], finish: str,
            usage: dict[str, Any]) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> bytes:
        return sse(None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    if content:
        yield chunk({"content": content})
    for index, call in enumerate(calls):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, finish)
    # The usage chunk (asked for with stream_options.include_usage) has no choices.
    yield sse(None, {**head, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _user_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "user")


def _is_assistant(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant"


# Aider's reply when an answer named files that exist but are not in the chat: it adds them and
# asks again without applying that answer, so the answer does not count as a turn.
_AIDER_ADDED = "I added these files to the chat"


def _aider_turn(messages: list[dict[str, Any]]) -> int:
    """Aider's real turns: the messages after its examples and file context (each of which ends with
    an assistant "Ok..." acknowledgment), less the answers it asked again for."""
    last_ack = -1
    for index, message in enumerate(messages):
        content = text_of(message.get("content"))
        if _is_assistant(message) and content.startswith("Ok") and len(content) < 120:
            last_ack = index
    rest = messages[last_ack + 1:]
    turns = 0
    for index, message in enumerate(rest):
        following = text_of(rest[index + 1].get("content")) if index + 1 < len(rest) else ""
        if _is_assistant(message) and not following.startswith(_AIDER_ADDED):
            turns += 1
    return turns
