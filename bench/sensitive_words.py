"""Sensitive-word filter: building a 100,000-word list and filtering a 10,000-character text.

Generates a reproducible list (half Chinese words of 2-6 characters, half English words of
4-10 letters, a fifth of them two-word phrases), then measures what a worker does: split the
stored text into words and build the automaton (once per list version, see MatcherCache), and
filter one message (find every occurrence, overlapping ones included; pick the reported words;
mask). Prints a Markdown table, one row per text, on stdout.

    .venv/bin/python bench/sensitive_words.py [--words 100000] [--chars 10000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflows.engine.sensitive_words import (
    WordMatcher,
    found_words,
    mask,
    split_words,
)

# The 3,000 CJK characters from U+4E00 on: common enough to collide like real words do.
CJK = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]
LATIN = "abcdefghijklmnopqrstuvwxyz"


def make_words(count: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        if rng.random() < 0.5:
            words.add("".join(rng.choices(CJK, k=rng.randint(2, 6))))
        else:
            word = "".join(rng.choices(LATIN, k=rng.randint(4, 10)))
            if rng.random() < 0.2:
                word += " " + "".join(rng.choices(LATIN, k=rng.randint(3, 4)))
            words.add(word)
    return sorted(words)


def make_text(chars: int, words: list[str], planted: int, rng: random.Random) -> str:
    """Random Chinese and English with `planted` list words in it, some upper-cased."""
    parts: list[str] = []
    size = 0
    while size < chars:
        if rng.random() < planted / (chars / 8):
            piece = rng.choice(words)
            piece = piece.upper() if rng.random() < 0.3 else piece
        elif rng.random() < 0.5:
            piece = "".join(rng.choices(CJK, k=rng.randint(1, 8)))
        else:
            piece = " " + "".join(rng.choices(LATIN, k=rng.randint(2, 9))) + " "
        parts.append(piece)
        size += len(piece)
    return "".join(parts)[:chars]


def timed_ms(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=100_000)
    parser.add_argument("--chars", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200, help="filter runs per text")
    args = parser.parse_args()

    rng = random.Random(20261122)
    words = make_words(args.words, rng)
    stored = "\n".join(words)  # as the admin stores a list
    print(
        f"python {platform.python_version()}, ahocorasick-rs {metadata.version('ahocorasick-rs')},"
        f" {os.cpu_count()} cores; {len(words):,} words ({len(stored):,} characters)",
        file=sys.stderr,
    )

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    split_ms = statistics.median(timed_ms(lambda: split_words(stored), 3))
    build_times = timed_ms(lambda: WordMatcher(split_words(stored)), 3)
    matcher = WordMatcher(words)
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024

    print(
        "| Text | Words | Split ms | Split + build ms | Matches | Reported | Filter ms (median) "
        "| Filter ms (p95) | Peak RSS growth MB |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for planted in (0, 50, 500):
        label = f"{planted or 'no'} planted words"
        text = make_text(args.chars, words, planted, rng)

        def run(text: str = text) -> tuple[str, list[str]]:
            matches = matcher.find(text)
            return mask(text, matches), found_words(matches)

        times = sorted(timed_ms(run, args.repeat))
        matches = matcher.find(text)
        print(
            f"| {len(text):,} chars, {label} | {len(words):,} | {split_ms:.0f} "
            f"| {statistics.median(build_times):.0f} | {len(matches)} "
            f"| {len(found_words(matches))} | {statistics.median(times):.2f} "
            f"| {times[int(len(times) * 0.95) - 1]:.2f} | {rss_mb:.0f} |"
        )


if __name__ == "__main__":
    main()
