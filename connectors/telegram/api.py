"""Bot API calls, all through ``assistant_site.http.request`` (SSRF guard, deadlines, size cap).

A method's URL is ``{api_base_url}/bot{token}/{method}``: the per-connector base URL is
``https://api.telegram.org`` or a self-hosted Bot API server (or a test double). Parameters
go as a JSON body, which the Bot API accepts for every method without files.

Errors become :class:`TelegramApiError` (a :class:`DeliveryError`) from the answer's
envelope ``{"ok": false, "error_code", "description", "parameters"}``:

- 429: retry, not before ``parameters.retry_after`` seconds;
- 5xx, connection failures and timeouts: retry;
- 401 and 404: the token is wrong (Telegram answers 404 for a malformed token); permanent;
- 403: blocked by the user, removed from the group; permanent;
- 400 with ``parameters.migrate_to_chat_id``: the group became a supergroup with a new id;
  :attr:`TelegramApiError.migrate_to_chat_id` says which (``send_to_chat`` resends there);
- 409 (getUpdates only): :class:`PollingConflict`;
- any other 400: permanent (the request itself is wrong).

The token is part of every URL, so it is cut out of every message raised here:
``assistant_site.http`` names the URL's path in its errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from assistant_site import http
from connectors.base import ConnectorSettings, DeliveryError, FailureScope, SentMessage
from connectors.telegram.payloads import ApiResponse, BotInfo, ResponseParameters, WebhookInfo

DEFAULT_TIMEOUT_S = 10.0
# getUpdates holds the request open for up to its ``timeout``; the HTTP deadline must be
# longer, or every quiet poll would end as a client-side timeout.
POLL_GRACE_S = 10.0
MAX_UPDATES_BYTES = 16_000_000  # 100 updates with long texts and captions fit easily
ALLOWED_UPDATES = ["message"]
# The header Telegram sends with every webhook request when a secret token is set.
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  (a header name, not a secret)

NOT_MODIFIED = "message is not modified"
# An edit whose message is gone (deleted by the user) or too old (48 h) to edit.
EDIT_IMPOSSIBLE = ("message to edit not found", "message can't be edited")


class TelegramApiError(DeliveryError):
    """A Bot API call that failed. ``error_code`` is Telegram's (None for a connection
    failure), ``description`` its text. ``migrate_to_chat_id``: the group moved to this
    chat id (the caller should record it). ``partial``: what was delivered before a
    multi-part send failed, so that a retry can tell the messages already sent."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        error_code: int | None = None,
        description: str = "",
        permanent: bool = False,
        retry_after_s: float | None = None,
        migrate_to_chat_id: int | None = None,
        scope: FailureScope = "connector",
    ) -> None:
        super().__init__(message, permanent=permanent, retry_after_s=retry_after_s, scope=scope)
        self.method = method
        self.error_code = error_code
        self.description = description
        self.migrate_to_chat_id = migrate_to_chat_id

    @property
    def partial(self) -> SentMessage | None:
        """What a multi-part send delivered before failing (the contract's ``sent``)."""
        return self.sent

    @partial.setter
    def partial(self, value: SentMessage | None) -> None:
        self.sent = value

    @property
    def not_modified(self) -> bool:
        return self.error_code == 400 and NOT_MODIFIED in self.description.lower()

    @property
    def edit_impossible(self) -> bool:
        described = self.description.lower()
        return self.error_code == 400 and any(text in described for text in EDIT_IMPOSSIBLE)


class PollingConflict(TelegramApiError):  # noqa: N818  (the name callers know it by)
    """getUpdates answered 409. ``reason``: ``webhook_active`` (a webhook is set for this
    bot, so Telegram pushes updates instead) or ``other_poller`` (another process polls
    with the same token; Telegram ends the older request)."""

    def __init__(
        self, message: str, *, reason: Literal["webhook_active", "other_poller"], description: str
    ) -> None:
        super().__init__(
            message, method="getUpdates", error_code=409, description=description, permanent=False
        )
        self.reason = reason


