"""The embedding model this process uses: ``settings.QUIRE_EMBEDDER`` through the pure library's
per-process cache (``notebooks.ingest.embedding``).

It sits below everything that embeds (services, selectors, search, ask), so each imports it at
the top. Callers import the module and call ``embeddings.embedder()``, not the bare function:
a test or the evaluation swaps the model for this process by setting that one attribute.
"""

from __future__ import annotations

from django.conf import settings

from notebooks.ingest.embedding import Embedder, get_embedder


def embedder() -> Embedder:
    return get_embedder(settings.QUIRE_EMBEDDER)
