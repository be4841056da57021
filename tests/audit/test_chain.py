"""The hash chain: numbering and links on write, and the verifier catching tampering."""

from __future__ import annotations

import itertools
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import Error as DatabaseError
from django.test import Client

from audit.chain import GENESIS_HASH, ChainReport, entry_digest, verify_stored_chain
from audit.models import AuditEntry
from audit.services import audit_record


@pytest.fixture
def empty_trail(db: None) -> None:
    """Start the test from an empty trail (migrations leave role set-up entries behind).

    TRUNCATE fires no row trigger, and like the rest of the test it is rolled back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE audit_auditentry")
        else:
            cursor.execute("DELETE FROM audit_auditentry")


@pytest.fixture
def tamperable(db: None) -> None:
    """Let the test edit and delete entries, as someone with the table owner's rights could.

    On PostgreSQL the append-only trigger is disabled inside the test's transaction, so the
    rollback at the end of the test brings it back. SQLite has no trigger."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")


def _write(count: int) -> list[AuditEntry]:
    return [
        audit_record(
            action="sensitive.access",
            target_type="workflows.workflow",
            target_id=str(n),
            target_repr=f"Kundenanfrage Übersicht 客服 {n}",
            extra={"what": "conversation", "n": n},
        )
        for n in range(1, count + 1)
    ]


def _verify_command() -> str:
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    return out.getvalue()


def _command_error() -> str:
    with pytest.raises(CommandError) as caught:
        _verify_command()
    return str(caught.value)


# --- writing ----------------------------------------------------------------------------------


def test_sequential_writes_are_numbered_without_gaps_and_linked(empty_trail: None) -> None:
    _write(3)

    stored = list(AuditEntry.objects.order_by("seq"))
    assert [entry.seq for entry in stored] == [1, 2, 3]
    assert stored[0].prev_hash == GENESIS_HASH
    assert stored[1].prev_hash == stored[0].entry_hash
    assert stored[2].prev_hash == stored[1].entry_hash
    assert len({entry.entry_hash for entry in stored}) == 3
    # What was hashed is what the database gives back.
    assert [entry_digest(entry) for entry in stored] == [entry.entry_hash for entry in stored]


def test_writes_continue_the_existing_chain(db: None) -> None:
    head = AuditEntry.objects.order_by("-seq").first()
    entry = _write(1)[0]
    if head is None:
        assert (entry.seq, entry.prev_hash) == (1, GENESIS_HASH)
    else:
        assert (entry.seq, entry.prev_hash) == (head.seq + 1, head.entry_hash)


@pytest.mark.parametrize(
    "address",
    ["203.0.113.5", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "::ffff:203.0.113.5"],
)
def test_entries_for_any_client_address_form_verify(
    empty_trail: None, client: Client, address: str
) -> None:
    response = client.post(
        "/admin/login/", {"username": "nobody", "password": "wrong-password"}, REMOTE_ADDR=address
    )
    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="auth.login_failed")
    assert entry.ip is not None
    assert verify_stored_chain().problem is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_share_or_skip_a_sequence_number(postgres: None) -> None:
    writers, per_writer = 6, 5
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for n in range(per_writer):
                audit_record(action="sensitive.access", target_repr=f"writer {writer} #{n}")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []

    written = list(
        AuditEntry.objects.filter(target_repr__startswith="writer ").order_by("seq", "id")
    )
    assert len(written) == writers * per_writer
    seqs = [entry.seq for entry in written]
    assert seqs == list(range(seqs[0], seqs[0] + writers * per_writer))
    for before, after in itertools.pairwise(written):
        assert after.prev_hash == before.entry_hash
    report = verify_stored_chain()
    assert report.problem is None
    assert report.head_hash == written[-1].entry_hash


# --- verifying --------------------------------------------------------------------------------


def test_intact_chain_passes_and_reports_the_head_hash(empty_trail: None) -> None:
    entries = _write(3)

    report = verify_stored_chain()
    assert report == ChainReport(checked=3, head_hash=entries[-1].entry_hash, problem=None)
    assert _verify_command().strip() == (
        f"audit chain intact: 3 entries, head hash {entries[-1].entry_hash}"
    )


