"""Small DAG helpers over `{node: [dependencies]}` maps: stable topological order, named cycles,
levels and longest paths. Pure functions; the plan's order breaks ties so results are stable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as `[a, b, c, a]` (a needs b needs c needs a), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in needs.get(node, ()):
            if dep not in needs:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in needs:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Dependencies before dependents; among ready nodes, the original order. Assumes a DAG."""
    remaining = {n: {d for d in deps if d in needs} for n, deps in needs.items()}
    order: list[str] = []
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps]
        if not ready:
            raise ValueError(f"cycle: {' -> '.join(find_cycle(needs) or [])}")
        for n in ready:
            del remaining[n]
        for deps in remaining.values():
            deps.difference_update(ready)
        order.extend(ready)
    return order


def dependents(needs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in needs}
    for node, deps in needs.items():
        for dep in deps:
            if dep in out:
                out[dep].append(node)
    return out


def levels(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Depth of each node: 0 for roots, else 1 + the deepest dependency (the seeds' 'phases')."""
    level: dict[str, int] = {}
    for node in topological_order(needs):
        level[node] = 1 + max((level[d] for d in needs[node] if d in level), default=-1)
    return level


def bottom_levels(needs: Mapping[str, Sequence[str]], weight: Mapping[str, float]) -> dict[str, float]:
    """Longest weighted path from each node to an exit, including the node itself."""
    below = dependents(needs)
    out: dict[str, float] = {}
    for node in reversed(topological_order(needs)):
        out[node] = weight[node] + max((out[d] for d in below[node]), default=0.0)
    return out


def critical_path(needs: Mapping[str, Sequence[str]], weight: Mapping[str, float]) -> list[str]:
    """The longest weighted chain, from a root to an exit."""
    if not needs:
        return []
    bottom = bottom_levels(needs, weight)
    below = dependents(needs)
    roots = [n for n in needs if not any(d in needs for d in needs[n])]
    node = max(roots, key=lambda n: bottom[n])
    path = [node]
    while below[node]:
        node = max(below[node], key=lambda n: bottom[n])
        path.append(node)
    return path
