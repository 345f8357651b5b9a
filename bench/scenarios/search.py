"""Search: latency of ``GET /api/v1/notebooks/{id}/search/?q=`` on notebooks of 1k, 20k and 100k
chunks, against numpy top-k over the same matrix in this process.

Chunks are synthetic rows inserted in bulk through the ORM (random unit float32 384-d
vectors, one ready source per notebook, ``chunks_version`` bumped as ingestion does). A search
embeds the query and multiplies by the notebook's matrix, which each web process caches and
brings up to date by difference when ``chunks_version`` changes. Rows:

- "first search": the process's first search of a notebook reads every vector (and, for hybrid,
  tokenizes every chunk). Before the cache was kept by difference, every search after any change
  paid the semantic one: it is the baseline of the cold rows.
- "cold (first after a change)": a source of three chunks is added and the previous one deleted,
  as ingestion and deletion write them, then one search; five times per run, the median kept.
- "during an import": a source added before every search, as a bulk import makes them ready.

One keep-alive connection serves every request, so they reach the same web process (whose model
is loaded beforehand).
"""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np

from bench.context import Context, say
from bench.report import Row, percentile

NAME = "search"
TITLE = "search"
DIM = 384
K = 10
COLD_SAMPLES = 5  # cold searches per run (the median is the run's figure)
QUERIES = [
    "ocean temperature measurements",
    "history of the market economy",
    "protein analysis method",
    "climate policy and government",
    "student memory experiment",
    "river pressure data",
    "library archive journal article",
    "energy network signal",
]


def populate(ctx: Context, size: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    from django.db import transaction
    from django.db.models import F

    from notebooks.ingest.samples import prose
    from notebooks.models import Chunk, Notebook, Source

    notebook = Notebook.objects.create(owner=ctx.user(), title=f"bench: search {size}")
    source = Source.objects.create(
        notebook=notebook,
        kind=Source.Kind.TEXT,
        title=f"synthetic {size}",
        content_type="txt",
        status=Source.Status.READY,
        chunk_count=size,
        content_hash=uuid.uuid4().hex,
    )
    vectors = rng.standard_normal((size, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [prose(60, seed=i) for i in range(64)]
    step = 5000
    for begin in range(0, size, step):
        with transaction.atomic():
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        source=source,
                        notebook=notebook,
                        position=i,
                        text=texts[i % len(texts)],
                        token_count=80,
                        char_start=0,
                        char_end=len(texts[i % len(texts)]),
                        page=None,
                        embedding=vectors[i].tobytes(),
                    )
                    for i in range(begin, min(begin + step, size))
                ],
                batch_size=1000,
            )
    Notebook.objects.filter(id=notebook.id).update(chunks_version=F("chunks_version") + 1)
    return str(notebook.id), vectors


