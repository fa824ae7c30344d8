"""The interface through which the training loop reports what it does."""

import time
from typing import Protocol


class Reporter(Protocol):
    """Receives the loop's metrics, progress and log lines.

    `report` and `log` are called from the training loop and must return at
    once: an implementation that writes to a database or a network queues the
    work for another thread. `stop_requested` is polled every step.
    """

    def start(self, info: dict) -> None: ...

    def report(self, step: int, epoch: int, metrics: dict[str, float], reported_at: float) -> None: ...

    def progress(self, epoch: int, step: int) -> None: ...

    def log(self, message: str) -> None: ...

    def stop_requested(self) -> bool: ...

    def flush(self) -> None:
        """Block until everything reported so far is stored.

        The loop calls this before it writes a checkpoint, so a run resumed
        from that checkpoint never lacks the points of the steps before it.
        """


class NullReporter:
    """A Reporter that keeps the metrics in memory, for the CLI, tests and the bench."""

    def __init__(self):
        self.points: list[tuple[int, int, str, float]] = []
        self.lines: list[str] = []
        self.info: dict = {}

    def start(self, info: dict) -> None:
        self.info = info

    def report(self, step: int, epoch: int, metrics: dict[str, float], reported_at: float) -> None:
        for key, value in metrics.items():
            self.points.append((step, epoch, key, value))

    def progress(self, epoch: int, step: int) -> None:
        pass

    def log(self, message: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {message}")

    def stop_requested(self) -> bool:
        return False

    def flush(self) -> None:
        pass
