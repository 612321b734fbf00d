"""Plans from other tools and agents: absurd sizes are refused with one clear line, and the checks that
used to be quadratic (file overlaps, simulations, suggestions) give the same answers, fast.

No wall-clock budgets (tests share a busy machine): "does not hang" is a subprocess with a generous
timeout, so an exponential regression fails instead of stalling the suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from plait import graph
from plait.errors import Location
from plait.plan import limits, overlap
from plait.plan.analyze import agent_counts, analyze, findings, jobs_of, patterns_overlap
from plait.plan.model import Plan
from plait.plan.validate import PlanError, validate
from plait.schedule import simulate, simulate_barriers


def record(*keys: str | int) -> Location:
    """A locate() that records the path it was asked for in the location's path."""
    return Location("/".join(map(str, keys)) or "plan", 1, 1)


def plan_of(tasks: list[dict[str, Any]], **extra: Any) -> Plan:
    base = {"title": "t", "prompt": "p", "verify": "true"}
    return Plan.model_validate({"plait": 1, "name": "p", "tasks": [{**base, **t} for t in tasks], **extra})


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run `code` in a fresh interpreter; a hang fails the test after `timeout` seconds."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- limits: one located line each, with the limit and the fix ------------------------------------------


def lines(data: dict[str, Any]) -> list[str]:
    return [str(d) for d in limits.check_data(data, record)]


def test_a_plan_file_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(PlanError) as caught:
        limits.check_text("#" * (limits.MAX_PLAN_BYTES + 1), "plan.yaml")
    assert caught.value.lines() == ["plan.yaml: the plan file is 4.0 MiB, over the limit of 4 MiB — split it "
                                    "into several plans and run them one after another"]
    limits.check_text("#" * limits.MAX_PLAN_BYTES, "plan.yaml")


def test_too_many_tasks() -> None:
    assert lines({"tasks": [{}] * 10_001}) == ["tasks:1:1: the plan has 10,001 tasks, over the limit of 10,000 — "
                                               "split it into several plans and run them one after another"]
    assert lines({"tasks": [{}] * 10_000}) == []


def test_too_many_files_in_one_task_and_in_all() -> None:
    one = lines({"tasks": [{"files": ["a.py"] * 10_001}]})
    assert one == ["tasks/0/files:1:1: tasks[0].files: 10,001 items, over the limit of 10,000 in one list or "
                   "mapping — declare directories or globs (`src/api/`, `src/**/*.py`) instead of every file"]
    many = lines({"tasks": [{"files": ["a.py"] * 10_000}] * 10, "contracts": [{"path": "b"}]})
    assert many == ["tasks:1:1: the plan declares 100,001 files in all, over the limit of 100,000 — declare "
                    "directories or globs (`src/api/`, `src/**/*.py`) instead of every file, or split it into "
                    "several plans and run them one after another"]


def test_long_paths_and_long_text() -> None:
    found = lines({"tasks": [{"files": ["a" * 4097], "prompt": "p" * 1_000_001}],
                   "contracts": [{"path": "c" * 5000}]})
    assert found == [
        "tasks/0/files/0:1:1: tasks[0].files[0]: 4,097 characters, over the limit of 4,096 — write a repository "
        "path or glob",
    ]
    assert lines({"tasks": [{"files": ["a" * 4096], "prompt": "p" * 1_000_001}]}) == [
        "tasks/0/prompt:1:1: tasks[0].prompt: 1,000,001 characters, over the limit of 1,000,000 — shorten it: "
        "an agent's prompt is a few pages at most",
    ]
    assert lines({"tasks": [{"files": ["a" * 4096], "prompt": "p" * 1_000_000}]}) == []


def test_nesting_depth() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    (line,) = lines({"tasks": [{"extra": deep}]})
    assert line.startswith("tasks/0/extra/0/0/")
    assert line.endswith(": nested 33 levels deep, over the limit of 32 — a plan is a few levels deep: flatten it")


def test_values_shared_by_aliases_count_each_time_they_are_used() -> None:
    shared = ["x"] * 10_000
    assert lines({"tasks": [{"acceptance": shared}] * 101}) == [
        "plan:1:1: the plan expands to more than 1,000,000 values — use fewer YAML aliases (`*name`) and merge "
        "keys (`<<`), or write the values out"
    ]


