"""`plait.text`: what agents and commands print, made safe to show (`printable`) and bounded (`clip`)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.text import clip, printable

UNSAFE = {chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))} | set(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_escape_sequences_become_visible_text() -> None:
    assert printable("a\x1b]0;pwned\x07b") == "a␛]0;pwned␇b"  # set the terminal title
    assert printable("\x1b[2J\x1b[H") == "␛[2J␛[H"  # clear the screen, cursor home
    assert printable("nul\x00 bs\x08 del\x7f") == "nul␀ bs␈ del␡"
    assert printable("csi\x9b6n c1\x85") == "csi\\x9b6n c1\\x85"  # C1 controls have no picture: escaped


def test_colours_are_dropped_since_they_only_colour() -> None:
    assert printable("\x1b[1;31mFAILED\x1b[0m test_x \x1b[32m✓\x1b[m") == "FAILED test_x ✓"


def test_a_carriage_return_cannot_overwrite_what_came_before() -> None:
    assert printable("rm -rf ~\rharmless ") == "rm -rf ~\nharmless "
    assert printable("windows\r\nlines\r\n") == "windows\nlines\n"


def test_bidi_overrides_cannot_reorder_what_a_reviewer_reads() -> None:
    assert printable("access\u202e level") == "access\\u202e level"


def test_ordinary_text_is_untouched() -> None:
    text = "héllo\twörld\n✓ 日本語 — “quotes” 🎉\n"
    assert printable(text) == text


def test_megabytes_without_controls_come_back_as_they_are() -> None:
    big = "ordinary agent output line\n" * 200_000  # ~5 MB
    assert printable(big) is big


def test_megabytes_full_of_escapes() -> None:
    noisy = "\x1b[32m.\x1b[0m\x1b]0;t\x07\r" * 300_000  # ~6 MB of the worst kind
    out = printable(noisy)
    assert not set(out) & UNSAFE
    assert out.count("␛]0;t␇") == 300_000


@given(st.text())
def test_printable_leaves_no_control_character_and_is_stable(text: str) -> None:
    out = printable(text)
    assert not set(out) & UNSAFE
    assert "\r" not in out
    assert printable(out) == out


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc",), blacklist_characters="".join(UNSAFE))))
def test_printable_changes_nothing_else(text: str) -> None:
    assert printable(text) == text


def test_clip_keeps_short_text_as_it_is() -> None:
    assert clip("short", 10) == "short"
    assert clip("x" * 10, 10) == "x" * 10


def test_clip_keeps_the_start_and_says_how_much_was_cut() -> None:
    text = "a" * 2_345_678 + "b" * 1000
    out = clip(text, 1000, "full text in agent.jsonl")
    assert len(out) <= 1000
    head, marker = out.split("\n")
    assert set(head) == {"a"}
    assert marker == f"… [{len(text) - len(head):,} characters cut; full text in agent.jsonl]"
    assert marker.startswith("… [2,34")


def test_clip_can_keep_the_end_instead() -> None:
    text = "old\n" * 10_000 + "the error at the end"
    out = clip(text, 200, "see verify.log", keep="end")
    assert len(out) <= 200 and out.endswith("the error at the end")
    marker, tail = out.split("\n", 1)
    assert text.endswith(tail)
    assert marker == f"… [{len(text) - len(tail):,} characters cut; see verify.log]"


def test_clip_without_a_note_and_with_no_room_for_text() -> None:
    assert clip("x" * 50, 40) == "x" * 18 + "\n… [32 characters cut]"
    assert clip("x" * 100, 5) == "… [100 characters cut]"  # the note is never dropped
    with pytest.raises(ValueError, match="keep"):
        clip("x" * 100, 5, keep="middle")  # type: ignore[arg-type]


@given(st.text(), st.integers(min_value=60, max_value=500), st.sampled_from(["start", "end"]))
def test_clip_is_never_longer_than_its_limit_and_counts_exactly(text: str, limit: int, keep: str) -> None:
    out = clip(text, limit, "full text in agent.jsonl", keep=keep)  # type: ignore[arg-type]
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
        return
    if keep == "start":
        kept, marker = out[:out.rindex("\n… [")], out[out.rindex("\n… [") + 1:]
        assert text.startswith(kept)
    else:
        marker, kept = out[:out.index("]\n") + 1], out[out.index("]\n") + 2:]
        assert text.endswith(kept)
    found = re.fullmatch(r"… \[([\d,]+) characters cut; full text in agent\.jsonl\]", marker)
    assert found, marker
    assert int(found[1].replace(",", "")) + len(kept) == len(text)
