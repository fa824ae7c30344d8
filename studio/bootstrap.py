"""First-start work for `studio up`: migrations, static files, the first admin and the demo project.

Each step is safe to repeat on every start. Django must be set up first.
"""

import logging
import secrets

from django.core.management import call_command
from django.core.management.base import CommandError

from studio.preflight import unapplied_migrations

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"


def migrate() -> int:
    """Apply pending migrations; returns how many were applied."""
    pending = unapplied_migrations()
    if not pending:
        return 0
    try:
        call_command("migrate", interactive=False, verbosity=0)
    except CommandError:
        raise
    except Exception as exc:
        raise CommandError(f"migrations failed ({len(pending)} pending, first {pending[0]}): {exc}") from None
    return len(pending)


def collect_static() -> None:
    """Copy static files into STATIC_ROOT, where WhiteNoise serves them from."""
    call_command("collectstatic", interactive=False, verbosity=0)


def ensure_admin() -> tuple[object, str | None]:
    """Return the superuser the studio starts with, creating "admin" when the database has no user.

    The second item is the new admin's random password, or None when no user
    was created; it is shown once and never stored in clear.
    """
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    if not users.exists():
        password = secrets.token_urlsafe(12)
        admin = users.create_superuser(ADMIN_USERNAME, "", password)
        logger.info("created the first superuser %r", ADMIN_USERNAME)
        return admin, password
    admin = users.filter(username=ADMIN_USERNAME, is_superuser=True).first()
    return admin or users.filter(is_superuser=True).order_by("pk").first(), None


def ensure_demo_project(user):
    """Create the "demo" project with `user` as its team's owner, unless it exists; returns it."""
    from projects.services import ensure_demo_project

    return ensure_demo_project(user)


def api_token(username: str) -> str:
    """Return the API token of `username`, creating it on first use."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    try:
        user = get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"user {username!r} not found; create it with `studio createsuperuser`") from None
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
