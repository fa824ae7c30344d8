"""`studio up`, `studio web`, `studio worker` and `studio init`: start the studio's servers.

`studio up` runs the whole studio on one machine as one supervised process
tree: an embedded Redis unless REDIS_URL is set, Daphne, one Celery worker
with the reaper's beat schedule, and the MLflow UI. `studio web` and
`studio worker` each start one server of a scale-out deployment, joined
through a shared REDIS_URL and DATABASE_URL. `studio init` prepares the
database as `studio up` does, for deployments that start servers one by one.
"""

import fcntl
import os
import re
import signal
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from django.core.management.base import CommandError

from studio import preflight, servers
from studio.supervisor import Child, ProcessTree, kill_leftover_processes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Seconds to wait for Daphne to accept connections before giving up.
WEB_START_TIMEOUT = 120
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    # None means port + 1.
    mlflow_port: int | None = None
    mlflow: bool = True
    concurrency: int = 1


def data_folder() -> Path:
    """Resolve STUDIO_HOME to an absolute folder and export it, so children agree on it."""
    home = preflight.data_folder()
    os.environ["STUDIO_HOME"] = str(home)
    return home


def child_environment() -> dict[str, str]:
    """Variables every child gets, so it imports this checkout from any working directory."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), path])),
        "PYTHONUNBUFFERED": "1",
    }


def browser_url(host: str, port: int) -> str:
    host = preflight.connect_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def lock_data_folder(home: Path, stack: ExitStack) -> None:
    """Hold an exclusive lock on the data folder until the stack closes."""
    lock_file = open(home / "studio-up.lock", "w")
    stack.callback(lock_file.close)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CommandError(f"another `studio up` is already running with STUDIO_HOME={home}; stop it first") from None


def start_redis(home: Path, stack: ExitStack) -> str:
    """Check REDIS_URL, or start the embedded Redis and export its URL for the children."""
    url = preflight.read_redis_url()
    if url:
        preflight.check_redis(url)
        return url

    from studio.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis(home)
    url = embedded.start()
    stack.callback(embedded.stop)
    os.environ["REDIS_URL"] = url
    return url


def prepare_database() -> bool:
    """Connect, migrate, collect static files, and create the first admin and the demo project.

    Returns whether the first admin was created, its password printed.
    """
    from studio import bootstrap

    preflight.check_database()
    applied = bootstrap.migrate()
    if applied:
        print(f"Applied {applied} database migrations.", flush=True)
    bootstrap.collect_static()

    admin, password = bootstrap.ensure_admin()
    if password:
        print(f"Created the superuser {admin.username!r} with password: {password}", flush=True)
        print("  This password is shown only once; change it in the admin under Users.", flush=True)
    if admin is not None:
        bootstrap.ensure_demo_project(admin)

    from django.db import connections

    connections.close_all()
    return password is not None


def build_children(options: UpOptions, home: Path) -> tuple[list[Child], str]:
    """Return the children to start and the MLflow UI address run pages link to ("" for none)."""
    from django.conf import settings

    shared = child_environment()
    tracking_uri = settings.MLFLOW_TRACKING_URI
    mlflow_ui = os.environ.get("MLFLOW_UI_URL", "")
    mlflow = []
    if options.mlflow and tracking_uri.startswith(("http://", "https://")):
        # A remote tracking server has its own UI: link to it instead of serving one.
        mlflow_ui = mlflow_ui or tracking_uri
    elif options.mlflow:
        # MLflow's UI has no login, so it listens on loopback whatever --host is.
        argv = servers.mlflow_argv(tracking_uri, "127.0.0.1", options.mlflow_port, home / "mlartifacts")
        mlflow.append(Child("mlflow", argv, {**shared, **servers.MLFLOW_ENV}))
        mlflow_ui = mlflow_ui or mlflow_ui_url(options)

    web_env = {**shared, "MLFLOW_UI_URL": mlflow_ui} if mlflow_ui else shared
    web = Child("web", servers.daphne_argv(options.host, options.port), web_env)
    worker_argv = servers.worker_argv(["cpu"], options.concurrency, beat=True,
                                      schedule_file=home / "celerybeat-schedule")
    worker = Child("worker", worker_argv, shared)
    return [web, worker, *mlflow], mlflow_ui


def mlflow_ui_url(options: UpOptions) -> str:
    host = options.host if options.host in preflight.LOOPBACK_HOSTS else "127.0.0.1"
    return browser_url(host, options.mlflow_port)


def print_banner(options: UpOptions, admin_created: bool, mlflow_ui: str) -> None:
    from studio.bootstrap import ADMIN_USERNAME

    url = browser_url(options.host, options.port)
    lines = [f"DeepSeek Studio is running at {url}/"]
    if options.host in ("0.0.0.0", "::", "[::]"):
        lines.append(f"  It listens on every interface ({options.host}), port {options.port}; add the names other "
                     "machines use for it to ALLOWED_HOSTS.")
    if admin_created:
        lines.append(f"  Log in at {url}/accounts/login/ as {ADMIN_USERNAME!r} with the password printed above.")
    else:
        lines.append(f"  Log in at {url}/accounts/login/ (reset a password with: studio manage changepassword USERNAME).")
    lines.append(f"  API docs: {url}/api/v1/docs/ (get an API token with: studio token USERNAME)")
    if mlflow_ui:
        lines.append(f"  MLflow UI: {mlflow_ui} (its first start takes about 15 seconds)")
    lines.append("  Train a first model with: studio demo")
    lines.append("  Stop with Ctrl-C.")
    print("\n".join(lines), flush=True)


def run_up(options: UpOptions) -> int:
    """Run the whole studio until SIGINT or SIGTERM; returns the exit code."""
    # Until the children start, SIGTERM interrupts like Ctrl-C, so the embedded
    # Redis and the data folder's lock are released on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    if options.mlflow_port is None:
        if options.mlflow and options.port == 65535:
            raise CommandError("--port 65535 leaves no port for the MLflow UI; choose one with --mlflow-port")
        options.mlflow_port = options.port + 1
    preflight.check_port_free(options.host, options.port, "--port")
    if options.mlflow:
        preflight.check_port_free("127.0.0.1", options.mlflow_port, "--mlflow-port")
    home = data_folder()

    with ExitStack() as stack:
        lock_data_folder(home, stack)
        leftovers = kill_leftover_processes(str(home))
        if leftovers:
            noun = "process" if leftovers == 1 else "processes"
            print(f"Stopped {leftovers} {noun} that an earlier, killed `studio up` left running.", flush=True)
        start_redis(home, stack)
        preflight.setup_django()
        admin_created = prepare_database()

        children, mlflow_ui = build_children(options, home)
        tree = ProcessTree(children, cwd=str(home))
        stack.callback(tree.stop)
        tree.start()
        if tree.wait_until(lambda: preflight.port_accepts(options.host, options.port), WEB_START_TIMEOUT):
            print_banner(options, admin_created, mlflow_ui)
        elif tree.stop_signal is None:
            raise CommandError(f"the web server did not accept connections on port {options.port} "
                               f"within {WEB_START_TIMEOUT} s; see its log above")
        tree.wait()
        print("Stopping the studio...", flush=True)
    return 0


def run_init() -> int:
    data_folder()
    preflight.setup_django()
    prepare_database()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def check_ready_database() -> None:
    preflight.check_database()
    pending = preflight.unapplied_migrations()
    if pending:
        raise CommandError(f"the database has {len(pending)} unapplied migrations (first: {pending[0]}); "
                           "run `studio migrate` first")


def exec_server(argv: list[str], cwd: Path) -> None:
    """Replace this process with a server, so that signals reach it directly (as PID 1 in a container)."""
    from django.db import connections

    connections.close_all()
    os.chdir(cwd)
    os.environ.update(child_environment())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def run_web(host: str, port: int) -> int:
    preflight.check_port_free(host, port, "--port")
    preflight.check_redis(preflight.require_redis_url("web"))
    home = data_folder()
    preflight.setup_django()
    check_ready_database()

    from studio import bootstrap

    bootstrap.collect_static()
    print(f"Serving the studio at {browser_url(host, port)}/", flush=True)
    exec_server(servers.daphne_argv(host, port), home)
    return 0


def parse_queues(raw: str) -> list[str]:
    queues = [name.strip() for name in raw.split(",") if name.strip()]
    if not queues:
        raise CommandError("--queues is empty; give a comma-separated list such as cpu,gpu")
    for name in queues:
        if not QUEUE_NAME.match(name):
            raise CommandError(f"--queues: invalid queue name {name!r}; use letters, digits, '_', '.' or '-'")
    return queues


def run_worker(queues: list[str], concurrency: int, beat: bool) -> int:
    preflight.check_redis(preflight.require_redis_url("worker"))
    home = data_folder()
    preflight.setup_django()
    check_ready_database()
    exec_server(servers.worker_argv(queues, concurrency, beat, home / "celerybeat-schedule"), home)
    return 0
