"""One shape for every API error: {"errors": [{"field", "code", "message"}]}.

`field` is null for errors about the whole request (not found, forbidden,
a conflict), the field name for a serializer field, and a dotted path for a
nested one ("config.lr"). Messages are translated in the request's language.
"""

from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """The request is valid but the resource's current state forbids it (HTTP 409)."""

    status_code = 409
    default_detail = _("The request conflicts with the current state of the resource.")
    default_code = "conflict"


class ErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_null=True,
        help_text=_("The invalid field, as a dotted path when nested. Null when the error concerns the whole request."),
    )
    code = serializers.CharField(help_text=_("A stable machine-readable code, e.g. invalid, required, not_found."))
    message = serializers.CharField(help_text=_("A translated sentence for people."))


class ErrorResponseSerializer(serializers.Serializer):
    """The body of every 4xx response of the API."""

    errors = ErrorSerializer(many=True)


def _join(parent: str | None, key) -> str | None:
    if key == api_settings.NON_FIELD_ERRORS_KEY:
        return parent
    if isinstance(key, int) and parent:
        # Errors of a list of nested objects may come keyed by index: name them as the engines do, items[0].
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _flatten(detail, field=None):
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten(value, _join(field, key))
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            # A list of dicts contains the errors of a list of nested objects, so index them.
            child = f"{field}[{index}]" if isinstance(item, dict) and field else field
            yield from _flatten(item, child)
    else:
        yield {"field": field, "code": getattr(detail, "code", "invalid"), "message": str(detail)}


def exception_handler(exc, context):
    """Return DRF's error response reshaped as {"errors": [{"field", "code", "message"}]}."""
    if isinstance(exc, Http404):
        # Django's Http404 text names the model in English ("No Run matches the
        # given query."), so the API returns DRF's translated "Not found." instead.
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    data = response.data
    if not isinstance(exc, exceptions.ValidationError) and isinstance(data, dict) and set(data) == {"detail"}:
        # Not found, forbidden, not authenticated and the like concern the whole request.
        data = data["detail"]
    response.data = {"errors": list(_flatten(data))}
    return response
