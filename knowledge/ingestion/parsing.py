"""Turn an uploaded file into titled, located sections of text.

Plain Python (no Django): the caller passes the bytes, the original file name and the limits
from settings, and gets a `ParsedDocument` back or a `ParseError` whose message is meant for
the curator. Nothing a file contains may raise anything else.

The real type comes from the content (magic bytes, the part names inside an OOXML zip, an
HTML sniff) and must agree with the extension. PDFs are read page by page with pdfminer.six
(the library markitdown uses) so every section keeps its page; DOCX, PPTX, XLSX and HTML go
through markitdown's converters; Markdown and plain text are decoded here (UTF-8, then
GB18030 and whatever charset-normalizer recognises).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pdfminer.layout import LTPage

_MIB = 1024 * 1024
_KIB = 1024


@dataclass(frozen=True)
class Limits:
    """What an upload may cost before it is refused. Callers fill it from settings."""

    max_bytes: int = 50 * _MIB
    max_pages: int = 2000
    max_uncompressed_bytes: int = 500 * _MIB
    max_zip_ratio: float = 100.0


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path. `page` is the PDF page or PPTX slide (from 1);
    an XLSX sheet is the first element of `heading_path`."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    kind: str  # "pdf", "docx", "pptx", "xlsx", "html", "markdown" or "text"
    sections: list[Section]
    pages: int | None  # PDF pages or PPTX slides; None for the other kinds
    encoding: str | None  # the codec the text was decoded with (Markdown, text, HTML)


class ParseError(Exception):
    """The file cannot be used. The message says why in words a curator can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_EXTENSION_KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_EXTENSION_KINDS)

_LEGACY_EXTENSIONS = {".doc": ".docx", ".xls": ".xlsx", ".ppt": ".pptx"}

_LABELS = {
    "pdf": "PDF",
    "docx": "DOCX",
    "pptx": "PPTX",
    "xlsx": "XLSX",
    "html": "HTML",
    "markdown": "Markdown",
    "text": "text",
}
_A_LABEL = {
    "pdf": "a PDF file",
    "docx": "a DOCX file",
    "pptx": "a PPTX file",
    "xlsx": "an XLSX file",
    "html": "an HTML file",
    "markdown": "a Markdown file",
    "text": "a text file",
}
# What the content was sniffed as, for "not a DOCX file (it looks like ...)".
_LOOKS_LIKE = {
    "pdf": "a PDF",
    "docx": "a DOCX file",
    "pptx": "a PPTX file",
    "xlsx": "an XLSX file",
    "html": "an HTML page",
    "zip": "a ZIP archive",
    "zip-broken": "a damaged ZIP archive",
    "odf": "an OpenDocument file",
    "epub": "an EPUB book",
    "cfb-encrypted": "a password-protected Office file",
    "cfb-word": "a legacy Word .doc file",
    "cfb-excel": "a legacy Excel .xls file",
    "cfb-powerpoint": "a legacy PowerPoint .ppt file",
    "cfb": "a legacy Office file (.doc, .xls or .ppt) or a password-protected one",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "gzip": "a gzip archive",
    "rar": "a RAR archive",
    "7z": "a 7z archive",
    "rtf": "an RTF document",
    "binary": "binary data of an unknown format",
    "text": "plain text",
}
_OOXML_KINDS = frozenset({"docx", "pptx", "xlsx"})
_TEXT_KINDS = frozenset({"html", "markdown", "text"})

_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SIMPLE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x1f\x8b", "gzip"),
    (b"Rar!\x1a\x07", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"{\\rtf", "rtf"),
)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:!doctype\s+html|html|head|body|meta|title)[\s>/]",
    re.IGNORECASE | re.DOTALL,
)
_HTML_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)

# A zip directory is read whole before anything is inflated; a real OOXML file has
# hundreds of parts at most, so tens of thousands of entries are an attack.
_MAX_ZIP_MEMBERS = 20_000
_PPTX_SLIDE = re.compile(r"^ppt/slides/slide\d+\.xml$")
_SLIDE_MARKER = re.compile(r"<!-- Slide number: (\d+) -->")

# Mammoth maps only "Heading N" styles to headings; Word's "Title" style names the document.
_DOCX_STYLE_MAP = "p[style-name='Title'] => h1:fresh"

# Short byte strings are ambiguous between CJK codecs; our curators mostly write Chinese, so
# below this size GB18030 wins whenever it decodes cleanly.
_SHORT_TEXT_BYTES = 64
_GB_CODECS = frozenset({"gb2312", "gbk", "gb18030", "hz"})


