"""Group retrieved passages into the report's sections and name each from its salient words.

Passages are clustered by cosine similarity of their embeddings (or of TF-IDF vectors of their
words when any embedding is missing): average-linkage agglomeration gives a partition for every
section count the length allows, the one with the best silhouette wins, and a few rounds of
spherical k-means tidy its borders. Everything is deterministic: ties go to the earlier passage.
"""

from __future__ import annotations

import math
import re
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


def name_sections(
    passages: Sequence[Passage],
    groups: Sequence[Sequence[int]],
    *,
    quoted: Sequence[Sequence[int]] | None = None,
) -> list[tuple[str, tuple[str, ...]]]:
    """(title, keywords) per group: the phrase its passages share and the other groups' do not.

    A phrase is a run of one to four words inside one sentence, starting and ending on a content
    word ("colorectal cancer", "risk of hip fracture"), spelt as the passages spell it, so a title
    can be found word for word in its section's passages. Ranked by the share of the group's
    passages holding it, times the share of all passages holding it that are in the group, with
    multi-word phrases ahead of single words; a group of several passages needs a phrase that two
    of them share when there is one. With ``quoted`` (per group, the passages its text cites),
    only a phrase found in one of those names the group. Two groups never get the same title.
    """
    found = [_phrases(p.text) for p in passages]
    spellings: dict[tuple[str, ...], Counter[str]] = {}
    for phrases in found:
        for key, uses in phrases.items():
            spellings.setdefault(key, Counter()).update(uses)
    df: Counter[tuple[str, ...]] = Counter(key for phrases in found for key in phrases)

    def score(key: tuple[str, ...], coverage: int, group: Sequence[int]) -> float:
        uses = sum(len(found[i].get(key, ())) for i in group)
        inner_stops = sum(word in tx.STOPWORDS for word in key)
        return (
            (coverage / len(group))
            * (coverage / df[key])
            * _LENGTH_WEIGHT[min(len(key), 4)]
            * _STOP_PENALTY**inner_stops
            * (1.0 + math.log(uses))
        )

    named: list[tuple[str, tuple[str, ...]]] = []
    used_titles: set[str] = set()
    for number, group in enumerate(groups):
        coverage: Counter[tuple[str, ...]] = Counter(key for index in group for key in found[index])
        if quoted is not None:
            allowed = {key for index in quoted[number] for key in found[index]}
            coverage = Counter({key: c for key, c in coverage.items() if key in allowed})
        shared = 2 if len(group) > 1 and any(c >= 2 for c in coverage.values()) else 1

        def spelt(key: tuple[str, ...], number: int = number) -> Counter[str]:
            # Spelt as a cited passage spells it ("Alzheimer\u2019s" and "Alzheimer's" are one phrase).
            if quoted is None:
                return spellings[key]
            return Counter(w for index in quoted[number] for w in found[index].get(key, ()))

        ranked = sorted(
            (key for key, c in coverage.items() if c >= shared),
            key=lambda key: (-score(key, coverage[key], group), -len(key), key),
        )
        chosen: list[tuple[str, ...]] = []
        for key in ranked:
            # A phrase inside one already chosen (or around it) adds nothing to the names.
            if any(_contains(c, key) or _contains(key, c) for c in chosen):
                continue
            if not chosen and _display(spelt(key)).lower() in used_titles:
                continue
            chosen.append(key)
            if len(chosen) == _NAME_TERMS:
                break
        keywords = tuple(_display(spelt(key)) for key in chosen)
        title = keywords[0] if keywords else "Further material"
        title = title[:1].upper() + title[1:]
        base, n = title, 2
        while title.lower() in used_titles:
            title, n = f"{base} ({n})", n + 1
        used_titles.add(title.lower())
        named.append((title, keywords))
    return named


# Longer phrases say more ("vitamin D deficiency" over "deficiency") when as widely shared;
# a stop word inside ("packed with the green") makes a phrase read less like a name.
_LENGTH_WEIGHT: Final = {1: 0.6, 2: 1.0, 3: 1.1, 4: 1.15}
_STOP_PENALTY: Final = 0.6
_TOKEN: Final = re.compile(r"[^\W_]+(?:[-'\u2019][^\W_]+)*")
_MAX_PHRASE: Final = 4


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    n = len(inner)
    return any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def _display(counts: Counter[str]) -> str:
    """The commonest spelling, preferring one that is not capitalised only by starting a sentence."""
    lower = [(c, w) for w, c in counts.items() if w[:1] == w[:1].lower()]
    return max(lower or [(c, w) for w, c in counts.items()])[1]


def _content(word: str) -> bool:
    """A word a phrase may start or end on: no stop word, no bare number; short only when it is a
    symbol or an abbreviation ("D" in "vitamin D", "C4")."""
    lower = word.lower()
    if lower in tx.STOPWORDS or lower.isdigit():
        return False
    return len(lower) >= 3 or any(c.isupper() or c.isdigit() for c in word)


def _phrases(text: str) -> dict[tuple[str, ...], list[str]]:
    """Each phrase of ``text`` (a key of stemmed, lower-cased words) with its spelling at each use."""
    out: dict[tuple[str, ...], list[str]] = {}
    for span in tx.sentence_spans(text):
        sentence = text[span.start : span.end]
        run: list[re.Match[str]] = []
        for match in _TOKEN.finditer(sentence):
            # A phrase never spans punctuation: "cancer, risk" are two things.
            if run and sentence[run[-1].end() : match.start()].strip():
                run = []
            run.append(match)
            for n in range(1, min(_MAX_PHRASE, len(run)) + 1):
                words = run[-n:]
                if not (_content(words[0].group()) and _content(words[-1].group())):
                    continue
                if n == 1 and len(words[0].group()) < 3:
                    continue  # "D" names nothing on its own
                key = tuple(tx.stem(w.group().lower().replace("\u2019", "'")) for w in words)
                out.setdefault(key, []).append(tx.collapse(sentence[words[0].start() : words[-1].end()]))
    return out
