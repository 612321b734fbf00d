"""Per-task cost at scale (issue 13, goals 3 and 4): a finished workspace becomes the next one (reset to the new
base, nothing of the last task left), the integration's merge asks git no ancestry question once it has made a
merge, and built while the run goes on it gives the same result as built at the end; the work trees a run
finishes with are kept, a bounded few, for the next run of the same repository."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gitfixtures import commit_on, files_at, git, user_repo
from plait import api
from plait.git import merge, workspace
from plait.git.repo import Git
from plait.run.engine import RunOptions
from runfixtures import task, write_plan


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield from user_repo(tmp_path)


def tree_files(tree: Path) -> dict[str, str]:
    found = {}
    for folder, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(tree))] = path.read_text()
    return found


def test_a_parked_workspace_becomes_the_next_one_at_its_base_with_nothing_of_the_last_task(repo: Path,
                                                                                         tmp_path: Path) -> None:
    g = Git.discover(repo)
    start = commit_on(repo, g.resolve_commit("HEAD"), {".gitignore": "*.log\n", "src/a.py": "a = 1\n",
                                                       "tool.sh": "echo\n"})
    other = commit_on(repo, start, {"src/b.py": "b = 1\n", "src/a.py": "a = 2\n"})
    spares = tmp_path / "ws" / "_spare"
    first = workspace.create(g, tmp_path / "ws" / "t1" / "a1", tmp_path / "ws" / "t1" / "home", start, "plait/r/t1")
    # What a task may leave: changed, added, deleted, ignored and executable files, its repository's refs.
    (first.tree / "src" / "a.py").write_text("a = 99\n")
    (first.tree / "README.md").unlink()
    (first.tree / "new" / "deep").mkdir(parents=True)
    (first.tree / "new" / "deep" / "x.txt").write_text("x\n")
    (first.tree / "build.log").write_text("ignored\n")
    (first.tree / "tool.sh").chmod(0o755)
    git(first.tree, "checkout", "-q", "-b", "agent-branch")
    workspace.capture(g, first, "t1")
    (first.tree / "src" / "a.py").write_text("changed after the capture\n")  # as a verify command may
    workspace.park(first, spares)
    assert not first.folder.exists() and len(list(spares.iterdir())) == 1

    second = workspace.create(g, tmp_path / "ws" / "t2" / "a1", tmp_path / "ws" / "t2" / "home", other, "plait/r/t2",
                              spares)
    assert tree_files(second.tree) == files_at(repo, other)
    assert not os.access(second.tree / "tool.sh", os.X_OK)
    assert list(spares.iterdir()) == []  # taken
    assert git(second.tree, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/plait/r/t2"]
    assert git(second.tree, "rev-parse", "HEAD").strip() == other
    assert git(second.tree, "status", "--porcelain").strip() == ""
    captured = workspace.capture(g, second, "t2")
    assert captured.commit == other and captured.changed == []  # nothing of t1's work is in t2's


def _add_a_hook(dot_git: Path, outside: Path) -> None:
    (dot_git / "hooks").mkdir()
    (dot_git / "hooks" / "post-checkout").write_text("#!/bin/sh\necho hooked\n")


def _link_config(dot_git: Path, outside: Path) -> None:  # rewriting it in place would write `outside` too
    (dot_git / "config").unlink()
    os.link(outside, dot_git / "config")


def _symlink_packed_refs(dot_git: Path, outside: Path) -> None:
    (dot_git / "packed-refs").unlink()
    (dot_git / "packed-refs").symlink_to(outside)


def _commit(dot_git: Path, outside: Path) -> None:
    tree = dot_git.parent
    (tree / "agent.txt").write_text("the agent's\n")
    git(tree, "add", "agent.txt")
    git(tree, "commit", "-qm", "the agent's own commit")


def _nothing(dot_git: Path, outside: Path) -> None:
    (dot_git / "config").write_text("[core]\n\tbare = true\n")  # its files' contents are rewritten anyway


@pytest.mark.parametrize("agent", [_nothing, _add_a_hook, _link_config, _symlink_packed_refs, _commit])
def test_a_kept_agent_repository_is_rewritten_in_place_only_when_nothing_was_added_or_linked(
        repo: Path, tmp_path: Path, agent: object, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    first = workspace.create(g, tmp_path / "ws" / "t1" / "a1", tmp_path / "ws" / "t1" / "home", base, "plait/r/t1")
    dot_git = first.tree / ".git"
    assert git(first.tree, "for-each-ref", "--format=%(refname) %(objectname)") == f"refs/heads/plait/r/t1 {base}"
    outside = first.home / "notes.txt"  # somewhere else the agent may write
    outside.write_text("the agent's notes\n")
    assert callable(agent)
    agent(dot_git, outside)
    (first.tmp / "scratch").mkdir()
    (first.tmp / "scratch" / "x.txt").write_text("x\n")
    workspace.capture(g, first, "t1")
    workspace.park(first, spares)
    (kept,) = spares.iterdir()
    assert sorted(p.name for p in kept.iterdir()) == ["capture.index", "tmp", "tree"]
    removed: list[Path] = []
    real_remove = workspace.remove
    monkeypatch.setattr(workspace, "remove", lambda path: (removed.append(path), real_remove(path)))

    second = workspace.create(g, tmp_path / "ws" / "t2" / "a1", tmp_path / "ws" / "t2" / "home", base, "plait/r/t2",
                              spares)
    dot_git = second.tree / ".git"
    assert list(second.tmp.iterdir()) == []
    assert outside.read_text() == "the agent's notes\n"
    assert sorted(p.name for p in dot_git.iterdir()) == ["HEAD", "config", "index", "objects", "packed-refs", "refs"]
    assert (dot_git in removed) == (agent is not _nothing)  # else rewritten in place
    assert not (dot_git / "packed-refs").is_symlink() and (dot_git / "config").stat().st_nlink == 1
    assert "bare = true" not in (dot_git / "config").read_text()
    assert git(second.tree, "for-each-ref", "--format=%(refname) %(objectname)") == f"refs/heads/plait/r/t2 {base}"
    assert git(second.tree, "status", "--porcelain") == ""
    assert tree_files(second.tree) == files_at(repo, base)


def test_named_pipes_the_agent_leaves_never_block_keeping_or_taking_a_workspace(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    ws = workspace.create(g, tmp_path / "ws" / "t1" / "a1", tmp_path / "ws" / "t1" / "home", base, "plait/r/t1")
    for fifo in (ws.tmp / "pipe", ws.tree / "pipe", ws.tree / ".git" / "hooks"):
        os.mkfifo(fifo)  # opening one to read waits for a writer that never comes

    def keep_and_take() -> None:
        workspace.park(ws, spares)
        made.append(workspace.create(g, tmp_path / "ws" / "t2" / "a1", tmp_path / "ws" / "t2" / "home", base,
                                     "plait/r/t2", spares))

    made: list[workspace.Workspace] = []
    worker = threading.Thread(target=keep_and_take, daemon=True)
    worker.start()
    worker.join(timeout=300)  # bounds a broken run only
    assert not worker.is_alive(), "blocked on a named pipe"
    (second,) = made
    assert list(second.tmp.iterdir()) == [] and tree_files(second.tree) == files_at(repo, base)
    assert not (second.tree / "pipe").exists() and not (second.tree / ".git" / "hooks").exists()


def test_without_a_spare_or_with_a_symlinked_tree_a_workspace_is_checked_out_afresh(repo: Path,
                                                                                   tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    ws = workspace.create(g, tmp_path / "ws" / "t1" / "a1", tmp_path / "ws" / "t1" / "home", base, "b", spares)
    assert tree_files(ws.tree) == files_at(repo, base)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    workspace.remove(ws.tree)
    ws.tree.symlink_to(outside)
    workspace.park(ws, spares)
    assert not ws.folder.exists()
    assert not spares.exists() or list(spares.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "keep\n"


def test_parallel_creates_take_each_spare_once(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    for n in range(2):
        workspace.park(workspace.create(g, tmp_path / "ws" / f"p{n}" / "a1", tmp_path / "ws" / f"p{n}" / "home",
                                        base, "b"), spares)
    made: list[workspace.Workspace] = []

    def one(n: int) -> None:
        made.append(workspace.create(g, tmp_path / "ws" / f"t{n}" / "a1", tmp_path / "ws" / f"t{n}" / "home", base,
                                     "b", spares))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and all(tree_files(ws.tree) == files_at(repo, base) for ws in made)
    assert list(spares.iterdir()) == []


def test_the_chain_asks_no_ancestry_question_once_it_made_a_merge(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    heads = [(n, commit_on(repo, base, {f"{n}.txt": f"{n}\n"})) for n in "abcd"]
    asked: list[tuple[str, str]] = []
    real = Git.is_ancestor

    def spy(self: Git, a: str, b: str) -> bool:
        asked.append((a, b))
        return real(self, a, b)

    monkeypatch.setattr(Git, "is_ancestor", spy)
    result = merge.merge_commits(g, base, [*heads, ("a again", heads[0][1])], "m")
    assert result.ok and result.merged == ("a", "b", "c", "d", "a again")
    # a: asked twice (a fast-forward); b: asked twice, then merged; c, d and a again: not asked
    assert len(asked) == 4
    assert files_at(repo, result.commit) == {**files_at(repo, base), **{f"{n}.txt": f"{n}\n" for n in "abcd"}}


def test_the_integration_woven_as_tasks_finish_is_the_one_woven_at_the_end(repo: Path) -> None:
    from plait.run import integrate

    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    a = commit_on(repo, base, {"a.txt": "a\n"})
    b = commit_on(repo, a, {"b.txt": "b\n", "a.txt": "a by b\n"})
    c = commit_on(repo, base, {"c.txt": "c\n", "README.md": "# c\n"})
    e_base = merge.merge_commits(g, base, [("a", a), ("c", c)], "base for e").commit
    e = commit_on(repo, e_base, {"c.txt": "c by e\n", "e.txt": "e\n"})
    d = commit_on(repo, base, {"README.md": "# d\n"})  # conflicts with c
    commits = {"a": a, "b": b, "c": c, "e": e, "d": d}
    needs = {"a": [], "b": ["a"], "c": [], "e": ["a", "c"], "d": []}
    order = ["a", "c", "b", "e", "d"]
    ctx = SimpleNamespace(git=g, base_sha=base, plan=SimpleNamespace(tasks=[SimpleNamespace(id=t, needs=n)
                                                                           for t, n in needs.items()]),
                          paths=SimpleNamespace(run_id="r", branch=lambda t: f"plait/r/{t}"))
    woven = integrate.Weave(ctx, order)  # type: ignore[arg-type]
    finished: dict[str, str] = {}
    for tid in ("b", "c", "e", "a"):  # as they finish: nothing merges until a, the first in order, is there
        finished[tid] = commits[tid]
        woven.advance(finished)
        assert woven.merged == ([] if tid != "a" else ["a", "c", "b", "e"])
    conflict = woven.advance(commits)
    assert conflict is not None and conflict.name == "plait/r/d"
    assert conflict.conflicts_with == ("plait/r/c", "plait/r/e")
    # The same as merging every head at once, asking git for every merge base.
    at_once = merge.merge_commits(g, base, [(f"plait/r/{t}", commits[t]) for t in order], "[plait r] integrate")
    assert at_once.conflict is not None and str(at_once.conflict) == str(conflict)
    assert git(repo, "rev-parse", f"{woven.chain.commit}^{{tree}}") == git(repo, "rev-parse",
                                                                          f"{at_once.commit}^{{tree}}")
    assert files_at(repo, woven.chain.commit)["c.txt"] == "c by e\n"


def test_chains_sharing_merges_merge_a_head_on_the_same_tree_once(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    heads = [(n, commit_on(repo, base, {f"{n}.txt": f"{n}\n"})) for n in "abcd"]
    merges = merge.Merges()
    first, second, alone = (merge.Chain(g, base, m, shared) for m, shared in
                            (("first", merges), ("second", merges), ("alone", None)))
    calls: list[str] = []
    real = merge.merge_tree

    def spy(git: Git, ours: str, theirs: str) -> merge.MergeOutcome:
        calls.append(theirs)
        return real(git, ours, theirs)

    monkeypatch.setattr(merge, "merge_tree", spy)
    for name, sha in heads:  # as the radar and the integration's weave do when tasks finish in order
        assert first.add(name, sha, [base]) is None and second.add(name, sha, [base]) is None
    for name, sha in reversed(heads):  # another order: other trees, nothing shared
        assert alone.add(name, sha, [base]) is None
    shas = dict(heads)
    # a: a fast-forward; b: merged by each chain (no merge of its own yet, so no stand-in); c and d: once for both;
    # the chain alone: d a fast-forward, then c, b and a merged
    assert calls == [shas["b"], shas["b"], shas["c"], shas["d"], shas["c"], shas["b"], shas["a"]]
    assert len(merges) == 0  # each outcome taken once, by the other chain
    trees = {git(repo, "rev-parse", f"{c.commit}^{{tree}}") for c in (first, second, alone)}
    assert len(trees) == 1 and first.commit != second.commit
    assert git(repo, "log", "--format=%s", "-1", second.commit) == "second: merge d"


def make_spare(g: Git, ws_root: Path, name: str, base: str, spares: Path) -> None:
    workspace.park(workspace.create(g, ws_root / name / "a1", ws_root / name / "home", base, "b"), spares)


def test_spares_are_kept_newest_first_and_trimmed_oldest_first(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    for n in range(4):
        make_spare(g, tmp_path / "ws", f"p{n}", base, spares)
    made = sorted(spares.iterdir())
    assert len(made) == 4 and not [p for p in made if p.name.startswith(".")]  # none half assembled left
    ws = workspace.create(g, tmp_path / "ws" / "t" / "a1", tmp_path / "ws" / "t" / "home", base, "b", spares)
    assert sorted(spares.iterdir()) == made[:3]  # the newest was taken
    assert not (ws.folder / "spare").exists()
    assert workspace.trim(spares, 2) == [made[0]]
    assert sorted(spares.iterdir()) == made[1:3]
    assert workspace.trim(spares, 0) == [made[2], made[1]] and not spares.exists()
    assert workspace.trim(spares, 0) == []  # nothing there: nothing to do


def test_a_half_parked_spare_is_never_used_and_is_removed_in_the_end(repo: Path, tmp_path: Path) -> None:
    g = Git.discover(repo)
    base = g.resolve_commit("HEAD")
    spares = tmp_path / "ws" / "_spare"
    make_spare(g, tmp_path / "ws", "p", base, spares)
    (whole,) = spares.iterdir()
    # What a crash can leave: a park that had not finished (hidden, at any stage), and, however it came to be,
    # a spare in view that holds a tree without its index or the reverse.
    crashed = spares / ".0000000000000001-dead.part"
    os.rename(whole, crashed)
    (crashed / "capture.index").unlink()
    (crashed / "tree" / "README.md").write_text("the crashed task's\n")
    young = spares / ".ffffffffffffffff-beef.part"
    (young / "tree").mkdir(parents=True)
    tree_only = spares / "fffffffffffffff0-0001"
    (tree_only / "tree").mkdir(parents=True)
    (tree_only / "tree" / "README.md").write_text("not the base\n")
    index_only = spares / "fffffffffffffff0-0000"
    index_only.mkdir()
    (index_only / "capture.index").write_text("not an index\n")
    elsewhere = tmp_path / "elsewhere"  # a spare that is a symlink: what it points to is never reset, nor removed
    (elsewhere / "tree").mkdir(parents=True)
    (elsewhere / "tree" / "keep.txt").write_text("keep\n")
    (elsewhere / "capture.index").write_text("not an index\n")
    (spares / "fffffffffffffff0-0002").symlink_to(elsewhere)
    for n in range(2):
        ws = workspace.create(g, tmp_path / "ws" / f"t{n}" / "a1", tmp_path / "ws" / f"t{n}" / "home", base, "b",
                              spares)
        assert tree_files(ws.tree) == files_at(repo, base)
        assert git(ws.tree, "status", "--porcelain").strip() == ""
    assert sorted(p.name for p in spares.iterdir()) == sorted([crashed.name, young.name])  # the visible ones: gone
    assert tree_files(elsewhere) == {"tree/keep.txt": "keep\n", "capture.index": "not an index\n"}
    assert workspace.trim(spares, 4) == [] and crashed.exists()  # it may be a park under way
    old = time.time() - workspace.SPARE_STALE_SECONDS - 60
    os.utime(crashed, (old, old))
    assert workspace.trim(spares, 4) == [crashed]
    assert [p.name for p in spares.iterdir()] == [young.name]


def kept_spares(ws_root: Path) -> set[str]:
    found = {p.name for p in ws_root.glob("*/_spare/*")}
    assert not [n for n in found if n.startswith(".")], "no spare is left half assembled or half removed"
    return found


def run(repo: Path, tasks: list[dict[str, object]], jobs: int, name: str) -> str:
    plan = write_plan(repo, tasks, name=name, integration={"verify": "true"})
    handle, run_id = api.start(plan, RunOptions(jobs=jobs, retry_base_seconds=0.05), cwd=repo)
    assert api.execute(handle, run_id) == "completed"
    return run_id


def test_a_later_run_of_the_repository_takes_the_work_trees_an_earlier_one_kept(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from gitfixtures import make_repo

    ws_root = tmp_path / "ws"
    monkeypatch.setenv("PLAIT_WORKSPACES", str(ws_root))
    files = {"README.md": "# project\n", ".gitignore": "*.log\n", "src/a.py": "a = 1\n"}
    warm, cold = make_repo(tmp_path / "warm", files), make_repo(tmp_path / "cold", files)
    # The first run's tasks leave changed, added, untracked and ignored files in their trees.
    first = [task(f"w{n}", {f"w{n}.txt": f"{n}\n", "src/a.py": f"a = {n}\n"} if n == 0 else {f"w{n}.txt": f"{n}\n"},
                  verify=f"touch junk{n}.txt build{n}.log") for n in range(3)]
    run(warm, first, jobs=3, name="first.yaml")
    before = kept_spares(ws_root)
    assert 1 <= len(before) <= 3
    # Another base, all of whose files differ; the same plan on it, in the warm repository and in a cold one.
    for repo in (warm, cold):
        for rel in ("README.md", "src/a.py"):
            (repo / rel).write_text(f"changed {rel}\n")
        (repo / "src" / "b.py").write_text("b = 1\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "next")
    second = [task("x", {"x.txt": "x\n"}), task("y", {"src/a.py": "a = 3\n"}),
              task("z", {"z.txt": "z\n"}, needs=["x", "y"])]
    warm_run = run(warm, second, jobs=8, name="second.yaml")
    after = kept_spares(ws_root)
    # x and y start together, each on a tree the first run kept (newest first; z and the integration test's
    # workspace then take the trees x and y left).
    assert len(before - after) >= 2, (before, after)
    log = (warm / ".plait" / "runs" / warm_run / "plait.log").read_text()
    assert "afresh" not in log and "incomplete" not in log  # each reset to the new base
    cold_run = run(cold, second, jobs=8, name="second.yaml")
    trees = [git(r, "rev-parse", f"plait/{rid}/integration^{{tree}}") for r, rid in ((warm, warm_run),
                                                                                       (cold, cold_run))]
    assert trees[0] == trees[1]
    assert files_at(warm, f"plait/{warm_run}/integration")["src/a.py"] == "a = 3\n"


def test_a_run_keeps_at_most_one_tree_per_job_and_clean_removes_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from gitfixtures import make_repo

    ws_root = tmp_path / "ws"
    monkeypatch.setenv("PLAIT_WORKSPACES", str(ws_root))
    repo = make_repo(tmp_path / "repo")
    first = run(repo, [task(f"t{n}", {f"t{n}.txt": "t\n"}) for n in range(4)], jobs=4, name="first.yaml")
    kept = kept_spares(ws_root)
    assert 2 <= len(kept) <= 4  # the integration took one of the four
    assert not api.run_paths(api.open_repo(repo), first).workspaces.exists()
    run(repo, [task("u", {"u.txt": "u\n"})], jobs=1, name="second.yaml")
    assert len(kept_spares(ws_root)) == 1
    cleaned = api.clean(cwd=repo, run_id=first)  # one run's: the repository's spares are no one run's
    assert len(kept_spares(ws_root)) == 1 and not cleaned.workspaces
    cleaned = api.clean(cwd=repo)
    assert kept_spares(ws_root) == set() and len(cleaned.workspaces) == 1
    assert not list(ws_root.glob("*/_spare"))
