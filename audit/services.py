"""Writing the audit trail. Every entry goes through :func:`audit_record`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from assistant_site import request_context
from assistant_site.metrics import AUDIT_ENTRIES
from audit.chain import GENESIS_HASH, entry_digest
from audit.models import AuditEntry

logger = logging.getLogger(__name__)

# Arbitrary constant naming the PostgreSQL advisory lock that serialises chain appends.
_CHAIN_LOCK_KEY = 0x41554454  # "AUDT"


class Actions:
    OBJECT_CREATE = "object.create"
    OBJECT_UPDATE = "object.update"
    OBJECT_DELETE = "object.delete"
    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    LOGIN_FAILED = "auth.login_failed"
    LOCKED_OUT = "auth.locked_out"
    GROUP_MEMBER_ADD = "group.member_add"
    GROUP_MEMBER_REMOVE = "group.member_remove"
    GROUP_PERMISSION_ADD = "group.permission_add"
    GROUP_PERMISSION_REMOVE = "group.permission_remove"
    PERMISSION_GRANT = "permission.grant"
    PERMISSION_REVOKE = "permission.revoke"
    SECRET_REVEAL = "secret.reveal"  # noqa: S105  (an action name)
    SECRETS_ROTATE = "secret.rotate_key"
    SENSITIVE_ACCESS = "sensitive.access"
    AUDIT_EXPORT = "audit.export"


def _actor_fields(actor: Any) -> tuple[int | None, str]:
    context = request_context.current()
    if actor is None and context.request is not None:
        actor = getattr(context.request, "user", None)
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.pk, actor.get_username()
    return context.actor_id, context.actor_username


def _stored_ip(ip: str | None) -> str | None:
    # The database keeps IPv6 addresses in canonical form ("2001:DB8:0::1" reads back as
    # "2001:db8::1"): hash the form that will be read back, or the entry fails verification.
    if ip and ":" in ip:
        try:
            return clean_ipv6_address(ip)
        except ValidationError:
            return None
    return ip


def audit_record(
    *,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    changes: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    actor: Any = None,
) -> AuditEntry:
    """Append one entry to the chain, inside the caller's transaction if there is one.

    The actor defaults to the user of the current request; request id, address and user
    agent come from the request context.
    """
    context = request_context.current()
    actor_id, actor_username = _actor_fields(actor)
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_repr = target_repr or str(target)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
        last = AuditEntry.objects.order_by("-seq", "-id").values_list("seq", "entry_hash").first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        entry = AuditEntry(
            seq=seq,
            created_at=timezone.now(),
            action=action,
            actor_id=actor_id,
            actor_username=actor_username,
            target_type=target_type,
            target_id=target_id[:64],
            target_repr=target_repr[:200],
            changes=changes or {},
            extra=extra or {},
            source=context.source,
            request_id=context.request_id,
            ip=_stored_ip(context.ip),
            user_agent=context.user_agent,
            prev_hash=prev_hash,
        )
        entry.entry_hash = entry_digest(entry)
        entry.save(force_insert=True)
    AUDIT_ENTRIES.labels(action).inc()
    return entry


def sensitive_access_record(*, target: models.Model, what: str, actor: Any = None) -> AuditEntry:
    """Record that someone read data a feature marks sensitive (a conversation, a secret)."""
    return audit_record(
        action=Actions.SENSITIVE_ACCESS, target=target, extra={"what": what}, actor=actor
    )
