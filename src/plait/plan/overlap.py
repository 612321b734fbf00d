"""Which of a plan's declared scopes (paths, directories, globs) can name the same file, all at once.

The relation is `analyze.patterns_overlap`: after dropping trailing slashes two scopes overlap when they
are equal, when one is a directory holding the other (`src` and `src/a.py`), or when one matches the other
as an `fnmatch` glob (`*` also crosses `/`). Trying every pair was quadratic (20 tasks declaring 7,300
files took 17 s), so: equal scopes share a dict entry; directories come from a trie of path components;
each distinct glob is compiled once and tried only against the scopes that begin with its literal head
(`src/api/` of `src/api/*.py`) or end with its literal tail (`.py`), whichever are fewer, found by bisection
in sorted lists. Globs with neither (`*x*`) are tried against everything, within a budget of
`MAX_GLOB_TRIES`; the globs left over are reported rather than tried.
"""

from __future__ import annotations

import fnmatch
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_GLOB_TRIES = 2_000_000
_GLOB = re.compile(r"[*?\[]")


def scope(entry: str) -> str:
    """A declared entry as the relation compares it (`src/` and `src` are one scope)."""
    return entry.rstrip("/")


@dataclass(frozen=True)
class Overlaps:
    related: dict[str, set[str]]  # scope -> the other scopes it overlaps
    untried: tuple[str, ...] = ()  # globs over the budget, not compared with anything

    def of(self, key: str) -> tuple[str, ...]:
        """The scopes overlapping `key`, itself included."""
        return (key, *self.related.get(key, ()))


def overlaps(scopes: Iterable[str]) -> Overlaps:
    """Every overlapping pair among distinct `scopes` (already normalized by `scope`)."""
    unique = sorted(set(scopes))
    related: dict[str, set[str]] = {}

    def link(a: str, b: str) -> None:
        if a != b:
            related.setdefault(a, set()).add(b)
            related.setdefault(b, set()).add(a)

    for directory, inside in _directories(unique):
        link(directory, inside)
    forward, backward = _Sorted(unique), _Sorted([s[::-1] for s in unique])
    candidates: list[tuple[int, str, _Sorted, range]] = []
    for glob in filter(_GLOB.search, unique):
        head, tail = _literal_ends(glob)
        by_head, by_tail = forward.starting(head), backward.starting(tail[::-1])
        candidates.append((len(by_head), glob, forward, by_head) if len(by_head) <= len(by_tail)
                          else (len(by_tail), glob, backward, by_tail))
    budget, untried = MAX_GLOB_TRIES, []
    for cost, glob, side, positions in sorted(candidates, key=lambda c: c[:2]):  # cheapest first
        if cost > budget:
            untried.append(glob)
            continue
        budget -= cost
        match = re.compile(fnmatch.translate(glob)).match  # what fnmatch.fnmatchcase does, compiled once
        for i in positions:
            name = side.words[i][::-1] if side is backward else side.words[i]
            if match(name):
                link(glob, name)
    return Overlaps(related, tuple(sorted(untried)))


def _literal_ends(glob: str) -> tuple[str, str]:
    """The text before a glob's first wildcard and after its last: every match starts and ends with them."""
    first = _GLOB.search(glob)
    last = max(glob.rfind(c) for c in "*?[]")
    return glob[: first.start() if first else len(glob)], glob[last + 1 :]


class _Sorted:
    def __init__(self, words: list[str]) -> None:
        self.words = sorted(words)

    def starting(self, prefix: str) -> range:
        """The positions of the words that start with `prefix`."""
        lo = bisect_left(self.words, prefix)
        hi = bisect_right(self.words, prefix, lo, key=lambda w: w[: len(prefix)])
        return range(lo, hi)


def _directories(scopes: list[str]) -> Iterator[tuple[str, str]]:
    """(directory, scope inside it) for every two scopes where `inside` starts with `directory + "/"`."""
    trie: dict[str | None, Any] = {}
    for s in scopes:
        node = trie
        for part in s.split("/"):
            node = node.setdefault(part, {})
        node[None] = s
    for s in scopes:
        node = trie
        for part in s.split("/")[:-1]:
            node = node[part]
            if None in node:
                yield node[None], s