def method_url(settings: ConnectorSettings, method: str) -> str:
    return f"{settings.api_base_url}/bot{settings.secrets.bot_token}/{method}"


def _scrub(text: str, settings: ConnectorSettings) -> str:
    token = str(settings.secrets.bot_token)
    return text.replace(token, "<bot token>") if token else text


async def call(
    settings: ConnectorSettings,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = 0,
    max_response_bytes: int = 1_000_000,
) -> Any:
    """Call ``method`` and answer its ``result``; raise :class:`TelegramApiError`.

    ``retries`` (see ``assistant_site.http.request``) only for calls that are safe to
    repeat: Telegram has no idempotency key, so a repeated sendMessage whose first answer
    was lost shows the message twice.
    """
    try:
        response = await http.request(
            "POST",
            method_url(settings, method),
            json=params or {},
            timeout_s=timeout_s,
            retries=retries,
            max_response_bytes=max_response_bytes,
        )
    except http.OutboundHttpError as exc:
        # "from None": the cause's message names the URL, token included.
        raise TelegramApiError(
            f"Telegram {method}: {_scrub(exc.message, settings)}",
            method=method,
            permanent=exc.permanent,
        ) from None
    try:
        envelope = ApiResponse.model_validate_json(response.body)
    except ValidationError:
        raise _not_bot_api(settings, method, response) from None
    if envelope.ok and response.ok:
        return envelope.result
    raise api_error(settings, method, response.status, envelope)


def _not_bot_api(
    settings: ConnectorSettings, method: str, response: http.HttpResponse
) -> TelegramApiError:
    """An answer without the Bot API envelope: a proxy's error page, a wrong base URL."""
    transient = response.status == 429 or response.status >= 500
    status = f"{response.status} {response.reason}".strip()
    return TelegramApiError(
        f"Telegram {method}: {settings.api_base_url} answered {status} without a Bot API "
        f"body: {_scrub(response.preview(), settings)}"
        + ("" if transient else "; check the connector's API base URL"),
        method=method,
        error_code=response.status if response.status >= 400 else None,
        permanent=not transient,
    )


def api_error(
    settings: ConnectorSettings, method: str, status: int, envelope: ApiResponse
) -> TelegramApiError:
    """The error for a failed call (see the module docstring for the mapping)."""
    # Telegram keeps the HTTP status and error_code equal; the status wins if they differ,
    # as in python-telegram-bot.
    code = status if status >= 400 else (envelope.error_code or 500)
    description = _scrub(envelope.description, settings) or f"error {code}"
    parameters = envelope.parameters or ResponseParameters()
    said = f"Telegram {method}: {description}"

    def error(message: str, **options: Any) -> TelegramApiError:
        return TelegramApiError(
            message, method=method, error_code=code, description=description, **options
        )

    if code == 429:
        return error(said, retry_after_s=parameters.retry_after)
    if code == 409:
        return _conflict(said, description)
    if parameters.migrate_to_chat_id is not None:
        return error(
            f"{said}: the group is now the supergroup {parameters.migrate_to_chat_id}",
            permanent=True,
            migrate_to_chat_id=parameters.migrate_to_chat_id,
            scope="chat",
        )
    if code >= 500:
        return error(said)
    hint = _WHAT_TO_FIX.get(code, "").format(base_url=settings.api_base_url)
    # 401/404: the token or the server is wrong for every chat; 403: this chat refuses the
    # bot; any other 400: this request (its text, its target message).
    scope: FailureScope = (
        "connector" if code in {401, 404} else "chat" if code == 403 else "message"
    )
    return error(f"{said}{hint}", permanent=True, scope=scope)


_WHAT_TO_FIX = {
    401: ": the bot token was refused. Copy the current token from @BotFather (/mybots, "
    "API Token) into the connector's secrets; revoking it makes a new one.",
    404: ": the bot token is malformed, or {base_url} is not a Bot API server. Check the "
    "token and the connector's API base URL.",
    403: ": the user blocked the bot, or the bot was removed from the group or may not write "
    "there. Nothing can be delivered to this chat until that changes.",
}


