"""Generated plans round-trip through `plait import` to YAML and back to the same DAG.

spectacular plans are checked against an oracle written from the format's rules, not from plait's code:
what runs before what is the closure of the stated dependencies, the phase order and each sequential
phase's order (with `--relax-phases`, of the stated dependencies alone).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import test_format_ccpm as ccpm
import test_format_speckit as speckit
import test_format_taskmaster as taskmaster
from plait.commands.check import import_plan
from plait.plan.load import load_plan

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
STYLES = ("Task {id}", "{dashed}", "task-{dashed}", "task-{dashed}-some-slug", "[task-{dashed}]", '"task-{id}"')


@dataclass(frozen=True)
class Spec:
    """A phased plan: phases of (strategy, task count); stated deps per task (None: no field)."""

    phases: list[tuple[str, int]]
    stated: dict[str, list[str] | None]
    styles: dict[str, int]

    def ids(self) -> list[tuple[int, str]]:
        return [(p, f"{p + 1}.{i + 1}") for p, (_, n) in enumerate(self.phases) for i in range(n)]


@st.composite
def phased_plans(draw: st.DrawFn, always_state: bool = False) -> Spec:
    phases = draw(st.lists(st.tuples(st.sampled_from(["parallel", "sequential"]), st.integers(1, 4)),
                           min_size=1, max_size=4))
    spec = Spec(phases, {}, {})
    ids = spec.ids()
    for k, (_phase, task) in enumerate(ids):
        earlier = [t for _, t in ids[:k]]
        state = always_state or draw(st.booleans())
        spec.stated[task] = sorted(draw(st.sets(st.sampled_from(earlier)))) if state and earlier else (
            [] if state else None)
        spec.styles[task] = draw(st.integers(0, len(STYLES) - 1))
    return spec


def markdown(spec: Spec) -> str:
    lines = ["# Feature: Generated - Implementation Plan", ""]
    ids = spec.ids()
    for p, (strategy, _) in enumerate(spec.phases):
        lines += [f"## Phase {p + 1}: Part {p + 1}", "", f"**Strategy**: {strategy}", ""]
        for phase, task in ids:
            if phase != p:
                continue
            lines += [f"### Task {task}: Work {task}", "", "**Files**:", f"- `src/t{task.replace('.', '_')}.py`",
                      "", "**Complexity**: M (3h)", ""]
            deps = spec.stated[task]
            if deps is not None:
                style = STYLES[spec.styles[task]]
                text = ", ".join(style.format(id=d, dashed=d.replace(".", "-")) for d in deps) or "None"
                lines += [f"**Dependencies**: {text}", ""]
            lines += ["Do the work.", ""]
    return "\n".join(lines)


def closure(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    reach: dict[str, set[str]] = {}
    for task in edges:  # ids are listed in an order where every edge points back
        reach[task] = set()
        for need in edges[task]:
            reach[task] |= {need} | reach[need]
    return reach


def oracle(spec: Spec, relax: bool) -> dict[str, set[str]]:
    """What must run before what, from the format's rules."""
    ids = spec.ids()
    edges: dict[str, set[str]] = {t: set(spec.stated[t] or []) for _, t in ids}
    for k, (phase, task) in enumerate(ids):
        if relax and spec.stated[task] is not None:
            continue
        for other_phase, other in ids[:k]:
            if other_phase < phase:
                edges[task].add(other)
        same = [t for p, t in ids[:k] if p == phase]
        if spec.phases[phase][0] == "sequential" and same:
            edges[task].add(same[-1])
    return closure(edges)


def actual(path: Path, relax: bool = False) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    plan = load_plan(path, relax_phases=relax).plan
    needs = {t.id: list(t.needs) for t in plan.tasks}
    return closure({t: set(n) for t, n in needs.items()}), needs


def imported(source: Path, relax: bool = False) -> Path:
    """`plait import SOURCE -o OUT`, in this process (the command line itself is tested below)."""
    out = source.with_suffix(".imported.yaml")
    import_plan(source, out, True, relax)
    return out


