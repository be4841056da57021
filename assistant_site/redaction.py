"""Removal of personal data and credentials from text before it is logged."""

from __future__ import annotations

import re

# Order matters: an 18-digit ID-card number contains 11-digit runs that look like phones.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*"), "Bearer [REDACTED]"),
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (
        re.compile(
            r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])"
            r"(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])"
        ),
        "[ID-CARD]",
    ),
    (re.compile(r"(?<![\d+])(?:\+?86[\s\-]?)?1[3-9]\d{9}(?!\d)"), "[PHONE]"),
    (re.compile(r"(?<![\w+])\+\d{1,3}[\s\-]?\d{2,4}(?:[\s\-]?\d{2,4}){1,3}(?!\d)"), "[PHONE]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
