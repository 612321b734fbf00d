from __future__ import annotations

from typing import Any

from plait.plan.analyze import analyze, patterns_overlap
from plait.plan.model import Plan


def plan(tasks: list[dict[str, Any]], **extra: Any) -> Plan:
    base = {"id": "x", "title": "t", "prompt": "p", "verify": "true"}
    return Plan.model_validate({"plait": 1, "name": "p", "tasks": [{**base, **t} for t in tasks], **extra})


def test_levels_critical_path_and_estimates_by_hand() -> None:
    p = plan([
        {"id": "a", "estimate": "2h"},
        {"id": "b", "estimate": "3h", "needs": ["a"]},
        {"id": "c", "estimate": "1h", "needs": ["a"]},
        {"id": "d", "estimate": "2h", "needs": ["b", "c"]},
    ], integration={"verify": "pytest"})
    a = analyze(p, jobs=2)
    assert a.levels == [["a"], ["b", "c"], ["d"]]
    assert a.critical_path == ["a", "b", "d"]
    assert a.critical_path_seconds == 7 * 3600
    assert a.total_work_seconds == 8 * 3600
    assert a.estimate.wall_seconds == 7 * 3600
    assert round(a.estimate.speedup, 3) == round(8 / 7, 3)
    assert a.recommended_agents == 2


def test_file_overlap_between_concurrent_tasks_is_flagged_not_between_ordered_ones() -> None:
    p = plan([
        {"id": "a", "files": ["src/app.py"]},
        {"id": "b", "files": ["src/*.py"]},
        {"id": "c", "files": ["src/app.py"], "needs": ["a", "b"]},
    ])
    kinds = [(f.kind, f.tasks) for f in analyze(p).findings]
    assert ("file-overlap", ("a", "b")) in kinds
    assert not any(k == "file-overlap" and "c" in t for k, t in kinds)


def test_contract_non_owner_and_missing_checkpoint_and_tiny_tasks() -> None:
    p = plan([
        {"id": "api", "files": ["api/contract.yaml"], "estimate": "5m"},
        {"id": "ui", "files": ["api/contract.yaml", "ui/"], "estimate": "5m"},
    ], contracts=[{"path": "api/contract.yaml", "owner": "api"}])
    kinds = {f.kind for f in analyze(p).findings}
    assert {"contract-owner", "no-integration-checkpoint", "premature-parallelization"} <= kinds


def test_score_is_higher_for_a_wide_clean_plan() -> None:
    chain = plan([{"id": f"t{i}", "needs": [f"t{i - 1}"] if i else [], "files": [f"f{i}"]} for i in range(6)],
                 integration={"verify": "pytest"})
    wide = plan([{"id": f"t{i}", "files": [f"f{i}"]} for i in range(6)], integration={"verify": "pytest"})
    assert analyze(chain).score == 0
    assert analyze(wide).score >= 8
    assert analyze(chain).recommended_agents == 1


def test_patterns_overlap() -> None:
    assert patterns_overlap("src/a.py", "src/*.py")
    assert patterns_overlap("src", "src/a/b.py")
    assert not patterns_overlap("src/a.py", "tests/a.py")
    assert not patterns_overlap("src/ab", "src/a")
