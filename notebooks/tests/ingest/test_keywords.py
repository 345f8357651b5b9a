"""The BM25 index kept by difference scores exactly as one built from the same texts."""

import numpy as np

from notebooks.ingest.keywords import KeywordIndex, Vocabulary, parse_query

TEXTS = [
    "Volcanic ash cools the northern hemisphere for a year.",
    "Glaciers melt faster where ash darkens the ice.",
    "Coral reefs bleach when the sea warms.",
    "Ash from the eruption closed airports across Europe.",
    "Sediment carried by the river builds the delta.",
    "The delta's wetlands store carbon in sediment.",
    "Ice cores record past eruptions as layers of ash.",
]


def test_an_index_extended_piece_by_piece_and_compacted_scores_as_a_rebuilt_one() -> None:
    vocabulary = Vocabulary()
    counts = [vocabulary.counts(t) for t in TEXTS]
    index = KeywordIndex(vocabulary)
    for i in range(len(TEXTS)):
        index = index.extended(counts[i : i + 1])  # one source at a time: segments merge as they grow
    assert index.size == len(TEXTS) and len(index.segments) < len(TEXTS)
    alive = np.array([True, False, True, True, False, True, True])
    kept = [t for t, keep in zip(TEXTS, alive, strict=True) if keep]
    rebuilt = KeywordIndex.of_texts(kept)
    for q in ("ash", "ice ash eruption", "sediment delta", "coral"):
        terms = parse_query(q).terms
        masked = index.scores(terms, alive)
        assert np.all(masked[~alive] == 0)
        np.testing.assert_allclose(masked[alive], rebuilt.scores(terms), rtol=1e-6)
        np.testing.assert_allclose(index.compacted(alive).scores(terms), rebuilt.scores(terms), rtol=1e-6)
