"""Sensitive-word matching for the ``sensitive_word_filter`` node: plain Python, no ORM.

A :class:`WordMatcher` is an Aho-Corasick automaton (``ahocorasick_rs``) over case-folded
words; it reports every occurrence, overlapping ones included, as character spans of the
original text. Word lists are edited in the admin (``workflows.SensitiveWordList``), loaded by
the runner and kept compiled per worker process in a :class:`MatcherCache`, so a
100,000-word list is built once per change rather than once per run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import ahocorasick_rs

# The resource kind a node names to get a list's matcher from the runner (see Node.resources).
WORD_LIST_RESOURCE = "sensitive_word_list"
MAX_WORDS = 100_000
MAX_WORD_LENGTH = 100


def fold(text: str) -> str:
    """Lower-case letters without moving any character, so that a span found in the folded
    text is the same span in the original. Chinese has no case and stays as it is."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few letters lower-case to two characters ("İ" -> "i̇"): those are left as they are.
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def split_words(text: str) -> list[str]:
    """One word per line: stripped, blank lines dropped, repeats (ignoring case) dropped."""
    seen: set[str] = set()
    words: list[str] = []
    for line in text.splitlines():
        word = line.strip()
        key = fold(word)
        if word and key not in seen:
            seen.add(key)
            words.append(word)
    return words


def word_problems(words: Sequence[str]) -> list[str]:
    """Why these words cannot be stored as a list; empty when they can."""
    problems: list[str] = []
    if len(words) > MAX_WORDS:
        problems.append(f"{len(words):,} words: a list holds at most {MAX_WORDS:,}.")
    too_long = [word for word in words if len(word) > MAX_WORD_LENGTH]
    if too_long:
        shown = ", ".join(f"{word[:20]}… ({len(word)})" for word in too_long[:3])
        more = f" and {len(too_long) - 3} more" if len(too_long) > 3 else ""
        problems.append(
            f"{len(too_long)} word(s) longer than {MAX_WORD_LENGTH} characters: {shown}{more}."
        )
    return problems


@dataclass(frozen=True)
class Match:
    word: str  # as written in its list
    start: int
    end: int


class WordMatcher:
    """Finds words in text, ignoring case, overlapping occurrences included."""

    def __init__(self, words: Iterable[str]) -> None:
        by_key: dict[str, str] = {}
        for word in words:
            key = fold(word.strip())
            if key and key not in by_key:
                by_key[key] = word.strip()
        self.words = list(by_key.values())
        self._automaton = ahocorasick_rs.AhoCorasick(by_key) if by_key else None

    def __len__(self) -> int:
        return len(self.words)

    def find(self, text: str) -> list[Match]:
        if self._automaton is None:
            return []
        found = self._automaton.find_matches_as_indexes(fold(text), overlapping=True)
        return [Match(self.words[index], start, end) for index, start, end in found]


def found_words(matches: Iterable[Match]) -> list[str]:
    """The distinct words found, in text order. Where occurrences overlap the longest one
    wins: a word seen only inside a longer match ("he" in "hello") is not reported."""
    reported: dict[str, None] = {}
    reach = -1
    for match in sorted(matches, key=lambda m: (m.start, -m.end)):
        # Sorted by start, longest first: a match ending within `reach` lies inside one before.
        if match.end > reach:
            reported.setdefault(match.word)
            reach = match.end
    return list(reported)


def mask(text: str, matches: Iterable[Match], mask_char: str = "*") -> str:
    """Every character covered by some match replaced by `mask_char`: overlapping and
    adjacent matches are masked as one stretch, so no part of any word shows."""
    chars = list(text)
    for match in matches:
        chars[match.start : match.end] = [mask_char] * (match.end - match.start)
    return "".join(chars)


@dataclass
class _Entry:
    version: Hashable
    matcher: WordMatcher


class MatcherCache:
    """Compiled word lists by name, each for one version (its ``updated_at``); a new version
    replaces the old one, and beyond `limit` names the least recently used is dropped."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # Celery's thread pool runs several runs at once

    def get_or_build(
        self, name: str, version: Hashable, words: Callable[[], Iterable[str]]
    ) -> WordMatcher:
        """The list's matcher; `words` is called (and the automaton built) only on a miss."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.version == version:
                self._entries.move_to_end(name)
                return entry.matcher
        # Built outside the lock: two threads may both build a new version; the last one wins.
        matcher = WordMatcher(words())
        with self._lock:
            self._entries[name] = _Entry(version, matcher)
            self._entries.move_to_end(name)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
        return matcher

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
