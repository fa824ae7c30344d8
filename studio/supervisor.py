"""A small process supervisor: start children, watch them, stop them all together.

Each child runs in its own session, so its process group contains the child and
everything it forks (Celery's pool, MLflow's uvicorn). Ctrl-C in a terminal
then reaches only the supervisor, which stops every group in order: SIGTERM,
a grace period, then SIGKILL for whatever is left.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.core.management.base import CommandError

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
# Set in every child's environment to the tree's working directory (the data
# folder) and so inherited by all they fork: it finds what a killed supervisor
# left behind.
TREE_MARKER = "STUDIO_UP_HOME"


@dataclass
class Child:
    # Short name used in messages: "web", "worker", "mlflow".
    name: str
    argv: list[str]
    # Variables added to the supervisor's environment for this child only.
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def program(self) -> str:
        """Return the program's name: the module of `python -m MODULE`, else the executable."""
        if len(self.argv) > 2 and self.argv[1] == "-m":
            return self.argv[2]
        return Path(self.argv[0]).name


class ChildExited(Exception):
    """A child stopped while the tree was meant to be running."""

    def __init__(self, child: Child):
        self.child = child
        code = child.process.returncode
        if code < 0:
            outcome = f"was killed by signal {signal.Signals(-code).name}"
        else:
            outcome = f"exited with code {code}"
        super().__init__(f"the {child.name} process ({child.program}, pid {child.process.pid}) {outcome}; "
                         "stopped the others")


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child if the supervisor itself is killed."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def kill_leftover_processes(home: str) -> int:
    """SIGKILL the processes that an earlier tree for data folder `home` left running; returns how many.

    When the supervisor is killed with SIGKILL, its children get SIGTERM
    through PR_SET_PDEATHSIG, but what they forked does not, e.g. the Celery
    beat process of a worker that was still starting. The caller holds the data
    folder's lock, so no live tree for `home` owns these processes.
    """
    import psutil

    killed = 0
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(TREE_MARKER) == home:
                process.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed


class ProcessTree:
    def __init__(self, children: list[Child], cwd: str, stop_timeout: float = 15.0):
        self.children = children
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.stop_signal: int | None = None
        self._previous_handlers: dict[int, object] = {}

    def start(self) -> None:
        """Start every child; SIGINT and SIGTERM from now on request a stop."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        for child in self.children:
            try:
                child.process = subprocess.Popen(
                    child.argv, cwd=self.cwd, env={**os.environ, **child.env, TREE_MARKER: self.cwd},
                    start_new_session=True, preexec_fn=preexec,
                )
            except OSError as exc:
                raise CommandError(f"cannot start the {child.name} process ({child.argv[0]}): {exc.strerror}") from None
            logger.info("started %s (pid %s): %s", child.name, child.process.pid, " ".join(child.argv))

    def _request_stop(self, signum, frame) -> None:
        if self.stop_signal is not None:
            # A second Ctrl-C: the user does not want to wait for a graceful stop.
            self._kill_groups(signal.SIGKILL)
            return
        self.stop_signal = signum

    def wait_until(self, predicate, timeout: float) -> bool:
        """Wait until predicate() is true; False on timeout or a stop request, ChildExited if a child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.stop_signal is None:
            self.check_children()
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM arrives; raise ChildExited if a child stops first."""
        while self.stop_signal is None:
            self.check_children()
            time.sleep(0.2)

    def check_children(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise ChildExited(child)

    def stop(self) -> None:
        """Stop every child's process group: SIGTERM, then SIGKILL after the grace period."""
        self._kill_groups(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %s) ignored SIGTERM for %.0f s; killing it",
                               child.name, child.process.pid, self.stop_timeout)
        # A group can outlive its leader (a pool process still exiting, or one
        # the leader never waited for), so SIGKILL whatever is left in it.
        self._kill_groups(signal.SIGKILL)
        for child in self.children:
            if child.process is not None:
                child.process.wait()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)

    def _kill_groups(self, signum: int) -> None:
        for child in self.children:
            if child.process is None:
                continue
            try:
                os.killpg(child.process.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
