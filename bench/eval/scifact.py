"""SciFact (BEIR format) for the evaluations: the data, and the corpus as one Quire notebook.

The notebook is built by the real ingestion code (``source_process``: the chunker, the embedder
and whatever index it writes), one pasted-text source per abstract whose first line is the
abstract's title, as a person uploading one text file per abstract would have it. Embeddings
are cached by text (``embeddings-<model>.npz`` in the evaluation folder), so a rebuild after a
schema or chunker change costs the ingestion's bookkeeping (about two minutes), not the
embedding (about four), and a rerun with nothing changed costs nothing.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "scifact"
NOTEBOOK_TITLE = "SciFact corpus"


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str


def data_dir() -> Path:
    if not DATA.is_dir():
        sys.exit(f"SciFact data not found at {DATA} (../shared/eval/scifact beside the repository)")
    return DATA


def corpus() -> list[Doc]:
    with open(data_dir() / "corpus.jsonl", encoding="utf-8") as f:
        return [Doc(id=str(d["_id"]), title=d["title"], text=d["text"]) for d in map(json.loads, f)]


def queries() -> dict[str, str]:
    """Training claims: query id -> text."""
    with open(data_dir() / "queries-train.jsonl", encoding="utf-8") as f:
        return {str(q["_id"]): q["text"] for q in map(json.loads, f)}


def qrels() -> dict[str, dict[str, int]]:
    """Training relevance judgements: query id -> {doc id: grade}."""
    judged: dict[str, dict[str, int]] = defaultdict(dict)
    with open(data_dir() / "qrels-train.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            judged[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return dict(judged)


def evidence() -> list[dict[str, Any]]:
    """Training claims with their evidence abstracts and rationale sentences."""
    with open(data_dir() / "evidence-train.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def source_text(doc: Doc) -> str:
    return f"{doc.title}\n\n{doc.text}"


class CachedEmbedder:
    """The real embedder behind a cache keyed by the text's digest."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.path = path
        self.vectors: dict[bytes, np.ndarray] = {}
        self.misses = 0
        if path.exists():
            with np.load(path) as saved:
                self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()  # noqa: S324 - a cache key, not security

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self.vectors]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            for row, i in enumerate(missing):
                self.vectors[keys[i]] = fresh[row]
            self.misses += len(missing)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self.vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        if not self.vectors:
            return
        keys = np.array(list(self.vectors), dtype="S20")
        vectors = np.vstack(list(self.vectors.values())).astype(np.float32)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.path)


_embedder: CachedEmbedder | None = None


def use_cached_embedder() -> CachedEmbedder:
    """Route ingestion's and search's ``embedder()`` through the cache (this process only)."""
    global _embedder
    from notebooks import embeddings
    from notebooks.ingest.embedding import get_embedder

    if _embedder is None:
        _embedder = CachedEmbedder(get_embedder("minilm-onnx"), Path(settings.EVAL_EMBEDDINGS))
        embeddings.embedder = lambda: _embedder  # type: ignore[assignment,return-value]
    return _embedder


def build_key(limit: int | None) -> str:
    """What the stored notebook depends on: the chunker's and ingestion's code, the model, the
    notebooks app's migrations and the corpus slice. A change rebuilds the notebook."""
    from notebooks import ingestion
    from notebooks.ingest import chunking, minilm

    migrations = sorted(p.name for p in (Path(ingestion.__file__).parent / "migrations").glob("0*.py"))
    parts = [
        inspect.getsource(chunking),
        inspect.getsource(ingestion),
        f"{minilm.MODEL_PACKAGE}:{minilm.DIM}",
        ",".join(migrations),
        str(limit),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def scifact_notebook(*, limit: int | None = None, docs: Sequence[Doc] | None = None, label: str = "") -> Any:
    """The corpus (or its first ``limit`` abstracts, or ``docs``) as one ready notebook; built
    once per build key and reused. Returns the Notebook; ``doc_ids(notebook)`` maps sources."""
    from django.contrib.auth import get_user_model

    from notebooks.ingestion import source_process
    from notebooks.models import Notebook, Source

    embedder = use_cached_embedder()
    chosen = list(docs) if docs is not None else corpus()[:limit] if limit else corpus()
    digest = hashlib.sha256("|".join(d.id for d in chosen).encode()).hexdigest()[:8]
    key = f"{build_key(limit)}-{digest}"
    title = f"{NOTEBOOK_TITLE}{' ' + label if label else ''}"
    user, _ = get_user_model().objects.get_or_create(username="eval")
    found = Notebook.objects.filter(owner=user, title=title).first()
    if found is not None and found.description == key:
        return found
    if found is not None:
        found.delete()
    notebook = Notebook.objects.create(owner=user, title=title, description="building")
    started = time.monotonic()
    for n, doc in enumerate(chosen, 1):
        source = Source.objects.create(
            notebook=notebook,
            kind=Source.Kind.TEXT,
            title=doc.title[:300],
            text=source_text(doc),
            original_filename=f"{doc.id}.txt",
        )
        source_process(source_id=str(source.id))
        if n % 250 == 0 or n == len(chosen):
            rate = n / (time.monotonic() - started)
            print(f"\r  ingesting {title}: {n}/{len(chosen)} ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
            embedder.save()
    print(file=sys.stderr)
    embedder.save()
    Notebook.objects.filter(id=notebook.id).update(description=key)
    notebook.refresh_from_db()
    return notebook


def doc_ids(notebook: Any) -> dict[str, str]:
    """Source id -> SciFact doc id for the notebook's sources."""
    from notebooks.models import Source

    rows = Source.objects.filter(notebook=notebook).values_list("id", "original_filename")
    return {str(sid): name.removesuffix(".txt") for sid, name in rows}


def ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    gains = [relevant.get(d, 0) for d in ranked[:10]]
    dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
    return float(dcg / idcg) if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0
