"""RunReporter against the real database and the in-memory channel layer.

The database is transactional because the reporter writes from its own
thread, which only sees committed rows. The channel layer is an in-memory
layer that, for every metrics message, also records which of its points were
already stored at the moment of the send.
"""

import math
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.db.backends.utils import CursorWrapper
from django.db.utils import OperationalError
from django.utils import timezone

from tests.conftest import wait_until
from training import reporting
from training.models import Metric, Run, RunStatus
from training.reporting import RunReporter
from training.services import cancel_run


def _stored_seqs(run_id: int, seqs: list[int]) -> set[int]:
    return set(Metric.objects.filter(run_id=run_id, seq__in=seqs).values_list("seq", flat=True))


class RecordingLayer(InMemoryChannelLayer):
    """An in-memory layer that notes, per metrics message sent, which of its points the database held then."""

    sends: list[dict] = []

    async def group_send(self, group, message):
        if message["type"] == "run.metrics":
            run_id = int(group.removeprefix("run-"))
            seqs = [point["seq"] for point in message["points"]]
            stored = await sync_to_async(_stored_seqs, thread_sensitive=False)(run_id, seqs)
            RecordingLayer.sends.append({"group": group, "seqs": seqs, "stored": stored, "message": message})
        await super().group_send(group, message)


@pytest.fixture
def recording_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_reporting.RecordingLayer"}}
    channel_layers.backends.clear()
    RecordingLayer.sends = []
    yield RecordingLayer
    channel_layers.backends.clear()


@pytest.fixture
def running_run(transactional_db, project, digits_dataset, owner):
    return Run.objects.create(project=project, dataset=digits_dataset, created_by=owner, name="reported",
                              config={"epochs": 2}, status=RunStatus.RUNNING, started_at=timezone.now(),
                              attempt=1, total_epochs=2)


@pytest.fixture
def open_reporter():
    """Open RunReporters for a test and close any still open at its end, so no thread outlives its database."""
    opened = []

    def open_reporter(run: Run, tracker=None, resume_after_step: int = -1) -> RunReporter:
        reporter = RunReporter(run, tracker=tracker).open(resume_after_step)
        opened.append(reporter)
        return reporter

    yield open_reporter
    for reporter in opened:
        if reporter._thread.is_alive():
            reporter.close()


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(reporting, "RETRY_SECONDS", 0.05)


def report_steps(reporter: RunReporter, steps: range, epoch: int = 1) -> None:
    """Report train/loss and lr at each step, as the training loop does."""
    for step in steps:
        reporter.report(step, epoch, {"train/loss": 1.0 / step, "lr": 0.01}, time.time())
        reporter.progress(epoch, step)


def stored_points(run: Run) -> list[tuple]:
    return list(Metric.objects.filter(run=run).order_by("seq").values_list("seq", "key", "step", "value",
                                                                         "nonfinite"))


