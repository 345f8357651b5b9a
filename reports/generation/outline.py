"""Group retrieved passages into the report's sections and name each from its salient words.

Passages are clustered by cosine similarity of their embeddings (or of TF-IDF vectors of their
words when any embedding is missing): average-linkage agglomeration gives a partition for every
section count the length allows, the one with the best silhouette wins, and a few rounds of
spherical k-means tidy its borders. Everything is deterministic: ties go to the earlier passage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from reports.generation import text as tx
from reports.generation.types import Length, Passage

MAX_SECTIONS: Final[dict[str, int]] = {"short": 3, "medium": 4, "long": 6}
MIN_SECTIONS: Final = 2
# A larger count must beat a smaller one's silhouette by this much: fewer, broader sections win ties.
_SILHOUETTE_MARGIN: Final = 0.01
_KMEANS_ROUNDS: Final = 10
_NAME_TERMS: Final = 3


@dataclass(frozen=True)
class OutlineSection:
    title: str
    keywords: tuple[str, ...]  # display forms, most salient first
    passages: tuple[int, ...]  # indices into the passages given, in reading order


def reading_order(passages: Sequence[Passage]) -> list[tuple[int, int, int]]:
    """A sort key per passage: sources in order of first appearance, then chunk position."""
    rank: dict[str, int] = {}
    for p in passages:
        rank.setdefault(p.source_id, len(rank))
    return [(rank[p.source_id], p.position, i) for i, p in enumerate(passages)]


def build_outline(passages: Sequence[Passage], *, length: Length) -> list[OutlineSection]:
    if not passages:
        return []
    labels = cluster(passages, max_sections=MAX_SECTIONS[length])
    order = reading_order(passages)
    groups: dict[int, list[int]] = {}
    for index in sorted(range(len(passages)), key=lambda i: order[i]):
        groups.setdefault(int(labels[index]), []).append(index)
    # dict order is the order of each group's first passage in reading order.
    members = list(groups.values())
    names = name_sections(passages, members)
    return [
        OutlineSection(title=title, keywords=keywords, passages=tuple(group))
        for group, (title, keywords) in zip(members, names, strict=True)
    ]


def cluster(passages: Sequence[Passage], *, max_sections: int) -> list[int]:
    """A section label per passage, 0-based."""
    n = len(passages)
    k_max = min(max_sections, n // 2)
    if k_max < MIN_SECTIONS:
        return [0] * n
    vectors = passage_vectors(passages)
    sim = np.clip(vectors @ vectors.T, -1.0, 1.0)
    partitions = _agglomerate(sim, k_min=MIN_SECTIONS, k_max=k_max)
    best_k, best_score = MIN_SECTIONS, -2.0
    for k in sorted(partitions):
        score = _silhouette(sim, partitions[k])
        if score > best_score + (_SILHOUETTE_MARGIN if k > MIN_SECTIONS else 0.0):
            best_k, best_score = k, score
    return _refine(vectors, partitions[best_k], best_k)


def passage_vectors(passages: Sequence[Passage]) -> tx.Matrix:
    """Unit rows whose dot products are 0.5 x embedding cosine + 0.5 x TF-IDF cosine.

    The words keep a weak embedder (the hashing test double, where "the" and "of" dominate) from
    mixing topics, and the embedding joins passages that say the same thing in other words.
    Without an embedding for every passage, the words alone decide.
    """
    documents = [tx.terms(p.text) for p in passages]
    tfidf = tx.TfIdf(documents)
    df = Counter(t for doc in documents for t in set(doc))
    # Words shared by at least two passages carry the grouping; a lone word only adds noise.
    vocabulary = sorted(t for t, c in df.items() if c >= 2) or sorted(df)
    lexical = tfidf.matrix(documents, vocabulary)
    embeddings = [p.embedding for p in passages]
    shapes = {None if e is None else e.shape for e in embeddings}
    if len(shapes) != 1 or None in shapes or any(e is not None and e.ndim != 1 for e in embeddings):
        return lexical
    semantic = tx.normalise(np.stack([np.asarray(e, dtype=np.float64) for e in embeddings]))
    return np.hstack([semantic, lexical]) * np.sqrt(0.5)


def _agglomerate(sim: tx.Matrix, *, k_min: int, k_max: int) -> dict[int, list[int]]:
    """Average-linkage partitions of every size from k_max down to k_min, labels 0..k-1."""
    n = sim.shape[0]
    sums = sim.astype(np.float64, copy=True)
    sizes = np.ones(n, dtype=np.float64)
    active = np.ones(n, dtype=bool)
    labels = np.arange(n)
    partitions: dict[int, list[int]] = {}
    if n <= k_max:
        partitions[n] = _compact(labels)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    for k in range(n - 1, k_min - 1, -1):
        average = sums / np.outer(sizes, sizes)
        allowed = upper & np.outer(active, active)
        average = np.where(allowed, average, -np.inf)
        i, j = divmod(int(np.argmax(average)), n)  # the first maximum: lowest indices win ties
        sums[i, :] += sums[j, :]
        sums[:, i] += sums[:, j]
        sizes[i] += sizes[j]
        active[j] = False
        labels[labels == j] = i
        if k <= k_max:
            partitions[k] = _compact(labels)
    return partitions


def _compact(labels: npt.NDArray[np.int64]) -> list[int]:
    seen: dict[int, int] = {}
    return [seen.setdefault(int(label), len(seen)) for label in labels]


def _silhouette(sim: tx.Matrix, labels: list[int]) -> float:
    distance = 1.0 - sim
    label_array = np.asarray(labels)
    k = int(label_array.max()) + 1
    total = 0.0
    for i in range(len(labels)):
        own = label_array == label_array[i]
        if own.sum() <= 1:
            continue  # a singleton's silhouette is 0 by convention
        a = float(distance[i, own].sum() / (own.sum() - 1))
        b = min(float(distance[i, label_array == c].mean()) for c in range(k) if c != label_array[i])
        total += (b - a) / max(a, b, 1e-12)
    return total / len(labels)


def _refine(vectors: tx.Matrix, labels: list[int], k: int) -> list[int]:
    current = np.asarray(labels)
    for _ in range(_KMEANS_ROUNDS):
        centroids = tx.normalise(np.stack([vectors[current == c].mean(axis=0) for c in range(k)]))
        proposed = np.argmax(vectors @ centroids.T, axis=1)
        if len(set(proposed.tolist())) < k or np.array_equal(proposed, current):
            break
        current = proposed
    return _compact(current)


def name_sections(passages: Sequence[Passage], groups: Sequence[Sequence[int]]) -> list[tuple[str, tuple[str, ...]]]:
    """(title, keywords) per group: the terms frequent across the group and rare in the others."""
    grams: list[list[str]] = []
    spellings: dict[str, Counter[str]] = {}
    for p in passages:
        found = _grams(p.text)
        grams.append([gram for gram, _ in found])
        for gram, spelling in found:
            spellings.setdefault(gram, Counter())[spelling] += 1
    totals: Counter[str] = Counter()
    for gram_list in grams:
        totals.update(gram_list)

    named: list[tuple[str, tuple[str, ...]]] = []
    used_titles: set[str] = set()
    for group in groups:
        counts: Counter[str] = Counter()
        coverage: Counter[str] = Counter()
        for index in group:
            counts.update(grams[index])
            coverage.update(set(grams[index]))
        scored = []
        for gram, count in counts.items():
            bigram = " " in gram
            if bigram and count < 2:
                continue
            score = (coverage[gram] / len(group)) * (count / totals[gram]) * (1.0 + math.log(count))
            scored.append((-(score * (1.5 if bigram else 1.0)), -count, gram))
        chosen: list[str] = []
        for _, _, gram in sorted(scored):
            parts = gram.split(" ")
            if len(parts) == 2:
                # A pair supersedes the single words it contains, not another pair it overlaps.
                if any(" " in c and set(c.split(" ")) & set(parts) for c in chosen):
                    continue
                contained = [c for c in chosen if c in parts]
                if contained:
                    chosen = [gram if c == contained[0] else c for c in chosen if c not in contained[1:]]
                    continue
            elif any(gram in c.split(" ") for c in chosen):
                continue
            chosen.append(gram)
            if len(chosen) == _NAME_TERMS:
                break
        keywords = tuple(_spelling(spellings[gram]) for gram in chosen)
        title = tx.join_names(list(keywords)) or "Further material"
        title = title[:1].upper() + title[1:]
        base, n = title, 2
        while title in used_titles:
            title, n = f"{base} ({n})", n + 1
        used_titles.add(title)
        named.append((title, keywords))
    return named


def _spelling(counts: Counter[str]) -> str:
    """The commonest spelling, lower-case when the term is ever written so (not a name)."""
    lower = [(c, w) for w, c in counts.items() if w == w.lower()]
    return max(lower or [(c, w) for w, c in counts.items()])[1]


def _grams(text: str) -> list[tuple[str, str]]:
    """(term, spelling) for content words and for pairs of them that stand next to each other."""
    out: list[tuple[str, str]] = []
    previous: tuple[str, str] | None = None
    for word in tx.words(text):
        plain = word.replace("\u2019", "'")
        if plain.lower().endswith("'s"):
            plain = plain[:-2]
        lower = plain.lower()
        if len(lower) < 3 or lower in tx.STOPWORDS:
            previous = None
            continue
        term = tx.stem(lower)
        out.append((term, plain))
        if previous is not None and previous[0] != term:
            out.append((f"{previous[0]} {term}", f"{previous[1]} {plain}"))
        previous = (term, plain)
    return out
