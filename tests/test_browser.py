"""The browser path of a run: log in, start a run from the form, watch its curves grow.

Headless Chromium (Debian's /usr/bin/chromium) drives pages served by a real
Daphne process, with a real Celery worker where a run has to train. Install
the browser with `apt-get install -y chromium`; these tests are skipped
without it.
"""

import re
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect, sync_playwright

from projects.models import Dataset
from training.models import Metric, Run, RunStatus
from training.services import create_run

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/run-page.png")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"],
    }


@pytest.fixture(scope="module")
def chromium(browser_type_launch_args):
    """Headless Chromium for this module only.

    pytest-playwright's own `browser` and `page` fixtures keep Playwright's
    event loop running in the main thread until the session ends, and Django
    then rejects every later test's ORM call as made from an async context.
    """
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # While Playwright's loop runs in this thread, Django rejects the ORM
        # calls of the tests and database fixtures unless this variable allows them.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(**browser_type_launch_args)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def collected_static():
    """Collect static files into STATIC_ROOT, where WhiteNoise serves them from when DEBUG is off."""
    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture
def studio(collected_static, celery_worker_process, daphne_server):
    """Base URL of a Daphne server with static files, and a worker to train."""
    return daphne_server


def log_in(page, base_url: str, user) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username", exact=True).fill(user.username)
    page.get_by_label("Password", exact=True).fill("secret-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base_url}/")


def loss_point_count(page) -> int:
    return page.evaluate("""() => {
        const chart = document.getElementById("chart-loss");
        return chart && chart.data ? chart.data[0].x.length : 0;
    }""")


@pytest.mark.timeout(300)
def test_run_from_form_grows_live(studio, page, owner, project, digits_dataset):
    page.on("console", lambda message: print("console:", message.type, message.text))
    page.on("websocket", lambda socket: print("websocket opened:", socket.url))
    log_in(page, studio, owner)

    page.get_by_role("link", name=project.name, exact=True).click()
    expect(page).to_have_url(f"{studio}/projects/{project.pk}/")
    page.locator("#new-run").click()
    expect(page.get_by_role("heading", name="New run")).to_be_visible()
    expect(page.get_by_label("Model", exact=True)).to_have_value("cnn")
    page.get_by_label("Name", exact=True).fill("browser digits")
    page.get_by_label("Epochs", exact=True).fill("6")
    page.get_by_label("Batch size", exact=True).fill("16")
    page.locator("#create-run").click()

    expect(page).to_have_url(re.compile(rf"{re.escape(studio)}/runs/\d+/$"))
    run = Run.objects.get(name="browser digits")
    assert page.url == f"{studio}/runs/{run.pk}/"
    assert run.config["model"] == "cnn"
    assert run.config["epochs"] == 6
    assert run.config["batch_size"] == 16
    assert run.created_by == owner

    # Sample the loss chart's point count while the run trains.
    counts = []
    deadline = time.monotonic() + 180
    status = page.locator("#run-status")
    while time.monotonic() < deadline:
        counts.append(loss_point_count(page))
        if status.text_content() == "Succeeded" and counts[-1] and counts[-1] == run_steps(run):
            break
        time.sleep(0.1)

    run.refresh_from_db()
    seen = page.evaluate("({lastSeq: runPage.lastSeq, status: runPage.status, connected: runPage.connected})")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert seen == {"lastSeq": run.last_seq, "status": "succeeded", "connected": False}
    expect(status).to_have_text("Succeeded")
    # 6 epochs of about 1,440 examples in batches of 16: 90 steps each.
    assert run.step == 540
    assert counts[-1] == Metric.objects.filter(run=run, key="train/loss").count() == 540
    growing = [count for count in counts if count]
    assert growing == sorted(growing)
    assert len(set(growing)) >= 3, f"the chart did not grow in steps: {sorted(set(growing))}"
    expect(page.locator("#run-progress")).to_have_attribute("style", "width: 100%;")
    expect(page.locator("#run-epoch")).to_have_text("6/6")
    expect(page.locator("#cancel-form")).to_be_hidden()
    # The final metrics and confusion matrix replace the empty result block once the run succeeds.
    expect(page.locator("#run-summary")).to_contain_text("val/accuracy")
    expect(page.locator("#chart-confusion .main-svg").first).to_be_attached()
    expect(page.locator("#run-log")).to_contain_text("epoch 6/6")
    assert page.evaluate("document.getElementById('chart-metric').data[1].x.length") == 6

    page.screenshot(path=str(SCREENSHOT), full_page=True)


def run_steps(run: Run) -> int:
    return Run.objects.filter(pk=run.pk).values_list("total_steps", flat=True).get() or -1