class FakeTracker:
    """Records what the reporter logs to MLflow and how much of it the database held at that moment."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.points: list[tuple] = []
        self.unstored_when_logged = 0

    def log_points(self, points):
        stored = Metric.objects.filter(run_id=self.run_id).count()
        self.unstored_when_logged += max(0, len(self.points) + len(points) - stored)
        self.points.extend(points)


def test_points_stored_with_consecutive_seq(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    report_steps(reporter, range(1, 51))
    reporter.close()

    points = stored_points(running_run)
    assert [seq for seq, *_ in points] == list(range(1, 101))
    assert [(key, step) for _, key, step, _, _ in points[:4]] == [
        ("train/loss", 1), ("lr", 1), ("train/loss", 2), ("lr", 2)]
    assert points[-1][3] == pytest.approx(0.01)
    running_run.refresh_from_db()
    assert running_run.last_seq == 100
    assert (running_run.epoch, running_run.step) == (1, 50)
    assert running_run.heartbeat_at is not None


def test_points_pushed_after_storing(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    for chunk in range(5):
        report_steps(reporter, range(chunk * 10 + 1, chunk * 10 + 11))
        time.sleep(0.05)
    reporter.close()

    sends = recording_layer.sends
    assert sends, "no metrics message was pushed"
    pushed = [seq for send in sends for seq in send["seqs"]]
    assert pushed == list(range(1, 101))
    for send in sends:
        assert send["group"] == f"run-{running_run.pk}"
        assert send["stored"] == set(send["seqs"])
    first = sends[0]["message"]["points"][0]
    assert first["key"] == "train/loss"
    assert first["step"] == 1
    assert first["value"] == 1.0


def test_pushed_points_reach_group_member(recording_layer, open_reporter, running_run):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"run-{running_run.pk}", channel)
    reporter = open_reporter(running_run)
    report_steps(reporter, range(1, 4))
    reporter.close()

    received = []
    while len(received) < 6:
        message = async_to_sync(layer.receive)(channel)
        if message["type"] == "run.metrics":
            received.extend(point["seq"] for point in message["points"])
    assert received == [1, 2, 3, 4, 5, 6]


def test_nonfinite_values_stored_as_null(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    reporter.report(1, 1, {"train/loss": 0.5}, time.time())
    reporter.report(2, 1, {"train/loss": math.nan, "grad/norm": math.inf, "margin": -math.inf}, time.time())
    reporter.close()

    assert stored_points(running_run) == [
        (1, "train/loss", 1, 0.5, ""),
        (2, "train/loss", 2, None, "nan"),
        (3, "grad/norm", 2, None, "inf"),
        (4, "margin", 2, None, "-inf"),
    ]
    running_run.refresh_from_db()
    assert running_run.diverged is True
    pushed = [point for send in recording_layer.sends for point in send["message"]["points"]]
    assert [(point["value"], point["nonfinite"]) for point in pushed] == [
        (0.5, ""), (None, "nan"), (None, "inf"), (None, "-inf")]


def test_finite_values_leave_run_not_diverged(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    report_steps(reporter, range(1, 4))
    reporter.close()

    running_run.refresh_from_db()
    assert running_run.diverged is False


def test_cancel_noticed_within_a_second(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    report_steps(reporter, range(1, 3))
    # The first batch is written, and the status read once, before the cancel.
    wait_until(lambda: Metric.objects.filter(run=running_run).count() == 4, 2.0, "the first batch", interval=0.02)
    assert reporter.stop_requested() is False

    assert cancel_run(running_run) is True
    cancelled_at = time.monotonic()
    step = 3
    while not reporter.stop_requested() and time.monotonic() - cancelled_at < 3:
        report_steps(reporter, range(step, step + 1))
        step += 1
        time.sleep(0.01)
    noticed_after = time.monotonic() - cancelled_at
    reporter.close()

    assert reporter.stop_requested() is True
    assert noticed_after < 1.0
    running_run.refresh_from_db()
    assert running_run.status == RunStatus.CANCELLED
    assert running_run.step == step - 1


def test_cancel_noticed_without_reports(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    # The thread reads the status as soon as it starts; the cancel comes after that.
    time.sleep(0.1)
    assert reporter.stop_requested() is False
    cancel_run(running_run)

    wait_until(reporter.stop_requested, 1.0, "the reporter to notice the cancel", interval=0.05)
    reporter.close()


def test_resume_skips_points_already_stored(recording_layer, open_reporter, running_run, caplog):
    first = open_reporter(running_run)
    report_steps(first, range(1, 6))
    first.close()

    # The second attempt resumes from a checkpoint at step 3 and recomputes steps 4 and 5.
    Run.objects.filter(pk=running_run.pk).update(attempt=2)
    running_run.refresh_from_db()
    second = open_reporter(running_run, resume_after_step=3)
    report_steps(second, range(4, 9))
    second.close()

    points = stored_points(running_run)
    assert [seq for seq, *_ in points] == list(range(1, 17))
    assert [(key, step) for _, key, step, _, _ in points[10:]] == [
        ("train/loss", 6), ("lr", 6), ("train/loss", 7), ("lr", 7), ("train/loss", 8), ("lr", 8)]
    pushed = [seq for send in recording_layer.sends for seq in send["seqs"]]
    assert pushed == list(range(1, 17))
    running_run.refresh_from_db()
    assert running_run.last_seq == 16
    assert running_run.step == 8
    assert "clash" not in caplog.text


def test_reporter_without_resume_drops_stored_points(recording_layer, open_reporter, running_run, fast_retries,
                                                     caplog):
    first = open_reporter(running_run)
    report_steps(first, range(1, 4))
    first.close()

    # Opened without resume, as if the runner had lost track of the earlier attempt.
    second = open_reporter(running_run)
    report_steps(second, range(3, 6))
    second.close()

    points = stored_points(running_run)
    assert [seq for seq, *_ in points] == list(range(1, 11))
    assert [(key, step) for _, key, step, _, _ in points[6:]] == [
        ("train/loss", 4), ("lr", 4), ("train/loss", 5), ("lr", 5)]
    running_run.refresh_from_db()
    assert running_run.last_seq == 10
    assert "clash with stored ones (attempt 1); renumbering them" in caplog.text


def test_seq_taken_by_other_writer_renumbered(recording_layer, open_reporter, running_run, fast_retries):
    reporter = RunReporter(running_run)
    # Another writer of this run (a worker taken for dead) stores seq 1 and 2 first.
    Metric.objects.create(run=running_run, seq=1, key="val/loss", step=1, epoch=1, value=0.9, reported_at=1.0)
    Metric.objects.create(run=running_run, seq=2, key="val/loss", step=2, epoch=1, value=0.8, reported_at=2.0)
    reporter.open()
    report_steps(reporter, range(1, 3))
    reporter.close()

    assert [(seq, key, step) for seq, key, step, _, _ in stored_points(running_run)] == [
        (1, "val/loss", 1), (2, "val/loss", 2), (3, "train/loss", 1), (4, "lr", 1), (5, "train/loss", 2),
        (6, "lr", 2)]
    pushed = [seq for send in recording_layer.sends for seq in send["seqs"]]
    assert pushed == [3, 4, 5, 6]


def test_failed_write_keeps_points_and_retries(recording_layer, open_reporter, running_run, fast_retries, monkeypatch,
                                               caplog):
    real_executemany = CursorWrapper.executemany
    failures = []

    def fail_first_insert(self, sql, param_list):
        if not failures and "INSERT" in sql:
            failures.append(len(list(param_list)))
            raise OperationalError("database is locked")
        return real_executemany(self, sql, param_list)

    monkeypatch.setattr(CursorWrapper, "executemany", fail_first_insert)
    reporter = open_reporter(running_run)
    reporter.log("first line")
    report_steps(reporter, range(1, 21))
    reporter.log("second line")
    reporter.close()

    assert failures and failures[0] >= 2
    points = stored_points(running_run)
    assert [seq for seq, *_ in points] == list(range(1, 41))
    assert sorted(step for _, key, step, _, _ in points if key == "train/loss") == list(range(1, 21))
    pushed = [seq for send in recording_layer.sends for seq in send["seqs"]]
    assert pushed == list(range(1, 41))
    running_run.refresh_from_db()
    assert running_run.last_seq == 40
    assert running_run.log.index("first line") < running_run.log.index("second line")
    assert f"run {running_run.pk}: writing" in caplog.text
    assert "failed (attempt 1); will retry" in caplog.text


def test_start_and_log_written_to_run(recording_layer, open_reporter, running_run):
    reporter = open_reporter(running_run)
    reporter.start({"device": "cpu", "total_steps": 46, "total_epochs": 2})
    reporter.log("training mlp on cpu")
    reporter.log("epoch 1/2: val/loss 0.5")
    reporter.close()

    running_run.refresh_from_db()
    assert running_run.device == "cpu"
    assert running_run.total_steps == 46
    assert running_run.total_epochs == 2
    lines = running_run.log.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" training mlp on cpu")
    assert lines[1].endswith(" epoch 1/2: val/loss 0.5")


def test_heartbeat_beats_without_reports(recording_layer, open_reporter, running_run, settings):
    settings.HEARTBEAT_SECONDS = 1
    Run.objects.filter(pk=running_run.pk).update(heartbeat_at=None)
    reporter = open_reporter(running_run)

    def heartbeat():
        return Run.objects.get(pk=running_run.pk).heartbeat_at

    first_beat = wait_until(heartbeat, 2.0, "a heartbeat", interval=0.1)
    later = wait_until(lambda: heartbeat() if heartbeat() > first_beat else None, 3.0, "a second heartbeat",
                       interval=0.1)
    reporter.close()

    assert (later - first_beat).total_seconds() >= 0.9
    assert Metric.objects.filter(run=running_run).count() == 0


def test_mlflow_gets_finite_points_after_storing(recording_layer, open_reporter, running_run):
    tracker = FakeTracker(running_run.pk)
    reporter = open_reporter(running_run, tracker=tracker)
    report_steps(reporter, range(1, 11))
    reporter.report(11, 1, {"train/loss": math.nan}, 1_700_000_000.0)
    reporter.close()

    assert len(tracker.points) == 20
    assert tracker.points[0][:3] == ("train/loss", 1.0, 1)
    assert tracker.points[1][:3] == ("lr", 0.01, 1)
    assert all(math.isfinite(value) for _, value, _, _ in tracker.points)
    assert tracker.unstored_when_logged == 0


@pytest.fixture
def mlflow_tracker(monkeypatch, tmp_path):
    """A real MlflowTracker on an SQLite store in tmp_path, with its log_points calls recorded."""
    from training.engine.tracking import MlflowTracker

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setattr(reporting, "MLFLOW_CHILD_MIN_POINTS", 50)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "reporting tests")
    tracker.start("busy run", {}, {})
    tracker.logged_here = []
    log_points = tracker.log_points

    def record_and_log(points):
        tracker.logged_here.extend(points)
        log_points(points)

    monkeypatch.setattr(tracker, "log_points", record_and_log)
    return tracker


def mlflow_steps(tracker, key: str) -> list[int]:
    return sorted(metric.step for metric in tracker.client.get_metric_history(tracker.run_id, key))


@pytest.mark.timeout(120)
def test_busy_run_logs_to_mlflow_from_child(recording_layer, open_reporter, running_run, mlflow_tracker):
    from training.mlflow_writer import MlflowWriterProcess

    reporter = open_reporter(running_run, tracker=mlflow_tracker)
    report_steps(reporter, range(1, 101))
    wait_until(lambda: reporter._mlflow_child and reporter._mlflow_child.ready(), 60, "the MLflow writer to start")
    child = reporter._mlflow_child
    for chunk in range(2, 10):
        report_steps(reporter, range(chunk * 50 + 1, chunk * 50 + 51))
        time.sleep(0.1)
    reporter.close()

    assert isinstance(child, MlflowWriterProcess)
    assert child._process.returncode == 0
    assert mlflow_tracker.logged_here == []
    assert mlflow_steps(mlflow_tracker, "train/loss") == list(range(1, 101)) + list(range(101, 501))
    assert len(mlflow_steps(mlflow_tracker, "lr")) == 500
    assert Metric.objects.filter(run=running_run).count() == 1000


@pytest.mark.timeout(120)
def test_short_run_logs_to_mlflow_itself(recording_layer, open_reporter, running_run, mlflow_tracker):
    reporter = open_reporter(running_run, tracker=mlflow_tracker)
    report_steps(reporter, range(1, 101))
    wait_until(lambda: reporter._mlflow_child, 5, "the MLflow writer to be started", interval=0.02)
    child = reporter._mlflow_child
    reporter.close()

    # The run ended before the child had imported MLflow: the child is stopped and nothing is lost.
    assert child.ready() is False
    assert child._process.returncode == -9
    assert len(mlflow_tracker.logged_here) == 200
    assert mlflow_steps(mlflow_tracker, "train/loss") == list(range(1, 101))
    assert mlflow_steps(mlflow_tracker, "lr") == list(range(1, 101))


def test_flush_returns_once_points_are_stored(recording_layer, running_run, open_reporter):
    reporter = open_reporter(running_run)
    for step in range(1, 201):
        reporter.report(step, 1, {"train/loss": 1.0 / step, "lr": 0.01}, time.time())

    reporter.flush()

    assert Metric.objects.filter(run=running_run).count() == 400
    running_run.refresh_from_db()
    assert running_run.last_seq == 400
    reporter.close()


def test_flush_waits_out_a_failed_write(recording_layer, running_run, open_reporter, fast_retries, monkeypatch):
    failures = {"left": 2}
    real_executemany = CursorWrapper.executemany

    def failing_executemany(self, sql, param_list):
        if failures["left"] and "INSERT" in sql:
            failures["left"] -= 1
            raise OperationalError("database is locked")
        return real_executemany(self, sql, param_list)

    monkeypatch.setattr(CursorWrapper, "executemany", failing_executemany)
    reporter = open_reporter(running_run)
    reporter.report(1, 1, {"train/loss": 0.5}, time.time())

    reporter.flush()

    assert failures["left"] == 0
    assert list(Metric.objects.filter(run=running_run).values_list("key", "step")) == [("train/loss", 1)]
    reporter.close()


def test_flush_skips_batch_interval(recording_layer, running_run, open_reporter, monkeypatch):
    monkeypatch.setattr(reporting, "FLUSH_INTERVAL_SECONDS", 3.0)
    monkeypatch.setattr(reporting, "FLUSH_WAIT_SECONDS", 3.0)
    reporter = open_reporter(running_run)
    reporter.report(1, 1, {"train/loss": 0.5}, time.time())
    wait_until(lambda: Metric.objects.filter(run=running_run).count() == 1, 2.0, "the first point", interval=0.02)

    # The next batch is not due for 3 s, but a flush() caller waits for it.
    reporter.report(2, 1, {"train/loss": 0.4}, time.time())
    started = time.monotonic()
    reporter.flush()
    waited = time.monotonic() - started

    assert waited < 1.0
    assert Metric.objects.filter(run=running_run).count() == 2
