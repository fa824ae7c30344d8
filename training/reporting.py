"""RunReporter: takes the engine's reports without blocking the training loop.

The loop only puts items on a queue. A background thread writes them in
batches, at most one batch every FLUSH_INTERVAL_SECONDS. Each batch is (1)
inserted into the database, which is the source of truth and numbers the
points with `seq`, then (2) pushed to the run's channel group. Stored points
are (3) logged to MLflow every MLFLOW_SECONDS, or handed every
MLFLOW_CHILD_SECONDS to a child process that logs them. The same thread
beats the run's heartbeat and notices an operator's cancel.

The thread shares the training process's GIL, and each of its Python
instructions delays the training loop by about as long (bench/overhead.py
measures the total). So a batch costs one INSERT, one UPDATE and one
group_send whatever its size, points stay plain tuples, and MLflow logging
moves to a child process once a run reports many points.
"""

import asyncio
import functools
import logging
import queue
import threading
import time

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.db.models.functions import Concat
from django.utils import timezone

from training import events, hooks
from training.models import Metric, Run, RunStatus

logger = logging.getLogger(__name__)

# A batch is written when a report arrives at least FLUSH_INTERVAL_SECONDS
# after the previous write, or when its oldest point has waited
# FLUSH_WAIT_SECONDS. A batch costs about the same CPU whatever its size
# (about 1.3 ms with a websocket client watching, measured with
# bench/stream.py on a 2-core machine), so the interval bounds that cost. A
# run that reports every 20 ms has every other point written at once and
# none waiting over 20 ms.
FLUSH_INTERVAL_SECONDS = 0.03
FLUSH_WAIT_SECONDS = 0.04
# The run's state (progress, ETA) goes to its page and project at most this often.
STATE_PUSH_SECONDS = 1.0
MLFLOW_SECONDS = 5.0
# A run that gathers this many MLflow points within MLFLOW_SECONDS gets a
# child process to log them (training.mlflow_writer). Below it, logging in
# this thread costs less than starting the child (about 2 s of CPU).
MLFLOW_CHILD_MIN_POINTS = 1000
# With a child, the thread hands points over this often, so that close() only
# waits for the child to log the last second's points.
MLFLOW_CHILD_SECONDS = 1.0
# How long points wait for a starting MLflow child before this thread logs them itself.
MLFLOW_CHILD_START_SECONDS = 60
# How long close() waits for the MLflow child to log what it was given.
MLFLOW_CHILD_CLOSE_SECONDS = 600
CANCEL_CHECK_SECONDS = 0.5
# How long flush() waits for the database before the loop goes on without it.
FLUSH_TIMEOUT_SECONDS = 120
# Pause between attempts after a database write failed.
RETRY_SECONDS = 0.5

# Columns of one stored point, in the order of the rows that _add_points builds.
_POINT_COLUMNS = ("run", "seq", "key", "step", "epoch", "value", "nonfinite", "reported_at")
_CLOSE = ("close",)


@functools.cache
def _insert_points_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Metric._meta.get_field(name).column) for name in _POINT_COLUMNS)
    placeholders = ", ".join(["%s"] * len(_POINT_COLUMNS))
    return f"INSERT INTO {quote(Metric._meta.db_table)} ({columns}) VALUES ({placeholders})"


@functools.cache
def _update_progress_sql(vendor: str, with_last_seq: bool) -> str:
    quote = connection.ops.quote_name
    names = ["heartbeat_at", "epoch", "step"] + (["last_seq"] if with_last_seq else [])
    assignments = ", ".join(f"{quote(Run._meta.get_field(name).column)} = %s" for name in names)
    return f"UPDATE {quote(Run._meta.db_table)} SET {assignments} WHERE {quote(Run._meta.pk.column)} = %s"


