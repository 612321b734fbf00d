"""Hostile plan files: is each loaded, or refused with a clear error, in well under a second?

Plans come from other tools and agents. Each input below (about 1 MB at most, a few far smaller) is written
to a temporary folder and read by `plait.plan.load.load_plan`, then, when it loads, analyzed by
`plait.plan.analyze.analyze`, in a fresh interpreter each time (so a hang is cut off by `--timeout` and
nothing is cached between runs). The child measures its own wall and CPU time, without the interpreter's
start; medians over `--repeat` runs. The `analyze only` rows build the plan in memory (their YAML would be
over the size limit) and time `analyze` alone.

Run: .venv/bin/python -m benchmarks.adversarial_plans [--repeat 3] [--timeout 120] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAD = " " * 400 + "9" * 400  # a long run of spaces and digits, put into every scalar


def _yaml_tasks(n: int, task: Callable[[int], list[str]]) -> str:
    lines = ["plait: 1", "name: hostile", "defaults: {verify: 'true'}", "tasks:"]
    for i in range(n):
        lines += [f"  - id: t{i}", f"    title: task {i}", "    prompt: do it", *(f"    {x}" for x in task(i))]
    return "\n".join(lines) + "\n"


def yaml_padded_scalars() -> str:
    return _yaml_tasks(380, lambda i: [f"files: ['src/{i}.py{PAD}']", f"acceptance: ['{PAD}']",
                                       f"verify: 'true {PAD}'", f"estimate: '1{' ' * 100}h'"])


def yaml_estimate_spaces() -> str:
    return _yaml_tasks(1, lambda i: [f"estimate: '1{' ' * 1_000_000}h'"])


def yaml_estimate_digits() -> str:
    return _yaml_tasks(1, lambda i: [f"estimate: {'9' * 1_000_000}"])


def yaml_deep_flow() -> str:
    return _yaml_tasks(1, lambda i: []) + "extra: " + "[" * 200_000 + "]" * 200_000 + "\n"


def yaml_deep_block() -> str:
    return _yaml_tasks(1, lambda i: []) + "extra:\n" + "".join(" " * d + "- \n" for d in range(1, 1400))


def yaml_huge_list() -> str:
    return _yaml_tasks(1, lambda i: ["files:", *(f"      - src/f{k}.py" for k in range(40_000))])


def yaml_long_prompt() -> str:
    return _yaml_tasks(1, lambda i: [f"acceptance: ['{(' ' * 1000 + '7' * 1000) * 500}']"])


def yaml_1000_tasks_files() -> str:
    return _yaml_tasks(1000, lambda i: [f"needs: [t{i - 1}]" if i % 3 else "needs: []",
                                        f"files: [{', '.join(f'src/m{i % 40}/f{i}_{k}.py' for k in range(40))}]"])


def yaml_3000_tasks() -> str:
    return _yaml_tasks(3000, lambda i: [f"needs: [t{i - 1}]" if i % 2 else "needs: []",
                                        f"files: [README.md, src/m{i % 50}/**, src/{i}.py]"])


def yaml_7300_files() -> str:
    """The issue's case: 20 tasks declaring 7,300 files in all took 17 s in `plait check`."""
    return _yaml_tasks(20, lambda i: [f"files: [{', '.join(f'src/m{k % 30}/f{i}_{k}.py' for k in range(365))}, "
                                      f"'src/m{i}/*.py']"])


def yaml_many_needs() -> str:
    return _yaml_tasks(3000, lambda i: [f"needs: [{', '.join(f't{j}' for j in range(max(0, i - 40), i))}]"])


def yaml_unknown_needs() -> str:
    return _yaml_tasks(5000, lambda i: [f"needs: [task-{i}]"])


def yaml_merge_bomb() -> str:
    lines = ["plait: 1", "name: bomb", "tasks: [{id: a, title: A, prompt: p}]", "x0: &a0 {k0: v}"]
    lines += [f"x{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: v}}" for i in range(1, 26)]
    return "\n".join(lines) + "\n"


def yaml_repeated_merge() -> str:
    mapping = ", ".join(f"k{i}: 1" for i in range(2000))
    return _yaml_tasks(1, lambda i: []) + f"base: &a {{{mapping}}}\nmany:\n" + "- {<<: *a}\n" * 2000


def yaml_billion_laughs() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return _yaml_tasks(1, lambda i: ["acceptance: *a8"]).replace("tasks:", "\n".join(lines) + "\ntasks:", 1)


