"""Telegram text arithmetic: lengths and entity offsets are counted in UTF-16 code units.

A Python ``str`` counts code points, so every character outside the Basic Multilingual Plane
(most emoji, some CJK extensions) is one ``str`` index but two Telegram units. Everything
here takes and returns ``str`` indices, converting at the edges, and never cuts between the
two units of such a character.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from itertools import accumulate

MAX_MESSAGE_UNITS = 4096  # telegram.constants.MessageLimit.MAX_TEXT_LENGTH

# Characters that belong to the character before them: cutting before one would leave a
# dangling modifier at the start of the next message (a bare skin tone, a lost variation).
_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f", "\u20e3"})
_SKIN_TONES = range(0x1F3FB, 0x1F400)


def units(char: str) -> int:
    """UTF-16 code units of one character (a lone surrogate from bad JSON counts one)."""
    return 2 if ord(char) > 0xFFFF else 1


def utf16_len(text: str) -> int:
    return sum(units(char) for char in text)


def utf16_index(text: str, offset: int) -> int:
    """The ``str`` index of the character at UTF-16 ``offset`` (clamped to the text; an
    offset inside a surrogate pair moves to the start of that character)."""
    if offset <= 0:
        return 0
    starts = [0, *accumulate(units(char) for char in text)]  # starts[i]: units before text[i]
    return max(0, bisect_right(starts, offset) - 1)


def utf16_prefix(text: str, limit: int = MAX_MESSAGE_UNITS) -> str:
    """The longest prefix of ``text`` that fits in ``limit`` UTF-16 units."""
    return text[: _fitting_end(text, 0, limit)]


def _fitting_end(text: str, start: int, limit: int) -> int:
    """The end of the longest run of ``text`` from ``start`` that fits in ``limit`` units."""
    used = 0
    for index in range(start, len(text)):
        used += units(text[index])
        if used > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = MAX_MESSAGE_UNITS) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` UTF-16 units each.

    ``"".join(parts) == text`` always holds: nothing is dropped, added or changed (no
    ellipses, no trimmed spaces), so Markdown, code and emoji survive exactly. A part ends
    after a paragraph break if there is one in the second half of the room, else after a
    line break, else after a space, else at the limit (never inside a surrogate pair, and
    not before a combining mark, joiner or skin tone when it can be avoided).
    """
    if limit < 2:
        raise ValueError("limit must leave room for a character outside the BMP")
    parts: list[str] = []
    start = 0
    remaining = utf16_len(text)
    visible_end = len(text.rstrip())
    while remaining > limit:
        cut = _cut(text, start, _fitting_end(text, start, limit), visible_end)
        part = text[start:cut]
        parts.append(part)
        remaining -= utf16_len(part)
        start = cut
    if start < len(text):
        parts.append(text[start:])
    return parts


def _cut(text: str, start: int, end: int, visible_end: int) -> int:
    """Where the part that starts at ``start`` ends, given that ``text[start:end]`` fits.
    Always after ``start``, so that every part has at least one character."""
    # A break earlier than half the room would make needlessly short messages.
    floor = start + max(1, (end - start) // 2)
    cut = 0
    for separator in ("\n\n", "\n"):
        at = text.rfind(separator, floor - 1, end)
        if at >= 0:
            cut = at + len(separator)
            break
    else:
        for index in range(end - 1, floor - 2, -1):
            if text[index].isspace():
                cut = index + 1
                break
    if not cut:
        cut = _not_inside_a_character(text, end, floor)
    # Telegram refuses a message that is only whitespace: when nothing but whitespace would
    # follow, leave the last visible character for the next part instead.
    if start < visible_end <= cut:
        cut = max(_not_inside_a_character(text, visible_end - 1, start + 1), start + 1)
    return cut


def _not_inside_a_character(text: str, cut: int, floor: int) -> int:
    """``cut`` moved back (not below ``floor``) while it would separate a character from
    its modifiers."""
    while cut > floor and cut < len(text) and _clings(text[cut - 1], text[cut]):
        cut -= 1
    return cut


def _clings(before: str, after: str) -> bool:
    return (
        after in _JOINERS
        or before == "\u200d"
        or ord(after) in _SKIN_TONES
        or unicodedata.combining(after) != 0
    )
