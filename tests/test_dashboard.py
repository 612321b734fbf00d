"""`plait serve`: a real detached run, a real server on a free port, a real headless Chromium that watches
the run page update live (no reload) while the run goes on; the token and the origin check."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from browser import browser, watch_errors
from plait import api, dashboard, runner
from plait.run.engine import RunOptions
from runfixtures import make_repo, plait, task, write_plan

__all__ = ["browser"]  # the fixture, imported for the tests below

TIMEOUT_MS = 90_000  # generous: the suite may run beside another on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(repo: Path, token: str | None = None) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(dashboard.app(repo, "127.0.0.1", token), host="127.0.0.1", port=port,
                            log_level="error", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the dashboard did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def status_of(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_run_page_follows_a_live_run_to_its_end(browser: Any, tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    wait = f"echo waiting for the gate; while [ ! -f '{gate}' ]; do sleep 0.05; done"
    plan = write_plan(repo_dir, [task("a", {"a.txt": "a\n"}, script={"write": {"a.txt": "a\n"}, "run": [wait]}),
                                 task("b", {"b.txt": "b\n"}, needs=["a"])])
    repo, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo_dir)
    runner.start_detached(repo, run_id)
    try:
        with serve(repo_dir) as base:
            page = browser.new_page()
            errors = watch_errors(page)
            page.goto(f"{base}/")
            page.click(f'a[href="runs/{run_id}/"]')
            page.wait_for_selector('g.node.s-running[data-task="a"]', timeout=TIMEOUT_MS)
            page.wait_for_selector('pre.log[data-task="a"]:has-text("waiting for the gate")', timeout=TIMEOUT_MS)
            page.evaluate("window.notReloaded = true")

            gate.write_text("")
            page.wait_for_selector('g.node.s-done[data-task="b"]', timeout=TIMEOUT_MS)
            page.wait_for_selector('#run-status:text-is("completed")', timeout=TIMEOUT_MS)
            assert page.evaluate("window.notReloaded") is True
            assert page.locator("svg.gantt rect.attempt").count() == 2
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 0
            assert errors == []
            page.close()
    finally:
        gate.write_text("")
        plait(repo_dir, "cancel", run_id)  # a no-op once it completed; stops it if the test failed early


def test_resume_and_cancel_buttons_act_on_the_run(browser: Any, tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    plan = write_plan(repo_dir, [task("a", {"a.txt": "a\n"}, script={
        "write": {"a.txt": "a\n"}, "run": [f"while [ ! -f '{gate}' ]; do sleep 0.05; done"]})])
    repo, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo_dir)
    runner.start_detached(repo, run_id)
    try:
        with serve(repo_dir) as base:
            page = browser.new_page()
            page.goto(f"{base}/runs/{run_id}/")
            page.wait_for_selector('g.node.s-running[data-task="a"]', timeout=TIMEOUT_MS)
            page.click("#cancel")
            page.wait_for_selector('#run-status:text-is("cancelled")', timeout=TIMEOUT_MS)
            gate.write_text("")
            page.click("#resume")
            page.wait_for_selector('#run-status:text-is("completed")', timeout=TIMEOUT_MS)
            page.close()
    finally:
        gate.write_text("")
        plait(repo_dir, "cancel", run_id)


def test_a_token_is_required_when_set_and_cross_origin_posts_are_refused(browser: Any, tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo")
    plan = write_plan(repo_dir, [task("a", {"a.txt": "a\n"})])
    assert plait(repo_dir, "run", str(plan)).returncode == 0
    with serve(repo_dir, token="s3cret") as base:
        assert status_of(f"{base}/") == 401
        assert status_of(f"{base}/?token=wrong") == 401
        assert status_of(f"{base}/", headers={"Authorization": "Bearer s3cret"}) == 200
        page = browser.new_page()
        page.goto(f"{base}/?token=s3cret")  # once: then the cookie carries it
        page.click("table a")
        page.wait_for_selector('#run-status:text-is("completed")', timeout=TIMEOUT_MS)
        page.close()
    with serve(repo_dir) as base:
        run_page = f"{base}/runs/{api.open_repo(repo_dir).store.runs()[-1]['id']}/"
        assert status_of(run_page) == 200
        assert status_of(run_page + "tasks/a/EVIDENCE.md") == 200  # the report's links work here too
        assert status_of(run_page + "tasks/nope/EVIDENCE.md") == 404
        assert status_of(f"{base}/runs/nope/") == 404
        assert status_of(run_page + "cancel", "POST", {"Origin": "http://evil.example"}) == 403
        assert status_of(run_page, headers={"Host": "evil.example"}) == 400  # a rebound name is refused


def test_serving_on_another_address_without_a_token_is_one_line(tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "repo")
    done = plait(repo_dir, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("plait: error: serving the dashboard on 0.0.0.0 (not loopback) needs a token")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib must reach the loopback server directly, whatever proxy the machine sets."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
