"""Role prompts: what each kind of agent is asked to be (seeds 000 and 002).

A role is a markdown text that opens an agent's prompt. plait ships one per role; a project overrides any
of them with `.plait/roles/<name>.md` in its repository. Which agent profile plays a role is configured
separately (a task's `agent`, else a profile named after its `role`, else the plan default).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from plait.errors import Location, PlaitError

ROLES = ("spec-writer", "planner", "software-engineer", "sdet", "security-engineer", "reviewer", "fixer",
         "resolver", "integration-engineer", "integration-verifier")
OVERRIDE_DIR = Path(".plait") / "roles"
MAX_ROLE_BYTES = 64 * 1024


def builtin(name: str) -> str:
    """The role text plait ships."""
    if name not in ROLES:
        raise KeyError(name)
    return resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")


def role_text(name: str, repo_root: Path | None = None) -> str:
    """The role's text: the project's `.plait/roles/<name>.md` when it exists, else plait's own. A role
    plait does not ship is allowed when the project defines it (a custom role)."""
    if repo_root is not None:
        path = repo_root / OVERRIDE_DIR / f"{name}.md"
        if path.is_file():
            try:
                raw = path.read_bytes()[: MAX_ROLE_BYTES + 1]
                if len(raw) > MAX_ROLE_BYTES:
                    raise PlaitError(f"role file is over {MAX_ROLE_BYTES // 1024} KB", "shorten it",
                                     Location(str(path)))
                return raw.decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PlaitError(f"role file cannot be read: {exc}", "save it as UTF-8 text",
                                 Location(str(path))) from None
    if name not in ROLES:
        known = ", ".join(ROLES)
        raise PlaitError(f"unknown role {name!r}", f"use one of {known}, or write {OVERRIDE_DIR}/{name}.md",
                         Location(str(repo_root or ".")))
    return builtin(name)