_DEFAULT_LIMITS = Limits()


def parse_document(data: bytes, filename: str, limits: Limits = _DEFAULT_LIMITS) -> ParsedDocument:
    """Parse an upload. Raises `ParseError` (and nothing else) for anything wrong with the file."""
    name = PureWindowsPath(filename).name  # browsers may send a Windows path
    stem, extension = _split_name(name)
    kind = _kind_from_extension(extension)
    if not data:
        raise ParseError("the file is empty")
    if len(data) > limits.max_bytes:
        raise ParseError(
            f"file larger than {_size(limits.max_bytes)} (it is {_size(len(data), exact=False)})"
        )

    detected = _sniff(data)
    if kind is None:  # no extension at all: trust the content if it is something we read
        kind = _kind_from_content(detected)
    _check_type(kind, detected, data)

    title_fallback = stem.strip() or name
    # The parsers below convert what they expect; this catches the rest, so that a file
    # can fail its document but never the worker.
    with _parser_errors("text file" if kind == "text" else _LABELS[kind]):
        if kind == "pdf":
            sections, pages = _parse_pdf(data, limits)
            return _document(kind, sections, title_fallback, pages=pages)
        if kind in _OOXML_KINDS:
            return _parse_ooxml(data, kind, limits, title_fallback)
        return _parse_text(data, kind, title_fallback)


def _kind_from_extension(extension: str) -> str | None:
    if extension in _LEGACY_EXTENSIONS:
        raise ParseError(
            f"unsupported file type {extension}: save it as {_LEGACY_EXTENSIONS[extension]} "
            "and upload it again"
        )
    kind = _EXTENSION_KINDS.get(extension)
    if kind is None and extension:
        raise ParseError(f"unsupported file type {extension}: upload {_supported_list()}")
    return kind


def _parse_ooxml(data: bytes, kind: str, limits: Limits, title_fallback: str) -> ParsedDocument:
    names = _check_ooxml_archive(data, kind, limits)
    if kind == "pptx":
        slides = sum(1 for name in names if _PPTX_SLIDE.match(name))
        if slides > limits.max_pages:
            raise ParseError(f"more than {_count(limits.max_pages, 'slide')}")
    markdown = _convert_ooxml(data, kind)
    if kind == "pptx":
        sections, first_h1, pages = _pptx_sections(markdown)
        return _document(kind, sections, first_h1 or title_fallback, pages=pages)
    if kind == "xlsx":
        markdown = _XLSX_NAN_CELL.sub("  ", markdown)
    sections, first_h1 = markdown_sections(markdown, unescape=True)
    return _document(kind, sections, first_h1 or title_fallback)


def _parse_text(data: bytes, kind: str, title_fallback: str) -> ParsedDocument:
    text, encoding = _decode_text(data, html=kind == "html")
    if kind == "html":
        with _parser_errors("HTML"):
            from markitdown.converters import HtmlConverter

            markdown = HtmlConverter().convert_string(text).markdown
        sections, first_h1 = markdown_sections(markdown, unescape=True)
    elif kind == "markdown":
        sections, first_h1 = markdown_sections(_strip_front_matter(_normalise(text)))
    else:
        body = _tidy(_normalise(text))
        sections, first_h1 = ([Section(body)] if body else []), None
    return _document(kind, sections, first_h1 or title_fallback, encoding=encoding)


def _document(
    kind: str,
    sections: list[Section],
    title: str,
    *,
    pages: int | None = None,
    encoding: str | None = None,
) -> ParsedDocument:
    if not sections:
        hint = ": it may be a scanned image, and OCR is not supported" if kind == "pdf" else ""
        raise ParseError(f"no text found in the {_LABELS[kind]} file{hint}")
    return ParsedDocument(title=title, kind=kind, sections=sections, pages=pages, encoding=encoding)


