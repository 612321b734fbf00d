"""Turn scenario actions into the tool calls (or edit-format text) of the CLI that asked.

The server never needs to be told which CLI is calling: the tools a request offers say it
(Claude Code offers `Write`, Codex `exec_command`, Gemini CLI `write_file`, OpenCode `write`), and
Aider offers no tools but describes its edit format in the system prompt.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from plait.testing.scenario import Action, Call, Edit, Run, Text, Write


class Flavor(StrEnum):
    CLAUDE = "claude"
    CODEX = "codex"
    CODEX_CODE_MODE = "codex-code-mode"  # Codex's known models: one `exec` tool running JavaScript
    GEMINI = "gemini"
    OPENCODE = "opencode"
    AIDER_WHOLE = "aider-whole"
    AIDER_DIFF = "aider-diff"
    UNKNOWN = "unknown"  # tools we do not know: answer with text only


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    custom: str | None = None  # the raw input of a free-form ("custom") tool instead of JSON arguments

    @property
    def json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Answer:
    """One model turn: tool calls (possibly none) and text (possibly empty)."""

    calls: tuple[ToolCall, ...] = ()
    text: str = ""


def flavor_for(tools: Collection[str], system_prompt: str = "") -> Flavor:
    if "Write" in tools and "Bash" in tools:
        return Flavor.CLAUDE
    if "exec_command" in tools or "shell" in tools:
        return Flavor.CODEX
    if "exec" in tools and "wait" in tools:
        return Flavor.CODEX_CODE_MODE
    if "write_file" in tools or "run_shell_command" in tools:
        return Flavor.GEMINI
    if "write" in tools and "bash" in tools:
        return Flavor.OPENCODE
    if not tools and "SEARCH/REPLACE" in system_prompt:
        return Flavor.AIDER_DIFF
    if not tools and "file listing" in system_prompt:
        return Flavor.AIDER_WHOLE
    return Flavor.UNKNOWN


def _shell_write(path: str, content: str) -> str:
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    mkdir = f"mkdir -p {shlex.quote(parent)} && " if parent else ""
    return f"{mkdir}printf %s {shlex.quote(content)} > {shlex.quote(path)}"


# Codex has only a shell tool here: an exact replacement through Python avoids sed's escaping rules.
_PY_REPLACE = (
    "import pathlib,sys; p=pathlib.Path(sys.argv[1]); t=p.read_text(); "
    "sys.exit('old text not found') if sys.argv[2] not in t else p.write_text(t.replace(sys.argv[2], sys.argv[3], 1))"
)


def _shell_edit(step: Edit) -> str:
    return shlex.join(["python3", "-c", _PY_REPLACE, step.path, step.old, step.new])


def _fence(content: str) -> str:
    return "````" if "```" in content else "```"


def _chat_file(transcript: str, path: str) -> str | None:
    """A file's content as Aider shows the files in its chat: the path, a fence, the content, a fence."""
    found = re.search(rf"(?ms)^{re.escape(path)}\n(`{{3,}})[^\n]*\n(.*?)^\1\s*$", transcript)
    return found.group(2) if found else None


def _whole_file(path: str, content: str) -> str:
    fence = _fence(content)
    return f"{path}\n{fence}\n{content}{'' if content.endswith(chr(10)) else chr(10)}{fence}"


def _aider_text(actions: Sequence[Action], flavor: Flavor, transcript: str) -> str:
    parts: list[str] = []
    for action in actions:
        if isinstance(action, Text):
            parts.append(action.message)
        elif isinstance(action, Call):
            parts.append(f"(no tool {action.tool} here)")
        elif isinstance(action, Run):
            parts.append(f"Run this yourself: `{action.command}`")  # aider runs no commands unattended
        elif isinstance(action, Write) and flavor is Flavor.AIDER_WHOLE:
            parts.append(_whole_file(action.path, action.content))
        elif isinstance(action, Write):
            # Aider's SEARCH/REPLACE format creates a file from an empty SEARCH section.
            parts.append(_search_replace(action.path, "", action.content))
        elif flavor is Flavor.AIDER_DIFF:
            parts.append(_search_replace(action.path, action.old, action.new))
        else:
            # The whole-file format needs the file's content: once Aider has the file in its chat (it
            # adds the files an answer names and asks again), the edited content can be sent.
            current = _chat_file(transcript, action.path)
            if current is None:
                parts.append(f"I need to edit {action.path}.")
            else:
                parts.append(_whole_file(action.path, current.replace(action.old, action.new, 1)))
    return "\n\n".join(parts)


