"""plait.sandbox through `proc.run(..., confine=...)`, with real processes: writes land only in the
writable directory, and nothing the command started outlives it, also when plait is SIGKILLed.

Each case runs as the test's own user and, through setpriv, as `nobody` (the user-namespace path).
A small driver script (DRIVER) calls proc.run in a process of that user and prints the result as
JSON. Processes are found by a unique token in their command line, so the test can see them from
outside the command's PID namespace.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI
from plait import proc, sandbox
from plait.sandbox import client

SRC = Path(sandbox.__file__).resolve().parents[2]
NOBODY = 65534
PATH = "/usr/local/bin:/usr/bin:/bin"
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

DRIVER = r"""
import dataclasses, json, logging, os, sys, threading, time
from pathlib import Path
from plait import proc, sandbox
from plait.sandbox import client

job = json.loads(sys.argv[1])
client.ENABLED = job["server"]
steps = []
class Steps(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("stopping"):
            steps.append(record.getMessage().split()[-1])
logging.getLogger("plait.proc").addHandler(Steps())
logging.getLogger("plait.proc").setLevel(logging.INFO)
if not job["pid_namespace"]:
    probed = sandbox.support()
    sandbox.support = lambda: dataclasses.replace(probed, pid_namespace=False)
cancel = threading.Event()
def cancel_when_ready():
    while not os.path.exists(job["cancel_when"]):
        time.sleep(0.05)
    cancel.set()
if job["cancel_when"]:
    threading.Thread(target=cancel_when_ready, daemon=True).start()
confine = sandbox.Confinement(tuple(Path(p) for p in job["writable"]), landlock=job["landlock"])
done = proc.run(job["script"], shell=True, cwd=job["cwd"], env=job["env"], timeout=600, cancel=cancel,
                confine=confine, stderr_path=Path(job["stderr_path"]) if job["stderr_path"] else None)
print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "steps": steps,
                  "pid_namespace": sandbox.support().pid_namespace}))
"""


def require_landlock() -> None:
    if sandbox.support().landlock_abi is None:
        message = f"needs Landlock (Linux >= 5.13 with it enabled): {sandbox.support().landlock_reason}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@cache
def python_for(uid: int) -> str | None:
    """An interpreter (3.11+) that `uid` may execute: a venv's may live under root's home."""
    for candidate in (sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        prefix = AS_NOBODY if uid == NOBODY else []
        # Through sh: setpriv itself may still reach a file that the user's own processes cannot.
        check = [*prefix, "/bin/sh", "-c", 'exec "$0" -c "import sys; sys.exit(sys.version_info < (3, 11))"', candidate]
        if os.path.exists(candidate) and subprocess.run(check, capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


@dataclass
class Area:
    """A place for one case: `work` is writable to the command; `outside` and `home` are not,
    though the user could write them without the sandbox (they are theirs)."""

    uid: int
    base: Path
    token: str  # in the command line of every process a case starts (but the launcher forked by the server)
    server: bool  # the launcher forked by the launch server, or started as a process of its own

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    @property
    def home(self) -> Path:
        return self.base / "home"

    def drive(self, script: str, *, landlock: bool = True, pid_namespace: bool = True, cancel_when: str = "",
              stderr_path: Path | None = None,
              writable: tuple[Path, ...] | None = None) -> subprocess.Popen[str]:
        """Start DRIVER, as this area's user, running `script` confined to `work`."""
        python = python_for(self.uid)
        assert python, "checked by the fixture"
        env = {"PATH": PATH, "HOME": str(self.home), "OUTSIDE": str(self.outside),
               "TOKEN": self.token, "PY": python, "TMPDIR": str(self.work)}
        # The literal token, so that the launcher and the shell carry it too.
        job = {"script": script.replace("$TOKEN", self.token), "cwd": str(self.work), "env": env, "landlock": landlock,
               "pid_namespace": pid_namespace, "cancel_when": cancel_when, "server": self.server,
               "stderr_path": str(stderr_path) if stderr_path else "",
               "writable": [str(p) for p in (writable if writable is not None else (self.work,))]}
        prefix = AS_NOBODY if self.uid == NOBODY and os.geteuid() != NOBODY else []
        return subprocess.Popen([*prefix, python, "-c", DRIVER, json.dumps(job)], text=True, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(SRC)})

    def run(self, script: str, **options: Any) -> dict[str, Any]:
        driver = self.drive(script, **options)
        out, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, out
        result: dict[str, Any] = json.loads(out)
        return result


