import os

import numpy as np
import pytest

from notebooks.ingest import minilm
from notebooks.ingest.embedding import Embedder, HashingEmbedder, OnnxMiniLMEmbedder, get_embedder, preload_embedder


@pytest.fixture(scope="module")
def minilm_embedder() -> Embedder:
    return get_embedder("minilm-onnx")


def _assert_unit_rows(vectors: np.ndarray, n: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_it_embeds_to_normalised_float32_rows(minilm_embedder: Embedder) -> None:
    texts = ["A sentence about cats.", "", "x " * 1000, "Ünïcödé and emoji 🙂 text."]
    vectors = minilm_embedder.embed(texts)
    _assert_unit_rows(vectors, len(texts))
    assert (minilm_embedder.name, minilm_embedder.dim) == ("minilm-onnx", 384)


def test_it_puts_a_paraphrase_closer_than_an_unrelated_sentence(minilm_embedder: Embedder) -> None:
    anchor, paraphrase, unrelated = minilm_embedder.embed(
        [
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Interest rates rose sharply in the third quarter.",
        ]
    )
    assert float(anchor @ paraphrase) > 0.5
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.3


def test_it_ranks_the_relevant_passage_first(minilm_embedder: Embedder) -> None:
    passages = [
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "The French Revolution began in 1789 with the storming of the Bastille.",
        "Neural networks are trained with gradient descent and backpropagation.",
    ]
    query, *rows = minilm_embedder.embed(["How do plants make sugar from sunlight?", *passages])
    assert int(np.argmax(np.stack(rows) @ query)) == 0


def test_it_returns_the_same_vector_whatever_the_batch(minilm_embedder: Embedder) -> None:
    text = "Rivers carry sediment to the ocean."
    alone = minilm_embedder.embed([text])[0]
    # Batched with longer texts, the row is padded; mean pooling over the mask must ignore that.
    batched = minilm_embedder.embed(["word " * 200, text, "short"])[1]
    np.testing.assert_allclose(alone, batched, atol=1e-4)


def test_it_embeds_nothing_to_an_empty_matrix(minilm_embedder: Embedder) -> None:
    assert minilm_embedder.embed([]).shape == (0, 384)


def test_it_truncates_inputs_to_the_model_window() -> None:
    embedder = OnnxMiniLMEmbedder(intra_op_threads=1)
    long = "alpha beta gamma delta. " * 200
    tokens = minilm.load_tokenizer().encode(long).ids
    assert len(tokens) > 256
    # Text past the window changes nothing: only the first 256 tokens are seen.
    np.testing.assert_allclose(embedder.embed([long]), embedder.embed([long + " completely different tail"]), atol=1e-6)


def test_it_loads_each_embedder_once_per_process() -> None:
    assert get_embedder("minilm-onnx") is get_embedder("minilm-onnx")
    assert get_embedder("hashing") is get_embedder("hashing")


def test_it_rejects_an_unknown_embedder_name() -> None:
    with pytest.raises(ValueError, match="minilm-onnx"):
        get_embedder("word2vec")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_it_embeds_in_a_forked_child_after_preloading() -> None:
    """In a child forked after the session was made, batches run side by side from several
    calling threads (the session's own pool is gone); the rows must come back in order."""
    parent = preload_embedder("minilm-onnx")
    texts = [f"Sentence {i} about {'volcanoes' if i % 2 else 'photosynthesis'} and more. " * (1 + i % 5)
             for i in range(40)]  # fmt: skip
    expected = parent.embed(texts)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, b"1" if np.allclose(parent.embed(texts), expected, atol=1e-5) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)


def test_it_hashes_deterministically_and_normalised() -> None:
    embedder = HashingEmbedder()
    texts = ["the cat sat", "the cat sat", "completely other words", ""]
    vectors = embedder.embed(texts)
    _assert_unit_rows(vectors, len(texts))
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert float(vectors[0] @ embedder.embed(["the cat sat down"])[0]) > float(vectors[0] @ vectors[2])


def test_it_reports_sentence_transformers_missing_or_embeds_with_it() -> None:
    from notebooks.ingest.errors import EmbedderUnavailable

    try:
        embedder = get_embedder("sentence-transformers")
    except EmbedderUnavailable as error:
        assert error.code == "EMBEDDER_UNAVAILABLE"
        return
    _assert_unit_rows(embedder.embed(["one", "two"]), 2)
