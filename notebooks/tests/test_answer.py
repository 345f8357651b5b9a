"""The offline answerer alone: which sentences it embeds, and what it quotes."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from notebooks import answer
from notebooks.answer import Evidence, answer_offline, quotable_sentences, shortlist, terms


def _passage(n: int, text: str) -> Evidence:
    return Evidence(chunk_id=n, source_id=f"s{n}", source_title=f"Paper {n}", position=0, page=None, text=text)


def _bag_of_words(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """A stand-in embedder: unit vectors of hashed content words, so sharing words is meaning."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in terms(text):
            out[row, sum(map(ord, word)) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


FILLER = [f"Unrelated finding number {i} concerns soil bacteria in a field trial." for i in range(30)]


def test_the_shortlist_keeps_distinct_sentences_with_the_most_question_words_in_retrieval_order() -> None:
    passages = [
        _passage(1, " ".join(FILLER[:10])),
        _passage(2, "Vitamin D supplements lowered cancer deaths in the trial. " + " ".join(FILLER[10:20])),
        # An overlapping neighbour repeats a sentence: it is embedded once, cited where it first appears.
        _passage(3, "Vitamin D supplements lowered cancer deaths in the trial. Vitamin D levels were measured."),
    ]
    candidates = quotable_sentences(passages)
    wanted = terms("Do vitamin D supplements lower cancer deaths?")
    kept = shortlist(candidates, wanted, 4)
    # The two sentences on the question, then the earliest of the sentences sharing no word with it.
    assert [(c.passage, c.text) for c in kept] == [
        (0, FILLER[0]),
        (0, FILLER[1]),
        (1, "Vitamin D supplements lowered cancer deaths in the trial."),
        (2, "Vitamin D levels were measured."),
    ]
    assert len(shortlist(candidates, wanted, 100)) == len({c.text for c in candidates})


def test_an_answer_embeds_at_most_the_shortlist_and_quotes_its_chunk() -> None:
    passages = [_passage(1, " ".join(FILLER)), _passage(2, "Vitamin D supplements lowered cancer deaths in the trial.")]
    seen: list[int] = []

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        seen.append(len(texts))
        return _bag_of_words(texts)

    result = answer_offline("Do vitamin D supplements lower cancer deaths?", passages, embed)
    assert seen == [1 + answer.MAX_EMBEDDED]  # the question and the shortlist, in one call
    assert result.answered
    cited = result.citations[0]
    assert cited.source_id == "s2"
    assert passages[1].text[cited.start : cited.end] == cited.quote
    assert result.text.startswith("Vitamin D supplements lowered cancer deaths in the trial. [1]")


def test_a_question_the_passages_do_not_touch_is_declined() -> None:
    result = answer_offline("Who won the football world cup?", [_passage(1, " ".join(FILLER))], _bag_of_words)
    assert (result.answered, result.text, result.citations) == (False, answer.DECLINE, [])
