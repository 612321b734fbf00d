"""The scripted model server over real HTTP: each API's shapes, scenarios, keys, recording."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from plait.testing import ModelServer, Scenario, edit, fail, hang, run, text, write

CLAUDE_TOOLS = [{"name": "Write"}, {"name": "Edit"}, {"name": "Read"}, {"name": "Bash"}]


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json",
                                                                      **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def anthropic(server: ModelServer, key: str, messages: list[dict[str, Any]], stream: bool = True,
              tools: list[dict[str, Any]] | None = None) -> tuple[int, bytes]:
    body = {"model": "claude-test", "max_tokens": 100, "stream": stream, "messages": messages,
            "tools": CLAUDE_TOOLS if tools is None else tools}
    return post(f"{server.url}/v1/messages?beta=true", body, {"x-api-key": key})


def test_anthropic_stream_has_the_event_sequence_and_a_streamed_tool_use() -> None:
    with ModelServer() as server:
        server.add("k1", Scenario([write("a.txt", "hi\n")]))
        status, raw = anthropic(server, "k1", [{"role": "user", "content": "go"}])
    assert status == 200
    events = sse_events(raw)
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                           "content_block_stop", "message_delta", "message_stop"]
    assert events[1]["content_block"]["name"] == "Write"
    assert json.loads(events[2]["delta"]["partial_json"]) == {"file_path": "a.txt", "content": "hi\n"}
    assert events[4]["delta"]["stop_reason"] == "tool_use" and events[4]["usage"]["output_tokens"] > 0
    assert b"event: message_start\n" in raw


def test_the_turn_comes_from_the_conversation_so_a_retry_gets_the_same_answer() -> None:
    steps = [write("a.txt", "1"), run("make test"), text("finished")]
    with ModelServer() as server:
        server.add("k1", Scenario(steps))
        history = [{"role": "user", "content": "go"}]
        first = json.loads(anthropic(server, "k1", history, stream=False)[1])
        again = json.loads(anthropic(server, "k1", history, stream=False)[1])
        history += [{"role": "assistant", "content": first["content"]}, {"role": "user", "content": "result"}]
        second = json.loads(anthropic(server, "k1", history, stream=False)[1])
        history += [{"role": "assistant", "content": second["content"]}, {"role": "user", "content": "result"}]
        third = json.loads(anthropic(server, "k1", history, stream=False)[1])
        history += [{"role": "assistant", "content": third["content"]}, {"role": "user", "content": "more?"}]
        after = json.loads(anthropic(server, "k1", history, stream=False)[1])
    assert first["content"][0]["name"] == again["content"][0]["name"] == "Write"
    assert second["content"][0] == {**second["content"][0], "name": "Bash", "input": {
        "command": "make test", "description": "scripted command"}}
    assert third["content"] == [{"type": "text", "text": "finished"}] and third["stop_reason"] == "end_turn"
    assert after["content"][0]["text"] == "done"
    assert [r.turn for r in server.requests_for("k1")] == [0, 0, 1, 2, 3]


def test_claude_edit_reads_the_file_first_in_the_same_turn() -> None:
    with ModelServer(Scenario([edit("a.txt", "old", "new")])) as server:
        message = json.loads(anthropic(server, "any", [{"role": "user", "content": "go"}], stream=False)[1])
    assert [b["name"] for b in message["content"]] == ["Read", "Edit"]
    assert message["content"][1]["input"] == {"file_path": "a.txt", "old_string": "old", "new_string": "new"}


def test_side_requests_get_a_short_answer_and_do_not_consume_a_step() -> None:
    with ModelServer() as server:
        server.add("k1", Scenario([write("a.txt", "x")]))
        side = json.loads(anthropic(server, "k1", [{"role": "user", "content": "title?"}], stream=False,
                                    tools=[])[1])
        main = json.loads(anthropic(server, "k1", [{"role": "user", "content": "go"}], stream=False)[1])
    assert side["content"] == [{"type": "text", "text": "ok"}]
    assert main["content"][0]["name"] == "Write"
    assert [r.main for r in server.requests] == [False, True]


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit_error"), (529, "overloaded_error"),
                                              (401, "authentication_error"), (500, "api_error"),
                                              (400, "invalid_request_error")])
def test_anthropic_errors_have_the_apis_status_and_body(status: int, kind: str) -> None:
    with ModelServer(Scenario([fail(status)])) as server:
        got, raw = anthropic(server, "k", [{"role": "user", "content": "go"}])
    assert got == status
    assert json.loads(raw)["error"]["type"] == kind


def test_fail_times_gives_way_to_the_next_step_after_n_failures() -> None:
    with ModelServer(Scenario([fail(429, times=2), write("a.txt", "x")])) as server:
        statuses = [anthropic(server, "k", [{"role": "user", "content": "go"}], stream=False)[0] for _ in range(3)]
    assert statuses == [429, 429, 200]


def test_scenarios_are_chosen_by_api_key_and_secrets_are_not_recorded() -> None:
    with ModelServer(Scenario([text("default")])) as server:
        server.add("key-a", Scenario([text("for a")]))
        a = json.loads(anthropic(server, "key-a", [{"role": "user", "content": "x"}], stream=False)[1])
        other = json.loads(anthropic(server, "key-zz", [{"role": "user", "content": "x"}], stream=False)[1])
    assert a["content"][0]["text"] == "for a" and other["content"][0]["text"] == "default"
    assert [r.scenario_key for r in server.requests] == ["key-a", None]
    assert all(r.headers["x-api-key"] == "***" for r in server.requests)
    assert "key-a" not in json.dumps([r.headers for r in server.requests])


def test_latency_delays_every_main_turn() -> None:
    with ModelServer(Scenario([write("a", "1")], latency=0.3)) as server:
        started = time.monotonic()
        anthropic(server, "k", [{"role": "user", "content": "go"}], stream=False)
        took = time.monotonic() - started
    assert 0.3 <= took < 3


def test_close_wakes_a_hanging_request() -> None:
    server = ModelServer(Scenario([hang(60), write("a", "1")])).start()
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(anthropic(server, "k", [{"role": "user",
                                                                                      "content": "go"}])[0]))
    worker.start()
    time.sleep(0.3)  # let the request reach the server before closing it
    started = time.monotonic()
    server.close()
    worker.join(10)
    assert time.monotonic() - started < 5
    assert results == [503]


def test_responses_stream_carries_a_function_call_for_exec_command() -> None:
    body = {"model": "gpt-test", "stream": True, "tools": [{"type": "function", "name": "exec_command"}],
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]}
    with ModelServer(Scenario([write("dir/a.txt", "it's\n")])) as server:
        status, raw = post(f"{server.url}/v1/responses", body, {"authorization": "Bearer k"})
    events = sse_events(raw)
    assert status == 200
    assert next(e["type"] for e in events) == "response.created"
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["usage"]["input_tokens"] > 0
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "function_call" and done[0]["name"] == "exec_command"
    assert json.loads(done[0]["arguments"]) == {"cmd": "mkdir -p dir && printf %s 'it'\"'\"'s\n' > dir/a.txt"}


def test_responses_counts_turns_from_function_calls_in_the_input() -> None:
    calls = [{"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"}]
    body = {"model": "m", "stream": False, "tools": [{"type": "function", "name": "exec_command"}],
            "input": [{"type": "message", "role": "user", "content": "go"}, *calls]}
    with ModelServer(Scenario([run("one"), run("two")])) as server:
        response = json.loads(post(f"{server.url}/v1/responses", body, {"authorization": "Bearer k"})[1])
    assert json.loads(response["output"][0]["arguments"]) == {"cmd": "two"}


def test_chat_completions_stream_has_tool_calls_usage_and_done() -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}],
            "tools": [{"type": "function", "function": {"name": n}} for n in ("write", "edit", "bash")]}
    with ModelServer(Scenario([write("/abs/a.txt", "x")])) as server:
        status, raw = post(f"{server.url}/v1/chat/completions", body, {"authorization": "Bearer k"})
    chunks = sse_events(raw)
    assert status == 200 and raw.rstrip().endswith(b"data: [DONE]")
    call = next(c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    assert call["function"]["name"] == "write"
    assert json.loads(call["function"]["arguments"]) == {"filePath": "/abs/a.txt", "content": "x"}
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "tool_calls" for c in chunks)
    assert chunks[-1]["usage"]["prompt_tokens"] > 0


def test_aider_gets_its_edit_format_with_every_step_in_one_answer() -> None:
    system = "Act as an expert software developer... use *SEARCH/REPLACE block* ..."
    body = {"model": "m", "stream": False, "messages": [{"role": "system", "content": system},
                                                        {"role": "user", "content": "go"}]}
    steps = [write("new.py", "print(1)\n"), edit("old.py", "a = 1", "a = 2")]
    with ModelServer(Scenario(steps)) as server:
        reply = json.loads(post(f"{server.url}/v1/chat/completions", body, {"authorization": "Bearer k"})[1])
    content = reply["choices"][0]["message"]["content"]
    assert "new.py\n```\n<<<<<<< SEARCH\n=======\nprint(1)\n>>>>>>> REPLACE\n```" in content
    assert "old.py\n```\n<<<<<<< SEARCH\na = 1\n=======\na = 2\n>>>>>>> REPLACE\n```" in content
    assert server.requests[0].main


def test_gemini_answers_function_calls_and_json_side_requests() -> None:
    main = {"contents": [{"role": "user", "parts": [{"text": "go"}]}],
            "tools": [{"functionDeclarations": [{"name": "write_file"}, {"name": "run_shell_command"}]}]}
    schema = {"type": "OBJECT", "properties": {"score": {"type": "INTEGER"}, "why": {"type": "STRING"}},
              "required": ["score", "why"]}
    side = {"contents": [{"role": "user", "parts": [{"text": "route"}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}}
    with ModelServer(Scenario([run("ls")])) as server:
        status, raw = post(f"{server.url}/v1beta/models/gem:streamGenerateContent?alt=sse", main,
                           {"x-goog-api-key": "k"})
        _, side_raw = post(f"{server.url}/v1beta/models/gem-lite:generateContent?key=k", side)
    part = sse_events(raw)[0]["candidates"][0]["content"]["parts"][0]
    assert status == 200 and part["functionCall"] == {"name": "run_shell_command",
                                                      "args": {"command": "ls", "description": "scripted command"}}
    answer = json.loads(side_raw)["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(answer) == {"score": 1, "why": "ok"}


def test_gemini_rate_limit_says_when_to_retry() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "go"}]}],
            "tools": [{"functionDeclarations": [{"name": "write_file"}]}]}
    with ModelServer(Scenario([fail(429)])) as server:
        status, raw = post(f"{server.url}/v1beta/models/gem:generateContent", body, {"x-goog-api-key": "k"})
    error = json.loads(raw)["error"]
    assert status == 429 and error["status"] == "RESOURCE_EXHAUSTED" and "Please retry in" in error["message"]


def test_unknown_paths_are_recorded_and_answered_404() -> None:
    with ModelServer() as server:
        status, _ = post(f"{server.url}/nowhere", {"x": 1})
    assert status == 404 and server.requests[0].path == "/nowhere" and server.requests[0].body == {"x": 1}


def test_a_429_storm_fails_exactly_the_counted_requests_under_concurrency() -> None:
    with ModelServer(Scenario([fail(429, times=3), write("a", "1")])) as server:
        statuses: list[int] = []
        workers = [threading.Thread(target=lambda: statuses.append(
            anthropic(server, "k", [{"role": "user", "content": "go"}], stream=False)[0])) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
    assert sorted(statuses) == [200] * 5 + [429] * 3