def _md_tasks(n: int, task: Callable[[int], list[str]], heading: str = "") -> str:
    lines = ["# Implementation Plan: hostile", "", "## Phase 1: All", "", "**Strategy**: parallel", ""]
    for i in range(n):
        lines += [f"### Task 1.{i + 1}: task {i}{heading}", "", *task(i), ""]
    return "\n".join(lines) + "\n"


def md_padded_fields() -> str:
    return _md_tasks(280, lambda i: ["**Files**:", f"- src/{i}.py{PAD}", f"**Complexity**: M (1{' ' * 200}h)",
                                     f"**Dependencies**: Task 1.{i}{PAD}" if i else "**Dependencies**: None",
                                     f"**Verify**: true {PAD}", "**Acceptance Criteria**:", f"- [ ] {PAD}"])


def md_heading_runs() -> str:
    runs = ["#" + " " * 20_000 + "#" * 20_000, "#" * 40_000, "### " + " " * 40_000 + "x", "###" + "#" * 40_000 + " x",
            "### Task" + " " * 40_000 + "1.1", "### Task 1.1:" + " " * 40_000 + "#" * 40_000,
            "## Phase" + " " * 40_000 + "2", "**Files**:" + " " * 40_000, "- [ ]" + " " * 40_000 + "x"]
    return _md_tasks(1, lambda i: ["**Files**:", "- a.py"]) + "\n".join(runs * 2) + "\n"


def md_long_title() -> str:
    return _md_tasks(10, lambda i: ["**Files**:", "- a.py"], heading=(" " * 5000 + "(M - 1h)" + " " * 5000) * 8)


def md_1000_tasks_files() -> str:
    return _md_tasks(1000, lambda i: ["**Files**:", *(f"- src/m{i % 40}/f{i}_{k}.py" for k in range(30)),
                                      "**Complexity**: M (1h)",
                                      f"**Dependencies**: Task 1.{i}" if i % 3 else "**Dependencies**: None"])


def md_long_body() -> str:
    return _md_tasks(2, lambda i: ["**Files**:", "- a.py", ("9" * 1000 + " " * 1000) * 250])


def json_1000_tasks() -> str:
    tasks = [{"id": i + 1, "title": f"task {i}", "description": "do it", "status": "pending",
              "dependencies": [i] if i % 2 else [], "details": PAD} for i in range(1000)]
    return json.dumps({"master": {"tasks": tasks}})


def json_deep_nesting() -> str:
    return '{"master": {"tasks": [{"id": 1, "title": "t", "details": ' + "[" * 200_000 + "]" * 200_000 + "}]}}"


def json_padded_numbers() -> str:
    tasks = [{"id": int("1" + "0" * 300) + i, "title": " " * 2000, "dependencies": [" " * 500 + "1" * 500]}
             for i in range(300)]
    return json.dumps({"tasks": tasks})


INPUTS: dict[str, tuple[str, Callable[[], str]]] = {
    "yaml: spaces+digits in every scalar": ("plan.yaml", yaml_padded_scalars),
    "yaml: estimate '1' + 1M spaces + 'h'": ("plan.yaml", yaml_estimate_spaces),
    "yaml: estimate of 1M digits": ("plan.yaml", yaml_estimate_digits),
    "yaml: 200k nested flow lists": ("plan.yaml", yaml_deep_flow),
    "yaml: 1,400 nested block lists": ("plan.yaml", yaml_deep_block),
    "yaml: one task, 40k files": ("plan.yaml", yaml_huge_list),
    "yaml: 1 MB text value": ("plan.yaml", yaml_long_prompt),
    "yaml: 1,000 tasks x 40 files": ("plan.yaml", yaml_1000_tasks_files),
    "yaml: 3,000 tasks, shared files, globs": ("plan.yaml", yaml_3000_tasks),
    "yaml: 20 tasks, 7,300 files (issue)": ("plan.yaml", yaml_7300_files),
    "yaml: 3,000 tasks x 40 needs": ("plan.yaml", yaml_many_needs),
    "yaml: 5,000 unknown needs": ("plan.yaml", yaml_unknown_needs),
    "yaml: merge-key bomb, 25 levels (1 KB)": ("plan.yaml", yaml_merge_bomb),
    "yaml: one mapping merged 2,000 times": ("plan.yaml", yaml_repeated_merge),
    "yaml: billion laughs (10^9 via aliases)": ("plan.yaml", yaml_billion_laughs),
    "md: spaces+digits in every field": ("plan.md", md_padded_fields),
    "md: headings of 40k spaces / #": ("plan.md", md_heading_runs),
    "md: 80 KB task headings": ("plan.md", md_long_title),
    "md: 1,000 tasks x 30 files": ("plan.md", md_1000_tasks_files),
    "md: 1 MB body line": ("plan.md", md_long_body),
    "json: 1,000 Taskmaster tasks": ("tasks.json", json_1000_tasks),
    "json: 200k nested lists": ("tasks.json", json_deep_nesting),
    "json: 300-digit ids, padded deps": ("tasks.json", json_padded_numbers),
}

