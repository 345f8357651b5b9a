"""Answer quality on SciFact's training claims, with the answerer the question job runs.

- evidence claims (claims with rationale sentences): does the answer cite a passage of an
  evidence abstract, and does a quote contain a rationale sentence (or lie inside one)?
- off-topic questions (``OFF_TOPIC``, written for this evaluation): share wrongly answered.
- held-out claims: evidence claims asked with their evidence abstracts left out of retrieval
  (as if not in the notebook): how often it still answers, with some answers printed to read.
A naive baseline runs beside it: the top three sentences by cosine alone, never declining.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import numpy as np

from bench.eval import scifact

OFF_TOPIC = [
    "Who won the football world cup in 2014?",
    "What is the capital of Australia?",
    "How do I bake sourdough bread at home?",
    "When did the Berlin wall fall?",
    "What is the best way to learn to play the guitar?",
    "Which planet has the most moons?",
    "How tall is the Eiffel Tower?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the exchange rate between the euro and the dollar?",
    "How do I change a flat tyre on a bicycle?",
    "What year did the first person walk on the moon?",
    "Which programming language is best for web development?",
    "What is the plot of the film Casablanca?",
    "How many players are in a rugby union team?",
    "What are the rules of chess castling?",
    "Where is the Louvre museum?",
    "How do I make a good espresso?",
    "Who painted the Mona Lisa?",
    "What is the longest river in South America?",
    "How does a stock market index work?",
    "What is the population of Tokyo?",
    "Which composer wrote the Four Seasons?",
    "How do I train a puppy to sit?",
    "What causes the northern lights?",
    "Who was the first emperor of Rome?",
    "How do airplanes stay in the air?",
    "What is the recipe for a margherita pizza?",
    "Which country hosted the 2016 summer olympics?",
    "How do I write a cover letter for a job?",
    "What language is spoken in Brazil?",
    "How long does it take to drive from Paris to Madrid?",
    "What is the difference between a violin and a viola?",
    "Who invented the telephone?",
    "How do solar panels produce electricity?",
    "What are the lyrics of Yesterday by the Beatles?",
    "When was the printing press invented?",
    "How many stars are on the flag of the United States?",
    "What is the best strategy in the game Monopoly?",
    "Who directed the film Jurassic Park?",
    "How do I knit a scarf?",
    "What is the highest mountain in Africa?",
    "How do volcanoes form on the ocean floor?",
    "What is the tallest building in the world?",
    "How do I set up a home wifi router?",
    "Which team has won the most NBA championships?",
    "What is the meaning of the word serendipity?",
    "How is cheese made from milk?",
    "What are the main causes of the French revolution?",
    "How fast can a cheetah run?",
    "Which novel begins with the words Call me Ishmael?",
]
HELD_OUT_SAMPLE = 100
SHOW_HELD_OUT = 4


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _quotes_rationale(quotes: list[str], rationale: list[str]) -> bool:
    wanted = [_norm(r) for r in rationale]
    for quote in map(_norm, quotes):
        for sentence in wanted:
            if quote and sentence and (quote in sentence or sentence in quote):
                return True
    return False


def _naive(question: str, hits: list[Any]) -> list[tuple[str, str]]:
    """Top three sentences by cosine alone: (source id, sentence)."""
    from notebooks.answer import sentence_spans
    from notebooks.embeddings import embedder

    sentences = [(h.source_id, h.text[a:b]) for h in hits for a, b in sentence_spans(h.text)]
    if not sentences:
        return []
    vectors = embedder().embed([question, *(s for _, s in sentences)])
    scores = vectors[1:] @ vectors[0]
    return [sentences[i] for i in np.argsort(-scores, kind="stable")[:3]]


def run(args: argparse.Namespace) -> str:
    from notebooks.ask import EVIDENCE_PASSAGES, answer_for
    from notebooks.selectors import notebook_search

    notebook = scifact.scifact_notebook(limit=args.limit)
    docs = scifact.doc_ids(notebook)
    in_corpus = set(docs.values())
    claims = [c for c in scifact.evidence() if c["evidence"] and all(e["doc_id"] in in_corpus for e in c["evidence"])]

    cited = quoted = answered = naive_cited = naive_quoted = 0
    best_scores: list[float] = []
    for claim in claims:
        evidence_docs = {e["doc_id"] for e in claim["evidence"]}
        rationale = [s for e in claim["evidence"] for s in e["sentences"]]
        hits = notebook_search(notebook=notebook, query=claim["claim"], k=EVIDENCE_PASSAGES)
        answer = answer_for(notebook=notebook, question=claim["claim"], hits=hits)
        best_scores.append(answer.best_score)
        answered += answer.answered
        cited += any(docs.get(c.source_id) in evidence_docs for c in answer.citations)
        quoted += _quotes_rationale([c.quote for c in answer.citations], rationale)
        naive = _naive(claim["claim"], hits)
        naive_cited += any(docs.get(sid) in evidence_docs for sid, _ in naive)
        naive_quoted += _quotes_rationale([s for _, s in naive], rationale)

    off_answered = 0
    off_scores: list[float] = []
    for question in OFF_TOPIC:
        answer = answer_for(notebook=notebook, question=question)
        off_answered += answer.answered
        off_scores.append(answer.best_score)

    held = claims[:: max(1, len(claims) // HELD_OUT_SAMPLE)][:HELD_OUT_SAMPLE]
    held_answered = 0
    shown: list[str] = []
    for claim in held:
        evidence_docs = {e["doc_id"] for e in claim["evidence"]}
        hits = [
            h
            for h in notebook_search(notebook=notebook, query=claim["claim"], k=EVIDENCE_PASSAGES * 4)
            if docs.get(h.source_id) not in evidence_docs
        ][:EVIDENCE_PASSAGES]
        answer = answer_for(notebook=notebook, question=claim["claim"], hits=hits)
        held_answered += answer.answered
        if answer.answered and len(shown) < SHOW_HELD_OUT:
            shown.append(f"- *{claim['claim']}* → {answer.text[:400]}")

    n, m = len(claims), len(held)
    quantiles = np.percentile(best_scores, [5, 25, 50]).round(3).tolist() if best_scores else []
    lines = [
        f"## Answers on SciFact train ({n} claims with evidence, {len(docs)} abstracts in the notebook)",
        "",
        "| measure | Quire offline answerer | naive top-3 by cosine | target |",
        "| --- | ---: | ---: | ---: |",
        f"| answer cites a passage of an evidence abstract | {cited / n:.3f} | {naive_cited / n:.3f} | ≥ 0.85 |",
        f"| answer quotes a rationale sentence | {quoted / n:.3f} | {naive_quoted / n:.3f} | ≥ 0.65 |",
        f"| claims answered (not declined) | {answered / n:.3f} | 1.000 | |",
        f"| off-topic questions wrongly answered ({len(OFF_TOPIC)}) | {off_answered / len(OFF_TOPIC):.3f} | 1.000 "
        "| ≤ 0.05 |",
        f"| claims answered with their evidence left out ({m}) | {held_answered / m:.3f} | 1.000 | (read them) |",
        "",
        f"Best-sentence score (decline below the threshold): evidence claims 5/25/50th percentile {quantiles}; "
        f"off-topic max {max(off_scores):.3f}, median {float(np.median(off_scores)):.3f}.",
        "",
        "Answers given with the evidence left out (to read):",
        *shown,
    ]
    return "\n".join(lines)
