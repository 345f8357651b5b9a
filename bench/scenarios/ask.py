"""Ask: from ``POST /api/v1/notebooks/{id}/questions/`` to the final ``answer`` event at the
client (offline answerer) on notebooks of 1k and 20k chunks, against the same retrieval and
answer (``notebooks.ask.answer_for``) called in this process on the same notebook.

The chunks are real prose, so the answers are real: SciFact abstracts (cut at sentences into
pieces of at most PIECE_CHARS), one ready source each: the evidence abstracts of the training
claims asked first, then the rest of the corpus in order until the notebook is full. Every
chunk is a distinct piece as far as the corpus goes (its 5,183 abstracts make about 10,100
pieces); a bigger notebook repeats them in turn, each copy carrying its piece's MiniLM vector
plus a little noise. Repeats make answers cheaper than a real notebook's (the retrieved
passages are partly copies of each other, and the answerer embeds each distinct sentence
once), so the details say how many chunks are distinct. The pieces' vectors are cached by text
between runs (``var/bench/ask-pieces-minilm.npz``). Rows are
inserted in bulk through the ORM as in the search scenario. The first questions after a
notebook is filled build the worker's (and this process's) search caches: they are asked first
and not timed, as the search scenario's "cold" requests are reported apart. A client holds the
notebook's event stream open throughout and notes when each question's final event arrives;
questions are asked one at a time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.context import Context, say
from bench.report import Row, percentile

NAME = "ask"
TITLE = "ask"
PIECE_CHARS = 1000
NOISE = 0.02
WARM_UP = 2


def _pieces(text: str) -> list[str]:
    from notebooks.answer import sentence_spans

    pieces: list[str] = []
    current = ""
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if current and len(current) + 1 + len(sentence) > PIECE_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def corpus_and_claims(count: int, pieces_wanted: int) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(title, pieces) of abstracts, the evidence of ``count`` claims first, until there are
    ``pieces_wanted`` pieces or the corpus ends; and the claims."""
    from bench.eval import scifact

    docs = {d.id: d for d in scifact.corpus()}
    claims: list[str] = []
    chosen: dict[str, None] = {}
    for claim in scifact.evidence():
        ids = [e["doc_id"] for e in claim["evidence"]]
        if ids and all(i in docs for i in ids) and len(claims) < count:
            claims.append(claim["claim"])
            chosen.update(dict.fromkeys(ids))
    pool = [(docs[i].title, _pieces(docs[i].text)) for i in chosen]
    pieces = sum(len(p) for _t, p in pool)
    for doc_id, doc in docs.items():
        if pieces >= pieces_wanted:
            break
        if doc_id not in chosen:
            pool.append((doc.title, _pieces(doc.text)))
            pieces += len(pool[-1][1])
    return pool, claims


def embed_pieces(texts: list[str]) -> np.ndarray:
    from django.conf import settings

    from bench.eval.scifact import CachedEmbedder
    from notebooks.embeddings import embedder

    folder = Path(settings.DATA_DIR) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    cached = CachedEmbedder(embedder(), folder / "ask-pieces-minilm.npz")
    vectors = np.vstack([cached.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])
    cached.save()
    return vectors


def populate(ctx: Context, size: int, pool: list[tuple[str, list[str]]], vectors: np.ndarray) -> str:
    from django.db import transaction
    from django.db.models import F

    from notebooks.models import Chunk, Notebook, Source

    rng = np.random.default_rng(size)
    notebook = Notebook.objects.create(owner=ctx.user(), title=f"bench: ask {size}")
    # The abstracts this size needs (the pool's first ones), each piece once before any repeats.
    needed, pieces = 0, 0
    while needed < len(pool) and pieces < size:
        pieces += len(pool[needed][1])
        needed += 1
    pool = pool[:needed]
    sources = [
        Source.objects.create(
            notebook=notebook,
            kind=Source.Kind.TEXT,
            title=title,
            content_type="txt",
            status=Source.Status.READY,
            content_hash=uuid.uuid4().hex,
        )
        for title, _pieces in pool
    ]
    flat = [(s, text) for s, (_title, pieces) in zip(sources, pool, strict=True) for text in pieces]
    counts: dict[Any, int] = {}
    rows = []
    for i in range(size):
        source, text = flat[i % len(flat)]
        vector = vectors[i % len(flat)] + rng.normal(0, NOISE, vectors.shape[1]).astype(np.float32)
        vector /= np.linalg.norm(vector)
        position = counts.get(source.id, 0)
        counts[source.id] = position + 1
        rows.append(
            Chunk(
                source=source,
                notebook=notebook,
                position=position,
                text=text,
                token_count=len(text.split()),
                char_start=0,
                char_end=len(text),
                page=None,
                embedding=vector.astype(np.float32).tobytes(),
            )
        )
    with transaction.atomic():
        Chunk.objects.bulk_create(rows, batch_size=1000)
        for source in sources:
            Source.objects.filter(id=source.id).update(chunk_count=counts.get(source.id, 0))
    Notebook.objects.filter(id=notebook.id).update(chunks_version=F("chunks_version") + 1)
    return str(notebook.id)


