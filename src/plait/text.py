"""Text from agents and commands, made fit for people: `printable` (no control characters reach a terminal
or a file someone will `cat`) and `clip` (bounded, saying how much was cut and where the rest is); and
`format_duration`, here rather than in the plan model so that what prints a run's times needs no pydantic."""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["clip", "format_duration", "printable"]

# Colour and style only (SGR: ESC [ params m): dropped, since pytest and most CLIs colour their output and
# the codes carry nothing else. Every other control character is made visible instead, so an escape
# sequence an agent printed (title, clipboard, cursor moves) shows as text rather than acting.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_CONTROLS = (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F),
             *range(0x2066, 0x206A))
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROLS) + "]")


def _visible(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # Unicode control pictures: ␀ ␇ ␈ ␛ …
    if code == 0x7F:
        return "␡"
    if code <= 0x9F:
        return f"\\x{code:02x}"  # C1 controls (e.g. 0x9b, a one-byte CSI) have no picture
    return f"\\u{code:04x}"  # bidi embeddings, overrides and isolates reorder what a reader sees


_VISIBLE = str.maketrans({c: _visible(c) for c in _CONTROLS})


def printable(text: str) -> str:
    """`text` with no control character but newline and tab: colour codes dropped, `\\r\\n` and a bare
    `\\r` become `\\n` (a bare carriage return would let later text overwrite earlier text on a terminal),
    C0 controls and DEL shown as their Unicode pictures (ESC → ␛, BEL → ␇, NUL → ␀), C1 controls as
    `\\x9b` and bidi overrides as `\\u202e`. Idempotent; text without any of these is returned as it is
    (the same object), so megabytes of ordinary output cost one scan."""
    if _UNSAFE.search(text) is None:
        return text
    if "\x1b[" in text:
        text = _SGR.sub("", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_VISIBLE)


def clip(text: str, limit: int, note: str = "", *, keep: Literal["start", "end"] = "start") -> str:
    """At most `limit` characters of `text`: its start (`keep="start"`) or its end (`keep="end"`), with a
    line saying how many characters were cut and, when given, `note` (where the full text is), e.g.
    `… [2,345,678 characters cut; full text in agent.jsonl]`. The line comes after the start or before
    the end and counts toward `limit`; when `limit` cannot hold even that line, the line alone is returned.
    Text within the limit comes back unchanged."""
    if keep not in ("start", "end"):
        raise ValueError(f"keep must be 'start' or 'end', not {keep!r}")
    if len(text) <= limit:
        return text

    def marker(cut: int) -> str:
        return f"… [{cut:,} characters cut{'; ' + note if note else ''}]"

    # The longest the marker can be (nothing kept) bounds its length for any amount cut.
    kept = max(0, limit - len(marker(len(text))) - 1)
    line = marker(len(text) - kept)
    if kept == 0:
        return line
    return f"{text[:kept]}\n{line}" if keep == "start" else f"{line}\n{text[-kept:]}"


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest readable form: 45s, 12m, 1h30m, 2.5h."""
    if seconds < 90:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.2f}s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f}m"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours}h{rest:02d}m" if rest else f"{hours}h"