def _conflict(said: str, description: str) -> PollingConflict:
    if "webhook" in description.lower():
        return PollingConflict(
            f"{said}. A webhook is set for this bot, so getUpdates cannot be used: delete it "
            "(deleteWebhook) or run the connector in webhook mode.",
            reason="webhook_active",
            description=description,
        )
    return PollingConflict(
        f"{said}. Another getUpdates request is running with this bot token: only one poller "
        "(one connector, one worker) may use a token at a time.",
        reason="other_poller",
        description=description,
    )


def chat_id_param(chat_id: str) -> int | str:
    """Chat ids travel as JSON integers (up to 52 bits); ``@channelname`` stays a string."""
    try:
        return int(chat_id)
    except ValueError:
        return chat_id


async def send_to_chat(
    settings: ConnectorSettings, method: str, params: dict[str, Any]
) -> tuple[Any, int | None]:
    """Call a method that writes to ``params["chat_id"]``, following a group's migration
    to a supergroup once; answers the result and the new chat id (None if unchanged).

    If the call to the new chat fails too, its error still carries
    ``migrate_to_chat_id``, so the caller can record the new id either way.
    """
    try:
        return await call(settings, method, params), None
    except TelegramApiError as exc:
        moved = exc.migrate_to_chat_id
        if moved is None:
            raise
    try:
        return await call(settings, method, {**params, "chat_id": moved}), moved
    except TelegramApiError as again:
        if again.migrate_to_chat_id is None:
            again.migrate_to_chat_id = moved
        raise


# --- Webhook management and polling -----------------------------------------------------


async def get_me(settings: ConnectorSettings) -> BotInfo:
    """The bot behind the token (checks the token; gives the username and id to configure)."""
    return BotInfo.model_validate(await call(settings, "getMe", retries=2))


async def set_webhook(settings: ConnectorSettings, url: str) -> bool:
    """Point Telegram at ``url`` with the connector's webhook secret as ``secret_token``.

    Refused here, before any call, without a secret: ``TelegramAdapter.verify`` would then
    refuse every delivery, and a webhook without a secret accepts updates from anyone.
    """
    secret = str(settings.secrets.webhook_secret)
    if not secret:
        raise TelegramApiError(
            "Set the connector's webhook secret before setting the webhook: Telegram sends it "
            f"in the {SECRET_HEADER} header, the only proof that a request comes from it.",
            method="setWebhook",
            permanent=True,
        )
    result = await call(
        settings,
        "setWebhook",
        {
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
            "drop_pending_updates": False,
        },
    )
    return bool(result)


async def delete_webhook(
    settings: ConnectorSettings, *, drop_pending_updates: bool = False
) -> bool:
    """Stop webhook delivery (polling mode needs this: getUpdates fails while one is set)."""
    result = await call(
        settings, "deleteWebhook", {"drop_pending_updates": drop_pending_updates}, retries=2
    )
    return bool(result)


async def get_webhook_info(settings: ConnectorSettings) -> WebhookInfo:
    return WebhookInfo.model_validate(await call(settings, "getWebhookInfo", retries=2))


async def get_updates(
    settings: ConnectorSettings, offset: int | None, timeout_s: int, limit: int = 100
) -> list[dict[str, Any]]:
    """One long poll: the updates from ``offset`` on (calling with an offset confirms every
    update below it), waiting up to ``timeout_s`` seconds for one to arrive.

    Raises :class:`PollingConflict` on 409 (a webhook is set, or another poller runs).
    """
    params: dict[str, Any] = {
        "timeout": timeout_s,
        "limit": max(1, min(100, limit)),
        "allowed_updates": ALLOWED_UPDATES,
    }
    if offset is not None:
        params["offset"] = offset
    result = await call(
        settings,
        "getUpdates",
        params,
        timeout_s=timeout_s + POLL_GRACE_S,
        max_response_bytes=MAX_UPDATES_BYTES,
    )
    if not isinstance(result, list):
        raise TelegramApiError(
            f"Telegram getUpdates answered {type(result).__name__}, not a list of updates",
            method="getUpdates",
        )
    return [update for update in result if isinstance(update, dict)]
