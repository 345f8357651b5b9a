"""Authentication for the few plain (non-DRF) views, e.g. the async event stream."""

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework.authtoken.models import Token


async def aauthenticate(request: HttpRequest) -> Any:
    """The user from the session or from an `Authorization: Token <key>` header, or None."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Token "):
        token = await Token.objects.select_related("user").filter(key=header.removeprefix("Token ").strip()).afirst()
        return token.user if token is not None and token.user.is_active else None
    user = await request.auser()
    if isinstance(user, AnonymousUser) or not user.is_authenticated:
        return None
    return user
