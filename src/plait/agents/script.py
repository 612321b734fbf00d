"""The built-in deterministic agents: `script` applies a task's declared edits, `shell` runs a
command template. No model, no network: the demo and the tests run real plans with them."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

from plait import proc
from plait.agents import cli_common as cli
from plait.agents.base import AgentRequest, AgentResult, ErrorKind


def _inside(worktree: Path, relative: str) -> Path:
    target = (worktree / relative).resolve()
    if not target.is_relative_to(worktree.resolve()):
        raise ValueError(f"{relative} is outside the worktree")
    return target


class ScriptAgent:
    """Writes, appends, replaces and deletes files, then runs commands, after an optional delay."""

    name = "script"

    def run(self, request: AgentRequest) -> AgentResult:
        start = time.monotonic()
        script = request.script
        if script is None:
            return AgentResult(True, 0, "no script: nothing to do", duration=0.0)
        # The delay stands for an agent's work: it ends at the task's timeout as an agent's would.
        if request.cancel.wait(min(script.delay, request.timeout)):
            return AgentResult(False, None, error_kind=ErrorKind.CANCELLED, error_message="cancelled",
                               duration=time.monotonic() - start)
        if script.delay > request.timeout:
            return AgentResult(False, None, error_kind=ErrorKind.TIMEOUT,
                               error_message=f"no result after {request.timeout:.0f}s (hard timeout; the script's "
                               f"delay is {script.delay:.0f}s)", duration=time.monotonic() - start)
        wt = request.worktree
        touched: list[str] = []
        try:
            for rel, content in script.write.items():
                path = _inside(wt, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                touched.append(rel)
            for rel, text in script.append.items():
                path = _inside(wt, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as f:
                    f.write(text)
                touched.append(rel)
            for rel, edits in script.replace.items():
                path = _inside(wt, rel)
                content = path.read_text()
                for old, new in edits.items():
                    if old not in content:
                        raise ValueError(f"{rel}: text to replace not found: {old[:60]!r}")
                    content = content.replace(old, new, 1)
                path.write_text(content)
                touched.append(rel)
            for rel in script.delete:
                _inside(wt, rel).unlink(missing_ok=True)
                touched.append(rel)
        except (OSError, ValueError) as exc:
            return AgentResult(False, 1, error_kind=ErrorKind.UNKNOWN, error_message=str(exc),
                               files_changed=tuple(touched), duration=time.monotonic() - start)
        blocked: list[str] = []
        for command in script.run:
            done = proc.run(command, shell=True, cwd=wt, env=request.env, timeout=request.timeout,
                            cancel=request.cancel, confine=request.confine,
                            stdout_path=request.log_dir / "agent.stdout", stderr_path=request.log_dir / "agent.stderr")
            blocked += cli.denials(done.stderr)
            if not done.ok:
                kind = ErrorKind.TIMEOUT if done.timed_out else ErrorKind.UNKNOWN
                return AgentResult(False, done.returncode, error_kind=kind,
                                   error_message=f"`{command}` exited {done.returncode}: {done.stderr[-300:]}",
                                   files_changed=tuple(touched), blocked=tuple(blocked),
                                   duration=time.monotonic() - start)
        if script.fail:
            return AgentResult(False, 1, error_kind=ErrorKind.UNKNOWN, error_message="script asked to fail",
                               files_changed=tuple(touched), blocked=tuple(blocked), duration=time.monotonic() - start)
        summary = f"edited {len(touched)} file(s): {', '.join(touched)}" if touched else "no edits"
        return AgentResult(True, 0, summary, files_changed=tuple(touched), blocked=tuple(blocked), turns=1,
                           duration=time.monotonic() - start)


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` of `values` replaced; every other brace is left as written (a
    command's own `awk '{print}'` or `${HOME}`), unlike str.format."""
    return re.sub(r"\{(" + "|".join(map(re.escape, values)) + r")\}", lambda m: values[m.group(1)], template)


class ShellAgent:
    """Runs the profile's command template in the worktree.

    The template may use {prompt_file}, {task_id}, {worktree}; the prompt is also on stdin.
    """

    name = "shell"

    def run(self, request: AgentRequest) -> AgentResult:
        template = request.profile.command
        if not template:
            return AgentResult(False, None, error_kind=ErrorKind.UNKNOWN,
                               error_message=f"profile {request.profile.name} has no `command`")
        prompt_file = request.log_dir / "prompt.md"
        prompt_file.write_text(request.prompt)
        command = fill(template, prompt_file=shlex.quote(str(prompt_file)), task_id=shlex.quote(request.task_id),
                       worktree=shlex.quote(str(request.worktree)))
        done = proc.run(command, shell=True, cwd=request.worktree, env=request.env, input=request.prompt,
                        timeout=request.timeout, cancel=request.cancel, confine=request.confine,
                        stdout_path=request.log_dir / "agent.stdout", stderr_path=request.log_dir / "agent.stderr")
        blocked = tuple(cli.denials(done.stderr))
        if request.cancel.is_set():
            return AgentResult(False, done.returncode, error_kind=ErrorKind.CANCELLED, error_message="cancelled",
                               duration=done.duration)
        if done.timed_out:
            return AgentResult(False, done.returncode, error_kind=ErrorKind.TIMEOUT,
                               error_message=f"no result after {request.timeout:.0f}s", duration=done.duration)
        if done.returncode != 0:
            # A signal death (negative code) is a crash worth retrying; a plain non-zero exit is not.
            kind = ErrorKind.CRASH if done.returncode < 0 else ErrorKind.UNKNOWN
            return AgentResult(False, done.returncode, error_kind=kind, blocked=blocked,
                               error_message=f"exited {done.returncode}: {done.stderr[-300:]}", duration=done.duration)
        return AgentResult(True, 0, done.stdout[-2000:].strip(), blocked=blocked, duration=done.duration)
