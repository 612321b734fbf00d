"""A scripted model server on loopback that real agent CLIs talk to instead of a model provider.

    with ModelServer() as server:
        server.add("key-task-a", Scenario([write("hello.txt", "hi\\n")]))
        ... run `claude` with ANTHROPIC_BASE_URL=server.url and ANTHROPIC_API_KEY=key-task-a ...
        assert server.requests_for("key-task-a")

It speaks the Anthropic Messages API, the OpenAI Responses and Chat Completions APIs and the
Gemini API, picks the scenario by the request's API key (each agent in a test gets its own),
and records every request.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from plait.testing.anthropic import AnthropicMessages
from plait.testing.dialect import (
    Conversation,
    Dialect,
    Reply,
    estimate_tokens,
    json_reply,
    minimal_json,
    working_dir,
)
from plait.testing.gemini import GeminiApi
from plait.testing.openai_chat import ChatCompletions
from plait.testing.openai_responses import Responses
from plait.testing.scenario import Scenario, plan_turn
from plait.testing.tools import Answer, Flavor, answer_for, flavor_for

_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "proxy-authorization"}
_AIDER = (Flavor.AIDER_DIFF, Flavor.AIDER_WHOLE)
SIDE_ANSWER = "ok"  # what title generation, quota probes and other side requests get


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # secrets shown as "***"
    body: Any  # the parsed JSON body, None when there was none
    api: str  # "anthropic", "responses", "chat", "gemini" or "" for anything else
    scenario_key: str | None  # the key passed to `add` that answered it; None: the default scenario
    turn: int | None = None
    main: bool = False  # part of the scripted conversation (not a side request)
    status: int = 0


class ModelServer:
    """Loopback HTTP server answering model API calls from scripted scenarios. A context manager."""

    def __init__(self, default: Scenario | None = None, host: str = "127.0.0.1") -> None:
        self.default = default or Scenario()
        self._scenarios: dict[str, Scenario] = {}
        self._requests: list[RecordedRequest] = []
        self._failures: dict[tuple[str | None, int], int] = defaultdict(int)
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.model_server = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, api_key: str, scenario: Scenario) -> None:
        """Answer requests made with `api_key` from `scenario`."""
        with self._lock:
            self._scenarios[api_key] = scenario

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, api_key: str | None, main_only: bool = True) -> list[RecordedRequest]:
        return [r for r in self.requests if r.scenario_key == api_key and (r.main or not main_only)]

    def start(self) -> ModelServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="plait-model-server", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()  # wakes handlers that hang or wait out latency
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler --------------------------------------------------------------
    def scenario_for(self, api_key: str | None) -> tuple[str | None, Scenario]:
        with self._lock:
            if api_key is not None and api_key in self._scenarios:
                return api_key, self._scenarios[api_key]
        return None, self.default

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def answer(self, dialect: Dialect, key: str | None, scenario: Scenario, conv: Conversation) -> Reply:
        """The reply for one request of the scripted conversation."""
        flavor = flavor_for(conv.tools, conv.system)
        with self._lock:  # concurrent requests must not both take the last counted failure
            plan = plan_turn(scenario, conv.turn, self._failures[(key, conv.turn)], batch_edits=flavor in _AIDER)
            if plan.fail is not None and plan.fail.times is not None:
                self._failures[(key, conv.turn)] += 1
        if self.closing.wait(plan.hang + scenario.latency):
            return dialect.error(503, "the scripted model server is shutting down")
        if plan.fail is not None:
            return dialect.error(plan.fail.status, plan.fail.message)
        if not plan.actions:
            return dialect.reply(Answer(text=plan.final_text), conv)
        return dialect.reply(answer_for(plan.actions, flavor, working_dir(conv.system), conv.transcript), conv)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a CLI killed by its timeout, a dropped keep-alive) is no error here.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


_DIALECTS: dict[str, Dialect] = {
    "anthropic": AnthropicMessages(), "responses": Responses(), "chat": ChatCompletions(), "gemini": GeminiApi(),
}


def _route(path: str) -> str:
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "plait-scripted-model/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: requests are recorded instead
        pass

    @property
    def model_server(self) -> ModelServer:
        return self.server.model_server  # type: ignore[attr-defined, no-any-return]

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        shown = {k: ("***" if k in _SECRET_HEADERS else v) for k, v in headers.items()}
        api = _route(split.path) if self.command == "POST" and isinstance(body, dict) else ""
        server = self.model_server
        if not api:
            reply = _other(split.path, body)
            server.record(RecordedRequest(self.command, self.path, shown, body, "", None, status=reply.status))
            self._send(reply)
            return
        dialect = _DIALECTS[api]
        conv = dialect.conversation(split.path, body)
        key, scenario = server.scenario_for(dialect.api_key(headers, dict(parse_qsl(split.query))))
        flavor = flavor_for(conv.tools, conv.system)
        main = conv.main or flavor in _AIDER
        if main:
            reply = server.answer(dialect, key, scenario, conv)
        else:
            side = SIDE_ANSWER if conv.json_schema is None else json.dumps(minimal_json(conv.json_schema))
            reply = dialect.reply(Answer(text=side), conv)
        server.record(RecordedRequest(self.command, self.path, shown, body, api, key, conv.turn, main, reply.status))
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if isinstance(reply.body, bytes):
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        try:
            for chunk in _chunks(reply.body):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _chunks(parts: Iterator[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def _other(path: str, body: Any) -> Reply:
    """Model listings and token counting, which some CLIs ask for before the conversation."""
    if path.endswith("/count_tokens"):
        return json_reply(200, {"input_tokens": estimate_tokens(body)})
    if path.endswith("/models"):
        return json_reply(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}], "models": []})
    return json_reply(404, {"error": {"message": f"the scripted model server has no {path}", "type": "not_found"}})