class AnswerEvents(threading.Thread):
    """Holds a notebook's event stream and notes when each question's final answer arrives."""

    def __init__(self, url: str, token: str, notebook: str) -> None:
        super().__init__(daemon=True, name="ask-events")
        self.url = f"{url}/api/v1/notebooks/{notebook}/events/"
        self.headers = {"Authorization": f"Token {token}"}
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.done: dict[str, tuple[float, dict[str, Any]]] = {}
        self.arrived = threading.Condition()
        self.error = ""

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                event = ""
                for line in response.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "answer":
                        data = json.loads(line[5:])
                        if data.get("done"):
                            with self.arrived:
                                self.done[data["question"]] = (time.perf_counter(), data)
                                self.arrived.notify_all()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()

    def wait(self, question: str, timeout: float = 60) -> tuple[float, dict[str, Any]]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: question in self.done, timeout=timeout):
                raise RuntimeError(f"no final answer event for {question} ({self.error or 'timeout'})")
            return self.done[question]


def ask_over_http(http: httpx.Client, events: AnswerEvents, notebook: str, question: str) -> tuple[float, bool]:
    start = time.perf_counter()
    response = http.post(f"/api/v1/notebooks/{notebook}/questions/", json={"question": question})
    if response.status_code != 202:
        raise RuntimeError(f"asking answered {response.status_code}: {response.text[:200]}")
    arrived, data = events.wait(response.json()["id"])
    return (arrived - start) * 1000, bool(data.get("answered"))


def in_process(notebook: Any, question: str) -> float:
    from notebooks.ask import answer_for

    start = time.perf_counter()
    answer_for(notebook=notebook, question=question)
    return (time.perf_counter() - start) * 1000


def run(ctx: Context) -> list[Row]:
    from notebooks.models import Notebook

    sizes = ctx.size([1_000, 20_000], [1_000, 20_000])
    runs = ctx.runs(3)
    count = ctx.size(20, 10)
    pool, claims = corpus_and_claims(count + WARM_UP, max(sizes))
    warm_up, claims = claims[:WARM_UP], claims[WARM_UP:]
    texts = [text for _title, pieces in pool for text in pieces]
    start = time.perf_counter()
    vectors = embed_pieces(texts)
    say(f"  embedded {len(texts)} pieces of {len(pool)} abstracts in {time.perf_counter() - start:.1f} s")
    notebooks = {}
    for size in sizes:
        start = time.perf_counter()
        notebooks[size] = populate(ctx, size, pool, vectors)
        say(f"  inserted {size:,} chunks in {time.perf_counter() - start:.1f} s")

    figures = {s: {"p50": [], "p99": [], "base_p50": [], "base_p99": [], "answered": []} for s in sizes}
    with ctx.http(timeout=120) as http:
        for size in sizes:
            notebook = notebooks[size]
            events = AnswerEvents(ctx.web_url, ctx.token, notebook)
            events.start()
            events.connected.wait(30)
            row = Notebook.objects.get(id=notebook)
            for question in warm_up:  # the worker's and this process's caches for this notebook
                ask_over_http(http, events, notebook, question)
                in_process(row, question)
            for i in range(runs):
                timed = [ask_over_http(http, events, notebook, q) for q in claims]
                # Let the worker's onnxruntime threads stop spinning before timing here.
                time.sleep(0.3)
                base = [in_process(row, q) for q in claims]
                f = figures[size]
                f["p50"].append(percentile([t for t, _ in timed], 50))
                f["p99"].append(percentile([t for t, _ in timed], 99))
                f["base_p50"].append(percentile(base, 50))
                f["base_p99"].append(percentile(base, 99))
                f["answered"].append(sum(a for _, a in timed) / len(timed))
                say(
                    f"  {size:,} chunks, run {i + 1}/{runs}: POST→final event p50 {f['p50'][-1]:.0f} ms, "
                    f"p99 {f['p99'][-1]:.0f} ms; in-process p50 {f['base_p50'][-1]:.0f} ms; "
                    f"answered {f['answered'][-1]:.0%}"
                )
            events.stop.set()
    ctx.details[NAME] = {
        "sizes": sizes,
        "questions": len(claims),
        "distinct_chunks": {str(s): min(s, len(texts)) for s in sizes},
    }
    ctx.details[NAME].update({str(s): f for s, f in figures.items()})
    rows: list[Row] = []
    base = "answer_for in-process"
    for size in sizes:
        f = figures[size]
        label = f"{size // 1000}k chunks"
        if size >= 20_000:
            rows.append(
                Row(
                    TITLE,
                    f"{label}, POST→final answer event p50",
                    "ms",
                    f["p50"],
                    f["base_p50"],
                    base,
                    "≤ 300 ms",
                    lambda v, b: v <= 300,
                )
            )
        else:
            rows.append(Row(TITLE, f"{label}, POST→final answer event p50", "ms", f["p50"], f["base_p50"], base))
        rows.append(Row(TITLE, f"{label}, POST→final answer event p99", "ms", f["p99"], f["base_p99"], base))
        rows.append(Row(TITLE, f"{label}, questions answered (not declined)", "share", f["answered"]))
    return rows