def test_the_head_hash_moves_with_every_new_entry(empty_trail: None) -> None:
    _write(2)
    before = verify_stored_chain().head_hash
    _write(1)
    after = verify_stored_chain().head_hash
    assert before != after
    assert after == AuditEntry.objects.get(seq=3).entry_hash


def test_verifier_detects_an_altered_entry(empty_trail: None, tamperable: None) -> None:
    entries = _write(3)
    AuditEntry.objects.filter(pk=entries[1].pk).update(actor_username="someone-else")

    report = verify_stored_chain()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.entry_id) == (
        "altered",
        2,
        entries[1].pk,
    )
    assert report.checked == 2
    message = _command_error()
    assert "audit chain broken (altered)" in message
    assert f"entry #2 (row id {entries[1].pk})" in message


def test_verifier_detects_an_edit_whose_hash_was_recomputed(
    empty_trail: None, tamperable: None
) -> None:
    entries = _write(3)
    forged = AuditEntry.objects.get(pk=entries[1].pk)
    forged.target_repr = "nothing to see"
    forged.entry_hash = entry_digest(forged)
    forged.save()

    # Entry #2 is self-consistent now, but #3 still links to the original #2.
    report = verify_stored_chain()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("altered", 3)
    assert "entry #3 does not link to entry #2" in _command_error()


@pytest.mark.parametrize(
    ("deleted", "reported_seq", "message"),
    [
        ((2,), 3, "entry #2 is missing before #3"),
        ((1,), 2, "entry #1 is missing before #2"),
        ((2, 3), 4, "entry #2 to #3 is missing before #4"),
    ],
)
def test_verifier_detects_deleted_entries(
    empty_trail: None,
    tamperable: None,
    deleted: tuple[int, ...],
    reported_seq: int,
    message: str,
) -> None:
    _write(4)
    AuditEntry.objects.filter(seq__in=deleted).delete()

    report = verify_stored_chain()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("deleted", reported_seq)
    assert message in report.problem.message
    error = _command_error()
    assert "audit chain broken (deleted)" in error
    assert message in error


def test_verifier_detects_an_inserted_entry(empty_trail: None) -> None:
    entries = _write(3)
    # A careful forger copies entry #2's place in the chain and hashes the forgery properly.
    # INSERT is not refused, so no trigger needs to be disabled.
    forged = AuditEntry(
        seq=2,
        created_at=entries[1].created_at,
        action="object.delete",
        actor_username="admin",
        target_type="workflows.workflow",
        target_id="42",
        target_repr="Payroll",
        prev_hash=entries[0].entry_hash,
    )
    forged.entry_hash = entry_digest(forged)
    forged.save(force_insert=True)

    report = verify_stored_chain()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.entry_id) == (
        "inserted",
        2,
        forged.pk,
    )
    error = _command_error()
    assert "audit chain broken (inserted)" in error
    assert f"entry #2 (row id {forged.pk})" in error


def test_verifier_detects_an_entry_inserted_with_a_made_up_hash(empty_trail: None) -> None:
    entries = _write(2)
    forged = AuditEntry(
        seq=3,
        created_at=entries[1].created_at,
        action="auth.login",
        actor_username="admin",
        prev_hash="f" * 64,
        entry_hash="e" * 64,
    )
    forged.save(force_insert=True)

    report = verify_stored_chain()
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.problem.entry_id) == (
        "inserted",
        3,
        forged.pk,
    )
    assert "audit chain broken (inserted)" in _command_error()


# --- the PostgreSQL trigger ---------------------------------------------------------------------


def test_database_refuses_to_update_an_entry(postgres: None) -> None:
    entry = _write(1)[0]

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor_username="someone-else")
    entry.actor_username = "someone-else"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.save()

    assert AuditEntry.objects.get(pk=entry.pk).actor_username == ""
    assert verify_stored_chain().problem is None


def test_database_refuses_to_delete_an_entry(postgres: None) -> None:
    entry = _write(1)[0]

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()
    assert verify_stored_chain().problem is None
