"""The memory baseline: the embedder loaded alone in a fresh process (no Django).

    python -m bench.embedder_alone < texts.json   ->   {"rss_loaded": …, "rss_after": …, "rss_peak": …}

Loads MiniLM as a worker preloads it, then embeds the given chunks in the job's batches of 32
(so onnxruntime's arena grows as it does in a work-horse), and prints its memory in bytes.
"""

import json
import resource
import sys

import psutil


def main() -> None:
    from notebooks.ingest.embedding import preload_embedder

    before = psutil.Process().memory_info().rss
    embedder = preload_embedder("minilm-onnx")
    loaded = psutil.Process().memory_info().rss
    texts = json.load(sys.stdin)
    for start in range(0, len(texts), 32):
        embedder.embed(texts[start : start + 32])
    after = psutil.Process().memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rss_start": before, "rss_loaded": loaded, "rss_after": after, "rss_peak": peak}))


if __name__ == "__main__":
    main()