# Each case as the user, through the launch server and through a launcher started on its own; as nobody,
# through the server.
@pytest.fixture(params=["self", "self-exec", "nobody"])
def area(request: pytest.FixtureRequest) -> Iterator[Area]:
    uid = os.geteuid()
    if request.param == "nobody":
        if uid != 0 or not shutil.which("setpriv"):
            pytest.skip("running as nobody needs root and setpriv (util-linux)")
        uid = NOBODY
    if python_for(uid) is None:
        message = f"no Python 3.11+ that uid {uid} may execute"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="plait-sandbox-"))  # not pytest's tmp_path: nobody cannot enter it
    try:
        base.chmod(0o755)
        for name in ("work", "outside", "home"):
            (base / name).mkdir()
            os.chown(base / name, uid, uid)
        for name in ("existing.txt", "to-move.txt"):
            (base / "outside" / name).write_text("original\n")
            os.chown(base / "outside" / name, uid, uid)
        # The token is a valid extra `sleep` argument.
        yield Area(uid, base, f"0.{random.randrange(10**8, 10**9)}", server=request.param != "self-exec")
    finally:
        shutil.rmtree(base)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll for an event; the timeout only bounds a broken run, it is no performance budget."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def processes_with(token: str) -> list[int]:
    """Live processes whose command line holds `token` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def command_line(pid: int) -> bytes:
    """A live process's command line; b"" once it has ended."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def assert_all_gone(area: Area) -> None:
    wait_for(lambda: not processes_with(area.token), f"processes with {area.token} to end")


WRITE_PROBES = """
probe() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name ok"; else echo "$name denied"; fi; }
probe inside sh -c 'echo x > inside.txt'
probe setsid-child setsid -w sh -c 'echo x > from-setsid.txt'
probe other-tmp sh -c 'echo x > "$OUTSIDE/new.txt"'
probe home sh -c 'echo x > "$HOME/new.txt"'
probe dotdot sh -c 'echo x > "../../$(basename "$(dirname "$PWD")")/outside/dotdot.txt"'
probe planted-symlink sh -c 'echo x > planted-link'
probe hardlink-in ln "$OUTSIDE/existing.txt" hardlink.txt
probe rename-in mv "$OUTSIDE/to-move.txt" moved.txt
probe symlink-outside ln -s /etc/passwd "$OUTSIDE/made-link"
probe dev-null sh -c 'echo x > /dev/null'
probe chmod chmod 600 "$OUTSIDE/existing.txt"
probe utime touch -d 2001-01-01 "$OUTSIDE/existing.txt"
"""


def probe_writes(area: Area, **options: Any) -> tuple[dict[str, str], bool]:
    """What the WRITE_PROBES did, and whether the launcher could make a PID namespace (and with it
    the read-only mounts that guard metadata)."""
    (area.work / "planted-link").symlink_to(area.outside / "planted.txt")
    done = area.run(WRITE_PROBES, **options)
    assert done["returncode"] == 0, done
    return dict(line.split() for line in done["stdout"].splitlines()), done["pid_namespace"]


CONFINED = {"inside": "ok", "setsid-child": "ok", "other-tmp": "denied", "home": "denied", "dotdot": "denied",
            "planted-symlink": "denied", "hardlink-in": "denied", "rename-in": "denied", "symlink-outside": "denied",
            "dev-null": "ok"}