def _split_name(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:  # "README" or ".md": no extension to speak of
        return name, ""
    return stem, "." + extension.lower()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _supported_list() -> str:
    return "PDF, DOCX, PPTX, XLSX, HTML, Markdown (.md) or plain text (.txt)"


def _size(n: int, *, exact: bool = True) -> str:
    if n >= _MIB and (not exact or n % _MIB == 0):
        return f"{n / _MIB:.0f} MB" if n % _MIB == 0 else f"{n / _MIB:.1f} MB"
    if n >= _KIB and (not exact or n % _KIB == 0):
        return f"{n / _KIB:.0f} KB" if n % _KIB == 0 else f"{n / _KIB:.1f} KB"
    return f"{n} bytes"


# -- what the content really is ------------------------------------------------------------


def _sniff(data: bytes) -> str:
    head = data[:8192]
    if head.lstrip().startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    if head.startswith(_CFB_MAGIC):
        return _sniff_cfb(data)
    simple = next((kind for magic, kind in _SIMPLE_MAGIC if head.startswith(magic)), None)
    return simple or _sniff_text(head)


def _sniff_text(head: bytes) -> str:
    bom_free = head
    for bom, codec in _BOMS:
        if head.startswith(bom):
            if codec != "utf-8-sig":
                return "text"  # UTF-16/32 text is full of NULs; the BOM vouches for it
            bom_free = head[len(bom) :]
            break
    if b"\x00" in bom_free:
        return "binary"
    if _HTML_START.match(bom_free):
        return "html"
    return "text"


def _sniff_zip(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return "zip-broken"
    if "[Content_Types].xml" in names:
        prefixes = {name.split("/", 1)[0] for name in names if "/" in name}
        for folder, kind in (("word", "docx"), ("ppt", "pptx"), ("xl", "xlsx")):
            if folder in prefixes:
                return kind
    if "mimetype" in names and "META-INF/container.xml" in names:
        return "epub"
    if "mimetype" in names and "content.xml" in names:
        return "odf"
    return "zip"


def _sniff_cfb(data: bytes) -> str:
    # Directory entries of a compound file hold their stream names in UTF-16LE. An
    # encrypted OOXML document is a compound file with an EncryptedPackage stream.
    def has(stream: str) -> bool:
        return stream.encode("utf-16-le") in data

    if has("EncryptedPackage"):
        return "cfb-encrypted"
    if has("WordDocument"):
        return "cfb-word"
    if has("Workbook") or has("Book"):
        return "cfb-excel"
    if has("PowerPoint Document"):
        return "cfb-powerpoint"
    return "cfb"


def _kind_from_content(detected: str) -> str:
    if detected in {"pdf", "docx", "pptx", "xlsx", "html", "text"}:
        return detected
    raise ParseError(
        f"unsupported file: it has no extension and looks like {_LOOKS_LIKE[detected]}; "
        f"upload {_supported_list()}"
    )


def _check_type(kind: str, detected: str, data: bytes) -> None:
    label = _LABELS[kind]
    if detected == kind:
        return
    if kind in _TEXT_KINDS and detected in {"text", "html"}:
        # HTML is text too: a .txt or .md holding markup is read as written.
        return
    if kind in _OOXML_KINDS and detected == "cfb-encrypted":
        raise ParseError(f"password-protected {label}: remove the password and upload it again")
    if kind in _OOXML_KINDS and detected.startswith("cfb"):
        raise ParseError(
            f"not {_A_LABEL[kind]} (it looks like {_LOOKS_LIKE[detected]}): open it in Office, "
            f"save it as .{kind} without a password and upload it again"
        )
    if kind in _OOXML_KINDS and detected == "zip-broken":
        raise ParseError(
            f"corrupt {label}: the file is truncated or damaged ({_zip_problem(data)})"
        )
    raise ParseError(f"not {_A_LABEL[kind]} (it looks like {_LOOKS_LIKE[detected]})")


def _zip_problem(data: bytes) -> str:
    try:
        zipfile.ZipFile(io.BytesIO(data)).close()
    except Exception as exc:
        return _describe(exc)
    return "unreadable ZIP directory"


# -- parsers -------------------------------------------------------------------------------


@contextmanager
def _parser_errors(label: str) -> Iterator[None]:
    """Turn anything a parser raises on a bad file into ParseError("corrupt <label>: ...")."""
    from markitdown import MissingDependencyException

    try:
        yield
    except (ParseError, MissingDependencyException):
        # A missing optional dependency is a broken deployment, not a bad file: let it show.
        raise
    except Exception as exc:
        raise ParseError(f"corrupt {label}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_ooxml_archive(data: bytes, kind: str, limits: Limits) -> list[str]:
    """Check the zip directory against the limits before any part is inflated.

    The sizes in the directory are what the parsers get: Python's zipfile stops inflating a
    member at its declared size and fails on the CRC, so a lying header cannot smuggle more.
    """
    label = _LABELS[kind]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except Exception as exc:
        raise ParseError(f"corrupt {label}: {_describe(exc)}") from exc
    if len(infos) > _MAX_ZIP_MEMBERS:
        raise ParseError(
            f"the {label} holds more than {_MAX_ZIP_MEMBERS} parts: refused as a possible zip bomb"
        )
    expanded = sum(info.file_size for info in infos)
    if expanded > limits.max_uncompressed_bytes:
        raise ParseError(
            f"the {label} expands to more than {_size(limits.max_uncompressed_bytes)}: "
            "refused as a possible zip bomb"
        )
    # The directory's compressed sizes could be inflated to hide a ratio; the file is the cap.
    compressed = max(1, min(len(data), sum(info.compress_size for info in infos)))
    ratio = expanded / compressed
    if ratio > limits.max_zip_ratio:
        raise ParseError(
            f"the {label} is compressed {ratio:.0f} times (more than "
            f"{limits.max_zip_ratio:g}): refused as a possible zip bomb"
        )
    return [info.filename for info in infos]


def _convert_ooxml(data: bytes, kind: str) -> str:
    with _parser_errors(_LABELS[kind]):
        from markitdown import DocumentConverter, StreamInfo
        from markitdown.converters import DocxConverter, PptxConverter, XlsxConverter

        # The converters' __init__ methods are unannotated; their convert() is typed.
        converter: DocumentConverter
        options: dict[str, str] = {}
        if kind == "docx":
            converter = DocxConverter()  # type: ignore[no-untyped-call]
            options["style_map"] = _DOCX_STYLE_MAP
        elif kind == "pptx":
            converter = PptxConverter()  # type: ignore[no-untyped-call]
        else:
            converter = XlsxConverter()  # type: ignore[no-untyped-call]
        stream = io.BytesIO(data)
        info = StreamInfo(extension=f".{kind}")
        return converter.convert(stream, info, **options).markdown


# pandas writes empty spreadsheet cells as NaN.
_XLSX_NAN_CELL = re.compile(r"(?<=\|) NaN (?=\|)")


def _pptx_sections(markdown: str) -> tuple[list[Section], str | None, int]:
    parts = _SLIDE_MARKER.split(markdown)
    sections: list[Section] = []
    first_h1: str | None = None
    slides = 0
    # parts = [before the first marker, number, slide text, number, slide text, ...]
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        slides += 1
        slide_sections, h1 = markdown_sections(body, page=int(number), unescape=True)
        sections.extend(slide_sections)
        first_h1 = first_h1 or h1
    return sections, first_h1, slides


def _parse_pdf(data: bytes, limits: Limits) -> tuple[list[Section], int]:
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    try:
        # Opening the document checks the password: an empty user password (owner-only
        # restrictions) opens and is read; anything else stops here.
        document = PDFDocument(PDFParser(io.BytesIO(data)))
    except PDFEncryptionError as exc:
        raise ParseError("encrypted PDF: remove the password and upload it again") from exc
    except Exception as exc:
        raise ParseError(f"corrupt PDF: {_describe(exc)}") from exc

    with _parser_errors("PDF"):
        pages = list(islice(PDFPage.create_pages(document), limits.max_pages + 1))
    if len(pages) > limits.max_pages:
        raise ParseError(f"more than {_count(limits.max_pages, 'page')}")

    sections: list[Section] = []
    with _parser_errors("PDF"):
        resources = PDFResourceManager(caching=True)
        device = PDFPageAggregator(resources, laparams=LAParams())
        interpreter = PDFPageInterpreter(resources, device)
        for number, page in enumerate(pages, start=1):
            try:
                interpreter.process_page(page)
            except Exception as exc:
                raise ParseError(f"corrupt PDF: page {number}: {_describe(exc)}") from exc
            text = _tidy(_page_text(device.get_result()))
            if text:
                sections.append(Section(text, page=number))
    return sections, len(pages)


def _page_text(layout: LTPage) -> str:
    from pdfminer.layout import LTTextBox

    boxes = [_unwrap(box.get_text()) for box in layout if isinstance(box, LTTextBox)]
    return "\n\n".join(box for box in boxes if box)


_CJK = (
    r"\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    r"\uf900-\ufaff"
)
# A PDF breaks lines where the page ran out, in the middle of sentences. Inside one text box,
# join a wrapped line to the next: directly between CJK characters, with a space between
# words; keep the break before list markers and after sentence ends.
_CJK_WRAP = re.compile(rf"(?<=[{_CJK}，、：（《“])\n(?=[{_CJK}（《“])")
_WORD_WRAP = re.compile(r"(?<=[\w,;)\-])\n(?=[a-z0-9(])")


def _unwrap(text: str) -> str:
    text = text.strip()
    text = _CJK_WRAP.sub("", text)
    return _WORD_WRAP.sub(" ", text)


# -- text ----------------------------------------------------------------------------------


def _decode_text(data: bytes, *, html: bool = False) -> tuple[str, str]:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError as exc:
                raise ParseError(f"the text does not match its {codec} byte-order mark") from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if html:
        declared = _HTML_META_CHARSET.search(data[:4096])
        if declared:
            codec = _codec_name(declared.group(1).decode("ascii"))
            try:
                return data.decode(codec), codec
            except (LookupError, UnicodeDecodeError):
                pass  # a wrong declaration is common: detect instead

    from charset_normalizer import from_bytes

    candidates = [
        match.encoding
        for match in from_bytes(data)
        # Without a BOM, UTF-16/32 guesses on NUL-free bytes are noise.
        if not match.encoding.startswith(("utf_16", "utf_32"))
    ]
    if len(data) < _SHORT_TEXT_BYTES or (candidates and _codec_name(candidates[0]) == "gb18030"):
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            pass
    for candidate in candidates:
        codec = _codec_name(candidate)
        try:
            return data.decode(codec), codec
        except (LookupError, UnicodeDecodeError):
            continue
    raise ParseError("could not tell the text encoding: save the file as UTF-8 and upload it again")


def _codec_name(name: str) -> str:
    normalised = name.lower().replace("_", "-")
    if normalised.replace("-", "") in _GB_CODECS:
        return "gb18030"  # a superset of GB2312 and GBK
    return normalised


def _normalise(text: str) -> str:
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\x0c", "")


_BLANK_RUN = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _tidy(text: str) -> str:
    text = _TRAILING_SPACE.sub("\n", _normalise(text))
    return _BLANK_RUN.sub("\n\n", text).strip()


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _strip_front_matter(text: str) -> str:
    return _FRONT_MATTER.sub("", text, count=1)


# -- Markdown headings ---------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_NOT_PARAGRAPH = re.compile(r"^ {0,3}(?:[-*+>|]|\d+[.)]\s|#|<!--)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")


def markdown_sections(
    markdown: str,
    *,
    page: int | None = None,
    unescape: bool = False,
) -> tuple[list[Section], str | None]:
    """Split Markdown at its headings (ATX and setext, not inside code fences).

    Each section holds the text under one heading, without the heading line, and the path
    of headings above it. Returns the sections and the first level-1 heading, if any.
    `unescape` drops the backslash escapes that HTML-to-Markdown converters add.
    """
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    first_h1: str | None = None
    fence: str | None = None

    def flush() -> None:
        text = _tidy("\n".join(buffer))
        buffer.clear()
        if text:
            path = tuple(heading for _, heading in stack)
            sections.append(Section(text, heading_path=path, page=page))

    def open_heading(level: int, raw: str) -> None:
        nonlocal first_h1
        heading = _clean_heading(raw)
        if not heading:
            return
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        if level == 1 and first_h1 is None:
            first_h1 = heading

    for line in _normalise(markdown).split("\n"):
        fence_match = _FENCE.match(line)
        if fence is not None:
            buffer.append(line)
            closing = fence_match.group(1) if fence_match else ""
            if closing[:1] == fence[0] and len(closing) >= len(fence):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            buffer.append(line)
            continue
        atx = _ATX.match(line)
        if atx:
            open_heading(len(atx.group(1)), atx.group(2) or "")
            continue
        setext = _SETEXT.match(line)
        previous = buffer[-1] if buffer else ""
        if setext and previous.strip() and not _NOT_PARAGRAPH.match(previous):
            buffer.pop()
            open_heading(1 if setext.group(1)[0] == "=" else 2, previous)
            continue
        buffer.append(_IMAGE.sub(r"\1", _unescape(line) if unescape else line))
    flush()
    return sections, first_h1


def _unescape(line: str) -> str:
    return _ESCAPE.sub(r"\1", line)


def _clean_heading(raw: str) -> str:
    text = _IMAGE.sub(r"\1", raw)
    text = _LINK.sub(r"\1", text)
    text = _unescape(text.replace("**", "").replace("__", "").replace("`", ""))
    return " ".join(text.split()).rstrip(":：").strip()
