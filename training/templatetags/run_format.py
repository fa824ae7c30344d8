"""Template filters for run pages: short numbers and durations."""

import math

from django import template

register = template.Library()


@register.filter
def sig4(value) -> str:
    """Format a number to 4 significant digits; other values pass through unchanged."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


@register.filter
def clock(seconds) -> str:
    """Format seconds as H:MM:SS, or M:SS under an hour; empty for None."""
    if seconds is None:
        return ""
    total = int(round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


@register.filter
def config_value(value) -> str:
    """Show a config value as typed: lists as "16, 32", booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)
