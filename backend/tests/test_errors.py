"""The one exception handler: a domain error's kind decides its HTTP status, nothing else."""

from __future__ import annotations

import pytest

from backend import errors
from backend.runtime.state import BatchStillRunning, QuotaExceeded


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.DomainError("no"), 400),
        (errors.NotFound("gone"), 404),
        (errors.Conflict("busy", code="NOT_READY"), 409),
        (BatchStillRunning("still running"), 409),  # a kind's subclass gets the kind's status
        (errors.TooLarge("big"), 413),
        (errors.Unsupported("odd type"), 415),
        (QuotaExceeded("too many", retry_after=7), 429),
        (errors.Unavailable("no engine", code="SPEECH_UNAVAILABLE"), 503),
    ],
)
def test_each_kind_of_domain_error_has_its_status_and_body(error: errors.DomainError, status: int) -> None:
    response = errors.exception_handler(error, {})
    assert response is not None and response.status_code == status
    assert response.data == {"error": {"code": error.code, "message": str(error), "details": error.details}}
    assert ("Retry-After" in response) == isinstance(error, errors.Overloaded)


def test_an_overloaded_caller_is_told_when_to_come_back() -> None:
    response = errors.exception_handler(QuotaExceeded("too many", retry_after=7), {})
    assert response is not None and response["Retry-After"] == "7"
    assert response.data["error"]["details"] == {"retry_after": 7}
