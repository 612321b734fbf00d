"""Everything plait does with git. `Git` (repo.py) is the only code that runs the git binary.

- repo.py: `Git`, one repository; clean child environment; small queries and ref updates
- lock.py: `RepoLock`, serializes admin operations across threads and processes
- workspace.py: task worktrees (add, reuse, remove, prune, list)
- merge.py: checkout-free merges (`merge-tree --write-tree`), dependency bases, conflict radar
- stack.py: `--deliver stack` branches
"""

from __future__ import annotations

from plait.git.repo import Git, GitError, RefChanged

__all__ = ["Git", "GitError", "RefChanged"]
