"""Websocket authentication: the browser's session cookie or an API token.

Scripts pass their token as `?token=KEY` or in an `Authorization: Token KEY`
header; a browser is recognised by its session cookie.
"""

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str):
    from rest_framework.authtoken.models import Token

    try:
        return Token.objects.select_related("user").get(key=key).user
    except Token.DoesNotExist:
        return AnonymousUser()


def _token_from_scope(scope) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode())
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, key = value.decode().partition(" ")
            if scheme.lower() == "token" and key:
                return key.strip()
    return None


class _TokenMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        key = _token_from_scope(scope)
        if key:
            scope = dict(scope, user=await _user_for_token(key))
        return await self.inner(scope, receive, send)


def TokenOrSessionAuthMiddleware(inner):
    # The session middleware runs first and sets scope["user"]; a token, when
    # given, replaces that user.
    return AuthMiddlewareStack(_TokenMiddleware(inner))


class BrowserOriginValidator(OriginValidator):
    """Check the Origin of browser connections against ALLOWED_HOSTS; let scripts connect without one.

    Browsers always send Origin on a websocket handshake, and that header is
    what stops another site's page from riding a user's session cookie. A
    script (the CLI, a notebook) sends none and authenticates with its token.
    """

    def __init__(self, application):
        super().__init__(application, settings.ALLOWED_HOSTS)

    async def __call__(self, scope, receive, send):
        has_origin = any(name == b"origin" for name, _ in scope.get("headers", []))
        if not has_origin:
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)
