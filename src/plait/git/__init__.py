"""Everything plait does with git. `Git` (repo.py) is the only code that runs the git binary.

- repo.py: `Git`, one repository; clean child environment; small queries and ref updates
- lock.py: `RepoLock`, serializes ref updates across threads and processes
- workspace.py: a task attempt's independent repository: create, capture, remove
- merge.py: checkout-free merges (`merge-tree --write-tree`), dependency bases, conflict radar
- stack.py: `--deliver stack` branches
"""

from __future__ import annotations

from plait.git.repo import Git, GitError, RefChanged

__all__ = ["Git", "GitError", "RefChanged"]