def merge_bomb(levels: int) -> str:
    """Each level merges the previous one twice: 2^levels mappings once every alias is followed."""
    lines = ["plait: 1", "name: bomb", "tasks: [{id: a, title: A, prompt: p}]", "x0: &a0 {k0: v}"]
    lines += [f"x{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: v}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def repeated_merge(keys: int, uses: int) -> str:
    """One large mapping merged into many: PyYAML copies it for each (quadratic: 80 KB took 33 s)."""
    mapping = ", ".join(f"k{i}: 1" for i in range(keys))
    return f"base: &a {{{mapping}}}\nmany:\n" + "- {<<: *a}\n" * uses


def test_yaml_that_expands_past_the_limit_is_refused_before_it_is_built() -> None:
    for text in (merge_bomb(25), repeated_merge(2000, 1000)):
        with pytest.raises(PlanError) as caught:
            limits.check_yaml(yaml.SafeLoader(text).get_single_node(), "plan.yaml")
        (message,) = caught.value.lines()
        assert message.startswith("plan.yaml:")  # where the count ran over: inside an anchored value
        assert message.endswith("the plan expands to more than 1,000,000 values — use fewer YAML aliases "
                                "(`*name`) and merge keys (`<<`), or write the values out")
    limits.check_yaml(yaml.SafeLoader(repeated_merge(100, 100)).get_single_node(), "plan.yaml")


def test_a_yaml_mapping_over_the_item_limit_is_refused_before_it_is_built() -> None:
    text = "{" + ", ".join(f"<<: {{k{i}: 1}}" for i in range(10_001)) + "}\n"
    with pytest.raises(PlanError) as caught:
        limits.check_yaml(yaml.SafeLoader(text).get_single_node(), "plan.yaml")
    assert caught.value.lines() == ["plan.yaml:1:1: 10,001 items in one list or mapping, over the limit of "
                                    "10,000 — shorten it, or split the plan"]


def test_a_merge_key_bomb_is_loaded_or_refused_without_hanging(tmp_path: Path) -> None:
    """PyYAML 6.0.3 expands these 952 bytes exponentially (22 levels took 17 s, each level doubles it);
    pyproject requires >= 6.0.4, which merges each anchor once."""
    path = tmp_path / "plan.yaml"
    path.write_text(merge_bomb(25))
    out = run_python("""
        import sys
        from plait.plan.load import PlanError, load_plan
        try:
            load_plan(sys.argv[1])
            print("loaded")
        except PlanError as exc:
            print("refused:", exc)
    """, str(path), timeout=60)
    assert out.startswith(("loaded", "refused: ")), out


# --- file overlaps: the same findings as the pairwise definition -----------------------------------------


def pairwise_findings(plan: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    """What analyze reported before the index: every pair of tasks, `patterns_overlap` on every pair of files."""
    needs = {t.id: set(t.needs) for t in plan.tasks}
    ancestors: dict[str, set[str]] = {}
    for tid in graph.topological_order({k: list(v) for k, v in needs.items()}):
        ancestors[tid] = set().union(*({d, *ancestors[d]} for d in needs[tid]))
    out = []
    for i, a in enumerate(plan.tasks):
        for b in plan.tasks[i + 1:]:
            if a.id in ancestors[b.id] or b.id in ancestors[a.id]:
                continue
            shared = sorted({fa for fa in a.files for fb in b.files if patterns_overlap(fa, fb)})
            if shared:
                out.append(("file-overlap", f"{a.id} and {b.id} can run at the same time but both declare "
                            f"{', '.join(shared)}", (a.id, b.id)))
    for c in plan.contracts:
        for t in plan.tasks:
            if t.id != c.owner and any(patterns_overlap(f, c.path) for f in t.files):
                out.append(("contract-owner", f"{t.id} declares {c.path}, a contract owned by {c.owner}",
                            (t.id, c.owner)))
    return out


def file_findings(plan: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.kind, f.message, f.tasks) for f in findings(plan, 0.0) if f.kind in ("file-overlap", "contract-owner")]


@pytest.mark.parametrize("files", [
    (["src/app.py"], ["src/*.py"]),  # a glob covers a path
    (["src/"], ["src/a.py"]),  # a directory covers what is inside it, with or without the slash
    (["src"], ["src/deep/er/b.py", "docs/x.md"]),
    (["src/**"], ["src/a/b/c.py"]),  # `*` crosses `/`, as in fnmatch
    (["**/*.py"], ["tests/test_a.py"]),
    (["src/a[bc].py"], ["src/ab.py"]),
    (["src/a.py"], ["src/ab.py"]),  # not a prefix of a name
    (["src/*.py"], ["src/a*"]),  # two globs: only when one matches the other's text
    (["src/ab"], ["src/a"]),
    (["README.md", "src/"], ["README.md", "src/x/"]),
])
def test_overlaps_between_two_tasks_as_before(files: tuple[list[str], list[str]]) -> None:
    plan = plan_of([{"id": "a", "files": files[0]}, {"id": "b", "files": files[1]}])
    assert file_findings(plan) == pairwise_findings(plan)


def test_ordered_tasks_do_not_overlap_and_contracts_name_their_non_owners() -> None:
    plan = plan_of([
        {"id": "api", "files": ["api/contract.yaml", "src/"]},
        {"id": "ui", "files": ["api/*.yaml", "src/ui.py"]},
        {"id": "docs", "files": ["src/**", "api/"], "needs": ["ui"]},
    ], contracts=[{"path": "api/contract.yaml", "owner": "api"}])
    found = file_findings(plan)
    assert found == pairwise_findings(plan)
    assert [f[2] for f in found] == [("api", "ui"), ("api", "docs"), ("ui", "api"), ("docs", "api")]


PART = st.sampled_from(["a", "b", "ab", "a.py", "*", "**", "?", "[ab]", "[!a]*", "*.py", "a*", "", "[", "]"])
SCOPE = st.builds(lambda parts, slash: "/".join(parts) + "/" * slash, st.lists(PART, min_size=1, max_size=3),
                  st.integers(0, 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(SCOPE, max_size=8))
def test_the_overlap_index_is_the_pairwise_relation(scopes: list[str]) -> None:
    normal = [overlap.scope(s) for s in scopes]
    index = overlap.overlaps(normal)
    for a in normal:
        for b in normal:
            assert (b in index.of(a)) == patterns_overlap(a, b), (a, b)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(2, 5))
    tasks = [{"id": f"t{i}", "files": draw(st.lists(SCOPE, max_size=4)),
              "needs": draw(st.lists(st.sampled_from([f"t{j}" for j in range(i)]), max_size=2, unique=True))
              if i else []} for i in range(n)]
    contracts = [{"path": draw(SCOPE), "owner": f"t{draw(st.integers(0, n - 1))}"}
                 for _ in range(draw(st.integers(0, 2)))]
    return plan_of(tasks, contracts=contracts)


@settings(max_examples=300, deadline=None)
@given(plans())
def test_file_findings_are_the_pairwise_ones(plan: Plan) -> None:
    assert file_findings(plan) == pairwise_findings(plan)


def test_globs_over_the_comparison_budget_are_reported_not_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlap, "MAX_GLOB_TRIES", 3)
    plan = plan_of([{"id": "a", "files": ["*x*", "src/a.py", "src/b.py"]}, {"id": "b", "files": ["src/x.py"]}])
    (finding,) = file_findings(plan)
    assert finding == ("file-overlap", "1 glob(s), e.g. *x*, were not compared with the plan's other files: they "
                       "would each need comparing with nearly all of them", ())


