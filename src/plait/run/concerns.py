"""Integration concerns (seed 004): where one task's stated assumption about an interface (its context's
`contract_assumptions`, from `ASSUMES:` lines) meets what another task `provides` (`PROVIDES:` lines).
plait marks each by comparing the statements; an integration-verifier agent, when the project has one, then
reads the integrated code and marks them again (plait.run.resolve.check_concerns)."""

from __future__ import annotations

import fnmatch
import re

from plait.journal import ALIGNED, NOT_ALIGNED, UNKNOWN

TYPE_CHECKING = False  # typing costs a status read more than this module; mypy treats this as True
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any


_TICKED = re.compile(r"`([^`\n]{1,500})`")


def interface(statement: str) -> str:
    """The interface an `ASSUMES:`/`PROVIDES:` statement names: its first `backticked` text, else its first
    word; whitespace collapsed, trailing punctuation dropped."""
    found = _TICKED.search(statement)
    name = found.group(1) if found else (statement.split() or [""])[0]
    return " ".join(name.split()).rstrip(".,;:")


def subject(name: str) -> str:
    """What an interface is about, without its signature: `greet(name) -> str` -> `greet`."""
    return name.split("(", 1)[0].strip()


def _path_of(subj: str) -> str:
    return subj.split(":", 1)[0]  # `src/a.py:greet` -> `src/a.py`


def _touches(path: str, files: Iterable[str]) -> bool:
    return any(f == path or fnmatch.fnmatchcase(path, f) for f in files)


def concerns(docs: Mapping[str, Mapping[str, Any]], contracts: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """Where one task's `contract_assumptions` meet what another task `provides` (docs: task id -> its
    context.json; contracts: (path, owner)). A provider stating the very interface assumed is `aligned`;
    one stating the same subject with a different interface (another signature) is `not aligned`; an
    assumption no task states it provides is `unknown` (naming the task that changed or owns its path, if
    one did). A deterministic check of the agents' own words, not of the code."""
    provided = {tid: [(p, interface(p)) for p in doc.get("provides") or []] for tid, doc in docs.items()}
    out: list[dict[str, Any]] = []
    for tid, doc in docs.items():
        for assumption in doc.get("contract_assumptions") or []:
            name = interface(assumption)
            subj = subject(name)
            base = {"concern": f"{tid} assumes {name}", "assumer": tid, "assumption": assumption,
                    "interface": name}
            matches = [(other, text, iface) for other, items in provided.items() if other != tid
                       for text, iface in items if subject(iface) == subj]
            for other, text, iface in matches:
                same = iface == name
                out.append({**base, "provider": other, "provided": text,
                            "status": ALIGNED if same else NOT_ALIGNED,
                            "reason": f"{other} provides {iface}" if same
                            else f"{other} provides {iface}, not {name}"})
            if matches:
                continue
            path = _path_of(subj)
            near = [other for other, d in docs.items()
                    if other != tid and _touches(path, d.get("files_modified") or [])]
            near += [owner for cpath, owner in contracts
                     if owner != tid and owner not in near and _touches(path, [cpath])]
            for other in near:
                out.append({**base, "provider": other, "provided": None, "status": UNKNOWN,
                            "reason": f"{other} changed or owns {path} but states no PROVIDES for {subj}"})
            if not near:
                out.append({**base, "provider": None, "provided": None, "status": UNKNOWN,
                            "reason": f"no other task states that it provides {subj}"})
    return out
