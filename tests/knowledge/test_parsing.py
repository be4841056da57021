"""knowledge.ingestion.parsing: every format from a file built here, every refusal by name.

PDFs use reportlab's built-in STSong-Light CID font (Adobe-GB1, not embedded), so Chinese
text round-trips through pdfminer without a CJK TrueType font on the machine.
"""

from __future__ import annotations

import io
import zipfile

import docx
import openpyxl
import pptx
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from knowledge.ingestion.parsing import (
    SUPPORTED_EXTENSIONS,
    Limits,
    ParsedDocument,
    ParseError,
    Section,
    markdown_sections,
    parse_document,
)

MIB = 1024 * 1024
CJK_FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


# -- fixture builders ----------------------------------------------------------------------


def make_pdf(pages: list[list[str]]) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    for lines in pages:
        pdf.setFont(CJK_FONT, 12)
        y = 760
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


THREE_PAGES = [
    ["第一章 退货政策", "自收到商品之日起七天内可以申请", "无理由退货。"],
    ["Chapter two: warranty.", "The warranty lasts one year from the", "date of purchase."],
    ["第三章 联系我们", "客服电话：400-123-4567。"],
]


def encrypt_pdf(data: bytes, *, user_password: str, algorithm: str = "AES-256") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("员工手册", level=0)  # Word's "Title" style
    document.add_paragraph("欢迎加入公司。")
    document.add_heading("请假制度", level=1)
    document.add_paragraph("年假每年十五天，需提前一周申请。")
    document.add_heading("病假", level=2)
    document.add_paragraph("病假需要提供医院证明。file_name stays *as written*.")
    document.add_heading("报销制度", level=1)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "项目"
    table.cell(0, 1).text = "上限"
    table.cell(1, 0).text = "差旅"
    table.cell(1, 1).text = "5000"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx() -> bytes:
    workbook = openpyxl.Workbook()
    prices = workbook.active
    assert prices is not None
    prices.title = "价格表"
    prices.append(["产品", "价格"])
    prices.append(["手机", 3999])
    prices.append(["耳机", None])
    stock = workbook.create_sheet("库存")
    stock.append(["仓库", "数量"])
    stock.append(["上海", 12])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_pptx(slides: int = 2) -> bytes:
    presentation = pptx.Presentation()
    for number in range(1, slides + 1):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        title = slide.shapes.title
        assert title is not None
        title.text = f"第{number}页 季度目标"
        slide.placeholders[1].text_frame.text = f"目标{number}：收入增长百分之二十。"
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def parse_error(data: bytes, filename: str, limits: Limits | None = None) -> str:
    with pytest.raises(ParseError) as caught:
        parse_document(data, filename, limits or Limits())
    return caught.value.message


# -- formats -------------------------------------------------------------------------------


def test_pdf_sections_carry_their_page() -> None:
    parsed = parse_document(make_pdf(THREE_PAGES), "售后手册.pdf")

    assert parsed.kind == "pdf"
    assert parsed.pages == 3
    assert parsed.title == "售后手册"
    assert [section.page for section in parsed.sections] == [1, 2, 3]
    assert "退货政策" in parsed.sections[0].text
    assert "warranty lasts one year" in parsed.sections[1].text
    assert "客服电话：400-123-4567。" in parsed.sections[2].text


def test_pdf_rejoins_lines_wrapped_mid_sentence() -> None:
    parsed = parse_document(make_pdf(THREE_PAGES), "manual.pdf")

    assert "自收到商品之日起七天内可以申请无理由退货。" in parsed.sections[0].text
    assert "one year from the date of purchase." in parsed.sections[1].text


def test_pdf_with_only_an_owner_password_is_read() -> None:
    locked = encrypt_pdf(make_pdf(THREE_PAGES), user_password="")

    parsed = parse_document(locked, "restricted.pdf")

    assert parsed.pages == 3
    assert "退货政策" in parsed.sections[0].text


