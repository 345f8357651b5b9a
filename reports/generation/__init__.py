"""Report generation from retrieved passages: pure functions over plain values, no Django, no DB.

    generator = get_generator(llm_base_url=..., llm_model=..., llm_api_key=..., timeout=60)
    draft = generator.generate(passages, ReportOptions(length="medium", topic="volcanoes"), progress)

The extractive generator is the default and needs nothing external; the LLM generator is used
when both an endpoint and a model are configured.
"""

from __future__ import annotations

import functools
from typing import Any

from notebooks import llm
from reports.generation.extractive import ExtractiveGenerator
from reports.generation.llm_generator import LLMGenerator
from reports.generation.types import (
    Citation,
    GenerationError,
    Generator,
    Passage,
    ProgressFn,
    ReportDraft,
    ReportOptions,
)

__all__ = [
    "Citation",
    "ExtractiveGenerator",
    "GenerationError",
    "Generator",
    "LLMGenerator",
    "Passage",
    "ProgressFn",
    "ReportDraft",
    "ReportOptions",
    "get_generator",
    "get_generator_for",
]


def get_generator(
    *,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    timeout: float = 60.0,
    max_tokens: int = 1200,
) -> Generator:
    """The LLM generator when an endpoint and a model are both set, else the extractive one."""
    if llm_base_url and llm_base_url.strip() and llm_model and llm_model.strip():
        chat = functools.partial(
            llm.chat,
            base_url=llm_base_url.strip(),
            model=llm_model.strip(),
            api_key=llm_api_key or None,
            timeout=timeout,
            max_tokens=max_tokens,
        )
        return LLMGenerator(chat, model=llm_model.strip())
    return ExtractiveGenerator()


def get_generator_for(settings: Any) -> Generator:
    """``get_generator`` configured from a settings-like object (``LLM_BASE_URL``, ``LLM_MODEL``,
    ``LLM_API_KEY``, optional ``LLM_TIMEOUT`` and ``LLM_MAX_TOKENS``), e.g. django.conf.settings."""
    return get_generator(
        llm_base_url=getattr(settings, "LLM_BASE_URL", None),
        llm_model=getattr(settings, "LLM_MODEL", None),
        llm_api_key=getattr(settings, "LLM_API_KEY", None),
        timeout=float(getattr(settings, "LLM_TIMEOUT", 60.0) or 60.0),
        max_tokens=int(getattr(settings, "LLM_MAX_TOKENS", 1200) or 1200),
    )
