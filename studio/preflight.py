"""Checks run before any server starts, each ending in one CommandError line.

A busy port, an unreachable Redis or database, or a bad setting should stop
`studio up`, `studio web` and `studio worker` before they start children,
with a message that names the value and what to do next.
"""

import errno
import os
import socket
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

# Hosts for which a studio URL means "this machine", so local shortcuts apply.
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def redact_url(url: str) -> str:
    """Return `url` with its password replaced by ***, fit for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    userinfo = f"{parts.username}:***" if parts.username else ":***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_port_free(host: str, port: int, option: str = "--port") -> None:
    """Raise CommandError unless a server could listen on host:port now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve host {host!r}: {exc.strerror}; choose another with --host") from None

    with socket.socket(family, kind, proto) as probe:
        # Daphne and uvicorn set SO_REUSEADDR too, so a port left in TIME_WAIT
        # by an earlier server is free for them; only a live listener blocks.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(f"port {port} on {host} is already in use; choose another with {option}") from None
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def port_accepts(host: str, port: int) -> bool:
    """Return whether a server accepts TCP connections on host:port."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def connect_host(host: str) -> str:
    """Return the address a client on this machine uses to reach a server bound to `host`."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host.strip("[]")


def read_redis_url() -> str:
    """Return REDIS_URL from the environment ("" when unset), rejecting an unsupported scheme."""
    from studio.env import env_url

    try:
        return env_url("REDIS_URL", ("redis", "rediss", "unix"))
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None


def require_redis_url(command: str) -> str:
    """Return REDIS_URL for commands that only work with a shared Redis."""
    url = read_redis_url()
    if not url:
        raise CommandError(
            f"REDIS_URL is not set; `studio {command}` joins a studio through its Redis, "
            "e.g. REDIS_URL=redis://HOST:6379/0 (use `studio up` for a single machine)"
        )
    return url


def check_redis(url: str) -> None:
    """Raise CommandError unless the Redis server at `url` replies to PING."""
    import redis

    client = None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise CommandError(f"cannot reach REDIS_URL={redact_url(url)}: {exc}") from None
    finally:
        if client is not None:
            client.close()


def data_folder():
    """Return STUDIO_HOME as an absolute path, created if missing, or raise CommandError."""
    from studio.env import studio_home

    try:
        return studio_home()
    except OSError as exc:
        raise CommandError(f"cannot create the data folder STUDIO_HOME={os.environ.get('STUDIO_HOME', 'var')}: "
                           f"{exc.strerror}; set STUDIO_HOME to a writable folder") from None


def setup_django() -> None:
    """Load the settings and apps, turning a bad setting into a CommandError."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    # The settings create the data folder on import, so check it first for a clear message.
    data_folder()
    try:
        django.setup()
    except ImproperlyConfigured as exc:
        raise CommandError(f"invalid setting: {exc}") from None
    except ImportError as exc:
        module = os.environ["DJANGO_SETTINGS_MODULE"]
        raise CommandError(f"cannot import the settings module {module!r}: {exc}") from None


def check_database() -> None:
    """Raise CommandError unless the default database accepts a connection."""
    from django.db import DatabaseError, connection

    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"cannot reach {describe_database()}: {reason}") from None


def describe_database() -> str:
    """Name the database for messages: DATABASE_URL without its password, or the SQLite file."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return f"DATABASE_URL={redact_url(url)}"
    from django.conf import settings

    return f"the SQLite database {settings.DATABASES['default']['NAME']}"


def unapplied_migrations() -> list[str]:
    """Return the names of migrations that the database has not applied yet, as app.name."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