def test_many_overlapping_pairs_are_counted_after_the_first_hundred() -> None:
    plan = plan_of([{"id": f"t{i}", "files": ["README.md"]} for i in range(20)])
    found = file_findings(plan)
    assert found[:100] == pairwise_findings(plan)[:100]
    assert found[100:] == [("file-overlap", "90 more pairs of tasks can run at the same time but declare "
                            "overlapping files (not listed)", ())]


def test_large_file_lists_are_analyzed_without_hanging() -> None:
    """20 tasks declaring 7,300 files each took minutes pairwise (7,300 in all took 17 s)."""
    out = run_python("""
        from plait.plan.analyze import analyze
        from plait.plan.model import Plan
        tasks = [{"id": f"t{i}", "title": "t", "prompt": "p", "needs": [f"t{i - 1}"] if i % 2 else [],
                  "files": [f"src/m{k % 40}/f{i}_{k}.py" for k in range(7300)] + [f"src/m{i}/**", "README.md"]}
                 for i in range(20)]
        a = analyze(Plan.model_validate({"plait": 1, "name": "big", "tasks": tasks}))
        print(sum(f.kind == "file-overlap" for f in a.findings))
    """)
    assert int(out) == 101


# --- the rest of analyze and validate on big plans ----------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(1, 9))
    durations = st.sampled_from(["0s", "10m", "30m", "1h", "90m", "2h"])
    return plan_of([{"id": f"t{i}", "estimate": draw(durations),
                     "needs": draw(st.lists(st.sampled_from([f"t{j}" for j in range(i)]), max_size=3, unique=True))
                     if i else []} for i in range(n)])


