"""Small DAG helpers over `{node: [dependencies]}` maps: stable topological order, named cycles,
levels and longest paths. Pure functions; the plan's order breaks ties so results are stable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as `[a, b, c, a]` (a needs b needs c needs a), or None.

    Iterative depth-first search, so a plan of thousands of chained tasks cannot hit Python's
    recursion limit."""
    done: set[str] = set()
    for root in needs:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        pending = [iter([d for d in needs[root] if d in needs])]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                pending.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if dep in on_path:
                return [*path[path.index(dep) :], dep]
            if dep not in done:
                path.append(dep)
                on_path.add(dep)
                pending.append(iter([d for d in needs[dep] if d in needs]))
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Dependencies before dependents: by level, and within a level in the original order. Assumes a DAG.

    Kahn's algorithm, O(n + e) plus sorting each level: rescanning every node per level was quadratic on
    a chain of thousands of tasks."""
    position = {n: i for i, n in enumerate(needs)}
    waiting: dict[str, int] = {}
    users: dict[str, list[str]] = {n: [] for n in needs}
    for node, deps in needs.items():
        known = {d for d in deps if d in needs}
        waiting[node] = len(known)
        for dep in known:
            users[dep].append(node)
    order: list[str] = []
    level = [n for n, count in waiting.items() if not count]
    while level:
        order.extend(level)
        unblocked = []
        for node in level:
            for user in users[node]:
                waiting[user] -= 1
                if not waiting[user]:
                    unblocked.append(user)
        level = sorted(unblocked, key=position.__getitem__)
    if len(order) < len(needs):
        raise ValueError(f"cycle: {' -> '.join(find_cycle(needs) or [])}")
    return order


def dependents(needs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in needs}
    for node, deps in needs.items():
        for dep in deps:
            if dep in out:
                out[dep].append(node)
    return out


def levels(needs: Mapping[str, Sequence[str]], order: Sequence[str] | None = None) -> dict[str, int]:
    """Depth of each node: 0 for roots, else 1 + the deepest dependency (the seeds' 'phases'); `order`: as for
    `bottom_levels`."""
    level: dict[str, int] = {}
    for node in order or topological_order(needs):
        level[node] = 1 + max((level[d] for d in needs[node] if d in level), default=-1)
    return level


def bottom_levels(needs: Mapping[str, Sequence[str]], weight: Mapping[str, float],
                  order: Sequence[str] | None = None) -> dict[str, float]:
    """Longest weighted path from each node to an exit, including the node itself (`order`: the nodes'
    topological order, when known)."""
    return _bottom_levels(needs, weight, dependents(needs), order or topological_order(needs))


def _bottom_levels(needs: Mapping[str, Sequence[str]], weight: Mapping[str, float],
                   below: Mapping[str, Sequence[str]], order: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for node in reversed(order):
        out[node] = weight[node] + max((out[d] for d in below[node]), default=0.0)
    return out


def critical_path(needs: Mapping[str, Sequence[str]], weight: Mapping[str, float],
                  order: Sequence[str] | None = None) -> list[str]:
    """The longest weighted chain, from a root to an exit (`order`: as for `bottom_levels`)."""
    if not needs:
        return []
    below = dependents(needs)
    bottom = _bottom_levels(needs, weight, below, order or topological_order(needs))
    roots = [n for n in needs if not any(d in needs for d in needs[n])]
    node = max(roots, key=bottom.__getitem__)
    path = [node]
    while below[node]:
        node = max(below[node], key=bottom.__getitem__)
        path.append(node)
    return path
