"""Settings for ``python -m bench.eval``: local settings with the evaluation's own SQLite file.

The database (``var/eval/scifact.sqlite3``, or ``QUIRE_EVAL_DIR``) keeps the ingested corpus
between runs; ``bench.eval.scifact`` rebuilds it when the chunker, the model or the notebooks'
schema changes. The real embedder is used whatever ``QUIRE_EMBEDDER`` says.
"""

from pathlib import Path

from backend.settings.base import DATA_DIR, env
from backend.settings.local import *  # noqa: F403

EVAL_DIR = Path(env.str("QUIRE_EVAL_DIR", default=str(DATA_DIR / "eval")))
EVAL_DIR.mkdir(parents=True, exist_ok=True)
# The embedding cache may be shared by several checkouts (``QUIRE_EVAL_EMBEDDINGS``).
EVAL_EMBEDDINGS = env.str("QUIRE_EVAL_EMBEDDINGS", default=str(EVAL_DIR / "embeddings-minilm.npz"))

DEBUG = False  # Django keeps every SQL query in memory when it is on
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(EVAL_DIR / "scifact.sqlite3"),
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"},
    }
}
QUIRE_EMBEDDER = "minilm-onnx"
MEDIA_ROOT = EVAL_DIR / "media"
