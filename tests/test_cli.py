"""The `studio` command line: argument parsing, tokens, and the one-line errors before anything starts."""

import re
import socket
import sqlite3

import pytest
from rest_framework.authtoken.models import Token

from studio import cli, up
from studio.preflight import redact_url
from tests.conftest import free_port
from tests.studio_process import run_studio


def parse(*argv):
    return cli.build_parser().parse_args(list(argv))


def assert_one_line_error(result, message: str):
    """The command failed with exactly `message` on stderr, as one line and without a traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"studio: {message}"


# Parsing


def test_up_defaults():
    args = parse("up")

    assert args.command == "up"
    assert args.host == "127.0.0.1"
    assert args.port == 8000
    assert args.mlflow_port is None
    assert args.no_mlflow is False
    assert args.concurrency == 1


def test_up_options():
    args = parse("up", "--host", "0.0.0.0", "--port", "9000", "--mlflow-port", "9100", "--no-mlflow",
                 "--concurrency", "2")

    assert args.host == "0.0.0.0"
    assert args.port == 9000
    assert args.mlflow_port == 9100
    assert args.no_mlflow is True
    assert args.concurrency == 2


@pytest.mark.parametrize("argv, message", [
    (["up", "--port", "0"], "argument --port: invalid port 0: expected a number from 1 to 65535"),
    (["up", "--port", "http"], "argument --port: invalid port 'http': expected a number from 1 to 65535"),
    (["up", "--mlflow-port", "70000"], "argument --mlflow-port: invalid port 70000: expected a number from 1 to 65535"),
    (["up", "--concurrency", "0"], "argument --concurrency: invalid number 0: expected an integer of at least 1"),
    (["worker", "--concurrency", "two"],
     "argument --concurrency: invalid number 'two': expected an integer of at least 1"),
    (["demo", "--timeout", "-5"], "argument --timeout: invalid duration -5: expected more than 0 seconds"),
])
def test_bad_arguments_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_worker_and_web_defaults():
    worker = parse("worker")
    web = parse("web", "--host", "0.0.0.0", "--port", "8080")

    assert (worker.queues, worker.concurrency, worker.beat) == ("cpu", 1, False)
    assert (web.host, web.port) == ("0.0.0.0", 8080)


def test_demo_defaults(monkeypatch):
    monkeypatch.setenv("STUDIO_TOKEN", "from-the-environment")
    args = parse("demo")

    assert args.url == "http://127.0.0.1:8000"
    assert args.token == "from-the-environment"
    assert args.timeout == 600.0


def test_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse()

    assert exit_info.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_parse_queues():
    assert up.parse_queues("cpu") == ["cpu"]
    assert up.parse_queues(" cpu, gpu ,") == ["cpu", "gpu"]


@pytest.mark.parametrize("raw, message", [
    ("", "--queues is empty; give a comma-separated list such as cpu,gpu"),
    (" , ", "--queues is empty; give a comma-separated list such as cpu,gpu"),
    ("cpu,g pu", "--queues: invalid queue name 'g pu'; use letters, digits, '_', '.' or '-'"),
])
def test_parse_queues_rejects_bad_names(raw, message):
    with pytest.raises(cli.CommandError) as error:
        up.parse_queues(raw)

    assert str(error.value) == message


def test_redact_url_hides_the_password():
    assert redact_url("postgres://studio:s3cret@db:5432/studio") == "postgres://studio:***@db:5432/studio"
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


# Tokens (in this process, on the test database)


def test_token_prints_and_reuses_the_key(owner, capsys):
    with pytest.raises(SystemExit) as first_exit:
        cli.main(["token", "olivia"])
    first = capsys.readouterr().out.strip()

    with pytest.raises(SystemExit) as second_exit:
        cli.main(["token", "olivia"])
    second = capsys.readouterr().out.strip()

    assert first_exit.value.code == 0
    assert second_exit.value.code == 0
    assert len(first) == 40
    assert second == first
    assert Token.objects.get(user=owner).key == first
    assert Token.objects.count() == 1


def test_token_for_unknown_user(db, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "nobody"])

    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "studio: user 'nobody' not found; create it with `studio createsuperuser`\n"
    assert Token.objects.count() == 0


def test_worker_without_redis_url(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["worker", "--queues", "cpu,gpu"])

    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "studio: REDIS_URL is not set; `studio worker` joins a studio through its Redis, "
        "e.g. REDIS_URL=redis://HOST:6379/0 (use `studio up` for a single machine)\n"
    )


# Errors of real `studio` processes: one line and no traceback


def test_up_with_busy_port(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        result = run_studio(["up", "--port", str(port)], tmp_path / "home")

    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use; choose another with --port")
    assert not (tmp_path / "home" / "studio.sqlite3").exists()


def test_up_with_busy_mlflow_port(tmp_path):
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mlflow_port = listener.getsockname()[1]

        result = run_studio(["up", "--port", str(port), "--mlflow-port", str(mlflow_port)], tmp_path / "home")

    assert_one_line_error(result, f"port {mlflow_port} on 127.0.0.1 is already in use; "
                                  "choose another with --mlflow-port")


def test_up_with_unreachable_redis(tmp_path):
    closed_port = free_port()

    result = run_studio(["up", "--port", str(free_port())], tmp_path / "home",
                        REDIS_URL=f"redis://127.0.0.1:{closed_port}/0")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"studio: cannot reach REDIS_URL=redis://127.0.0.1:{closed_port}/0: ")
    assert "Connection refused" in line


def test_up_with_redis_url_of_wrong_scheme(tmp_path):
    result = run_studio(["up", "--port", str(free_port())], tmp_path / "home", REDIS_URL="http://127.0.0.1:6379")

    assert_one_line_error(result, "REDIS_URL='http://127.0.0.1:6379' has an unsupported scheme: "
                                  "expected redis://, rediss://, unix://")


def test_up_with_unreachable_database_hides_password(tmp_path):
    closed_port = free_port()
    home = tmp_path / "home"

    result = run_studio(["up", "--port", str(free_port())], home,
                        DATABASE_URL=f"postgres://postgres:s3cret@127.0.0.1:{closed_port}/studio")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"studio: cannot reach DATABASE_URL=postgres://postgres:***@127.0.0.1:{closed_port}/studio: ")
    # The embedded Redis started before the database check was stopped again.
    assert not (home / "redis.db.settings").exists()


def test_up_with_bad_setting(tmp_path):
    result = run_studio(["up", "--port", str(free_port())], tmp_path / "home", DEBUG="maybe")

    assert_one_line_error(result, "invalid setting: DEBUG='maybe' is not a boolean: "
                                  "expected one of 1, 0, true, false, yes, no")


def test_up_when_migrations_fail(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # A table left over from elsewhere makes the projects app's first migration fail.
    with sqlite3.connect(home / "studio.sqlite3") as database:
        database.execute("CREATE TABLE projects_team (id integer)")

    result = run_studio(["up", "--port", str(free_port())], home)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("studio: migrations failed (")
    assert line.endswith("table \"projects_team\" already exists")
    assert not (home / "redis.db.settings").exists()


def test_web_without_redis_url(tmp_path):
    result = run_studio(["web", "--port", str(free_port())], tmp_path / "home")

    assert_one_line_error(result, "REDIS_URL is not set; `studio web` joins a studio through its Redis, "
                                  "e.g. REDIS_URL=redis://HOST:6379/0 (use `studio up` for a single machine)")


def test_web_with_unmigrated_database(tmp_path, redis_url):
    result = run_studio(["web", "--port", str(free_port())], tmp_path / "home", REDIS_URL=redis_url)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("studio: the database has ")
    assert line.endswith("run `studio migrate` first")


def test_token_of_unknown_user_in_subprocess(tmp_path):
    home = tmp_path / "home"
    migrated = run_studio(["migrate", "--noinput", "-v", "0"], home)

    result = run_studio(["token", "nobody"], home)

    assert migrated.returncode == 0, migrated.stderr
    assert_one_line_error(result, "user 'nobody' not found; create it with `studio createsuperuser`")


def test_demo_needs_token_for_remote_studio(tmp_path):
    result = run_studio(["demo", "--url", "http://studio.example.com:8000"], tmp_path / "home")

    assert_one_line_error(result, "--token is required for a studio on another machine "
                                  "(http://studio.example.com:8000); get one there with `studio token USERNAME`")


def test_demo_with_unreachable_studio(tmp_path):
    port = free_port()

    result = run_studio(["demo", "--url", f"http://127.0.0.1:{port}", "--token", "abc"], tmp_path / "home")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"studio: cannot reach the studio at http://127.0.0.1:{port}: ")
    assert line.endswith("start it with `studio up` or pass --url")


def test_init_creates_the_admin_once(tmp_path):
    home = tmp_path / "home"

    first = run_studio(["init"], home)
    second = run_studio(["init"], home)
    token = run_studio(["token", "admin"], home)

    assert first.returncode == 0, first.stderr
    assert re.search(r"^Created the superuser 'admin' with password: \S{16}$", first.stdout, re.MULTILINE)
    assert second.returncode == 0, second.stderr
    assert "Created the superuser" not in second.stdout
    assert "Applied" not in second.stdout
    assert token.returncode == 0, token.stderr
    assert re.fullmatch(r"[0-9a-f]{40}\n", token.stdout)


def test_unusable_data_folder(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    home = tmp_path / "a-file" / "home"

    up_result = run_studio(["up", "--port", str(free_port())], home)
    token_result = run_studio(["token", "admin"], home)

    message = f"cannot create the data folder STUDIO_HOME={home}: Not a directory; set STUDIO_HOME to a writable folder"
    assert_one_line_error(up_result, message)
    assert_one_line_error(token_result, message)


def test_manage_and_createsuperuser_pass_options_through(tmp_path):
    home = tmp_path / "home"
    run_studio(["migrate", "--noinput", "-v", "0"], home)

    check = run_studio(["manage", "check"], home)
    created = run_studio(["createsuperuser", "--noinput", "--username", "bob", "--email", "bob@example.com"], home,
                         DJANGO_SUPERUSER_PASSWORD="bob-pass-12345")
    token = run_studio(["token", "bob"], home)

    assert check.returncode == 0, check.stderr
    assert "System check identified no issues" in check.stdout
    assert created.returncode == 0, created.stderr
    assert "Superuser created successfully." in created.stdout
    assert token.returncode == 0, token.stderr
    assert re.fullmatch(r"[0-9a-f]{40}\n", token.stdout)
