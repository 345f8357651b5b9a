"""Print what ingestion costs on this machine: ``python -m notebooks.ingest.measure``.

Model load time and memory, embedding throughput (in this process with 1 and N threads, and in a
forked child after the parent preloaded the model, which is how workers run it), and PDF
extraction and chunking speed. Inputs are generated, so the numbers are comparable run to run.
"""

from __future__ import annotations

import argparse
import os
import time

import psutil

from notebooks.ingest import chunking, minilm, samples
from notebooks.ingest.embedding import OnnxMiniLMEmbedder
from notebooks.ingest.extract import extract

MB = 1024 * 1024


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def measure_load(threads: int) -> OnnxMiniLMEmbedder:
    before, start = _rss(), time.perf_counter()
    import numpy  # noqa: F401 - importing the runtime is part of what loading the model costs
    import onnxruntime  # noqa: F401

    imported, imported_rss = time.perf_counter(), _rss()
    embedder = OnnxMiniLMEmbedder(intra_op_threads=threads)
    embedder.embed(["warm-up"])
    loaded = time.perf_counter()
    print(
        f"model load: {loaded - start:.2f} s (imports {imported - start:.2f} s, model {loaded - imported:.2f} s); "
        f"RSS +{(_rss() - before) / MB:.0f} MB (imports +{(imported_rss - before) / MB:.0f} MB, "
        f"model +{(_rss() - imported_rss) / MB:.0f} MB)"
    )
    return embedder


def make_chunks(count: int, tokens: int) -> list[str]:
    text = samples.prose(count * tokens, seed=1)
    chunks = chunking.chunk_text(text, max_tokens=tokens, overlap_tokens=0, count_tokens=minilm.count_tokens)
    return [c.text for c in chunks[:count]]


def _rate(embedder: OnnxMiniLMEmbedder, texts: list[str]) -> float:
    start = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


def _forked_rate(embedder: OnnxMiniLMEmbedder, texts: list[str]) -> float:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, f"{_rate(embedder, texts):.3f}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    rate = float(os.read(read, 64).decode())
    os.close(read)
    return rate


def measure_embedding(embedder: OnnxMiniLMEmbedder, threads: int, count: int, tokens: int) -> None:
    texts = make_chunks(count, tokens)
    mean = sum(minilm.count_tokens(texts)) / len(texts)
    print(f"embedding {len(texts)} chunks of {mean:.0f} tokens on {os.cpu_count()} cores:")
    before = _rss()
    rate = _rate(embedder, texts)
    arena = (_rss() - before) / MB
    print(f"  in process, {threads} thread(s): {rate:.1f} chunks/s (RSS +{arena:.0f} MB kept by the arena)")
    if hasattr(os, "fork"):
        print(f"  in a child forked after preloading: {_forked_rate(embedder, texts):.1f} chunks/s")
    if threads != 1:
        print(f"  in process, 1 thread: {_rate(OnnxMiniLMEmbedder(intra_op_threads=1), texts):.1f} chunks/s")


def measure_extraction(pages: int) -> None:
    pdf = samples.make_pdf([samples.wrap(samples.prose(450, seed=i)) for i in range(pages)])
    start = time.perf_counter()
    result = extract(pdf, "pdf")
    extracted = time.perf_counter()
    chunks = chunking.chunk_text(result.text, result.pages)
    chunked = time.perf_counter()
    print(
        f"PDF of {result.page_count} pages ({len(pdf) // 1024} KB, {result.word_count} words): "
        f"extract {extracted - start:.2f} s = {result.page_count / (extracted - start):.0f} pages/s; "
        f"chunk {chunked - extracted:.3f} s -> {len(chunks)} chunks"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()
    embedder = measure_load(args.threads)
    measure_embedding(embedder, args.threads, args.chunks, args.tokens)
    measure_extraction(args.pages)


if __name__ == "__main__":
    main()
