"""A finished task's workspace made into the next task's (recycled) vs a fresh one (issue 13, goal 4).

For each repository size (files of ~100 bytes in nested folders, as in `workspace_creation`), `--repeat`
rounds, both ways alternating. Each round is one task's turn: the previous task's workspace is done with,
and the next task's is made on a *different* base (the other of two commits 10 files apart, so the work
tree has to change). In between, the task edits its tree (3 files changed, 1 added, a build artefact left
untracked) and is captured, as a verified task is.

- fresh: `workspace.remove` of the finished one, then `workspace.create` (a full checkout);
- recycled: `workspace.park` of the finished one, then `workspace.create(..., spares=...)` (its tree reset to the
  new base: `git clean -ffdqx`, `read-tree --reset -u`, only the differing files written).

Wall and CPU time (this process and its children) of "done with the old + make the new", medians, and
fresh / recycled. Both end in the same state: the new base's files and nothing else (checked every round).

Run: .venv/bin/python -m benchmarks.workspace_recycle [--sizes 1000,10000,60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path

from benchmarks.common import git, make_repo, timed
from benchmarks.workspace_creation import edit
from plait.git import workspace
from plait.git.repo import Git


def second_base(repo: Path) -> str:
    for i in range(10):
        (repo / f"d{i % 50}" / f"e{i % 7}" / f"f{i}.txt").write_text(f"base two {i}\n")
    git(repo, "commit", "-qam", "base two")
    return git(repo, "rev-parse", "HEAD").strip()


def turn(g: Git, last: dict[str, workspace.Workspace], way: str, spares: Path | None, folder: Path,
         base: str) -> None:
    """Done with the last workspace of `way`, make the next one."""
    old = last.get(way)
    if old is not None:
        workspace.park(old, spares) if spares is not None else workspace.remove(old.folder)
    last[way] = workspace.create(g, folder / "a1", folder / "home", base, "task", spares)


def files_of(tree: Path) -> int:
    return sum(1 for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,60000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| files | fresh wall | recycled wall | fresh / recycled | fresh CPU | recycled CPU | fresh / recycled |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="plait-recycle-") as tmp:
            repo = Path(tmp) / "repo"
            make_repo(repo, size)
            g = Git.discover(repo)
            bases = [g.resolve_commit("HEAD"), second_base(repo)]
            spares = Path(tmp) / "ws" / "_spare"
            last: dict[str, workspace.Workspace] = {}
            results: dict[str, list[tuple[float, float]]] = {"fresh": [], "recycled": []}
            for n in range(args.repeat + 1):  # round 0 makes the first workspaces: not measured
                for way in ("fresh", "recycled"):
                    base = bases[n % 2]
                    folder = Path(tmp) / "ws" / f"{way}{n}"
                    took = timed(partial(turn, g, last, way, spares if way == "recycled" else None, folder, base))
                    ws = last[way]
                    want = "base two 0\n" if n % 2 else "file 0\n" * 10  # the base's, whatever the last task did
                    assert files_of(ws.tree) == size and (ws.tree / "d0/e0/f0.txt").read_text() == want, ws
                    edit(ws.tree)
                    (ws.tree / "build.log").write_text("artefact\n")
                    workspace.capture(g, ws, "task")
                    if n:
                        results[way].append(took)
            med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
                   for k, v in results.items()}
            (fw, fc), (rw, rc) = med["fresh"], med["recycled"]
            print(f"| {size:,} | {fw * 1000:.0f} ms | {rw * 1000:.0f} ms | {fw / rw:.1f} | {fc * 1000:.0f} ms | "
                  f"{rc * 1000:.0f} ms | {fc / rc:.1f} |", flush=True)


if __name__ == "__main__":
    main()