def test_writes_land_only_in_the_writable_directory(area: Area) -> None:
    require_landlock()
    before = os.stat(area.outside / "existing.txt")
    results, namespaces = probe_writes(area)
    # Landlock does not cover metadata; the read-only mounts (made in the new namespaces) do.
    metadata = "denied" if namespaces else "ok"
    assert results == {**CONFINED, "chmod": metadata, "utime": metadata}
    assert sorted(p.name for p in area.outside.iterdir()) == ["existing.txt", "to-move.txt"]
    assert not list(area.home.iterdir())
    after = os.stat(area.outside / "existing.txt")
    assert not namespaces or (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert (area.outside / "existing.txt").read_text() == "original\n"


def test_no_device_node_can_be_made_even_in_the_writable_directory(area: Area) -> None:
    """Else a root agent could make a node for a disk in its work tree and write the disk through it."""
    require_landlock()
    done = area.run("mknod disk b 8 0 2>&1 || echo refused; mknod mem c 1 1 2>&1 || echo refused")
    assert done["returncode"] == 0, done
    assert done["stdout"].count("refused") == 2, done
    assert not (area.work / "disk").exists() and not (area.work / "mem").exists()


def test_a_root_command_keeps_no_dangerous_capability(area: Area) -> None:
    """Loading a module, raw I/O, network admin, SYS_ADMIN (which could undo the read-only mounts), reboot,
    ptrace: none of them is left to the command, not even in its bounding set."""
    require_landlock()
    done = area.run("grep -E '^Cap(Bnd|Eff):' /proc/self/status")
    assert done["returncode"] == 0, done
    sets = {line.split(":")[0]: int(line.split()[1], 16) for line in done["stdout"].splitlines()}
    dangerous = {12: "NET_ADMIN", 16: "SYS_MODULE", 17: "SYS_RAWIO", 19: "SYS_PTRACE", 21: "SYS_ADMIN",
                 22: "SYS_BOOT", 25: "SYS_TIME", 27: "MKNOD"}
    for name, bits in sets.items():
        assert [cap for bit, cap in dangerous.items() if bits >> bit & 1] == [], name


def test_without_landlock_writes_are_free_but_processes_still_end(area: Area) -> None:
    results, _ = probe_writes(area, landlock=False)
    assert set(results.values()) == {"ok"}, results
    done = area.run("setsid nohup sleep 300 $TOKEN >/dev/null 2>&1 &", landlock=False)
    assert done["returncode"] == 0
    assert_all_gone(area)


def test_without_a_pid_namespace_the_subreaper_ends_the_tree_and_metadata_is_not_guarded(area: Area) -> None:
    # The fallback for systems without (user) namespaces: Landlock alone does not cover chmod/utime.
    require_landlock()
    results, _ = probe_writes(area, pid_namespace=False)
    assert results == {**CONFINED, "chmod": "ok", "utime": "ok"}
    done = area.run(f"setsid nohup sleep 300 $TOKEN >/dev/null 2>&1 &\n{DOUBLE_FORK}", pid_namespace=False)
    assert done["returncode"] == 0, done
    assert_all_gone(area)


def test_tools_work_inside(area: Area) -> None:
    require_landlock()
    script = """set -e
git init -q repo && cd repo
echo hello > a.txt && git add a.txt && git -c user.name=t -c user.email=t@example.invalid commit -qm first
git log --oneline | wc -l
"$PY" -c 'import tempfile; tempfile.NamedTemporaryFile(); print("python", 6 * 7)'
if command -v node >/dev/null; then node -e 'require("fs").writeFileSync("n.txt", "x"); console.log("node", 6 * 7)'; fi
ps -o pid= -p $$ | tr -d ' '
echo by-name > /dev/stderr
"""
    log = area.outside / "stderr.log"  # plait's logs live outside the writable area
    done = area.run(script, stderr_path=log)
    assert done["returncode"] == 0, done
    expected = ["1", "python 42", *(["node 42"] if shutil.which("node", path=PATH) else [])]
    assert done["stdout"].split("\n")[:len(expected)] == expected
    assert "by-name" in log.read_text()


def test_exit_codes_and_signals_pass_through(area: Area) -> None:
    assert area.run("exit 3")["returncode"] == 3
    assert area.run("kill -TERM $$")["returncode"] == -signal.SIGTERM


def test_confinement_that_cannot_be_set_up_refuses_to_run(area: Area) -> None:
    require_landlock()
    done = area.run("touch ran", writable=(area.work, area.base / "missing"))
    assert done["returncode"] == 125
    assert done["stderr"].count("\n") == 1 and "plait.sandbox: cannot confine writes" in done["stderr"]
    assert not (area.work / "ran").exists()


DOUBLE_FORK = """"$PY" -c '
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("daemon.ready", "w").close()
        time.sleep(300)
    os._exit(0)
' $TOKEN
"""

FORK_200 = """"$PY" -c '
import os, time
for _ in range(200):
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
open("forked.ready", "w").close()
' $TOKEN &
"""


def test_nothing_the_command_started_outlives_it(area: Area) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = f"""setsid nohup sleep 300 $TOKEN >/dev/null 2>&1 &
{DOUBLE_FORK}
mkdir "site-$TOKEN" && "$PY" -m http.server --bind 127.0.0.1 --directory "site-$TOKEN" {port} >/dev/null 2>&1 &
{FORK_200}
listening() {{ "$PY" -c 'import socket; socket.create_connection(("127.0.0.1", {port}))' 2>/dev/null; }}
until [ -e daemon.ready ] && [ -e forked.ready ] && listening; do sleep 0.05; done
grep -l "$TOKEN" /proc/[0-9]*/cmdline 2>/dev/null | wc -l
"""
    done = area.run(script)
    assert done["returncode"] == 0, done
    assert int(done["stdout"].split()[-1]) >= 203, done  # all were running when the command exited
    assert_all_gone(area)

    def port_free() -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    wait_for(port_free, f"port {port} to be free")


@pytest.mark.parametrize("pid_namespace", [True, False], ids=["namespace", "subreaper"])
def test_plait_killed_ends_the_whole_tree(area: Area, pid_namespace: bool) -> None:
    script = "setsid nohup sleep 300 $TOKEN >/dev/null 2>&1 &\nsleep 300 $TOKEN &\nwait"
    driver = area.drive(script, pid_namespace=pid_namespace)
    try:
        wait_for(lambda: sum(command_line(pid).startswith(b"sleep") for pid in processes_with(area.token)) == 2,
                 "the command to start")
        servers = [pid for pid in children(driver.pid) if b"plait.sandbox.server" in command_line(pid)]
        assert len(servers) == (1 if area.server else 0)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=600)
        assert_all_gone(area)
        wait_for(lambda: not any(command_line(pid) for pid in servers), "the launch server to end")
    finally:
        driver.kill()
        driver.communicate()


