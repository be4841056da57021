"""Models whose changes are audited with field-level diffs, wherever the change comes from.

``register(Model)`` connects pre/post save and delete handlers: the admin, the API, services
and shell sessions all leave the same trail. Encrypted fields and fields listed in
``masked`` appear in diffs as a mask; fields in ``exclude`` are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from assistant_site.crypto import MASK, EncryptedTextField, StoredSecret
from audit.services import Actions, audit_record


@dataclass(frozen=True)
class AuditedModel:
    exclude: frozenset[str] = field(default_factory=frozenset)
    masked: frozenset[str] = field(default_factory=frozenset)


_registry: dict[type[models.Model], AuditedModel] = {}
_OLD_STATE = "_audit_old_state"


def register(
    model: type[models.Model],
    *,
    exclude: tuple[str, ...] = (),
    masked: tuple[str, ...] = (),
) -> None:
    if model in _registry:
        return
    _registry[model] = AuditedModel(exclude=frozenset(exclude), masked=frozenset(masked))
    uid = f"audit:{model._meta.label}"
    pre_save.connect(_remember_old_state, sender=model, dispatch_uid=uid + ":pre")
    post_save.connect(_record_save, sender=model, dispatch_uid=uid + ":post")
    post_delete.connect(_record_delete, sender=model, dispatch_uid=uid + ":delete")


def is_registered(model: type[models.Model]) -> bool:
    return model in _registry


def _snapshot(instance: models.Model) -> dict[str, Any]:
    config = _registry[type(instance)]
    state: dict[str, Any] = {}
    for model_field in instance._meta.concrete_fields:
        if model_field.name in config.exclude:
            continue
        value = model_field.value_from_object(instance)
        if isinstance(model_field, EncryptedTextField) or model_field.name in config.masked:
            # Compare ciphertexts (or hashes) but never store them: keep only "set or not".
            state[model_field.name] = (
                "masked",
                value.ciphertext if isinstance(value, StoredSecret) else value,
            )
        elif value is None or isinstance(value, bool | int | float | str):
            state[model_field.name] = value
        else:
            state[model_field.name] = model_field.value_to_string(instance)
    return state


def _public(value: Any) -> Any:
    if isinstance(value, tuple) and value and value[0] == "masked":
        return MASK if value[1] else ""
    return value


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [_public(old.get(name)), _public(value)]
        for name, value in new.items()
        if old.get(name) != value
    }


def _remember_old_state(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if instance._state.adding or instance.pk is None or kwargs.get("raw"):
        return
    old = sender._default_manager.filter(pk=instance.pk).first()
    if old is not None:
        setattr(instance, _OLD_STATE, _snapshot(old))


def _record_save(
    sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any
) -> None:
    if kwargs.get("raw"):
        return
    new = _snapshot(instance)
    old: dict[str, Any] | None = instance.__dict__.pop(_OLD_STATE, None)
    if created or old is None:
        changes = {name: [None, _public(value)] for name, value in new.items()}
        audit_record(action=Actions.OBJECT_CREATE, target=instance, changes=changes)
        return
    changes = diff(old, new)
    if changes:
        audit_record(action=Actions.OBJECT_UPDATE, target=instance, changes=changes)


def _record_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    changes = {name: [_public(value), None] for name, value in _snapshot(instance).items()}
    audit_record(action=Actions.OBJECT_DELETE, target=instance, changes=changes)
