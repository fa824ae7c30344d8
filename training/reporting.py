"""RunReporter: takes the engine's reports without blocking the training loop.

The loop only puts items on a queue. A background thread drains the queue
every FLUSH_SECONDS and, for each batch, (1) writes the points to the
database, which numbers them with `seq`, (2) pushes the stored points to the
run's channel group, and every MLFLOW_SECONDS (3) logs them to MLflow. It
also beats the run's heartbeat and notices an operator's cancel.
"""

import asyncio
import logging
import queue
import threading
import time

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from training import events
from training.models import Metric, Run, RunStatus

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.02
MLFLOW_SECONDS = 5.0
CANCEL_CHECK_SECONDS = 0.5


class RunReporter:
    def __init__(self, run: Run, tracker=None):
        self.run_id = run.pk
        self.project_id = run.project_id
        self.tracker = tracker
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        self._cancelled = threading.Event()
        self._progress = (run.epoch, run.step)
        self._written_progress = None
        self._next_seq = (Metric.objects.filter(run_id=run.pk).order_by("-seq").values_list("seq", flat=True)
                          .first() or 0) + 1
        # Points already stored by an earlier attempt of this run; a resumed
        # attempt recomputes them and must not store them twice.
        self._stored: set[tuple[str, int]] = set()
        self._unsaved: list[Metric] = []
        self._mlflow_pending: list[tuple[str, float, int, float]] = []
        self._last_mlflow = time.monotonic()
        self._last_cancel_check = 0.0
        self._last_state_push = 0.0
        self._channel_layer = get_channel_layer()
        self._loop = None
        self._thread = threading.Thread(target=self._run, name=f"reporter-run-{run.pk}", daemon=True)

    # Called from the training loop: each returns at once.

    def start(self, info: dict) -> None:
        self._queue.put(("start", info))

    def report(self, step: int, epoch: int, metrics: dict[str, float], reported_at: float) -> None:
        self._queue.put(("points", step, epoch, metrics, reported_at))

    def progress(self, epoch: int, step: int) -> None:
        self._progress = (epoch, step)

    def log(self, message: str) -> None:
        self._queue.put(("log", f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"))

    def stop_requested(self) -> bool:
        return self._cancelled.is_set()

    # Lifecycle, called by the runner.

    def open(self, resume_after_step: int = -1) -> "RunReporter":
        if resume_after_step >= 0:
            self._stored = set(Metric.objects.filter(run_id=self.run_id).values_list("key", "step"))
        self._thread.start()
        return self

    def close(self) -> None:
        """Flush everything reported so far and stop the thread."""
        self._closing.set()
        self._thread.join()

    # The background thread.

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            while True:
                closing = self._closing.is_set()
                items = self._drain(timeout=FLUSH_SECONDS)
                self._flush(items)
                self._maybe_check_cancel()
                if time.monotonic() - self._last_mlflow >= MLFLOW_SECONDS:
                    self._flush_mlflow()
                if closing and self._queue.empty() and not self._unsaved:
                    break
                if closing and self._unsaved:
                    time.sleep(0.5)
            self._flush_mlflow()
        finally:
            self._loop.close()
            connection.close()

    def _drain(self, timeout: float) -> list:
        items = []
        try:
            items.append(self._queue.get(timeout=timeout))
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _flush(self, items: list) -> None:
        log_text = ""
        start_info = None
        for item in items:
            if item[0] == "points":
                self._add_points(*item[1:])
            elif item[0] == "log":
                log_text += item[1]
            elif item[0] == "start":
                start_info = item[1]
        progress = self._progress
        if not self._unsaved and not log_text and start_info is None and progress == self._written_progress:
            return

        fields = {"heartbeat_at": timezone.now(), "epoch": progress[0], "step": progress[1]}
        if self._unsaved:
            fields["last_seq"] = self._unsaved[-1].seq
        if log_text:
            fields["log"] = Concat("log", Value(log_text))
        if start_info is not None:
            fields.update(device=start_info["device"], total_steps=start_info["total_steps"],
                          total_epochs=start_info["total_epochs"])
        try:
            close_old_connections()
            with transaction.atomic():
                Metric.objects.bulk_create(self._unsaved)
                Run.objects.filter(pk=self.run_id).update(**fields)
        except Exception:
            # The points stay in _unsaved and are written with the next batch.
            logger.exception("run %s: writing %d metric points failed; will retry", self.run_id, len(self._unsaved))
            return
        saved, self._unsaved = self._unsaved, []
        self._written_progress = progress
        self._push(saved, force_state=start_info is not None)

    def _add_points(self, step: int, epoch: int, metrics: dict, reported_at: float) -> None:
        for key, raw in metrics.items():
            if (key, step) in self._stored:
                continue
            value, nonfinite = Metric.split_value(float(raw))
            self._unsaved.append(Metric(run_id=self.run_id, seq=self._next_seq, key=key, step=step, epoch=epoch,
                                        value=value, nonfinite=nonfinite, reported_at=reported_at))
            self._next_seq += 1
            self._mlflow_pending.append((key, float(raw), step, reported_at))
            if nonfinite:
                Run.objects.filter(pk=self.run_id).update(diverged=True)

    def _push(self, saved: list[Metric], force_state: bool) -> None:
        messages = []
        if saved:
            points = [events.metric_point(m.seq, m.key, m.step, m.epoch, m.value, m.nonfinite, m.reported_at)
                      for m in saved]
            messages.append((events.run_group(self.run_id), events.metrics_message(points)))
        now = time.monotonic()
        if force_state or now - self._last_state_push >= 1.0:
            self._last_state_push = now
            run = Run.objects.get(pk=self.run_id)
            state = events.state_message(run)
            messages.append((events.run_group(self.run_id), state))
            messages.append((events.project_runs_group(self.project_id), state))
        try:
            self._loop.run_until_complete(self._send_all(messages))
        except Exception:
            # The database has the points; a client catches up on reconnect.
            logger.exception("run %s: pushing to the channel layer failed", self.run_id)

    async def _send_all(self, messages):
        for group, message in messages:
            await self._channel_layer.group_send(group, message)

    def _maybe_check_cancel(self) -> None:
        now = time.monotonic()
        if now - self._last_cancel_check < CANCEL_CHECK_SECONDS:
            return
        self._last_cancel_check = now
        try:
            status = Run.objects.filter(pk=self.run_id).values_list("status", flat=True).first()
        except Exception:
            logger.exception("run %s: reading the status failed", self.run_id)
            return
        if status != RunStatus.RUNNING:
            self._cancelled.set()
        elif self._written_progress == self._progress:
            # Nothing new to write: beat the heartbeat on its own.
            last = Run.objects.filter(pk=self.run_id).values_list("heartbeat_at", flat=True).first()
            if last is None or (timezone.now() - last).total_seconds() >= settings.HEARTBEAT_SECONDS:
                Run.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())

    def _flush_mlflow(self) -> None:
        self._last_mlflow = time.monotonic()
        if not self.tracker or not self._mlflow_pending:
            return
        pending, self._mlflow_pending = self._mlflow_pending, []
        try:
            self.tracker.log_points(pending)
        except Exception:
            logger.exception("run %s: logging %d points to MLflow failed", self.run_id, len(pending))