def test_stop_escalates_to_kill_for_a_command_ignoring_int_and_term(area: Area) -> None:
    done = area.run("trap '' INT TERM; sleep 300 $TOKEN & touch ready; while :; do wait; done",
                    cancel_when=str(area.work / "ready"))
    assert done["returncode"] == -signal.SIGKILL
    assert done["steps"] == ["SIGINT", "SIGTERM", "SIGKILL"]
    assert_all_gone(area)


def test_stop_at_int_lets_the_command_shut_down_gracefully(area: Area) -> None:
    script = """exec "$PY" -c '
import signal, sys, time
def handler(*_):
    open("graceful", "w").write("int")
    sys.exit(7)
signal.signal(signal.SIGINT, handler)
open("ready", "w").close()
time.sleep(300)
' $TOKEN"""
    done = area.run(script, cancel_when=str(area.work / "ready"))
    assert (area.work / "graceful").read_text() == "int"
    assert done["returncode"] == 7 and done["steps"] == ["SIGINT"]


def test_a_program_that_does_not_exist_fails_to_start_as_without_the_sandbox(tmp_path: Path) -> None:
    confine = sandbox.Confinement((tmp_path,))
    with pytest.raises(FileNotFoundError):
        proc.run(["plait-no-such-program"], confine=confine)
    (tmp_path / "not-executable").write_text("")
    with pytest.raises(PermissionError):
        proc.run(["./not-executable"], cwd=tmp_path, confine=confine)


def test_support_is_probed_once_and_says_why_not() -> None:
    found = sandbox.support()
    assert found is sandbox.support()
    assert (found.landlock_abi is None) == bool(found.landlock_reason)
    argv = sandbox.launcher_argv(sandbox.Confinement((Path("rel"),), landlock=False), 9)
    assert argv[0] == sys.executable and argv[-1] == "--"
    assert ["--writable", os.path.abspath("rel")] == argv[argv.index("--writable"):][:2]
    assert "--no-landlock" in argv and argv[argv.index("--lifeline"):][:2] == ["--lifeline", "9"]


