"""Errors are translated in one place: services raise DomainError subclasses, this handler
turns them (and DRF's own exceptions) into {"error": {"code", "message", "details"}}."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A request the domain refuses: bad input (400). Subclasses name other kinds of refusal;
    which HTTP status each kind gets is decided here, in STATUS, not where it is raised."""

    code = "INVALID"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code


class NotFound(DomainError):
    """Something the request names does not exist (or is not the caller's to see)."""

    code = "NOT_FOUND"


class Conflict(DomainError):
    """The thing exists but its state forbids the request now (not ready, already finished)."""

    code = "CONFLICT"


class TooLarge(DomainError):
    code = "TOO_LARGE"


class Unsupported(DomainError):
    """Content of a kind the server does not take (a file type it cannot read)."""

    code = "UNSUPPORTED_TYPE"


class Overloaded(DomainError):
    """Too much asked or waiting for this caller: try again later (``retry_after`` seconds)."""

    code = "OVERLOADED"
    retry_after: int | None = None


class Unavailable(DomainError):
    """Something the server needs is missing or down (a storage, an installed engine)."""

    code = "UNAVAILABLE"


STATUS: dict[type[DomainError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    TooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    Unsupported: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    Overloaded: status.HTTP_429_TOO_MANY_REQUESTS,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error: that of the nearest kind it is, else 400."""
    return next((STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS), status.HTTP_400_BAD_REQUEST)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=status_of(exc))
        if isinstance(exc, Overloaded) and exc.retry_after:
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    handled = drf_exception_handler(exc, context)
    if handled is None:
        return None
    response = handled
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("VALIDATION_ERROR", "The request is not valid.", response.data)
    elif isinstance(exc, exceptions.APIException):
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        code = str(exc.get_codes()) if not isinstance(exc.get_codes(), (dict, list)) else exc.default_code
        body = error_body(code.upper(), str(detail))
    else:
        body = error_body("ERROR", "The request failed.", response.data)
    response.data = body
    return response