class RunReporter:
    def __init__(self, run: Run, tracker=None):
        self.run_id = run.pk
        self.project_id = run.project_id
        self._extra_groups = hooks.extra_state_groups(run)
        self.tracker = tracker
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        self._cancelled = threading.Event()
        # Set by flush() and close(), whose callers wait: the next batch is written at once.
        self._urgent = threading.Event()

        self._progress = (run.epoch, run.step)
        self._written_progress = None
        self._next_seq = (Metric.objects.filter(run_id=run.pk).order_by("-seq").values_list("seq", flat=True)
                          .first() or 0) + 1
        # Points already stored by an earlier attempt of this run; a resumed
        # attempt recomputes them and must not store them twice.
        self._stored: set[tuple[str, int]] = set()
        # What the next write stores: rows in _POINT_COLUMNS order, already
        # numbered, and the run fields that change rarely.
        self._unsaved: list[tuple] = []
        self._unsaved_diverged = False
        self._unsaved_log = ""
        self._unsaved_start: dict | None = None
        # Events of flush() calls, set once everything before them is stored.
        self._flush_waiters: list[threading.Event] = []
        self._mlflow_pending: list[tuple[str, float, int, float]] = []
        self._mlflow_child = None

        # Monotonic times of the thread's periodic work.
        self._last_flush = 0.0
        self._last_mlflow = time.monotonic()
        self._last_cancel_check = 0.0
        self._last_heartbeat = 0.0
        self._last_state_push = 0.0
        self._failures = 0

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

    def flush(self) -> None:
        """Block until every point reported so far is stored (see Reporter.flush)."""
        stored = threading.Event()
        self._queue.put(("flush", stored))
        self._urgent.set()
        if not stored.wait(timeout=FLUSH_TIMEOUT_SECONDS):
            logger.warning("run %s: points not stored after %s s; checkpointing anyway",
                           self.run_id, FLUSH_TIMEOUT_SECONDS)

    # Lifecycle, called by the runner.

    def open(self, resume_after_step: int = -1) -> "RunReporter":
        if resume_after_step >= 0:
            self._stored = set(Metric.objects.filter(run_id=self.run_id).values_list("key", "step"))
        self._thread.start()
        return self

    def close(self) -> None:
        """Store, push and log everything reported so far, then stop the thread."""
        self._closing.set()
        self._queue.put(_CLOSE)
        self._urgent.set()
        self._thread.join()

    # The background thread.

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            while True:
                items = self._collect()
                self._flush(items)
                self._maybe_check_cancel()
                if self._mlflow_due():
                    self._flush_mlflow()
                if self._closing.is_set() and self._queue.empty() and not self._has_unsaved():
                    break
                if self._failures:
                    time.sleep(RETRY_SECONDS)
            self._flush_mlflow(final=True)
            self._close_mlflow_child()
        finally:
            self._loop.close()
            connection.close()

    def _collect(self) -> list:
        """Wait for reports and return them once a batch is due (see FLUSH_INTERVAL_SECONDS)."""
        items = []
        try:
            # Wake up now and then without reports, to notice a cancel and beat the heartbeat.
            items.append(self._queue.get(timeout=CANCEL_CHECK_SECONDS))
        except queue.Empty:
            return items
        deadline = time.monotonic() + FLUSH_WAIT_SECONDS
        too_soon = self._last_flush + FLUSH_INTERVAL_SECONDS - time.monotonic()
        if too_soon > 0 and not self._urgent.is_set():
            # Sleep rather than wake up at each report: a fast loop reports
            # every few milliseconds, and each wake-up takes CPU from it.
            self._urgent.wait(too_soon)
            if self._queue.empty() and not self._urgent.is_set():
                # A sparse reporter: the next report or the deadline starts the batch.
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    pass
        if not self._closing.is_set():
            # Cleared before draining, so a flush() queued from now on sets it again.
            self._urgent.clear()
        try:
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _has_unsaved(self) -> bool:
        return bool(self._unsaved or self._unsaved_log or self._unsaved_start is not None
                    or self._progress != self._written_progress)

    def _flush(self, items: list) -> None:
        for item in items:
            if item[0] == "points":
                self._add_points(*item[1:])
            elif item[0] == "log":
                self._unsaved_log += item[1]
            elif item[0] == "start":
                self._unsaved_start = item[1]
            elif item[0] == "flush":
                self._flush_waiters.append(item[1])
        if not self._has_unsaved():
            self._release_flush_waiters()
            return

        progress = self._progress
        start_info = self._unsaved_start
        self._last_flush = time.monotonic()
        if not self._write(progress):
            # Everything stays unsaved and goes with the next attempt.
            return
        saved, self._unsaved = self._unsaved, []
        self._unsaved_diverged = False
        self._unsaved_log = ""
        self._unsaved_start = None
        self._written_progress = progress
        self._last_heartbeat = self._last_flush
        self._release_flush_waiters()
        # MlflowTracker drops NaN and infinity, so those points live in the database only.
        self._mlflow_pending.extend((row[2], row[5], row[3], row[7]) for row in saved if row[5] is not None)
        self._push(saved, force_state=start_info is not None)

    def _release_flush_waiters(self) -> None:
        for waiter in self._flush_waiters:
            waiter.set()
        self._flush_waiters = []

    def _write(self, progress: tuple[int, int]) -> bool:
        """Store the unsaved points and the run's progress in one transaction; False when it failed."""
        heartbeat = Run._meta.get_field("heartbeat_at").get_db_prep_value(timezone.now(), connection)
        progress_values = [heartbeat, progress[0], progress[1]]
        if self._unsaved:
            progress_values.append(self._unsaved[-1][1])
        progress_values.append(self.run_id)

        rare_fields = {}
        if self._unsaved_diverged:
            rare_fields["diverged"] = True
        if self._unsaved_log:
            rare_fields["log"] = Concat("log", Value(self._unsaved_log))
        if self._unsaved_start is not None:
            info = self._unsaved_start
            rare_fields.update(device=info["device"], total_steps=info["total_steps"],
                               total_epochs=info["total_epochs"])

        try:
            # Plain SQL for what every batch writes: the ORM would cost about
            # as much per batch as the rest of the flush together.
            with transaction.atomic(), connection.cursor() as cursor:
                if self._unsaved:
                    cursor.executemany(_insert_points_sql(connection.vendor), self._unsaved)
                cursor.execute(_update_progress_sql(connection.vendor, bool(self._unsaved)), progress_values)
                if rare_fields:
                    Run.objects.filter(pk=self.run_id).update(**rare_fields)
        except IntegrityError:
            self._failures += 1
            logger.warning("run %s: %d metric points clash with stored ones (attempt %d); renumbering them",
                           self.run_id, len(self._unsaved), self._failures, exc_info=True)
            self._drop_stored_and_renumber()
            return False
        except Exception:
            self._failures += 1
            logger.exception("run %s: writing %d metric points failed (attempt %d); will retry",
                             self.run_id, len(self._unsaved), self._failures)
            # A broken connection is replaced on the next attempt.
            connection.close()
            return False
        self._failures = 0
        return True

    def _drop_stored_and_renumber(self) -> None:
        """Drop unsaved points whose (key, step) is stored and number the rest after the highest stored seq.

        A clash means another writer stored points of this run meanwhile: an
        earlier attempt whose worker was taken for dead but still runs, or a
        reporter opened without resume on a run that has points.
        """
        if not self._unsaved:
            return
        steps = [row[3] for row in self._unsaved]
        stored = set(Metric.objects.filter(run_id=self.run_id, step__gte=min(steps), step__lte=max(steps))
                     .values_list("key", "step"))
        last_seq = Metric.objects.filter(run_id=self.run_id).order_by("-seq").values_list("seq", flat=True).first()
        kept = [row for row in self._unsaved if (row[2], row[3]) not in stored]
        first_seq = (last_seq or 0) + 1
        self._unsaved = [(row[0], first_seq + index, *row[2:]) for index, row in enumerate(kept)]
        self._next_seq = first_seq + len(kept)

    def _add_points(self, step: int, epoch: int, metrics: dict, reported_at: float) -> None:
        for key, raw in metrics.items():
            if (key, step) in self._stored:
                continue
            value, nonfinite = Metric.split_value(float(raw))
            if nonfinite:
                self._unsaved_diverged = True
            self._unsaved.append((self.run_id, self._next_seq, key, step, epoch, value, nonfinite, reported_at))
            self._next_seq += 1

    def _push(self, saved: list[tuple], force_state: bool) -> None:
        messages = []
        if saved:
            points = [events.metric_point(*row[1:]) for row in saved]
            messages.append((events.run_group(self.run_id), events.metrics_message(points)))
        now = time.monotonic()
        if force_state or now - self._last_state_push >= STATE_PUSH_SECONDS:
            self._last_state_push = now
            # The log grows all run long and the state message does not carry it.
            state = events.state_message(Run.objects.defer("log").get(pk=self.run_id))
            messages.append((events.run_group(self.run_id), state))
            messages.append((events.project_runs_group(self.project_id), state))
            messages.extend((group, state) for group in self._extra_groups)
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
            if status != RunStatus.RUNNING:
                self._cancelled.set()
            elif now - self._last_heartbeat >= settings.HEARTBEAT_SECONDS:
                # No batch was written lately (a long validation, say): beat on its own.
                Run.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
                self._last_heartbeat = now
        except Exception:
            logger.exception("run %s: checking for a cancel failed", self.run_id)
            connection.close()

    # MLflow, last: it gets points only after they are stored and pushed.

    def _mlflow_due(self) -> bool:
        elapsed = time.monotonic() - self._last_mlflow
        if self._mlflow_child:
            return elapsed >= MLFLOW_CHILD_SECONDS
        many = self._mlflow_child is None and len(self._mlflow_pending) >= MLFLOW_CHILD_MIN_POINTS
        return elapsed >= MLFLOW_SECONDS or many

    def _flush_mlflow(self, final: bool = False) -> None:
        """Hand the pending points to the MLflow child, or log them from this thread.

        While the child is starting, points wait for it. On the final flush a
        child that is not ready yet is stopped, and this thread logs
        everything, because a short run should not wait for MLflow to import.
        """
        self._last_mlflow = time.monotonic()
        if not self.tracker or not self._mlflow_pending:
            return
        if self._mlflow_child is None and len(self._mlflow_pending) >= MLFLOW_CHILD_MIN_POINTS and not final:
            self._start_mlflow_child()
        child = self._mlflow_child
        if child:
            if child.ready():
                self._hand_to_mlflow_child()
                return
            if not final and child.alive() and child.seconds_since_start() < MLFLOW_CHILD_START_SECONDS:
                return
            if not final:
                logger.error("run %s: the MLflow writer process did not start within %.0f s; logging from this "
                             "thread instead", self.run_id, MLFLOW_CHILD_START_SECONDS)
            child.kill()
            self._mlflow_child = False

        pending, self._mlflow_pending = self._mlflow_pending, []
        try:
            self.tracker.log_points(pending)
        except Exception:
            logger.exception("run %s: logging %d points to MLflow failed", self.run_id, len(pending))

    def _start_mlflow_child(self) -> None:
        from training.engine.tracking import MlflowTracker
        from training.mlflow_writer import MlflowWriterProcess

        if not isinstance(self.tracker, MlflowTracker) or not self.tracker.run_id:
            self._mlflow_child = False
            return
        try:
            self._mlflow_child = MlflowWriterProcess(self.tracker.client.tracking_uri, self.tracker.run_id)
        except OSError:
            logger.exception("run %s: starting the MLflow writer process failed; logging from this thread",
                             self.run_id)
            self._mlflow_child = False

    def _hand_to_mlflow_child(self) -> None:
        pending, self._mlflow_pending = self._mlflow_pending, []
        try:
            self._mlflow_child.log_points(pending)
        except BrokenPipeError:
            # Points the child had not logged yet are lost to MLflow; the database keeps them.
            logger.error("run %s: the MLflow writer process died; logging from this thread again", self.run_id)
            self._close_mlflow_child()
            self._mlflow_child = False
            self._mlflow_pending = pending + self._mlflow_pending

    def _close_mlflow_child(self) -> None:
        if self._mlflow_child:
            code = self._mlflow_child.close(timeout=MLFLOW_CHILD_CLOSE_SECONDS)
            if code != 0:
                logger.error("run %s: the MLflow writer process exited with %s", self.run_id, code)
