"""Streaming into an interactive card: stream_start replies with a card, stream_update PATCHes
it, stream_finish leaves exactly the final text for the user (protocols.md A.7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from connectors.base import DeliveryError, OutboundMessage, ReplyTarget, SentMessage
from connectors.feishu.adapter import FeishuAdapter
from tests.connectors.feishu.conftest import ALICE, GROUP_CHAT, P2P_CHAT, double_settings
from tests.connectors.feishu.test_send import SPECIAL
from tests.doubles.feishu_server import FeishuDouble

KEY = "run:9:stream"


def ask(feishu: FeishuDouble, chat_id: str = P2P_CHAT) -> ReplyTarget:
    payload = feishu.user_message(chat_id, "question", sender_open_id=ALICE)
    return ReplyTarget(chat_id, payload["event"]["message"]["message_id"])


def stream(feishu: FeishuDouble, target: ReplyTarget, texts: list[str], final: str) -> SentMessage:
    """Start with texts[0], update with the others, finish with ``final``; the handle goes
    through JSON between calls, as the connector services store it."""

    async def run() -> SentMessage:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage(texts[0], target, KEY))
        for text in texts[1:]:
            sent = stored(await adapter.stream_update(settings, sent, text))
        return await adapter.stream_finish(settings, stored(sent), final)

    return asyncio.run(run())


def stored(sent: SentMessage) -> SentMessage:
    loaded = json.loads(json.dumps({"ids": sent.message_ids, "handle": sent.handle}))
    return SentMessage(message_ids=loaded["ids"], handle=loaded["handle"])


def card(content: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(content)
    return value


def test_streamed_card_ends_with_exactly_the_final_text(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    sent = stream(feishu, target, ["Hel", "Hello, wor", "Hello, world"], "Hello, world!")
    [shown] = feishu.bot_messages(P2P_CHAT)
    assert shown.msg_type == "interactive"
    assert shown.text == "Hello, world!"
    assert shown.parent_id == target.message_id
    assert sent.message_ids == [shown.message_id]
    [start] = feishu.requests_to("reply")
    assert start.json["msg_type"] == "interactive"
    first = card(start.json["content"])
    assert first["config"]["update_multi"] is True
    assert first["elements"] == [{"tag": "markdown", "content": "Hel"}]
    patches = feishu.requests_to("patch")
    assert [r.path for r in patches] == [f"/open-apis/im/v1/messages/{shown.message_id}"] * 3
    contents = [card(r.json["content"]) for r in patches]
    assert [c["elements"][0]["content"] for c in contents] == [
        "Hello, wor",
        "Hello, world",
        "Hello, world!",
    ]
    assert all(c["config"]["update_multi"] is True for c in contents)
    assert all(set(r.json) == {"content"} for r in patches)
    assert shown.updates == 3


def test_updating_to_the_same_text_sends_nothing(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    stream(feishu, target, ["same", "same", "same"], "same")
    assert feishu.requests_to("patch") == []
    assert feishu.bot_texts(P2P_CHAT) == ["same"]


def test_special_characters_survive_the_card(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    stream(feishu, target, [SPECIAL[:40], SPECIAL[:200]], SPECIAL)
    assert feishu.bot_texts(P2P_CHAT) == [SPECIAL]
    # The card is a JSON document inside the content string, itself inside the body.
    last = feishu.requests_to("patch")[-1]
    assert card(last.json["content"])["elements"][0]["content"] == SPECIAL


def test_final_text_longer_than_a_card_continues_in_text_messages(feishu: FeishuDouble) -> None:
    target = ask(feishu, GROUP_CHAT)
    final = "\n".join(f"第{i}行：这是一段很长的回答 with some English 🚀" for i in range(4000))
    sent = stream(feishu, target, [final[:100], final[:20_000]], final)
    shown = feishu.bot_messages(GROUP_CHAT)
    assert len(shown) >= 2
    assert shown[0].msg_type == "interactive"
    assert all(m.msg_type == "text" for m in shown[1:])
    assert "".join(m.text for m in shown) == final
    assert shown[0].text.endswith("\n")  # cut at a line break
    assert sent.message_ids == [m.message_id for m in shown]
    assert all(m.parent_id == target.message_id for m in shown)
    for request in feishu.requests_to("patch"):  # every card within 30 KB
        assert len(request.json["content"].encode()) <= 30 * 1024


def test_finishing_twice_makes_no_new_messages(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    final = "word " * 20_000  # 100,000 characters: a card and more

    async def run() -> tuple[SentMessage, SentMessage]:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage("word", target, KEY))
        first = await adapter.stream_finish(settings, stored(sent), final)
        # The delivery is retried (e.g. it was not recorded as sent) from the stored handle.
        again = await adapter.stream_finish(settings, stored(sent), final)
        return first, again

    first, again = asyncio.run(run())
    assert first.message_ids == again.message_ids
    shown = feishu.bot_messages(P2P_CHAT)
    assert [m.message_id for m in shown] == first.message_ids
    assert "".join(m.text for m in shown) == final


def test_stream_start_twice_with_one_key_makes_one_card(feishu: FeishuDouble) -> None:
    target = ask(feishu)

    async def run() -> list[SentMessage]:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        message = OutboundMessage("Hi", target, KEY)
        return [await adapter.stream_start(settings, message) for _ in range(2)]

    one, two = asyncio.run(run())
    assert one.message_ids == two.message_ids
    assert len(feishu.bot_messages(P2P_CHAT)) == 1


def test_update_beyond_a_card_shows_what_fits(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    long_text = '"引号" \\ ' * 6000  # far over 30 KB once escaped

    async def run() -> SentMessage:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage(long_text, target, KEY))
        return await adapter.stream_update(settings, sent, long_text + "more")

    asyncio.run(run())
    [shown] = feishu.bot_messages(P2P_CHAT)
    assert long_text.startswith(shown.text)
    assert len(shown.text) > 1000
    assert feishu.requests_to("patch") == []  # the part that fits did not change


def test_empty_text_shows_a_placeholder(feishu: FeishuDouble) -> None:
    target = ask(feishu)
    stream(feishu, target, [""], "")
    assert feishu.bot_texts(P2P_CHAT) == ["…"]


def test_rate_limited_update_gives_the_reset(feishu: FeishuDouble) -> None:
    target = ask(feishu)

    async def run() -> None:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage("a", target, KEY))
        feishu.inject("429", reset_s=2, on="patch")
        await adapter.stream_update(settings, sent, "ab")

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(run())
    assert (caught.value.permanent, caught.value.retry_after_s) == (False, 2)
    assert feishu.bot_texts(P2P_CHAT) == ["a"]


def test_updates_at_edit_interval_stay_within_the_card_rate(feishu: FeishuDouble) -> None:
    feishu.enforce_patch_rate = True  # more than 5 PATCHes a second: 230020
    target = ask(feishu)

    async def run() -> None:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage("0", target, KEY))
        for n in range(1, 8):
            await asyncio.sleep(adapter.edit_interval_s)
            sent = await adapter.stream_update(settings, sent, str(n))

    asyncio.run(run())
    assert feishu.bot_texts(P2P_CHAT) == ["7"]

    async def too_fast() -> None:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage("0", target, "other"))
        for n in range(1, 8):
            sent = await adapter.stream_update(settings, sent, str(n))

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(too_fast())
    assert "230020" in caught.value.message
    assert not caught.value.permanent


def test_patch_of_a_recalled_card_is_permanent(feishu: FeishuDouble) -> None:
    target = ask(feishu)

    async def run() -> None:
        adapter, settings = FeishuAdapter(), double_settings(feishu)
        sent = await adapter.stream_start(settings, OutboundMessage("a", target, KEY))
        feishu.recall(sent.message_ids[0])
        await adapter.stream_finish(settings, sent, "ab")

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(run())
    assert caught.value.permanent
    assert "230011" in caught.value.message