@pytest.mark.timeout(300)
def test_project_page_inserts_new_run_live(studio, page, owner, project, digits_dataset):
    log_in(page, studio, owner)
    page.goto(f"{studio}/projects/{project.pk}/")
    expect(page.locator("#project-runs .empty-row")).to_be_visible()

    run = create_run(project, digits_dataset, {"model": "mlp", "hidden_sizes": [32], "epochs": 2},
                     user=owner, name="pushed row")

    row = page.locator(f'#project-runs tr[data-run-id="{run.pk}"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row.get_by_role("link", name="pushed row")).to_have_attribute("href", f"/runs/{run.pk}/")
    expect(page.locator("#project-runs .empty-row")).to_be_hidden()
    expect(row.locator('[data-field="status"]')).to_have_text("Succeeded", timeout=120_000)
    expect(row.locator('[data-field="main-metric"]')).to_contain_text("val/accuracy")
    run.refresh_from_db()
    assert row.locator('[data-field="main-metric"]').get_attribute("title") == (
        f"val/accuracy = {run.summary['val/accuracy']}")


@pytest.mark.timeout(120)
def test_run_page_recovers_missed_final_state(collected_static, daphne_server, page, owner, project, digits_dataset):
    run = create_run(project, digits_dataset, {"model": "mlp", "epochs": 1}, user=owner, name="quiet finish")
    log_in(page, daphne_server, owner)
    page.goto(f"{daphne_server}/runs/{run.pk}/")
    expect(page.locator("#run-status")).to_have_text("Queued")
    expect(page.locator("#live-indicator")).to_have_text("live")

    # The row changes without any message on the channel layer, as when Redis lost the socket's group.
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, summary={"val/accuracy": 0.75})

    # The log poll (every 3 s) sees the finished row and reconnects; the new connection sends the state.
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=15_000)
    expect(page.locator("#run-summary")).to_contain_text("0.75")
    expect(page.locator("#cancel-form")).to_be_hidden()


@pytest.mark.timeout(120)
def test_run_page_draws_nan_as_gap(collected_static, daphne_server, page, owner, project, digits_dataset):
    run = create_run(project, digits_dataset, {"model": "mlp", "epochs": 1}, user=owner, name="nan run")
    values = [2.0, 1.0, None, 0.5, 0.25]
    Metric.objects.bulk_create([
        Metric(run=run, seq=step, key="train/loss", step=step, epoch=1, value=value,
               nonfinite="" if value is not None else "nan", reported_at=1_700_000_000 + step)
        for step, value in enumerate(values, start=1)
    ])
    Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, diverged=True, last_seq=5,
                                         error="diverged: train/loss became nan at step 3 (epoch 1)")
    log_in(page, daphne_server, owner)

    page.goto(f"{daphne_server}/runs/{run.pk}/")

    expect(page.locator("#nonfinite-note")).to_have_text("train/loss was NaN at step 3; the curve has a gap there.")
    expect(page.locator("#diverged-warning")).to_be_visible()
    expect(page.locator("#run-error")).to_have_text("diverged: train/loss became nan at step 3 (epoch 1)")
    trace = page.evaluate("""() => {
        const trace = document.getElementById("chart-loss").data[0];
        return {x: trace.x, y: trace.y, connectgaps: trace.connectgaps};
    }""")
    assert trace == {"x": [1, 2, 3, 4, 5], "y": [2.0, 1.0, None, 0.5, 0.25], "connectgaps": False}
    # All points are in and the run is over, so the page closes its socket.
    expect(page.locator("#live-indicator")).to_have_text("")


@pytest.mark.timeout(120)
def test_run_form_follows_chosen_dataset(collected_static, daphne_server, page, owner, project, digits_dataset):
    wine = Dataset.objects.create(
        project=project, name="wine", format="npz", task="classification", sha256="0" * 64,
        file_path="datasets/wine.npz", size_bytes=1, num_rows=178, num_features=13, input_shape=[13],
        num_classes=3, class_names=["0", "1", "2"])
    log_in(page, daphne_server, owner)
    page.goto(f"{daphne_server}/projects/{project.pk}/runs/new/?dataset={digits_dataset.pk}")
    model = page.get_by_label("Model", exact=True)
    expect(model).to_have_value("cnn")

    page.get_by_label("Dataset", exact=True).select_option(str(wine.pk))

    expect(model).to_have_value("mlp")
    expect(model.locator('option[value="cnn"]')).to_be_disabled()
    expect(page.get_by_label("Hidden sizes", exact=True)).to_have_value("64,32")
    expect(page.get_by_label("Batch size", exact=True)).to_have_value("16")
    expect(page.locator("#field-conv_channels")).to_have_class(re.compile(r"\birrelevant\b"))

    page.get_by_label("Learning rate (lr)", exact=True).fill("0.02")
    page.get_by_text("Advanced: edit as JSON").click()
    json_box = page.get_by_label("Config as JSON", exact=True)
    # The details element's toggle event, which fills the box, fires after the click returns.
    expect(json_box).to_have_value(re.compile(r'"lr": 0\.02'))
    typed = json_box.input_value()
    assert '"model": "mlp"' in typed
    assert '"hidden_sizes": [\n    64,\n    32\n  ]' in typed