def test_docx_headings_become_heading_paths() -> None:
    parsed = parse_document(make_docx(), "handbook.docx")

    assert parsed.kind == "docx"
    assert parsed.title == "员工手册"
    by_text = {section.text.splitlines()[0]: section for section in parsed.sections}
    assert by_text["欢迎加入公司。"].heading_path == ("员工手册",)
    assert by_text["年假每年十五天，需提前一周申请。"].heading_path == ("请假制度",)
    sick = next(s for s in parsed.sections if s.text.startswith("病假需要"))
    assert sick.heading_path == ("请假制度", "病假")
    # The converter's Markdown escapes are undone: chunks hold what the author wrote.
    assert "file_name stays *as written*." in sick.text
    table = next(s for s in parsed.sections if "差旅" in s.text)
    assert table.heading_path == ("报销制度",)
    assert all(section.page is None for section in parsed.sections)


def test_xlsx_sheet_names_head_their_sections() -> None:
    parsed = parse_document(make_xlsx(), "报价.xlsx")

    assert parsed.kind == "xlsx"
    assert parsed.title == "报价"
    assert [section.heading_path for section in parsed.sections] == [("价格表",), ("库存",)]
    assert "手机" in parsed.sections[0].text
    assert "NaN" not in parsed.sections[0].text
    assert "上海" in parsed.sections[1].text


def test_pptx_slides_are_pages() -> None:
    parsed = parse_document(make_pptx(), "targets.pptx")

    assert parsed.kind == "pptx"
    assert parsed.pages == 2
    assert parsed.title == "第1页 季度目标"
    assert [(s.page, s.heading_path) for s in parsed.sections] == [
        (1, ("第1页 季度目标",)),
        (2, ("第2页 季度目标",)),
    ]
    assert parsed.sections[1].text == "目标2：收入增长百分之二十。"


def test_html_drops_scripts_and_splits_at_headings() -> None:
    html = (
        "<!DOCTYPE html><html><head><meta charset='gbk'><title>页面</title>"
        "<style>p{color:red}</style></head><body>"
        "<h1>常见问题 <a href='/faq'>FAQ</a></h1><p>如何退货？请联系客服。</p>"
        "<h2>配送</h2><ul><li>北京：次日达</li><li>上海：次日达</li></ul>"
        "<script>alert('x')</script></body></html>"
    )

    parsed = parse_document(html.encode("gbk"), "faq.html")

    assert parsed.kind == "html"
    assert parsed.encoding == "gb18030"  # the declared GBK, read as its superset
    assert parsed.title == "常见问题 FAQ"
    assert parsed.sections[0] == Section("如何退货？请联系客服。", ("常见问题 FAQ",))
    assert parsed.sections[1].heading_path == ("常见问题 FAQ", "配送")
    assert "北京：次日达" in parsed.sections[1].text
    assert "alert" not in " ".join(s.text for s in parsed.sections)


def test_markdown_nested_headings() -> None:
    markdown = """---
title: front matter is not content
---
# 产品手册

简介段落。

## 安装

### Linux

运行 `make install`。

```bash
# this is a shell comment, not a heading
make install
```

## 使用

使用说明。

Setext heading
--------------

正文。
"""
    parsed = parse_document(markdown.encode(), "manual.md")

    assert parsed.kind == "markdown"
    assert parsed.encoding == "utf-8"
    assert parsed.title == "产品手册"
    paths = [section.heading_path for section in parsed.sections]
    assert paths == [
        ("产品手册",),
        ("产品手册", "安装", "Linux"),
        ("产品手册", "使用"),
        ("产品手册", "Setext heading"),  # a "---" underline is level 2, a sibling of 使用
    ]
    assert "# this is a shell comment, not a heading" in parsed.sections[1].text
    assert "front matter" not in " ".join(s.text for s in parsed.sections)


def test_markdown_without_h1_is_titled_by_file_name() -> None:
    parsed = parse_document(b"## Only a subsection\n\ntext", "C:\\Users\\li\\notes.markdown")

    assert parsed.title == "notes"
    assert parsed.sections == [Section("text", ("Only a subsection",))]


