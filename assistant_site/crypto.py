"""Secrets at rest: AES-256-GCM with the key id stored beside each ciphertext.

Stored form: ``enc:v1:<key id>:<base64(12-byte nonce + ciphertext + tag)>``. The key id is
also the associated data, so a value cannot be passed off as encrypted under another key.
Keys come from the ``SECRETS_KEYS`` setting; the first one encrypts, all of them decrypt,
which is what lets ``manage.py rotate_secrets_key`` move values from an old key to a new one.

A loaded value is a :class:`StoredSecret`: it prints as a mask and is decrypted only when
``reveal()`` is called, so a secret cannot leak through a template, a serializer or a log line
by accident.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

_PREFIX = "enc:v1:"
MASK = "••••••••"


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def _keys() -> dict[str, bytes]:
    keys: dict[str, bytes] = settings.SECRETS_KEYS
    return keys


def current_key_id() -> str:
    key_id: str = settings.SECRETS_CURRENT_KEY_ID
    if not key_id:
        raise ImproperlyConfigured(
            "SECRETS_KEYS is not set, so secrets cannot be stored; generate a key with "
            "`python manage.py generate_secrets_key` and add it to the environment"
        )
    return key_id


def encrypt(plaintext: str) -> str:
    key_id = current_key_id()
    nonce = os.urandom(12)
    sealed = AESGCM(_keys()[key_id]).encrypt(nonce, plaintext.encode(), key_id.encode())
    return f"{_PREFIX}{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def key_id_of(stored: str) -> str:
    if not stored.startswith(_PREFIX):
        raise SecretDecryptionError("value is not in the enc:v1 format")
    return stored[len(_PREFIX) :].split(":", 1)[0]


def decrypt(stored: str) -> str:
    key_id = key_id_of(stored)
    key = _keys().get(key_id)
    if key is None:
        raise SecretDecryptionError(
            f"secret was encrypted with key id {key_id!r}, which is not in SECRETS_KEYS "
            f"(configured: {', '.join(_keys()) or 'none'})"
        )
    try:
        blob = base64.b64decode(stored.rsplit(":", 1)[1], validate=True)
        return AESGCM(key).decrypt(blob[:12], blob[12:], key_id.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise SecretDecryptionError(
            f"key {key_id!r} does not decrypt this secret: the key material differs from the "
            "one used to encrypt it, or the stored value was altered"
        ) from exc


class StoredSecret:
    """An encrypted value as loaded from the database."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    @property
    def key_id(self) -> str:
        return key_id_of(self.ciphertext)

    def reveal(self) -> str:
        return decrypt(self.ciphertext)

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"StoredSecret({MASK})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A secret encrypted at rest. Assign a plain ``str``; read back a :class:`StoredSecret`.

    An empty value means "not set" and is stored as the empty string.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if not value:
            return ""
        return StoredSecret(value)

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, StoredSecret):
            return value or ""
        if isinstance(value, str) and value.startswith(_PREFIX):
            return StoredSecret(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        if value is None or value == "":
            return ""
        if isinstance(value, StoredSecret):
            return value.ciphertext
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata) keeps the ciphertext, never the plaintext.
        value = self.value_from_object(obj)
        return value.ciphertext if isinstance(value, StoredSecret) else ""


def is_set(value: object) -> bool:
    return isinstance(value, StoredSecret) or bool(value)


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
