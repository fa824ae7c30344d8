"""One shape for every API error: a code, a translated message and the field."""

from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(detail, field=None):
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten(value, key if key != "non_field_errors" else field)
    elif isinstance(detail, list):
        for item in detail:
            yield from _flatten(item, field)
    else:
        yield {"field": field, "code": getattr(detail, "code", "invalid"), "message": str(detail)}


def exception_handler(exc, context):
    """Wrap DRF's response as {"errors": [{"field", "code", "message"}]}."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = {"errors": list(_flatten(response.data))}
    return response
