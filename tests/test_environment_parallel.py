"""Issue 14's acceptance: four agents run a dev server and its tests at the same time, each on its own
port, with the user's `.env` in each workspace and its secret in no log.

Each agent starts the project's dev server on $PLAIT_PORT_WEB, checks it answers, and then waits at a
barrier the test holds (a TCP coordinator): the barrier opens only once all four servers are
listening, and the test itself fetches a page from each of the four before opening it. Waits are for
events (connections, answers), with generous outer timeouts; nothing depends on timing.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from runfixtures import common_dir, events, git, latest_run, make_repo, plait, write_plan

SECRET = "tok-4f9a2c-never-in-a-log"
AGENTS = 4

APP = '''"""The project's dev server: PORT from the environment, a greeting from the cached vendor folder."""
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, "vendor")
from greeting import GREETING  # built into the dependency cache

TOKEN = dict(line.split("=", 1) for line in open(".env").read().split()).get("API_TOKEN", "")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{GREETING} from {os.environ['PLAIT_SLOT']} token-ok={bool(TOKEN)}".encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port):
    return HTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    serve(int(os.environ["PLAIT_PORT_WEB"])).serve_forever()
'''

TEST_APP = '''import os, threading, unittest, urllib.request
import app


class DevServerTest(unittest.TestCase):
    def test_serves_on_its_own_port(self):
        server = app.serve(int(os.environ["PLAIT_PORT_WEB"]))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{os.environ['PLAIT_PORT_WEB']}/"
            body = urllib.request.urlopen(url, timeout=30).read().decode()
            self.assertIn(os.environ["PLAIT_SLOT"], body)
            self.assertIn("token-ok=True", body)
        finally:
            server.shutdown()


if __name__ == "__main__":
    unittest.main()
'''

# What each agent runs: the dev server in the background, then its check, then the barrier.
DEVCHECK = '''import json, os, socket, subprocess, sys, time, urllib.request
port, slot = int(os.environ["PLAIT_PORT_WEB"]), os.environ["PLAIT_SLOT"]
server = subprocess.Popen([sys.executable, "app.py"])
url = f"http://127.0.0.1:{port}/"
for _ in range(1200):  # up to a minute for it to listen
    try:
        first = urllib.request.urlopen(url, timeout=5).read().decode()
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("the dev server never listened")
print(open(".env").read())  # what a careless agent does: the secret must still reach no log
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=300) as barrier:
    barrier.sendall(json.dumps({"slot": slot, "port": port, "env": os.path.isfile(".env")}).encode() + b"\\n")
    barrier.settimeout(300)
    assert barrier.makefile().readline().strip() == "go"
again = urllib.request.urlopen(url, timeout=30).read().decode()
server.terminate()
open(f"served-{os.environ['TASK']}.txt", "w").write(f"{port}\\n{first}\\n{again}\\n")
'''


class Barrier:
    """Opens when all agents have reported a listening server and the test reached each of them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reports: list[dict[str, Any]] = []
        self.pages: dict[int, str] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conns = []
        try:
            self.sock.settimeout(600)
            while len(conns) < self.count:
                conn, _ = self.sock.accept()
                conns.append(conn)
                self.reports.append(json.loads(conn.makefile().readline()))
            for report in self.reports:  # all four are up now, each waiting for us
                url = f"http://127.0.0.1:{report['port']}/"
                self.pages[report["port"]] = urllib.request.urlopen(url, timeout=30).read().decode()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for conn in conns:
                try:
                    conn.sendall(b"go\n")
                finally:
                    conn.close()
            self.sock.close()


def test_four_agents_run_dev_servers_and_tests_at_once_without_a_port_clash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": APP, "test_app.py": TEST_APP, "devcheck.py": DEVCHECK,
                                         "requirements.txt": "greeting==1.0\n", ".gitignore": "__pycache__/\n"})
    (repo / ".env").write_text(f"API_TOKEN={SECRET}\n")
    barrier = Barrier(AGENTS)
    py = sys.executable
    ids = [f"t{i}" for i in range(AGENTS)]
    tasks = [{"id": t, "title": f"dev server {t}", "prompt": "run the dev server", "files": [f"served-{t}.txt"],
              "script": {"run": [f"TASK={t} {py} devcheck.py {barrier.port}"]}} for t in ids]
    build = "mkdir vendor && echo \"GREETING = 'hello'\" > vendor/greeting.py"
    plan = write_plan(repo, tasks, defaults={
        "copy": [".env"], "ports": ["web"], "setup": "echo setup for $PLAIT_SLOT on $PLAIT_PORT_WEB; cat .env",
        "teardown": "echo teardown $PLAIT_SLOT", "verify": f"{py} -m unittest -q test_app",
        "cache": [{"path": "vendor", "key": "requirements.txt", "build": build}], "retries": 0})
    done = plait(repo, "run", str(plan), "--jobs", str(AGENTS), timeout=900)
    barrier.thread.join(timeout=60)
    assert barrier.error is None, barrier.error
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)

    # Four servers were listening at once, each on a port of its own, and each answered as itself.
    ports = [r["port"] for r in barrier.reports]
    assert len(barrier.reports) == AGENTS and len(set(ports)) == AGENTS, barrier.reports
    assert all(r["env"] for r in barrier.reports)  # .env in each workspace
    for report in barrier.reports:
        assert barrier.pages[report["port"]] == f"hello from {report['slot']} token-ok=True"
    assert len({r["slot"] for r in barrier.reports}) == AGENTS

    for t in ids:
        rec = json.loads((repo / ".plait" / "runs" / run_id / "tasks" / t / "results.json").read_text())
        assert rec["ok"] and rec["verify"]["exit_code"] == 0  # its tests passed on its own port
        port = rec["environment"]["ports"]["web"]
        assert port in ports
        served = git(repo, "show", f"plait/{run_id}/{t}:served-{t}.txt").splitlines()
        page = f"hello from {rec['environment']['slot']} token-ok=True"
        assert served == [str(port), page, page]
        assert rec["environment"]["teardown"][0]["output_tail"] == f"teardown {rec['environment']['slot']}\n"
        assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/{t}").split()
    caches = [json.loads((repo / ".plait" / "runs" / run_id / "tasks" / t / "results.json").read_text())
              ["environment"]["caches"][0] for t in ids]
    assert sum(c["built"] for c in caches) == 1

    # The secret passed through setup, the agents (printed) and the tests, and is in no log nor evidence.
    for path in (repo / ".plait").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps(events(repo, run_id))
    for path in (common_dir(repo) / "plait").rglob("*"):  # the state database, raw, and its logs
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in done.stdout + done.stderr
