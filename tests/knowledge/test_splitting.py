"""knowledge.ingestion.splitting: Chinese-aware chunks that keep their section's metadata."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest

from knowledge.ingestion.parsing import Section
from knowledge.ingestion.splitting import ChunkDraft, split_sections

SENTENCE_ENDS = "。！？；"

CHINESE_SENTENCES = [
    "自收到商品之日起七天内，如商品及包装保持出售时原状且配件齐全，可以申请无理由退货。",
    "运费由买家承担！",
    "质量问题除外，经检测确属质量问题的，运费由商家承担。",
    "退货申请提交后多久处理？",
    "一般在两个工作日内审核完毕；",
    "审核通过后，请在七天内寄回商品，并在订单页面填写快递单号。",
    "退款将在商家收到退货后三个工作日内原路退回。",
    "如果使用了优惠券，退款金额按实际支付金额计算。",
    "定制商品、鲜活易腐商品以及在线下载的数字商品不支持无理由退货。",
    "有其他问题吗？",
    "请联系在线客服，或拨打客服热线。",
]
CHINESE_TEXT = "".join(CHINESE_SENTENCES)


def test_chinese_chunks_end_at_sentence_ends() -> None:
    chunks = split_sections([Section(CHINESE_TEXT)], chunk_size=100, chunk_overlap=0)

    assert len(chunks) > 2
    assert all(len(chunk.text) <= 100 for chunk in chunks)
    # Every sentence is shorter than a chunk, so a sentence end was always available.
    assert all(chunk.text[-1] in SENTENCE_ENDS for chunk in chunks)
    # Nothing lost or duplicated, and the punctuation stayed with its sentence.
    assert "".join(chunk.text for chunk in chunks) == CHINESE_TEXT
    assert not any(chunk.text[0] in SENTENCE_ENDS for chunk in chunks)


def test_english_sentences_keep_their_full_stop() -> None:
    text = " ".join(
        f"Sentence number {n} explains one more detail of the warranty terms." for n in range(12)
    )

    chunks = split_sections([Section(text)], chunk_size=150, chunk_overlap=0)

    assert all(chunk.text.endswith(".") for chunk in chunks)
    assert all(re.match(r"Sentence number \d+", chunk.text) for chunk in chunks)


def test_paragraph_breaks_win_over_sentence_ends() -> None:
    first = "第一段。" * 20  # 80 characters
    second = "第二段。" * 20

    chunks = split_sections([Section(f"{first}\n\n{second}")], chunk_size=120, chunk_overlap=0)

    assert [chunk.text for chunk in chunks] == [first, second]


def test_text_without_punctuation_still_fits() -> None:
    chunks = split_sections([Section("字" * 1050)], chunk_size=500, chunk_overlap=0)

    assert [len(chunk.text) for chunk in chunks] == [500, 500, 50]


def test_heading_path_and_page_are_carried_and_sections_never_merge() -> None:
    sections = [
        Section("第一章的内容。" * 30, heading_path=("手册", "第一章"), page=1),
        Section("短节。", heading_path=("手册", "第二章"), page=2),
        Section("Sheet rows", heading_path=("价格表",)),
    ]

    chunks = split_sections(sections, chunk_size=100, chunk_overlap=0)

    for chunk in chunks:
        owner = next(s for s in sections if s.heading_path == chunk.heading_path)
        assert chunk.page == owner.page
        assert chunk.text in owner.text
    assert [c.heading_path for c in chunks[-2:]] == [("手册", "第二章"), ("价格表",)]
    assert chunks[-2].text == "短节。"
    assert chunks[-1].page is None


def test_order_is_global_and_blank_text_is_dropped() -> None:
    sections = [
        Section("甲。" * 80, page=1),
        Section("   \n\n\t  ", page=2),
        Section("乙。" * 80, page=3),
    ]

    chunks = split_sections(sections, chunk_size=100, chunk_overlap=0)

    assert [chunk.order for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.page for chunk in chunks} == {1, 3}
    assert all(chunk.text.strip() == chunk.text and chunk.text for chunk in chunks)


def test_overlap_repeats_whole_trailing_sentences() -> None:
    sentences = [f"这是第{n:02d}句话，内容不长。" for n in range(20)]  # 13 characters each

    chunks = split_sections([Section("".join(sentences))], chunk_size=100, chunk_overlap=30)

    assert len(chunks) > 2
    for before, after in itertools.pairwise(chunks):
        # Two 13-character sentences fit in 30 characters of overlap; a third would not.
        two_sentences = before.text[-26:]
        assert two_sentences in "".join(sentences)
        assert two_sentences.startswith("这是第")
        assert after.text.startswith(two_sentences)
        assert not after.text.startswith(before.text[-39:])


def test_no_overlap_shares_nothing() -> None:
    sentences = [f"这是第{n:02d}句话，内容不长。" for n in range(20)]

    chunks = split_sections([Section("".join(sentences))], chunk_size=100, chunk_overlap=0)

    assert "".join(chunk.text for chunk in chunks) == "".join(sentences)


def test_split_is_deterministic_and_hashed() -> None:
    sections = [Section(CHINESE_TEXT, ("退货",), 3), Section(CHINESE_TEXT, ("退货",), 4)]

    first = split_sections(sections, chunk_size=120, chunk_overlap=20)
    second = split_sections(sections, chunk_size=120, chunk_overlap=20)

    assert first == second
    for chunk in first:
        assert chunk.sha256 == hashlib.sha256(chunk.text.encode("utf-8")).hexdigest()
    half = len(first) // 2
    # The hash is of the text alone: the same passage on another page shares its key.
    assert [c.sha256 for c in first[:half]] == [c.sha256 for c in first[half:]]
    assert isinstance(first[0], ChunkDraft)


def test_defaults_are_500_and_50() -> None:
    chunks = split_sections([Section(CHINESE_TEXT * 5)])

    assert max(len(chunk.text) for chunk in chunks) <= 500
    assert len(chunks) >= 2


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (99, 0, "chunk_size must be between 100 and 4000 characters, not 99"),
        (4001, 0, "chunk_size must be between 100 and 4000 characters, not 4001"),
        (
            500,
            -1,
            "chunk_overlap must be at least 0 and less than half of chunk_size (500), not -1",
        ),
        (
            500,
            250,
            "chunk_overlap must be at least 0 and less than half of chunk_size (500), not 250",
        ),
    ],
)
def test_bad_sizes_are_refused(size: int, overlap: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_sections([Section("text")], chunk_size=size, chunk_overlap=overlap)


def test_limits_are_inclusive() -> None:
    assert split_sections([Section("a")], chunk_size=100, chunk_overlap=49)
    assert split_sections([Section("a")], chunk_size=4000, chunk_overlap=0)
