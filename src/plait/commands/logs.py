"""`plait logs [RUN] [TASK] [-f]`: what a task's agents said and did, as readable text.

The CLIs write their output as JSON lines (Claude Code's stream-json, Codex's and Gemini CLI's events,
OpenCode's parts) or plain text; each line becomes one readable line: what the agent said, the tools it
called (`→ Write a.txt`), what they answered (`←`), and its result. Lines plait cannot read are shown as
they are (control characters made visible)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from plait import api
from plait.errors import PlaitError
from plait.text import clip, printable

AGENT_LOGS = ("agent.jsonl", "agent.stdout", "agent.log")
LINE_CHARS = 400  # of one tool input or result on a line
POLL_SECONDS = 0.3


def show_logs(run_id: str | None, task_id: str | None, follow: bool, console: Console) -> int:
    run_id = api.run_id_or_latest(run_id)
    doc = api.status(run_id)
    tasks = [t["id"] for t in doc["tasks"]]
    if task_id is not None and task_id not in tasks:
        raise PlaitError(f"run {run_id} has no task {task_id!r}", f"its tasks: {', '.join(tasks)}")
    folder = Path(doc["evidence"]) / "tasks"
    chosen = [task_id] if task_id else tasks
    if follow:
        if task_id is None:
            raise PlaitError("--follow needs a TASK", f"e.g. plait logs {run_id} {tasks[0]} -f")
        return _follow(run_id, task_id, folder / task_id, console)
    for tid in chosen:
        files = agent_logs(folder / tid)
        if task_id is None and not files:
            continue
        console.print(f"── {tid} ──", style="bold", markup=False, highlight=False)
        if not files:
            console.print("(no agent output yet)", markup=False)
        for path in files:
            console.print(f"# {path.relative_to(folder / tid)}", style="dim", markup=False, soft_wrap=True)
            for line in readable(path.read_text(errors="replace").splitlines()):
                console.print(line, markup=False, soft_wrap=True, highlight=False)
    return 0


def agent_logs(task_dir: Path) -> list[Path]:
    """Every agent log of the task, attempt by attempt, each attempt's reviewers and fixers after its agent."""
    found: list[Path] = []
    for attempt in sorted((task_dir / "logs").glob("attempt-*"), key=lambda p: int(p.name.split("-")[1])):
        for folder in [attempt, *sorted(p for p in attempt.iterdir() if p.is_dir())]:
            found += [folder / name for name in AGENT_LOGS if (folder / name).is_file()]
    return found


def _follow(run_id: str, task_id: str, task_dir: Path, console: Console) -> int:
    """Print the task's newest agent log as it grows, until the task is no longer running."""
    seen: dict[Path, int] = {}
    while True:
        for path in agent_logs(task_dir):
            size = path.stat().st_size
            if size > seen.get(path, 0):
                with path.open("rb") as f:
                    f.seek(seen.get(path, 0))
                    chunk = f.read(size - seen.get(path, 0))
                complete = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only; the rest comes next time
                seen[path] = seen.get(path, 0) + len(complete)
                for line in readable(complete.decode(errors="replace").splitlines()):
                    console.print(line, markup=False, soft_wrap=True, highlight=False)
        state = next(t["state"] for t in api.status(run_id)["tasks"] if t["id"] == task_id)
        if state not in ("pending", "running", "retrying"):
            return 0
        time.sleep(POLL_SECONDS)


def readable(lines: list[str]) -> Iterator[str]:
    for raw in lines:
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            yield printable(raw)
            continue
        if isinstance(event, dict):
            yield from (printable(line) for line in _event(event))
        else:
            yield printable(raw)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return clip(" ".join(text.split()), LINE_CHARS)


def _event(e: dict[str, Any]) -> list[str]:
    kind = str(e.get("type", ""))
    if kind == "system" and e.get("subtype") == "init":  # Claude Code
        return [f"started: model {e.get('model')}, in {e.get('cwd')}"]
    if kind in ("assistant", "user") and isinstance(e.get("message"), dict):
        return _blocks(e["message"].get("content"))
    if kind == "result":
        return [f"result ({e.get('subtype', 'done')}): {_short(e.get('result') or e.get('error') or '')}"]
    item = e.get("item")
    if isinstance(item, dict):  # Codex
        if kind != "item.completed":
            return []
        if item.get("type") == "agent_message":
            return [str(item.get("text", ""))]
        if item.get("type") == "command_execution":
            return [f"→ $ {_short(item.get('command'))} (exit {item.get('exit_code')})"]
        if item.get("type") == "file_change":
            return [f"→ changed {_short([c.get('path') for c in item.get('changes', [])])}"]
        return [f"{item.get('type')}: {_short(item.get('text') or item)}"]
    if kind in ("thread.started", "turn.started", "turn.completed", "init", "step_start", "step_finish"):
        return []
    if kind == "tool_use" or "tool_name" in e:  # Gemini CLI
        return [f"→ {e.get('tool_name') or e.get('name')} {_short(e.get('parameters') or e.get('input') or '')}"]
    if kind == "tool_result":
        return [f"← {_short(e.get('output') or e.get('content') or e.get('status') or '')}"]
    part = e.get("part")
    if isinstance(part, dict):  # OpenCode
        if part.get("text"):
            return [str(part["text"])]
        if part.get("tool"):
            return [f"→ {part.get('tool')} {_short((part.get('state') or {}).get('input') or '')}"]
        return []
    for key in ("content", "text", "message", "error"):
        if isinstance(e.get(key), str) and e[key].strip():
            return [str(e[key])]
    return []


def _blocks(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and block.get("text"):
            out.append(str(block["text"]))
        elif block.get("type") == "tool_use":
            out.append(f"→ {block.get('name')} {_short(block.get('input') or {})}")
        elif block.get("type") == "tool_result":
            result = block.get("content")
            if isinstance(result, list):
                result = " ".join(str(b.get("text", "")) for b in result if isinstance(b, dict))
            out.append(("← error: " if block.get("is_error") else "← ") + _short(result or ""))
    return out
