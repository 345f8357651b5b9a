"""Search quality on SciFact's training claims: document-level nDCG@10 and recall@100.

A document's rank is that of its best chunk. Keyword (BM25), semantic (MiniLM cosine) and
hybrid (their weighted reciprocal-rank fusion, the default) are scored through the search the
API runs (``notebooks.search``), over the notebook ``bench.eval.scifact`` builds.
"""

from __future__ import annotations

import argparse

from bench.eval import scifact

PUBLISHED = [
    ("BM25 (Elasticsearch), BEIR test split", 0.665),
    ("BM25 (Pyserini), BEIR test split", 0.679),
    ("all-MiniLM-L6-v2 dense, BEIR test split", 0.645),
]


def ranked_docs(hits: list, docs: dict[str, str]) -> list[str]:
    seen: list[str] = []
    for hit in hits:
        doc = docs.get(hit.source_id)
        if doc is not None and doc not in seen:
            seen.append(doc)
    return seen


def run(args: argparse.Namespace) -> str:
    from notebooks.search import notebook_search

    notebook = scifact.scifact_notebook(limit=args.limit)
    docs = scifact.doc_ids(notebook)
    in_corpus = set(docs.values())
    judged = {q: {d: g for d, g in rel.items() if d in in_corpus} for q, rel in scifact.qrels().items()}
    claims = {q: text for q, text in scifact.queries().items() if judged.get(q)}
    n = len(claims)
    lines = [
        f"## Search on SciFact train ({n} claims, {len(docs)} abstracts, {notebook.chunks.count()} chunks)",
        "",
        "| mode | nDCG@10 | recall@100 |",
        "| --- | ---: | ---: |",
    ]
    for mode in ("keyword", "semantic", "hybrid"):
        ndcg, recall = [], []
        for qid, text in claims.items():
            ranked = ranked_docs(notebook_search(notebook=notebook, query=text, k=300, mode=mode).hits, docs)
            ndcg.append(scifact.ndcg_at_10(ranked, judged[qid]))
            recall.append(scifact.recall_at(ranked, judged[qid], 100))
        lines.append(f"| {mode} (Quire) | {sum(ndcg) / n:.3f} | {sum(recall) / n:.3f} |")
    lines += [f"| {name} (published) | {value:.3f} | |" for name, value in PUBLISHED]
    return "\n".join(lines)