# Plans too large to be files under the size limit, analyzed in memory: (tasks, files per task).
ANALYZE_ONLY = {"analyze only: 20 tasks x 7,300 files": (20, 7300),
                "analyze only: 3,000 tasks, 830,000 files": (3000, 277),
                "analyze only: 10,000 independent tasks": (10_000, 1)}

_LOAD = """
import json, sys, time
from plait.plan.analyze import analyze
from plait.plan.load import PlanError, load_plan
wall, cpu = time.perf_counter(), time.process_time()
try:
    loaded = load_plan(sys.argv[1])
    loaded_at = time.perf_counter()
    a = analyze(loaded.plan)
    outcome = f"loaded: {len(loaded.plan.tasks):,} tasks, {len(a.findings)} findings"
except PlanError as exc:
    loaded_at = time.perf_counter()
    outcome = "refused: " + exc.lines()[0]
end = time.perf_counter()
print(json.dumps({"outcome": outcome, "load": loaded_at - wall, "wall": end - wall,
                  "cpu": time.process_time() - cpu}))
"""

_ANALYZE = """
import json, sys, time
from plait.plan.analyze import analyze
from plait.plan.model import Plan
n, files = int(sys.argv[1]), int(sys.argv[2])
tasks = [{"id": f"t{i}", "title": "t", "prompt": "p", "needs": [f"t{i - 1}"] if files > 1 and i % 2 else [],
          "files": [f"src/m{k % 50}/f{i}_{k}.py" for k in range(files)] + [f"src/m{i % 50}/**"]} for i in range(n)]
plan = Plan.model_validate({"plait": 1, "name": "big", "tasks": tasks})
wall, cpu = time.perf_counter(), time.process_time()
a = analyze(plan)
print(json.dumps({"outcome": f"analyzed: {len(a.findings)} findings", "load": 0.0,
                  "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def run_once(code: str, args: list[str], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"outcome": f"TIMEOUT after {timeout:g} s", "load": timeout, "wall": timeout, "cpu": timeout}
    if done.returncode:
        return {"outcome": "CRASH: " + (done.stderr.strip().splitlines() or ["?"])[-1], "load": 0.0, "wall": 0.0,
                "cpu": 0.0}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--only", default="", help="comma-separated substrings of input names")
    args = parser.parse_args()
    wanted = [w for w in args.only.split(",") if w]
    names = [n for n in [*INPUTS, *ANALYZE_ONLY] if not wanted or any(w in n for w in wanted)]
    print("| input | bytes | outcome | load wall | total wall | total CPU |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name in INPUTS:
                filename, make = INPUTS[name]
                path = Path(tmp, f"{names.index(name):02d}", filename)
                path.parent.mkdir()
                path.write_text(make())
                size = f"{path.stat().st_size:,}"
                runs = [run_once(_LOAD, [str(path)], args.timeout) for _ in range(args.repeat)]
            else:
                size = "-"
                runs = [run_once(_ANALYZE, [str(x) for x in ANALYZE_ONLY[name]], args.timeout)
                        for _ in range(args.repeat)]
            med = {k: statistics.median(float(r[k]) for r in runs) for k in ("load", "wall", "cpu")}
            outcome = str(runs[0]["outcome"]).replace(tmp + "/", "")
            outcome = outcome if len(outcome) <= 110 else outcome[:107] + "..."
            print(f"| {name} | {size} | {outcome.replace('|', '/')} | {seconds(med['load'])} | "
                  f"{seconds(med['wall'])} | {seconds(med['cpu'])} |", flush=True)


if __name__ == "__main__":
    main()