@pytest.mark.parametrize(
    "text",
    [
        "退货政策：自收到商品之日起七天内，如商品及包装保持原状，可以申请无理由退货。"
        "运费由买家承担，质量问题除外。",
        "退货政策",  # a few bytes are ambiguous between CJK codecs: GB18030 wins
    ],
)
def test_gbk_text_is_detected(text: str) -> None:
    parsed = parse_document(text.encode("gbk"), "政策.txt")

    assert parsed.kind == "text"
    assert parsed.encoding == "gb18030"
    assert parsed.sections == [Section(text)]
    assert parsed.title == "政策"


def test_utf8_bom_is_stripped_and_reported() -> None:
    parsed = parse_document("# 标题\n\n正文。\r\n".encode("utf-8-sig"), "bom.md")

    assert parsed.encoding == "utf-8-sig"
    assert parsed.title == "标题"
    assert parsed.sections == [Section("正文。", ("标题",))]


def test_utf16_with_bom_is_read() -> None:
    parsed = parse_document("第一行\n第二行".encode("utf-16"), "wide.txt")

    assert parsed.encoding == "utf-16"
    assert parsed.sections == [Section("第一行\n第二行")]


def test_plain_text_hashes_are_not_headings() -> None:
    parsed = parse_document(b"# not a heading in a .txt\nline two", "plain.txt")

    assert parsed.title == "plain"
    assert parsed.sections == [Section("# not a heading in a .txt\nline two")]


def test_file_without_extension_is_read_by_its_content() -> None:
    parsed = parse_document(make_pdf(THREE_PAGES[:1]), "scan")

    assert parsed.kind == "pdf"


def test_supported_extensions() -> None:
    assert {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".md", ".txt"} <= (
        SUPPORTED_EXTENSIONS
    )


def test_markdown_sections_helper_keeps_page() -> None:
    sections, first_h1 = markdown_sections("# A\n\nx\n\n## B\n\ny", page=4)

    assert first_h1 == "A"
    assert sections == [Section("x", ("A",), 4), Section("y", ("A", "B"), 4)]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
def test_encrypted_pdf_is_refused(algorithm: str) -> None:
    locked = encrypt_pdf(make_pdf(THREE_PAGES), user_password="secret", algorithm=algorithm)

    assert parse_error(locked, "locked.pdf") == (
        "encrypted PDF: remove the password and upload it again"
    )


def cfb(*streams: str) -> bytes:
    """A stand-in for an OLE compound file: the magic, then directory names in UTF-16LE."""
    body = b"".join(name.encode("utf-16-le").ljust(64, b"\x00") for name in streams)
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + body


def test_password_protected_ooxml_is_refused() -> None:
    protected = cfb("EncryptionInfo", "EncryptedPackage")

    assert parse_error(protected, "salary.docx") == (
        "password-protected DOCX: remove the password and upload it again"
    )
    assert parse_error(protected, "salary.xlsx").startswith("password-protected XLSX")


def test_legacy_office_file_under_an_ooxml_name_is_refused() -> None:
    assert parse_error(cfb("WordDocument"), "old.docx").startswith(
        "not a DOCX file (it looks like a legacy Word .doc file)"
    )
    assert "password-protected" in parse_error(cfb(), "unknown.pptx")


