from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_imports_from_this_checkout_with_the_declared_version() -> None:
    authkit = importlib.import_module("authkit")
    assert Path(str(authkit.__file__)).parent == ROOT / "src" / "authkit"  # not some installed copy
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert authkit.__version__ == pyproject["project"]["version"]
