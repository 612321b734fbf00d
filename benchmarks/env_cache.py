"""Workspace ready-to-test time: plait's dependency cache vs a fresh install, and the ways of sharing a
built folder that plait could have chosen.

A Node project whose package-lock.json pins a few hundred packages (jest and eslint by default, from
the npm registry). In one invocation, `--repeat` rounds; each round prepares a new workspace (the
project's package.json and package-lock.json in an empty folder) every way, in turn:

- fresh:     `npm ci` in the workspace (npm's own download cache is warm after the first round: the
             best case for installing, no network transfer of packages);
- cached:    plait's cache (`plait.run.envcache`): hash the key files, find the ready entry, symlink
             it into the workspace; the entry was built once before the rounds (its time is shown);
- copy:      `cp -a` of the built node_modules into the workspace;
- hardlink:  `cp -al` of it (shares the files, but a write through the workspace reaches the cache);
- reflink:   `cp -a --reflink=always`, when the filesystem supports it (copy-on-write).

Each ends with `node -e "require('jest'); require('eslint')"` in the workspace, so every way is timed up
to a workspace that can run its tests. Wall time and CPU time (this process and its children); medians.

Run: .venv/bin/python -m benchmarks.env_cache [--repeat 5] [--packages jest@29.7.0,eslint@8.57.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from benchmarks.common import timed
from plait.plan.model import Cache
from plait.run import envcache


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def project(folder: Path, packages: list[str], env: dict[str, str]) -> int:
    """package.json + package-lock.json for `packages`; returns how many packages the lock pins."""
    folder.mkdir(parents=True)
    deps = {}
    for spec in packages:
        name, _, version = spec.rpartition("@") if spec.count("@") > spec.startswith("@") else (spec, "", "*")
        deps[name] = version
    (folder / "package.json").write_text(json.dumps({"name": "bench", "version": "1.0.0", "private": True,
                                                     "dependencies": deps}))
    run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--ignore-scripts"], folder, env)
    lock = json.loads((folder / "package-lock.json").read_text())
    return sum(1 for k in lock.get("packages", {}) if k.startswith("node_modules/"))


def new_workspace(base: Path, source: Path, n: int, way: str) -> Path:
    tree = base / f"{way}-{n}" / "tree"
    tree.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(source / name, tree / name)
    return tree


def smoke(tree: Path, env: dict[str, str]) -> None:
    run(["node", "-e", "require('jest'); require('eslint')"], tree, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--packages", default="jest@29.7.0,eslint@8.57.0")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="plait-env-bench-"))
    env = {**os.environ, "npm_config_cache": str(base / "npm-cache"), "npm_config_audit": "false",
           "npm_config_fund": "false", "npm_config_ignore_scripts": "true", "npm_config_update_notifier": "false"}
    source = base / "project"
    count = project(source, args.packages.split(","), env)
    spec = Cache(path="node_modules", key=["package.json", "package-lock.json"], build="npm ci")
    root, never = base / "cache", threading.Event()

    def build(folder: Path) -> str | None:
        run(["npm", "ci"], folder, env)
        return None

    first = new_workspace(base, source, 0, "build")
    build_wall, build_cpu = timed(lambda: envcache.obtain(spec, first, root, build, never))
    built = envcache.obtain(spec, first, root, build, never).entry
    files = sum(len(f) for _, _, f in os.walk(built))
    reflink = subprocess.run(["cp", "-a", "--reflink=always", str(built), str(base / "reflink-probe")],
                             capture_output=True).returncode == 0
    shutil.rmtree(base / "reflink-probe", ignore_errors=True)

    def cached(tree: Path) -> None:
        envcache.link(envcache.obtain(spec, tree, root, build, never), tree)

    ways: dict[str, Callable[[Path], object]] = {
        "fresh": lambda tree: run(["npm", "ci"], tree, env),
        "cached": cached,
        "copy": lambda tree: run(["cp", "-a", str(built), str(tree / "node_modules")], tree, env),
        "hardlink": lambda tree: run(["cp", "-al", str(built), str(tree / "node_modules")], tree, env),
    }
    if reflink:
        ways["reflink"] = lambda tree: run(["cp", "-a", "--reflink=always", str(built), str(tree / "node_modules")],
                                           tree, env)
    samples: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    prepared: dict[str, list[float]] = {w: [] for w in ways}  # wall time of the preparation alone
    for n in range(args.repeat):
        for way, prepare in ways.items():
            tree = new_workspace(base, source, n, way)
            wall, used = timed(partial(prepare, tree))
            test_wall, test_used = timed(partial(smoke, tree, env))
            prepared[way].append(wall)
            samples[way].append((wall + test_wall, used + test_used))
            print(f"round {n + 1} {way}: prepared in {wall:.3f} s, ready to test in {wall + test_wall:.3f} s wall, "
                  f"{used + test_used:.3f} s CPU", flush=True)
    print(f"\n{count} packages in the lock, {files} files in node_modules; filesystem supports reflink: {reflink}")
    print(f"first build of the cache entry (npm ci in the entry, then read-only, then published): "
          f"{build_wall:.1f} s wall, {build_cpu:.1f} s CPU\n")
    fresh = statistics.median(w for w, _ in samples["fresh"])
    fresh_prepared = statistics.median(prepared["fresh"])
    print("| way | node_modules in place | fresh / this | ready to test (+ require) | fresh / this | CPU |")
    print("|---|---|---|---|---|---|")
    for way, got in samples.items():
        wall, used = statistics.median(w for w, _ in got), statistics.median(c for _, c in got)
        ready_in = statistics.median(prepared[way])
        print(f"| {way} | {ready_in * 1000:.0f} ms | {fresh_prepared / ready_in:.0f}x | {wall * 1000:.0f} ms | "
              f"{fresh / wall:.1f}x | {used * 1000:.0f} ms |")
    for folder in base.iterdir():  # the entry is read-only: envcache knows how to remove it
        if folder.name == "cache":
            for entry in folder.iterdir():
                if entry.is_dir():
                    envcache.remove_entry(entry)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