def _search_replace(path: str, old: str, new: str) -> str:
    def block(text: str) -> str:
        return text if not text or text.endswith("\n") else text + "\n"

    fence = _fence(old + new)
    return f"{path}\n{fence}\n<<<<<<< SEARCH\n{block(old)}=======\n{block(new)}>>>>>>> REPLACE\n{fence}"


def answer_for(actions: Sequence[Action], flavor: Flavor, cwd: str | None = None, transcript: str = "") -> Answer:
    """The model's reply for one turn of scenario actions in the given CLI's terms.

    `cwd` (the working directory the CLI's system prompt states) makes paths absolute for the
    CLIs whose file tools ask for absolute paths. `transcript` is what Aider sent: the files in
    its chat, which an edit in its whole-file format needs.
    """
    if cwd and flavor in (Flavor.CLAUDE, Flavor.OPENCODE, Flavor.GEMINI):
        actions = [_absolute(a, cwd) for a in actions]
    if flavor in (Flavor.AIDER_WHOLE, Flavor.AIDER_DIFF):
        return Answer(text=_aider_text(actions, flavor, transcript))
    calls: list[ToolCall] = []
    texts: list[str] = []
    for action in actions:
        if isinstance(action, Text):
            texts.append(action.message)
            continue
        call = _tool_call(action, flavor)
        if call is None:
            texts.append(f"(no tool to {type(action).__name__.lower()} here)")
        else:
            calls.extend(call)
    return Answer(tuple(calls), "\n".join(texts))


def _absolute(action: Action, cwd: str) -> Action:
    if isinstance(action, Write | Edit) and not action.path.startswith("/"):
        return replace(action, path=f"{cwd.rstrip('/')}/{action.path}")
    return action


def _tool_call(action: Write | Edit | Run | Call, flavor: Flavor) -> list[ToolCall] | None:
    if isinstance(action, Call):
        return [ToolCall(action.tool, dict(action.args))]
    if flavor is Flavor.CLAUDE:
        if isinstance(action, Write):
            return [ToolCall("Write", {"file_path": action.path, "content": action.content})]
        if isinstance(action, Edit):
            # Claude Code refuses to edit a file it has not read in this session.
            return [ToolCall("Read", {"file_path": action.path}),
                    ToolCall("Edit", {"file_path": action.path, "old_string": action.old,
                                      "new_string": action.new})]
        return [ToolCall("Bash", {"command": action.command, "description": "scripted command"})]
    if flavor is Flavor.CODEX:
        if isinstance(action, Write):
            return [ToolCall("exec_command", {"cmd": _shell_write(action.path, action.content)})]
        if isinstance(action, Edit):
            return [ToolCall("exec_command", {"cmd": _shell_edit(action)})]
        return [ToolCall("exec_command", {"cmd": action.command})]
    if flavor is Flavor.CODEX_CODE_MODE:
        if isinstance(action, Write):
            command = _shell_write(action.path, action.content)
        else:
            command = _shell_edit(action) if isinstance(action, Edit) else action.command
        # The nested exec_command tool runs the command; its result is handed back as the cell's text.
        script = f"const result = await tools.exec_command({json.dumps({'cmd': command})});\ntext(result);\n"
        return [ToolCall("exec", {}, custom=script)]
    if flavor is Flavor.GEMINI:
        if isinstance(action, Write):
            return [ToolCall("write_file", {"file_path": action.path, "content": action.content})]
        if isinstance(action, Edit):
            return [ToolCall("replace", {"file_path": action.path, "old_string": action.old,
                                         "new_string": action.new, "instruction": "scripted edit"})]
        return [ToolCall("run_shell_command", {"command": action.command, "description": "scripted command"})]
    if flavor is Flavor.OPENCODE:
        if isinstance(action, Write):
            return [ToolCall("write", {"filePath": action.path, "content": action.content})]
        if isinstance(action, Edit):
            return [ToolCall("edit", {"filePath": action.path, "oldString": action.old, "newString": action.new})]
        return [ToolCall("bash", {"command": action.command, "description": "scripted command"})]
    return None
