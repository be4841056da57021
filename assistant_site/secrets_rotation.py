"""Moving every stored secret onto the current key, in one transaction."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.apps import apps
from django.db import transaction

from assistant_site.crypto import StoredSecret, current_key_id, encrypt, encrypted_fields
from audit.services import Actions, audit_record


@dataclass
class RotationResult:
    key_id: str
    total: int = 0
    already_current: int = 0
    per_field: Counter[str] = field(default_factory=Counter)


def secrets_rotate(*, include_current: bool = False) -> RotationResult:
    """Re-encrypt secrets not on the current key. All or nothing: one undecryptable value
    (a key missing from SECRETS_KEYS) aborts the whole rotation with nothing changed."""
    result = RotationResult(key_id=current_key_id())
    with transaction.atomic():
        for model in apps.get_models():
            for secret_field in encrypted_fields(model):
                rows = model._default_manager.exclude(**{secret_field.name: ""})
                for pk, value in rows.values_list("pk", secret_field.name).iterator():
                    # values_list bypasses from_db_value for some backends; normalise.
                    secret = value if isinstance(value, StoredSecret) else StoredSecret(value)
                    if secret.key_id == result.key_id and not include_current:
                        result.already_current += 1
                        continue
                    fresh = StoredSecret(encrypt(secret.reveal()))
                    model._default_manager.filter(pk=pk).update(**{secret_field.name: fresh})
                    result.per_field[f"{model._meta.label}.{secret_field.name}"] += 1
                    result.total += 1
        audit_record(
            action=Actions.SECRETS_ROTATE,
            extra={
                "key_id": result.key_id,
                "re_encrypted": result.total,
                "fields": dict(result.per_field),
            },
        )
    return result
