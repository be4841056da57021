"""UTF-16 arithmetic and splitting of long replies: parts fit Telegram's 4096-unit limit and
concatenate back to the original exactly."""

from __future__ import annotations

import random

import pytest

from connectors.telegram.text import (
    MAX_MESSAGE_UNITS,
    split_text,
    utf16_index,
    utf16_len,
    utf16_prefix,
)

MARKDOWN = (
    "## Refunds *(annual)* — _see_ [policy](https://example.com/a_(b)) `code_block` ~x~ "
    "> quote #tag +1 -1 = | {braces} . ! \\ 😀👍🏽👨‍👩‍👧 中文，标点。\n"
)


def test_counts_utf16_units_not_code_points() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("👍🏽") == 4  # thumbs up + skin tone: two astral characters
    assert utf16_len("中文") == 2
    assert utf16_len("é") == 1


def test_maps_utf16_offsets_to_str_indices() -> None:
    text = "👋🏽 hi @bot"
    assert utf16_index(text, 8) == text.index("@")
    assert utf16_index(text, 0) == 0
    assert utf16_index(text, 1) == 0  # inside the surrogate pair: start of the character
    assert utf16_index(text, 999) == len(text)


def test_prefix_never_splits_a_surrogate_pair() -> None:
    assert utf16_prefix("a😀b", 2) == "a"
    assert utf16_prefix("a😀b", 3) == "a😀"
    assert utf16_prefix("short", 4096) == "short"


def test_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("") == []


def assert_good_split(text: str, parts: list[str], limit: int = MAX_MESSAGE_UNITS) -> None:
    assert "".join(parts) == text
    assert all(0 < utf16_len(part) <= limit for part in parts)


def test_prefers_paragraph_then_line_then_space() -> None:
    paragraph = "p" * 3000 + "\n\n" + "q" * 2000
    assert split_text(paragraph) == ["p" * 3000 + "\n\n", "q" * 2000]
    line = "a" * 3000 + "\n" + "b" * 2000
    assert split_text(line) == ["a" * 3000 + "\n", "b" * 2000]
    words = "w" * 3000 + " " + "x" * 2000
    assert split_text(words) == ["w" * 3000 + " ", "x" * 2000]


def test_an_early_paragraph_break_loses_to_a_late_line_break() -> None:
    text = "a" * 100 + "\n\n" + "b" * 3500 + "\n" + "c" * 1000
    parts = split_text(text)
    assert parts[0].endswith("b\n")
    assert_good_split(text, parts)


def test_hard_cut_without_boundaries_keeps_emoji_whole() -> None:
    text = "😀" * 3000  # 6000 units, no spaces
    parts = split_text(text)
    assert_good_split(text, parts)
    assert parts[0] == "😀" * 2048


def test_hard_cut_keeps_a_skin_tone_with_its_emoji() -> None:
    text = "a" * 4093 + "👍🏽" + "b" * 10  # the modifier would start at unit 4095
    parts = split_text(text)
    assert_good_split(text, parts)
    assert parts[1].startswith("👍🏽")


def test_tiny_limits_always_make_progress() -> None:
    text = "e\u0301" * 10 + "👨\u200d👩\u200d👧"
    assert_good_split(text, split_text(text, 2), 2)


def test_trailing_whitespace_is_not_left_alone_in_a_part() -> None:
    text = "a" * 4095 + "     "
    parts = split_text(text)
    assert_good_split(text, parts)
    assert parts == ["a" * 4094, "a     "]


def test_long_markdown_with_emoji_splits_exactly() -> None:
    text = MARKDOWN * 200  # about 24,000 units
    parts = split_text(text)
    assert len(parts) > 4
    assert_good_split(text, parts)
    # Every part but the last ends at a line break, because the text has one per line.
    assert all(part.endswith("\n") for part in parts[:-1])


@pytest.mark.parametrize("seed", range(20))
def test_random_texts_split_exactly(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311  (reproducible test data, not a secret)
    alphabet = ["a", "b", " ", "\n", "😀", "中", "\u0301", "👍🏽", "\u200d", "*", "_", "`"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12_000)))
    limit = rng.choice([2, 3, 7, 64, 4096])
    assert_good_split(text, split_text(text, limit), limit)
