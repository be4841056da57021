"""The hash chain over audit entries and its verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from audit.models import AuditEntry

GENESIS_HASH = "0" * 64
_HASHED_FIELDS = (
    "seq",
    "action",
    "actor_id",
    "actor_username",
    "target_type",
    "target_id",
    "target_repr",
    "changes",
    "extra",
    "source",
    "request_id",
    "ip",
    "user_agent",
    "prev_hash",
)


def entry_digest(entry: AuditEntry) -> str:
    content: dict[str, Any] = {name: getattr(entry, name) for name in _HASHED_FIELDS}
    content["created_at"] = entry.created_at.isoformat()
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    kind: str  # "altered", "deleted" or "inserted"
    seq: int
    entry_id: int | None
    message: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_hash: str
    problem: ChainProblem | None


def _pairs(entries: Iterable[AuditEntry]) -> Iterator[tuple[AuditEntry, AuditEntry | None]]:
    iterator = iter(entries)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following


def verify_chain(entries: Iterable[AuditEntry]) -> ChainReport:
    """Walk entries in (seq, id) order and report the first one that breaks the chain."""
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    for entry, following in _pairs(entries):
        checked += 1
        intact = entry_digest(entry) == entry.entry_hash
        if entry.seq <= prev_seq:
            return _report(
                checked,
                prev_hash,
                "inserted",
                entry,
                f"entry #{entry.seq} (row id {entry.pk}) repeats a sequence number "
                "already in the chain: it was inserted",
            )
        if entry.seq > prev_seq + 1:
            missing = f"#{prev_seq + 1}" + (
                f" to #{entry.seq - 1}" if entry.seq - 1 > prev_seq + 1 else ""
            )
            return _report(
                checked,
                prev_hash,
                "deleted",
                entry,
                f"entry {missing} is missing before #{entry.seq}: it was deleted",
            )
        if not intact:
            # If the next entry links to this one's predecessor, the chain never held this
            # row: it was inserted. Otherwise its content changed after it was written.
            skipped = following is not None and following.prev_hash == prev_hash
            if skipped or entry.prev_hash != prev_hash:
                return _report(
                    checked,
                    prev_hash,
                    "inserted",
                    entry,
                    f"entry #{entry.seq} (row id {entry.pk}) is not part of the chain: "
                    "it was inserted",
                )
            return _report(
                checked,
                prev_hash,
                "altered",
                entry,
                f"entry #{entry.seq} (row id {entry.pk}) does not match its hash: "
                "it was altered after it was written",
            )
        if entry.prev_hash != prev_hash:
            return _report(
                checked,
                prev_hash,
                "altered",
                entry,
                f"entry #{entry.seq} does not link to entry #{prev_seq}: the chain "
                "was rewritten from here",
            )
        prev_seq, prev_hash = entry.seq, entry.entry_hash
    return ChainReport(checked=checked, head_hash=prev_hash, problem=None)


def _report(checked: int, head: str, kind: str, entry: AuditEntry, message: str) -> ChainReport:
    problem = ChainProblem(kind=kind, seq=entry.seq, entry_id=entry.pk, message=message)
    return ChainReport(checked=checked, head_hash=head, problem=problem)


def verify_stored_chain() -> ChainReport:
    return verify_chain(AuditEntry.objects.order_by("seq", "id").iterator(chunk_size=2000))
