"""The bottom of the job runtime: what a job kind is, the registry of declared kinds, and the
errors a job raises. Imports nothing of Quire's (see the layers in backend/runtime/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from backend.models import Job

DEFAULT_RETRIES = 3


class JobError(Exception):
    """A failure the user should read. ``retryable=False`` ends the job at once."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """Raised inside a job when its Job row was cancelled; the runtime ends it quietly."""


@dataclass(frozen=True)
class JobKind:
    """A declared kind of job, as the layers below ``@job`` see it: data only. What ``@job``
    returns (runtime/declare.py) adds calling and enqueuing."""

    kind: str
    queue: str
    func: Callable[..., Any]
    path: str
    timeout: int
    retries: int
    retry_intervals: tuple[int, ...] | None
    on_change: Callable[[Job], None] | None = None
    description: str = field(default="")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def intervals(self) -> list[int]:
        if self.retry_intervals is not None:
            return list(self.retry_intervals)
        return list(settings.QUIRE_JOBS["DEFAULT_RETRY_INTERVALS"])


_kinds: dict[str, JobKind] = {}


def register(declared: JobKind) -> None:
    existing = _kinds.get(declared.kind)
    if existing is not None and existing.path != declared.path:
        raise ValueError(f"Job kind {declared.kind!r} is declared twice ({existing.path}, {declared.path})")
    _kinds[declared.kind] = declared


def get_kind(kind: str) -> JobKind | None:
    return _kinds.get(kind)


def all_kinds() -> dict[str, JobKind]:
    return dict(_kinds)


def fault_hook() -> Callable[[str, str, str], None] | None:
    """Where the crash tests strike (settings.QUIRE_FAULT_INJECTION): called with (kind or
    "dispatch", job id, step message) at each step boundary; None in production."""
    path = getattr(settings, "QUIRE_FAULT_INJECTION", None)
    if not path:
        return None
    hook: Callable[[str, str, str], None] = import_string(path)
    return hook
