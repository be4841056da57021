"""Parsing uploads into sections and splitting sections into chunks: plain Python, no Django.

The knowledge services call `parse_document` and `split_sections`; everything here works on
bytes and strings so it can be tested and benchmarked without a database.
"""

from __future__ import annotations

from knowledge.ingestion.parsing import (
    SUPPORTED_EXTENSIONS,
    Limits,
    ParsedDocument,
    ParseError,
    Section,
    parse_document,
)
from knowledge.ingestion.splitting import ChunkDraft, split_sections

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ChunkDraft",
    "Limits",
    "ParseError",
    "ParsedDocument",
    "Section",
    "parse_document",
    "split_sections",
]
