"""Each attempt's working environment (docs/environment.md): setup and teardown, copied files, ports,
dependency caches — through real runs of the `script` agent, and the pieces on their own."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from plait.plan.model import Cache, Plan
from plait.run import envcache, ports
from plait.sandbox import support
from runfixtures import events, git, latest_run, make_repo, plait, task, write_plan

SECRET = "s3cr3t-value-never-logged"


def results(repo: Path, run_id: str, tid: str) -> dict[str, Any]:
    return dict(json.loads((repo / ".plait" / "runs" / run_id / "tasks" / tid / "results.json").read_text()))


def everything_under(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode(errors="replace") for p in folder.rglob("*")
                     if p.is_file() and not p.is_symlink())


def env_repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "requirements.txt": "left-pad==1\n"})
    (repo / ".env").write_text(f"API_URL=http://localhost\nDB_PASS={SECRET}\n")  # untracked, like a real .env
    return repo


def test_setup_copy_ports_and_teardown_reach_the_evidence_and_never_the_commit(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}, script={
        "write": {"a.txt": "a\n"},
        "run": ["echo web=$PLAIT_PORT_WEB db=$PLAIT_PORT_DB slot=$PLAIT_SLOT compose=$COMPOSE_PROJECT_NAME > seen.txt",
                "cat .env"]}, files=["a.txt", "seen.txt"])],
        defaults={"copy": [".env"], "ports": ["web", "db"],
                  "setup": ["echo setting up $PLAIT_PORT_WEB", "cat .env"],
                  "teardown": "echo tearing down $PLAIT_SLOT",
                  "verify": "test -f .env && grep -q DB_PASS .env && test -n \"$PLAIT_PORT_DB\" && cat .env"})
    done = plait(repo, "run", str(plan))
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    env = results(repo, run_id, "a")["environment"]
    web, db = env["ports"]["web"], env["ports"]["db"]
    assert web != db and all(ports.RANGE[0] <= p <= ports.RANGE[1] for p in (web, db))
    assert env["copied"] == [".env"]
    assert env["setup"][0]["output_tail"] == f"setting up {web}\n"
    assert env["teardown"][0]["command"] == "echo tearing down $PLAIT_SLOT"
    assert env["teardown"][0]["output_tail"] == f"tearing down {env['slot']}\n"
    seen = git(repo, "show", f"plait/{run_id}/a:seen.txt")
    assert seen == f"web={web} db={db} slot={env['slot']} compose={env['slot']}"
    committed = git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/a").split()
    assert ".env" not in committed and sorted(committed) == ["README.md", "a.txt", "requirements.txt", "seen.txt"]
    evidence = (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "EVIDENCE.md").read_text()
    assert "## Environment" in evidence and f"web {web}" in evidence
    # The secret went through setup, the agent and verify: masked everywhere plait wrote.
    assert SECRET not in everything_under(repo / ".plait")
    assert SECRET not in json.dumps(events(repo, run_id))
    assert "DB_PASS=***" in (repo / ".plait" / "runs" / run_id / "tasks" / "a" / "logs" / "attempt-1"
                             / "setup.log").read_text()


def test_a_failing_setup_fails_the_attempt_with_its_output_and_the_agent_never_runs(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})],
                      defaults={"setup": ["echo fine", "echo the database would not start >&2; exit 3", "echo never"],
                                "teardown": ["echo cleaned up"], "retries": 0})
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    rec = results(repo, latest_run(repo), "a")
    assert rec["error"].startswith("environment: setup `echo the database would not start >&2; exit 3` exited 3")
    assert "the database would not start" in rec["error"]
    assert "exit_code" not in rec["agent"]  # the agent never ran
    assert [s["command"] for s in rec["environment"]["setup"]][-1].endswith("exit 3")
    assert len(rec["environment"]["setup"]) == 2
    assert rec["environment"]["teardown"][0]["output_tail"] == "cleaned up\n"  # undoes what setup began
    assert not [e for e in events(repo, latest_run(repo)) if e["kind"] == "task.agent_done"]


def test_teardown_runs_after_an_agent_times_out(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("slow", {"s.txt": "x\n"}, delay="60s", timeout="2s")],
                      defaults={"ports": ["web"], "teardown": "echo down on $PLAIT_PORT_WEB", "retries": 0})
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    rec = results(repo, latest_run(repo), "slow")
    assert "timeout" in rec["error"] or "timed out" in rec["error"]
    port = rec["environment"]["ports"]["web"]
    assert rec["environment"]["teardown"][0]["output_tail"] == f"down on {port}\n"


def test_teardown_runs_after_a_cancel(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("slow", {"s.txt": "x\n"}, delay="120s")],
                      defaults={"setup": "echo up", "teardown": "echo down after cancel", "retries": 0})
    runner = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        run_id = ""
        while time.monotonic() < deadline:  # the agent is running once its setup has been logged
            try:
                run_id = latest_run(repo)
                logs = repo / ".plait" / "runs" / run_id / "tasks" / "slow" / "logs" / "attempt-1"
                if (logs / "setup.log").is_file():
                    break
            except Exception:
                pass
            time.sleep(0.05)
        assert run_id, "the run never started"
        assert plait(repo, "cancel", run_id).returncode == 0
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert "Traceback" not in err
    rec = results(repo, run_id, "slow")
    assert rec["ok"] is False
    assert rec["environment"]["teardown"][0]["output_tail"] == "down after cancel\n"


def test_ports_are_distinct_free_and_released() -> None:
    first = ports.reserve(["web", "db"])
    second = ports.reserve(["web"])
    try:
        held = [*first.by_name.values(), *second.by_name.values()]
        assert len(set(held)) == 3
        assert first.variables() == {"PLAIT_PORT_WEB": str(first.by_name["web"]),
                                     "PLAIT_PORT_DB": str(first.by_name["db"])}
        # Held across processes too: another plait cannot take the lock of a held port.
        fd = os.open(ports.lock_folder() / str(held[0]), os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # and the port itself is usable by the attempt's own server
        with socket.socket() as s:
            s.bind(("127.0.0.1", held[0]))
    finally:
        first.release()
        second.release()
        first.release()  # twice is fine
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free to take
    os.close(fd)
    assert not set(held) & ports._held


def test_a_port_in_use_is_never_handed_out() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ports.NoFreePort):
            ports.reserve(["web"], span=(taken, taken))


def test_attempt_ports_are_released_when_the_attempt_ends(tmp_path: Path) -> None:
    from plait.run import environment

    tree = tmp_path / "tree"
    for d in ("tree", "home", "tmp"):
        (tmp_path / d).mkdir()
    where = environment.Where(repo_root=tmp_path, cache_root=tmp_path / "cache", tree=tree, home=tmp_path / "home",
                              tmp=tmp_path / "tmp", log_dir=tmp_path / "logs", timeout=60, cancel=threading.Event(),
                              base_env=dict(os.environ), landlock=support().landlock_abi is not None)
    spec = environment.resolve([Plan.model_validate({"plait": 1, "name": "p", "defaults": {"ports": ["web"]},
                                                     "tasks": [{"id": "t", "title": "t", "prompt": "p"}]}).defaults])
    env = environment.AttemptEnvironment(spec, where, "slot")
    assert env.prepare() is None
    port = env.held.by_name["web"]
    assert port in ports._held
    env.finish()
    assert port not in ports._held
    fd = os.open(ports.lock_folder() / str(port), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


DEPS = {"path": "deps", "key": "requirements.txt",
        "build": "mkdir deps && cp requirements.txt deps/ && echo installed > deps/INSTALLED && echo built"}


def test_a_cache_is_built_once_for_concurrent_attempts_and_shared_read_only(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    attack = "echo corrupted > deps/INSTALLED && echo wrote > wrote.txt || echo refused > refused.txt"
    tasks = [task(t, {f"{t}.txt": t}, script={"write": {f"{t}.txt": t}, "run": ["cat deps/INSTALLED > used.txt",
                                                                             attack]},
                  files=[f"{t}.txt", "used.txt", "wrote.txt", "refused.txt"])
             for t in ("a", "b", "c")]
    plan = write_plan(repo, tasks, defaults={"cache": [DEPS], "verify": "test -f deps/INSTALLED"},
                      integration={"agents": False})
    done = plait(repo, "run", str(plan), "--jobs", "3")
    run_id = latest_run(repo)
    records = [results(repo, run_id, t) for t in ("a", "b", "c")]
    assert all(r["ok"] for r in records), done.stdout + done.stderr
    caches = [r["environment"]["caches"][0] for r in records]
    assert sum(c["built"] for c in caches) == 1, caches  # built once, however the three met
    assert len({c["entry"] for c in caches}) == 1
    entry = Path(caches[0]["entry"])
    assert (entry / "INSTALLED").read_text() == "installed\n"
    for t in ("a", "b", "c"):
        branch = f"plait/{run_id}/{t}"
        assert git(repo, "show", f"{branch}:used.txt") == "installed"
        names = git(repo, "ls-tree", "-r", "--name-only", branch).split()
        assert not [n for n in names if n.startswith("deps")]  # the link is never committed
        if support().landlock_abi is not None:
            assert "refused.txt" in names and "wrote.txt" not in names


def test_a_failed_cache_build_fails_the_attempt_and_publishes_nothing(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    broken = {**DEPS, "build": "mkdir deps && echo resolver conflict && exit 7"}
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], defaults={"cache": [broken], "retries": 0})
    assert plait(repo, "run", str(plan)).returncode == 1
    rec = results(repo, latest_run(repo), "a")
    assert "cache deps: its build" in rec["error"] and "resolver conflict" in rec["error"]
    (root,) = Path(os.environ["HOME"]).rglob("_environment-cache")  # the isolated HOME's workspaces
    assert not list(root.glob("*.ready")) and not [p for p in root.iterdir() if p.is_dir()]


def test_cache_entries_are_keyed_by_content_and_a_half_built_one_is_rebuilt(tmp_path: Path) -> None:
    tree, root = tmp_path / "tree", tmp_path / "cache"
    tree.mkdir()
    (tree / "requirements.txt").write_text("a==1\n")
    spec = Cache.model_validate(DEPS)
    builds: list[Path] = []

    def build(folder: Path) -> str | None:
        builds.append(folder)
        (folder / "deps").mkdir()
        (folder / "deps" / "x").write_text((folder / "requirements.txt").read_text())
        return None

    never = threading.Event()
    first = envcache.obtain(spec, tree, root, build, never)
    again = envcache.obtain(spec, tree, root, build, never)
    assert first.built and not again.built and first.entry == again.entry and len(builds) == 1
    assert not os.access(first.entry / "x", os.W_OK) or os.geteuid() == 0  # no write bits left
    assert not (os.stat(first.entry / "x").st_mode & 0o222)
    (tree / "requirements.txt").write_text("a==2\n")
    changed = envcache.obtain(spec, tree, root, build, never)
    assert changed.built and changed.entry != first.entry and (changed.entry / "x").read_text() == "a==2\n"
    # A builder that died left a folder without its `.ready`: the next one starts again.
    stale = changed.entry.parent
    stale.with_name(stale.name + ".ready").unlink()
    assert envcache.obtain(spec, tree, root, build, never).built and len(builds) == 3
    envcache.link(changed, tree)
    assert (tree / "deps").is_symlink() and (tree / "deps" / "x").read_text() == "a==2\n"


def test_a_copied_or_cached_path_the_repository_holds_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# x\n", ".env": "TRACKED=1\n"})
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], defaults={"copy": [".env"], "retries": 0})
    assert plait(repo, "run", str(plan)).returncode == 1
    assert "the repository itself holds .env" in results(repo, latest_run(repo), "a")["error"]


def test_the_layers_task_then_defaults_then_plait_toml(tmp_path: Path) -> None:
    from plait.run import environment

    repo = env_repo(tmp_path)
    (repo / "plait.toml").write_text('[environment]\nsetup = ["echo from toml"]\nports = ["web"]\ncopy = [".env"]\n')
    plan = Plan.model_validate({"plait": 1, "name": "p", "defaults": {"ports": ["api"]}, "tasks": [
        {"id": "t", "title": "t", "prompt": "p", "setup": "echo from task"},
        {"id": "u", "title": "u", "prompt": "p"}]})
    t, u = (environment.for_task(plan, x, repo) for x in plan.tasks)
    assert t.setup == ["echo from task"] and t.ports == ["api"] and t.copy_files == [".env"]
    assert u.setup == ["echo from toml"] and u.ports == ["api"]


def test_invalid_environment_settings_are_plan_errors(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a"}, ports=["web", "WEB"], copy=["/etc/passwd"])],
                      defaults={"cache": [{"path": ".git", "key": "x", "build": "true"}]})
    done = plait(repo, "check", str(plan))
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "port 'WEB' is listed twice" in out
    assert "'/etc/passwd' is an absolute path" in out
    assert "'.git' is not a file the workspace may be given" in out
    (repo / "plait.toml").write_text('[environment]\nports = ["not a name"]\n')
    good = write_plan(repo, [task("a", {"a.txt": "a"})], name="good.yaml")
    assert "[environment] is not valid" in plait(repo, "check", str(good)).stderr


def test_check_reports_each_tasks_environment(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, ports=["web", "db"], setup=[])],
                      defaults={"copy": [".env"], "ports": ["web"], "setup": "make dev", "cache": [DEPS]})
    doc = json.loads(plait(repo, "check", str(plan), "--json").stdout)
    a, b = doc["environments"]["a"], doc["environments"]["b"]
    assert a["copy"] == [".env"] and a["ports"] == {"web": "PLAIT_PORT_WEB"} and a["setup"] == ["make dev"]
    assert a["copy_missing"] == []
    assert b["ports"] == {"web": "PLAIT_PORT_WEB", "db": "PLAIT_PORT_DB"} and b["setup"] == []
    assert a["cache"][0]["state"] == "built by the first attempt that needs it"
    assert a["writable"] == ["the work tree", "the task's private home", "the attempt's private tmp"]
    text = plait(repo, "check", str(plan)).stdout
    assert "Environment of each task" in text and "PLAIT_PORT_DB" in text
    assert yaml.safe_load(plan.read_text())["defaults"]["copy"] == [".env"]


def test_a_copy_through_a_symlink_the_repository_holds_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "conf").symlink_to(outside, target_is_directory=True)
    git(repo, "add", "conf")
    git(repo, "commit", "-qm", "a symlink to a folder outside")
    (outside / "local.json").write_text('{"key": "from the checkout"}\n')  # what `copy` reads, through it
    before = (outside / "local.json").read_text()
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], defaults={"copy": ["conf/local.json"], "retries": 0})
    assert plait(repo, "run", str(plan)).returncode == 1
    assert "would be written outside the workspace" in results(repo, latest_run(repo), "a")["error"]
    assert (outside / "local.json").read_text() == before


def test_a_tree_passed_on_to_the_next_task_does_not_carry_the_copied_files(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    plan = write_plan(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"}, needs=["a"], copy=[], cache=[],
                                                              verify="test ! -e .env && test ! -e deps")],
                      defaults={"copy": [".env"], "cache": [DEPS], "verify": "test -f .env && test -d deps"})
    done = plait(repo, "run", str(plan), "--jobs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    assert results(repo, run_id, "b")["environment"] is None
    assert git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/b").split() == [
        "README.md", "a.txt", "b.txt", "requirements.txt"]


def test_the_integration_workspace_gets_the_copied_files_and_caches_and_never_commits_them(tmp_path: Path) -> None:
    repo = env_repo(tmp_path)
    check = "test -f .env && grep -q DB_PASS .env && test -f deps/INSTALLED"
    plan = write_plan(repo, [task("a", {"a.txt": "a"}), task("b", {"b.txt": "b"})],
                      defaults={"copy": [".env"], "cache": [DEPS], "verify": check},
                      integration={"verify": check})
    done = plait(repo, "run", str(plan), "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    names = git(repo, "ls-tree", "-r", "--name-only", f"plait/{latest_run(repo)}/integration").split()
    assert names == ["README.md", "a.txt", "b.txt", "requirements.txt"]
    assert SECRET not in everything_under(repo / ".plait")
