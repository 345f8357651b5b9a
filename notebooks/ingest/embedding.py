"""Sentence embeddings: unit-length float32 vectors, so a dot product is a cosine similarity.

``get_embedder(name)`` returns one embedder per process and name. Forking workers call it in the
parent before forking, so each job's work-horse starts with the model already in memory (the
pages are shared copy-on-write) instead of loading it per job.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from notebooks.ingest import minilm
from notebooks.ingest.errors import EmbedderUnavailable

Vectors = npt.NDArray[np.float32]

EMBEDDERS: Final = ("minilm-onnx", "hashing", "sentence-transformers")


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """An (len(texts), dim) float32 array of L2-normalised rows, in the order of ``texts``."""
        ...


def _normalise(vectors: npt.NDArray[np.floating[Any]]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX, on onnxruntime's CPU provider.

    Mean pooling over the attention mask then L2 normalisation, as sentence-transformers does for
    this model; inputs longer than ``max_length`` tokens (with [CLS] and [SEP]) are truncated.
    """

    name = "minilm-onnx"
    dim = minilm.DIM

    def __init__(
        self,
        *,
        intra_op_threads: int | None = None,
        batch_size: int = 1,
        max_length: int = minilm.MAX_LENGTH,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # onnxruntime defaults to a thread per core in every process, and a host runs several
        # workers beside the web process and Redis: at most 2 unless told otherwise. A child
        # forked after the session was made has lost the pool's threads and computes on its
        # calling thread alone (measured: the speed of 1 thread).
        options.intra_op_num_threads = intra_op_threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Idle pool threads would spin for a while after each run and steal the cores from
        # whatever comes next (numpy's search right after the query is embedded: measured
        # 20k-chunk search p50 23 ms -> 12 ms with spinning off).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Measured here: basic optimisation is 5-10% faster than none and "all" is no faster;
        # any optimisation folds the int8 weights to float (session RSS 36 MB -> 160 MB), but
        # that memory is read-only and shared with work-horses forked after preloading.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self._session = ort.InferenceSession(str(minilm.model_path()), options, providers=["CPUExecutionProvider"])
        self._threads = options.intra_op_num_threads
        self._tokenizer = minilm.load_tokenizer()
        self._tokenizer.enable_truncation(max_length=max_length)
        # Texts run one per session.run, two at a time from two calling threads (below). Measured
        # on 2 cores, the bench's ingestion corpus, one process per document as work-horses run:
        # 29-36 chunks/s (it varies from process to process) against 28.6-29.1 for batches of 8
        # (4 per thread), and 12,000 page faults per document against 34,000 (onnxruntime's arena
        # keeps the peak activation memory of the largest run: about 150 MB at 8 x 256 tokens);
        # in one process 30-37 against 29-32. No padding is computed, and the activations of one
        # text stay in cache.
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Texts of similar length run together (less padding, when batches hold more than one);
        # results go back in order.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        size = self._batch_size
        batches = [order[begin : begin + size] for begin in range(0, len(order), size)]
        # Batches run side by side from as many calling threads as the session has (run()
        # releases the GIL; each batch writes its own rows). In a work-horse forked after the
        # session was made, onnxruntime's pool has lost its threads and each run computes on its
        # caller alone, so this is what keeps both cores busy there (1 caller: 16 chunks/s).
        callers = self._threads

        def run(batch: list[int]) -> None:
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[batch] = _normalise(pooled)

        if callers > 1 and len(batches) > 1:
            # A pool per call: threads do not survive the fork into a work-horse.
            with ThreadPoolExecutor(callers) as pool:
                list(pool.map(run, batches))
        else:
            for batch in batches:
                run(batch)
        return out


class HashingEmbedder:
    """A deterministic bag-of-words embedder: a test double with no model and no semantics.

    Words are hashed with BLAKE2 (Python's own ``hash`` differs from process to process) into
    signed buckets, so identical texts get identical vectors and shared words raise similarity.
    """

    name = "hashing"

    def __init__(self, dim: int = minilm.DIM) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            # A text without words still gets a unit vector, so every row has length one.
            for word in re.findall(r"\w+", text.lower()) or [""]:
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if value >> 63 else -1.0
        return _normalise(out)


class SentenceTransformersEmbedder:
    """The same model through sentence-transformers (torch), when that is installed."""

    name = "sentence-transformers"
    dim = minilm.DIM

    def __init__(self) -> None:
        # Only the local model folder is used; these keep the hub client from trying the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedderUnavailable("The sentence-transformers embedder is not installed.") from None
        self._model = SentenceTransformer(str(minilm.model_dir()), device="cpu")

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


@functools.cache
def get_embedder(name: str, *, intra_op_threads: int | None = None) -> Embedder:
    """The process's embedder called ``name`` (one of ``EMBEDDERS``), loaded on first use."""
    if name == "minilm-onnx":
        return OnnxMiniLMEmbedder(intra_op_threads=intra_op_threads)
    if name == "hashing":
        return HashingEmbedder()
    if name == "sentence-transformers":
        return SentenceTransformersEmbedder()
    raise ValueError(f"unknown embedder {name!r}; expected one of {', '.join(EMBEDDERS)}")


def preload_embedder(name: str) -> Embedder:
    """Load ``name`` for a worker parent to call before it forks work-horses: they share the
    model's weights copy-on-write.

    It does not run the model. A run grows onnxruntime's arena, and a horse writing into an
    arena inherited from its parent copies it page by page. Measured, forked children embedding
    one 22-chunk document each: 953 ms/doc with 2.3 s of system time over 6 children after a
    warm-up run in the parent; 780 ms/doc with 0.5 s without it. `make bench` (ingestion) shows
    the effect end to end."""
    return get_embedder(name)
