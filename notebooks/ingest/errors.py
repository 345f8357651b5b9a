"""Typed ingestion failures: a machine-readable code beside a message a user can read.

Messages never carry a file system path, a traceback or an exception's own text (which may
contain either): the service that catches an ``IngestError`` can show ``code`` and ``message``
to the user as they are.
"""

from __future__ import annotations

from typing import ClassVar


class IngestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class _Coded(IngestError):
    CODE: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(self.CODE, message)


class UnsupportedType(_Coded):
    CODE = "UNSUPPORTED_TYPE"


class TypeMismatch(_Coded):
    CODE = "TYPE_MISMATCH"


class EmptyFile(_Coded):
    CODE = "EMPTY_FILE"

    def __init__(self, message: str = "The file is empty.") -> None:
        super().__init__(message)


class NoText(_Coded):
    """A valid file with no extractable text (a scanned PDF without a text layer, say)."""

    CODE = "NO_TEXT"


class ExtractionFailed(_Coded):
    CODE = "EXTRACTION_FAILED"


class EncryptedPdf(_Coded):
    CODE = "ENCRYPTED_PDF"


class TooLarge(_Coded):
    """Too many pages, or a compressed file that would expand past its limits (a zip bomb)."""

    CODE = "TOO_LARGE"


class EmbedderUnavailable(_Coded):
    CODE = "EMBEDDER_UNAVAILABLE"


class NoAudio(_Coded):
    """A recording container with no sound track (a silent video): nothing to transcribe."""

    CODE = "NO_AUDIO"


class TooLong(_Coded):
    """A recording longer than QUIRE_MEDIA_MAX_SECONDS, by its header or by what decodes."""

    CODE = "TOO_LONG"
