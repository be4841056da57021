"""A protocol double of vLLM's rerank API (``POST /v1/rerank``), for tests.

This is NOT a model: relevance comes from a fixed rule, so that clients can be tested against
vLLM's wire format without a GPU. The reference is vLLM's ``RerankRequest`` /
``RerankResponse`` (``vllm/entrypoints/openai/protocol.py``), the Jina/Cohere format:

    request   {"model": str, "query": str, "documents": [str, ...], "top_n": int}
    answer    {"id": "rerank-...", "model": str, "usage": {"total_tokens": int},
               "results": [{"index": int, "document": {"text": str},
                            "relevance_score": float}, ...]}

``results`` are sorted best first and cut to ``top_n`` (0 or absent: all). An absent or empty
``model`` means the served one; another name answers 404, a missing or malformed field 400,
a wrong ``Authorization: Bearer`` key 401, each with vLLM's error body.

Relevance (a rule, not a model): ``relevance(query, document)`` if set, else the share of the
query's terms found in the document, squashed into (0, 1); terms are lower-cased words and
single CJK characters, as the vLLM double counts tokens.

Faults (``inject(name, count=n)``), each used by the next n requests: ``500`` (vLLM's error
body), ``slow`` (answers after ``delay_s``), ``not_json`` (a 200 whose body is not JSON),
``bad_index`` (a result pointing past the documents sent).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = frozenset({"500", "slow", "not_json", "bad_index"})
_TERM = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+")


def terms(text: str) -> list[str]:
    return [term.lower() for term in _TERM.findall(text)]


def overlap_relevance(query: str, document: str) -> float:
    """The default rule: the share of the query's distinct terms in the document, in (0, 1)."""
    wanted = set(terms(query))
    if not wanted:
        return 0.01
    share = len(wanted & set(terms(document))) / len(wanted)
    return round(0.01 + 0.98 * share, 6)


def _error(message: str, err_type: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


@dataclass
class _Fault:
    name: str
    remaining: int
    delay_s: float


class RerankDouble:
    """vLLM's ``/v1/rerank`` on a loopback port, served from a thread.

    ``requests`` keeps every JSON body received, in order. ``relevance``, ``model`` and
    ``api_key`` are read per request, so a test may change them while it runs.
    """

    def __init__(
        self,
        *,
        model: str = "bge-reranker-v2-m3",
        api_key: str | None = None,
        relevance: Callable[[str, str], float] | None = None,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.relevance = relevance or overlap_relevance
        self.requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What a model endpoint's ``base_url`` holds: the API root, ending in /v1."""
        if self._server is None:
            raise RuntimeError("the rerank double is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def inject(self, fault: str, *, count: int = 1, delay_s: float = 1.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        with self._lock:
            self._faults.append(_Fault(fault, count, delay_s))

    def start(self) -> RerankDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                status, body = double._answer(self)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read `requests`

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rerank-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> RerankDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------------

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return fault

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.path != "/v1/rerank":
            return 404, json.dumps({"detail": "Not Found"}).encode()
        if self.api_key is not None:
            given = handler.headers.get("Authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return 401, json.dumps({"error": "Unauthorized"}).encode()
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, json.dumps(_error("JSON decode error", "Bad Request", 400)).encode()
        with self._lock:
            self.requests.append(body)
        fault = self._take_fault()
        if fault is not None:
            if fault.name == "500":
                message = "Engine failed to score (injected fault)."
                return 500, json.dumps(_error(message, "InternalServerError", 500)).encode()
            if fault.name == "slow":
                time.sleep(fault.delay_s)
            if fault.name == "not_json":
                return 200, b"<html>502 Bad Gateway</html>"
        status, answer = self._rerank(body)
        if fault is not None and fault.name == "bad_index" and answer.get("results"):
            answer["results"][0]["index"] = len(body["documents"]) + 3
        return status, json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()

    def _rerank(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            return 400, _error("body: Input should be an object", "Bad Request", 400)
        requested = body.get("model")
        if requested and requested != self.model:
            message = f"The model `{requested}` does not exist. Valid aliases: {self.model}."
            return 404, _error(message, "NotFoundError", 404)
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str):
            return 400, _error("body.query: Field required (a string)", "Bad Request", 400)
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            return 400, _error(
                "body.documents: Input should be a list of strings", "Bad Request", 400
            )
        top_n = body.get("top_n", 0)
        if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 0:
            return 400, _error("body.top_n: Input should be a valid integer", "Bad Request", 400)
        scores = [float(self.relevance(query, text)) for text in documents]
        # Stable: equal scores keep the order in which the documents were sent.
        order = sorted(range(len(documents)), key=lambda index: -scores[index])
        scored = [
            {
                "index": index,
                "document": {"text": documents[index]},
                "relevance_score": scores[index],
            }
            for index in order
        ]
        if 0 < top_n < len(scored):
            scored = scored[:top_n]
        tokens = len(terms(query)) * len(documents) + sum(len(terms(d)) for d in documents)
        return 200, {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": self.model,
            "usage": {"total_tokens": tokens},
            "results": scored,
        }
