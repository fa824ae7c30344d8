"""API tokens: exchange a username and password for the key that `Authorization: Token KEY` sends.

A user has at most one token, as rest_framework.authtoken's model allows.
Operators list and revoke tokens in the admin under "Auth Token".
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from studio.api_errors import ErrorResponseSerializer


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text=_("Send it as the header `Authorization: Token <token>`."))
    username = serializers.CharField()


class TokenView(APIView):
    """POST returns the user's token and creates it on first use. DELETE revokes it."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [AllowAny()]
        return [IsAuthenticated()]

    @extend_schema(
        summary="Get an API token",
        description="Exchange a username and password for the user's token, created on first use.",
        request=AuthTokenSerializer,
        responses={
            200: TokenSerializer,
            400: OpenApiResponse(ErrorResponseSerializer, description="Wrong username or password."),
        },
        auth=[],
    )
    def post(self, request):
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        credentials.is_valid(raise_exception=True)
        user = credentials.validated_data["user"]
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key, "username": user.get_username()})

    @extend_schema(
        summary="Revoke the API token",
        description="Delete the user's token. The next POST creates a new one.",
        request=None,
        responses={204: None, 403: ErrorResponseSerializer},
    )
    def delete(self, request):
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
