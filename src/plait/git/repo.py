"""`Git`: one repository, and the only code in plait that runs git.

Every call is one small git command run through `plait.proc`. Children get a clean environment:
the user's variables minus every `GIT_*` (a `GIT_DIR` or `GIT_INDEX_FILE` inherited from a hook
would point git at the wrong repository), plus a fixed identity so plait's commits work on machines
without `user.name`, and config that keeps user settings from breaking non-interactive use.

The repository is found once, where the user started plait (`discover`); from then on every call
names it explicitly (`GIT_DIR`, `GIT_WORK_TREE`), so no git that plait runs ever walks up from
some directory to find a repository — a workspace whose `.git` an agent deleted included.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Self

from plait import where
from plait.errors import PlaitError
from plait.git import objects
from plait.git.lock import RepoLock

if TYPE_CHECKING:  # imported where git runs: `plait status` reads the state without running anything
    from plait import proc

log = logging.getLogger("plait.git")

MIN_VERSION = (2, 38)  # `git merge-tree --write-tree`

PLAIT_NAME, PLAIT_EMAIL = "plait", "plait@localhost"  # who plait's commits are by
PLAIT_IDENTITY = f"{PLAIT_NAME} <{PLAIT_EMAIL}>"
# Applied to every git plait runs, through GIT_CONFIG_COUNT (git >= 2.31), so no call can forget it.
PLAIT_CONFIG = (
    ("gc.auto", "0"),  # no auto-gc pauses or "Auto packing" noise in the middle of a run
    ("maintenance.auto", "false"),
    ("commit.gpgSign", "false"),  # a signing prompt would hang a worker
    ("core.hooksPath", os.devnull),  # the user's hooks are for the user's commits, not plait's
)


class GitError(PlaitError):
    """A git operation failed. `argv`, `returncode` and `stderr` say how, when a command did."""

    def __init__(self, message: str, fix: str = "", argv: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message, fix)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr

    @classmethod
    def failed(cls, done: proc.Completed, fix: str = "") -> Self:
        lines = [line.strip() for line in done.stderr.strip().splitlines() if line.strip()]
        tail = " | ".join(lines[-4:]) or "no message"
        return cls(f"`{' '.join(done.argv)}` failed (exit {done.returncode}): {tail}", fix, done.argv,
                   done.returncode, done.stderr)


class RefChanged(GitError):
    """A compare-and-swap ref update found the ref somewhere other than expected."""


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",  # `status` must not take index.lock in a worktree an agent is using
        LC_ALL="C",
        GIT_AUTHOR_NAME=PLAIT_NAME,
        GIT_AUTHOR_EMAIL=PLAIT_EMAIL,
        GIT_COMMITTER_NAME=PLAIT_NAME,
        GIT_COMMITTER_EMAIL=PLAIT_EMAIL,
        GIT_CONFIG_COUNT=str(len(PLAIT_CONFIG)),
    )
    for i, (key, value) in enumerate(PLAIT_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _run_git(argv: Sequence[str], cwd: Path, env: Mapping[str, str], input: str | None) -> proc.Completed:
    from plait import proc

    log.debug("git %s (in %s)", " ".join(argv[1:]), cwd)
    try:
        return proc.run(argv, cwd=cwd, env=env, input=input)
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise PlaitError(f"cannot run git in {cwd}: the directory does not exist") from exc
        raise PlaitError("git is not installed (or not on PATH)", "install git 2.38 or newer") from exc


@cache
def _check_version() -> None:
    done = _run_git(("git", "version"), Path("/"), clean_env(), None)
    found = re.search(r"(\d+)\.(\d+)", done.stdout)
    if not done.ok or not found:
        raise PlaitError(f"cannot tell git's version from {done.stdout.strip()!r}",
                         "install git 2.38 or newer")
    if (int(found[1]), int(found[2])) < MIN_VERSION:
        raise PlaitError(f"plait needs git {'.'.join(map(str, MIN_VERSION))} or newer, found {found[0]}",
                         "upgrade git")


def _locate(start: Path) -> tuple[Path, Path, Mapping[str, str], Path] | None:
    """(work tree, common dir, clean env, git dir) of the repository `start` is in, when plain to see."""
    found = where.locate(str(start))
    return None if found is None else (Path(found[0]), Path(found[1]), clean_env(), Path(found[2]))


class Git:
    """One repository: `root` is the working tree plait was started in, `common_dir` the shared `.git`."""

    def __init__(self, root: Path, common_dir: Path, env: Mapping[str, str] | None = None,
                 git_dir: Path | None = None) -> None:
        self.root = root
        self.common_dir = common_dir
        self.git_dir = git_dir or common_dir  # differs from common_dir in a linked worktree of the user's
        self.env = dict(env) if env is not None else clean_env()
        self.env.update(GIT_DIR=str(self.git_dir), GIT_WORK_TREE=str(root))
        self.lock = RepoLock(common_dir)

    @property
    def objects_dir(self) -> Path:
        return self.common_dir / "objects"

    @cached_property
    def _object_settings(self) -> dict[str, str] | None:
        """The settings that decide how git writes objects and commits here (None: unknown). One `git config`."""
        done = self.try_run("config", "-z", "--get-regexp",
                            r"^(extensions\.(compat)?objectformat|core\.sharedrepository|i18n\.commitencoding)$")
        if done.returncode not in (0, 1):  # 1: none of them set
            return None
        return {key: value for key, _, value in (item.partition("\n") for item in done.stdout.split("\0")) if key}

    @cached_property
    def plain_objects(self) -> bool:
        """Whether plait may write a loose object itself (`plait.git.objects`) in the form git writes it: a
        SHA-1 repository (no other `extensions.objectFormat`, no `compatObjectFormat` git keeps a map for)
        with git's default file modes (no `core.sharedRepository`)."""
        found = self._object_settings
        return (found is not None and found.get("extensions.objectformat", "sha1").lower() == "sha1"
                and "extensions.compatobjectformat" not in found
                and found.get("core.sharedrepository", "umask").lower() in ("umask", "false", "no", "off", "0"))

    @cached_property
    def plain_commits(self) -> bool:
        """Whether plait may also write its own commits (`commit`) as `git commit-tree` would: plain objects, and
        messages in UTF-8 (no other `i18n.commitEncoding`, which git records in the commit)."""
        return (self.plain_objects and self._object_settings is not None
                and self._object_settings.get("i18n.commitencoding", "utf-8").lower() in ("utf-8", "utf8"))

    def commit(self, tree: str, parents: Sequence[str], message: str) -> str:
        """A commit of `tree` with `parents` by plait, dated now (`git commit-tree`, never signed); no ref moves.
        Written by plait where git's own form allows (`plain_commits`): a process less for each."""
        if self.plain_commits and "\0" not in message:  # (git's own refuses or cuts a NUL: it decides)
            return objects.write_commit(self.objects_dir, tree, parents, message, objects.now(PLAIT_IDENTITY))
        args = [arg for parent in parents for arg in ("-p", parent)]
        return self.run("commit-tree", "--no-gpg-sign", tree, *args, "-F", "-", input=message).strip()

    def __repr__(self) -> str:
        return f"Git({str(self.root)!r})"

    @classmethod
    def discover(cls, path: Path) -> Git:
        _check_version()
        if not path.is_dir():
            raise PlaitError(f"{path} is not a directory", "run plait inside a git repository (git init)")
        env = clean_env()
        argv = ("git", "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir",
                "--absolute-git-dir")
        done = _run_git(argv, path, env, None)
        if not done.ok:
            if "not a git repository" in done.stderr:
                raise PlaitError(f"{path} is not inside a git repository",
                                 "run plait inside a git repository (git init)")
            if "work tree" in done.stderr:
                raise PlaitError(f"{path} has no working tree (a bare repository, or inside .git)",
                                 "run plait in a clone with a working tree")
            raise GitError.failed(done)
        root, common, git_dir = done.stdout.splitlines()[:3]
        return cls(Path(root), Path(common), env, Path(git_dir))

    @classmethod
    def find(cls, path: Path) -> Git:
        """`discover` without running git, for reads that must stay cheap (`plait status`): the first `.git`
        up from `path`, a folder or a file naming the git dir (a linked worktree, a submodule), and the common
        dir that git dir's `commondir` names. Like `discover`, `GIT_DIR` and the other `GIT_*` variables are
        ignored. What git would treat differently (a bare repository, a `core.worktree`, inside `.git`, another
        file system or another user's folder on the way up) is left to `discover`."""
        found = _locate(path.resolve())
        if found is None:
            return cls.discover(path)
        return cls(*found)

    @classmethod
    def init(cls, path: Path, initial_commit: str | None = None, branch: str = "main") -> Git:
        """`git init` (and optionally commit everything in `path`): for the demo and for tests."""
        _check_version()
        path.mkdir(parents=True, exist_ok=True)
        argv = ("git", "init", "-q", "-b", branch)
        done = _run_git(argv, path, clean_env(), None)
        if not done.ok:
            raise GitError.failed(done)
        git = cls.discover(path)
        if initial_commit is not None:
            git.run("add", "-A")
            git.run("commit", "-q", "--no-verify", "--allow-empty", "-F", "-", input=initial_commit)
        return git

    # -- running --------------------------------------------------------------------------
    def try_run(self, *args: str, cwd: Path | None = None, input: str | None = None,
                env: Mapping[str, str] | None = None) -> proc.Completed:
        """Run git; the caller reads the exit code. `env` adds to (or overrides) the clean environment."""
        return _run_git(("git", *args), cwd or self.root, {**self.env, **env} if env else self.env, input)

    def run(self, *args: str, cwd: Path | None = None, input: str | None = None,
            env: Mapping[str, str] | None = None) -> str:
        """Run git and return its stdout exactly as printed; GitError if it fails."""
        done = self.try_run(*args, cwd=cwd, input=input, env=env)
        if not done.ok:
            raise GitError.failed(done)
        return done.stdout

    # -- queries --------------------------------------------------------------------------
    def rev_parse(self, rev: str) -> str | None:
        """The object name `rev` stands for, or None if there is none."""
        if rev.startswith("-"):
            return None
        done = self.try_run("rev-parse", "--verify", "--quiet", rev)
        return done.stdout.strip() if done.ok else None

    def resolve_commit(self, rev: str) -> str:
        """The commit `rev` names, or a user error saying how to pick one."""
        sha = self.rev_parse(f"{rev}^{{commit}}")
        if sha is not None:
            return sha
        if rev == "HEAD" and self.rev_parse("HEAD") is None:
            raise PlaitError("the repository has no commits yet", "make a first commit (git commit)")
        raise PlaitError(f"{rev!r} is not a commit in {self.root}",
                         "use a branch, tag or commit SHA that exists (see `git log --oneline`)")

    def tree_of(self, rev: str) -> str:
        return self.run("rev-parse", "--verify", f"{rev}^{{tree}}").strip()

    def message_of(self, commit: str) -> str:
        return self.run("log", "-1", "--format=%B", commit).strip()

    def head_branch(self) -> str | None:
        """The checked-out branch's short name, or None when HEAD is detached."""
        done = self.try_run("symbolic-ref", "--quiet", "--short", "HEAD")
        return done.stdout.strip() if done.ok else None

    def branch_exists(self, branch: str) -> bool:
        return self.try_run("show-ref", "--verify", "--quiet", f"refs/heads/{branch}").ok

    def list_refs(self, prefix: str) -> dict[str, str]:
        """Every ref under `prefix` (e.g. `refs/heads/plait/`) and the object it points at."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths that differ between two commits; a rename counts as both of its paths."""
        out = self.run("diff", "--name-only", "--no-renames", "-z", base, head, "--")
        return [p for p in out.split("\0") if p]

    def count_files(self, rev: str) -> int:
        """How many files (blobs and links) the tree of `rev` holds."""
        return sum(1 for line in self.run("ls-tree", "-r", "-z", "--name-only", rev).split("\0") if line)

    def status_porcelain(self) -> str:
        return self.run("status", "--porcelain=v1", "-z", "--untracked-files=all")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        done = self.try_run("merge-base", "--is-ancestor", ancestor, descendant)
        if done.returncode not in (0, 1):
            raise GitError.failed(done)
        return done.returncode == 0

    # -- writes ---------------------------------------------------------------------------
    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        """Compare-and-swap: point `ref` at `new` only if it now points at `old`.

        `old=None` means the ref must not exist yet (create). There is deliberately no
        unconditional form: read the ref, decide, then swap, so a concurrent change is never lost.
        """
        self.update_refs([(ref, new, old)])

    def update_refs(self, updates: Sequence[tuple[str, str, str | None]]) -> None:
        """Several compare-and-swap updates `(ref, new, old)` in one transaction: all or none."""
        if not updates:
            return
        lines = []
        for ref, new, old in updates:
            _check_full_ref(ref)
            lines.append(f"update {ref} {new} {old or '0' * len(new)}\n")
        with self.lock:
            done = self.try_run("update-ref", "-m", "plait", "--stdin", input="".join(lines))
            if not done.ok:
                moved = [ref for ref, _, old in updates if self.rev_parse(ref) != old]
                kind = RefChanged if moved else GitError
                raise kind.failed(done, f"{', '.join(moved)} moved while plait was working; run again"
                                  if moved else "")

    def delete_ref(self, ref: str, old: str | None = None) -> None:
        """Delete `ref`; when `old` is given, only if it still points there. A missing ref is fine."""
        _check_full_ref(ref)
        with self.lock:
            self.run("update-ref", "-m", "plait", "-d", ref, *([old] if old else []))


def _check_full_ref(ref: str) -> None:
    # A short name here would create `.git/main`, next to (not instead of) the branch.
    if not ref.startswith("refs/"):
        raise ValueError(f"expected a full ref name (refs/...), got {ref!r}")