def test_truncated_docx_is_corrupt() -> None:
    data = make_docx()

    message = parse_error(data[: len(data) // 2], "cut.docx")

    assert message.startswith("corrupt DOCX: the file is truncated or damaged")


def test_docx_with_broken_xml_is_corrupt() -> None:
    data = make_zip(
        {
            "[Content_Types].xml": b"<Types/>",
            "word/document.xml": b"<w:document><unclosed>",
        }
    )

    assert parse_error(data, "broken.docx").startswith("corrupt DOCX: ")


def test_oversized_file_is_refused() -> None:
    assert parse_error(b"x" * 2048, "big.txt", Limits(max_bytes=1024)) == (
        "file larger than 1 KB (it is 2 KB)"
    )
    assert parse_error(b"x" * (51 * MIB), "big.txt").startswith("file larger than 50 MB")


def zip_bomb() -> bytes:
    # 20 MB of zeros deflate to about 20 KB.
    return make_zip(
        {
            "[Content_Types].xml": b"<Types/>",
            "word/document.xml": bytes(20 * MIB),
        }
    )


def test_zip_bomb_over_the_expanded_size_is_refused() -> None:
    message = parse_error(zip_bomb(), "bomb.docx", Limits(max_uncompressed_bytes=10 * MIB))

    assert message == ("the DOCX expands to more than 10 MB: refused as a possible zip bomb")


def test_zip_bomb_over_the_compression_ratio_is_refused() -> None:
    message = parse_error(zip_bomb(), "bomb.docx")

    assert message.startswith("the DOCX is compressed ")
    assert message.endswith("(more than 100): refused as a possible zip bomb")


def test_pdf_named_docx_is_refused() -> None:
    assert parse_error(make_pdf(THREE_PAGES), "report.docx") == (
        "not a DOCX file (it looks like a PDF)"
    )


@pytest.mark.parametrize(
    ("maker", "filename", "expected"),
    [
        (make_docx, "report.pdf", "not a PDF file (it looks like a DOCX file)"),
        (make_xlsx, "sheet.pptx", "not a PPTX file (it looks like an XLSX file)"),
        (make_pptx, "deck.md", "not a Markdown file (it looks like a PPTX file)"),
    ],
)
def test_mislabelled_files_are_refused(maker: object, filename: str, expected: str) -> None:
    assert callable(maker)
    assert parse_error(maker(), filename) == expected


def test_binary_named_txt_is_refused() -> None:
    assert parse_error(b"\x00\x01\x02binary\x00", "data.txt") == (
        "not a text file (it looks like binary data of an unknown format)"
    )
    assert parse_error(b"\x89PNG\r\n\x1a\n" + bytes(20), "photo.md") == (
        "not a Markdown file (it looks like a PNG image)"
    )


def test_too_many_pages_is_refused() -> None:
    assert parse_error(make_pdf(THREE_PAGES), "long.pdf", Limits(max_pages=2)) == (
        "more than 2 pages"
    )
    assert parse_error(make_pptx(3), "long.pptx", Limits(max_pages=2)) == "more than 2 slides"


def test_pdf_without_text_is_refused() -> None:
    message = parse_error(make_pdf([[], []]), "scan.pdf")

    assert message == (
        "no text found in the PDF file: it may be a scanned image, and OCR is not supported"
    )


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("setup.exe", "unsupported file type .exe: upload PDF, DOCX"),
        ("old.doc", "unsupported file type .doc: save it as .docx and upload it again"),
        ("OLD.XLS", "unsupported file type .xls: save it as .xlsx"),
    ],
)
def test_unsupported_types_are_refused(filename: str, expected: str) -> None:
    assert parse_error(b"whatever", filename).startswith(expected)


def test_empty_file_is_refused() -> None:
    assert parse_error(b"", "empty.txt") == "the file is empty"


def test_garbage_never_escapes_as_another_exception() -> None:
    samples = {
        "a.pdf": make_pdf(THREE_PAGES),
        "a.docx": make_docx(),
        "a.xlsx": make_xlsx(),
        "a.pptx": make_pptx(),
    }
    for filename, data in samples.items():
        for cut in (10, len(data) // 3, len(data) - 30):
            mangled = [data[:cut], data[:cut] + bytes(64) + data[cut + 64 :]]
            for sample in mangled:
                outcome = parse_or_error(sample, filename)
                assert isinstance(outcome, ParsedDocument) or outcome


def parse_or_error(data: bytes, filename: str) -> ParsedDocument | str:
    try:
        return parse_document(data, filename)
    except ParseError as exc:
        return exc.message
