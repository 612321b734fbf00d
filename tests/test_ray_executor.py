"""The Ray executor on a real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head
that runs no attempts and worker nodes with distinct resources), driven through the real CLI.

One cluster for the whole module (starting one takes seconds); a test that kills a node adds its own.
Waits are for events, never for time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostile import marked, wait_gone
from runfixtures import events, git, latest_run, make_repo, plait, require_cli

SECRET = f"s3cret-{uuid.uuid4().hex}"  # allowed to the `pinned` profile's agents only
OTHER = f"unlisted-{uuid.uuid4().hex}"  # allowed to no agent
MB = 1024 * 1024
TIMEOUT = 300.0

PLAIT_TOML = """\
[profiles.pinned]
adapter = "script"
env = ["PLAIT_RAY_TEST_SECRET"]

[executor.resources]
default = { agent_slot = 1, plain = 1 }
pinned = { agent_slot = 1, special = 1 }
"""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        message = 'Ray is not installed: pip install -e ".[test,ray]" (scripts/test does)'
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return ray


class Nodes:
    """The module's cluster and its worker nodes' resources (node id -> what it was started with)."""

    def __init__(self, cluster: Any) -> None:  # ray.cluster_utils.Cluster
        self.cluster = cluster
        self.address: str = cluster.address
        self.nodes: dict[str, tuple[Any, dict[str, float]]] = {}

    def add(self, **resources: float) -> str:
        node = self.cluster.add_node(num_cpus=1, resources=resources, object_store_memory=80 * MB)
        self.cluster.wait_for_nodes()
        self.nodes[node.node_id] = (node, resources)
        return str(node.node_id)

    def kill(self, node_id: str) -> None:
        node, _ = self.nodes.pop(node_id)
        self.cluster.remove_node(node, allow_graceful=False)

    def with_resource(self, name: str) -> set[str]:
        return {n for n, (_, r) in self.nodes.items() if name in r}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """A head that runs no attempts, node A {agent_slot: 3, plain: 3} and node B {agent_slot: 3, special: 2,
    plain: 1}. Node B takes at most one unpinned attempt at a time, so the two pinned gated tasks (b1, b3,
    which only B can run) always find a slot there while the gated level waits: were B filled with unpinned
    attempts, a pinned one would wait for a slot that the test's gate holds, and the run would hang."""
    _ray()
    from ray.cluster_utils import Cluster

    nodes = tmp_path_factory.mktemp("nodes")
    saved = {k: os.environ.get(k) for k in ("PLAIT_NODE_ROOT", "PLAIT_RAY_TEST_SECRET", "PLAIT_RAY_TEST_OTHER")}
    # The nodes' processes inherit this environment: the secrets are set so a leak would show.
    os.environ.update(PLAIT_NODE_ROOT=str(nodes), PLAIT_RAY_TEST_SECRET=SECRET, PLAIT_RAY_TEST_OTHER=OTHER)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * MB})
    found = Nodes(c)
    found.add(agent_slot=3, plain=3)
    found.add(agent_slot=3, special=2, plain=1)
    try:
        yield found
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def twelve_tasks(gate: Path | None = None, mark: str = "") -> list[dict[str, Any]]:
    """Four roots, four tasks on two roots each, three on those, one at the end: each writes a file from
    its dependencies' files, so the tree shows that every base was merged right. With `gate`, the
    middle tasks wait for that file (a `sleep <mark>` in their command line to find them by)."""
    wait = f"while [ ! -f {gate} ]; do sleep {mark}; done; " if gate else ""
    tasks: list[dict[str, Any]] = []
    for i in range(1, 5):
        tasks.append({"id": f"a{i}", "title": f"a{i}", "prompt": "p", "files": [f"out/a{i}.txt"],
                      "script": {"write": {f"out/a{i}.txt": f"a{i}\n"}}, "verify": f"test -s out/a{i}.txt"})
    for i in range(1, 5):
        x, y = f"a{i}", f"a{i % 4 + 1}"
        tasks.append({"id": f"b{i}", "title": f"b{i}", "prompt": "p", "needs": [x, y], "files": [f"out/b{i}.txt"],
                      "agent": "pinned" if i % 2 else "script",
                      "script": {"run": [wait + f"cat out/{x}.txt out/{y}.txt > out/b{i}.txt; "
                                         f"printf '%s' \"${{PLAIT_RAY_TEST_SECRET:-none}}\" | sha256sum "
                                         f"> out/b{i}.env; echo \"${{PLAIT_RAY_TEST_OTHER:-unset}}\" >> out/b{i}.env"]},
                      "verify": f"test -s out/b{i}.txt"})
    for i in range(1, 4):
        needs = [f"b{i}", f"b{i + 1}"]
        tasks.append({"id": f"c{i}", "title": f"c{i}", "prompt": "p", "needs": needs, "files": [f"out/c{i}.txt"],
                      "script": {"run": [f"cat out/b{i}.txt out/b{i + 1}.txt > out/c{i}.txt"]},
                      "verify": f"test -s out/c{i}.txt"})
    tasks.append({"id": "d", "title": "d", "prompt": "p", "needs": ["c1", "c2", "c3"], "files": ["out/d.txt"],
                  "script": {"run": ["cat out/c1.txt out/c2.txt out/c3.txt > out/d.txt"]},
                  "verify": "test -s out/d.txt"})
    return tasks


