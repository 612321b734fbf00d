"""Agent profiles: named agent configurations from `plait.toml` ([profiles.NAME]) or pyproject.toml
([tool.plait.profiles.NAME]), on top of built-ins that always exist.

    [profiles.fast]
    adapter = "claude"          # which adapter runs it (defaults to the name when that is an adapter)
    model = "sonnet"
    args = ["--effort", "low"]  # extra CLI arguments, appended
    permission = "edit"         # read-only | edit | full
    env = ["MY_TOKEN"]          # variables passed to the agent, on top of the adapter's own keys
    concurrency = 2
    timeout = "30m"             # like plan durations: 30s, 90m, 1.5h, or a number of minutes
    max_turns = 40
    max_cost = 2.5              # dollars, for CLIs that enforce a budget (Claude Code)
    sandbox = "auto"            # auto | landlock | off: kernel-enforced write confinement (docs/security.md)

    [workspaces]
    root = "~/.cache/plait/workspaces"   # where task workspaces are made (default shown)
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from plait.agents.base import Permission, Profile, SandboxMode
from plait.errors import Location, PlaitError
from plait.plan.model import parse_duration

# The variables each adapter's CLI reads for its credentials and endpoint: passed by name.
ADAPTER_ENV: dict[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
               "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "AWS_REGION", "AWS_PROFILE"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
               "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"),
    "opencode": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
    "aider": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"),
    "cursor": ("CURSOR_API_KEY",),
    "script": (),
    "shell": (),
}
# Always passed: what any program needs to run, and nothing secret.
SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TERM",
            "TMPDIR", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE")
BUILTIN_ADAPTERS = tuple(ADAPTER_ENV)


def auth_hint(profile: Profile) -> str:
    """What to do when a profile's agent has no working credentials: the variables plait passes it."""
    keys = [v for v in ADAPTER_ENV.get(profile.adapter, ()) if v.endswith(("_API_KEY", "_AUTH_TOKEN"))]
    if not keys:
        return f"check the credentials of profile {profile.name!r} (docs/agents.md)"
    wanted = " or ".join(keys[:3])
    return (f"set {wanted} in the environment plait runs in: profile {profile.name!r} passes it to the agent "
            "(agents have a home of their own, so a CLI's interactive login is not seen)")

_KEYS = {"adapter", "model", "args", "permission", "env", "concurrency", "timeout", "max_turns", "max_cost",
         "command", "binary", "sandbox", "stall"}


def builtin_profiles() -> dict[str, Profile]:
    """One profile per adapter, named after it, with the adapter's defaults."""
    return {name: Profile(name=name, adapter=name, env_allow=ADAPTER_ENV[name]) for name in BUILTIN_ADAPTERS}


def load_profiles(repo_root: Path) -> dict[str, Profile]:
    """The built-in profiles, overridden and extended by the repository's configuration."""
    profiles = builtin_profiles()
    source, tables = _read_tables(repo_root)
    for name, table in tables.items():
        profiles[name] = _profile(name, table, source)
    return profiles


def _read_tables(repo_root: Path) -> tuple[Path, dict[str, Any]]:
    plait_toml, pyproject = repo_root / "plait.toml", repo_root / "pyproject.toml"
    if plait_toml.is_file():
        return plait_toml, _tables(plait_toml, _parse(plait_toml).get("profiles", {}), "profiles")
    if pyproject.is_file():
        section = _parse(pyproject).get("tool", {}).get("plait", {})
        return pyproject, _tables(pyproject, section.get("profiles", {}) if isinstance(section, dict) else {},
                                  "tool.plait.profiles")
    return plait_toml, {}


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PlaitError(f"not valid TOML: {exc}", "fix the syntax at the line shown", Location(str(path))) from exc
    except OSError as exc:
        raise PlaitError(f"cannot read it: {exc.strerror}", "check the file's permissions",
                         Location(str(path))) from exc


