from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from assistant_site.crypto import MASK, SecretDecryptionError, StoredSecret, decrypt, encrypt
from assistant_site.roles import ADMINISTRATOR, OPERATOR
from audit.models import AuditEntry
from audit.services import Actions
from workflows.models import ModelEndpoint

PLAINTEXT = "sk-live-4f8c2d9e1b7a"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"
NEWER_KEY = b"N" * 32


def _stored(endpoint: ModelEndpoint) -> str:
    """The api_key column exactly as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key FROM {ModelEndpoint._meta.db_table} WHERE id = %s",  # noqa: S608
            [endpoint.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    value: str = row[0]
    return value


def _endpoint(name: str = "chat", api_key: str = PLAINTEXT) -> ModelEndpoint:
    return ModelEndpoint.objects.create(
        name=name, base_url="http://llm.internal:8000/v1", model="qwen", api_key=api_key
    )


def _reloaded(endpoint: ModelEndpoint) -> ModelEndpoint:
    return ModelEndpoint.objects.get(pk=endpoint.pk)


def _revealed(endpoint: ModelEndpoint) -> str:
    value = _reloaded(endpoint).api_key
    assert isinstance(value, StoredSecret)
    return value.reveal()


@pytest.fixture
def administrator(make_user: Callable[..., Any]) -> Any:
    return make_user("boss", roles=(ADMINISTRATOR,))


# --- at rest ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_key_round_trips_through_the_database() -> None:
    endpoint = _endpoint()

    loaded = _reloaded(endpoint).api_key

    assert isinstance(loaded, StoredSecret)
    assert loaded.reveal() == PLAINTEXT
    assert loaded.key_id == settings.SECRETS_CURRENT_KEY_ID
    # Printing the loaded value (templates, logs, repr in tracebacks) shows only a mask.
    assert str(loaded) == MASK
    assert PLAINTEXT not in repr(loaded)
    assert PLAINTEXT not in f"{loaded}"


@pytest.mark.django_db
def test_every_write_stores_a_fresh_ciphertext_without_the_plaintext() -> None:
    endpoint = _endpoint()
    stored = [_stored(endpoint)]
    for _ in range(2):
        endpoint.api_key = PLAINTEXT
        endpoint.save()
        stored.append(_stored(endpoint))

    assert len(set(stored)) == 3
    for value in stored:
        assert value.startswith(f"enc:v1:{settings.SECRETS_CURRENT_KEY_ID}:")
        assert PLAINTEXT not in value
        assert base64.b64encode(PLAINTEXT.encode()).decode() not in value
    assert _revealed(endpoint) == PLAINTEXT


@pytest.mark.django_db
def test_saving_other_fields_keeps_the_stored_ciphertext() -> None:
    endpoint = _endpoint()
    before = _stored(endpoint)
    loaded = _reloaded(endpoint)

    loaded.enabled = False
    loaded.save()

    assert _stored(endpoint) == before


@pytest.mark.django_db
def test_an_empty_key_is_stored_as_not_set() -> None:
    endpoint = _endpoint(api_key="")

    assert _stored(endpoint) == ""
    assert _reloaded(endpoint).api_key == ""


@pytest.mark.django_db
def test_wrong_key_material_under_the_same_id_fails_naming_the_key() -> None:
    endpoint = _endpoint()
    key_id = settings.SECRETS_CURRENT_KEY_ID

    with (
        override_settings(SECRETS_KEYS={key_id: OTHER_KEY}),
        pytest.raises(SecretDecryptionError, match=f"key '{key_id}' does not decrypt"),
    ):
        _revealed(endpoint)


@pytest.mark.django_db
def test_a_key_id_that_is_not_configured_fails_listing_the_configured_ids() -> None:
    endpoint = _endpoint()
    key_id = settings.SECRETS_CURRENT_KEY_ID

    with (
        override_settings(
            SECRETS_KEYS={"spare": OTHER_KEY, "newer": NEWER_KEY}, SECRETS_CURRENT_KEY_ID="spare"
        ),
        pytest.raises(SecretDecryptionError) as failure,
    ):
        _revealed(endpoint)

    message = str(failure.value)
    assert f"key id '{key_id}'" in message
    assert "configured: spare, newer" in message


@pytest.mark.django_db
def test_an_altered_ciphertext_fails() -> None:
    endpoint = _endpoint()
    stored = _stored(endpoint)
    prefix, _sep, blob = stored.rpartition(":")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 0x01
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(
        api_key=StoredSecret(f"{prefix}:{base64.b64encode(bytes(raw)).decode()}")
    )

    with pytest.raises(SecretDecryptionError, match="altered"):
        _revealed(endpoint)


def test_a_value_cannot_be_relabelled_to_another_key_id() -> None:
    # Same key material under two ids: the key id is bound into the ciphertext.
    with override_settings(
        SECRETS_KEYS={"first": OTHER_KEY, "second": OTHER_KEY}, SECRETS_CURRENT_KEY_ID="first"
    ):
        stored = encrypt(PLAINTEXT)
        assert decrypt(stored) == PLAINTEXT
        with pytest.raises(SecretDecryptionError, match="'second'"):
            decrypt(stored.replace("enc:v1:first:", "enc:v1:second:"))


# --- API ---------------------------------------------------------------------------------------


def _assert_no_secret(response: Any, *secrets: str) -> None:
    body = response.content.decode()
    assert "enc:v1" not in body
    for secret in secrets:
        assert secret not in body

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    assert "api_key" not in keys(response.json())


def test_api_never_returns_the_key(administrator: Any) -> None:
    api = APIClient()
    api.force_authenticate(user=administrator)

    created = api.post(
        "/api/model-endpoints/create/",
        {
            "name": "chat",
            "base_url": "http://llm.internal:8000/v1",
            "model": "qwen",
            "api_key": PLAINTEXT,
        },
        format="json",
    )

    assert created.status_code == 201
    assert created.json()["api_key_set"] is True
    endpoint = ModelEndpoint.objects.get(pk=created.json()["id"])
    ciphertext = _stored(endpoint)
    assert _revealed(endpoint) == PLAINTEXT
    _assert_no_secret(created, PLAINTEXT, ciphertext)

    detail = api.get(f"/api/model-endpoints/{endpoint.pk}/")
    listing = api.get("/api/model-endpoints/")
    patched = api.patch(
        f"/api/model-endpoints/{endpoint.pk}/update/", {"enabled": False}, format="json"
    )
    for response in (detail, listing, patched):
        assert response.status_code == 200
        _assert_no_secret(response, PLAINTEXT, ciphertext)
    assert detail.json()["api_key_set"] is True
    assert listing.json()["results"][0]["api_key_set"] is True
    assert patched.json()["api_key_set"] is True
    # A PATCH that leaves the key out leaves it untouched.
    assert _stored(endpoint) == ciphertext


def test_api_replaces_and_removes_the_key(administrator: Any) -> None:
    endpoint = _endpoint()
    api = APIClient()
    api.force_authenticate(user=administrator)
    url = f"/api/model-endpoints/{endpoint.pk}/update/"

    replaced = api.patch(url, {"api_key": "sk-rotated"}, format="json")

    assert replaced.status_code == 200
    assert replaced.json()["api_key_set"] is True
    assert _revealed(endpoint) == "sk-rotated"
    _assert_no_secret(replaced, "sk-rotated", PLAINTEXT, _stored(endpoint))

    removed = api.patch(url, {"api_key": ""}, format="json")

    assert removed.status_code == 200
    assert removed.json()["api_key_set"] is False
    assert _stored(endpoint) == ""
    assert api.get(f"/api/model-endpoints/{endpoint.pk}/").json()["api_key_set"] is False


def test_api_create_without_a_key_reports_it_unset(administrator: Any) -> None:
    api = APIClient()
    api.force_authenticate(user=administrator)

    created = api.post(
        "/api/model-endpoints/create/",
        {"name": "embed", "kind": "embedding", "base_url": "http://llm.internal", "model": "e"},
        format="json",
    )

    assert created.status_code == 201
    assert created.json()["api_key_set"] is False
    assert _stored(ModelEndpoint.objects.get(name="embed")) == ""


def test_audit_trail_records_key_changes_without_the_key(administrator: Any) -> None:
    api = APIClient()
    api.force_authenticate(user=administrator)
    created = api.post(
        "/api/model-endpoints/create/",
        {"name": "chat", "base_url": "http://llm.internal", "model": "m", "api_key": PLAINTEXT},
        format="json",
    )
    endpoint = ModelEndpoint.objects.get(pk=created.json()["id"])
    first_ciphertext = _stored(endpoint)
    api.patch(
        f"/api/model-endpoints/{endpoint.pk}/update/", {"api_key": "sk-second"}, format="json"
    )

    entries = AuditEntry.objects.filter(target_type="workflows.modelendpoint")
    update = entries.get(action=Actions.OBJECT_UPDATE)
    assert update.changes == {"api_key": [MASK, MASK]} | {
        k: v for k, v in update.changes.items() if k != "api_key"
    }
    dumped = json.dumps([[e.changes, e.extra, e.target_repr] for e in entries])
    for secret in (PLAINTEXT, "sk-second", first_ciphertext, _stored(endpoint), "enc:v1"):
        assert secret not in dumped


# --- admin -------------------------------------------------------------------------------------


def _admin_form(endpoint: ModelEndpoint, api_key: str, **changes: str) -> dict[str, str]:
    return {
        "name": endpoint.name,
        "kind": endpoint.kind,
        "base_url": endpoint.base_url,
        "model": endpoint.model,
        "api_key": api_key,
        "enabled": "on",
        "timeout_s": "60",
        "max_concurrency": "64",
        "default_params": "{}",
        **changes,
    }


def _browser(user: Any) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def test_admin_change_form_shows_neither_plaintext_nor_ciphertext(administrator: Any) -> None:
    endpoint = _endpoint()

    response = _browser(administrator).get(f"/admin/workflows/modelendpoint/{endpoint.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'type="password"' in page
    assert PLAINTEXT not in page
    assert _stored(endpoint) not in page
    assert "enc:v1" not in page
    assert "Reveal" in page


def test_admin_empty_password_input_keeps_the_stored_key(administrator: Any) -> None:
    endpoint = _endpoint()
    before = _stored(endpoint)

    response = _browser(administrator).post(
        f"/admin/workflows/modelendpoint/{endpoint.pk}/change/",
        _admin_form(endpoint, "", model="qwen-2"),
    )

    assert response.status_code == 302
    reloaded = _reloaded(endpoint)
    assert reloaded.model == "qwen-2"
    assert _stored(endpoint) == before
    assert _revealed(endpoint) == PLAINTEXT


def test_admin_password_input_replaces_the_key(administrator: Any) -> None:
    endpoint = _endpoint()

    response = _browser(administrator).post(
        f"/admin/workflows/modelendpoint/{endpoint.pk}/change/",
        _admin_form(endpoint, "sk-from-admin"),
    )

    assert response.status_code == 302
    assert _revealed(endpoint) == "sk-from-admin"
    assert "sk-from-admin" not in _stored(endpoint)


def test_admin_add_form_encrypts_the_key(administrator: Any) -> None:
    response = _browser(administrator).post(
        "/admin/workflows/modelendpoint/add/",
        {
            "name": "added",
            "kind": "chat",
            "base_url": "http://llm.internal",
            "model": "m",
            "api_key": PLAINTEXT,
            "enabled": "on",
            "timeout_s": "60",
            "max_concurrency": "64",
            "default_params": "{}",
        },
    )

    assert response.status_code == 302
    endpoint = ModelEndpoint.objects.get(name="added")
    assert PLAINTEXT not in _stored(endpoint)
    assert _revealed(endpoint) == PLAINTEXT


def test_admin_reveal_shows_the_key_only_after_confirming_and_audits_it(
    administrator: Any,
) -> None:
    endpoint = _endpoint()
    browser = _browser(administrator)
    url = f"/admin/workflows/modelendpoint/{endpoint.pk}/reveal/api_key/"

    confirm = browser.get(url)
    assert confirm.status_code == 200
    assert PLAINTEXT not in confirm.content.decode()
    assert not AuditEntry.objects.filter(action=Actions.SECRET_REVEAL).exists()

    revealed = browser.post(url)

    assert revealed.status_code == 200
    assert PLAINTEXT in revealed.content.decode()
    entry = AuditEntry.objects.get(action=Actions.SECRET_REVEAL)
    assert entry.actor_username == "boss"
    assert entry.target_id == str(endpoint.pk)
    assert entry.extra == {"field": "api_key", "succeeded": True}
    assert PLAINTEXT not in json.dumps([entry.changes, entry.extra])


def test_admin_reveal_is_refused_without_change_permission(
    make_user: Callable[..., Any],
) -> None:
    endpoint = _endpoint()
    operator = make_user("ops", roles=(OPERATOR,))  # may view model endpoints, not change them

    response = _browser(operator).post(
        f"/admin/workflows/modelendpoint/{endpoint.pk}/reveal/api_key/"
    )

    assert response.status_code == 403
    assert PLAINTEXT not in response.content.decode()
    assert not AuditEntry.objects.filter(action=Actions.SECRET_REVEAL).exists()


# --- rotation ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rotation_moves_every_value_onto_the_new_key() -> None:
    old_id = settings.SECRETS_CURRENT_KEY_ID
    first = _endpoint("first", "sk-first")
    second = _endpoint("second", "sk-second")
    unset = _endpoint("unset", "")
    out = StringIO()

    with override_settings(
        SECRETS_KEYS={"newer": NEWER_KEY, old_id: settings.SECRETS_KEYS[old_id]},
        SECRETS_CURRENT_KEY_ID="newer",
    ):
        call_command("rotate_secrets_key", stdout=out)
        assert _revealed(first) == "sk-first"
        assert _revealed(second) == "sk-second"

    for endpoint in (first, second):
        assert _stored(endpoint).startswith("enc:v1:newer:")
    assert _stored(unset) == ""
    assert "2 secret(s) now on key 'newer'" in out.getvalue()
    assert "workflows.ModelEndpoint.api_key: 2 re-encrypted" in out.getvalue()
    entry = AuditEntry.objects.get(action=Actions.SECRETS_ROTATE)
    assert entry.extra["key_id"] == "newer"
    assert entry.extra["re_encrypted"] == 2
    # Only the new key is needed from now on.
    with override_settings(SECRETS_KEYS={"newer": NEWER_KEY}, SECRETS_CURRENT_KEY_ID="newer"):
        assert _revealed(first) == "sk-first"


@pytest.mark.django_db
def test_rotation_skips_values_already_on_the_current_key() -> None:
    endpoint = _endpoint()
    before = _stored(endpoint)
    out = StringIO()

    call_command("rotate_secrets_key", stdout=out)

    assert _stored(endpoint) == before
    assert "0 secret(s)" in out.getvalue()
    assert "1 were on it already" in out.getvalue()


@pytest.mark.django_db
def test_rotation_with_an_old_key_missing_aborts_and_changes_nothing() -> None:
    old_id = settings.SECRETS_CURRENT_KEY_ID
    # "a-..." sorts first, so it is re-encrypted before the undecryptable value is reached.
    with override_settings(SECRETS_KEYS={"middle": OTHER_KEY}, SECRETS_CURRENT_KEY_ID="middle"):
        rotatable = _endpoint("a-on-middle", "sk-middle")
    stranded = _endpoint("b-on-old", "sk-old")
    before = {endpoint.pk: _stored(endpoint) for endpoint in (rotatable, stranded)}

    with (
        override_settings(
            SECRETS_KEYS={"newer": NEWER_KEY, "middle": OTHER_KEY},
            SECRETS_CURRENT_KEY_ID="newer",
        ),
        pytest.raises(CommandError) as failure,
    ):
        call_command("rotate_secrets_key", stdout=StringIO())

    message = str(failure.value)
    assert "nothing was changed" in message
    assert f"'{old_id}'" in message
    assert {endpoint.pk: _stored(endpoint) for endpoint in (rotatable, stranded)} == before
    assert not AuditEntry.objects.filter(action=Actions.SECRETS_ROTATE).exists()


@pytest.mark.django_db
def test_rotation_with_all_re_encrypts_current_values_too() -> None:
    endpoint = _endpoint()
    before = _stored(endpoint)

    call_command("rotate_secrets_key", "--all", stdout=StringIO())

    assert _stored(endpoint) != before
    assert _revealed(endpoint) == PLAINTEXT


# --- key generation ----------------------------------------------------------------------------


def _generated(*args: str) -> tuple[str, bytes]:
    out = StringIO()
    call_command("generate_secrets_key", *args, stdout=out)
    key_id, sep, encoded = out.getvalue().strip().partition(":")
    assert sep == ":"
    return key_id, base64.b64decode(encoded, validate=True)


def test_generate_secrets_key_prints_a_usable_entry() -> None:
    key_id, key = _generated()

    assert re.fullmatch(r"k\d{8}", key_id)
    assert len(key) == 32
    with override_settings(SECRETS_KEYS={key_id: key}, SECRETS_CURRENT_KEY_ID=key_id):
        stored = encrypt(PLAINTEXT)
        assert stored.startswith(f"enc:v1:{key_id}:")
        assert decrypt(stored) == PLAINTEXT


def test_generate_secrets_key_takes_a_key_id_and_never_repeats_a_key() -> None:
    first_id, first = _generated("--key-id", "spring")
    _second_id, second = _generated("--key-id", "spring")

    assert first_id == "spring"
    assert first != second
