"""Keep secrets from the environment out of logs, evidence and the database."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.I)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, "***")
    return text


def redact_files(folder: Path, environ: Mapping[str, str] | None = None) -> None:
    """Rewrite the logs under `folder` with secret values masked (agents and tests may print them)."""
    secrets = secret_values(environ)
    if not secrets:
        return
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        masked = data
        for value in secrets:
            masked = masked.replace(value.encode(), b"***")
        if masked != data:
            path.write_bytes(masked)