def test_import_writes_a_file_and_never_replaces_one_unasked(tmp_path: Path) -> None:
    source = Path(__file__).parent / "fixtures" / "plans" / "spectacular" / "phases.md"
    out = tmp_path / "plan.yaml"
    command = [sys.executable, "-m", "plait", "import", str(source), "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
    assert "wrote" in done.stderr and "5 implied dependencies" in done.stderr
    assert load_plan(out).plan == load_plan(source).plan
    out.write_text("mine")
    again = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert again.returncode == 1 and out.read_text() == "mine"
    assert again.stderr.startswith(f"plait: error: {out}: {out} already exists — ") and "--force" in again.stderr


@SETTINGS
@given(spec=phased_plans())
def test_spectacular_plans_keep_their_order(tmp_path_factory: object, spec: Spec) -> None:
    path = Path(tmp_path_factory.mktemp("md")) / "plan.md"  # type: ignore[attr-defined]
    path.write_text(markdown(spec))
    reach, needs = actual(path)
    assert reach == oracle(spec, relax=False)
    for task, deps in spec.stated.items():
        assert set(deps or []) <= set(needs[task])  # stated dependencies are edges, never dropped


@SETTINGS
@given(spec=phased_plans(always_state=True))
def test_relaxed_spectacular_plans_keep_only_stated_dependencies(tmp_path_factory: object, spec: Spec) -> None:
    path = Path(tmp_path_factory.mktemp("md")) / "plan.md"  # type: ignore[attr-defined]
    path.write_text(markdown(spec))
    reach, needs = actual(path, relax=True)
    assert {t: sorted(n) for t, n in needs.items()} == {t: sorted(d or []) for t, d in spec.stated.items()}
    assert reach == oracle(spec, relax=True)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=phased_plans(), relax=st.booleans())
def test_spectacular_plans_round_trip_through_import(tmp_path_factory: object, spec: Spec, relax: bool) -> None:
    path = Path(tmp_path_factory.mktemp("md")) / "plan.md"  # type: ignore[attr-defined]
    path.write_text(markdown(spec))
    yaml_path = imported(path, relax)
    assert load_plan(yaml_path).plan == load_plan(path, relax_phases=relax).plan
    text = yaml_path.read_text()
    assert text.count("  # implied:") == sum(len(v) for v in load_plan(path, relax_phases=relax).inferred.values())


ROUND_TRIP = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def same_dag_through_import(source: Path, want: dict[str, list[str]], relax: bool = False) -> None:
    """SOURCE loads to `want`, and its imported YAML loads back to the same plan and the same DAG."""
    loaded = load_plan(source, relax_phases=relax)
    assert {t.id: sorted(t.needs) for t in loaded.plan.tasks} == {t: sorted(n) for t, n in want.items()}
    again = load_plan(imported(source, relax))
    assert again.plan == loaded.plan
    assert again.format == "yaml"


@ROUND_TRIP
@given(data=st.data())
def test_taskmaster_plans_round_trip_through_import(tmp_path_factory: object, data: st.DataObject) -> None:
    tasks = data.draw(taskmaster.plans())
    want, _ = taskmaster.expected(tasks)
    if not want:
        return  # every task done: nothing to import (tested in test_format_taskmaster)
    path = Path(tmp_path_factory.mktemp("tm")) / "tasks.json"  # type: ignore[attr-defined]
    path.write_text(taskmaster.render(tasks, 2))
    same_dag_through_import(path, want)


@ROUND_TRIP
@given(data=st.data(), relax=st.booleans())
def test_speckit_plans_round_trip_through_import(tmp_path_factory: object, data: st.DataObject,
                                                 relax: bool) -> None:
    tasks = data.draw(speckit.plans())
    want, _ = speckit.expected(tasks, relax)
    if not want:
        return
    path = Path(tmp_path_factory.mktemp("sk")) / "tasks.md"  # type: ignore[attr-defined]
    path.write_text(speckit.render(tasks))
    same_dag_through_import(path, want, relax)


@ROUND_TRIP
@given(epic=ccpm.epics())
def test_ccpm_epics_round_trip_through_import(tmp_path_factory: object,
                                             epic: tuple[list[str], list[dict[str, object]]]) -> None:
    ids, tasks = epic
    if all(t["closed"] for t in tasks):
        return  # nothing to import (tested in test_format_ccpm)
    folder = Path(tmp_path_factory.mktemp("epic"))  # type: ignore[attr-defined]
    ccpm.write_epic(folder, ids, tasks)
    want = {ids[i]: [ids[d] for d in deps] for i, deps in ccpm.expected_needs(tasks).items()}
    out = folder.parent / f"{folder.name}.yaml"
    import_plan(folder, out, True, False)
    loaded = load_plan(folder)
    assert {t.id: sorted(t.needs) for t in loaded.plan.tasks} == {t: sorted(n) for t, n in want.items()}
    assert load_plan(out).plan == loaded.plan