def change(notebook_id: str, rng: np.random.Generator, delete_previous: bool) -> None:
    """What ingestion and deletion write: a ready source of three chunks appears (and the one
    added before it goes), chunks_version bumped in the same transaction."""
    from django.db import transaction
    from django.db.models import F

    from notebooks.ingest.samples import prose
    from notebooks.models import Chunk, Notebook, Source

    with transaction.atomic():
        if delete_previous:
            Source.objects.filter(notebook_id=notebook_id, title="bench: change").delete()
        source = Source.objects.create(
            notebook_id=notebook_id,
            kind=Source.Kind.TEXT,
            title="bench: change",
            content_type="txt",
            status=Source.Status.READY,
            chunk_count=3,
            content_hash=uuid.uuid4().hex,
        )
        vectors = rng.standard_normal((3, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Chunk.objects.bulk_create(
            Chunk(
                source=source,
                notebook_id=notebook_id,
                position=i,
                text=(text := prose(60, seed=int(rng.integers(1 << 30)))),
                token_count=80,
                char_start=0,
                char_end=len(text),
                embedding=vectors[i].tobytes(),
            )
            for i in range(3)
        )
        Notebook.objects.filter(id=notebook_id).update(chunks_version=F("chunks_version") + 1)


def changed_then_searched(http: httpx.Client, notebook: str, rng: np.random.Generator, mode: str) -> list[float]:
    """Five cold searches: each the first after a source was added and the one before deleted."""
    times = []
    for j in range(COLD_SAMPLES):
        change(notebook, rng, delete_previous=True)
        times.append(timed_search(http, notebook, QUERIES[j % len(QUERIES)], mode))
    return times


def numpy_topk(vectors: np.ndarray, rng: np.random.Generator, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        query = rng.standard_normal(DIM, dtype=np.float32)
        query /= np.linalg.norm(query)
        start = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, K - 1)[:K]
        top = top[np.argsort(-scores[top], kind="stable")]
        times.append((time.perf_counter() - start) * 1000)
    return times


def timed_search(http: httpx.Client, notebook: str, query: str, mode: str = "semantic") -> float:
    start = time.perf_counter()
    response = http.get(f"/api/v1/notebooks/{notebook}/search/", params={"q": query, "k": K, "mode": mode})
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200 or len(response.json()["results"]) != K:
        raise RuntimeError(f"search answered {response.status_code}: {response.text[:200]}")
    return elapsed


def run(ctx: Context) -> list[Row]:

    sizes = ctx.size([1_000, 20_000, 100_000], [1_000, 20_000])
    runs = ctx.runs(3)
    warm_requests = ctx.size(30, 20)
    rng = np.random.default_rng(8)
    notebooks: dict[int, tuple[str, np.ndarray]] = {}
    for size in sizes:
        start = time.perf_counter()
        notebooks[size] = populate(ctx, size, rng)
        say(f"  inserted {size:,} chunks in {time.perf_counter() - start:.1f} s")
    warmup_notebook, _ = populate(ctx, 20, rng)

    from notebooks.embeddings import embedder

    model = embedder()
    model.embed(["warm-up"])
    start = time.perf_counter()
    for q in QUERIES:
        model.embed([q])
    embed_ms = (time.perf_counter() - start) * 1000 / len(QUERIES)

    figures: dict[int, dict[str, list[float]]] = {
        s: {
            "first": [],
            "hybrid_first": [],
            "cold": [],
            "p50": [],
            "p99": [],
            "numpy": [],
            "hybrid_cold": [],
            "hybrid_p50": [],
            "importing_p50": [],
        }
        for s in sizes
    }
    with ctx.http(timeout=120) as http:
        # Load the model in the web process that serves this connection.
        for q in QUERIES[:3]:
            timed_search(http, warmup_notebook, q)
        for size in sizes:
            notebook, _ = notebooks[size]
            figures[size]["first"].append(timed_search(http, notebook, QUERIES[0]))
            figures[size]["hybrid_first"].append(timed_search(http, notebook, QUERIES[1], "hybrid"))
        for i in range(runs):
            for size in sizes:
                notebook, vectors = notebooks[size]
                cold = percentile(changed_then_searched(http, notebook, rng, "semantic"), 50)
                for q in QUERIES[:3]:
                    timed_search(http, notebook, q)
                warm = [timed_search(http, notebook, QUERIES[j % len(QUERIES)]) for j in range(warm_requests)]
                # Let the web process's onnxruntime threads stop spinning before timing numpy here.
                time.sleep(0.3)
                base = numpy_topk(vectors, rng, 50)
                f = figures[size]
                f["cold"].append(cold)
                f["p50"].append(percentile(warm, 50))
                f["p99"].append(percentile(warm, 99))
                f["numpy"].append(percentile(base, 50))
                # Hybrid (the API's default): the first search after a change brings both sides up to date.
                f["hybrid_cold"].append(percentile(changed_then_searched(http, notebook, rng, "hybrid"), 50))
                for q in QUERIES[:3]:
                    timed_search(http, notebook, q, "hybrid")
                hybrid = [
                    timed_search(http, notebook, QUERIES[j % len(QUERIES)], "hybrid") for j in range(warm_requests)
                ]
                f["hybrid_p50"].append(percentile(hybrid, 50))
                importing = []
                for j in range(warm_requests):
                    change(notebook, rng, delete_previous=False)
                    importing.append(timed_search(http, notebook, QUERIES[j % len(QUERIES)], "hybrid"))
                f["importing_p50"].append(percentile(importing, 50))
            say(
                f"  run {i + 1}/{runs}: "
                + "; ".join(
                    f"{s:,}: warm p50 {figures[s]['p50'][-1]:.1f} ms (numpy {figures[s]['numpy'][-1]:.2f} ms), "
                    f"cold {figures[s]['cold'][-1]:.0f} ms, hybrid cold {figures[s]['hybrid_cold'][-1]:.0f} ms, "
                    f"during an import {figures[s]['importing_p50'][-1]:.1f} ms"
                    for s in sizes
                )
            )
    ctx.details[NAME] = {"sizes": sizes, "warm_requests": warm_requests, "query_embed_ms_in_process": embed_ms}
    ctx.details[NAME].update({str(s): f for s, f in figures.items()})
    ctx.notes.append(f"search: embedding a query takes {embed_ms:.1f} ms in the bench process (part of every search)")
    rows: list[Row] = []
    for size in sizes:
        f = figures[size]
        rows.append(
            Row(
                TITLE,
                f"{size // 1000}k chunks, warm p50",
                "ms",
                f["p50"],
                f["numpy"],
                "numpy top-k",
                "≤ 2x numpy + 10 ms",
                lambda v, b: b is not None and v <= 2 * b + 10,
            )
        )
    for size in sizes:
        f = figures[size]
        rows.append(Row(TITLE, f"{size // 1000}k chunks, first search (reads every vector)", "ms", f["first"]))
        rows.append(
            Row(TITLE, f"{size // 1000}k chunks, hybrid first search (tokenizes every chunk)", "ms", f["hybrid_first"])
        )
        rows.append(
            Row(
                TITLE,
                f"{size // 1000}k chunks, cold (first after a change)",
                "ms",
                f["cold"],
                f["first"],
                "reading every vector",
            )
        )
    for size in sizes:
        f = figures[size]
        rows.append(
            Row(
                TITLE,
                f"{size // 1000}k chunks, hybrid warm p50",
                "ms",
                f["hybrid_p50"],
                f["p50"],
                "semantic warm p50",
                "≤ semantic + 5 ms",
                lambda v, b: b is not None and v <= b + 5,
            )
        )
        rows.append(
            Row(
                TITLE,
                f"{size // 1000}k chunks, hybrid cold",
                "ms",
                f["hybrid_cold"],
                f["first"],
                "semantic cold as it was (every vector read)",
                "≤ that",
                lambda v, b: b is not None and v <= b,
            )
        )
        rows.append(
            Row(
                TITLE,
                f"{size // 1000}k chunks, hybrid p50 during an import",
                "ms",
                f["importing_p50"],
                f["hybrid_p50"],
                "hybrid warm p50",
                *(("≤ 1.5x warm", lambda v, b: b is not None and v <= 1.5 * b) if size == 20_000 else ()),
            )
        )
    return rows
