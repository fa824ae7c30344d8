"""`studio demo`: train a CNN on scikit-learn's digits through the REST API, end to end.

It does what a script of a user would do: find the "demo" project, upload a
dataset, start a run, follow it to the end and check the result. It talks
to the studio only over HTTP, except that on this machine it may read the
admin's API token from the database, as `studio token admin` does.
"""

import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from django.core.management.base import CommandError

from studio.preflight import LOOPBACK_HOSTS

DEMO_PROJECT = "demo"
DEMO_CONFIG = {
    "model": "cnn",
    "conv_channels": [16, 32],
    "hidden_sizes": [64],
    "lr": 0.003,
    "epochs": 10,
    "batch_size": 64,
}
# The demo fails below this validation accuracy; this CNN reaches about 0.98 on digits.
MIN_ACCURACY = 0.95
FINISHED = {"succeeded", "failed", "cancelled", "pruned"}
POLL_SECONDS = 1.0


class ApiClient:
    """A requests session that sends the token and turns API errors into CommandError lines."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, **kwargs):
        import requests

        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise CommandError(f"cannot reach the studio at {self.base_url}: {exc}; "
                               "start it with `studio up` or pass --url") from None
        if response.status_code >= 400:
            hint = " (check --token; `studio token USERNAME` prints one)" if response.status_code in (401, 403) else ""
            raise CommandError(f"{method} {path} failed with HTTP {response.status_code}: "
                               f"{error_text(response)}{hint}")
        return response.json()

    def get(self, path: str, **params):
        return self.request("GET", path, params=params)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)


def error_text(response) -> str:
    """Return the API's {"errors": [...]} body as one line, or the start of any other body."""
    try:
        errors = response.json()["errors"]
        return "; ".join(f"{e['field']}: {e['message']}" if e.get("field") else e["message"] for e in errors)
    except (ValueError, KeyError, TypeError):
        return response.text.strip().replace("\n", " ")[:300] or response.reason


def results(page) -> list[dict]:
    """Return the items of a list response, paginated ({"results": [...]}) or not."""
    return page["results"] if isinstance(page, dict) else page


def local_token(base_url: str) -> str:
    """Read the admin's API token from the local database, for a studio on this machine."""
    host = urlsplit(base_url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise CommandError(f"--token is required for a studio on another machine ({base_url}); "
                           "get one there with `studio token USERNAME`")

    from studio.bootstrap import ADMIN_USERNAME, api_token
    from studio.preflight import check_database, setup_django

    setup_django()
    check_database()
    from django.contrib.auth import get_user_model
    from django.db import DatabaseError

    users = get_user_model().objects
    try:
        admin = users.filter(username=ADMIN_USERNAME).first() or users.filter(is_superuser=True).order_by("pk").first()
    except DatabaseError as exc:
        raise CommandError(f"cannot read users from the local database ({exc}); run `studio demo` with the "
                           "STUDIO_HOME and DATABASE_URL of the running studio, or pass --token") from None
    if admin is None:
        raise CommandError("no superuser in the local database to take a token from; pass --token "
                           "or create one with `studio createsuperuser`")
    return api_token(admin.get_username())


def find_project(api: ApiClient, name: str) -> dict:
    for project in results(api.get("/api/v1/projects/", name=name)):
        if project["name"] == name:
            return project
    raise CommandError(f"no project named {name!r} is visible to this token; `studio up` creates it for the "
                       "admin on first start")


def upload_digits(api: ApiClient, project: dict) -> dict:
    """Write scikit-learn's digits as NPZ and upload it to `project` under a new name."""
    from projects.engine.datasets import write_builtin_npz

    name = f"digits-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    with tempfile.TemporaryDirectory(prefix="studio-demo-") as folder:
        path = Path(folder) / "digits.npz"
        write_builtin_npz("digits", path)
        with open(path, "rb") as file:
            return api.post("/api/v1/datasets/",
                            data={"project": project["id"], "name": name, "format": "npz",
                                  "task": "classification"},
                            files={"file": (path.name, file, "application/octet-stream")})


def follow_run(api: ApiClient, run: dict, timeout: float) -> dict:
    """Poll the run until it finishes, printing a line whenever it reaches a new step."""
    deadline = time.monotonic() + timeout
    last_seq = 0
    loss = None
    last_printed = None
    while run["status"] not in FINISHED:
        if time.monotonic() > deadline:
            raise CommandError(f"run {run['id']} did not finish within {timeout:.0f} s (it is {run['status']}); "
                               f"follow it at {run['url']}")
        time.sleep(POLL_SECONDS)
        run = api.get(f"/api/v1/runs/{run['id']}/")
        page = api.get(f"/api/v1/runs/{run['id']}/metrics/", after=last_seq, keys="train/loss")
        last_seq = page["last_seq"]
        if page["points"]:
            loss = page["points"][-1]["value"]
        progress = (run["status"], run["epoch"], run["step"])
        if progress != last_printed:
            last_printed = progress
            print(progress_line(run, loss), flush=True)
    return run


def progress_line(run: dict, loss: float | None) -> str:
    if run["status"] == "queued":
        return "  queued, waiting for a worker"
    if not run["total_steps"]:
        return f"  {run['status']}: loading the dataset"
    loss_text = "loss -" if loss is None else f"loss {loss:.4f}"
    return (f"  {run['status']}: epoch {run['epoch']}/{run['total_epochs']}, "
            f"step {run['step']}/{run['total_steps']}, {loss_text}")


def report(run: dict, base_url: str) -> None:
    """Print the run's page, final metrics and MLflow run; raise CommandError unless it trained well."""
    url = urljoin(base_url + "/", run["url"])
    print(f"Run {run['id']} {run['status']}: {url}", flush=True)
    for key, value in sorted(run["summary"].items()):
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key}: {text}")
    print(f"  MLflow run id: {run['mlflow_run_id'] or '-'}")
    if run.get("mlflow_url"):
        print(f"  MLflow UI: {run['mlflow_url']}")

    if run["status"] != "succeeded":
        reason = run["error"] or run["status"]
        raise CommandError(f"the demo run {run['status']}: {reason}")
    accuracy = run["summary"].get("val/accuracy")
    if accuracy is None or accuracy < MIN_ACCURACY:
        raise CommandError(f"the demo run reached val/accuracy {accuracy}, below the expected {MIN_ACCURACY}")
    print(f"Demo passed: val/accuracy {accuracy:.4f} >= {MIN_ACCURACY}")


def run_demo(base_url: str, token: str, timeout: float) -> int:
    base_url = base_url.rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise CommandError(f"--url {base_url!r} is not an http:// or https:// address")
    api = ApiClient(base_url, token or local_token(base_url))

    project = find_project(api, DEMO_PROJECT)
    dataset = upload_digits(api, project)
    print(f"Uploaded dataset {dataset['name']!r}: {dataset['num_rows']} images of shape "
          f"{dataset['input_shape']}, {dataset['num_classes']} classes", flush=True)

    run = api.post("/api/v1/runs/", json={"project": project["id"], "dataset": dataset["id"],
                                          "name": f"demo CNN on {dataset['name']}", "config": DEMO_CONFIG})
    print(f"Started run {run['id']}: {urljoin(base_url + '/', run['url'])}", flush=True)
    run = follow_run(api, run, timeout)
    report(run, base_url)
    return 0
