"""Run the real `studio` command in a subprocess with its own data folder, for CLI and end-to-end tests."""

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD_LINE = re.compile(r"Created the superuser 'admin' with password: (\S+)")


def studio_env(home: Path, **extra) -> dict:
    """Environment of a user's shell: real settings, no REDIS_URL or DATABASE_URL unless given."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "DATABASE_URL", "MLFLOW_TRACKING_URI", "MLFLOW_UI_URL", "STUDIO_TOKEN")}
    env.update(DJANGO_SETTINGS_MODULE="studio.settings", STUDIO_HOME=str(home), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run_studio(args: list[str], home: Path, timeout: float = 120, **extra_env) -> subprocess.CompletedProcess:
    """Run `studio ARGS` to completion and return its result, with text stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, env=studio_env(home, **extra_env),
                          capture_output=True, text=True, timeout=timeout)


def spawn_studio(args: list[str], home: Path, log_path: Path, **extra_env) -> subprocess.Popen:
    """Start `studio ARGS` in its own session with stdout and stderr going to `log_path`."""
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "studio", *args], cwd=ROOT, env=studio_env(home, **extra_env),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class RunningStudio:
    def __init__(self, process: subprocess.Popen, log_path: Path, url: str, home: Path):
        self.process = process
        self.log_path = log_path
        self.url = url
        self.home = home

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def admin_password(self) -> str | None:
        match = PASSWORD_LINE.search(self.log)
        return match.group(1) if match else None


def _responds(url: str) -> bool:
    try:
        requests.get(url, timeout=2, allow_redirects=False)
        return True
    except requests.RequestException:
        return False


def wait_for(predicate, timeout: float, description: str, studio: RunningStudio) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if studio.process.poll() is not None:
            code = studio.process.returncode
            raise AssertionError(f"studio up exited with {code} while waiting for {description}:\n{studio.log[-4000:]}")
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{description} not ready after {timeout} s:\n{studio.log[-4000:]}")


@contextmanager
def studio_up(home: Path, port: int, *args: str, **extra_env):
    """Start `studio up` on `port`; yield a RunningStudio once its web server responds, stop it after."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = home.parent / f"{home.name}-up.log"
    process = spawn_studio(["up", "--port", str(port), *args], home, log_path, **extra_env)
    studio = RunningStudio(process, log_path, f"http://127.0.0.1:{port}", home)
    try:
        wait_for(lambda: _responds(studio.url + "/accounts/login/"), 90, "the web server", studio)
        yield studio
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