def _tables(path: Path, value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise PlaitError(f"[{where}] must hold one table per profile", f"write [{where}.NAME] tables",
                         Location(str(path)))
    return value


def _profile(name: str, table: dict[str, Any], source: Path) -> Profile:
    where = Location(str(source))
    prefix = "tool.plait.profiles" if source.name == "pyproject.toml" else "profiles"

    def bad(key: str, problem: str, fix: str) -> PlaitError:
        return PlaitError(f"[{prefix}.{name}] {key}: {problem}", fix, where)

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise bad(unknown[0], "unknown key", f"use one of {', '.join(sorted(_KEYS))}")
    adapter = table.get("adapter", name if name in BUILTIN_ADAPTERS else None)
    from plait.agents.registry import adapters

    known = sorted(set(adapters()) | set(BUILTIN_ADAPTERS))
    if not isinstance(adapter, str) or adapter not in known:
        raise bad("adapter", f"{adapter!r} is not an adapter" if adapter else "missing",
                  f"set adapter to one of {', '.join(known)}")
    profile = Profile(name=name, adapter=adapter, env_allow=ADAPTER_ENV.get(adapter, ()))
    for key, value in table.items():
        try:
            profile = _apply(profile, key, value)
        except (TypeError, ValueError) as exc:
            raise bad(key, str(exc), _FIXES.get(key, "see docs/agents.md")) from None
    return profile


_FIXES = {
    "args": 'write a list of strings, e.g. args = ["--effort", "low"]',
    "env": 'write a list of variable names, e.g. env = ["MY_TOKEN", "AWS_*"]',
    "permission": 'write "read-only", "edit" or "full"',
    "timeout": 'write e.g. "30s", "45m", "1.5h" or a number of minutes',
    "concurrency": "write a whole number of at least 1",
    "max_turns": "write a whole number of at least 1",
    "max_cost": "write a number of dollars, e.g. 2.5",
    "sandbox": 'write "auto", "landlock" or "off"',
}


def _apply(profile: Profile, key: str, value: Any) -> Profile:
    if key == "adapter":
        return profile
    if key in ("model", "command", "binary"):
        if not isinstance(value, str) or not value:
            raise TypeError("must be a non-empty string")
        if key == "model":
            return replace(profile, model=value)
        return replace(profile, command=value) if key == "command" else replace(profile, binary=value)
    if key in ("args", "env"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError("must be a list of strings")
        if key == "args":
            return replace(profile, extra_args=tuple(value))
        return replace(profile, env_allow=tuple(dict.fromkeys((*profile.env_allow, *value))))
    if key == "permission":
        try:
            return replace(profile, permission=Permission(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a permission level") from None
    if key == "timeout":
        return replace(profile, timeout=parse_duration(value))
    if key == "stall":  # a duration; 0 turns the stall detector off
        return replace(profile, stall=parse_duration(value) or None)
    if key == "sandbox":
        try:
            return replace(profile, sandbox=SandboxMode(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a sandbox mode") from None
    if key == "max_cost":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{value!r} is not a positive amount")
        return replace(profile, max_cost=float(value))
    # concurrency, max_turns
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a whole number of at least 1")
    return replace(profile, concurrency=value) if key == "concurrency" else replace(profile, max_turns=value)


def env_for(profile: Profile, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment an agent of `profile` gets: the safe base plus the names it allows.

    Names may end in `*` to allow a prefix (`AWS_*`). Nothing else from `environ` gets through.
    """
    patterns = (*SAFE_ENV, *profile.env_allow)
    return {key: value for key, value in environ.items()
            if any(key == p or (p.endswith("*") and fnmatch.fnmatchcase(key, p)) for p in patterns)}


def workspace_root(repo_root: Path, environ: Mapping[str, str]) -> Path | None:
    """Where workspaces go, if configured: $PLAIT_WORKSPACES, else `[workspaces] root` in plait.toml
    (`~` expanded, relative to the repository). None: the default (see plait.git.workspace)."""
    given = environ.get("PLAIT_WORKSPACES")
    source = repo_root / "plait.toml"
    if not given and source.is_file():
        table = _parse(source).get("workspaces", {})
        value = table.get("root") if isinstance(table, dict) else None
        if value is not None and (not isinstance(value, str) or not value):
            raise PlaitError("[workspaces] root: must be a non-empty string", 'write e.g. root = "/var/tmp/plait"',
                             Location(str(source)))
        given = value
    if not given:
        return None
    return (repo_root / Path(given).expanduser()).absolute()
