"""The browser path of a study: create it from the form, watch its trials and charts, promote the best trial.

Headless Chromium (Debian's /usr/bin/chromium) drives pages served by a real
Daphne process, with a real Celery worker where trials have to train. The
browser fixtures come from tests/test_browser.py; these tests are skipped
without the browser.
"""

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.test_browser import CHROMIUM, browser_type_launch_args, chromium, collected_static, log_in, page  # noqa: F401
from training.models import Run
from tuning import services
from tuning.models import Study, StudyState, TrialState

SCREENSHOT = Path("/tmp/study-page.png")
BASE = {"model": "mlp", "hidden_sizes": [64], "epochs": 2, "batch_size": 64, "optimizer": "adam"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def space_row(page, name: str):
    """Return the table row of the search-space parameter `name`."""
    return page.locator("tr[data-space-row]").filter(has=page.locator(f'input[value="{name}"]'))


def in_thread(function, *args, **kwargs):
    """Call `function` in a thread of its own and return its result.

    Playwright's event loop runs in the test's thread, where asgiref's
    async_to_sync, which pushes events to the channel layer, refuses to run.
    """
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(call).result()


def space_json(page) -> dict:
    return json.loads(page.locator("textarea[name=space_json]").input_value())


@pytest.mark.timeout(300)
def test_study_from_form_trains_and_promotes(collected_static, celery_worker_process, daphne_server, page, owner,
                                             project, digits_dataset):
    page.on("console", lambda message: print("console:", message.type, message.text))
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, daphne_server, owner)

    # Home, project, New study.
    page.get_by_role("link", name=project.name, exact=True).click()
    page.locator("#new-study").click()
    expect(page.get_by_role("heading", name="New study")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("browser sweep")
    page.get_by_label("Base run config (JSON)", exact=True).fill(json.dumps(BASE))

    # Edit the space in the table: a narrower lr range, adaptive optimizers only, and no batch-size search.
    space_row(page, "lr").locator('input[name$="-high"]').fill("0.01")
    space_row(page, "optimizer").locator('input[name$="-choices"]').fill("adam, adamw")
    space_row(page, "batch_size").get_by_role("button", name="Remove").click()
    assert space_json(page) == {
        "lr": {"type": "float", "low": 0.0001, "high": 0.01, "log": True},
        "weight_decay": {"type": "float", "low": 0.000001, "high": 0.01, "log": True},
        "hidden_sizes[0]": {"type": "int", "low": 32, "high": 256, "step": 32},
        "dropout": {"type": "float", "low": 0, "high": 0.5},
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
    }
    page.get_by_label("Trials", exact=True).fill("4")
    page.get_by_label("Parallel trials", exact=True).fill("2")
    page.locator("#create-study").click()

    expect(page).to_have_url(re.compile(rf"{re.escape(daphne_server)}/studies/\d+/$"))
    study = Study.objects.get(name="browser sweep")
    assert page.url == f"{daphne_server}/studies/{study.pk}/"
    assert list(study.space) == ["lr", "weight_decay", "hidden_sizes[0]", "dropout", "optimizer"]
    assert study.space["lr"]["high"] == 0.01
    assert study.base_config["epochs"] == 2
    assert (study.n_trials, study.parallel, study.sampler, study.pruner) == (4, 2, "tpe", "median")

    # The table fills as trials start and finish; the study finishes with four trials.
    expect(page.locator("#study-state")).to_have_text("Finished", timeout=180_000)
    rows = page.locator("#trials tbody tr[data-trial-number]")
    expect(rows).to_have_count(4)
    study.refresh_from_db()
    assert study.state == StudyState.FINISHED, study.error
    trials = list(study.trials.order_by("number"))
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 4, [trial.reason for trial in trials]
    for trial in trials:
        row = page.locator(f'#trials tr[data-trial-number="{trial.number}"]')
        expect(row.locator('[data-field="state"]')).to_have_text("Complete")
        expect(row).to_contain_text(trial.params["optimizer"])
        expect(row.locator('[data-field="value"]')).to_have_attribute("title", str(trial.values[0]))
        expect(row.get_by_role("link", name=f"run {trial.run_id}")).to_have_attribute("href", f"/runs/{trial.run_id}/")
    expect(page.locator("#study-trials")).to_have_text("4/4")
    expect(page.locator(f'#trials tr.best[data-trial-number="{study.best_trial.number}"]')).to_be_visible()
    expect(page.locator("#study-best")).to_have_attribute("title", str(study.best_values[0]))

    # The charts were drawn again after the last trial: history, importances and the rest.
    expect(page.locator("#chart-history .main-svg").first).to_be_attached()
    history_points = page.evaluate("() => document.getElementById('chart-history').data[0].y.length")
    deadline = time.monotonic() + 15
    while history_points < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
        history_points = page.evaluate("() => document.getElementById('chart-history').data[0].y.length")
    assert history_points == 4
    for key in ("intermediate", "importances", "parallel", "slice", "contour"):
        expect(page.locator(f"#chart-{key} .main-svg").first).to_be_attached()
        expect(page.locator(f"#chart-{key}-reason")).to_be_hidden()
    expect(page.locator("#stop-form")).to_be_hidden()
    expect(page.locator("#study-finished")).to_have_text(study.finished_at.strftime("%Y-%m-%d %H:%M:%S"))
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert errors == [], f"the page raised JavaScript errors: {errors}"

    # Promote the best trial for 3 epochs and land on the new run's page.
    page.locator("#promote-epochs").fill("3")
    page.get_by_role("button", name="Promote best trial").click()

    expect(page).to_have_url(re.compile(rf"{re.escape(daphne_server)}/runs/\d+/$"))
    run = Run.objects.order_by("-pk").first()
    best = study.best_trial
    assert page.url == f"{daphne_server}/runs/{run.pk}/"
    assert run.config["epochs"] == 3
    assert run.config["lr"] == best.params["lr"]
    assert run.config["hidden_sizes"] == [best.params["hidden_sizes[0]"]]
    expect(page.locator(".messages")).to_contain_text(f"parameters of trial {best.number}")


@pytest.mark.timeout(120)
def test_space_rows_and_json_stay_in_step(collected_static, daphne_server, page, owner, project, digits_dataset):
    log_in(page, daphne_server, owner)
    page.goto(f"{daphne_server}/projects/{project.pk}/studies/new/")
    page.get_by_text("Edit the search space as JSON").click()
    json_box = page.locator("textarea[name=space_json]")

    # JSON to rows: a valid edit rebuilds the table.
    json_box.fill(json.dumps({"momentum": {"type": "float", "low": 0.5, "high": 0.99},
                              "schedule": {"type": "categorical", "choices": ["constant", "cosine"]}}))
    rows = page.locator("tr[data-space-row]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator('input[name$="-name"]')).to_have_value("momentum")
    expect(rows.nth(0).locator('input[name$="-high"]')).to_have_value("0.99")
    expect(rows.nth(1).locator('select[name$="-type"]')).to_have_value("categorical")
    expect(rows.nth(1).locator('input[name$="-choices"]')).to_have_value("constant, cosine")
    # The low and high inputs of a categorical row are hidden.
    expect(rows.nth(1).locator('input[name$="-low"]')).to_be_hidden()

    # Invalid JSON keeps the table and shows why.
    json_box.fill('{"momentum": ')
    expect(page.locator("#space-json-note")).to_contain_text("The JSON is not valid")
    expect(rows).to_have_count(2)

    # Rows to JSON: a new row appears in the JSON as it is typed.
    page.locator("#add-parameter").click()
    new_row = rows.nth(2)
    new_row.locator('input[name$="-name"]').fill("dropout")
    new_row.locator('input[name$="-low"]').fill("0")
    new_row.locator('input[name$="-high"]').fill("0.3")
    assert space_json(page)["dropout"] == {"type": "float", "low": 0, "high": 0.3}
    expect(page.locator("#space-json-note")).to_be_hidden()
    assert page.locator("input[name=space_source]").input_value() == "rows"

    # Two objectives switch the pruner off, since pruning needs one.
    page.locator("select[name=objective_1_metric]").select_option("model/latency_ms")
    expect(page.locator("select[name=pruner]")).to_have_value("none")
    page.locator("select[name=objective_1_metric]").select_option("")
    expect(page.locator("select[name=pruner]")).to_have_value("median")

    # A server-side error is shown next to its row, with the rows as typed.
    new_row.locator('input[name$="-low"]').fill("0.5")
    page.get_by_label("Base run config (JSON)", exact=True).fill(json.dumps(BASE))
    page.locator("#create-study").click()
    error = page.locator("tr[data-errors-of-row] .field-error")
    expect(error).to_have_text("space.dropout: the range is empty: low 0.5 is above high 0.3")
    expect(page.locator("tr[data-space-row]")).to_have_count(3)
    assert Study.objects.count() == 0


@pytest.mark.timeout(120)
def test_project_page_shows_new_study_live(collected_static, daphne_server, page, owner, project, digits_dataset):
    log_in(page, daphne_server, owner)
    page.goto(f"{daphne_server}/projects/{project.pk}/")
    expect(page.locator("#project-studies .empty-row")).to_be_visible()

    study = in_thread(services.create_study, project, digits_dataset, name="pushed study", user=owner,
                      base_config=BASE, space={"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
                      n_trials=3, parallel=1)

    row = page.locator(f'#project-studies tr[data-study-id="{study.pk}"]')
    expect(row).to_be_visible(timeout=15_000)
    expect(row.get_by_role("link", name="pushed study")).to_have_attribute("href", f"/studies/{study.pk}/")
    expect(row.locator('[data-field="state"]')).to_have_text("Running")
    expect(page.locator("#project-studies .empty-row")).to_be_hidden()

    in_thread(services.stop_study, study)

    expect(row.locator('[data-field="state"]')).to_have_text("Stopped", timeout=15_000)
    expect(row.locator('[data-field="trials"]')).to_have_text("1/3")


def finish_trials(study, results: list[tuple[float, float]]) -> None:
    """Complete the study's trials in number order with (accuracy, latency) results, as a worker would."""
    from django.utils import timezone

    from training.models import RunStatus

    for accuracy, latency_ms in results:
        trial = study.trials.filter(state=TrialState.RUNNING).order_by("number").first()
        Run.objects.filter(pk=trial.run_id).update(
            status=RunStatus.SUCCEEDED, finished_at=timezone.now(),
            summary={"val/accuracy": accuracy, "val/loss": 1 - accuracy, "model/latency_ms": latency_ms})
        services.on_run_finished(None, Run.objects.get(pk=trial.run_id))


@pytest.mark.timeout(120)
def test_pareto_page_offers_front(collected_static, daphne_server, page, owner, project, digits_dataset):
    study = in_thread(services.create_study, project, digits_dataset, name="pareto", user=owner, base_config=BASE,
                      space={"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                             "dropout": {"type": "float", "low": 0.0, "high": 0.5}},
                      objectives=[{"metric": "val/accuracy"}, {"metric": "model/latency_ms"}],
                      sampler="nsga2", pruner="none", n_trials=4, parallel=1)
    in_thread(finish_trials, study, [(0.9, 2.0)])
    log_in(page, daphne_server, owner)
    page.goto(f"{daphne_server}/studies/{study.pk}/")
    expect(page.locator("#chart-pareto .main-svg").first).to_be_attached()
    expect(page.locator("#promote-trial option")).to_have_count(1)

    # Two more trials: the second beats the first on latency only, the third is beaten by the first.
    in_thread(finish_trials, study, [(0.8, 1.0), (0.7, 3.0)])

    options = page.locator("#promote-trial option")
    expect(options).to_have_count(2, timeout=15_000)
    expect(options.nth(0)).to_have_text("trial 0: 0.9, 2")
    expect(options.nth(1)).to_have_text("trial 1: 0.8, 1")
    expect(page.locator('#trials tr[data-trial-number="1"] [data-field="pareto"]')).to_be_visible()
    expect(page.locator('#trials tr[data-trial-number="2"] [data-field="pareto"]')).to_be_hidden()
    expect(page.locator("#chart-intermediate")).to_have_count(0)

    # The charts of the second objective.
    page.locator("#chart-objective").select_option("1")
    page.wait_for_function(
        "() => document.getElementById('chart-history').layout.yaxis.title.text === 'model/latency_ms'",
        timeout=15_000)

    # A click on trial 1's point of the front chooses it in the promote form.
    expect(page.locator("#promote-trial")).to_have_value("0")
    page.evaluate("""() => {
        const chart = document.getElementById("chart-pareto");
        const texts = chart.data.flatMap((trace) => trace.text);
        chart.emit("plotly_click", {points: [{text: texts.find((text) => text.includes('"number": 1,'))}]});
    }""")
    expect(page.locator("#promote-trial")).to_have_value("1")
    page.get_by_role("button", name="Promote the chosen trial").click()

    expect(page).to_have_url(re.compile(rf"{re.escape(daphne_server)}/runs/\d+/$"))
    run = Run.objects.order_by("-pk").first()
    assert run.config["lr"] == study.trials.get(number=1).params["lr"]
