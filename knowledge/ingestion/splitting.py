"""Split parsed sections into chunks for embedding and keyword search.

Sizes are in characters. The splitter tries paragraph and line breaks first, then sentence
ends (Chinese 。！？； and their English counterparts), then commas and spaces, and only as a
last resort cuts inside a word. Punctuation stays with the sentence it ends. A chunk never
spans two sections, so it keeps one heading path and one page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from knowledge.ingestion.parsing import Section

MIN_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 4000

SEPARATORS: tuple[str, ...] = (
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    "；",
    ". ",
    "! ",
    "? ",
    "; ",
    "，",
    ", ",
    " ",
    "",
)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it is stored: `order` counts from 0 across the whole document and
    `sha256` is the hex digest of the UTF-8 text (the embedding cache key)."""

    text: str
    order: int
    heading_path: tuple[str, ...]
    page: int | None
    sha256: str


def split_sections(
    sections: Sequence[Section],
    *,
    chunk_size: int = 500,
    chunk_overlap: int = 50,
) -> list[ChunkDraft]:
    validate_split_settings(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    splitter = _splitter(chunk_size, chunk_overlap)
    drafts: list[ChunkDraft] = []
    for section in sections:
        for piece in splitter.split_text(section.text):
            text = piece.strip()
            if not text:
                continue
            drafts.append(
                ChunkDraft(
                    text=text,
                    order=len(drafts),
                    heading_path=section.heading_path,
                    page=section.page,
                    sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                )
            )
    return drafts


def validate_split_settings(*, chunk_size: int, chunk_overlap: int) -> None:
    """Raise ValueError unless the sizes are usable; forms and models can call it too."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(
            f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} characters, "
            f"not {chunk_size}"
        )
    # Overlap of half a chunk or more would index most text twice.
    if not 0 <= chunk_overlap < chunk_size / 2:
        raise ValueError(
            f"chunk_overlap must be at least 0 and less than half of chunk_size "
            f"({chunk_size}), not {chunk_overlap}"
        )


@lru_cache(maxsize=32)
def _splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    # Imported here: langchain-core takes a third of a second to import, and only the
    # ingestion worker needs it.
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        separators=list(SEPARATORS),
        keep_separator="end",
        is_separator_regex=False,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        length_function=len,
        strip_whitespace=True,
    )