def test_through_the_server_streams_codes_and_descriptors_are_as_popen_gives_them(tmp_path: Path) -> None:
    confine = sandbox.Confinement((tmp_path,))
    big = b"".join(b"%07d\n" % i for i in range(200_000))  # 1.6 MB each way: more than a pipe holds
    done = proc.run(["sh", "-c", "cat; echo to-err >&2; exit 3"], input=big, confine=confine, cwd=tmp_path)
    assert done.returncode == 3 and done.stdout.encode() == big and done.stderr == "to-err\n"
    # Only stdin, stdout and stderr reach the command (`ls` opens the folder it lists as 3).
    done = proc.run(["sh", "-c", "ls /proc/$$/fd"], confine=confine, cwd=tmp_path, env={"PATH": PATH})
    assert done.stdout.split() == ["0", "1", "2"], done
    log = tmp_path / "log"
    done = proc.run("echo $PLAIT_PROBE; pwd; echo err >&2", shell=True, confine=confine, cwd=tmp_path,
                    env={"PATH": PATH, "PLAIT_PROBE": "from-the-request"}, stdout_path=log, stderr_path=log)
    assert done.ok and log.read_text().split() == ["from-the-request", str(tmp_path), "err"]
    with pytest.raises(FileNotFoundError):
        proc.run(["true"], confine=confine, cwd=tmp_path / "missing")


ONE_FORK = """
import json, os, sys, tempfile, time
from plait.sandbox import Confinement, client
folder = tempfile.mkdtemp()
lifeline = os.pipe()
launched = client.start(["sleep", "60"], Confinement((folder,)), cwd=folder, env={"PATH": sys.argv[1]}, stdin=False,
                        stdout=None, stderr=None, lifeline=lifeline[0])
def field(pid, name):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(name + ":"):
            return line.split()[1:]
for _ in range(600):  # until PID 1 has started the command
    kids = open(f"/proc/{launched.pid}/task/{launched.pid}/children").read().split()
    if kids and open(f"/proc/{kids[0]}/cmdline").read().startswith("sleep"):
        break
    time.sleep(0.05)
found = {"parent": field(launched.pid, "PPid")[0] == str(client._server.process.pid),
         "pid 1": field(launched.pid, "NSpid")[-1] == "1", "command": field(kids[0], "NSpid")[-1] == "2"}
os.killpg(launched.pid, 9)
launched.wait()
print(json.dumps(found))
"""


@pytest.mark.parametrize("who", ["self", "nobody"])
def test_through_the_server_a_command_is_two_processes_pid_1_made_straight_in_its_namespaces(who: str) -> None:
    """The server makes PID 1 of the command's namespaces itself (one fork of Python, no launcher between):
    as root without a user namespace, as anyone else through one."""
    prefix = []
    if who == "nobody":
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            pytest.skip("running as nobody needs root and setpriv (util-linux)")
        prefix = AS_NOBODY
    python = python_for(NOBODY if who == "nobody" else os.geteuid())
    assert python is not None
    if not sandbox.support().pid_namespace:
        message = f"needs PID namespaces: {sandbox.support()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run([*prefix, python, "-c", ONE_FORK, PATH], capture_output=True, text=True, timeout=600,
                         cwd="/", env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"parent": True, "pid 1": True, "command": True}


def test_the_server_holds_no_copy_of_plaits_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client._close()  # a server started now, from an environment holding a secret
    monkeypatch.setenv("PLAIT_PROBE_API_KEY", "sk-probe-0123456789")
    done = proc.run(["sh", "-c", "echo $PLAIT_PROBE_API_KEY"], confine=sandbox.Confinement((tmp_path,)),
                    env={"PATH": PATH, "PLAIT_PROBE_API_KEY": "given-to-this-command"})
    assert done.stdout == "given-to-this-command\n"  # each command gets the environment it is given
    assert client._server is not None
    environ = Path(f"/proc/{client._server.process.pid}/environ").read_bytes()
    assert b"sk-probe-0123456789" not in environ and b"given-to-this-command" not in environ


def test_one_server_serves_a_process_and_a_lost_one_is_replaced(tmp_path: Path) -> None:
    confine = sandbox.Confinement((tmp_path,))
    assert proc.run(["true"], confine=confine).ok
    server = client._server
    assert server is not None and proc.run(["true"], confine=confine).ok and client._server is server
    server.process.kill()
    server.process.wait()
    # The request that finds it gone starts a launcher of its own; the next one has a new server.
    assert proc.run(["sh", "-c", "exit 4"], confine=confine).returncode == 4
    assert proc.run(["true"], confine=confine).ok
    assert client._server is not None and client._server is not server
    assert client._server.process.poll() is None
