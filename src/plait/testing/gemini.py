"""The Gemini API (`models/<model>:generateContent` and `:streamGenerateContent`) as Gemini CLI uses it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from plait.testing.dialect import Conversation, Reply, estimate_tokens, json_reply, text_of
from plait.testing.openai_responses import count_assistant_turns
from plait.testing.tools import Answer

_ERRORS = {
    400: ("INVALID_ARGUMENT",
          "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "Permission denied on resource."),
    # "Please retry in" is how the API says when; Gemini CLI waits that long instead of its back-off.
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota). Please retry in 0.2s."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report."),
    503: ("UNAVAILABLE", "The model is overloaded. Please retry in 0.2s."),
}


class GeminiApi:
    name = "gemini"

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def conversation(self, path: str, body: dict[str, Any]) -> Conversation:
        contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
        tools: list[str] = []
        for group in body.get("tools") or []:
            for decl in (group or {}).get("functionDeclarations") or []:
                tools.append(str(decl.get("name", "")))
        model = path.rsplit("/", 1)[-1].split(":", 1)[0]
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        wants_json = config.get("responseMimeType") == "application/json"
        return Conversation(
            turn=count_assistant_turns(contents, lambda c: c.get("role") == "model"),
            tools=tuple(tools),
            system=text_of(body.get("systemInstruction") or body.get("system_instruction") or ""),
            main=bool(tools),
            stream=":streamGenerateContent" in path,
            model=model or "gemini-scripted",
            input_tokens=estimate_tokens(contents),
            json_schema=(schema if isinstance(schema, dict) else {}) if wants_json else None,
        )

    def reply(self, answer: Answer, conv: Conversation) -> Reply:
        parts: list[dict[str, Any]] = []
        if answer.text or not answer.calls:
            parts.append({"text": answer.text or "done"})
        parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in answer.calls]
        out_tokens = estimate_tokens(parts)
        data = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": conv.input_tokens, "candidatesTokenCount": out_tokens,
                                  "totalTokenCount": conv.input_tokens + out_tokens},
                "modelVersion": conv.model}
        if not conv.stream:
            return json_reply(200, data)
        return Reply(200, _stream(data), {"content-type": "text/event-stream"})

    def error(self, status: int, message: str | None) -> Reply:
        status = 503 if status == 529 else status
        kind, default = _ERRORS.get(status, ("UNKNOWN", f"HTTP {status}"))
        return json_reply(status, {"error": {"code": status, "message": message or default, "status": kind}})


def _stream(data: dict[str, Any]) -> Iterator[bytes]:
    yield f"data: {json.dumps(data)}\r\n\r\n".encode()
