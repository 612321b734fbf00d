"""Record the real CLIs' output against the scripted server, for the parser tests.

    .venv/bin/python tests/agents/record_streams.py [CLI ...]

Writes tests/agents/streams/<cli>/<case>.jsonl (Aider: <case>.txt, plain text) and
<case>.meta.json: the exit code, the stderr tail, the worktree path and what the adapter made of
the run at recording time. Re-run it after changing a pinned CLI version.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from agentkit import STREAMS, run_cli

from plait.testing import ModelServer, Scenario, edit, fail, run, text, write

SUCCESS = Scenario([write("notes/hello.txt", "hello from the scripted model\n"),
                    edit("README.md", "line two", "line 2"), run("echo ran > ran.txt"), text("All done.")])
TWO_WRITES = Scenario([write("a.txt", "a\n"), write("b.txt", "b\n")])

# case -> (scenario, options); every CLI records the common cases, some have their own.
COMMON: dict[str, tuple[Scenario, dict[str, Any]]] = {
    "success": (SUCCESS, {}),
    "rate_limit": (Scenario([fail(429)]), {}),
    "overloaded": (Scenario([fail(529)]), {}),
    "auth": (Scenario([fail(401)]), {}),
    "context_length": (Scenario([fail(400)]), {}),
}
EXTRA: dict[str, dict[str, tuple[Scenario, dict[str, Any]]]] = {
    "claude": {"max_turns": (TWO_WRITES, {"max_turns": 1}), "budget": (TWO_WRITES, {"max_cost": 0.01})},
    "codex": {"success_function_tools": (SUCCESS, {"model": "gpt-5"})},
    "gemini": {"max_turns": (TWO_WRITES, {"max_turns": 1})},
    "opencode": {},
    # Aider retries a rate limit for about a minute: recorded as the adapter sees it, stopped by its timeout.
    "aider": {"rate_limit": (Scenario([fail(429)]), {"timeout": 6}),
              "overloaded": (Scenario([fail(529)]), {"timeout": 6})},
}


def record(cli: str) -> None:
    folder = STREAMS / cli
    folder.mkdir(parents=True, exist_ok=True)
    for case, (scenario, options) in {**COMMON, **EXTRA[cli]}.items():
        root = Path(tempfile.mkdtemp(prefix=f"record-{cli}-"))
        with ModelServer() as server:
            outcome = run_cli(cli, root, server, scenario, **options)
        stream = outcome.log_dir / ("agent.stdout" if cli == "aider" else "agent.jsonl")
        target = folder / f"{case}.{'txt' if cli == 'aider' else 'jsonl'}"
        shutil.copyfile(stream, target)
        stderr = (outcome.log_dir / "agent.stderr").read_text(errors="replace")[-2000:]
        result = asdict(outcome.result)
        result["error_kind"] = outcome.result.error_kind.value if outcome.result.error_kind else None
        result.pop("duration")
        meta = {"exit_code": outcome.result.exit_code, "stderr": stderr, "worktree": str(outcome.worktree),
                "options": {k: v for k, v in options.items()}, "result": result}
        (folder / f"{case}.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{cli} {case}: ok={outcome.result.ok} kind={result['error_kind']} -> {target.name}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["claude", "codex", "gemini", "opencode", "aider"]:
        record(name)
