"""Ports each attempt holds for itself (`ports: [web, db]` -> PLAIT_PORT_WEB, PLAIT_PORT_DB).

A port is handed out when nothing listens on it and no other attempt holds it: in this process (a set)
and in any other plait process on the machine (an flock'd file per port, released when the attempt
ends or the holder dies, however). Ports come from a range below Linux's ephemeral range (32768 and
up), so the kernel never gives them to outgoing connections meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

RANGE = (20000, 29999)
_held: set[int] = set()
_lock = threading.Lock()


class NoFreePort(Exception):
    pass


@dataclass
class Ports:
    """The ports one attempt holds, by name; `release()` gives them back (idempotent)."""

    by_name: dict[str, int]
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        with _lock:
            for fd in self._fds:
                os.close(fd)  # the flock goes with it
            self._fds.clear()
            _held.difference_update(self.by_name.values())

    def variables(self) -> dict[str, str]:
        return {f"PLAIT_PORT_{name.upper()}": str(port) for name, port in self.by_name.items()}


def lock_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"plait-ports-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def reserve(names: list[str], span: tuple[int, int] = RANGE) -> Ports:
    """A distinct free port for each name."""
    ports = Ports({})
    if not names:
        return ports
    folder = lock_folder()
    candidates = list(range(span[0], span[1] + 1))
    random.shuffle(candidates)  # two plait processes do not walk the range in step
    with _lock:
        for port in candidates:
            if len(ports.by_name) == len(names):
                break
            if port in _held or not _bindable(port):
                continue
            fd = os.open(folder / str(port), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held.add(port)
            ports._fds.append(fd)
            ports.by_name[names[len(ports.by_name)]] = port
    if len(ports.by_name) < len(names):
        ports.release()
        raise NoFreePort(f"no free port left in {span[0]}-{span[1]} for {', '.join(names)}")
    return ports


def _bindable(port: int) -> bool:
    """Nothing listens on it now (on any address, IPv4 or IPv6)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 here: IPv4 decided it
                continue
            return False
    return True
