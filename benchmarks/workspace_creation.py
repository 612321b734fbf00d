"""Workspace creation + capture per task: plait's independent repository vs a linked `git worktree add`.

For each repository size (files of ~100 bytes in nested folders, one commit) both ways run
alternately in the same invocation, `--repeat` times:

- worktree: `git worktree add -b BRANCH PATH BASE`, then the old capture (`git add -A`,
  `git commit`, `git rev-parse HEAD`) in it, then `git worktree remove`;
- workspace: `plait.git.workspace.create`, `capture` (+ the compare-and-swap ref update plait does),
  then `remove`.

Between creation and capture the same edit is made (3 files changed, 1 added). Wall time and CPU time
(this process plus its children) are reported per step; medians and the workspace/worktree ratio.

Run: .venv/bin/python -m benchmarks.workspace_creation [--sizes 1000,10000,60000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import git, make_repo, timed
from plait.git import workspace
from plait.git.repo import Git


def edit(tree: Path) -> None:
    for i in range(3):
        (tree / f"d{i}" / f"e{i}" / f"f{i}.txt").write_text("changed\n")
    (tree / "new.txt").write_text("new\n")


def worktree_round(repo: Path, base: str, n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    path, branch = repo.parent / f"wt{n}", f"plait/bench/wt{n}"
    create = timed(lambda: git(repo, "worktree", "add", "-q", "-b", branch, str(path), base))
    edit(path)

    def capture() -> None:
        git(path, "add", "-A")
        git(path, "commit", "-q", "--no-verify", "-m", "task")
        git(path, "rev-parse", "HEAD")

    done = timed(capture)
    git(repo, "worktree", "remove", "--force", str(path))
    return create, done


def workspace_round(g: Git, repo: Path, base: str, n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    folder, branch = repo.parent / "ws" / f"t{n}", f"plait/bench/ws{n}"
    made: list[workspace.Workspace] = []
    create = timed(lambda: made.append(workspace.create(g, folder / "a1", folder / "home", base, branch)))
    ws = made[0]
    edit(ws.tree)

    def capture() -> None:
        commit = workspace.capture(g, ws, "task").commit
        g.update_ref(f"refs/heads/{branch}", commit, None)

    done = timed(capture)
    workspace.remove(folder)
    return create, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,60000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| files | step | worktree wall | workspace wall | ratio | worktree CPU | workspace CPU | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
            repo = Path(tmp) / "repo"
            make_repo(repo, size)
            g = Git.discover(repo)
            base = g.resolve_commit("HEAD")
            results: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {"wt": [], "ws": []}
            for n in range(args.repeat):  # alternate, so both see the same machine
                results["wt"].append(worktree_round(repo, base, n))
                results["ws"].append(workspace_round(g, repo, base, n))
            for step, name in ((0, "create"), (1, "capture")):
                med = {k: (statistics.median(r[step][0] for r in v), statistics.median(r[step][1] for r in v))
                       for k, v in results.items()}
                (wtw, wtc), (wsw, wsc) = med["wt"], med["ws"]
                print(f"| {size} | {name} | {wtw * 1000:.0f} ms | {wsw * 1000:.0f} ms | {wsw / wtw:.2f} | "
                      f"{wtc * 1000:.0f} ms | {wsc * 1000:.0f} ms | {wsc / wtc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
