"""The admin console of studies: the list, a read-only study page with its trials, and the stop action."""

import pytest

from tests.test_admin import messages_of
from tests.test_api_runs import make_dataset
from tuning import services
from tuning.models import StudyState, TrialState

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD))
    return client


@pytest.fixture
def studies(project, owner):
    digits = make_dataset(project, "digits")
    make = lambda name: services.create_study(project, digits, name=name, user=owner,  # noqa: E731
                                              base_config={"epochs": 2}, space=SPACE, n_trials=5, parallel=2)
    return make("first"), make("second")


def test_study_changelist_and_page(admin_client, studies):
    first, _ = studies

    listing = admin_client.get("/admin/tuning/study/")
    page = admin_client.get(f"/admin/tuning/study/{first.pk}/change/")

    assert listing.status_code == 200
    text = listing.content.decode()
    assert "0 of 5 finished, 2 running" in text
    assert "second" in text
    assert page.status_code == 200
    body = page.content.decode()
    assert first.optuna_name in body
    assert body.count('class="field-params"') >= 2
    assert admin_client.get("/admin/tuning/study/add/").status_code == 403


def test_stop_action(admin_client, studies):
    first, second = studies
    services.stop_study(second)

    response = admin_client.post("/admin/tuning/study/", {
        "action": "stop_selected", "_selected_action": [first.pk, second.pk]}, follow=True)

    assert messages_of(response) == ["1 study stopped.", "1 study had already ended and was left as it was."]
    first.refresh_from_db()
    assert first.state == StudyState.STOPPED
    assert {t.state for t in first.trials.all()} == {TrialState.FAILED}