def new_repo(tmp_path: Path, tasks: list[dict[str, Any]], name: str = "repo") -> tuple[Path, Path]:
    repo = make_repo(tmp_path / name, {"README.md": "# project\n", "plait.toml": PLAIT_TOML})
    plan = tmp_path / f"{name}-plan.yaml"
    plan.write_text(yaml.safe_dump({"plait": 1, "name": "twelve", "tasks": tasks}, sort_keys=False))
    return repo, plan


def integration_tree(repo: Path, run_id: str) -> str:
    return git(repo, "rev-parse", f"plait/{run_id}/integration^{{tree}}")


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The 12-task plan's integration tree with the local executor: what every Ray run must end with."""
    repo, plan = new_repo(tmp_path_factory.mktemp("local"), twelve_tasks())
    done = plait(repo, "run", str(plan), "--executor", "local", "--jobs", "4", timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return integration_tree(repo, latest_run(repo))


def placed(evts: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Task -> the nodes its attempts' workspaces were made on, in order (from `task.workspace` events)."""
    out: dict[str, list[str]] = {}
    for e in evts:
        if e["kind"] == "task.workspace":
            out.setdefault(e["task"], []).append(e["data"]["node"])
    return out


def wait_for(what: str, check: Any, runner: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + TIMEOUT  # generous: an outer bound, not a budget
    while not (found := check()):
        assert runner is None or runner.poll() is None, f"the run ended before {what}: {runner.communicate()}"
        if time.monotonic() > deadline:
            if runner is not None:
                runner.kill()
            raise AssertionError(f"never saw {what}: {runner.communicate()[0][-4000:] if runner else ''}")
        time.sleep(0.1)
    return found


def run_events(repo: Path) -> list[dict[str, Any]]:
    try:
        return events(repo, latest_run(repo))
    except Exception:  # the database is not there yet
        return []


def start(repo: Path, plan: Path, address: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan), "--executor", "ray", "--address",
                             address, "--jobs", "6", *extra], cwd=repo, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def gated_running(repo: Path, count: int) -> bool:
    """`count` gated (middle) tasks have their workspace on a node and are waiting at the gate."""
    evts = run_events(repo)
    return sum(1 for t in placed(evts) if t.startswith("b")) >= count


def resume_to_the_same_tree(repo: Path, run_id: str, gate: Path, local_tree: str) -> None:
    """Open the gate, `plait resume`: the local executor's tree, and the tasks verified before the run stopped
    never run again."""
    gate.write_text("open")
    resumed = plait(repo, "resume", run_id, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert integration_tree(repo, run_id) == local_tree
    evts = events(repo, run_id)
    for t in ("a1", "a2", "a3", "a4"):
        assert sum(1 for e in evts if e["kind"] == "task.started" and e["task"] == t) == 1


def test_twelve_tasks_run_on_several_nodes_with_the_local_executors_tree(cluster: Nodes, local_tree: str,
                                                                           tmp_path: Path) -> None:
    repo, plan = new_repo(tmp_path, twelve_tasks())
    done = plait(repo, "run", str(plan), "--executor", "ray", "--address", cluster.address, "--jobs", "6",
                 timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    where = placed(evts)
    assert sorted(where) == sorted(t["id"] for t in twelve_tasks())
    assert len({n for nodes in where.values() for n in nodes}) >= 2, where  # spread over the nodes
    # Profile `pinned` asks for `special`, which only node B has.
    assert {where[t][0] for t in ("b1", "b3")} <= cluster.with_resource("special"), where
    assert integration_tree(repo, run_id) == local_tree
    # The pinned profile's agents got its allowed variable; the unlisted one reached no agent.
    digest = subprocess.run(["sha256sum"], input=SECRET, capture_output=True, text=True).stdout.split()[0]
    for t, secret in (("b1", digest), ("b2", None)):
        env_file = git(repo, "show", f"plait/{run_id}/{t}:out/{t}.env")
        assert (digest in env_file) is (secret is not None), env_file
        assert "unset" in env_file and OTHER not in env_file
    # Never in the clear in the evidence, the run's logs or the cluster's logs.
    session = Path(cluster.cluster.head_node.get_session_dir_path())
    for folder in (repo / ".plait", session):
        for f in folder.rglob("*"):
            if f.is_file() and f.stat().st_size < 50 * MB:
                assert SECRET.encode() not in f.read_bytes(), f


def test_status_cancel_and_resume_during_a_ray_run(cluster: Nodes, local_tree: str, tmp_path: Path) -> None:
    gate, mark = tmp_path / "gate", f"0.0{uuid.uuid4().int % 10**6:06d}"
    repo, plan = new_repo(tmp_path, twelve_tasks(gate, mark))
    runner = start(repo, plan, cluster.address)
    try:
        wait_for("gated tasks running on nodes", lambda: gated_running(repo, 4), runner)
        run_id = latest_run(repo)
        status = json.loads(plait(repo, "status", run_id, "--json", check=True).stdout)
        running = {t["id"] for t in status["tasks"] if t["state"] == "running"}
        assert {"b1", "b2", "b3", "b4"} <= running, status["tasks"]
        agents = wait_for("the gated agents' processes", lambda: marked(f"sleep {mark}"))
        asked = time.monotonic()
        cancelled = plait(repo, "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert wait_gone(agents, TIMEOUT) == [], "a remote agent outlived the cancel"
        stopped_in = time.monotonic() - asked
        out, _ = runner.communicate(timeout=TIMEOUT)
    finally:
        if runner.poll() is None:
            runner.kill()
    print(f"cancel reached the remote agents in {stopped_in:.2f}s")
    assert runner.returncode != 0, out
    assert [e["data"]["status"] for e in events(repo, run_id) if e["kind"] == "run.finished"] == ["cancelled"]
    resume_to_the_same_tree(repo, run_id, gate, local_tree)


def test_a_lost_node_s_attempts_run_again_elsewhere(cluster: Nodes, local_tree: str, tmp_path: Path) -> None:
    gate, mark = tmp_path / "gate", f"0.0{uuid.uuid4().int % 10**6:06d}"
    repo, plan = new_repo(tmp_path, twelve_tasks(gate, mark))
    runner = start(repo, plan, cluster.address)
    try:
        wait_for("gated tasks running on nodes", lambda: gated_running(repo, 4), runner)
        where = placed(run_events(repo))
        victim = where["b1"][-1]
        on_victim = sorted(t for t, nodes in where.items() if t.startswith("b") and nodes[-1] == victim)
        cluster.add(**cluster.nodes[victim][1])  # a node like it joins, so the pinned tasks have a place
        cluster.kill(victim)
        wait_for("the lost attempts placed again", lambda: all(
            len(placed(run_events(repo))[t]) >= 2 for t in on_victim), runner)
        gate.write_text("open")
        out, _ = runner.communicate(timeout=TIMEOUT)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, out
    run_id = latest_run(repo)
    evts = events(repo, run_id)
    assert {e["task"] for e in evts if e["kind"] == "task.node_lost"} == set(on_victim)
    for t in on_victim:
        assert placed(evts)[t][-1] != victim
    for t in {x["id"] for x in twelve_tasks()}:  # no verified task ran twice
        assert sum(1 for e in evts if e["kind"] == "task.done" and e["task"] == t) == 1
        assert sum(1 for e in evts if e["kind"] == "task.attempt_done" and e["task"] == t
                   and e["data"]["outcome"] == "verified") == 1
    assert integration_tree(repo, run_id) == local_tree


def test_a_killed_driver_resumes_to_the_same_tree(cluster: Nodes, local_tree: str, tmp_path: Path) -> None:
    gate, mark = tmp_path / "gate", f"0.0{uuid.uuid4().int % 10**6:06d}"
    repo, plan = new_repo(tmp_path, twelve_tasks(gate, mark))
    runner = start(repo, plan, cluster.address)
    try:
        wait_for("gated tasks running on nodes", lambda: gated_running(repo, 4), runner)
        agents = wait_for("the gated agents' processes", lambda: marked(f"sleep {mark}"))
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    assert wait_gone(agents, TIMEOUT) == [], "a remote agent outlived its SIGKILLed driver"
    run_id = latest_run(repo)
    resume_to_the_same_tree(repo, run_id, gate, local_tree)


def test_an_unknown_executor_in_plait_toml_is_one_line_with_the_fix(tmp_path: Path) -> None:
    repo, plan = new_repo(tmp_path, twelve_tasks()[:1])
    (repo / "plait.toml").write_text(PLAIT_TOML.replace("[executor.resources]",
                                                        '[executor]\nname = "dask"\n\n[executor.resources]'))
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    assert "unknown executor 'dask'" in done.stderr and "use one of local, ray" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_rehearsal_runs_real_claude_code_on_the_nodes(cluster: Nodes, tmp_path: Path) -> None:
    """The scripted model server listens where the nodes reach it; the real CLI runs on the nodes."""
    binary = require_cli("claude")
    toml = f'[profiles.claude]\nadapter = "claude"\nbinary = "{binary}"\n\n[executor.resources]\n' \
        'default = { agent_slot = 1 }\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    tasks = [{"id": t, "title": t, "prompt": "p", "files": [f"{t}.txt"], "script": {"write": {f"{t}.txt": f"{t}\n"}},
              "verify": f"grep -q {t} {t}.txt"} for t in ("a", "b")]
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"plait": 1, "name": "r", "defaults": {"agent": "claude"}, "tasks": tasks}))
    done = plait(repo, "run", str(plan), "--rehearse", "--executor", "ray", "--address", cluster.address,
                 timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    assert set(placed(events(repo, run_id))) == {"a", "b"}
    names = set(git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/integration").splitlines())
    assert {"a.txt", "b.txt"} <= names
    log = repo / ".plait" / "runs" / run_id / "tasks" / "a" / "logs" / "attempt-1" / "agent.jsonl"
    assert '"type":"result"' in log.read_text().replace(" ", "")


def test_an_unreachable_cluster_is_one_line_with_the_fix(tmp_path: Path) -> None:
    _ray()
    repo, plan = new_repo(tmp_path, twelve_tasks()[:1])
    done = plait(repo, "run", str(plan), "--executor", "ray", "--address", "127.0.0.1:1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no Ray cluster answers at 127.0.0.1:1" in done.stderr and "check --address" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
