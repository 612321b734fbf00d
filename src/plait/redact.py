"""Keep secrets out of everything plait writes: logs, evidence, reports and the database.

A secret is known by its *value*: the value of every environment variable whose name looks secret
(KEY, TOKEN, SECRET, PASSWORD, ...), the password inside any URL-shaped value (`DATABASE_URL=
postgres://app:hunter22@db/x`), and values registered at run time (the keys a run hands its agents).
Text is also scrubbed of `scheme://user:password@` credentials whatever their source.

Every writer goes through here: `write_text` for plait's own files, `Store.emit` for database rows,
`redact_files` for what child processes wrote (agent streams, verify logs, the CLIs' private homes).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE)",
                          re.I)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]{0,31}://[^/\s:@'\"]{1,256}:)([^/\s@'\"]{1,256})(@)", re.I)
MASK = "***"
MIN_LENGTH = 6  # shorter values ("1", "true", "dev") would mask ordinary words
SHORTEST = 4  # the shortest secret kept: a URL's password (`_values_of`)

_registered: set[str] = set()
_environ_seen: tuple[dict[bytes, bytes], frozenset[str]] = ({}, frozenset())  # os.environ's bytes, their secrets
_lock = threading.Lock()


def register(values: Iterable[str]) -> None:
    """More secret values for this process (e.g. the API keys a run gives its agents)."""
    with _lock:
        _registered.update(v for v in values if len(v) >= MIN_LENGTH)


def register_env(env: Mapping[str, str]) -> None:
    """The secret-looking values of an environment plait hands to a child."""
    register(_values(env))


def _values(env: Mapping[str, str]) -> frozenset[str]:
    return _values_of(frozenset(env.items()))


@functools.lru_cache(maxsize=8)
def _values_of(items: frozenset[tuple[str, str]]) -> frozenset[str]:
    # Cached: redact runs on every database row and file write, and the environment rarely changes.
    found = {v for k, v in items if _SECRET_NAME.search(k) and len(v) >= MIN_LENGTH}
    for _, value in items:
        found.update(m.group(2) for m in _URL_CREDENTIALS.finditer(value) if len(m.group(2)) >= SHORTEST)
    return frozenset(found)


def _environ_values() -> frozenset[str]:
    # Iterating os.environ decodes every name and value each time, which cost more than the masking
    # (and redact runs on every string of every database row): compare the bytes CPython keeps behind
    # it with the last ones seen instead, and decode only when they changed. Called under _lock.
    global _environ_seen
    raw = getattr(os.environ, "_data", None)
    if not isinstance(raw, dict):
        return _values(os.environ)
    seen, values = _environ_seen
    if raw != seen:
        values = _values_of(frozenset((os.fsdecode(k), os.fsdecode(v)) for k, v in raw.items()))
        _environ_seen = (dict(raw), values)
    return values


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value known now, longest first (so a secret containing another is masked whole)."""
    with _lock:
        values = (_environ_values() if environ is None else _values(environ)) | _registered
    return list(_longest_first(values))


@functools.lru_cache(maxsize=8)
def _longest_first(values: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    if len(text) < SHORTEST:  # holds no secret value, nor `scheme://user:password@`
        return text
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + m.group(3), text) if "://" in text else text


def write_text(path: Path, text: str) -> None:
    """Write one of plait's own files, secrets masked."""
    path.write_text(redact(text))


def redact_files(folder: Path, environ: Mapping[str, str] | None = None) -> None:
    """Mask secrets in every file under `folder` (symlinks are not followed). Text files get `***`;
    binary ones (a CLI's SQLite history) get the same number of `*`, so their structure survives."""
    if not folder.is_dir() or folder.is_symlink():
        return
    secrets = [v.encode() for v in secret_values(environ)]
    for dirpath, _dirs, files in os.walk(folder):  # never descends into symlinked directories
        for name in files:
            _redact_file(Path(dirpath) / name, secrets)


def redact_file(path: Path, environ: Mapping[str, str] | None = None) -> None:
    """`redact_files` for one file (a log plait's child wrote, e.g. a detached runner's)."""
    _redact_file(path, [v.encode() for v in secret_values(environ)])


def _redact_file(path: Path, secrets: list[bytes]) -> None:
    if path.is_symlink() or not path.is_file():
        return
    try:
        data = path.read_bytes()
    except OSError:
        return
    masked = _mask_bytes(data, secrets)
    if masked != data:
        path.write_bytes(masked)


def _mask_bytes(data: bytes, secrets: list[bytes]) -> bytes:
    binary = b"\0" in data[:8192]
    for value in secrets:
        if value in data:
            data = data.replace(value, b"*" * len(value) if binary else MASK.encode())
    if binary:
        return data
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + m.group(3),
                                data.decode(errors="surrogateescape")).encode(errors="surrogateescape")
