"""plait.git.lock.RepoLock: one holder at a time across threads and processes, reentrant per thread."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gitfixtures import make_repo
from plait.errors import PlaitError
from plait.git.lock import RepoLock

# Runs in a child process: increments a counter file under the lock from two threads, and
# reports when it held the lock. A lost update or an overlap means the lock let two in.
CONTENDER = """
import json, os, sys, threading, time
from pathlib import Path
from plait.git.lock import RepoLock
common, counter, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
spans = []
print("ready", flush=True)
sys.stdin.readline()  # start together
def work():
    for _ in range(rounds):
        asked = time.time()
        with RepoLock(common):
            start = time.time()
            with RepoLock(common):  # reentrant
                value = int(counter.read_text())
                counter.write_text(str(value + 1))
            spans.append((start, time.time(), os.getpid(), asked))
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(spans), flush=True)
"""

HOLDER = """
import sys
from pathlib import Path
from plait.git.lock import RepoLock
with RepoLock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def common(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo") / ".git"


def test_the_lock_file_lives_in_the_common_dir(common: Path) -> None:
    lock = RepoLock(common)
    assert lock.path == common / "plait" / "git.lock"
    with lock:
        assert lock.path.exists()


def test_reentrant_in_one_thread_exclusive_between_threads(common: Path) -> None:
    outcome: list[str] = []

    def other() -> None:
        try:
            with RepoLock(common, timeout=0.2):
                outcome.append("got it")
        except PlaitError as exc:
            outcome.append(str(exc))

    with RepoLock(common), RepoLock(common):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(outcome) == 1 and "another thread of this process" in outcome[0]
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert outcome[1] == "got it"


def test_another_process_holding_the_lock_blocks_us_until_it_exits(common: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(common)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        with pytest.raises(PlaitError) as info, RepoLock(common, timeout=0.3):
            pass
        assert "another process" in info.value.message and "plait run" in info.value.fix
    finally:
        child.communicate("")
    with RepoLock(common, timeout=5):
        pass


def test_processes_and_threads_never_hold_it_together(common: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs, rounds = 4, 25
    argv = [sys.executable, "-c", CONTENDER, str(common), str(counter), str(rounds)]
    children = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(procs)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    assert int(counter.read_text()) == procs * 2 * rounds  # no lost update
    spans = sorted(tuple(span) for out in outputs for span in json.loads(out))
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))
    # The processes really competed: each one was asking while another one was working.
    windows = {pid: (min(s[3] for s in spans if s[2] == pid), max(s[1] for s in spans if s[2] == pid))
               for pid in {s[2] for s in spans}}
    assert len(windows) == procs
    assert all(any(o != pid and windows[o][0] < w[1] and w[0] < windows[o][1] for o in windows)
               for pid, w in windows.items())
