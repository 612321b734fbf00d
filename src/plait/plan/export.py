"""A loaded plan as canonical plait YAML: what `plait import` writes.

Each dependency the source format implies rather than states (a phase's order, a spec-kit task's listed
order, a ccpm conflict) carries a comment saying why, so a reader sees which edges to question.
"""

from __future__ import annotations

from typing import Any

import yaml

from plait.plan.load import LoadedPlan
from plait.plan.model import parse_duration

_ORDER = ("id", "title", "role", "agent", "repo", "size", "estimate", "needs", "files", "reads", "verify",
          "acceptance", "gate", "timeout", "allow_empty", "allow_deletions", "script", "prompt")


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110,
                     default_flow_style=False)


def _duration(value: float | str) -> str:
    """Seconds (or plait's `14400s`) -> `4h`, `90m` or `45s`, whichever is exact (it loads back the same)."""
    seconds = parse_duration(value) if isinstance(value, str) else value
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size) * size == seconds and (seconds / size) % 0.25 == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def to_yaml(loaded: LoadedPlan, source: str | None = None) -> str:
    """The plan as YAML that `load_plan` reads back to the same plan."""
    raw = loaded.plan.model_dump(mode="python", exclude_defaults=True)
    for task in raw["tasks"]:  # enums as their text
        if "size" in task:
            task["size"] = str(task["size"].value if hasattr(task["size"], "value") else task["size"])
    out = [f"# Imported by `plait import` from {source or loaded.path} ({loaded.format}).",
           "# `# implied:` marks a dependency the source did not state; remove it only if the work allows.", ""]
    top = {key: value for key, value in raw.items() if key != "tasks"}
    for key in ("defaults",):
        if isinstance(top.get(key), dict):
            top[key] = {k: _duration(v) if k == "timeout" else v for k, v in top[key].items()}
    out.append(_dump(top).rstrip())
    out.append("tasks:")
    for task in raw["tasks"]:
        out += _task_lines(task, loaded.inferred.get(task["id"], {}))
    return "\n".join(out) + "\n"


def _task_lines(task: dict[str, Any], inferred: Any) -> list[str]:
    fields = {key: task[key] for key in _ORDER if key in task}
    fields |= {key: value for key, value in task.items() if key not in fields}
    for key in ("estimate", "timeout"):
        if key in fields and isinstance(fields[key], float | str):
            fields[key] = _duration(fields[key])
    if "script" in fields and isinstance(fields["script"], dict) and "delay" in fields["script"]:
        fields["script"]["delay"] = _duration(fields["script"]["delay"])
    lines: list[str] = []
    for key, value in fields.items():
        if key == "needs":
            lines.append("needs:")
            for need in value:
                why = inferred.get(need)
                comment = f"  # implied: {why}" if why else ""
                lines.append(f"  - {_dump(need).splitlines()[0]}{comment}")
        else:
            lines += _dump({key: value}).rstrip("\n").splitlines()
    return [("  - " if i == 0 else "    ") + line for i, line in enumerate(lines)]
