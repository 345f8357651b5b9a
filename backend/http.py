"""Serving stored files with HTTP Range support, so an audio player can seek."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework.negotiation import DefaultContentNegotiation

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
BLOCK = 64 * 1024


def _read(name: str, start: int, length: int) -> Iterator[bytes]:
    with default_storage.open(name, "rb") as handle:
        handle.seek(start)
        while length > 0:
            data = handle.read(min(BLOCK, length))
            if not data:
                return
            length -= len(data)
            yield data


def ranged_file_response(
    request: HttpRequest, name: str, content_type: str, filename: str
) -> HttpResponse | StreamingHttpResponse:
    """200 with the whole file, 206 with one requested byte range, or 416 when it is outside."""
    size = default_storage.size(name)
    header = request.headers.get("Range", "").strip()
    match = RANGE.match(header) if header else None
    start, end = 0, size - 1
    status = 200
    response: HttpResponse | StreamingHttpResponse
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        else:  # a suffix: the last N bytes
            start, end = max(size - int(match.group(2)), 0), size - 1
        if start >= size or start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    length = end - start + 1
    response = StreamingHttpResponse(_read(name, start, length), status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


class IgnoreFormatParameter(DefaultContentNegotiation):
    """For download views whose `?format=` picks a file format (mp3, wav, md, html), not one of
    DRF's renderers: without this DRF answers 404 for a format it has no renderer for."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type
