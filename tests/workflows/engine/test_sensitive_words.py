from __future__ import annotations

from workflows.engine.sensitive_words import (
    MAX_WORDS,
    Match,
    MatcherCache,
    WordMatcher,
    fold,
    found_words,
    mask,
    split_words,
    word_problems,
)


def test_folding_lowers_letters_without_moving_any_character() -> None:
    assert fold("Hello 世界 ÄÖ") == "hello 世界 äö"
    # "İ" lower-cases to two characters: it is kept, so later spans still line up.
    assert fold("İstanbul BAD") == "İstanbul bad"
    assert WordMatcher(["bad"]).find("İİ BAD") == [Match("bad", 3, 6)]


def test_split_words_strips_and_drops_blank_lines_and_repeats_ignoring_case() -> None:
    assert split_words("  法轮功 \n\n Bad\r\nbad\nBAD word\n法轮功\n   \n") == [
        "法轮功",
        "Bad",
        "BAD word",
    ]


def test_word_problems_name_the_limits() -> None:
    assert word_problems(["ok", "x" * 100]) == []
    [too_many] = word_problems([f"w{i}" for i in range(MAX_WORDS + 1)])
    assert "100,001 words" in too_many
    assert "at most 100,000" in too_many
    [too_long] = word_problems(["短", "长" * 101, "y" * 150])
    assert too_long.startswith("2 word(s) longer than 100 characters")
    assert "(101)" in too_long
    assert "(150)" in too_long


def test_matches_are_reported_overlapping_with_the_words_as_listed() -> None:
    matcher = WordMatcher(["Falun", "falun gong", "轮", "  "])
    assert len(matcher) == 3
    assert matcher.find("FALUN GONG 轮") == [
        Match("Falun", 0, 5),
        Match("falun gong", 0, 10),
        Match("轮", 11, 12),
    ]
    assert WordMatcher([]).find("anything") == []


def test_found_words_keep_text_order_and_drop_words_inside_longer_matches() -> None:
    matches = [Match("he", 0, 2), Match("hello", 0, 5), Match("llo", 2, 5), Match("he", 6, 8)]
    assert found_words(matches) == ["hello", "he"]
    assert found_words([Match("ab", 0, 2), Match("bc", 1, 3)]) == ["ab", "bc"]


def test_mask_covers_the_union_of_all_matches() -> None:
    assert mask("abcdef", [Match("bc", 1, 3), Match("cd", 2, 4)], "-") == "a---ef"
    assert mask("abc", []) == "abc"


def test_the_cache_builds_each_list_version_once() -> None:
    cache = MatcherCache(limit=2)
    builds: list[str] = []

    def words(name: str, *listed: str) -> list[str]:
        builds.append(name)
        return list(listed)

    first = cache.get_or_build("a", 1, lambda: words("a", "x"))
    assert cache.get_or_build("a", 1, lambda: words("a", "never")) is first
    changed = cache.get_or_build("a", 2, lambda: words("a", "y"))
    assert changed.words == ["y"]
    cache.get_or_build("b", 1, lambda: words("b"))
    cache.get_or_build("c", 1, lambda: words("c"))  # over the limit: "a" is dropped
    cache.get_or_build("a", 2, lambda: words("a", "y"))
    assert builds == ["a", "a", "b", "c", "a"]