@settings(max_examples=200, deadline=None)
@given(dags(), st.integers(1, 12))
def test_the_fast_simulation_is_the_engines_scheduler(plan: Plan, m: int) -> None:
    estimate = analyze(plan, jobs=m).estimate
    assert estimate.wall_seconds == simulate(jobs_of(plan), m).makespan
    assert estimate.barrier_seconds == simulate_barriers(jobs_of(plan), m)


def test_wide_plans_simulate_every_count_up_to_8_then_doublings_and_a_bisection_at_the_knee() -> None:
    assert agent_counts(10) == [*range(1, 9), 10]
    assert agent_counts(100) == [*range(1, 9), 16, 32, 64, 100]
    plan = plan_of([{"id": f"t{i}"} for i in range(40)])  # 40 equal tasks: only 40 agents do it in one round
    assert [e.jobs for e in analyze(plan).by_jobs] == [*range(1, 9), 16, 32, 36, 38, 39, 40]
    assert analyze(plan).recommended_agents == 40
    assert analyze(plan, jobs=20).estimate.jobs == 20


def level_by_level(needs: dict[str, list[str]]) -> list[str]:
    """graph.topological_order as it was (quadratic): each round, every node whose needs are placed."""
    remaining = {n: {d for d in deps if d in needs} for n, deps in needs.items()}
    order: list[str] = []
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps]
        for n in ready:
            del remaining[n]
        for deps in remaining.values():
            deps.difference_update(ready)
        order.extend(ready)
    return order


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.permutations(range(n)).flatmap(lambda order: st.lists(
    st.lists(st.integers(0, n + 1), max_size=3), min_size=n, max_size=n).map(lambda deps: (order, deps)))))
def test_topological_order_is_the_level_by_level_order(graph_spec: tuple[list[int], list[list[int]]]) -> None:
    order, deps = graph_spec
    # Node k may only need nodes listed before it in `order` (or unknown ones, n and n + 1), so no cycles.
    rank = {node: r for r, node in enumerate(order)}
    needs = {f"n{k}": [f"n{d}" for d in deps[k] if d >= len(order) or rank[d] < rank[k]] for k in order}
    assert graph.topological_order(needs) == level_by_level(needs)


def test_unknown_needs_get_suggestions_only_for_the_first_few() -> None:
    tasks = [{"id": f"task-{i}", "files": ["a"]} for i in range(15)]
    tasks[0]["needs"] = [f"tsak-{i}" for i in range(1, 15)]
    fixes = [d.fix for d in validate(plan_of(tasks), record) if "not a task" in d.message]
    assert fixes[:10] == [f"did you mean 'task-{i}'?" for i in range(1, 11)]
    assert set(fixes[10:]) == {"use one of: task-1, task-2, task-3, task-4, task-5, task-6, task-7, task-8, …"}


def test_big_plans_are_validated_and_analyzed_without_hanging() -> None:
    """A chain and a fan of 10,000 tasks, each needing an unknown task too: minutes before (quadratic
    orders, every pending task rescanned per simulated event, difflib over every id)."""
    out = run_python("""
        from plait.errors import Location
        from plait.plan.analyze import analyze
        from plait.plan.model import Plan
        from plait.plan.validate import validate
        for chain in (True, False):
            tasks = [{"id": f"t{i}", "title": "t", "prompt": "p", "files": [f"src/{i}.py", "README.md"],
                      "needs": [f"t{i - 1}"] if chain and i else []} for i in range(10_000)]
            a = analyze(Plan.model_validate({"plait": 1, "name": "big", "tasks": tasks}))
            for t in tasks:
                t["needs"] = [*t["needs"], f"x{t['id']}"]
            plan = Plan.model_validate({"plait": 1, "name": "big", "tasks": tasks})
            found = validate(plan, lambda *keys: Location("plan.yaml"))
            print(len(a.levels), len(a.by_jobs), sum(d.severity == "error" for d in found))
    """, timeout=300)
    assert out.split() == ["10000", "1", "10000", "1", "30", "10000"]
